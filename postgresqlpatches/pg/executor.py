"""Run one step: in one transaction, statement by statement, or through psql for baselines."""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from postgresqlpatches.core.redact import known_passwords, redact, remembered_passwords
from postgresqlpatches.errors import PatchFailed, PgpatchError
from postgresqlpatches.pg.server import MAINTENANCE_DB, Server

if TYPE_CHECKING:
    import psycopg

    from postgresqlpatches.core.discovery import Patch
    from postgresqlpatches.core.statements import Statement

log = logging.getLogger("pgpatch")

PSQL_ERROR = re.compile(r"^psql:[^:]*:(\d+): (?:ERROR|FATAL):\s+(?:([0-9A-Z]{5}): )?(.*)$")


def failure(e: Exception, patch: Patch, statement: Statement | None,
            text: str | None = None) -> PatchFailed:
    """A server error as file, line, SQLSTATE and message; the position picks the line."""
    from postgresqlpatches.core.statements import line_of

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
    message = redact(primary + (f" ({detail})" if detail else ""))
    return PatchFailed(message, path=patch.path, line=line, sqlstate=sqlstate,
                       hint=redact(hint) if hint else None)


def run_statements(conn: psycopg.Connection, patch: Patch,
                   statements: Sequence[Statement],
                   after_each: Callable[[int], None] | None = None, start: int = 0, *,
                   drop_invalid_index: bool = False,
                   concurrent_lock_timeout_ms: int | None = None,
                   watch: Callable[[Statement], AbstractContextManager[None]] | None = None,
                   ) -> None:
    """Run statements in order; on error raise PatchFailed (the caller rolls back).

    ``drop_invalid_index`` (autocommit only): a CREATE INDEX CONCURRENTLY that fails after
    its first phase committed leaves an invalid index, and the next run's same statement
    would fail with "already exists"; that index, and only that one, is dropped
    (PatchFailed.dropped_index says which).

    ``concurrent_lock_timeout_ms`` (autocommit only): the lock_timeout of each ``...
    CONCURRENTLY`` statement (and of the drop of what it left); the statement after it
    goes back to the session's own (RESET). Once the file sets lock_timeout itself, its
    choice stands.
    ``watch`` (rehearse only): a context around each statement, to see what it locks.
    """
    import psycopg

    from postgresqlpatches.core.locks import is_concurrent, sets_lock_timeout

    cur = conn.cursor()
    own = concurrent_lock_timeout_ms is None or any(
        sets_lock_timeout(s) for s in statements[:start])
    raised = False  # lock_timeout is the concurrent one now
    for index in range(start, len(statements)):
        statement = statements[index]
        own = own or sets_lock_timeout(statement)
        if not own and is_concurrent(statement) != raised:
            raised = not raised
            if raised:
                cur.execute("SELECT set_config('lock_timeout', %s, false)",
                            [f"{concurrent_lock_timeout_ms}ms"])
            else:
                cur.execute("RESET lock_timeout")
        table = _concurrent_index_table(conn, statement) if drop_invalid_index else None
        before = _invalid_indexes(conn, table) if table is not None else None
        try:
            if watch is None:
                cur.execute(statement.text)
            else:
                with watch(statement):
                    cur.execute(statement.text)
        except psycopg.Error as e:
            error = failure(e, patch, statement)
            if table is not None and before is not None:
                _drop_index_left_by(conn, statement, table, before, error)
            raise error from e
        if after_each is not None:
            after_each(index + 1)


_INVALID_INDEXES = """
SELECT c.oid::int8, n.nspname::text, c.relname::text
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = to_regclass(%s) AND NOT i.indisvalid
"""


def _concurrent_index_table(conn: psycopg.Connection, statement: Statement) -> str | None:
    """The table of a CREATE INDEX CONCURRENTLY, as text for to_regclass (quoted)."""
    from psycopg import sql

    if statement.kind != "IndexStmt" or not statement.tree.get("concurrent"):
        return None
    relation = statement.tree.get("relation") or {}
    names = [n for n in (relation.get("schemaname"), relation.get("relname")) if n]
    return sql.Identifier(*names).as_string(conn) if names else None


def _invalid_indexes(conn: psycopg.Connection,
                     table: str) -> dict[int, tuple[str, str]] | None:
    """The table's invalid indexes by oid (schema, name); None when they cannot be read."""
    import psycopg

    try:
        rows = conn.execute(_INVALID_INDEXES, [table]).fetchall()
    except psycopg.Error as e:
        log.debug("cannot read the invalid indexes of %s: %s", table, e)
        return None
    return {int(oid): (schema, name) for oid, schema, name in rows}


def _drop_index_left_by(conn: psycopg.Connection, statement: Statement, table: str,
                        before: dict[int, tuple[str, str]], error: PatchFailed) -> None:
    """Drop the invalid index that the failed statement made: one that was not there just
    before it, on its table, with the name it gave (if it gave one), and the only such one.
    While the statement runs it holds the table's SHARE UPDATE EXCLUSIVE lock, which every
    other index build on that table waits for. Anything else is reported, never dropped."""
    import psycopg
    from psycopg import sql

    if conn.closed:
        return
    after = _invalid_indexes(conn, table)
    if after is None:
        return
    made = [after[oid] for oid in sorted(after) if oid not in before]
    if not made:
        return  # it failed before making the index: nothing is left
    wanted = statement.tree.get("idxname")
    if len(made) != 1 or wanted and made[0][1] != wanted:
        error.left_index = ", ".join(f"{schema}.{name}" for schema, name in made)
        error.left_reason = "it cannot tell which index the statement made"
        return
    schema, name = made[0]
    try:
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(schema, name)))
    except psycopg.Error as e:
        error.left_index = f"{schema}.{name}"
        error.left_reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return
    error.dropped_index = f"{schema}.{name}"


def run_transaction(conn: psycopg.Connection, patch: Patch,
                    statements: Sequence[Statement], record: Callable[[int], None],
                    following: tuple[Patch, Sequence[Statement]] | None = None, *,
                    sent: bool = False, modes: Sequence[str] = (),
                    following_modes: Sequence[str] = (), reset: bool = True,
                    observe: Callable[[Statement, object], None] | None = None) -> int:
    """Run a patch in one transaction and commit it, its record written in between; returns
    the transaction id.

    One pipeline: BEGIN, the transaction id, a flush request, every statement. ``record`` is
    called with the id as soon as the server has sent it, while the server still runs the
    statements, so writing the record costs no wait of its own; COMMIT is sent once
    ``record`` returned (never before: the record must exist before the commit, see
    docs/safety.md) and, queued behind the statements, runs as soon as they are done. If a
    statement fails, the server skips the COMMIT. If ``record`` raises, the statements are
    cancelled and the session closed.

    ``following``: the next patch on this connection, sent right behind the COMMIT, in the
    same pipeline and before any sync point, so that the server goes on without waiting for
    pgpatch; if this patch fails, the server skips it too. The next call, for that patch,
    then passes ``sent=True``. (Its COMMIT, as always, waits for its own record.)

    ``reset``: ``DISCARD ALL`` goes right behind the COMMIT (its own implicit transaction,
    no wait), so the next patch starts with the session state of a new connection: settings,
    role, temp tables, prepared statements, cursors, LISTEN, session advisory locks. The
    caller passes False only when it closes the connection after this patch anyway.
    ``modes`` (and ``following_modes``): the patch's own transaction modes, sent with its
    BEGIN: set later, after the transaction id's query, isolation and deferrability fail.
    ``observe`` (rehearse only): called with each statement and its result as it arrives.

    PatchFailed means the server answered with an error: the transaction did not commit.
    Any other exception once ``record`` has returned (a lost connection, an interrupt)
    leaves the outcome open: the COMMIT may have run.

    Each statement is still its own query, so an error names exactly the statement it came
    from and the server's position stays relative to that statement. Written on the libpq
    wrapper (``conn.pgconn``), which psycopg documents for this; the connection is
    non-blocking, so a large file is sent while its results arrive without a deadlock.
    """
    import psycopg
    from psycopg import pq

    pg = conn.pgconn
    encoding = conn.info.encoding
    if not sent and pg.transaction_status != pq.TransactionStatus.IDLE:
        conn.rollback()
    error: psycopg.Error | None = None
    failed: Statement | None = None
    xid = 0
    try:
        if not sent:
            pg.enter_pipeline_mode()
            _send_patch(pg, statements, encoding, begin_statement(conn, modes))
            _flush(pg)
            checksum_meanwhile(patch)  # while the server runs BEGIN and the id's query
        for index in (0, 1):  # BEGIN, the id
            result = _next_result(pg, encoding)
            if result.status == pq.ExecStatus.FATAL_ERROR and error is None:
                error = psycopg.errors.error_from_result(result, encoding=encoding)
            elif index == 1 and error is None:
                xid = int(result.get_value(0, 0) or b"0")
            _end_of_query(pg)
        commit = error is None
        chained = commit and following is not None
        reset = reset and commit
        if commit:
            record(xid)
            pg.send_query_params(b"COMMIT", None)
        if reset:
            pg.send_query_params(b"DISCARD ALL", None)
        if chained:
            assert following is not None
            _send_patch(pg, following[1], encoding, begin_statement(conn, following_modes))
        else:
            pg.pipeline_sync()
        _flush(pg)
        if chained:  # while the server runs this patch's statements and its COMMIT
            checksum_meanwhile(following[0])
        for index in range(len(statements) + commit + reset):  # statements, COMMIT, DISCARD
            result = _next_result(pg, encoding)
            if result.status == pq.ExecStatus.FATAL_ERROR and error is None:
                error = psycopg.errors.error_from_result(result, encoding=encoding)
                if index > len(statements):  # the patch committed: this is no patch error
                    raise psycopg.OperationalError(
                        "the session could not be reset after the commit: "
                        + str(error).strip().splitlines()[0])
                failed = statements[index] if index < len(statements) else None
            if observe is not None and index < len(statements):
                observe(statements[index], result)
            _end_of_query(pg)
            if index == len(statements) and error is None:
                crash_point("after-commit-result")
        if chained and error is None:
            return xid
        if chained:  # this patch failed: the following one was skipped; end the pipeline
            assert following is not None
            pg.pipeline_sync()
            _flush(pg)
            for _ in range(2 + len(following[1])):
                _next_result(pg, encoding)
                _end_of_query(pg)
        result = _next_result(pg, encoding)
        if result.status != pq.ExecStatus.PIPELINE_SYNC:
            raise psycopg.OperationalError(f"unexpected result {result.status.name} in pipeline")
    except BaseException:
        _abandon(conn)
        raise
    pg.exit_pipeline_mode()
    if error is not None:
        raise failure(error, patch, failed) from error
    return xid


def checksum_meanwhile(patch: Patch) -> None:
    """Scan the patch for its token checksum (Patch.checksum, cached) while the server works
    on what was just sent, where pgpatch would only wait: the record, written between the
    transaction id's arrival and the COMMIT, then only writes (the scan cost 0.1-0.2 ms of
    that wait for every patch). If the scan fails, the record's own use raises it again,
    before any COMMIT."""
    try:
        _ = patch.checksum
    except Exception as e:  # raised again where the record needs it
        log.debug("%s: no checksum yet: %s", patch.path, e)


def begin_statement(conn: psycopg.Connection, modes: Sequence[str]) -> bytes:
    """BEGIN with a patch's transaction modes, which come from TRANSACTION_MODES only."""
    if not modes:
        return b"BEGIN"
    return _with_modes(conn, "BEGIN", modes)


def set_transaction(conn: psycopg.Connection, modes: Sequence[str]) -> None:
    """The modes as the first query of a transaction psycopg began (BEGIN has no options
    there)."""
    if modes:
        conn.execute(_with_modes(conn, "SET TRANSACTION", modes))


def _with_modes(conn: psycopg.Connection, command: str, modes: Sequence[str]) -> bytes:
    from psycopg import sql

    from postgresqlpatches.core.statements import TRANSACTION_MODES

    unknown = set(modes) - TRANSACTION_MODES
    if unknown:
        raise ValueError(f"not a transaction mode: {sorted(unknown)}")
    return sql.SQL("{} {}").format(
        sql.SQL(command), sql.SQL(", ").join(sql.SQL(m) for m in modes)).as_bytes(conn)


def _send_patch(pg: psycopg.pq.abc.PGconn, statements: Sequence[Statement],
                encoding: str, begin: bytes = b"BEGIN") -> None:
    pg.send_query_params(begin, None)
    pg.send_query_params(b"SELECT pg_current_xact_id()::text", None)
    pg.send_flush_request()
    for statement in statements:
        pg.send_query_params(statement.text.encode(encoding), None)


def _flush(pg: psycopg.pq.abc.PGconn) -> None:
    """Send what libpq holds, reading meanwhile so that the server never blocks on us."""
    import select

    while pg.flush():
        readable, _, _ = select.select([pg.socket], [pg.socket], [])
        if readable:
            pg.consume_input()


def _wait_for_input(pg: psycopg.pq.abc.PGconn) -> None:
    """Read until libpq has a whole result (the socket wait lets Ctrl-C through)."""
    import select

    while pg.is_busy():
        select.select([pg.socket], [], [])
        pg.consume_input()


def _next_result(pg: psycopg.pq.abc.PGconn,
                 encoding: str = "utf-8") -> psycopg.pq.abc.PGresult:
    import psycopg

    _wait_for_input(pg)
    result = pg.get_result()
    if result is None:
        reason = pg.error_message.decode(encoding, errors="replace").strip()
        raise psycopg.OperationalError(reason or "the server sent no result in the pipeline")
    severity = result.error_field(psycopg.pq.DiagnosticField.SEVERITY_NONLOCALIZED)
    if pg.status == psycopg.pq.ConnStatus.BAD or severity in (b"FATAL", b"PANIC"):
        # the session ends: not an answer about the transaction (a COMMIT may even have
        # committed, e.g. when a synchronous standby wait was cut short)
        if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
            error = psycopg.errors.error_from_result(result, encoding=encoding)
            if isinstance(error, psycopg.OperationalError):
                raise error
            raise psycopg.OperationalError(str(error).strip()) from error
        raise psycopg.OperationalError("the connection to the server was lost")
    return result


def _end_of_query(pg: psycopg.pq.abc.PGconn) -> None:
    """In a pipeline each query's results end with a null result."""
    import psycopg

    _wait_for_input(pg)
    if pg.get_result() is not None:
        raise psycopg.OperationalError("a query gave more than one result in the pipeline")


def _abandon(conn: psycopg.Connection) -> None:
    """Stop a pipeline half-way (a lost server, an interrupt, a failed record): cancel what
    the server is running and close the session, which rolls the transaction back."""
    import psycopg

    if conn.pgconn.status == psycopg.pq.ConnStatus.OK:  # a lost session has nothing to cancel
        try:
            if hasattr(conn, "cancel_safe"):  # psycopg >= 3.2: bounded, interruptible
                conn.cancel_safe(timeout=5)
            else:
                conn.cancel()
        except (psycopg.Error, OSError):
            pass
    conn.close()


def run_psql(server: Server, patch: Patch, verifier: Callable[[str, str], str]) -> None:
    """Run a baseline through psql on the maintenance database as the file's user.

    psql gets the clear password of the file's user only (PGPASSWORD) and, for each password
    variable the file names, the role's verifier from ``verifier(password, role)``."""
    from postgresqlpatches.pg.binaries import find_psql
    from postgresqlpatches.pg.server import baseline_variables

    psql = find_psql()
    args = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
            "-v", f"database={patch.name.database}", "-d", MAINTENANCE_DB,
            "-U", patch.name.user, "-f", "-"]
    if server.host:
        args += ["-h", server.host]
    if server.port:
        args += ["-p", str(server.port)]
    variables = baseline_variables(patch.text, server.prefix, patch.name.database)
    env = server.psql_environment(patch.name.user, variables, verifier, own=patch.builtin,
                                  roles_db=patch.name.database)
    log.debug("running %s through psql", patch.path)
    proc = subprocess.run(args, input=patch.text.encode(), env=env, capture_output=True,
                          check=False, preexec_fn=_die_with_parent)
    # psql quotes failed statements back (LINE 1: ... PASSWORD '...'): mask what it was given
    # (a password that is the user's own name is no secret: its fallback is not masked)
    secrets = ({env[name] for name in variables} | known_passwords(server.environ)
               | remembered_passwords())
    stderr = redact(proc.stderr.decode(errors="replace"), secrets)
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
    SIGKILL the Nth time it passes NAME; PGPATCH_CRASH_AT=NAME:N:interrupt raises
    KeyboardInterrupt there instead (Ctrl-C at that very moment). Unset (always, outside
    tests) it does nothing. Group members run in threads (--jobs): the passes are counted
    under a lock, so that the Nth is the process's Nth, in whichever thread."""
    import os

    spec = os.environ.get("PGPATCH_CRASH_AT")
    if not spec or not spec.startswith(name + ":"):
        return
    _, count, *action = spec.split(":")
    with _passes_lock:
        passes = _passes[name] = _passes.get(name, 0) + 1
    if passes != int(count):
        return
    if action == ["interrupt"]:
        raise KeyboardInterrupt
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


_passes: dict[str, int] = {}
_passes_lock = threading.Lock()


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
        from postgresqlpatches.pg.server import password_variable

        return PatchFailed(
            f"psql cannot log in as {patch.name.user}: password authentication failed",
            path=patch.path,
            hint=f"set {password_variable(server.prefix, patch.name.user)}")
    return PatchFailed(reason.removeprefix("psql:<stdin>:").strip(), path=patch.path)


def reset_session(conn: psycopg.Connection) -> bool:
    """DISCARD ALL outside a transaction block; False when the session cannot be reset (it
    is then closed and the next patch gets a new one)."""
    import psycopg
    from psycopg import pq

    try:
        if conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True
        conn.execute("DISCARD ALL")
        conn.autocommit = False
    except psycopg.Error as e:
        log.debug("cannot reset a kept session, opening a new one: %s", e)
        return False
    return True


def rollback_quietly(conn: psycopg.Connection) -> None:
    """Roll back what a failed patch left open; a connection already gone needs none."""
    import psycopg

    try:
        if not conn.closed:
            conn.rollback()
    except psycopg.Error:
        pass
