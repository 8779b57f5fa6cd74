"""pg_dump and the roles for ``pgpatch baseline``: read from the live database, composed safely."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from postgresqlpatches.core.redact import redact
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.binaries import tool_major
from postgresqlpatches.pg.server import (
    DEFAULT_PREFIX,
    Server,
    normalise_prefix,
    password_variable,
)

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


# Every role the database refers to: owners, the grantees and grantors of every ACL, default
# privileges, policies, settings in this database; then, transitively, the roles they are
# members of (a GRANT of a role needs it to exist). The bootstrap superuser the baseline runs as
# and the predefined pg_* roles exist on every server.
ROLES_QUERY = """
WITH RECURSIVE db AS (SELECT oid, datdba, datacl FROM pg_database
                      WHERE datname = current_database()),
acls(acl) AS (
    SELECT datacl FROM db
    UNION ALL SELECT relacl FROM pg_class WHERE relacl IS NOT NULL
    UNION ALL SELECT attacl FROM pg_attribute WHERE attacl IS NOT NULL
    UNION ALL SELECT proacl FROM pg_proc WHERE proacl IS NOT NULL
    UNION ALL SELECT typacl FROM pg_type WHERE typacl IS NOT NULL
    UNION ALL SELECT nspacl FROM pg_namespace WHERE nspacl IS NOT NULL
    UNION ALL SELECT lomacl FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL
    UNION ALL SELECT lanacl FROM pg_language WHERE lanacl IS NOT NULL
    UNION ALL SELECT fdwacl FROM pg_foreign_data_wrapper WHERE fdwacl IS NOT NULL
    UNION ALL SELECT srvacl FROM pg_foreign_server WHERE srvacl IS NOT NULL
    UNION ALL SELECT defaclacl FROM pg_default_acl
),
used(oid) AS (
    SELECT datdba FROM db
    UNION SELECT relowner FROM pg_class
    UNION SELECT nspowner FROM pg_namespace
    UNION SELECT proowner FROM pg_proc
    UNION SELECT typowner FROM pg_type
    UNION SELECT lomowner FROM pg_largeobject_metadata
    UNION SELECT collowner FROM pg_collation
    UNION SELECT conowner FROM pg_conversion
    UNION SELECT oprowner FROM pg_operator
    UNION SELECT opcowner FROM pg_opclass
    UNION SELECT opfowner FROM pg_opfamily
    UNION SELECT cfgowner FROM pg_ts_config
    UNION SELECT dictowner FROM pg_ts_dict
    UNION SELECT lanowner FROM pg_language
    UNION SELECT extowner FROM pg_extension
    UNION SELECT evtowner FROM pg_event_trigger
    UNION SELECT fdwowner FROM pg_foreign_data_wrapper
    UNION SELECT srvowner FROM pg_foreign_server
    UNION SELECT umuser FROM pg_user_mappings  -- the view: the catalog is superuser-only
    UNION SELECT pubowner FROM pg_publication
    UNION SELECT stxowner FROM pg_statistic_ext
    UNION SELECT subowner FROM pg_subscription WHERE subdbid = (SELECT oid FROM db)
    UNION SELECT defaclrole FROM pg_default_acl
    UNION SELECT unnest(polroles) FROM pg_policy
    UNION SELECT setrole FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM db)
    UNION SELECT e.grantee FROM acls, aclexplode(acls.acl) e
    UNION SELECT e.grantor FROM acls, aclexplode(acls.acl) e
),
needed(oid) AS (
    SELECT oid FROM used
    UNION SELECT m.roleid FROM pg_auth_members m JOIN needed n ON m.member = n.oid
)
SELECT r.oid, r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
       r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit,
       CASE WHEN isfinite(r.rolvaliduntil)
            THEN to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'
            ELSE r.rolvaliduntil::text END,
       coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                 WHERE s.setdatabase = 0 AND s.setrole = r.oid), '{}')
FROM pg_roles r JOIN needed USING (oid)
WHERE r.rolname <> 'postgres' AND r.rolname !~ '^pg_'
ORDER BY r.rolname
"""

# Memberships of the needed roles in each other and in predefined roles (pg_read_all_data, ...).
MEMBERSHIPS_QUERY = """
SELECT DISTINCT ON (r.rolname, u.rolname) r.rolname, u.rolname, m.admin_option, {options}
FROM pg_auth_members m
JOIN pg_roles r ON r.oid = m.roleid
JOIN pg_roles u ON u.oid = m.member
WHERE m.member = ANY(%(roles)s::oid[]) AND (m.roleid = ANY(%(roles)s::oid[]) OR r.rolname ~ '^pg_')
ORDER BY r.rolname, u.rolname, m.admin_option DESC
"""
# PostgreSQL 16 gave each membership its own INHERIT and SET options.
MEMBERSHIP_OPTIONS = {True: "m.inherit_option, m.set_option", False: "NULL::bool, NULL::bool"}

# Settings whose values the server keeps as a quoted list: each element is its own literal.
LIST_SETTINGS = frozenset({"local_preload_libraries", "search_path", "session_preload_libraries",
                           "shared_preload_libraries", "temp_tablespaces",
                           "unix_socket_directories"})

# Relations whose rows pg_dump writes into the file: tables and sequences outside the system
# schemas. (A materialized view's data is a REFRESH on the target, computed from the rows there.)
RELATIONS_QUERY = """
SELECT c.oid, n.nspname, c.relname, c.relkind, format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S')
  AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
ORDER BY 5
"""
TOC_RELATION = re.compile(r"^\d+; 1259 (\d+) ", re.MULTILINE)
PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class Role:
    """A role as the source server has it; its password stays there."""

    name: str
    superuser: bool
    inherit: bool
    createrole: bool
    createdb: bool
    login: bool
    replication: bool
    bypassrls: bool
    connection_limit: int
    valid_until: str | None
    settings: tuple[str, ...]  # "name=value", as pg_db_role_setting keeps them


@dataclass(frozen=True)
class Membership:
    """``GRANT role TO member``; inherit and set are None before PostgreSQL 16."""

    role: str
    member: str
    admin: bool
    inherit: bool | None
    set: bool | None


def read_roles(conn: psycopg.Connection, *, every_role: bool = False
               ) -> tuple[list[Role], list[Membership]]:
    """The roles the connected database refers to (``every_role``: every role of the server
    but postgres and the predefined ones, ALL_ROLES_QUERY) and their memberships."""
    rows = conn.execute(ALL_ROLES_QUERY if every_role else ROLES_QUERY).fetchall()
    roles = [Role(r[1], *r[2:11], tuple(r[11])) for r in rows]
    options = MEMBERSHIP_OPTIONS[conn.info.server_version >= 160000]
    members = conn.execute(MEMBERSHIPS_QUERY.format(options=options),
                           {"roles": [r[0] for r in rows]}).fetchall()
    return roles, [Membership(*m) for m in members]


def split_setting_list(value: str) -> list[str]:
    """A list setting's elements as the server keeps them (``"$user", public``), unquoted."""
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i].isspace():
            i += 1
        item = ""
        if i < n and value[i] == '"':
            i += 1
            while i < n:
                if value[i] == '"':
                    if i + 1 < n and value[i + 1] == '"':
                        item += '"'
                        i += 2
                        continue
                    i += 1
                    break
                item += value[i]
                i += 1
        else:
            while i < n and value[i] != "," and not value[i].isspace():
                item += value[i]
                i += 1
        items.append(item)
        while i < n and value[i] != ",":
            i += 1
        i += 1
    return items or [""]


def psql_argument(text: str) -> str:
    """A psql meta-command argument: bare when plain, else single-quoted with psql's escapes."""
    if re.fullmatch(r"[A-Za-z0-9_]+", text):
        return text
    escaped = (text.replace("\\", "\\\\").replace("'", "''")
               .replace("\n", "\\n").replace("\r", "\\r"))
    return f"'{escaped}'"


def role_section(roles: list[Role], memberships: list[Membership],
                 conn: psycopg.Connection, prefix: str = DEFAULT_PREFIX) -> str:
    """psql that creates each role only where missing, then its memberships and settings.

    Passwords are read when psql runs the file; a role that exists is left as it is.
    """
    from psycopg import sql

    def text(composed: sql.Composable) -> str:
        return composed.as_string(conn)

    out = ["-- Roles this database needs, each created only where it is missing (an existing",
           "-- role is left as it is). Passwords are read when psql runs this file (pgpatch",
           f"-- hands psql the verifier of {normalise_prefix(prefix)}<ROLE>_PASSWORD, computed on "
           "its side,",
           "-- as PGPATCH_<ROLE>_PASSWORD); they are never written here.", ""]
    flags: dict[str, str] = {}
    for index, role in enumerate(roles, 1):
        suffix = role.name if PLAIN_NAME.fullmatch(role.name) else str(index)
        flag, var = f"create_{suffix}", f"pwd_{suffix}"
        flags[role.name] = flag
        exists = sql.SQL("SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {})"
                         " AS {}").format(sql.Literal(role.name), sql.Identifier(flag))
        create = text(sql.SQL("CREATE ROLE {} {}").format(
            sql.Identifier(role.name), _attributes(role)))
        out += [text(exists) + " \\gset", f"\\if :{flag}"]
        if role.login:
            env = f"PGPATCH_{role.name.upper()}_PASSWORD"
            message = (f"no password for role {role.name}: set "
                       f"{password_variable(prefix, role.name)}")
            body = text(sql.SQL("BEGIN RAISE EXCEPTION '%', {}; END").format(
                sql.Literal(message)))
            out += [f"\\unset {var}",
                    f"\\getenv {var} {psql_argument(env)}",
                    f"\\if :{{?{var}}}",
                    f"{create} PASSWORD :'{var}';",
                    "\\else",
                    text(sql.SQL("DO {};").format(sql.Literal(body))),
                    "\\endif"]
        else:
            out.append(create + ";")
        out += ["\\endif", ""]
    for m in memberships:
        missing = sql.SQL(
            "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_auth_members m"
            " JOIN pg_catalog.pg_roles r ON r.oid = m.roleid"
            " JOIN pg_catalog.pg_roles u ON u.oid = m.member"
            " WHERE r.rolname = {} AND u.rolname = {}) AS grant_missing"
        ).format(sql.Literal(m.role), sql.Literal(m.member))
        out += [text(missing) + " \\gset", "\\if :grant_missing",
                text(_grant(m)) + ";", "\\endif"]
    if memberships:
        out.append("")
    for role in roles:
        if role.settings:
            out.append(f"\\if :{flags[role.name]}")
            out += [text(_setting(role.name, s)) + ";" for s in role.settings]
            out += ["\\endif", ""]
    return "\n".join(out) + "\n"


def _attributes(role: Role) -> sql.Composable:
    from psycopg import sql

    def flag(on: bool, word: str) -> str:
        return word if on else "NO" + word

    words = [flag(role.superuser, "SUPERUSER"), flag(role.login, "LOGIN"),
             flag(role.createdb, "CREATEDB"), flag(role.createrole, "CREATEROLE"),
             flag(role.inherit, "INHERIT"), flag(role.replication, "REPLICATION"),
             flag(role.bypassrls, "BYPASSRLS")]
    parts: list[sql.Composable] = [sql.SQL(" ".join(words))]
    # an int, written as such: a Literal would print -1 as " -1"
    parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.SQL(str(int(role.connection_limit)))))
    if role.valid_until is not None:
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role.valid_until)))
    return sql.SQL(" ").join(parts)


def _grant(m: Membership) -> sql.Composable:
    from psycopg import sql

    grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(m.role), sql.Identifier(m.member))
    if m.inherit is None or m.set is None:
        return grant + sql.SQL(" WITH ADMIN OPTION") if m.admin else grant
    options = ", ".join(f"{name} {'TRUE' if on else 'FALSE'}" for name, on in
                        (("ADMIN", m.admin), ("INHERIT", m.inherit), ("SET", m.set)))
    return grant + sql.SQL(" WITH " + options)


def _setting(role: str, entry: str) -> sql.Composable:
    """``ALTER ROLE r SET name TO value`` from a ``name=value`` entry of pg_db_role_setting."""
    from psycopg import sql

    name, _, value = entry.partition("=")
    values = split_setting_list(value) if name.lower() in LIST_SETTINGS else [value]
    return sql.SQL("ALTER ROLE {} SET {} TO {}").format(
        sql.Identifier(role), sql.Identifier(name),
        sql.SQL(", ").join(sql.Literal(v) for v in values))


def read_source(pg_dump: str, server: Server, database: str, *, schema_only: bool,
                data_for: tuple[str, ...]) -> tuple[str, list[str], tuple[str, ...] | None]:
    """What a baseline needs from the live database before pg_dump runs: the role section,
    pg_dump's scope arguments and which tables' rows the file holds (None: every table's)."""
    scope = ["--schema-only"] if schema_only else []
    rows_of: tuple[str, ...] | None = () if schema_only else None
    with server.connect(database, server.admin_user) as conn:
        roles, memberships = read_roles(conn)
        section = role_section(roles, memberships, conn, server.prefix)
        if data_for:
            kept = _relations_matching(pg_dump, server, database, data_for)
            relations = conn.execute(RELATIONS_QUERY).fetchall()
            rows_of = tuple(r[4] for r in relations if r[0] in kept and r[3] == "r")
            # large objects are rows too; every relation not chosen keeps its schema only
            scope = ["-B"] + [f"--exclude-table-data={_exact_pattern(r[1], r[2])}"
                              for r in relations if r[0] not in kept]
            if tool_major(pg_dump) >= 18:  # statistics hold sample values of the rows left out
                scope.append("--no-statistics")
    return section, scope, rows_of


def _exact_pattern(schema: str, name: str) -> str:
    """A pg_dump table pattern that matches exactly this relation (quoted: no wildcards)."""
    return '"{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))


def _dump_command(pg_dump: str, server: Server, database: str) -> list[str]:
    args = [pg_dump, "--no-password", "-U", server.admin_user, "-d", database]
    if server.host:
        args += ["-h", server.host]
    if server.port:
        args += ["-p", str(server.port)]
    return args


def _relations_matching(pg_dump: str, server: Server, database: str,
                        patterns: tuple[str, ...]) -> set[int]:
    """The relations pg_dump's own ``--table`` matching picks, with their owned sequences.

    pg_dump lists them (schema only, no rows) in a custom-format TOC, which names each by oid.
    """
    args = _dump_command(pg_dump, server, database) + [
        "--schema-only", "--format=custom", "--strict-names"] + [
        f"--table={p}" for p in patterns]
    env = server.psql_environment(server.admin_user, dbname=database)
    proc = subprocess.run(args, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        last = msg[-1] if msg else str(proc.returncode)
        unmatched = re.search(r'no matching tables were found for pattern "(.*)"', last)
        if unmatched:
            raise PgpatchError(
                f"baseline: --data-for {unmatched.group(1)} matches no table of {database}",
                hint="patterns are pg_dump's --table patterns: [schema.]table with * and ?; "
                     "an unqualified name is looked up in the database's search_path")
        raise pg_dump_failure(proc.stderr.decode(errors="replace"), proc.returncode, server)
    pg_restore = Path(pg_dump).with_name("pg_restore")
    if not pg_restore.exists():
        raise PgpatchError(f"baseline --data-for needs pg_restore next to {pg_dump}",
                           hint="install the PostgreSQL client tools in full")
    listing = subprocess.run([str(pg_restore), "--list"], input=proc.stdout, capture_output=True,
                             check=False)
    if listing.returncode != 0:
        msg = listing.stderr.decode(errors="replace").strip().splitlines()
        raise PgpatchError(f"pg_restore --list failed: {msg[-1] if msg else listing.returncode}")
    return {int(oid) for oid in TOC_RELATION.findall(listing.stdout.decode(errors="replace"))}


def run_pg_dump(pg_dump: str, server: Server, database: str, scope: list[str]) -> str:
    args = _dump_command(pg_dump, server, database) + ["--create", *scope]
    env = server.psql_environment(server.admin_user, dbname=database)
    proc = subprocess.run(args, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        raise pg_dump_failure(proc.stderr.decode(errors="replace"), proc.returncode, server)
    return proc.stdout.decode("utf-8")


def pg_dump_failure(stderr: str, returncode: int, server: Server) -> PgpatchError:
    """pg_dump's error line (not the "detail: Query was" after it); a permission it lacks
    names what the admin role needs (docs/managed.md)."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    said = (errors or lines or [str(returncode)])[-1]
    hint = None
    if "permission denied" in said:
        hint = (f"the admin role {server.admin_user} must be able to read every table: make it "
                "a member of their owners, or GRANT pg_read_all_data TO "
                f"{server.admin_user} (docs/managed.md)")
    return PgpatchError(redact(f"pg_dump failed: {said}"), hint=hint)


# -- rehearse: every role of the server, without passwords ------------------------------------

ALL_ROLES_QUERY = """
SELECT r.oid, r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
       r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit,
       CASE WHEN isfinite(r.rolvaliduntil)
            THEN to_char(r.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'
            ELSE r.rolvaliduntil::text END,
       coalesce((SELECT s.setconfig FROM pg_db_role_setting s
                 WHERE s.setdatabase = 0 AND s.setrole = r.oid), '{}')
FROM pg_roles r
WHERE r.rolname <> 'postgres' AND r.rolname !~ '^pg_'
ORDER BY r.rolname
"""
"""As ROLES_QUERY, for every role: a patch may name a role that no object refers to yet (a
GRANT to it), and rehearse runs the patches as apply would. pg_roles shows no password."""


def pipe_dump(pg_dump: str, server: Server, database: str, scope: list[str],
              psql: list[str], psql_env: dict[str, str]) -> None:
    """``pg_dump --create`` of ``database`` straight into ``psql`` (another server), without
    holding the dump in memory; pg_dump's or psql's last error line on failure."""
    args = _dump_command(pg_dump, server, database) + ["--create", *scope]
    dump = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=server.psql_environment(server.admin_user, dbname=database))
    try:
        restore = subprocess.run(psql, stdin=dump.stdout, capture_output=True, env=psql_env,
                                 check=False)
    finally:
        assert dump.stdout is not None
        dump.stdout.close()
        dumped = dump.wait()
    dump_err = dump.stderr.read() if dump.stderr is not None else b""
    if dump.stderr is not None:
        dump.stderr.close()
    if dumped != 0:  # pg_dump's error line, masked, with the admin role's hint
        raise pg_dump_failure(dump_err.decode(errors="replace"), dumped, server)
    if restore.returncode != 0:
        msg = [t for t in restore.stderr.decode(errors="replace").splitlines() if t.strip()]
        raise PgpatchError(f"copying {database} to the throwaway server failed: "
                           f"{msg[-1] if msg else restore.returncode}")
