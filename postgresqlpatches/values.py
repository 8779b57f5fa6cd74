"""What the library functions of runner.py take and give: the options of a run, the
reporter it tells its progress, and the values it returns or raises. Plain values, so that
runner.py holds only the order of things."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from postgresqlpatches.core.lockbudget import (
    DEFAULT_CONCURRENT_LOCK_TIMEOUT_MS,
    DEFAULT_LOCK_RETRIES,
    DEFAULT_LOCK_TIMEOUT_MS,
    LockBudget,
)
from postgresqlpatches.core.planner import Plan, Step
from postgresqlpatches.core.records import Problem, Record
from postgresqlpatches.errors import PatchFailed, PgpatchError
from postgresqlpatches.pg.server import DEFAULT_PREFIX, SUPERUSER, Server

if TYPE_CHECKING:
    from postgresqlpatches.core.locks import Session
    from postgresqlpatches.pg.session import Observer

DEFAULT_STATE_DB = "patches"


@dataclass
class Options:
    globs: Sequence[str] = ()
    host: str | None = None
    port: int | None = None
    prefix: str = DEFAULT_PREFIX
    state_db: str = DEFAULT_STATE_DB
    allow_out_of_order: bool = False
    lock_wait: float = 600.0
    lock_timeout_ms: int | None = DEFAULT_LOCK_TIMEOUT_MS
    """lock_timeout of patch sessions (0: none; None: the server's setting)."""
    statement_timeout_ms: int | None = None
    lint: str = "warn"
    strict_passwords: bool = False
    adopt: bool = False
    """Apply to databases that hold objects but have no record (else a problem)."""
    admin_user: str = SUPERUSER
    """The maintenance role (--admin-user): a managed service's admin needs no SUPERUSER."""
    lock_retries: int = DEFAULT_LOCK_RETRIES
    """New tries of a patch that hit lock_timeout (SQLSTATE 55P03), after the first."""
    concurrent_lock_timeout_ms: int | None = DEFAULT_CONCURRENT_LOCK_TIMEOUT_MS
    """lock_timeout of a ``... CONCURRENTLY`` statement instead (0: none; None: as the
    others)."""
    # -- for rehearse (rehearse.py): the live server read-only, the copy with its own
    # passwords, and what each statement did there (pg/session.py Observer)
    read_only: bool = False
    environ: Mapping[str, str] | None = None
    observer: Observer | None = None

    @property
    def lock_budget(self) -> LockBudget:
        return LockBudget(self.lock_timeout_ms, self.lock_retries,
                          self.concurrent_lock_timeout_ms)
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """The config file's database groups: name -> database name patterns (``@NAME`` files)."""
    fail_fast: bool = False
    """A group database's failed patch stops the whole run (else only that database)."""
    jobs: int = 1
    """Group members run at once on the server (apply --jobs without targets; members.py)."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """A target's libpq settings besides host and port (server.TARGET_SETTINGS)."""

    def server(self) -> Server:
        server = Server(host=self.host, port=self.port, prefix=self.prefix,
                        lock_timeout_ms=self.lock_timeout_ms,
                        statement_timeout_ms=self.statement_timeout_ms,
                        strict=self.strict_passwords, admin_user=self.admin_user,
                        read_only=self.read_only, settings=self.settings)
        if self.environ is not None:
            server.environ = self.environ
        return server


class Reporter(Protocol):
    """How the runner tells progress without printing (rich on a terminal, a list in tests)."""

    def planned(self, plan: Plan) -> None: ...
    def step_started(self, step: Step) -> None: ...
    def step_done(self, step: Step, seconds: float) -> None: ...
    def lock_retry(self, step: Step, retry: int, retries: int, wait_seconds: float,
                   blockers: Sequence[Session]) -> None:
        """A try of ``step`` hit lock_timeout: retry number ``retry`` of ``retries`` follows
        in ``wait_seconds``; ``blockers``: who blocked it, when seen (runner._Run.retried).
        Optional: a reporter without it is not told."""


class SilentReporter:
    def planned(self, plan: Plan) -> None:
        pass

    def step_started(self, step: Step) -> None:
        pass

    def step_done(self, step: Step, seconds: float) -> None:
        pass

    def lock_retry(self, step: Step, retry: int, retries: int, wait_seconds: float,
                   blockers: Sequence[Session]) -> None:
        pass


class PlanRefused(PgpatchError):
    """The plan has problems: nothing ran."""

    kind = "problems"

    def __init__(self, plan: Plan) -> None:
        first = plan.problems[0]
        more = len(plan.problems) - 1
        super().__init__(
            first.message + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""),
            path=first.path, line=first.line,
            hint=first.hint if not more else "run `pgpatch plan` to see every problem")
        self.plan = plan


@dataclass
class ApplyResult:
    plan: Plan
    done: list[tuple[Step, float]] = field(default_factory=list)
    seconds: float = 0.0
    failed: tuple[Step, float] | None = None
    """The step the run stopped in (failed, or interrupted before it committed), with its
    seconds; only in the ``result`` an apply's error carries (stopped.py)."""
    members_failed: list[tuple[Step, PatchFailed]] = field(default_factory=list)
    """Group databases whose patch failed (their later patches did not run), in run order."""

    @property
    def pending(self) -> list[Step]:
        """What is left: the plan's pending steps that neither ran nor failed."""
        gone = ({id(s) for s, _ in self.done} | {id(s) for s, _ in self.members_failed}
                | ({id(self.failed[0])} if self.failed else set()))
        return [s for s in self.plan.pending if id(s) not in gone]


@dataclass
class Status:
    records: list[Record]
    plan: Plan | None
    state_exists: bool
    problems: list[Problem] = field(default_factory=list)
    """Without globs: records whose outcome the server cannot tell (with globs: the plan's)."""
