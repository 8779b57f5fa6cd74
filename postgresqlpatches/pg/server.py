"""Connections: libpq settings, passwords from the environment, database facts, the run lock."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import postgresqlpatches
from postgresqlpatches.core.records import XACT_FUTURE
from postgresqlpatches.core.redact import is_password_variable, redact, remember_password
from postgresqlpatches.errors import ConnectionFailed, LockTimeout, PgpatchError
from postgresqlpatches.pg.errors import INSUFFICIENT_PRIVILEGE, INVALID_PASSWORD, OBJECT_IN_USE

if TYPE_CHECKING:
    import psycopg

    Connection = psycopg.Connection
    """What the runner holds and hands back to pg/ (it never uses one itself)."""

    from postgresqlpatches.core.planner import Leftover

log = logging.getLogger("pgpatch")

MAINTENANCE_DB = "postgres"
SUPERUSER = "postgres"
DEFAULT_PREFIX = postgresqlpatches.DEFAULT_PREFIX
# pg_advisory_lock(int, int): one run at a time per server ("pgpt", 1).
LOCK_KEY = (0x70677074, 1)
ORIGINAL_TOOL_VARIABLE = "PATCHES_POSTGRESQL_TEMPORARY_USER_PASSWORD"
"""The original tool's baselines read the password of the role named like the database here."""
VERIFIER_ALGORITHM = "scram-sha-256"
"""Always SCRAM, whatever password_encryption says: an md5 verifier in a log is as good as the
password for md5 logins, and pg_hba's md5 method accepts SCRAM-stored passwords too."""
OWN_SEARCH_PATH = "public"
"""pgpatch's own sessions and patches find and make their tables here, whatever the caller's
PGOPTIONS say: the state tables live in public (pg_catalog, not listed, is searched first)."""


def session_options(settings: list[str], *, own: bool,
                    environ: Mapping[str, str] | None = None) -> str | None:
    """libpq ``options`` for a session: the caller's PGOPTIONS first, then pgpatch's settings
    (a later ``-c`` wins). Passing ``options`` makes libpq ignore PGOPTIONS, so it is
    repeated here: a patch session sees what a new psql session would see; pgpatch's own
    sessions pin search_path, so that ``-c search_path=app`` cannot hide the state tables."""
    if own:
        settings = [*settings, f"-c search_path={OWN_SEARCH_PATH}"]
    if not settings:
        return None
    caller = (environ or {}).get("PGOPTIONS", os.environ.get("PGOPTIONS", "")).strip()
    return " ".join([caller, *settings] if caller else settings)


def pin_search_path(conn: psycopg.Connection) -> None:
    """For the rest of this transaction, pgpatch's own search_path (on a patch session)."""
    conn.execute("SELECT set_config('search_path', %s, true)", [OWN_SEARCH_PATH])
READ_ONLY_SETTING = "-c default_transaction_read_only=on"
"""libpq options of every session on a server that is only read (Server.read_only)."""
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


TARGET_SETTINGS = {
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL", "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
"""libpq connection settings a target may give besides host and port, each with the variable
psql and pg_dump read it from: a target's own value wins over the caller's environment."""


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


def baseline_variables(text: str, prefix: str, database: str) -> dict[str, str]:
    """The password variables a baseline names, each with its role: psql gets these (as the
    role's verifier) and no other. ``PGPATCH_{ROLE}_PASSWORD``, ``{PREFIX}{ROLE}_PASSWORD``,
    and the original tool's variable for the role named like the database."""
    found: dict[str, str] = {}
    if ORIGINAL_TOOL_VARIABLE in text:
        found[ORIGINAL_TOOL_VARIABLE] = database
    heads = ["PGPATCH_"]
    if normalise_prefix(prefix) != "PGPATCH_":
        heads.append(normalise_prefix(prefix))
    for head in heads:
        pattern = rf"(?<![A-Za-z0-9_]){re.escape(head)}([A-Za-z0-9_]+)_PASSWORD(?![A-Za-z0-9_])"
        for m in re.finditer(pattern, text):
            found.setdefault(m.group(0), m.group(1).lower())
        # a role whose name is no plain identifier (``crm-app``): psql reads the variable's
        # name quoted, as `pgpatch baseline` writes it
        quoted = rf"'({re.escape(head)}([^'\n]+?)_PASSWORD)'"
        for m in re.finditer(quoted, text):
            found.setdefault(m.group(1), m.group(2).lower())
    return found


def fallback_warning(prefix: str, role: str, created_by: str | None = None) -> str:
    """The one line for a role that gets its own name as password (the original tool's rule)."""
    var = password_variable(prefix, role)
    if created_by is not None:
        return f"{var} is not set: role {role} gets its name as password ({created_by} creates it)"
    return f"{var} is not set: using the user name as {role}'s password"


def fallback_problem(prefix: str, role: str, created: bool) -> tuple[str, str]:
    """Message and hint when --strict-passwords refuses that fallback."""
    var = password_variable(prefix, role)
    what = (f"role {role} would get its name as password" if created else
            f"pgpatch would log in as {role} with its name as password")
    return f"{var} is not set: {what}", f"set {var}, or run without --strict-passwords"


@dataclass(frozen=True)
class PasswordSource:
    """A password found for a login, and where it came from (for a failed login's hint)."""

    password: str
    where: str


@dataclass(frozen=True)
class ServiceSettings:
    settings: Mapping[str, str]
    where: str


@dataclass
class Server:
    """How to reach the server: one host and port for every connection, psycopg and psql alike."""

    host: str | None = None
    port: int | None = None
    prefix: str = DEFAULT_PREFIX
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None
    strict: bool = False
    """--strict-passwords: a fallback to the user name is an error, never a warning."""
    application_name: str = "pgpatch"
    """Of every session but the lock's; RUN_APPLICATION_NAME while an apply run works."""
    admin_user: str = SUPERUSER
    """--admin-user: the role of the maintenance session (lock, pg_database, creating and
    dropping databases, the state database's bootstrap); the only one PGPASSWORD is for."""
    read_only: bool = False
    """rehearse reads the live server: every session it opens (psycopg, psql, pg_dump) has
    default_transaction_read_only=on, so nothing it runs there can write."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """A target's other libpq settings (TARGET_SETTINGS: sslmode, ...), for every connection."""
    _warned: set[str] = field(default_factory=set)
    _files: dict[str, str | None] = field(default_factory=dict)

    def has_password(self, role: str, dbname: str = MAINTENANCE_DB) -> bool:
        return self.password_source(role, dbname) is not None

    def password(self, user: str, dbname: str = MAINTENANCE_DB) -> str:
        """The password to log in as ``user`` on ``dbname`` with (password_source), else the
        user name (the original tool's rule): warned once per role, refused with
        --strict-passwords."""
        found = self.password_source(user, dbname)
        if found is not None:
            return found.password
        if self.strict:
            message, hint = fallback_problem(self.prefix, user, created=False)
            raise PgpatchError(message, hint=hint)
        self.warn_fallback(user)
        return user

    def password_source(self, user: str, dbname: str = MAINTENANCE_DB) -> PasswordSource | None:
        """``{PREFIX}{USER}_PASSWORD``; else libpq's own sources in libpq's order: the
        service's password (only for the user the service names, or the admin role if it
        names none), ``PGPASSWORD`` (the admin role only), the password file's first line
        that matches host, port, database and user. None: the user-name rule applies.

        pgpatch always hands libpq the password it found, so that a password meant for one
        role never goes out as another's (libpq would send PGPASSWORD for every user)."""
        variable = password_variable(self.prefix, user)
        value = self.environ.get(variable)
        if value is not None:
            return PasswordSource(value, variable)
        service = self._service()
        if service is not None and "password" in service.settings:
            if service.settings.get("user", self.admin_user) == user:
                remember_password(service.settings["password"])
                return PasswordSource(service.settings["password"], service.where)
        if user == self.admin_user and self.environ.get("PGPASSWORD") is not None:
            return PasswordSource(self.environ["PGPASSWORD"], "PGPASSWORD")
        return self._passfile_password(user, dbname, service)

    def _home_file(self, name: str) -> str:
        home = self.environ.get("HOME") or os.path.expanduser("~")
        return os.path.join(home, name)

    def _read(self, path: str) -> str | None:
        """A file's text, read once per run (None when there is none)."""
        if path not in self._files:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    self._files[path] = f.read()
            except OSError:
                self._files[path] = None
        return self._files[path]

    def _service(self) -> ServiceSettings | None:
        """The settings of PGSERVICE: from PGSERVICEFILE (default ~/.pg_service.conf), else
        from PGSYSCONFDIR's pg_service.conf, as libpq looks them up."""
        from postgresqlpatches.core.libpq_files import ServiceFileError, service_section

        name = self.environ.get("PGSERVICE")
        if not name:
            return None
        files = [self.environ.get("PGSERVICEFILE") or self._home_file(".pg_service.conf")]
        if self.environ.get("PGSYSCONFDIR"):
            files.append(os.path.join(self.environ["PGSYSCONFDIR"], "pg_service.conf"))
        for path in files:
            text = self._read(path)
            if text is None:
                continue
            try:
                settings = service_section(text, name)
            except ServiceFileError as e:
                raise ConnectionFailed(f"service file {path}: {e}",
                                       hint="fix the file, or unset PGSERVICE") from e
            if settings is not None:
                return ServiceSettings(settings, f"service {name} in {path}")
        raise ConnectionFailed(f"PGSERVICE: no service {name!r} in {' or '.join(files)}",
                               hint="set PGSERVICEFILE to the file that defines it")

    def _passfile_password(self, user: str, dbname: str,
                           service: ServiceSettings | None) -> PasswordSource | None:
        """The password file's password for this connection, by libpq's rules: a file that
        others may read is ignored with libpq's warning."""
        import stat

        from postgresqlpatches.core.libpq_files import (
            DEFAULT_PORT,
            passfile_host,
            passfile_password,
        )

        given = service.settings if service is not None else {}
        path = (given.get("passfile") or self.environ.get("PGPASSFILE")
                or self._home_file(".pgpass"))
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return None
        if not stat.S_ISREG(mode):
            self._warn_once(f"passfile:{path}", "password file %s is not a plain file: "
                            "ignored", path)
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            self._warn_once(f"passfile:{path}", "password file %s has group or world access; "
                            "permissions should be u=rw (0600) or less: ignored", path)
            return None
        text = self._read(path)
        if text is None:
            return None
        host, hostaddr, port = self._target(given)
        found = passfile_password(text, passfile_host(host, hostaddr), port or DEFAULT_PORT,
                                  dbname, user)
        if found is None:
            return None
        remember_password(found.password)
        return PasswordSource(found.password, f"the password file {path} (line {found.line})")

    def _target(self, service: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
        """Host, host address and port as libpq takes them: --host/--port first, then the
        service's, then PGHOST, PGHOSTADDR, PGPORT."""
        host = self.host or service.get("host") or self.environ.get("PGHOST")
        hostaddr = service.get("hostaddr") or self.environ.get("PGHOSTADDR")
        port = (str(self.port) if self.port else None) or service.get("port") or \
            self.environ.get("PGPORT")
        return host, hostaddr, port

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def warn_fallback(self, role: str, created_by: str | None = None) -> None:
        """One warning line per role and run, whether it logs in or a baseline creates it."""
        if role not in self._warned:
            self._warned.add(role)
            log.warning("%s", fallback_warning(self.prefix, role, created_by))

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
        params.update(self.settings)
        return params

    def connect(self, dbname: str, user: str, *, autocommit: bool = True,
                session_settings: bool = False, application_name: str | None = None,
                keepalives: bool = False) -> psycopg.Connection:
        """One way to open a connection; login failures become one clear line."""
        import psycopg

        env_host = self.environ.get("PGHOST")
        if not self.host and env_host and host_problem(env_host):
            raise ConnectionFailed(f"PGHOST: expected {HOST_TAKES}")
        settings = []
        if session_settings and self.lock_timeout_ms is not None:
            settings.append(f"-c lock_timeout={int(self.lock_timeout_ms)}")
        if session_settings and self.statement_timeout_ms is not None:
            settings.append(f"-c statement_timeout={int(self.statement_timeout_ms)}")
        if self.read_only:
            settings.append(READ_ONLY_SETTING)
        kwargs: dict[str, object] = dict(self.libpq_params())
        kwargs.pop("connect_timeout", None)  # _connect_timeout's
        options = session_options(settings, own=not session_settings, environ=self.environ)
        if options is not None:
            kwargs["options"] = options
        if keepalives:
            kwargs.update(LOCK_SESSION_KEEPALIVES)
        try:
            conn = psycopg.connect(
                dbname=dbname, user=user, password=self.password(user, dbname),
                autocommit=autocommit, prepare_threshold=None,
                application_name=application_name or self.application_name,
                connect_timeout=self._connect_timeout(), **kwargs,
            )
        except psycopg.OperationalError as e:
            raise self._connect_error(e, dbname, user) from e
        return conn

    def _connect_timeout(self) -> int:
        return int(self.settings.get("connect_timeout") or self.environ.get("PGCONNECT_TIMEOUT")
                   or 10)

    def _connect_error(self, e: Exception, dbname: str, user: str) -> PgpatchError:
        reason = connection_reason(e)
        hint = None
        sqlstate = getattr(getattr(e, "diag", None), "sqlstate", None)
        if "password authentication failed" in reason or sqlstate == INVALID_PASSWORD:
            hint = f"set {password_variable(self.prefix, user)} to {user}'s password"
            source = self.password_source(user, dbname)
            if source is not None and source.where != password_variable(self.prefix, user):
                hint = f"the password came from {source.where}: fix it there, or {hint}"
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
        return ConnectionFailed(redact(
            f"cannot connect to database {dbname!r} as {user!r} at {self.where()}: {reason}"),
            hint=hint,
        )

    def psql_environment(self, user: str, variables: Mapping[str, str] | None = None,
                         verifier: Callable[[str, str], str] | None = None, *,
                         own: bool = False, dbname: str = MAINTENANCE_DB,
                         roles_db: str | None = None) -> dict[str, str]:
        """Environment for psql and pg_dump: ``user``'s clear password in PGPASSWORD only (it
        logs in with it; never on a command line), and each of ``variables`` (name: role) set
        to the role's SCRAM verifier from ``verifier(password, role)``, never a clear
        password. Every other password variable is left out: a baseline run as app does not
        get the superuser's password. ``own``: pgpatch's own baseline of the state database,
        with pgpatch's search_path. ``dbname``: the database the child logs in to first (the
        password file is matched with it); ``roles_db``: the one the roles it creates will
        log in to (their password is the one pgpatch logs in as them with).

        A role without a password variable gets its name (the planner warned, or refused
        with --strict-passwords, before anything ran: see runner)."""
        env = {k: v for k, v in {**os.environ, **self.environ}.items()
               if not is_password_variable(k)}
        if own:
            env["PGOPTIONS"] = session_options([], own=True, environ=env) or ""
        if self.read_only:
            env["PGOPTIONS"] = " ".join(filter(None, [env.get("PGOPTIONS", ""),
                                                      READ_ONLY_SETTING]))
        env.update({TARGET_SETTINGS[k]: v for k, v in self.settings.items()})
        env["PGPASSWORD"] = self.password(user, dbname)
        env["PGAPPNAME"] = self.application_name  # a run's psql is one of its sessions
        env.pop("PGDATABASE", None)
        self._service_as_variables(env)
        if variables:
            assert verifier is not None, "variables need a verifier"
            env.update(self.verifiers(variables, verifier, roles_db or dbname))
        return env

    def verifiers(self, variables: Mapping[str, str], verifier: Callable[[str, str], str],
                  roles_db: str) -> dict[str, str]:
        """Each password variable a baseline names (name: role), as the role's SCRAM
        verifier: what psql gets for it (psql_environment), and pgpatch's own baseline when
        it runs without psql (state.make_state_database)."""
        found: dict[str, str] = {}
        for name, role in variables.items():
            source = self.password_source(role, roles_db)
            clear = source.password if source is not None else role
            found[name] = verifier(clear, role) if clear else ""
        return found

    def _service_as_variables(self, env: dict[str, str]) -> None:
        """A service's password would beat the child's PGPASSWORD (libpq takes a service's
        settings before the environment's): a service that holds one is handed over as the
        variables of its other settings instead, which is what libpq would make of them."""
        import psycopg

        service = self._service()
        if service is None or "password" not in service.settings:
            return
        variables = {o.keyword.decode(): o.envvar.decode()
                     for o in psycopg.pq.Conninfo.get_defaults() if o.envvar}
        env.pop("PGSERVICE", None)
        for key, value in service.settings.items():
            if key == "password" or key not in variables:
                continue
            if key in ("host", "port") and getattr(self, key):
                continue  # --host and --port are on the child's command line
            env[variables[key]] = value


def connection_reason(e: Exception) -> str:
    """libpq's message without its "connection to server at ... failed:" prefixes, one line."""
    text = " ".join(part.strip() for part in str(e).split("\n") if part.strip())
    text = re.sub(r'^(connection failed: |connection is bad: )?'
                  r'(connection to server (at|on) .*? failed: )+', "", text)
    return re.sub(r"^(FATAL|ERROR):\s+", "", text) or type(e).__name__


FIRST_NORMAL_OID = 16384
"""PostgreSQL's FirstNormalObjectId: every object initdb made has a smaller oid."""

USER_OBJECTS = """
SELECT o.classid::oid, o.objid, pg_describe_object(o.classid, o.objid, 0)
FROM (
    SELECT 1, 'pg_class'::regclass, oid FROM pg_class
     WHERE oid >= %(first)s AND relpersistence <> 't'
       AND relnamespace <> 'pg_toast'::regnamespace
    UNION ALL SELECT 2, 'pg_proc'::regclass, oid FROM pg_proc WHERE oid >= %(first)s
    UNION ALL SELECT 3, 'pg_type'::regclass, t.oid FROM pg_type t
     WHERE t.oid >= %(first)s AND t.typrelid = 0
       AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
    UNION ALL SELECT 4, 'pg_namespace'::regclass, oid FROM pg_namespace
     WHERE oid >= %(first)s AND nspname <> 'public' AND nspname !~ '^pg_(toast_)?temp_'
    UNION ALL SELECT 5, 'pg_extension'::regclass, oid FROM pg_extension
     WHERE oid >= %(first)s
    UNION ALL SELECT 6, 'pg_event_trigger'::regclass, oid FROM pg_event_trigger
    UNION ALL SELECT 6, 'pg_publication'::regclass, oid FROM pg_publication
    UNION ALL SELECT 6, 'pg_foreign_data_wrapper'::regclass, oid FROM pg_foreign_data_wrapper
     WHERE oid >= %(first)s
    UNION ALL SELECT 6, 'pg_foreign_server'::regclass, oid FROM pg_foreign_server
    UNION ALL SELECT 6, 'pg_language'::regclass, oid FROM pg_language WHERE oid >= %(first)s
    UNION ALL SELECT 7, 'pg_collation'::regclass, oid FROM pg_collation
     WHERE oid >= %(first)s
    UNION ALL SELECT 7, 'pg_conversion'::regclass, oid FROM pg_conversion
     WHERE oid >= %(first)s
    UNION ALL SELECT 7, 'pg_operator'::regclass, oid FROM pg_operator WHERE oid >= %(first)s
    UNION ALL SELECT 7, 'pg_opfamily'::regclass, oid FROM pg_opfamily WHERE oid >= %(first)s
    UNION ALL SELECT 7, 'pg_cast'::regclass, oid FROM pg_cast WHERE oid >= %(first)s
    UNION ALL SELECT 7, 'pg_ts_config'::regclass, oid FROM pg_ts_config
     WHERE oid >= %(first)s
    UNION ALL SELECT 7, 'pg_ts_dict'::regclass, oid FROM pg_ts_dict WHERE oid >= %(first)s
    UNION ALL SELECT 8, 'pg_largeobject_metadata'::regclass, oid
     FROM pg_largeobject_metadata
) AS o(rank, classid, objid)
ORDER BY o.rank, 3
"""
"""Objects a database holds beyond what initdb made, most telling first (tables, functions,
types, schemas, ...): a temporary table's schema, an empty public schema made anew, a table's
row type and the array types that come with types are not counted."""


class Roles:
    """The server's roles as a run asks about them: ``known`` (the roles it is logged in as)
    without a query, any other from pg_roles, read once, at the first such question: a run
    whose patches all run as the admin role never reads it."""

    def __init__(self, maint: Maintenance, known: Iterable[str]) -> None:
        self.maint = maint
        self.known = frozenset(known)
        self.read: frozenset[str] | None = None

    def __contains__(self, role: object) -> bool:
        if role in self.known:
            return True
        if self.read is None:
            self.read = frozenset(self.maint.roles())
        return role in self.read


def _objects(conn: psycopg.Connection) -> list[tuple[int, int, str]]:
    rows = conn.execute(USER_OBJECTS, {"first": FIRST_NORMAL_OID}).fetchall()
    return [(int(c), int(o), str(d)) for c, o, d in rows]


class Maintenance:
    """The admin role's session on the maintenance database: facts about the server, and the
    lock."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.conn = server.connect(MAINTENANCE_DB, server.admin_user, application_name="pgpatch",
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

    def group_candidates(self) -> set[str]:
        """The databases a group may match: every one but templates and those that take no
        connections (datallowconn false)."""
        rows = self.conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn"
        ).fetchall()
        return {r[0] for r in rows}

    def objects_of_their_own(self, databases: Iterable[str],
                             look: Callable[[str], psycopg.Connection] | None = None,
                             ) -> dict[str, list[str]]:
        """The databases that hold objects beyond what CREATE DATABASE copies from template1,
        each with the objects' descriptions ("table public.ledger"): one short session per
        database asked, plus one on template1 when a database holds anything at all.
        ``look``: a session of the database for the admin role that the caller keeps (an
        apply's patch session, RunSession.look_into): its patches then need no login of
        their own."""
        found: dict[str, list[str]] = {}
        template: set[tuple[int, int]] | None = None
        for database in sorted(databases):
            if look is None:
                rows = self._user_objects(database)
            else:
                conn = look(database)
                try:
                    rows = _objects(conn)
                finally:
                    conn.rollback()
            if rows and template is None:
                try:  # a copy keeps template1's oids: only what differs is the database's
                    template = {(c, o) for c, o, _ in self._user_objects("template1")}
                except ConnectionFailed as e:
                    log.debug("template1 not read (%s): every object counts", e)
                    template = set()
            own = [d for c, o, d in rows if (c, o) not in (template or set())]
            if own:
                found[database] = own
        return found

    def _user_objects(self, database: str) -> list[tuple[int, int, str]]:
        conn = self.server.connect(database, self.server.admin_user)
        try:
            return _objects(conn)
        finally:
            conn.close()

    def roles(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT rolname FROM pg_roles").fetchall()}

    def verifier(self, password: str, role: str) -> str:
        """The SCRAM verifier of ``password``, computed by libpq on this side (as psql's
        \\password does): CREATE ROLE ... PASSWORD stores it as it is, so no clear password
        is ever in a statement, and so never in the server's log or pg_stat_statements."""
        return self.conn.pgconn.encrypt_password(
            password.encode(), role.encode(), VERIFIER_ALGORITHM.encode()).decode("ascii")
    def largest_database_oid(self) -> int:
        """A bootstrap's mark: a database made later has a larger oid (the oid counter only
        grows; after a wraparound a new database may look older, never the other way)."""
        row = self.conn.execute("SELECT max(oid::bigint) FROM pg_database").fetchone()
        assert row is not None
        return int(row[0])

    def leftovers(self, names: set[str]) -> dict[str, Leftover]:
        """Oid, sessions connected now and sessions ever opened, of each database named."""
        from psycopg import sql

        from postgresqlpatches.core.planner import Leftover

        if not names:
            return {}
        # pg_stat_database.sessions is new in PostgreSQL 14
        sessions = sql.SQL("s.sessions" if self.server_version() >= 140000 else "NULL::bigint")
        rows = self.conn.execute(sql.SQL(
            """SELECT d.datname, d.oid::bigint,
                      (SELECT count(*) FROM pg_stat_activity a
                       WHERE a.datid = d.oid AND a.pid <> pg_backend_pid()
                         AND a.backend_type IS DISTINCT FROM 'autovacuum worker'),
                      {}
               FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
               WHERE d.datname = ANY(%s)""").format(sessions), [sorted(names)]).fetchall()
        return {name: Leftover(int(oid), int(connected),
                               int(count) if count is not None else None)
                for name, oid, connected, count in rows}

    def leftover_when_idle(self, name: str, wait_seconds: float = 5.0) -> Leftover | None:
        """The database's facts once nobody is connected (or the wait is over): a session
        counts in pg_stat_database before it leaves pg_stat_activity, so none is missed."""
        import time

        deadline = time.monotonic() + wait_seconds
        while True:
            leftover = self.leftovers({name}).get(name)
            if leftover is None or not leftover.connected or time.monotonic() > deadline:
                return leftover
            time.sleep(0.05)

    def drop_database(self, name: str) -> None:
        """Without FORCE: a session of someone else's is never killed; the server waits a few
        seconds for the ones ending (a run's own), then refuses."""
        import psycopg
        from psycopg import sql

        try:
            self.conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(
                sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege as e:
            raise PgpatchError(
                f"cannot drop database {name}: only its owner may, and the admin role "
                f"{self.server.admin_user} is neither a superuser nor a member of the owner",
                hint=f"GRANT the database's owner TO {self.server.admin_user} (docs/managed.md)",
                sqlstate=INSUFFICIENT_PRIVILEGE) from e
        except psycopg.errors.ObjectInUse as e:
            raise PgpatchError(
                f"cannot drop database {name}: other sessions are connected to it",
                hint="pgpatch never ends someone else's session: wait for them to end, or "
                     "end them yourself, and run again", sqlstate=OBJECT_IN_USE) from e

    def is_superuser(self) -> bool:
        row = self.conn.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        return bool(row and row[0])

    def become_member_of(self, role: str, password: str) -> None:
        """Let an admin role without SUPERUSER (a managed service's) give a database to
        ``role`` and act as it (CREATE DATABASE ... OWNER, SET ROLE, ALTER ... OWNER TO): it
        must be the role's member, with SET from PostgreSQL 16. The role is made first if it
        is missing (LOGIN, with the verifier of ``password``, as the state baseline would make
        it), then granted to the admin. A superuser needs none of it: nothing is done."""
        import psycopg
        from psycopg import sql

        if self.is_superuser():
            return
        admin = self.server.admin_user
        options = "'MEMBER') AND pg_has_role(%s, %s, 'USAGE')"
        if self.server_version() >= 160000:
            options += " AND pg_has_role(%s, %s, 'SET')"
        exists = self.conn.execute("SELECT FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        try:
            if exists is None:
                self.conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(self.verifier(password, role))))
            else:
                row = self.conn.execute(f"SELECT pg_has_role(%s, %s, {options}",
                                        [admin, role] * options.count("%s, %s")).fetchone()
                if row and row[0]:
                    return
            self.conn.execute(sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(role), sql.Identifier(admin)))
        except psycopg.errors.InsufficientPrivilege as e:
            if exists is None:
                raise PgpatchError(
                    f"the admin role {admin} may not create role {role}: it needs CREATEROLE",
                    hint=f"ALTER ROLE {admin} CREATEROLE, or create role {role} and "
                         f"GRANT {role} TO {admin} (docs/managed.md)",
                    sqlstate=INSUFFICIENT_PRIVILEGE) from e
            raise PgpatchError(
                f"the admin role {admin} is no superuser and no member of role {role}, and may "
                f"not grant it to itself ({e.diag.message_primary})",
                hint=f"GRANT {role} TO {admin} as a role that may (docs/managed.md)",
                sqlstate=INSUFFICIENT_PRIVILEGE) from e

    def drop_role(self, name: str) -> None:
        """Drop a role a failed bootstrap made (runner._undo_bootstrap chose it)."""
        from psycopg import sql

        self.conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))

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
        if row[2] is None:  # another role's session: its details need pg_read_all_stats
            return (f" (server pid {row[0]}; when it started is hidden from "
                    f"{self.server.admin_user}: grant it pg_monitor to see it)")
        return f" (server pid {row[0]}, started {row[2]:%Y-%m-%d %H:%M:%S})"

    def xact_status(self, xids: list[int]) -> dict[int, str | None]:
        """pg_xact_status of target transactions: committed, aborted, in progress, None (too
        old to look up), or XACT_FUTURE.

        pg_xact_status raises an error for an id the server has not handed out yet (a state
        database restored onto another cluster, an edited record), which would fail the
        whole query: such an id is answered from the snapshot's xmax instead, never asked."""
        if not xids:
            return {}
        rows = self.conn.execute(
            """SELECT x, CASE WHEN x::text::xid8 >= pg_snapshot_xmax(pg_current_snapshot())
                              THEN %s ELSE pg_xact_status(x::text::xid8) END
               FROM unnest(%s::bigint[]) AS x""", [XACT_FUTURE, xids]
        ).fetchall()
        return {int(x): s for x, s in rows}
