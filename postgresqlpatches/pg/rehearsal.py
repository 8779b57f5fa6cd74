"""The copy rehearse runs on: a throwaway server of the live major, its roles and schemas.

Reading the live server: every session has default_transaction_read_only=on (Server.read_only),
pg_dump's too. Writing goes to the throwaway server only, as its superuser.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from postgresqlpatches.core.redact import is_password_variable
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.binaries import Installation, find_installations
from postgresqlpatches.pg.server import MAINTENANCE_DB, SUPERUSER, Server

if TYPE_CHECKING:
    from postgresqlpatches.pg.scratch import ScratchServer

log = logging.getLogger("pgpatch")

COPY_PASSWORD_VARIABLE = "PGPATCH_REHEARSAL_PASSWORD"


class CopyPasswords(Mapping[str, str]):
    """The environment of the copy's sessions: every role there has one password, made up
    for this rehearsal, so every password variable ({PREFIX}{ROLE}_PASSWORD, the original
    tool's) answers it; nothing else is set. Listed as one variable, so output masks it."""

    def __init__(self) -> None:
        self.password = secrets.token_urlsafe(18)

    def __getitem__(self, key: str) -> str:
        if is_password_variable(key) and key != "PGPASSWORD":
            return self.password
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter([COPY_PASSWORD_VARIABLE])

    def __len__(self) -> int:
        return 1


def installation_for(major: int | None) -> Installation:
    """Server binaries of ``major`` (the machine's first, then a wheel's); None: the newest."""
    found = find_installations()
    fitting = [i for i in found if major is None or i.major == major]
    if not fitting:
        have = ", ".join(sorted({str(i.major) for i in found})) or "none"
        raise PgpatchError(
            f"rehearse needs PostgreSQL {major} server binaries (the same major as the "
            f"server) and found none (found majors: {have})",
            hint=f"install PostgreSQL {major} (e.g. `apt-get install postgresql-{major}`), or "
                 "point PGPATCH_PG_BIN at its bin directory")
    newest = max(i.major for i in fitting)
    return min((i for i in fitting if i.major == newest), key=lambda i: i.source != "machine")


def psql_command(installation: Installation, scratch: ScratchServer) -> list[str]:
    """psql into the copy's maintenance database as its superuser, stopping at an error."""
    return [str(installation.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", scratch.host, "-p", str(scratch.port), "-U", SUPERUSER, "-d", MAINTENANCE_DB,
            "-f", "-"]


def scratch_environment(scratch: ScratchServer) -> dict[str, str]:
    """Ours without PG* variables that would point psql elsewhere, with the copy's login."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and not is_password_variable(k)}
    env["PGPASSWORD"] = scratch.password
    return env


def copy_roles(live: Server, scratch: ScratchServer, psql: list[str]) -> int:
    """Every role of the live server onto the copy, attributes, memberships and settings as
    they are; its password is the copy's (the live one is never read). The number copied."""
    from postgresqlpatches.pg.dump import read_roles, role_section

    with live.connect(MAINTENANCE_DB, live.admin_user) as conn:
        roles, memberships = read_roles(conn, every_role=True)
        section = role_section(roles, memberships, conn)
    env = scratch_environment(scratch)
    with scratch.connect() as conn:
        for role in roles:
            if role.login:  # role_section reads it as PGPATCH_<ROLE>_PASSWORD, a verifier
                env[f"PGPATCH_{role.name.upper()}_PASSWORD"] = conn.pgconn.encrypt_password(
                    scratch.password.encode(), role.name.encode(),
                    b"scram-sha-256").decode("ascii")
    proc = subprocess.run(psql, input=section.encode(), capture_output=True, env=env,
                          check=False)
    if proc.returncode != 0:
        lines = [t for t in proc.stderr.decode(errors="replace").splitlines() if t.strip()]
        raise PgpatchError("copying the roles to the throwaway server failed: "
                           + (lines[-1] if lines else str(proc.returncode)))
    return len(roles)


def database_sizes(live: Server, names: set[str]) -> dict[str, int]:
    with live.connect(MAINTENANCE_DB, live.admin_user) as conn:
        rows = conn.execute("SELECT datname, pg_database_size(oid) FROM pg_database "
                            "WHERE datname = ANY(%s)", [sorted(names)]).fetchall()
    return {name: int(size) for name, size in rows}


def copy_database(live: Server, database: str, scratch: ScratchServer, psql: list[str],
                  *, rows: bool, major: int) -> None:
    """``pg_dump --create`` of the live database (schema only unless ``rows``) into the copy."""
    from postgresqlpatches.pg.binaries import find_pg_dump
    from postgresqlpatches.pg.dump import pipe_dump

    pg_dump = find_pg_dump(major)
    # psql of pg_dump's own major reads everything that pg_dump writes (\restrict in 18)
    own_psql = Path(pg_dump).with_name("psql")
    command = [str(own_psql), *psql[1:]] if own_psql.exists() else psql
    log.info("rehearse: copying %s (%s)", database, "schema and rows" if rows else "schema")
    pipe_dump(pg_dump, live, database, [] if rows else ["--schema-only"], command,
              scratch_environment(scratch))
