"""plan / apply / status / baseline as library functions; the CLI only parses and renders.

apply = connect -> lock (bounded) -> settle -> read state -> plan -> stop on problems ->
per step: run, record, report -> unlock. plan is the same without lock or writes. The
database work, connections and pipelining included, is pg/session.py's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from postgresqlpatches.core.discovery import Patch, discover
from postgresqlpatches.core.locks import (
    DEFAULT_CONCURRENT_LOCK_TIMEOUT_MS,
    DEFAULT_LOCK_RETRIES,
    DEFAULT_LOCK_TIMEOUT_MS,
    LockBudget,
)
from postgresqlpatches.core.planner import Action, Plan, ServerFacts, Step, make_plan
from postgresqlpatches.core.records import Problem, Record
from postgresqlpatches.errors import PatchFailed, PgpatchError
from postgresqlpatches.pg.errors import translated
from postgresqlpatches.pg.server import (
    DEFAULT_PREFIX,
    RUN_APPLICATION_NAME,
    SUPERUSER,
    Maintenance,
    Server,
)
from postgresqlpatches.pg.session import RunSession, read_facts, read_server, state_store

if TYPE_CHECKING:
    from postgresqlpatches.core.locks import Session
    from postgresqlpatches.pg.session import Observer

log = logging.getLogger("pgpatch")

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


def _make_plan(options: Options, server: Server, patches: Sequence[Patch],
               facts: ServerFacts, problems: Sequence[Problem] = (), *,
               online: bool = True) -> Plan:
    """The one planner call, with the options every command passes alike, and the password
    check of what it will run."""
    the_plan = make_plan(patches, facts, state_db=options.state_db, problems=problems,
                         allow_out_of_order=options.allow_out_of_order, lint=options.lint)
    from postgresqlpatches.preflight import check_logins, check_passwords, log_plan

    the_plan = check_passwords(server, the_plan, facts.roles, online=online,
                               state_db=options.state_db)
    the_plan = check_logins(the_plan, facts.roles) if online else the_plan
    log_plan(the_plan, options.state_db)
    return the_plan



@translated
def plan(options: Options) -> Plan:
    """Read-only: never creates anything, not even the state database."""
    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    server = options.server()
    from postgresqlpatches.preflight import expand_groups_read_only, with_lock_conflicts

    patches, problems = expand_groups_read_only(options, server, patches, problems)
    facts = read_server(server, options.state_db, patches, options.adopt)
    return with_lock_conflicts(server, _make_plan(options, server, patches, facts, problems),
                               facts.existing)



def plan_offline(options: Options) -> Plan:
    """No server: the plan for an empty server, so every file is parsed and checked.

    A database with a 0000 baseline in the tree is taken as new (built from its scripts);
    one without is taken as existing with nothing applied (it must be on the server).
    """
    from postgresqlpatches.preflight import expand_groups

    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    patches, more = expand_groups(options, None, patches)
    problems = [*problems, *more]
    built_here = {p.name.database for p in patches if p.name.is_baseline}
    facts = ServerFacts(frozenset(p.name.database for p in patches) - built_here)
    return _make_plan(options, options.server(), patches, facts, problems, online=False)


@translated
def apply(options: Options, reporter: Reporter | None = None) -> ApplyResult:
    """Carry the plan out; nothing runs when the plan has a problem. An apply that stops
    raises an error that carries what ran, what failed and what is left (stopped.py)."""
    from postgresqlpatches.stopped import Tracked, stopped_error

    tracked = Tracked(reporter or SilentReporter())
    started = time.monotonic()
    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    if problems:
        raise PlanRefused(Plan((), tuple(problems)))

    def stopped(e: BaseException, server: Server, maint: Maintenance,
                run: RunSession | None) -> BaseException:
        return stopped_error(e, options, server, maint, run is not None, tracked, started)

    with locked(options, stopped) as run:
        result = execute(options, run, patches, tracked)
    result.seconds = time.monotonic() - started
    return result


Stopped = Callable[[BaseException, Server, Maintenance, "RunSession | None"], BaseException]


@contextmanager
def locked(options: Options, stopped: Stopped | None = None) -> Iterator[RunSession]:
    """The server's lock and a run's session under it, for apply and baseline alike: the
    session's connections close first, then the lock goes. ``stopped``: what an error
    becomes, asked once the run's sessions are closed and while the lock is still held."""
    server = options.server()
    server.application_name = RUN_APPLICATION_NAME  # the next run waits for these sessions
    maint = Maintenance(server)
    run: RunSession | None = None
    try:
        maint.lock(options.lock_wait)
        run = RunSession(server, maint, options.state_db, options.lock_wait,
                         options.lock_budget, observer=options.observer)
        try:
            yield run
        finally:
            run.close()
    except BaseException as e:
        error = stopped(e, server, maint, run) if stopped is not None else e
        if error is e:
            raise
        raise error from e
    finally:
        maint.close()


def execute(options: Options, run: RunSession, patches: Sequence[Patch],
             reporter: Reporter) -> ApplyResult:
    """Under the lock (``locked``): settle, read, plan, stop on problems, then each step:
    run (which records it), report."""
    from postgresqlpatches.core.outcomes import bootstrap_group
    from postgresqlpatches.preflight import expand_groups

    patches, problems = expand_groups(options, run.maint, patches)  # under the lock
    if problems:
        raise PlanRefused(Plan((), tuple(dict.fromkeys(problems))))
    existing = run.open({p.name.database for p in patches})
    facts = read_facts(run.maint, options.state_db, existing, run.store, patches,
                       options.adopt)
    plan = _make_plan(options, run.server, patches, facts)
    if plan.problems:
        raise PlanRefused(plan)
    reporter.planned(plan)
    run.on_retry = getattr(reporter, "lock_retry", None)  # optional for a reporter
    result = ApplyResult(plan)

    def finished(step: Step, seconds: float) -> None:
        reporter.step_done(step, seconds)
        result.done.append((step, seconds))

    pending = list(plan.pending)
    run.begin(pending)
    index = 0
    failed: set[str] = set()  # group databases whose patch failed: the rest of theirs wait
    while index < len(pending):
        step = pending[index]
        if step.patch.name.database in failed:
            index += 1
            continue
        if step.action is Action.BOOTSTRAP:
            group = bootstrap_group(pending, index)
            run.bootstrap(group, reporter.step_started, finished)
            index += len(group)
            continue
        run.ready(step)
        t0 = time.monotonic()
        reporter.step_started(step)
        try:
            run.run(step)
        except PatchFailed as e:
            if step.patch.group is None:
                raise
            _member_failed(options, step, e, result)  # only this database stops
            failed.add(step.patch.name.database)
            index += 1
            continue
        finished(step, time.monotonic() - t0)
        index += 1
    run.fill_checksums(plan)
    if result.members_failed:
        from postgresqlpatches.stopped import GroupMembersFailed

        raise GroupMembersFailed(result)
    return result


def _member_failed(options: Options, step: Step, error: PatchFailed,
                   result: ApplyResult) -> None:
    """A group database's patch failed (rolled back, no record): named on stderr, and only
    that database stops; with --fail-fast the run stops here."""
    from postgresqlpatches.stopped import member_failed

    named = member_failed(step, error)
    if options.fail_fast:
        raise named from error
    log.error("%s", named)
    result.members_failed.append((step, named))


# -- status ------------------------------------------------------------------------------

@dataclass
class Status:
    records: list[Record]
    plan: Plan | None
    state_exists: bool
    problems: list[Problem] = field(default_factory=list)
    """Without globs: records whose outcome the server cannot tell (with globs: the plan's)."""


@translated
def status(options: Options) -> Status:
    """The records; with globs also the plan, from the same reading of the server."""
    server = options.server()
    if not options.globs:
        from postgresqlpatches.core.planner import record_problems

        facts = read_server(server, options.state_db, (), options.adopt)
        return Status(list(facts.records), None, facts.state_exists,
                      record_problems(facts, options.state_db))
    from postgresqlpatches.preflight import expand_groups_read_only

    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    patches, problems = expand_groups_read_only(options, server, patches, problems)
    facts = read_server(server, options.state_db, patches, options.adopt)
    return Status(list(facts.records), _make_plan(options, server, patches, facts, problems),
                  facts.state_exists)


@translated
def forget(options: Options, database: str) -> int:
    """Drop the records of a database that no longer exists, so its bootstrap runs again."""
    server = options.server()
    maint = Maintenance(server)
    try:
        maint.lock(options.lock_wait)
        existing = maint.existing_databases({database, options.state_db})
        if database in existing:
            raise PgpatchError(
                f"database {database} exists: forgetting its records would run its patches "
                "again on it", hint=f"drop database {database} first, if that is what you want")
        store = state_store(server, options.state_db, existing)
        if store is None:
            return 0
        try:
            return store.forget_database(database)
        finally:
            store.close()
    finally:
        maint.close()
