"""One apply's database work under the lock: the state store, the patch sessions, settling,
and the running of each step, pipelining included (the runner only says which step is next).

A run needs at most ``CONNECTIONS`` connections to the server, whatever the number of
databases: the lock's session, the state database's, ``PATCH_SESSIONS`` patch sessions (the
least recently used is closed when a step needs another (database, user)), and one more, short
lived, for a psql baseline (docs/safety.md; the look into a database while planning is a patch
session of the admin role: look_into); a patch that waits on its lock budget's retries adds
the one that watches who blocks it. With group members side by side (``apply --jobs N``:
``RunSession.members``), ``connections(N)``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol, cast

from postgresqlpatches.errors import LockLost, PatchFailed, PgpatchError, ServerError
from postgresqlpatches.pg.errors import DUPLICATE_OBJECT, is_driver_error, server_errors
from postgresqlpatches.pg.server import Maintenance, Server
from postgresqlpatches.pg.state import STATE_USER, StateStore, open_state

if TYPE_CHECKING:
    from postgresqlpatches.core.discovery import Patch
    from postgresqlpatches.core.lockbudget import LockBudget
    from postgresqlpatches.core.locks import Session
    from postgresqlpatches.core.planner import Plan, ServerFacts, Step
    from postgresqlpatches.core.statements import NewSession, Statement
    from postgresqlpatches.pg.locks import BlockerWatcher
    from postgresqlpatches.pg.server import Connection

    LockRetry = Callable[[Step, int, int, float, Sequence[Session]], None]

log = logging.getLogger("pgpatch")

SETTLE_POLL_SECONDS = 0.1
PATCH_SESSIONS = 2
"""Patch sessions kept open at once: two, so that patches alternating between two users of
one database keep theirs."""
CONNECTIONS = 1 + 1 + PATCH_SESSIONS + 1
"""The most connections one run opens at once (the module's docstring counts them), not
counting the blocker watch of a patch that hits lock_timeout."""
MEMBER_SESSIONS = 1
"""Patch sessions each worker of ``--jobs N`` keeps (a group member is one database)."""


def connections(jobs: int) -> int:
    """The most connections a run with up to ``jobs`` group members at once opens, not
    counting the blocker watch (one, shared): CONNECTIONS, or while members run side by
    side the lock's and the state database's sessions and each worker's (RunSession.members)."""
    return max(CONNECTIONS, 1 + 1 + jobs * MEMBER_SESSIONS)


class Observer(Protocol):
    """Sees the statements of each APPLY step as they run (rehearse's lock watch); apply has
    none, and then nothing of this is called."""

    def sent(self, patch: Patch, statements: Sequence[Statement]) -> Sequence[Statement]:
        """The statements to send in one transaction, with queries of its own between them."""
        ...

    def result(self, statement: Statement, result: object) -> None:
        """The server's result of each statement ``sent`` returned, in order."""
        ...

    def running(self, conn: Connection, patch: Patch,
                statement: Statement) -> AbstractContextManager[None]:
        """Around each statement of a non-transactional patch."""
        ...


def state_store(server: Server, state_db: str, existing: set[str]) -> StateStore | None:
    """The state database's store, or None when it does not exist or is half made."""
    if state_db not in existing:
        return None
    conn = open_state(server, state_db)
    return StateStore(conn) if conn is not None else None


def read_facts(maint: Maintenance, state_db: str, existing: set[str],
               store: StateStore | None, patches: Sequence[Patch] = (),
               adopt: bool = False,
               look: Callable[[str], Connection] | None = None,
               lazy_roles: bool = False) -> ServerFacts:
    """The records and the fate of unsettled transactions, from what the caller opened: a
    state database that exists without a store is one whose bootstrap was cut short. The
    roles when there are patches: the password check and every pending patch's login need
    them (preflight.py).
    Databases without records are looked into unless ``adopt`` (planner.unrecorded_candidates),
    through ``look`` when given (Maintenance.objects_of_their_own). ``lazy_roles`` (the
    maintenance session outlives the plan): pg_roles is read only when the plan asks of a
    role other than the ones the run logs in as (server.Roles)."""
    from postgresqlpatches.core.planner import ServerFacts, unrecorded_candidates

    half_made = state_db in existing and store is None
    records = store.records() if store is not None else []
    xact = maint.xact_status([r.xid for r in records if not r.settled and r.xid is not None])
    present = existing - {state_db} if half_made else existing
    unrecorded = {} if adopt else maint.objects_of_their_own(
        unrecorded_candidates(patches, present, records, state_db), look)
    interrupted = {r.database for r in records
                   if r.major == "00000000" and not r.settled and r.xid is None}
    return ServerFacts(frozenset(present), tuple(records), xact, state_db in present,
                       frozenset({state_db}) if half_made else frozenset(),
                       _roles(maint, store, lazy_roles) if patches else None, unrecorded,
                       maint.leftovers(interrupted & present - {state_db}))


def _roles(maint: Maintenance, store: StateStore | None, lazy: bool) -> Container[str]:
    from postgresqlpatches.pg.server import Roles

    if not lazy:
        return frozenset(maint.roles())
    logged_in = [maint.server.admin_user] + ([STATE_USER] if store is not None else [])
    return Roles(maint, logged_in)


def read_server(server: Server, state_db: str, patches: Sequence[Patch],
                adopt: bool) -> ServerFacts:
    """Read-only: one maintenance session and, if it exists, one state session."""
    maint = Maintenance(server)
    store: StateStore | None = None
    try:
        existing = maint.existing_databases({p.name.database for p in patches} | {state_db})
        store = state_store(server, state_db, existing)
        return read_facts(maint, state_db, existing, store, patches, adopt)
    finally:
        if store is not None:
            store.close()
        maint.close()


class RunSession:
    """Runs the steps of one apply: owns the state store and the patch sessions (at most
    PATCH_SESSIONS, one per (database, user)), keeps what a patch did to its session from the
    next patch, and sends a patch down the pipeline behind the one before it when it can."""

    def __init__(self, server: Server, maint: Maintenance, state_db: str,
                 lock_wait: float, budget: LockBudget | None = None,
                 on_retry: LockRetry | None = None, observer: Observer | None = None) -> None:
        self.server = server
        self.observer = observer  # rehearse's: what each statement did on the copy
        self.budget = budget  # None: a lock timeout is an error at once (baseline's run)
        self.on_retry = on_retry  # told of each retry (the runner's reporter)
        self.watcher: BlockerWatcher | None = None  # opened by the first watched try
        self.maint = maint
        self.state_db = state_db
        self.lock_wait = lock_wait
        self.store: StateStore | None = None
        self.conns: dict[tuple[str, str], Connection] = {}  # least recently used first
        self.identities: dict[tuple[str, str], tuple[object, ...] | None] = {}
        # kept connections whose last patch's session is not reset yet (_after_patch)
        self.dirty: set[tuple[str, str]] = set()
        self.new_sessions: dict[str, NewSession | None] = {}  # by path: _new_session
        self.sent_statements: dict[str, Sequence[Statement]] = {}  # by path: _observed
        self.to_settle: dict[int, float] = {}  # record id: milliseconds
        self.sent_ahead: Patch | None = None  # sent behind the last COMMIT (run_transaction)
        self.fill_later: list[tuple[int, Patch]] = []  # state bootstrap records, pre-upgrade
        self.following: dict[str, Step] = {}  # by path: the pending step after it
        self.applied = 0  # steps of this run done (the lock-lost message counts them)
        self.current: Step | None = None  # the step about to run or running
        self.sessions = PATCH_SESSIONS  # patch sessions kept open at once (_conn)

    # -- the run's life ------------------------------------------------------------------

    def open(self, databases: set[str]) -> set[str]:
        """Which of ``databases`` (and the state database) exist; opens the state store and
        settles the records an earlier run left."""
        existing = self.maint.existing_databases(databases | {self.state_db})
        self.store = state_store(self.server, self.state_db, existing)
        if self.store is not None:
            self._settle()
        return existing

    def begin(self, pending: Sequence[Step]) -> None:
        """The steps about to run, in order; the lock was needed for reading them: still
        there?"""
        self.following = {a.patch.path: b for a, b in zip(pending, pending[1:], strict=False)}
        if pending:
            self.current = pending[0]
            self._stop_if_lock_lost(round_trip=True)

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
            if self.watcher is not None:
                self.watcher.close()
            for conn in self.conns.values():
                conn.close()
            if self.store is not None:
                self.store.close()

    def fill_checksums(self, plan: Plan) -> None:
        """Records of unchanged patches made before checksums, or with an older checksum
        version, or before a comment was edited, get the checksums of today's file."""
        from postgresqlpatches.core.planner import record_is_current

        pairs = [(s.record.id, s.patch) for s in plan.steps
                 if s.record is not None and not record_is_current(s)] + self.fill_later
        if pairs and self.store is not None:
            self.store.refresh_columns()
            self.store.write_checksums(pairs)

    def look_into(self, database: str) -> Connection:
        """A session of ``database`` for the admin role to read it while planning: a patch
        session of the run (_conn), so that the database's patches run as that role need no
        login of their own. The caller leaves it idle (rolls back what it read)."""
        return self._conn(database, self.server.admin_user)

    # -- one step ------------------------------------------------------------------------

    def ready(self, step: Step) -> None:
        """Before ``step`` is reported as started: stop if the lock is gone (a step already
        sent down the pipeline is running: its record checks)."""
        self.current = step
        if self.sent_ahead is not step.patch:
            self._stop_if_lock_lost()

    def run(self, step: Step) -> None:
        """Run one APPLY step and record it (never a bootstrap: see bootstrap)."""
        from postgresqlpatches.core.outcomes import chains

        self.current = step
        if step.patch.name.database == self.state_db:
            self._apply_in_state(step)
        elif step.non_transactional:
            self._apply_non_transactional(step)
        else:
            following = self.following.get(step.patch.path)
            if following is not None and not chains(step, following, self.state_db,
                                                    self._new_session(step)):
                following = None
            self.retried(step, lambda: self._apply_transactional(step, following))
        self.applied += 1

    def _observed(self, step: Step) -> Sequence[Statement]:
        """What goes down the pipeline: as_sent, with an observer's queries between. Made
        once per step: a patch sent behind the one before was made then, and is taken here
        (an observer's ``sent`` is asked once per statement list it sends)."""
        from postgresqlpatches.core.outcomes import as_sent

        made = self.sent_statements.pop(step.patch.path, None)
        if made is not None:
            return made
        statements = as_sent(step, self.state_db)
        return (self.observer.sent(step.patch, statements) if self.observer is not None
                else statements)

    def _observed_ahead(self, step: Step) -> Sequence[Statement]:
        """_observed for a patch sent behind the one before it, kept for its own run."""
        statements = self.sent_statements[step.patch.path] = self._observed(step)
        return statements

    # -- the lock budget -----------------------------------------------------------------

    def retried(self, step: Step, attempt: Callable[[], None], *,
                may_retry: Callable[[], bool] = lambda: True, watch: bool = False,
                done: Callable[[], str] = lambda: "nothing of it ran") -> None:
        """Run ``attempt`` (one try of a patch, or of what is left of a non-transactional
        one) until it does not hit lock_timeout (SQLSTATE 55P03), within the lock budget.

        A try that hits it is rolled back by ``attempt`` (a transactional patch leaves no
        record) and made again, on a session reset to a new one's state, after a backoff
        with jitter; each retry is reported. Giving up re-raises the last error, which then
        names the sessions that blocked the try (seen from a second session while it
        waited: ``watch`` on every try, else on the tries that may be the last one).
        ``done``: what of the patch stays done, should the run's lock be gone at a retry."""
        from postgresqlpatches.core.outcomes import gave_up
        from postgresqlpatches.pg.errors import LOCK_NOT_AVAILABLE
        from postgresqlpatches.pg.locks import BlockerWatch, BlockerWatcher

        budget = self.budget
        if budget is None:
            attempt()
            return
        started = time.monotonic()
        retry = 0
        name = step.patch.name
        while True:
            seen: BlockerWatch | None = None
            if watch or retry or not budget.retries:
                pid = int(self._conn(name.database, name.user).info.backend_pid)
                bounds = [budget.timeout_ms, budget.concurrent_timeout_ms if watch else None]
                ms = min((b for b in bounds if b), default=1000)
                if self.watcher is None:
                    self.watcher = BlockerWatcher(self.server)
                seen = self.watcher.watch(pid, every_seconds=ms / 4000)
            try:
                if seen is None:
                    attempt()
                else:
                    with seen:
                        attempt()
                return
            except PatchFailed as e:
                if e.sqlstate != LOCK_NOT_AVAILABLE:
                    raise
                blockers = seen.blockers if seen is not None else ()
                wait = budget.backoff(retry + 1)
                elapsed = time.monotonic() - started
                total = budget.total_seconds
                if retry >= budget.retries or not may_retry() or (
                        total is not None and elapsed + wait > total):
                    e.message += gave_up(budget, retry, elapsed, blockers, may_retry())
                    if not e.hint:
                        e.hint = ("the next apply goes on from here: wait for the blocking "
                                  "session to end (or end it), or give the patch more time "
                                  "with --lock-timeout and --lock-retries")
                    raise
            retry += 1
            if self.on_retry is not None:
                self.on_retry(step, retry, budget.retries, wait, blockers)
            log.debug("%s: lock timeout, retry %d of %d in %.2f s", step.patch.path, retry,
                      budget.retries, wait)
            time.sleep(wait)
            self._stop_if_lock_lost(done=done())

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
        outside a pipeline left its session to be reset here: _after_patch). Opening one
        closes the least recently used beyond PATCH_SESSIONS."""
        key = (database, user)
        conn = self.conns.pop(key, None)
        if conn is not None:
            self.conns[key] = conn  # the most recently used now
        if conn is not None and key in self.dirty:
            self.dirty.discard(key)
            from postgresqlpatches.pg.executor import reset_session

            if not reset_session(conn):
                conn.close()
        if conn is None or conn.closed:
            from postgresqlpatches.pg.state import cluster_identity

            self.conns.pop(key, None)
            while len(self.conns) >= self.sessions:  # the least recently used goes
                self._close(next(iter(self.conns)))
            conn = self.server.connect(database, user, autocommit=False, session_settings=True)
            self.conns[key] = conn
            self.identities[key] = cluster_identity(conn)  # now, while no patch is open
            # a new session: once it is seen by a next run, make sure the lock was still ours
            # (the next run waits for sessions it sees, wait_for_earlier_run)
            self._stop_if_lock_lost(round_trip=True, done=done)
        return conn

    def _close(self, *keys: tuple[str, str]) -> None:
        for key in keys:
            conn = self.conns.pop(key, None)
            if conn is not None:
                conn.close()
            self.dirty.discard(key)
            self.identities.pop(key, None)

    def _opens_session(self, database: str, user: str) -> bool:
        """Whether a step of (database, user) opens a session (a bootstrap's mark counts them)."""
        conn = self.conns.get((database, user))
        return conn is None or conn.closed

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
        self._close(*(list(self.conns) if new.every_connection else [key]))

    def _new_session(self, step: Step) -> NewSession | None:
        """outcomes.new_session_of, once per step (a large file is searched once)."""
        from postgresqlpatches.core.outcomes import new_session_of

        path = step.patch.path
        if path not in self.new_sessions:
            self.new_sessions[path] = new_session_of(step)
        return self.new_sessions[path]

    # -- the lock ------------------------------------------------------------------------

    def _stop_if_lock_lost(self, *, round_trip: bool = False,
                           done: str = "nothing of it ran") -> None:
        """A run never goes on without its lock: stop before the next step if it is gone.

        Without ``round_trip`` this only looks at the lock session's socket (no round trip):
        cheap enough for every patch.
        """
        from postgresqlpatches.core.outcomes import lock_lost

        reason = self.maint.lock_checked() if round_trip else self.maint.lock_lost()
        if reason is not None:
            raise lock_lost(reason, self.current, self.applied, done)

    # -- settling ------------------------------------------------------------------------

    def _settle(self) -> None:
        """Unsettled records from a run that died: keep what committed, drop what did not."""
        assert self.store is not None
        deadline = time.monotonic() + self.lock_wait
        while True:
            records = [r for r in self.store.unsettled() if r.xid is not None]
            log.debug("settle: %d unsettled record%s of an earlier run", len(records),
                      "s" * (len(records) != 1))
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

    def _apply_transactional(self, step: Step, following: Step | None = None) -> None:
        """Record (with the xid) before the target commits: a crash in between is settled.

        The record is written while the server runs the statements, and the COMMIT follows
        it (executor.run_transaction). If the server answers with an error, the record is
        deleted. If pgpatch stops while the COMMIT may run (a lost connection, Ctrl-C) or
        dies, the record stays unsettled and the next run asks the server what became of
        the transaction: deleting it then could drop the record of a committed patch.
        """
        from postgresqlpatches.core.planner import next_run
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
                    record.append(store.insert(patch, xid=xid, settled=False, flush=flush,
                                               run=next_run(step)))
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
            run_transaction(conn, patch, self._observed(step), write_record,
                            (following.patch, self._observed_ahead(following))
                            if following else None,
                            sent=sent, modes=step.transaction,
                            following_modes=following.transaction if following else (),
                            reset=self._new_session(step) is None,
                            observe=self.observer.result if self.observer else None)
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
            if unknown and not isinstance(e, KeyboardInterrupt):  # Ctrl-C: stopped.stopped_error
                log.warning("%s: stopped while committing; %s", patch.path, may_have)
            raise
        if following is not None:
            self.sent_ahead = following.patch
        self._after_patch(step, reset=True)
        self.to_settle[record[0]] = (time.monotonic() - t0) * 1000.0
        crash_point("after-commit")

    def _apply_in_state(self, step: Step) -> None:
        """Patches of the state database commit with their record in one transaction."""
        from postgresqlpatches.core.outcomes import as_sent
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
            run_statements(conn, patch, as_sent(step, self.state_db))
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
        from postgresqlpatches.core.locks import is_concurrent
        from postgresqlpatches.core.outcomes import what_ran
        from postgresqlpatches.core.sending import sending
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
        done = sending(step, self.state_db).start
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

            concurrent_ms = self.budget.concurrent_timeout_ms if self.budget else None
            self.retried(step, lambda: run_statements(
                conn, patch, step.statements, progress, start=done, drop_invalid_index=True,
                concurrent_lock_timeout_ms=concurrent_ms,
                watch=(functools.partial(self.observer.running, conn, patch)
                       if self.observer is not None else None)),
                may_retry=lambda: not is_concurrent(step.statements[done]), watch=True,
                done=lambda: (f"statements 1-{done} of {total} ran and stay done, the next run "
                              f"resumes at statement {done + 1}") if done else
                "nothing of it ran")
        except PatchFailed as e:
            e.message += what_ran(e, done, total)
            if not done:  # nothing of it stays: no record either
                store.delete([record_id])
            raise
        finally:
            conn.autocommit = False
            self._after_patch(step)
        store.set_progress(record_id, len(step.statements), settled=True,
                           duration_ms=(time.monotonic() - t0) * 1000,
                           statement_checksums=checksums)

    # -- bootstrap -----------------------------------------------------------------------

    def bootstrap(self, group: list[Step], started: Callable[[Step], None],
                  finished: Callable[[Step, float], None]) -> None:
        """Create a database from its 00000000 scripts; on failure remove what this run made.

        Before each step its mark is recorded (when the state database exists): the largest
        database oid then and the sessions the step may open, so that the next run can prove
        a database it finds is this bootstrap's and nobody else's (planner.foreign_use).
        ``started`` and ``finished`` report each step."""
        from postgresqlpatches.core.outcomes import as_sent
        from postgresqlpatches.core.own_patches import runs_without_psql
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
        marks: list[int] = []
        took_ms: list[float] = []  # status shows how long each bootstrap script took
        try:
            for step in group:
                if step is not group[0]:
                    self.current = step
                    self._stop_if_lock_lost(round_trip=True, done=cut_short)
                t0 = time.monotonic()
                started(step)
                patch = step.patch
                if step.via_psql:
                    budget = connect_budget(patch.text)
                else:  # the session of (database, user), if it is not open (_conn)
                    budget = int(self._opens_session(database, patch.name.user))
                begun.append((self.maint.largest_database_oid(), budget))
                role_names |= created_role_names(patch.text)
                if self.store is not None and not is_state:
                    marks.append(self.store.insert(patch, settled=False, statements_done=0,
                                                   mark=begun[-1]))
                if is_state and step.via_psql:  # an admin without SUPERUSER needs this first
                    self.maint.become_member_of(STATE_USER,
                                                self.server.password(STATE_USER, database))
                if step.via_psql:
                    try:
                        if runs_without_psql(patch):
                            self._own_baseline(step, cut_short)
                        else:
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
                        run_statements(conn, patch, as_sent(step, self.state_db))
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
                self.applied += 1
                finished(step, seconds)
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

    def _own_baseline(self, step: Step, cut_short: str) -> None:
        """The state database's shipped baseline, run here as psql would run it (no psql
        process, no logins of its own): its ``\\connect`` is the session of (state
        database, the file's user) that the state patches after it run in."""
        from postgresqlpatches.pg.executor import rollback_quietly
        from postgresqlpatches.pg.server import baseline_variables
        from postgresqlpatches.pg.state import make_state_database

        patch = step.patch
        database = patch.name.database
        secrets = self.server.verifiers(
            baseline_variables(patch.text, self.server.prefix, database),
            self.maint.verifier, database)
        log.debug("running %s as psql would, without psql", patch.path)
        opened: list[Connection] = []

        def connect(dbname: str) -> Connection:
            opened.append(self._conn(dbname, patch.name.user, done=cut_short))
            return opened[-1]

        try:
            with server_errors():
                make_state_database(self.maint.conn, patch, secrets, connect)
        except BaseException:
            for conn in opened:
                rollback_quietly(conn)
            raise

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
        from postgresqlpatches.core.outcomes import undo_hint
        from postgresqlpatches.core.planner import made_elsewhere, used_elsewhere

        self._close(*[k for k in self.conns if k[0] == database])
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
                hint = undo_hint(database, kept, roles,
                                 duplicate=error.sqlstate == DUPLICATE_OBJECT, hint=error.hint)
                if hint is not None:
                    error.hint = hint
        except ServerError as e:
            if isinstance(error, PgpatchError):
                error.hint = (f"cleaning up failed too ({e.text}): drop database "
                              f"{database} by hand before the next run")

    # -- group members side by side (--jobs) ---------------------------------------------

    @contextmanager
    def members(self, jobs: int,
                on_retry: LockRetry | None = None) -> Iterator[list[MemberSession]]:
        """``jobs`` workers for group members at once, one per thread, each with its own
        patch session (MEMBER_SESSIONS): a psycopg connection is never used by two threads.
        The lock's session and the state store stay this run's, and workers call them one at
        a time (_Serialized); the blocker watch is shared too and guards its own session
        (pg/locks.py). This run's own patch sessions close first, so that the run keeps
        within connections(jobs)."""
        from postgresqlpatches.pg.locks import BlockerWatcher

        self._close(*list(self.conns))
        if self.watcher is None:
            self.watcher = BlockerWatcher(self.server)
        guard = threading.RLock()
        workers = [MemberSession(self, guard, on_retry) for _ in range(jobs)]
        try:
            yield workers
        finally:
            for worker in workers:
                worker.close()
                self.applied += worker.applied


class _Serialized:
    """A session of the run that its member workers share (the lock's, the state
    database's): every call, and every attribute read (a cached property may ask the
    server), holds the run's guard, so that one thread at a time talks on its connection;
    the lock check's look at the socket must not meet another thread's query either."""

    def __init__(self, target: object, guard: threading.RLock) -> None:
        self._target = target
        self._guard = guard

    def __getattr__(self, name: str) -> Any:
        with self._guard:
            value = getattr(self._target, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def serialized(*args: Any, **kwargs: Any) -> Any:
            with self._guard:
                return value(*args, **kwargs)

        return serialized


class MemberSession(RunSession):
    """One worker of RunSession.members: runs group members one after another in its own
    thread, on a patch session of its own, with the run's lock and state store (shared,
    _Serialized), its blocker watch (shared, guarded by itself) and the run's records to
    settle (settled by the run's close)."""

    def __init__(self, run: RunSession, guard: threading.RLock,
                 on_retry: LockRetry | None) -> None:
        super().__init__(run.server, cast(Maintenance, _Serialized(run.maint, guard)),
                         run.state_db, run.lock_wait, run.budget, on_retry, run.observer)
        if run.store is not None:
            self.store = cast(StateStore, _Serialized(run.store, guard))
        self.watcher = run.watcher
        self.to_settle = run.to_settle
        self.sessions = MEMBER_SESSIONS

    def close(self) -> None:
        """Its own patch sessions only: the rest is the run's."""
        self._close(*list(self.conns))


def _forget_record(store: StateStore, record_id: int) -> None:
    """The patch did not commit: its record goes (if the state server is gone too, the
    record stays unsettled and the next run drops it: its transaction rolled back)."""
    try:
        with server_errors():
            store.delete([record_id])
    except ServerError as e:
        log.debug("record %s left for the next run to settle: %s", record_id, e.text)
