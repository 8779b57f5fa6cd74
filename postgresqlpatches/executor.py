"""Run one step: in one transaction, statement by statement, or through psql for baselines."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from postgresqlpatches.errors import PatchFailed, PgpatchError
from postgresqlpatches.server import MAINTENANCE_DB, Server

if TYPE_CHECKING:
    import psycopg

    from postgresqlpatches.discovery import Patch
    from postgresqlpatches.statements import Statement

log = logging.getLogger("pgpatch")

PSQL_ERROR = re.compile(r"^psql:[^:]*:(\d+): (?:ERROR|FATAL):\s+(?:([0-9A-Z]{5}): )?(.*)$")


def failure(e: Exception, patch: Patch, statement: Statement | None,
            text: str | None = None) -> PatchFailed:
    """A server error as file, line, SQLSTATE and message; the position picks the line."""
    from postgresqlpatches.statements import line_of

    diag = getattr(e, "diag", None)
    sqlstate = getattr(diag, "sqlstate", None)
    primary = getattr(diag, "message_primary", None) or str(e).strip().splitlines()[0]
    line = statement.line if statement else None
    position = getattr(diag, "statement_position", None)
    if statement is not None and position:
        offset = statement.start + len(statement.text[: int(position) - 1])
        line = line_of(text if text is not None else patch.text, offset)
    hint = getattr(diag, "message_hint", None)
    detail = getattr(diag, "message_detail", None)
    message = primary + (f" ({detail})" if detail else "")
    return PatchFailed(message, path=patch.path, line=line, sqlstate=sqlstate, hint=hint)


def run_statements(conn: psycopg.Connection, patch: Patch,
                   statements: Sequence[Statement],
                   after_each: Callable[[int], None] | None = None, start: int = 0) -> None:
    """Run statements in order; on error raise PatchFailed (the caller rolls back)."""
    import psycopg

    cur = conn.cursor()
    for index in range(start, len(statements)):
        statement = statements[index]
        try:
            cur.execute(statement.text)
        except psycopg.Error as e:
            raise failure(e, patch, statement) from e
        if after_each is not None:
            after_each(index + 1)


def run_transaction(conn: psycopg.Connection, patch: Patch,
                    statements: Sequence[Statement]) -> int:
    """BEGIN, the transaction id and every statement sent as one pipeline; returns the xid.

    One round trip instead of 2 + len(statements). Each statement is still its own query,
    so an error names exactly the statement it came from (the first one whose result did
    not arrive: psycopg attaches results in order and stops at the error) and the server's
    position stays relative to that statement. The caller commits or rolls back.
    """
    import psycopg

    cursors: list[psycopg.Cursor] = []
    xid_cur = conn.cursor()
    try:
        with conn.pipeline():
            xid_cur.execute("SELECT pg_current_xact_id()::text")
            for statement in statements:
                cur = conn.cursor()
                cur.execute(statement.text)
                cursors.append(cur)
    except psycopg.Error as e:
        failed = None
        if xid_cur.pgresult is not None:
            failed = next((s for i, s in enumerate(statements)
                           if i >= len(cursors) or cursors[i].pgresult is None), None)
        raise failure(e, patch, failed) from e
    row = xid_cur.fetchone()
    assert row is not None
    return int(row[0])


def find_psql(server_major: int | None = None) -> str:
    """psql from PATH (PGPATCH_PSQL wins); baselines need it for their meta-commands."""
    import os

    explicit = os.environ.get("PGPATCH_PSQL")
    if explicit:
        if not shutil.which(explicit):
            raise PgpatchError(f"PGPATCH_PSQL={explicit} is not an executable psql")
        return explicit
    found = shutil.which("psql")
    if found:
        return found
    try:
        from postgresqlpatches.scratch import find_installations

        for inst in reversed(find_installations()):
            if inst.tool("psql").exists():
                return str(inst.tool("psql"))
    except PgpatchError:
        pass
    raise PgpatchError(
        "psql is needed to run 0000 baselines and was not found",
        hint="install the PostgreSQL client (psql) or set PGPATCH_PSQL to its path")


def run_psql(server: Server, patch: Patch, usernames: set[str]) -> None:
    """Run a baseline through psql on the maintenance database as the file's user."""
    psql = find_psql()
    args = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
            "-v", f"database={patch.name.database}", "-d", MAINTENANCE_DB,
            "-U", patch.name.user, "-f", "-"]
    if server.host:
        args += ["-h", server.host]
    if server.port:
        args += ["-p", str(server.port)]
    names = usernames | {patch.name.user, patch.name.database}
    names |= {m.lower() for m in re.findall(r"PGPATCH_([A-Za-z0-9_]+)_PASSWORD", patch.text)}
    env = server.psql_environment(patch.name.user, patch.name.database, names)
    log.debug("running %s through psql", patch.path)
    proc = subprocess.run(args, input=patch.text.encode(), env=env, capture_output=True,
                          check=False, preexec_fn=_die_with_parent)
    stderr = proc.stderr.decode(errors="replace")
    for text in stderr.splitlines():
        log.debug("psql: %s", text)
    if proc.returncode == 0:
        return
    raise psql_failure(stderr, patch, proc.returncode, server)


def _die_with_parent() -> None:
    """psql must not outlive a killed pgpatch: a bootstrap then stops where pgpatch stopped."""
    import sys

    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def crash_point(name: str) -> None:
    """Fault injection for the crash tests: PGPATCH_CRASH_AT=NAME:N kills this process with
    SIGKILL the Nth time it passes NAME. Unset (always, outside tests) it does nothing."""
    import os

    spec = os.environ.get("PGPATCH_CRASH_AT")
    if not spec or not spec.startswith(name + ":"):
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == int(spec.split(":", 1)[1]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


_passes: dict[str, int] = {}


def psql_failure(stderr: str, patch: Patch, returncode: int, server: Server) -> PgpatchError:
    for text in stderr.splitlines():
        m = PSQL_ERROR.match(text)
        if m:
            return PatchFailed(m.group(3), path=patch.path, line=int(m.group(1)),
                               sqlstate=m.group(2))
    lines = [t for t in stderr.splitlines() if t.strip() and not t.startswith(("DETAIL", "LOCAT"))]
    reason = lines[-1] if lines else f"psql exited with {returncode}"
    reason = re.sub(r"^psql: (error: )?", "", reason)
    if "password authentication failed" in reason:
        from postgresqlpatches.server import password_variable

        return PatchFailed(
            f"psql cannot log in as {patch.name.user}: password authentication failed",
            path=patch.path,
            hint=f"set {password_variable(server.prefix, patch.name.user)}")
    return PatchFailed(reason.removeprefix("psql:<stdin>:").strip(), path=patch.path)
