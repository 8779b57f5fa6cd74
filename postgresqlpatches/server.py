"""Connections: libpq settings, passwords from the environment, database facts, the run lock."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from postgresqlpatches.errors import ConnectionFailed, LockTimeout, PgpatchError

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("pgpatch")

MAINTENANCE_DB = "postgres"
SUPERUSER = "postgres"
DEFAULT_PREFIX = "POSTGRESQL_"
# pg_advisory_lock(int, int): one run at a time per server ("pgpt", 1).
LOCK_KEY = (0x70677074, 1)
RUN_APPLICATION_NAME = "pgpatch apply"
"""The application_name of every session an apply run works in (never its lock's session):
a run that takes the lock first waits until no such session of an earlier run is left."""
LOCK_SESSION_TIMEOUTS = (("statement_timeout", 0), ("idle_in_transaction_session_timeout", 0),
                         ("idle_session_timeout", 140000), ("transaction_timeout", 170000))
"""Server settings that end a session, with the first server_version that has each: the
lock's session turns them off for itself, for it idles while the patches run."""
# TCP keepalives for the lock's session, so that a dead peer or a firewall dropping idle
# connections shows as a lost lock within about a minute (libpq's parameters).
LOCK_SESSION_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30",
                           "keepalives_interval": "10", "keepalives_count": "3"}
EARLIER_RUN_POLL_SECONDS = 0.1
EARLIER_RUN_QUIET_SECONDS = 0.5
"""A run that has just released the lock may still be closing its sessions: no warning for
that."""


def normalise_prefix(prefix: str) -> str:
    """``-p MYAPP`` and ``-p MYAPP_`` mean the same: variables are MYAPP_<USER>_PASSWORD."""
    return prefix if not prefix or prefix.endswith("_") else prefix + "_"


def password_variable(prefix: str, user: str) -> str:
    return f"{normalise_prefix(prefix)}{user.upper()}_PASSWORD"


@dataclass
class Server:
    """How to reach the server: one host and port for every connection, psycopg and psql alike."""

    host: str | None = None
    port: int | None = None
    prefix: str = DEFAULT_PREFIX
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
    application_name: str = "pgpatch"
    """Of every session but the lock's; RUN_APPLICATION_NAME while an apply run works."""
    _warned: set[str] = field(default_factory=set)

    def password(self, user: str) -> str:
        """``{PREFIX}{USER}_PASSWORD``, else the user name (the original tool's rule), warned."""
        var = password_variable(self.prefix, user)
        value = self.environ.get(var)
        if value is not None:
            return value
        if user not in self._warned:
            self._warned.add(user)
            log.warning("%s is not set: using the user name as %s's password", var, user)
        return user

    def where(self) -> str:
        host = self.host or self.environ.get("PGHOST") or "the default host"
        port = self.port or self.environ.get("PGPORT") or "5432"
        return f"{host}:{port}"

    def libpq_params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.host:
            params["host"] = self.host
        if self.port:
            params["port"] = str(self.port)
        return params

    def connect(self, dbname: str, user: str, *, autocommit: bool = True,
                session_settings: bool = False, application_name: str | None = None,
                keepalives: bool = False) -> psycopg.Connection:
        """One way to open a connection; login failures become one clear line."""
        import psycopg

        options = []
        if session_settings and self.lock_timeout_ms is not None:
            options.append(f"-c lock_timeout={int(self.lock_timeout_ms)}")
        if session_settings and self.statement_timeout_ms is not None:
            options.append(f"-c statement_timeout={int(self.statement_timeout_ms)}")
        kwargs: dict[str, object] = dict(self.libpq_params())
        if options:
            kwargs["options"] = " ".join(options)
        if keepalives:
            kwargs.update(LOCK_SESSION_KEEPALIVES)
        try:
            conn = psycopg.connect(
                dbname=dbname, user=user, password=self.password(user),
                autocommit=autocommit, prepare_threshold=None,
                application_name=application_name or self.application_name,
                connect_timeout=self._connect_timeout(), **kwargs,
            )
        except psycopg.OperationalError as e:
            raise self._connect_error(e, dbname, user) from e
        return conn

    def _connect_timeout(self) -> int:
        return int(self.environ.get("PGCONNECT_TIMEOUT") or 10)

    def _connect_error(self, e: Exception, dbname: str, user: str) -> PgpatchError:
        reason = connection_reason(e)
        hint = None
        sqlstate = getattr(getattr(e, "diag", None), "sqlstate", None)
        if "password authentication failed" in reason or sqlstate == "28P01":
            hint = f"set {password_variable(self.prefix, user)} to {user}'s password"
        elif "does not exist" in reason and "role" in reason:
            hint = f"create the role {user} (usually in the database's 0000 baseline)"
        elif "Connection refused" in reason or "could not translate" in reason:
            hint = "check PGHOST/PGPORT (or --host/--port) and that the server is running"
        return ConnectionFailed(
            f"cannot connect to database {dbname!r} as {user!r} at {self.where()}: {reason}",
            hint=hint,
        )

    def psql_environment(self, user: str, database: str, usernames: set[str]) -> dict[str, str]:
        """Environment for psql: the password only here, never on its command line."""
        env = dict(os.environ)
        env.update(self.environ)
        env["PGPASSWORD"] = self.password(user)
        env["PGAPPNAME"] = self.application_name  # a run's psql is one of its sessions
        env.pop("PGDATABASE", None)
        prefix = normalise_prefix(self.prefix)
        names = {n.upper() for n in usernames}
        names.update(k[len(prefix):-len("_PASSWORD")] for k in self.environ
                     if prefix and k.startswith(prefix) and k.endswith("_PASSWORD")
                     and len(k) > len(prefix) + len("_PASSWORD"))
        for name in names:
            env[f"PGPATCH_{name}_PASSWORD"] = self.environ.get(
                f"{prefix}{name}_PASSWORD", name.lower())
        # the original tool's baselines read the password of the role named like the database
        env["PATCHES_POSTGRESQL_TEMPORARY_USER_PASSWORD"] = self.environ.get(
            password_variable(self.prefix, database), database)
        return env


def connection_reason(e: Exception) -> str:
    """libpq's message without its "connection to server at ... failed:" prefixes, one line."""
    text = " ".join(part.strip() for part in str(e).split("\n") if part.strip())
    text = re.sub(r'^(connection failed: )?(connection to server (at|on) .*? failed: )+', "",
                  text)
    return re.sub(r"^(FATAL|ERROR):\s+", "", text) or type(e).__name__


class Maintenance:
    """The superuser session on the maintenance database: facts about the server, and the lock."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.conn = server.connect(MAINTENANCE_DB, SUPERUSER, application_name="pgpatch",
                                   keepalives=True)
        self.ended: str | None = None
        """The server's last word to this session (its FATAL message), once it ended it."""
        self.conn.add_notice_handler(self._on_notice)

    def _on_notice(self, diag: psycopg.errors.Diagnostic) -> None:
        # libpq hands an error that arrives on an idle session to the notice handler
        if diag.severity_nonlocalized in ("FATAL", "PANIC"):
            self.ended = diag.message_primary or "the server ended the session"

    def close(self) -> None:
        self.conn.close()

    def existing_databases(self, names: set[str]) -> set[str]:
        rows = self.conn.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [sorted(names)]
        ).fetchall()
        return {r[0] for r in rows}

    def roles(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT rolname FROM pg_roles").fetchall()}

    def server_version(self) -> int:
        return int(self.conn.info.server_version)

    def lock(self, wait_seconds: float) -> None:
        """Wait up to ``wait_seconds`` for the run lock; it ends with this session, even on kill.

        The session first turns off, for itself, the server timeouts that would end it while
        it idles (in the same round trip). Once the lock is taken, what is left of an earlier
        run that lost its lock is waited for too (same budget): see wait_for_earlier_run.
        """
        import psycopg
        from psycopg import sql

        deadline = time.monotonic() + wait_seconds
        version = self.server_version()
        keep_alive = sql.SQL(", ").join(
            sql.SQL("set_config({}, '0', false)").format(sql.Literal(name))
            for name, since in LOCK_SESSION_TIMEOUTS if version >= since)
        row = self.conn.execute(
            sql.SQL("SELECT pg_try_advisory_lock(%s, %s), {}").format(keep_alive), LOCK_KEY
        ).fetchone()
        if not (row and row[0]):
            log.warning("another pgpatch run%s holds the lock: waiting up to %g s (--lock-wait)",
                        self._lock_holder(), wait_seconds)
            ms = max(1, int(wait_seconds * 1000))
            try:
                self.conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{ms}ms")))
                self.conn.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
                self.conn.execute("RESET lock_timeout")
            except psycopg.errors.LockNotAvailable as e:
                holder = self._lock_holder()
                raise LockTimeout(
                    f"another pgpatch run{holder} still holds the lock after {wait_seconds:g} s",
                    hint="wait for it to finish, or raise --lock-wait",
                ) from e
        self.wait_for_earlier_run(deadline, wait_seconds)

    def wait_for_earlier_run(self, deadline: float, wait_seconds: float) -> None:
        """Under the lock, wait until no session of an earlier apply run is left.

        A run whose lock's session ended (a DBA, a network cut) may still be inside a step:
        it stops before its next one. Until its sessions are gone, going on could run that
        step a second time, or drop the database its bootstrap is building. Killed runs
        count too: the server may run a killed run's last statement to its end.
        """
        started = time.monotonic()
        warned = False
        while True:
            pids = [r[0] for r in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND pid <> pg_backend_pid() ORDER BY pid", [RUN_APPLICATION_NAME]).fetchall()]
            if not pids:
                return
            which = f"server pid{'s' * (len(pids) > 1)} {', '.join(map(str, pids))}"
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"an earlier pgpatch run lost its lock but is still working ({which}) "
                    f"after {wait_seconds:g} s",
                    hint="it stops before its next step: wait for it, or raise --lock-wait; "
                         "end those sessions only if that run hangs")
            if not warned and time.monotonic() - started >= EARLIER_RUN_QUIET_SECONDS:
                log.warning("an earlier pgpatch run is still working (%s) although it lost its "
                            "lock: waiting up to %g s for it to stop (--lock-wait)",
                            which, wait_seconds)
                warned = True
            time.sleep(EARLIER_RUN_POLL_SECONDS)

    def lock_lost(self) -> str | None:
        """Why the lock is gone, or None while this session holds it; no round trip.

        The server sends an idle session nothing until it ends it (its FATAL message, then
        the end of the stream): a socket with nothing to read is a session that lives, and
        the lock lives with it. Anything to read is confirmed with a round trip.
        """
        import select

        import psycopg

        pg = self.conn.pgconn
        if self.ended is None and pg.status == psycopg.pq.ConnStatus.OK:
            try:
                readable, _, _ = select.select([pg.socket], [], [], 0)
            except (OSError, ValueError, psycopg.Error):
                readable = [True]
            if not readable:
                return None
        return self.lock_checked()

    def lock_checked(self) -> str | None:
        """lock_lost() with a round trip: for moments that cost a round trip anyway."""
        import psycopg

        try:
            row = self.conn.execute(
                """SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory'
                   AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND granted)""",
                LOCK_KEY).fetchone()
        except psycopg.Error as e:
            return ("its session on the maintenance database ended "
                    f"({self.ended or connection_reason(e)})")
        return None if row and row[0] else "it was released in its session"

    def _lock_holder(self) -> str:
        row = self.conn.execute(
            """SELECT a.pid, a.client_addr::text, a.backend_start FROM pg_locks l
               JOIN pg_stat_activity a USING (pid)
               WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s
                 AND l.granted LIMIT 1""", LOCK_KEY).fetchone()
        if not row:
            return ""
        return f" (server pid {row[0]}, started {row[2]:%Y-%m-%d %H:%M:%S})"

    def xact_status(self, xids: list[int]) -> dict[int, str | None]:
        """pg_xact_status of target transactions: committed, aborted, in progress, or None."""
        if not xids:
            return {}
        rows = self.conn.execute(
            "SELECT x, pg_xact_status(x::text::xid8) FROM unnest(%s::bigint[]) AS x", [xids]
        ).fetchall()
        return {int(x): s for x, s in rows}
