"""What each statement of a patch locks and rewrites, seen on rehearse's copy (runner.Observer).

In a patch's transaction a lock is held until the commit, so a query sent behind each
statement, in the same transaction, sees it in pg_locks; the relations' relfilenodes, read
before the first statement, tell which tables a statement gave a new file (a rewrite). A
statement outside a transaction (CREATE INDEX CONCURRENTLY, VACUUM) holds its locks only
while it runs: a second session watches it, and holds a snapshot open meanwhile, which a
statement that waits for older snapshots (CREATE INDEX CONCURRENTLY, REINDEX CONCURRENTLY)
waits for, holding its lock, until the watcher has seen it.

Only ever pointed at the copy: the probes run inside the patches' transactions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from postgresqlpatches.core.rehearsal import Relation, StatementLocks, statement_locks
from postgresqlpatches.core.statements import DISCARD_TEMP, Statement

if TYPE_CHECKING:
    import psycopg

    from postgresqlpatches.core.discovery import Patch

log = logging.getLogger("pgpatch")

RELATIONS = """
SELECT c.oid::int8, c.relfilenode::int8, c.relkind::text, format('%I.%I', n.nspname, c.relname),
       (SELECT format('%I.%I', tn.nspname, t.relname)
        FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
        JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
        WHERE i.indexrelid = c.oid)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid >= 16384 AND n.nspname <> 'pg_toast'
"""
"""Every relation of the database beyond initdb's, but TOAST tables and their indexes (their
table shows)."""

_LOCKS = """
SELECT l.relation::int8, l.mode, c.relfilenode::int8
FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_class c ON c.oid = l.relation
WHERE l.pid = PID AND l.locktype = 'relation' AND l.granted AND l.relation::int8 >= 16384
  AND l.database = (SELECT oid FROM pg_catalog.pg_database
                    WHERE datname = pg_catalog.current_database())
"""
OWN_LOCKS = _LOCKS.replace("PID", "pg_catalog.pg_backend_pid()")
"""The relation locks the patch's own session holds now (sent behind each statement)."""
LOCKS_OF = _LOCKS.replace("PID", "%(pid)s")
"""... that another session holds (the watcher's query)."""

WATCH_POLL_SECONDS = 0.002
HOLD_SECONDS = 5.0
"""The watcher's snapshot is let go after this long, whether or not the statement waited for
it: a statement that does not wait for snapshots must not be held up by it for long."""


class LockWatch:
    """runner.Observer for the copy: ``connect(database)`` opens a superuser session there."""

    def __init__(self, connect: Callable[[str], psycopg.Connection[Any]]) -> None:
        self.connect = connect
        self.seen: dict[str, list[StatementLocks]] = {}
        """By patch path: each statement that ran, with what it locked."""
        self._probes: dict[int, tuple[Statement, str, Statement | None]] = {}
        self._before: dict[str, dict[int, Relation]] = {}
        self._held: dict[str, set[tuple[int, str]]] = {}
        self._filenodes: dict[str, dict[int, int]] = {}

    # -- in a transaction: a probe behind each statement

    def sent(self, patch: Patch, statements: Sequence[Statement]) -> Sequence[Statement]:
        path = patch.path
        self.seen[path] = []
        first = Statement(RELATIONS, 0, 0, "SelectStmt")
        self._probes[id(first)] = (first, path, None)
        out = [first]
        for statement in statements:
            out.append(statement)
            if statement is DISCARD_TEMP:
                continue
            probe = Statement(OWN_LOCKS, 0, 0, "SelectStmt")
            self._probes[id(probe)] = (probe, path, statement)
            out.append(probe)
        return out

    def result(self, statement: Statement, result: object) -> None:
        from psycopg import pq

        entry = self._probes.pop(id(statement), None)
        if entry is None:
            return
        _, path, of = entry
        if getattr(result, "status", None) != pq.ExecStatus.TUPLES_OK:
            return  # skipped: the patch failed before it
        rows = _rows(result)
        if of is None:
            self._start(path, rows)
        else:
            self._add(path, of.line, [(int(r[0]), str(r[1]), _int(r[2])) for r in rows])

    def _start(self, path: str, rows: Sequence[Sequence[Any]]) -> None:
        self._before[path] = {int(r[0]): Relation(str(r[3]), str(r[2]), int(r[1]), r[4])
                              for r in rows}
        self._held[path] = set()
        self._filenodes[path] = {}

    def _add(self, path: str, line: int, rows: list[tuple[int, str, int | None]]) -> None:
        if path not in self._before:
            return
        self.seen.setdefault(path, []).append(statement_locks(
            line, self._before[path], self._held[path], rows, self._filenodes[path]))

    # -- outside a transaction: a second session watches

    @contextlib.contextmanager
    def running(self, conn: psycopg.Connection[Any], patch: Patch,
                statement: Statement) -> Iterator[None]:
        import psycopg

        path = patch.path
        database = conn.info.dbname
        try:
            watcher = self.connect(database)
        except psycopg.Error as e:
            log.debug("rehearse: cannot watch %s:%s: %s", path, statement.line, e)
            yield
            return
        try:
            # each statement commits on its own: its locks end with it, and what it found
            # is what the statements before it left
            self._start(path, watcher.execute(RELATIONS).fetchall())
            before = self._before[path]
            seen: dict[tuple[int, str], int | None] = {}
            stop, ready = threading.Event(), threading.Event()
            thread = threading.Thread(target=_watch, args=(
                self.connect, database, conn.info.backend_pid, seen, stop, ready), daemon=True)
            thread.start()
            ready.wait(HOLD_SECONDS)  # its snapshot is older than the statement's
            try:
                yield
            finally:
                stop.set()
                thread.join()
            after = {int(r[0]): int(r[1]) for r in watcher.execute(RELATIONS).fetchall()}
            rows = [(oid, mode, after.get(oid)) for oid, mode in seen]
            # a table with a new file was rewritten, which takes ACCESS EXCLUSIVE (VACUUM
            # FULL, CLUSTER): so even when the watch was too slow to see that lock
            rows += [(oid, "AccessExclusiveLock", node) for oid, node in after.items()
                     if oid in before and node != before[oid].filenode]
            self._add(path, statement.line, rows)
        finally:
            watcher.close()


def _watch(connect: Callable[[str], psycopg.Connection[Any]], database: str, pid: int,
           seen: dict[tuple[int, str], int | None], stop: threading.Event,
           ready: threading.Event) -> None:
    """Poll the statement's locks until ``stop``; meanwhile hold a snapshot (HOLD_SECONDS at
    most) and let it go as soon as the statement waits for it."""
    import psycopg

    try:
        with connect(database) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT 1")  # the snapshot
            ready.set()
            holding, until = True, time.monotonic() + HOLD_SECONDS
            while not stop.is_set():
                waits = False
                if holding:  # asked first: once it waits for us, the locks below are all
                    row = conn.execute("SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))",
                                       [pid]).fetchone()
                    waits = bool(row and row[0])
                for oid, mode, node in conn.execute(LOCKS_OF, {"pid": pid}).fetchall():
                    seen[(int(oid), str(mode))] = node
                if holding and (waits or time.monotonic() > until):
                    conn.execute("COMMIT")
                    holding = False
                stop.wait(WATCH_POLL_SECONDS)
            if holding:
                conn.execute("COMMIT")
    except psycopg.Error as e:
        log.debug("rehearse: the lock watch of pid %s stopped: %s", pid, e)
    finally:
        ready.set()


def _rows(result: Any) -> list[list[Any]]:
    """A libpq result's rows as text (the probes ask for ints and names only)."""
    out = []
    for row in range(result.ntuples):
        values = []
        for col in range(result.nfields):
            value = result.get_value(row, col)
            values.append(value.decode() if value is not None else None)
        out.append(values)
    return out


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None
