"""``pgpatch baseline``: the move to pgpatch by a pg_dump of a live database."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from postgresqlpatches.discovery import read_patch
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.naming import check_identifier
from postgresqlpatches.server import SUPERUSER, Maintenance, Server

if TYPE_CHECKING:
    from postgresqlpatches.runner import Options

RESTRICT = re.compile(r"^\\(un)?restrict\b.*\n?", re.MULTILINE)

ROLES_QUERY = """
WITH sys AS (SELECT oid FROM pg_namespace WHERE nspname ~ '^(pg_|information_schema)'),
used(oid) AS (
    SELECT datdba FROM pg_database WHERE datname = current_database()
    UNION SELECT relowner FROM pg_class WHERE relnamespace NOT IN (SELECT oid FROM sys)
    UNION SELECT nspowner FROM pg_namespace WHERE oid NOT IN (SELECT oid FROM sys)
    UNION SELECT proowner FROM pg_proc WHERE pronamespace NOT IN (SELECT oid FROM sys)
    UNION SELECT typowner FROM pg_type WHERE typnamespace NOT IN (SELECT oid FROM sys)
    UNION SELECT (aclexplode(relacl)).grantee FROM pg_class
          WHERE relacl IS NOT NULL AND relnamespace NOT IN (SELECT oid FROM sys)
    UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspacl IS NOT NULL
    UNION SELECT (aclexplode(datacl)).grantee FROM pg_database
          WHERE datname = current_database() AND datacl IS NOT NULL
)
SELECT r.rolname, r.rolcanlogin, r.rolcreatedb, r.rolcreaterole, r.rolinherit
FROM pg_roles r JOIN used ON used.oid = r.oid
WHERE r.rolname <> 'postgres' AND r.rolname !~ '^pg_' AND NOT r.rolsuper
ORDER BY r.rolname
"""


def baseline_filename(database: str) -> str:
    return f"{database}.00000000.0000.{SUPERUSER}.baseline.sql"


def find_pg_dump(server_major: int) -> str:
    """A pg_dump at least as new as the server: an older one refuses to dump it."""
    candidates: list[tuple[int, str]] = []
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append((_major(on_path), on_path))
    try:
        from postgresqlpatches.scratch import find_installations

        for inst in find_installations():
            tool = inst.tool("pg_dump")
            if tool.exists():
                candidates.append((inst.major, str(tool)))
    except PgpatchError:
        pass
    fitting = sorted(c for c in candidates if c[0] >= server_major)
    if not fitting:
        have = ", ".join(f"{m} ({p})" for m, p in candidates) or "none"
        raise PgpatchError(
            f"no pg_dump for PostgreSQL {server_major} or newer was found (found: {have})",
            hint="install the PostgreSQL client of the server's major version or newer")
    return fitting[0][1]


def _major(pg_dump: str) -> int:
    out = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(m.group(1)) if m else 0


def role_section(roles: list[tuple[str, bool, bool, bool, bool]]) -> str:
    """Roles the database needs, created only where missing; passwords read at run time."""
    out = ["-- Roles this database needs. Passwords are read when psql runs this file",
           "-- (pgpatch hands psql the verifier of POSTGRESQL_<ROLE>_PASSWORD, computed on",
           "-- its side, as PGPATCH_<ROLE>_PASSWORD); they are never written here.", ""]
    for name, login, createdb, createrole, inherit in roles:
        attrs = " ".join([
            "LOGIN" if login else "NOLOGIN", "CREATEDB" if createdb else "NOCREATEDB",
            "CREATEROLE" if createrole else "NOCREATEROLE", "INHERIT" if inherit else "NOINHERIT",
        ])
        var = f"pwd_{name}"
        out += [f"SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
                f"AS create_{name} \\gset",
                f"\\if :create_{name}"]
        if login:
            out += [f"\\getenv {var} PGPATCH_{name.upper()}_PASSWORD",
                    f"\\if :{{?{var}}}",
                    f"CREATE ROLE {name} {attrs} PASSWORD :'{var}';",
                    "\\else",
                    f"DO $$BEGIN RAISE EXCEPTION 'no password for role {name}: set "
                    f"POSTGRESQL_{name.upper()}_PASSWORD'; END$$;",
                    "\\endif"]
        else:
            out.append(f"CREATE ROLE {name} {attrs};")
        out += ["\\endif", ""]
    return "\n".join(out) + "\n"


def write_baseline(options: Options, database: str, output_dir: str) -> Path:
    from postgresqlpatches import runner
    from postgresqlpatches.state import StateStore

    reason = check_identifier(database, "database")
    if reason:
        raise PgpatchError(f"baseline: {reason}")
    target = Path(output_dir) / baseline_filename(database)
    if target.exists():
        raise PgpatchError("the baseline file exists already", path=str(target),
                           hint="move it away first; pgpatch never overwrites a patch file")
    server = options.server()
    maint = Maintenance(server)
    try:
        if not maint.existing_databases({database}):
            raise PgpatchError(f"database {database} does not exist on {server.where()}")
        major = maint.server_version() // 10000
    finally:
        maint.close()
    with server.connect(database, SUPERUSER) as conn:
        roles = [tuple(r) for r in conn.execute(ROLES_QUERY).fetchall()]
    for role in roles:
        bad = check_identifier(str(role[0]), "role")
        if bad:
            raise PgpatchError(f"baseline of {database}: {bad}",
                               hint="pgpatch writes only plain role names into a baseline")
    dump = _pg_dump(server, database, major)
    text = (f"-- Baseline of {database}: pg_dump --create, taken by pgpatch baseline.\n"
            "-- Runs through psql as postgres on the maintenance database, only on a server\n"
            "-- where the database does not exist yet.\n\n"
            + role_section(roles)  # type: ignore[arg-type]
            + RESTRICT.sub("", dump))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    patch = read_patch(str(target), text=text)
    # the state database first (created by its own patches if needed), then the record
    runner.apply(_only_state(options))
    state = runner.open_state(server, options.state_db)
    assert state is not None  # the apply above made it
    store = StateStore(state)
    try:
        existing = {r.key: r for r in store.records()}.get(patch.name.key)
        if existing is not None:
            store.delete([existing.id])
        store.insert(patch)
    finally:
        store.close()
    tmp.rename(target)
    return target


def _only_state(options: Options) -> Options:
    from dataclasses import replace

    return replace(options, globs=())


def _pg_dump(server: Server, database: str, major: int) -> str:
    pg_dump = find_pg_dump(major)
    args = [pg_dump, "--create", "--no-password", "-U", SUPERUSER, "-d", database]
    if server.host:
        args += ["-h", server.host]
    if server.port:
        args += ["-p", str(server.port)]
    env = server.psql_environment(SUPERUSER)
    proc = subprocess.run(args, capture_output=True, env=env, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise PgpatchError(f"pg_dump failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout.decode("utf-8")
