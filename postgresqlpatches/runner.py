"""plan / apply / status / baseline as library functions; the CLI only parses and renders.

apply = connect -> lock (bounded) -> settle -> read state -> plan -> stop on problems ->
per step: run, record, report -> unlock. plan is the same without lock or writes. The
database work, connections and pipelining included, is pg/session.py's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
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
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.errors import translated
from postgresqlpatches.pg.server import (
    DEFAULT_PREFIX,
    MAINTENANCE_DB,
    RUN_APPLICATION_NAME,
    SUPERUSER,
    Maintenance,
    Server,
)
from postgresqlpatches.pg.session import RunSession, read_facts, read_server, state_store
from postgresqlpatches.pg.state import STATE_USER

if TYPE_CHECKING:
    from postgresqlpatches.core.locks import RelationLock, Session
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

    def server(self) -> Server:
        server = Server(host=self.host, port=self.port, prefix=self.prefix,
                        lock_timeout_ms=self.lock_timeout_ms,
                        statement_timeout_ms=self.statement_timeout_ms,
                        strict=self.strict_passwords, admin_user=self.admin_user,
                        read_only=self.read_only)
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


def _make_plan(options: Options, server: Server, patches: Sequence[Patch],
               facts: ServerFacts, problems: Sequence[Problem] = (), *,
               online: bool = True) -> Plan:
    """The one planner call, with the options every command passes alike, and the password
    check of what it will run."""
    the_plan = make_plan(patches, facts, state_db=options.state_db, problems=problems,
                         allow_out_of_order=options.allow_out_of_order, lint=options.lint)
    return _check_passwords(server, the_plan, facts.roles, online=online,
                            state_db=options.state_db)


def _check_passwords(server: Server, the_plan: Plan, roles: frozenset[str] | None, *,
                     online: bool, state_db: str = DEFAULT_STATE_DB) -> Plan:
    """Every fallback to the user name, found before anything runs: one warning line per
    role, or with --strict-passwords a problem each (kind ``password``).

    Who needs a password: every user a pending step logs in as, the admin role and patches
    (online, they always log in), and every role a pending baseline names a password
    variable of and that does not exist yet (``roles``; unknown offline: all of them).
    A password is had from a variable or from libpq's sources for the database it logs in to
    (``first_db``)."""
    from postgresqlpatches.pg.server import baseline_variables, fallback_problem

    created: dict[str, Patch] = {}  # role: the first baseline that names it
    logins: dict[str, Patch | None] = (dict.fromkeys((server.admin_user, STATE_USER))
                                       if online else {})
    first_db = {server.admin_user: MAINTENANCE_DB, STATE_USER: state_db}
    for step in the_plan.pending:
        patch = step.patch
        if step.via_psql:
            for role in baseline_variables(patch.text, server.prefix,
                                           patch.name.database).values():
                if roles is None or role not in roles:
                    created.setdefault(role, patch)
                    first_db.setdefault(role, patch.name.database)
        logins.setdefault(patch.name.user, patch)
        first_db.setdefault(patch.name.user,
                            MAINTENANCE_DB if step.via_psql else patch.name.database)
    problems: list[Problem] = []
    for role in [*created, *(r for r in logins if r not in created)]:
        if server.has_password(role, first_db[role]):
            continue
        first = created.get(role) or logins[role]
        if not server.strict:
            server.warn_fallback(role, first.name.filename if role in created and first
                                 else None)
            continue
        message, hint = fallback_problem(server.prefix, role, role in created)
        problems.append(Problem("password", first.path if first else None, message,
                                hint=hint))
    if not problems:
        return the_plan
    return replace(the_plan, problems=(*the_plan.problems, *problems))


@translated
def plan(options: Options) -> Plan:
    """Read-only: never creates anything, not even the state database."""
    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    server = options.server()
    facts = read_server(server, options.state_db, patches, options.adopt)
    return _with_lock_conflicts(server, _make_plan(options, server, patches, facts, problems),
                                facts.existing)


def _with_lock_conflicts(server: Server, the_plan: Plan, existing: frozenset[str]) -> Plan:
    """Each pending patch of a database that exists gets the live sessions whose locks
    conflict with the ones it will take, and its database's oldest open transaction: one
    read-only query per such database, none when nothing is pending (information for
    whoever picks the moment to apply; never a problem)."""
    from postgresqlpatches.core.locks import patch_locks
    from postgresqlpatches.pg.locks import read_live_locks

    wanted: dict[str, dict[int, tuple[RelationLock, ...]]] = {}  # database: {step index: its locks}
    # a database that gets a bootstrap is made (or made again: an interrupted one's leftover,
    # whose sessions prove who used it, planner.foreign_use): plan never connects to it
    built = {s.patch.name.database for s in the_plan.steps if s.action is Action.BOOTSTRAP}
    for index, step in enumerate(the_plan.steps):
        database = step.patch.name.database
        if step.action in (Action.APPLY, Action.REAPPLY) and database in existing - built:
            wanted.setdefault(database, {})[index] = patch_locks(step.statements)
    if not wanted:
        return the_plan
    steps = list(the_plan.steps)
    for database, by_step in wanted.items():
        live = read_live_locks(server, database,
                               [lock for locks in by_step.values() for lock in locks])
        if live is None:
            continue
        for index, locks in by_step.items():
            steps[index] = replace(steps[index], lock_conflicts=live.conflicts(locks),
                                   oldest_transaction=live.oldest)
    return replace(the_plan, steps=tuple(steps))


def plan_offline(options: Options) -> Plan:
    """No server: the plan for an empty server, so every file is parsed and checked.

    A database with a 0000 baseline in the tree is taken as new (built from its scripts);
    one without is taken as existing with nothing applied (it must be on the server).
    """
    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    built_here = {p.name.database for p in patches if p.name.is_baseline}
    facts = ServerFacts(frozenset(p.name.database for p in patches) - built_here)
    return _make_plan(options, options.server(), patches, facts, problems, online=False)


@translated
def apply(options: Options, reporter: Reporter | None = None) -> ApplyResult:
    """Carry the plan out; nothing runs when the plan has a problem."""
    reporter = reporter or SilentReporter()
    started = time.monotonic()
    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    if problems:
        raise PlanRefused(Plan((), tuple(problems)))
    with locked(options) as run:
        result = execute(options, run, patches, reporter)
    result.seconds = time.monotonic() - started
    return result


@contextmanager
def locked(options: Options) -> Iterator[RunSession]:
    """The server's lock and a run's session under it, for apply and baseline alike: the
    session's connections close first, then the lock goes."""
    server = options.server()
    server.application_name = RUN_APPLICATION_NAME  # the next run waits for these sessions
    maint = Maintenance(server)
    try:
        maint.lock(options.lock_wait)
        run = RunSession(server, maint, options.state_db, options.lock_wait,
                         options.lock_budget, observer=options.observer)
        try:
            yield run
        finally:
            run.close()
    finally:
        maint.close()


def execute(options: Options, run: RunSession, patches: Sequence[Patch],
             reporter: Reporter) -> ApplyResult:
    """Under the lock (``locked``): settle, read, plan, stop on problems, then each step:
    run (which records it), report."""
    from postgresqlpatches.core.outcomes import bootstrap_group

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
    while index < len(pending):
        step = pending[index]
        if step.action is Action.BOOTSTRAP:
            group = bootstrap_group(pending, index)
            run.bootstrap(group, reporter.step_started, finished)
            index += len(group)
            continue
        run.ready(step)
        t0 = time.monotonic()
        reporter.step_started(step)
        run.run(step)
        finished(step, time.monotonic() - t0)
        index += 1
    run.fill_checksums(plan)
    return result


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
    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
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
