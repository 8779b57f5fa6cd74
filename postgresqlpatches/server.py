"""Connections: libpq settings, passwords from the environment, database facts, the run lock."""

from __future__ import annotations

import logging
import os
import re
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


def normalise_prefix(prefix: str) -> str:
    """``-p MYAPP`` and ``-p MYAPP_`` mean the same: variables are MYAPP_<USER>_PASSWORD."""
    return prefix if not prefix or prefix.endswith("_") else prefix + "_"


def password_variable(prefix: str, user: str) -> str:
    return f"{normalise_prefix(prefix)}{user.upper()}_PASSWORD"


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
HOST_TAKES = ("a host name, an IP address or a socket folder, not a connection URI or "
              "conninfo string (split it: the host to --host or PGHOST, the port to --port or "
              "PGPORT, passwords to {PREFIX}{USER}_PASSWORD)")


def host_problem(host: str) -> str | None:
    """Why a --host or PGHOST value is not a host: a URI or a conninfo string may carry a
    password, so the value itself is never echoed."""
    if _URI.match(host.strip()) or "=" in host:
        return HOST_TAKES
    return None


def redact_passwords(text: str) -> str:
    """A password that reached a message anyway (in a URI or ``password=...``) becomes ***."""
    text = re.sub(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", r"\1***", text,
                  flags=re.IGNORECASE)


@dataclass
class Server:
    """How to reach the server: one host and port for every connection, psycopg and psql alike."""

    host: str | None = None
    port: int | None = None
    prefix: str = DEFAULT_PREFIX
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
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
                session_settings: bool = False) -> psycopg.Connection:
        """One way to open a connection; login failures become one clear line."""
        import psycopg

        env_host = self.environ.get("PGHOST")
        if not self.host and env_host and host_problem(env_host):
            raise ConnectionFailed(f"PGHOST: expected {HOST_TAKES}")
        options = []
        if session_settings and self.lock_timeout_ms is not None:
            options.append(f"-c lock_timeout={int(self.lock_timeout_ms)}")
        if session_settings and self.statement_timeout_ms is not None:
            options.append(f"-c statement_timeout={int(self.statement_timeout_ms)}")
        kwargs: dict[str, object] = dict(self.libpq_params())
        if options:
            kwargs["options"] = " ".join(options)
        try:
            conn = psycopg.connect(
                dbname=dbname, user=user, password=self.password(user),
                autocommit=autocommit, prepare_threshold=None,
                application_name="pgpatch", connect_timeout=self._connect_timeout(), **kwargs,
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
        elif "Connection refused" in reason:
            hint = "check PGHOST/PGPORT (or --host/--port) and that the server is running"
        elif unresolved := re.search(r"""(?:failed to resolve host|could not translate host """
                                     r"""name) ['"]([^'"]*)['"]""", reason):
            hint = (f"the host name {unresolved.group(1)} does not resolve to an address: "
                    "check --host or PGHOST for a typo")
        elif sock := re.search(r'on socket "([^"]*)" failed: No such file', str(e)):
            hint = (f"no server listens on the socket {sock.group(1)}: start the server, or "
                    "give --host (or PGHOST) the folder its socket is in, or its host name, "
                    "and --port (or PGPORT)")
        return ConnectionFailed(redact_passwords(
            f"cannot connect to database {dbname!r} as {user!r} at {self.where()}: {reason}"),
            hint=hint,
        )

    def psql_environment(self, user: str, database: str, usernames: set[str]) -> dict[str, str]:
        """Environment for psql: the password only here, never on its command line."""
        env = dict(os.environ)
        env.update(self.environ)
        env["PGPASSWORD"] = self.password(user)
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
    text = re.sub(r'^(connection failed: |connection is bad: )?'
                  r'(connection to server (at|on) .*? failed: )+', "", text)
    return re.sub(r"^(FATAL|ERROR):\s+", "", text) or type(e).__name__


class Maintenance:
    """The superuser session on the maintenance database: facts about the server, and the lock."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.conn = server.connect(MAINTENANCE_DB, SUPERUSER)

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
        """Wait up to ``wait_seconds`` for the run lock; it ends with this session, even on kill."""
        import psycopg
        from psycopg import sql

        row = self.conn.execute("SELECT pg_try_advisory_lock(%s, %s)", LOCK_KEY).fetchone()
        if row and row[0]:
            return
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
