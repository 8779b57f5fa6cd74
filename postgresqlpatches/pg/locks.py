"""Live locks: what sessions of a database hold or wait for on the relations pending patches
name (for ``plan``), and who blocks a patch session while it waits (for the retry line and
the give-up error of the lock budget)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from postgresqlpatches.core.locks import LiveLocks, RelationLock, Session
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.server import MAINTENANCE_DB, Server

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("pgpatch")

READ_TIMEOUT_MS = 3000
"""statement_timeout of the read: plan never hangs on a busy catalog."""
OWN_APPLICATION_NAME = "pgpatch"
"""The application_name of pgpatch's read-only sessions (plan, status): never a conflict."""

# One round trip per database: the locks on the wanted relations (kind 0, by their ordinal
# in the arrays) and the oldest open transaction (kind 1). to_regclass resolves each name as
# a query of the patch's user would (the search_path), and takes no lock; a relation that
# does not exist yet resolves to NULL and matches nothing.
_LIVE_LOCKS = """
WITH wanted AS (
    SELECT w.ord, to_regclass(CASE WHEN w.schema IS NULL THEN quote_ident(w.name)
                                   ELSE quote_ident(w.schema) || '.' || quote_ident(w.name)
                              END) AS oid
    FROM unnest(%(schemas)s::text[], %(names)s::text[]) WITH ORDINALITY AS w(schema, name, ord)
), others AS (
    SELECT a.pid, a.usename::text, a.application_name, a.state,
           extract(epoch FROM now() - a.xact_start)::float8 AS xact_seconds,
           split_part(a.query, E'\\n', 1) AS query, a.xact_start
    FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
      AND a.application_name IS DISTINCT FROM %(own)s
)
SELECT 0, w.ord, l.mode, l.granted, o.pid, o.usename, o.application_name, o.state,
       o.xact_seconds, o.query
FROM wanted w
JOIN pg_locks l ON l.locktype = 'relation' AND l.relation = w.oid
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
JOIN others o ON o.pid = l.pid
UNION ALL
(SELECT 1, NULL, NULL, NULL, o.pid, o.usename, o.application_name, o.state,
        o.xact_seconds, o.query
 FROM others o WHERE o.xact_start IS NOT NULL ORDER BY o.xact_start LIMIT 1)
"""


def read_live_locks(server: Server, database: str,
                    locks: Iterable[RelationLock]) -> LiveLocks | None:
    """The sessions of ``database`` holding or waiting for locks on the relations of
    ``locks``, and its oldest open transaction, in one read-only query as the admin role;
    None (with a warning) when the server cannot tell in time: the plan is made without."""
    import psycopg

    wanted = list(dict.fromkeys((lock.schema, lock.name) for lock in locks))
    try:
        conn = server.connect(database, server.admin_user,
                              application_name=OWN_APPLICATION_NAME)
    except PgpatchError as e:
        log.warning("lock conflicts of %s not read: %s", database, e.message)
        return None
    try:
        conn.execute("SELECT set_config('statement_timeout', %s, false)",
                     [str(READ_TIMEOUT_MS)])
        rows = conn.execute(_LIVE_LOCKS, {
            "schemas": [schema for schema, _ in wanted], "names": [name for _, name in wanted],
            "own": OWN_APPLICATION_NAME}).fetchall()
    except psycopg.Error as e:
        log.warning("lock conflicts of %s not read: %s", database,
                    (str(e).strip().splitlines() or [type(e).__name__])[0])
        return None
    finally:
        conn.close()
    held: dict[tuple[str | None, str], list[tuple[str, bool, Session]]] = {}
    oldest: Session | None = None
    for kind, ordinal, mode, granted, *session in rows:
        if kind == 1:
            oldest = _session(*session)
        else:
            held.setdefault(wanted[int(ordinal) - 1], []).append(
                (str(mode), bool(granted), _session(*session)))
    return LiveLocks({k: tuple(v) for k, v in held.items()}, oldest)


def _session(pid: int, user: str | None, application_name: str | None, state: str | None,
             xact_seconds: float | None, query: str | None) -> Session:
    return Session(int(pid), user, application_name or None, state,
                   float(xact_seconds) if xact_seconds is not None else None,
                   (query or "").strip())


_BLOCKERS = """
SELECT b.pid, b.usename::text, b.application_name, b.state,
       extract(epoch FROM now() - b.xact_start)::float8, split_part(b.query, E'\\n', 1)
FROM unnest(pg_blocking_pids(%s)) AS p(pid) JOIN pg_stat_activity b ON b.pid = p.pid
ORDER BY b.xact_start NULLS LAST, b.pid
"""


class BlockerWatcher:
    """Who blocks a patch session while it runs a try, seen from a second session of the
    admin role on the maintenance database (pg_blocking_pids): once lock_timeout has
    fired, the session no longer waits and nobody blocks it any more. The session is
    opened by the first watch and kept for the run (a retry is watched warm)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._conn: psycopg.Connection | None = None
        self._guard = threading.Lock()  # group members side by side (--jobs) share it

    def watch(self, pid: int, every_seconds: float) -> BlockerWatch:
        return BlockerWatch(self, pid, every_seconds)

    def blockers(self, pid: int) -> tuple[Session, ...]:
        with self._guard:
            if self._conn is None or self._conn.closed:
                self._conn = self.server.connect(MAINTENANCE_DB, self.server.admin_user,
                                                 application_name=OWN_APPLICATION_NAME)
            return tuple(_session(*row) for row in
                         self._conn.execute(_BLOCKERS, [pid]).fetchall())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class BlockerWatch:
    """One try, watched: a thread asks every ``every_seconds`` until the try ends (a try
    that ends sooner costs no query); the last non-empty answer is kept."""

    def __init__(self, watcher: BlockerWatcher, pid: int, every_seconds: float) -> None:
        self.watcher = watcher
        self.pid = pid
        self.every = min(max(every_seconds, 0.01), 1.0)
        self.blockers: tuple[Session, ...] = ()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pgpatch-blockers",
                                        daemon=True)

    def __enter__(self) -> BlockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        import psycopg

        try:
            while not self._done.wait(self.every):
                found = self.watcher.blockers(self.pid)
                if found:
                    self.blockers = found
        except (PgpatchError, psycopg.Error) as e:  # the error then names no blocker
            log.debug("cannot see who blocks server pid %s: %s", self.pid, e)
