"""plan / apply / status / baseline as library functions; the CLI only parses and renders.

apply = connect -> lock (bounded) -> settle -> read state -> plan -> stop on problems ->
per step: execute, record, report -> unlock. plan is the same without lock or writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from postgresqlpatches.core.discovery import Patch, discover
from postgresqlpatches.core.planner import Action, Plan, ServerFacts, Step, make_plan
from postgresqlpatches.core.records import Problem, Record
from postgresqlpatches.errors import LockLost, PatchFailed, PgpatchError, ServerError
from postgresqlpatches.pg.errors import (
    DUPLICATE_OBJECT,
    is_driver_error,
    server_errors,
    translated,
)
from postgresqlpatches.pg.server import (
    DEFAULT_PREFIX,
    RUN_APPLICATION_NAME,
    SUPERUSER,
    Maintenance,
    Server,
)
from postgresqlpatches.pg.state import STATE_USER, StateStore, open_state

if TYPE_CHECKING:
    from postgresqlpatches.core.statements import NewSession, Statement
    from postgresqlpatches.pg.server import Connection

log = logging.getLogger("pgpatch")

DEFAULT_STATE_DB = "patches"
SETTLE_POLL_SECONDS = 0.1


@dataclass
class Options:
    globs: Sequence[str] = ()
    host: str | None = None
    port: int | None = None
    prefix: str = DEFAULT_PREFIX
    state_db: str = DEFAULT_STATE_DB
    allow_out_of_order: bool = False
    lock_wait: float = 600.0
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
    lint: str = "warn"
    strict_passwords: bool = False
    adopt: bool = False
    """Apply to databases that hold objects but have no record (else a problem)."""
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """The config file's database groups: name -> database name patterns (``@NAME`` files)."""
    fail_fast: bool = False
    """A group database's failed patch stops the whole run (else only that database)."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """A target's libpq settings besides host and port (server.TARGET_SETTINGS)."""

    def server(self) -> Server:
        return Server(host=self.host, port=self.port, prefix=self.prefix,
                      lock_timeout_ms=self.lock_timeout_ms,
                      statement_timeout_ms=self.statement_timeout_ms,
                      strict=self.strict_passwords, settings=self.settings)


class Reporter(Protocol):
    """How the runner tells progress without printing (rich on a terminal, a list in tests)."""

    def planned(self, plan: Plan) -> None: ...
    def step_started(self, step: Step) -> None: ...
    def step_done(self, step: Step, seconds: float) -> None: ...


class SilentReporter:
    def planned(self, plan: Plan) -> None:
        pass

    def step_started(self, step: Step) -> None:
        pass

    def step_done(self, step: Step, seconds: float) -> None:
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
    failed: list[tuple[Step, PatchFailed]] = field(default_factory=list)
    """Group databases whose patch failed (their later patches did not run), in run order."""


class GroupMembersFailed(PatchFailed):
    """Patches failed on some databases of a group; the others went on (``result`` says
    what ran)."""

    def __init__(self, result: ApplyResult) -> None:
        names = [s.patch.name.database for s, _ in result.failed]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        super().__init__(
            f"{len(names)} database{'s' * (len(names) != 1)} of a group failed: {shown}",
            hint="each error above names its database; their later patches did not run, the "
                 "other databases' did. Fix the patch and run again: only what is pending runs")
        self.result = result


# -- database groups (@NAME patches) ---------------------------------------------------------

def _expand_groups(options: Options, maint: Maintenance | None,
                   patches: Sequence[Patch]) -> tuple[Sequence[Patch], list[Problem]]:
    """``@NAME`` patches, one per database of the group when this is asked (planner.
    expand_groups); without a session (offline) they stay one each. Asks the server only
    when a group patch is among ``patches``."""
    from postgresqlpatches.core.planner import expand_groups

    if not any(p.name.group is not None for p in patches):
        return patches, []
    names = maint.group_candidates() if maint is not None else None
    return expand_groups(patches, options.groups, names, options.state_db)


def _expand_groups_read_only(options: Options, server: Server, patches: Sequence[Patch],
                             problems: Sequence[Problem]) -> tuple[Sequence[Patch],
                                                                   list[Problem]]:
    """plan and status: the groups' databases from a short session of its own (only when a
    group patch is among ``patches``)."""
    if not any(p.name.group is not None for p in patches):
        return patches, list(problems)
    maint = Maintenance(server)
    try:
        patches, more = _expand_groups(options, maint, patches)
    finally:
        maint.close()
    return patches, [*problems, *more]


def _member_failed(step: Step, error: PatchFailed) -> PatchFailed:
    """A group database's failure, naming the database (the file is the group's)."""
    named = PatchFailed(f"in database {step.patch.name.database} of group {step.patch.group}: "
                        f"{error.message}", hint=error.hint, path=error.path, line=error.line,
                        sqlstate=error.sqlstate)
    named.dropped_index, named.left_index = error.dropped_index, error.left_index
    named.left_reason = error.left_reason
    return named


def _state_store(server: Server, state_db: str, existing: set[str]) -> StateStore | None:
    """The state database's store, or None when it does not exist or is half made."""
    if state_db not in existing:
        return None
    conn = open_state(server, state_db)
    return StateStore(conn) if conn is not None else None


def _read_facts(maint: Maintenance, state_db: str, existing: set[str],
                store: StateStore | None, patches: Sequence[Patch] = (),
                adopt: bool = False) -> ServerFacts:
    """The records and the fate of unsettled transactions, from what the caller opened: a
    state database that exists without a store is one whose bootstrap was cut short. The
    roles only when a baseline may run (the password check needs them, see _make_plan).
    Databases without records are looked into unless ``adopt`` (planner.unrecorded_candidates)."""
    from postgresqlpatches.core.planner import unrecorded_candidates

    half_made = state_db in existing and store is None
    records = store.records() if store is not None else []
    xact = maint.xact_status([r.xid for r in records if not r.settled and r.xid is not None])
    present = existing - {state_db} if half_made else existing
    built = {p.name.database for p in patches if p.name.is_baseline}
    may_build = bool(built - present) or any(
        r.database in built and r.major == "00000000" and not r.settled for r in records)
    unrecorded = {} if adopt else maint.objects_of_their_own(
        unrecorded_candidates(patches, present, records, state_db))
    interrupted = {r.database for r in records
                   if r.major == "00000000" and not r.settled and r.xid is None}
    return ServerFacts(frozenset(present), tuple(records), xact, state_db in present,
                       frozenset({state_db}) if half_made else frozenset(),
                       frozenset(maint.roles()) if may_build else None, unrecorded,
                       maint.leftovers(interrupted & present - {state_db}))


def _make_plan(options: Options, server: Server, patches: Sequence[Patch],
               facts: ServerFacts, problems: Sequence[Problem] = (), *,
               online: bool = True) -> Plan:
    """The one planner call, with the options every command passes alike, and the password
    check of what it will run."""
    the_plan = make_plan(patches, facts, state_db=options.state_db, problems=problems,
                         allow_out_of_order=options.allow_out_of_order, lint=options.lint)
    return _check_passwords(server, the_plan, facts.roles, online=online)


def _check_passwords(server: Server, the_plan: Plan, roles: frozenset[str] | None, *,
                     online: bool) -> Plan:
    """Every fallback to the user name, found before anything runs: one warning line per
    role, or with --strict-passwords a problem each (kind ``password``).

    Who needs a password: every user a pending step logs in as, postgres and patches
    (online, they always log in), and every role a pending baseline names a password
    variable of and that does not exist yet (``roles``; unknown offline: all of them)."""
    from postgresqlpatches.pg.server import baseline_variables, fallback_problem

    created: dict[str, Patch] = {}  # role: the first baseline that names it
    logins: dict[str, Patch | None] = dict.fromkeys((SUPERUSER, STATE_USER)) if online else {}
    for step in the_plan.pending:
        patch = step.patch
        if step.via_psql:
            for role in baseline_variables(patch.text, server.prefix,
                                           patch.name.database).values():
                if roles is None or role not in roles:
                    created.setdefault(role, patch)
        logins.setdefault(patch.name.user, patch)
    problems: list[Problem] = []
    for role in [*created, *(r for r in logins if r not in created)]:
        if server.has_password(role):
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


def _read_server(options: Options, server: Server, patches: Sequence[Patch]) -> ServerFacts:
    """Read-only: one maintenance session and, if it exists, one state session."""
    maint = Maintenance(server)
    store: StateStore | None = None
    try:
        existing = maint.existing_databases(
            {p.name.database for p in patches} | {options.state_db})
        store = _state_store(server, options.state_db, existing)
        return _read_facts(maint, options.state_db, existing, store, patches, options.adopt)
    finally:
        if store is not None:
            store.close()
        maint.close()


@translated
def plan(options: Options) -> Plan:
    """Read-only: never creates anything, not even the state database."""
    patches, problems = discover(options.globs, state_db=options.state_db)
    server = options.server()
    patches, problems = _expand_groups_read_only(options, server, patches, problems)
    return _make_plan(options, server, patches, _read_server(options, server, patches),
                      problems)


def plan_offline(options: Options) -> Plan:
    """No server: the plan for an empty server, so every file is parsed and checked.

    A database with a 0000 baseline in the tree is taken as new (built from its scripts);
    one without is taken as existing with nothing applied (it must be on the server).
    """
    patches, problems = discover(options.globs, state_db=options.state_db)
    patches, more = _expand_groups(options, None, patches)
    problems = [*problems, *more]
    built_here = {p.name.database for p in patches if p.name.is_baseline}
    facts = ServerFacts(frozenset(p.name.database for p in patches) - built_here)
    return _make_plan(options, options.server(), patches, facts, problems, online=False)


@translated
def apply(options: Options, reporter: Reporter | None = None) -> ApplyResult:
    """Carry the plan out; nothing runs when the plan has a problem."""
    reporter = reporter or SilentReporter()
    started = time.monotonic()
    patches, problems = discover(options.globs, state_db=options.state_db)
    if problems:
        raise PlanRefused(Plan((), tuple(problems)))
    server = options.server()
    server.application_name = RUN_APPLICATION_NAME  # the next run waits for these sessions
    maint = Maintenance(server)
    try:
        maint.lock(options.lock_wait)
        patches, problems = _expand_groups(options, maint, patches)  # under the lock
        if problems:
            raise PlanRefused(Plan((), tuple(dict.fromkeys(problems))))
        run = _Run(options, server, maint, patches)
        try:
            result = run.execute(reporter)
        finally:
            run.close()
    finally:
        maint.close()
    result.seconds = time.monotonic() - started
    return result


class _Run:
    """One apply under the lock: connections kept per (database, user) for the whole run."""

    def __init__(self, options: Options, server: Server, maint: Maintenance,
                 patches: Sequence[Patch]) -> None:
        self.options = options
        self.server = server
        self.maint = maint
        self.patches = patches
        self.state_db = options.state_db
        self.store: StateStore | None = None
        self.conns: dict[tuple[str, str], Connection] = {}
        self.identities: dict[tuple[str, str], tuple[object, ...] | None] = {}
        # kept connections whose last patch's session is not reset yet (_after_patch)
        self.dirty: set[tuple[str, str]] = set()
        self.new_sessions: dict[str, NewSession | None] = {}  # by path: _new_session
        self.to_settle: dict[int, float] = {}  # record id: milliseconds
        self.sent_ahead: Patch | None = None  # sent behind the last COMMIT (run_transaction)
        self.fill_later: list[tuple[int, Patch]] = []  # state bootstrap records, pre-upgrade
        self.result: ApplyResult | None = None
        self.current: Step | None = None  # the step about to run or running

    def close(self) -> None:
        """Settle this run's records; if the server is gone, the next run settles them."""
        try:
            if self.store is not None and self.to_settle:
                with server_errors():
                    self.store.mark_settled(list(self.to_settle), self.to_settle)
                self.to_settle = {}
        except ServerError as e:
            log.debug("records left unsettled for the next run: %s", e.text)
        finally:
            for conn in self.conns.values():
                conn.close()
            if self.store is not None:
                self.store.close()

    def execute(self, reporter: Reporter) -> ApplyResult:
        existing = self.maint.existing_databases(
            {p.name.database for p in self.patches} | {self.state_db})
        self.store = _state_store(self.server, self.state_db, existing)
        if self.store is not None:
            self._settle()
        facts = _read_facts(self.maint, self.state_db, existing, self.store, self.patches,
                            self.options.adopt)
        plan = _make_plan(self.options, self.server, self.patches, facts)
        if plan.problems:
            raise PlanRefused(plan)
        reporter.planned(plan)
        result = self.result = ApplyResult(plan)
        pending = list(plan.pending)
        if pending:  # the lock was needed for all of the above: still there?
            self.current = pending[0]
            self._stop_if_lock_lost(round_trip=True)
        index = 0
        failed: set[str] = set()  # group databases whose patch failed: the rest of theirs wait
        while index < len(pending):
            step = pending[index]
            if index and pending[index - 1].patch.group is not None:
                self._leave_group_database(pending[index - 1].patch.name.database,
                                           step.patch.name.database)
            if step.patch.name.database in failed:
                index += 1
                continue
            if step.action is Action.BOOTSTRAP:
                group = [s for s in pending[index:] if s.action is Action.BOOTSTRAP
                         and s.patch.name.database == step.patch.name.database]
                self._bootstrap(group, reporter, result)
                index += len(group)
                continue
            self.current = step
            if self.sent_ahead is not step.patch:  # else it is running: its record checks
                self._stop_if_lock_lost()
            t0 = time.monotonic()
            reporter.step_started(step)
            try:
                if step.patch.name.database == self.state_db:
                    self._apply_in_state(step)
                elif step.non_transactional:
                    self._apply_non_transactional(step)
                else:
                    following = pending[index + 1] if index + 1 < len(pending) else None
                    self._apply_transactional(
                        step, following if following and self._chains(step, following)
                        else None)
            except PatchFailed as e:
                if step.patch.group is None:
                    raise
                self._group_member_failed(step, e, result)  # only this database stops
                failed.add(step.patch.name.database)
                index += 1
                continue
            seconds = time.monotonic() - t0
            reporter.step_done(step, seconds)
            result.done.append((step, seconds))
            index += 1
        self._fill_checksums(plan)
        if result.failed:
            raise GroupMembersFailed(result)
        return result

    def _leave_group_database(self, database: str, following: str) -> None:
        """A group's databases run one after another: the connections of one are closed when
        the run goes on to the next database, so a group of hundreds does not hold hundreds
        of sessions (max_connections)."""
        if following == database:
            return
        for key in [k for k in self.conns if k[0] == database]:
            self.conns.pop(key).close()
            self.dirty.discard(key)
            self.identities.pop(key, None)

    def _group_member_failed(self, step: Step, error: PatchFailed,
                             result: ApplyResult) -> None:
        """A group database's patch failed (rolled back, no record): named on stderr, and
        only that database stops; with --fail-fast the run stops here."""
        named = _member_failed(step, error)
        if self.options.fail_fast:
            raise named from error
        log.error("%s", named)
        result.failed.append((step, named))

    def _fill_checksums(self, plan: Plan) -> None:
        """Records of unchanged patches made before checksums, or with an older checksum
        version, or before a comment was edited, get the checksums of today's file."""
        from postgresqlpatches.core.planner import record_is_current

        pairs = [(s.record.id, s.patch) for s in plan.steps
                 if s.record is not None and not record_is_current(s)] + self.fill_later
        if pairs and self.store is not None:
            self.store.refresh_columns()
            self.store.write_checksums(pairs)

    # -- connections ---------------------------------------------------------------------

    def _open_store(self, *, new: bool = False) -> StateStore:
        conn = open_state(self.server, self.state_db, allow_empty=new)
        if conn is None:
            raise PgpatchError(f"the state database {self.state_db} was not made",
                               hint="its baseline ran without error: check the server log")
        return StateStore(conn)

    def _conn(self, database: str, user: str,
              done: str = "nothing of it ran") -> Connection:
        """The kept connection of (database, user), in the state of a new one (a patch run
        outside a pipeline left its session to be reset here: _after_patch)."""
        key = (database, user)
        conn = self.conns.get(key)
        if conn is not None and key in self.dirty:
            self.dirty.discard(key)
            from postgresqlpatches.pg.executor import reset_session

            if not reset_session(conn):
                conn.close()
        if conn is None or conn.closed:
            from postgresqlpatches.pg.state import cluster_identity

            conn = self.server.connect(database, user, autocommit=False, session_settings=True)
            self.conns[key] = conn
            self.identities[key] = cluster_identity(conn)  # now, while no patch is open
            # a new session: once it is seen by a next run, make sure the lock was still ours
            # (the next run waits for sessions it sees, wait_for_earlier_run)
            self._stop_if_lock_lost(round_trip=True, done=done)
        return conn

    def _after_patch(self, step: Step, *, reset: bool = False) -> None:
        """What a patch did to its session does not reach the next patch (docs/safety.md):
        DISCARD ALL, sent behind its COMMIT (``reset``) or before the connection's next use;
        a new connection where DISCARD ALL is not enough (role or database defaults, ...),
        for every kept connection when what changed is read by every login."""
        name = step.patch.name
        key = (name.database, name.user)
        new = self._new_session(step)
        if new is None:
            if not reset:
                self.dirty.add(key)
            return
        log.debug("%s: %s: the next patch gets a new connection", step.patch.path, new.reason)
        for k in list(self.conns) if new.every_connection else [key]:
            conn = self.conns.pop(k, None)
            if conn is not None:
                conn.close()
            self.dirty.discard(k)

    def _new_session(self, step: Step) -> NewSession | None:
        """statements.new_session_needed, once per step (a large file is searched once)."""
        from postgresqlpatches.core.statements import NewSession, new_session_needed

        path = step.patch.path
        if path not in self.new_sessions:
            # a psql baseline's statements are not parsed: it may change any login's defaults
            self.new_sessions[path] = (
                NewSession("a psql baseline", every_connection=True) if step.via_psql
                else new_session_needed(step.statements))
        return self.new_sessions[path]
    # -- the lock ------------------------------------------------------------------------

    def _stop_if_lock_lost(self, *, round_trip: bool = False,
                           done: str = "nothing of it ran") -> None:
        """A run never goes on without its lock: stop before the next step if it is gone.

        Without ``round_trip`` this only looks at the lock session's socket (no round trip):
        cheap enough for every patch.
        """
        reason = self.maint.lock_checked() if round_trip else self.maint.lock_lost()
        if reason is None:
            return
        n = len(self.result.done) if self.result is not None else 0
        applied = (f"{n} patch{'es' * (n != 1)} of this run {'were' if n != 1 else 'was'} "
                   "applied and recorded")
        step = self.current
        raise LockLost(f"the run lost its lock: {reason}; stopped here, {done}",
                       path=step.patch.path if step is not None else None,
                       hint=f"{applied}; the next run goes on from here")

    # -- settling ------------------------------------------------------------------------

    def _settle(self) -> None:
        """Unsettled records from a run that died: keep what committed, drop what did not."""
        assert self.store is not None
        deadline = time.monotonic() + self.options.lock_wait
        while True:
            records = [r for r in self.store.unsettled() if r.xid is not None]
            if not records:
                return
            status = self.maint.xact_status([r.xid for r in records if r.xid is not None])
            committed = [r.id for r in records if status.get(r.xid) == "committed"]
            aborted = [r.id for r in records if status.get(r.xid) == "aborted"]
            self.store.mark_settled(committed)
            self.store.delete(aborted)
            for r in records:
                if r.id in committed:
                    log.info("settled %s %s: its transaction committed", r.database, r.version)
                elif r.id in aborted:
                    log.info("settled %s %s: its transaction was rolled back; it runs again",
                             r.database, r.version)
            waiting = [r for r in records if status.get(r.xid) == "in progress"]
            if not waiting or time.monotonic() > deadline:
                return  # the planner reports what is left
            time.sleep(SETTLE_POLL_SECONDS)

    # -- steps ---------------------------------------------------------------------------

    def _chains(self, step: Step, following: Step) -> bool:
        """``following`` goes down the same pipeline: the loop in execute() runs it as a
        plain transaction (an APPLY step, not in the state database, not
        non-transactional) on the same connection, which ``step`` leaves to DISCARD ALL
        (not to a new connection: _after_patch)."""
        name, other = step.patch.name, following.patch.name
        return (following.action is Action.APPLY and not following.non_transactional
                and other.database != self.state_db
                and (other.database, other.user) == (name.database, name.user)
                and self._new_session(step) is None)

    def _apply_transactional(self, step: Step, following: Step | None = None) -> None:
        """Record (with the xid) before the target commits: a crash in between is settled.

        The record is written while the server runs the statements, and the COMMIT follows
        it (executor.run_transaction). If the server answers with an error, the record is
        deleted. If pgpatch stops while the COMMIT may run (a lost connection, Ctrl-C) or
        dies, the record stays unsettled and the next run asks the server what became of
        the transaction: deleting it then could drop the record of a committed patch.
        """
        from postgresqlpatches.pg.executor import (
            crash_point,
            failure,
            rollback_quietly,
            run_transaction,
        )

        store = self.store
        assert store is not None
        patch = step.patch
        conn = self._conn(patch.name.database, patch.name.user)
        # flush=False only in the target's own cluster: its COMMIT then flushes the WAL
        # that holds the record's commit too (state.cluster_identity)
        ident = self.identities.get((patch.name.database, patch.name.user))
        flush = ident is None or ident != store.identity
        record: list[int] = []
        commit_may_run = False

        def write_record(xid: int) -> None:
            nonlocal commit_may_run
            # before this COMMIT and the next patch sent behind it; a patch sent behind the
            # last one stops here too, cancelled and rolled back
            self._stop_if_lock_lost()
            try:
                with server_errors():
                    record.append(store.insert(patch, xid=xid, settled=False, flush=flush))
            except ServerError as e:
                raise PgpatchError(
                    f"cannot write the record of {patch.name.filename} in the state database "
                    f"{self.state_db}: {e.reason}",
                    hint="the patch was cancelled and rolled back, nothing of it committed; "
                         "fix the state database and run again") from e
            crash_point("after-record")
            commit_may_run = True  # run_transaction sends COMMIT next

        t0 = time.monotonic()
        sent, self.sent_ahead = self.sent_ahead is patch, None
        try:
            run_transaction(conn, patch, _as_sent(step), write_record,
                            (following.patch, _as_sent(following)) if following else None,
                            sent=sent, modes=step.transaction,
                            following_modes=following.transaction if following else (),
                            reset=self._new_session(step) is None)
        except BaseException as e:
            rollback_quietly(conn)
            self._after_patch(step)
            unknown = bool(record) and commit_may_run and not isinstance(e, PatchFailed)
            if record and not unknown:
                _forget_record(store, record[0])  # the server said no, or saw no COMMIT
            may_have = ("it may have committed: the next run asks the server and settles "
                        "its record")
            if is_driver_error(e):
                error = failure(e, patch, None)
                if unknown:
                    error.hint = may_have
                raise error from e
            if unknown:  # an interrupt: the record stays unsettled (docs/safety.md)
                log.warning("%s: stopped while committing; %s", patch.path, may_have)
            raise
        if following is not None:
            self.sent_ahead = following.patch
        self._after_patch(step, reset=True)
        self.to_settle[record[0]] = (time.monotonic() - t0) * 1000.0
        crash_point("after-commit")

    def _apply_in_state(self, step: Step) -> None:
        """Patches of the state database commit with their record in one transaction."""
        from postgresqlpatches.pg.executor import rollback_quietly, run_statements, set_transaction
        from postgresqlpatches.pg.server import pin_search_path
        from postgresqlpatches.pg.state import insert_record, record_columns

        patch = step.patch
        conn = self._conn(patch.name.database, patch.name.user)
        t0 = time.monotonic()
        try:
            set_transaction(conn, step.transaction)  # first: it must precede any query
            if patch.builtin:  # pgpatch's own patch: its tables, not the caller's PGOPTIONS'
                pin_search_path(conn)
            run_statements(conn, patch, step.statements)
            if not patch.builtin:
                pin_search_path(conn)  # the record is pgpatch's own query
            columns = record_columns(conn)
            record_id = insert_record(
                conn, columns, patch, xid=None, settled=True, non_transactional=False,
                duration_ms=(time.monotonic() - t0) * 1000, statements_done=None,
                run_by=self.store.run_by if self.store else "")
            conn.commit()
        except BaseException:
            rollback_quietly(conn)
            raise
        finally:
            self._after_patch(step)
        if "checksum_version" not in columns:  # a version 1 record, before its column exists
            self.fill_later.append((record_id, patch))
        if self.store is None:
            self.store = self._open_store()
        self.store.refresh_columns()

    def _apply_non_transactional(self, step: Step) -> None:
        """Statement by statement in autocommit; progress is recorded so a rerun resumes."""
        from postgresqlpatches.core.checksums import statement_checksum
        from postgresqlpatches.pg.executor import run_statements

        assert self.store is not None
        patch = step.patch
        store = self.store
        conn = self._conn(patch.name.database, patch.name.user)
        if step.record is not None:  # resuming: the file may have been fixed since
            record_id = step.record.id
            store.set_file(record_id, patch)
        else:
            record_id = store.insert(patch, settled=False, non_transactional=True,
                                     statements_done=0)
        conn.autocommit = True
        t0 = time.monotonic()
        done = step.resume_from
        total = len(step.statements)
        # what each done statement was, so that a resume can tell an edited done part
        checksums = [statement_checksum(s.text) for s in step.statements[:done]]
        try:
            def progress(n: int) -> None:
                nonlocal done
                done = n
                checksums.append(statement_checksum(step.statements[n - 1].text))
                store.set_progress(record_id, n, statement_checksums=checksums)
                if n < total:  # each statement is a step of its own
                    self._stop_if_lock_lost(
                        done=f"statements 1-{n} of {total} ran and stay done, the next run "
                             f"resumes at statement {n + 1}")

            run_statements(conn, patch, step.statements, progress, start=step.resume_from,
                           drop_invalid_index=True)
        except PatchFailed as e:
            e.message += _what_ran(e, done, total)
            if not done:  # nothing of it stays: no record either
                store.delete([record_id])
            raise
        finally:
            conn.autocommit = False
            self._after_patch(step)
        store.set_progress(record_id, len(step.statements), settled=True,
                           duration_ms=(time.monotonic() - t0) * 1000,
                           statement_checksums=checksums)

    def _bootstrap(self, group: list[Step], reporter: Reporter, result: ApplyResult) -> None:
        """Create a database from its 00000000 scripts; on failure remove what this run made.

        Before each step its mark is recorded (when the state database exists): the largest
        database oid then and the sessions the step may open, so that the next run can prove
        a database it finds is this bootstrap's and nobody else's (planner.foreign_use)."""
        from postgresqlpatches.core.planner import REDO
        from postgresqlpatches.core.statements import connect_budget, created_role_names
        from postgresqlpatches.pg.executor import (
            crash_point,
            rollback_quietly,
            run_psql,
            run_statements,
            set_transaction,
        )

        database = group[0].patch.name.database
        is_state = database == self.state_db
        cut_short = (f"nothing of it ran; the bootstrap of {database} was cut short, the next "
                     "run drops what it left and makes it again")
        self.current = group[0]
        self._stop_if_lock_lost(round_trip=True, done="nothing of it ran")
        if any(REDO in s.flags for s in group):
            self._drop_leftover(database, group)
        stale = [s.record.id for s in group if s.record is not None]
        if self.store is not None and stale:
            self.store.delete(stale)  # an earlier attempt's marks: new ones follow, step by step
        roles_before = self.maint.roles()
        role_names: set[str] = set()
        begun: list[tuple[int, int | None]] = []  # each begun step's (oid horizon, budget)
        users: set[str] = set()
        marks: list[int] = []
        took_ms: list[float] = []  # status shows how long each bootstrap script took
        try:
            for step in group:
                if step is not group[0]:
                    self.current = step
                    self._stop_if_lock_lost(round_trip=True, done=cut_short)
                t0 = time.monotonic()
                reporter.step_started(step)
                patch = step.patch
                if step.via_psql:
                    budget = connect_budget(patch.text)
                else:  # one session per user, kept for the whole run (_conn)
                    budget = int(patch.name.user not in users)
                    users.add(patch.name.user)
                begun.append((self.maint.largest_database_oid(), budget))
                role_names |= created_role_names(patch.text)
                if self.store is not None and not is_state:
                    marks.append(self.store.insert(patch, settled=False, statements_done=0,
                                                   mark=begun[-1]))
                if step.via_psql:
                    try:
                        run_psql(self.server, patch, self.maint.verifier)
                    finally:
                        self._after_patch(step)
                else:
                    conn = self._conn(database, patch.name.user, done=cut_short)
                    # a database being made is all or nothing anyway (dropped if a script
                    # fails), so a non-transactional script runs statement by statement
                    conn.autocommit = step.non_transactional
                    try:
                        set_transaction(conn, step.transaction)
                        run_statements(conn, patch, step.statements)
                        conn.commit()
                    except BaseException:
                        rollback_quietly(conn)
                        raise
                    finally:
                        if step.non_transactional and not conn.closed:
                            conn.autocommit = False
                        self._after_patch(step)
                seconds = time.monotonic() - t0
                took_ms.append(seconds * 1000)
                reporter.step_done(step, seconds)
                result.done.append((step, seconds))
        except BaseException as e:
            if not isinstance(e, LockLost):  # without the lock, leave it for the next run
                self._undo_bootstrap(database, begun, roles_before, role_names, marks, e)
            raise
        crash_point("after-bootstrap")  # every step ran, none is recorded as done yet
        if is_state:
            self.store = self._open_store(new=True)
            for step, ms in zip(group, took_ms, strict=True):
                self.fill_later.append((self.store.insert(step.patch, duration_ms=ms),
                                        step.patch))
        elif self.store is not None:
            self.store.mark_settled(marks, dict(zip(marks, took_ms, strict=True)))

    def _drop_leftover(self, database: str, group: list[Step]) -> None:
        """An interrupted bootstrap is made anew: its database goes, once more checked to be
        its own and unused (the plan checked it too; other steps may have run since)."""
        from postgresqlpatches.core.planner import foreign_use, interrupted_problem

        records = sorted((s.record for s in group if s.record is not None),
                         key=lambda r: r.minor)
        leftover = self.maint.leftover_when_idle(database)
        if leftover is not None and database != self.state_db:
            refusal = foreign_use(leftover, [(r.oid_horizon, r.session_budget) for r in records])
            if refusal is not None:
                problem = interrupted_problem(database, refusal, group[0].patch.path)
                raise PgpatchError(problem.message, path=problem.path, hint=problem.hint)
        log.warning("the last bootstrap of %s was interrupted: dropping the database it "
                    "left and making it again", database)
        self.maint.drop_database(database)

    def _undo_bootstrap(self, database: str, begun: list[tuple[int, int | None]],
                        roles_before: set[str], role_names: set[str], marks: list[int],
                        error: BaseException) -> None:
        """Remove what this bootstrap made, and only that: its database, if provably the one
        it made (it did not exist when the bootstrap began) and nobody else used it; the
        roles that are new and that its files create by name (someone else's new role is
        not among them)."""
        from postgresqlpatches.core.planner import made_elsewhere, used_elsewhere

        for key in [k for k in self.conns if k[0] == database]:
            self.conns.pop(key).close()
        message = error.message if isinstance(error, PgpatchError) else ""
        try:
            with server_errors():
                leftover = self.maint.leftover_when_idle(database)  # our own sessions end
                not_ours = kept = None
                if leftover is not None:
                    not_ours = made_elsewhere(leftover, begun) or (
                        "another one made it" if f'database "{database}" already exists' in message
                        else None)
                    kept = not_ours or used_elsewhere(leftover, begun)
                if kept is None:
                    try:
                        self.maint.drop_database(database)
                    except PgpatchError as e:
                        kept = e.message
                roles = sorted((self.maint.roles() - roles_before) & role_names)
                if kept is None:
                    for role in roles:
                        self.maint.drop_role(role)
                if self.store is not None and (kept is None or not_ours is not None):
                    self.store.delete(marks)  # a database someone else made is not our leftover
                if not isinstance(error, PgpatchError):
                    return
                if kept is not None:
                    error.hint = (f"pgpatch left database {database} as it is ({kept}), and the "
                                  f"roles its bootstrap created ({', '.join(roles) or 'none'}): "
                                  "drop them by hand if they are this bootstrap's, then run again")
                elif error.sqlstate == DUPLICATE_OBJECT:
                    error.hint = ("it exists already (made by hand, or left by an interrupted "
                                  "bootstrap): drop it, or create it only where missing, as the "
                                  "baselines of `pgpatch baseline` do")
                elif not error.hint:
                    error.hint = (f"nothing of {database} was kept: pgpatch dropped the database "
                                  "and the roles its bootstrap created; fix the file and run again")
        except ServerError as e:
            if isinstance(error, PgpatchError):
                error.hint = (f"cleaning up failed too ({e.text}): drop database "
                              f"{database} by hand before the next run")


def _what_ran(error: PatchFailed, done: int, total: int) -> str:
    """What a failed non-transactional patch leaves, for the end of its error message."""
    failed = done + 1
    if error.dropped_index:
        said = (f"; statement {failed} of {total} had already made the index "
                f"{error.dropped_index}, left invalid: pgpatch dropped it")
        if not done:
            return said + ", so nothing of the file is left and the next run runs it again"
    elif error.left_index:
        said = (f"; statement {failed} of {total} left the invalid index {error.left_index}, "
                f"which pgpatch did not drop ({error.left_reason})")
        error.hint = (f"drop it (DROP INDEX CONCURRENTLY {error.left_index}) before the next "
                      "run, or the statement fails again with \"already exists\"")
        if not done:
            return said + "; no other statement of it ran"
    else:
        if not done:
            return "; no statement of it ran"
        said = ""
    return (said + f"; statements 1-{done} of {total} ran and stay done, the next run resumes "
            f"at statement {failed}")


def _as_sent(step: Step) -> Sequence[Statement]:
    """A transactional patch's statements as sent: one that makes temp objects drops them
    last, inside its own transaction (statements.DISCARD_TEMP says why)."""
    from postgresqlpatches.core.statements import DISCARD_TEMP, creates_temp_objects

    if creates_temp_objects(step.statements):
        return (*step.statements, DISCARD_TEMP)
    return step.statements


def _forget_record(store: StateStore, record_id: int) -> None:
    """The patch did not commit: its record goes (if the state server is gone too, the
    record stays unsettled and the next run drops it: its transaction rolled back)."""
    try:
        with server_errors():
            store.delete([record_id])
    except ServerError as e:
        log.debug("record %s left for the next run to settle: %s", record_id, e.text)


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

        facts = _read_server(options, server, ())
        return Status(list(facts.records), None, facts.state_exists,
                      record_problems(facts, options.state_db))
    patches, problems = discover(options.globs, state_db=options.state_db)
    patches, problems = _expand_groups_read_only(options, server, patches, problems)
    facts = _read_server(options, server, patches)
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
        store = _state_store(server, options.state_db, existing)
        if store is None:
            return 0
        try:
            return store.forget_database(database)
        finally:
            store.close()
    finally:
        maint.close()
