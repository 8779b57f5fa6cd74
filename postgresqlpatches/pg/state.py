"""The state database: what ran where, with checksums and the target transaction ids."""

from __future__ import annotations

import functools
import getpass
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from postgresqlpatches import __version__
from postgresqlpatches.core.checksums import CHECKSUM_VERSION
from postgresqlpatches.core.discovery import Patch
from postgresqlpatches.core.records import Record
from postgresqlpatches.errors import PgpatchError

if TYPE_CHECKING:
    import psycopg

    from postgresqlpatches.pg.server import Server

STATE_USER = "patches"
log = logging.getLogger("pgpatch")


OPTIONAL_COLUMNS = ("user_name", "path", "checksum", "xid", "settled", "non_transactional",
                    "statements_done", "duration_ms", "run_by", "checksum_version",
                    "text_checksum", "statement_checksums", "oid_horizon", "session_budget",
                    "pgpatch_version", "run")
"""Columns the original tool's schema lacks; read as NULL where they do not exist."""

READ_RECORDS = """
SELECT ip.id, d.name, lpad(ip.major::text, 8, '0'), lpad(ip.minor::text, 4, '0'),
       ip.name::text, ip.installed, {optional}
FROM installed_patches ip JOIN databases d ON d.id = ip.database_id
{where}
ORDER BY d.name, 3, 4, ip.id
"""
"""In id order within a version: a repeatable patch's last run comes last."""


def _record(row: tuple[Any, ...]) -> Record:
    (id_, database, major, minor, name, installed, user, path, checksum_, xid, settled,
     non_transactional, statements_done, duration_ms, run_by, checksum_version, text_checksum_,
     statement_checksums, oid_horizon, session_budget, pgpatch_version, run) = row
    return Record(
        id=id_, database=database, major=major, minor=minor, name=name, installed=installed,
        user=user, path=path, checksum=checksum_, xid=int(xid) if xid is not None else None,
        settled=settled is not False, non_transactional=bool(non_transactional),
        statements_done=statements_done, duration_ms=duration_ms, run_by=run_by,
        checksum_version=checksum_version, text_checksum=text_checksum_,
        statement_checksums=tuple(statement_checksums) if statement_checksums is not None
        else None,
        oid_horizon=oid_horizon, session_budget=session_budget, pgpatch_version=pgpatch_version,
        run=run,
    )


def read_records(conn: psycopg.Connection, *, unsettled_only: bool = False,
                 columns: frozenset[str] | None = None) -> list[Record]:
    """Every record in one query; works on the original tool's schema as well as ours.

    ``unsettled_only`` (schema with a ``settled`` column only) reads just what a crashed run
    left, so that settling does not read every record a second time. ``columns``: the
    table's columns when the caller knows them (else asked first).
    """
    if columns is None:
        columns = record_columns(conn)
    optional = ", ".join(
        (f"ip.{c}::text" if c == "xid" else f"ip.{c}") if c in columns else "NULL"
        for c in OPTIONAL_COLUMNS)
    query = READ_RECORDS.format(optional=optional,
                                where="WHERE NOT ip.settled" if unsettled_only else "")
    return [_record(row) for row in conn.execute(query).fetchall()]


def record_columns(conn: psycopg.Connection) -> frozenset[str]:
    rows = conn.execute(
        """SELECT attname FROM pg_attribute
           WHERE attrelid = 'installed_patches'::regclass AND attnum > 0 AND NOT attisdropped"""
    ).fetchall()
    return frozenset(r[0] for r in rows)


def _run_by() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


RECORD_PREPARED_ONLY = 2**31
"""The store session's prepare threshold: psycopg prepares a query once it ran this often, or
when asked to (``prepare=True``); with a threshold of None (every other session of a run,
server.connect) it never does."""


class StateStore:
    """Writes records; one autocommit session, kept for the whole run.

    The record's INSERT is a prepared statement of this session (nothing resets it), so the
    server plans it once per run, not between each patch's transaction id and its COMMIT."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        # the record's insert is prepared (insert_record); no other query is
        conn.prepare_threshold = RECORD_PREPARED_ONLY
        self._db_ids: dict[str, int] = {}
        self.columns = record_columns(conn)
        self.run_by = _run_by()

    def refresh_columns(self) -> None:
        self.columns = record_columns(self.conn)

    def close(self) -> None:
        self.conn.close()

    def records(self) -> list[Record]:
        return read_records(self.conn, columns=self.columns)

    def unsettled(self) -> list[Record]:
        """Records whose target transaction's fate is not yet written down."""
        if "settled" not in self.columns:
            return []  # the original tool's schema: every record means applied
        return read_records(self.conn, unsettled_only=True, columns=self.columns)

    def insert(self, patch: Patch, *, xid: int | None = None, settled: bool = True,
               non_transactional: bool = False, duration_ms: float | None = None,
               statements_done: int | None = None, flush: bool = True,
               mark: tuple[int, int | None] | None = None, run: int | None = None) -> int:
        """Insert one record on the store's own session (a state-database patch writes its
        record in its own transaction with insert_record instead).

        ``flush=False`` commits without waiting for the WAL flush: only for a record whose
        target transaction commits next in the same cluster, whose synchronous COMMIT flushes
        the WAL up to its own commit record, so the record's (earlier) commit with it. A crash
        before that flush can lose the record, but then the patch did not commit either:
        never a committed patch without its record.

        ``mark``: a bootstrap step's (oid_horizon, session_budget), where the columns exist.
        ``run``: a repeatable patch's run number (planner.next_run).
        """
        name = patch.name.database
        if name not in self._db_ids:
            self._db_ids[name] = database_id(self.conn, name)
        return insert_record(self.conn, self.columns, patch, db_id=self._db_ids[name], xid=xid,
                             settled=settled,
                             non_transactional=non_transactional, duration_ms=duration_ms,
                             statements_done=statements_done, run_by=self.run_by, flush=flush,
                             mark=mark, run=run)

    @functools.cached_property
    def identity(self) -> tuple[object, ...] | None:
        """The state database's cluster (system identifier, postmaster start), asked once."""
        return cluster_identity(self.conn)

    def mark_settled(self, ids: Iterable[int],
                     durations: Mapping[int, float] | None = None) -> None:
        """Settle records; ``durations`` (milliseconds by id) also sets how long the patch
        took, known only once its transaction committed."""
        ids = list(ids)
        if not ids:
            return
        if durations and "duration_ms" in self.columns:
            self.conn.execute(
                """UPDATE installed_patches p
                   SET settled = true, duration_ms = coalesce(v.ms, p.duration_ms)
                   FROM unnest(%s::integer[], %s::double precision[]) AS v(id, ms)
                   WHERE p.id = v.id""",
                [ids, [durations.get(i) for i in ids]])
        else:
            self.conn.execute(
                "UPDATE installed_patches SET settled = true WHERE id = ANY(%s)", [ids])

    def set_progress(self, record_id: int, statements_done: int, *, settled: bool = False,
                     duration_ms: float | None = None,
                     statement_checksums: Sequence[str] | None = None) -> None:
        """``statement_checksums``: of the statements done, so a resume can tell an edit."""
        if statement_checksums is not None and "statement_checksums" in self.columns:
            self.conn.execute(
                """UPDATE installed_patches SET statements_done = %s, settled = %s,
                          duration_ms = coalesce(%s, duration_ms), statement_checksums = %s
                   WHERE id = %s""",
                [statements_done, settled, duration_ms, list(statement_checksums), record_id])
            return
        self.conn.execute(
            """UPDATE installed_patches SET statements_done = %s, settled = %s,
                      duration_ms = coalesce(%s, duration_ms) WHERE id = %s""",
            [statements_done, settled, duration_ms, record_id])

    def set_file(self, record_id: int, patch: Patch) -> None:
        """A record carried over to a resumed or redone run takes today's file's checksum."""
        self.write_checksums([(record_id, patch)], path=True)

    def delete(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if ids:
            self.conn.execute("DELETE FROM installed_patches WHERE id = ANY(%s)", [ids])

    def write_checksums(self, items: Sequence[tuple[int, Patch]], *, path: bool = False) -> None:
        """Records take today's file's checksums (``path``: and its path): a record without a
        checksum or with an older version, once the planner found it matching."""
        if not items or "checksum" not in self.columns:
            return
        from psycopg import sql

        rows = [{**checksum_values(patch, self.columns), "id": i, "path": patch.path}
                for i, patch in items]
        cols = [c for c in rows[0]
                if c != "id" and c in self.columns and (path or c != "path")]
        query = sql.SQL("UPDATE installed_patches SET {} WHERE id = %(id)s").format(
            sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c))
                               for c in cols))
        with self.conn.cursor() as cur:
            cur.executemany(query, rows)

    def forget_database(self, database: str) -> int:
        cur = self.conn.execute(
            """DELETE FROM installed_patches
               WHERE database_id = (SELECT id FROM databases WHERE name = %s)""", [database])
        return cur.rowcount


def cluster_identity(conn: psycopg.Connection) -> tuple[object, ...] | None:
    """Which cluster serves ``conn``: same system identifier and postmaster start, so not a
    clone. Ask it on an idle connection only: on a failure the transaction is rolled back."""
    import psycopg

    try:
        row = conn.execute("SELECT system_identifier, pg_postmaster_start_time() "
                           "FROM pg_control_system()").fetchone()
    except psycopg.Error:  # not allowed: then every record is flushed on its own
        row = None
    if not conn.autocommit:
        conn.rollback()
    return tuple(row) if row else None


def database_id(conn: psycopg.Connection, name: str) -> int:
    """The id of a database's row in ``databases``, made on first use."""
    row = conn.execute("SELECT id FROM databases WHERE name = %s", [name]).fetchone()
    if row is None:
        row = conn.execute(
            """INSERT INTO databases (name) VALUES (%s)
               ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id""",
            [name]).fetchone()
    assert row is not None
    return int(row[0])


_INSERT_QUERIES: dict[tuple[tuple[str, ...], bool, str], bytes] = {}


def _insert_query(conn: psycopg.Connection, cols: tuple[str, ...], flush: bool) -> bytes:
    """Composed and rendered once per column set and encoding: composing the SQL for every
    record cost 0.1-0.2 ms of CPU each."""
    from psycopg import sql

    key = (cols, flush, conn.info.encoding)
    query = _INSERT_QUERIES.get(key)
    if query is None:
        query = sql.SQL(
            """WITH {async_cte} db AS (SELECT %(database_id)s::integer AS id)
               INSERT INTO installed_patches (database_id, {cols})
               SELECT db.id, {vals} FROM db {async_from} RETURNING id"""
        ).format(
            async_cte=sql.SQL(
                "" if flush else
                "no_flush AS (SELECT set_config('synchronous_commit', 'off', true)),"),
            async_from=sql.SQL("" if flush else ", no_flush"),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
            vals=sql.SQL(", ").join(
                sql.SQL("{}::xid8").format(sql.Placeholder(c)) if c == "xid"
                else sql.Placeholder(c) for c in cols),
        ).as_bytes(conn)
        _INSERT_QUERIES[key] = query
    return query


def checksum_values(patch: Patch, columns: frozenset[str]) -> dict[str, Any]:
    """The checksum columns of a record: version 2 where the schema can say so; in a schema
    without ``checksum_version`` (before its patch ran) the version 1 checksum, which is what
    an unversioned checksum means there."""
    if "checksum_version" not in columns:
        return {"checksum": patch.text_checksum}
    return {"checksum": patch.checksum, "checksum_version": CHECKSUM_VERSION,
            "text_checksum": patch.text_checksum}


def insert_record(conn: psycopg.Connection, columns: frozenset[str], patch: Patch, *,
                  xid: int | None, settled: bool, non_transactional: bool,
                  duration_ms: float | None, statements_done: int | None, run_by: str,
                  flush: bool = True, db_id: int | None = None,
                  mark: tuple[int, int | None] | None = None, run: int | None = None) -> int:
    """The record's columns depend on the schema's age: old rows get only what exists.

    ``flush=False``: this statement's own transaction commits with synchronous_commit off
    (``set_config(..., true)`` is local to it), still one round trip; see StateStore.insert.
    """
    name = patch.name
    values: dict[str, Any] = {
        "major": name.major, "minor": name.minor, "name": name.filename,
        "user_name": name.user, "description": name.description, "path": patch.path,
        **checksum_values(patch, columns), "xid": str(xid) if xid is not None else None,
        "settled": settled, "non_transactional": non_transactional,
        "duration_ms": duration_ms, "statements_done": statements_done,
        "run_by": run_by, "pgpatch_version": __version__,
    }
    if run is not None:  # a repeatable patch's record; the column exists where it can run
        values["run"] = run
    if mark is not None:
        values["oid_horizon"], values["session_budget"] = mark
    if "user_name" not in columns:  # the original tool's integer versions
        values["major"], values["minor"] = int(name.major), int(name.minor)
    cols = tuple(c for c in values if c in columns)
    values["database_id"] = db_id if db_id is not None else database_id(conn, name.database)
    # prepared where the session has prepared statements at all: the store's (StateStore); a
    # patch's session has none, its DISCARD ALL would drop them
    prepare = True if conn.prepare_threshold is not None else None
    row = conn.execute(_insert_query(conn, cols, flush), values, prepare=prepare).fetchone()
    assert row is not None
    return int(row[0])


# -- a state database that a first run left half made ----------------------------------------

BASELINE_RELATIONS = (
    "databases", "databases_pkey", "databases_name_key", "databases_id_seq",
    "installed_patches", "installed_patches_pkey",
    "installed_patches_major_minor_database_id_key", "installed_patches_id_seq", "patches")
"""Every relation the state database's baseline makes (all in public, owned by patches)."""
BASELINE_ROUTINES = ("sp_patch_installed", "fn_patch_installed")

# Objects pgpatch's baseline makes, and what belongs to them; any other object made after
# initdb (oid >= 16384) in any schema is someone else's. Catalogs not named here are added
# by _foreign_objects_query: every row they hold with such an oid is someone else's.
_FOREIGN_OBJECTS = """
WITH owner AS (SELECT oid FROM pg_roles WHERE rolname = %(owner)s),
ours AS (SELECT c.oid FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%(relations)s)
           AND c.relowner = (SELECT oid FROM owner)),
other AS (
    SELECT 'pg_namespace'::regclass AS classid, oid AS objid FROM pg_namespace
    WHERE oid >= 16384 AND nspname !~ '^pg_(toast_)?temp_'
    UNION ALL SELECT 'pg_class'::regclass, oid FROM pg_class
    WHERE oid >= 16384 AND oid NOT IN (SELECT oid FROM ours)
      AND relnamespace <> 'pg_toast'::regnamespace
    UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t
    WHERE t.oid >= 16384 AND t.typrelid = 0
      AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid AND e.typrelid <> 0)
    UNION ALL SELECT 'pg_proc'::regclass, oid FROM pg_proc
    WHERE oid >= 16384 AND NOT (proname = ANY(%(routines)s)
      AND pronamespace = 'public'::regnamespace AND proowner = (SELECT oid FROM owner))
    UNION ALL SELECT 'pg_constraint'::regclass, oid FROM pg_constraint
    WHERE oid >= 16384 AND conrelid NOT IN (SELECT oid FROM ours)
    UNION ALL SELECT 'pg_attrdef'::regclass, oid FROM pg_attrdef
    WHERE oid >= 16384 AND adrelid NOT IN (SELECT oid FROM ours)
    UNION ALL SELECT 'pg_rewrite'::regclass, oid FROM pg_rewrite
    WHERE oid >= 16384 AND NOT (ev_class IN (SELECT oid FROM ours) AND rulename = '_RETURN')
    UNION ALL SELECT 'pg_trigger'::regclass, oid FROM pg_trigger
    WHERE oid >= 16384 AND NOT (tgrelid IN (SELECT oid FROM ours) AND tgisinternal)
    {generic}
)
SELECT pg_describe_object(classid, objid, 0) FROM other ORDER BY classid, objid LIMIT 3
"""
_CHECKED = ("pg_namespace", "pg_class", "pg_type", "pg_proc", "pg_constraint", "pg_attrdef",
            "pg_rewrite", "pg_trigger")


def _foreign_objects_query(conn: psycopg.Connection) -> bytes:
    from psycopg import sql

    catalogs = [r[0] for r in conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
           WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r'
             AND NOT c.relisshared AND a.attname = 'oid' AND c.relname <> ALL(%s)
             AND has_table_privilege(c.oid, 'SELECT')  -- pg_user_mapping: its servers count
           ORDER BY 1""", [list(_CHECKED)]).fetchall()]
    generic = sql.SQL(" ").join(
        sql.SQL("UNION ALL SELECT {}::regclass, oid FROM pg_catalog.{} WHERE oid >= 16384")
        .format(sql.Literal(name), sql.Identifier(name)) for name in catalogs)
    return sql.SQL(_FOREIGN_OBJECTS).format(generic=generic).as_bytes(conn)


def half_made_state(conn: psycopg.Connection) -> tuple[str | None, int]:
    """Is the database of ``conn`` what the state database's baseline leaves when it is cut
    short? (why not, or None; and how many other sessions are connected to it).

    The baseline cannot be recorded before its database exists, so its shape is the proof:
    made as the baseline makes it (owned by role patches, template1's encoding, locale and
    tablespace, no settings or comment of its own), with the privileges its REVOKE leaves
    (or none yet, and then empty), holding nothing but (part of) the baseline's own objects,
    all owned by patches, every table empty."""
    from psycopg import sql

    row = conn.execute(
        """SELECT d.datdba = o.oid,
                  d.datacl IS NULL, d.datacl::text[] = ARRAY[format('%%1$s=CTc/%%1$s',
                                                                    quote_ident(o.rolname))],
                  (d.encoding, d.datcollate, d.datctype, d.dattablespace, d.datistemplate,
                   d.datallowconn, d.datconnlimit)
                  = (t.encoding, t.datcollate, t.datctype, t.dattablespace, false, true, -1)
                  AND NOT EXISTS (SELECT FROM pg_db_role_setting WHERE setdatabase = d.oid)
                  AND NOT EXISTS (SELECT FROM pg_shdescription
                                  WHERE objoid = d.oid AND classoid = 'pg_database'::regclass),
                  (SELECT count(*) FROM pg_stat_activity a
                   WHERE a.datid = d.oid AND a.pid <> pg_backend_pid()
                     AND a.backend_type IS DISTINCT FROM 'autovacuum worker')
           FROM pg_database d LEFT JOIN pg_roles o ON o.rolname = %s
                JOIN pg_database t ON t.datname = 'template1'
           WHERE d.datname = current_database()""", [STATE_USER]).fetchone()
    assert row is not None
    owned, bare, revoked, plain, connected = row
    if not owned:
        return f"it is not owned by role {STATE_USER}", connected
    if not plain:
        return "it was not made as pgpatch's baseline makes it, or has settings", connected
    if not (bare or revoked):
        return "its privileges are not the ones pgpatch's baseline gives it", connected
    if bare:  # cut short before its REVOKE (most likely in its CREATE DATABASE): nothing yet
        made = conn.execute("SELECT EXISTS (SELECT FROM pg_class WHERE oid >= 16384)"
                            ).fetchone()
        if made and made[0]:
            return "it holds objects its baseline makes only after its REVOKE", connected
    found = [r[0] for r in conn.execute(
        _foreign_objects_query(conn),
        {"owner": STATE_USER, "relations": list(BASELINE_RELATIONS),
         "routines": list(BASELINE_ROUTINES)}).fetchall()]
    if found:
        return f"it holds {', '.join(found)}, which pgpatch's baseline does not make", connected
    for table in ("databases", "installed_patches"):
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                              [f"public.{table}"]).fetchone()
        if exists and exists[0]:
            rows = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM public.{})").format(
                sql.Identifier(table))).fetchone()
            if rows and rows[0]:
                return f"its table {table} holds rows", connected
    return None, connected


STATE_PROBE = """
SELECT to_regclass('public.installed_patches') IS NOT NULL,
       to_regclass('public.installed_patches') IS NULL
       OR has_table_privilege('public.installed_patches', 'SELECT, INSERT, UPDATE, DELETE')
          AND has_table_privilege('public.databases', 'SELECT, INSERT, UPDATE')
"""
"""Whether our tables are there, and whether role patches may write them (the shape of
anything else in the database is half_made_state's to judge)."""


def open_state(server: Server, state_db: str, *,
               allow_empty: bool = False) -> psycopg.Connection | None:
    """The state database's connection, or None when it is what a first run whose bootstrap
    was cut short left (state.half_made_state: it is made anew).

    As role patches; as postgres while the tables are not patches' yet (the original tool's
    layout, until our first upgrade patch hands them over). A database of the same name in
    any other shape is an error, never touched; one with our tables but no record is used."""
    conn = server.connect(state_db, STATE_USER)
    row = conn.execute(STATE_PROBE).fetchone()
    assert row is not None
    has_table, writable = row
    if has_table and not writable:
        conn.close()
        log.info("role %s may not write the state tables yet: using %s", STATE_USER,
                 server.admin_user)
        conn = server.connect(state_db, server.admin_user)
    if has_table and allow_empty:
        return conn
    if has_table:
        empty = conn.execute("SELECT NOT EXISTS (SELECT FROM installed_patches)").fetchone()
        if not (empty and empty[0]):
            return conn
    reason, connected = half_made_state(conn)
    if reason is not None and has_table:
        return conn  # our tables, no record yet, made by someone else: used as they are
    conn.close()
    if reason is not None:
        raise PgpatchError(
            f"the database {state_db} exists but is not a pgpatch state database",
            hint="name another state database with --state-db")
    if connected:
        raise PgpatchError(
            f"the database {state_db} is what an interrupted first run of pgpatch left, "
            f"but {connected} other session{'s' * (connected > 1)} "
            f"{'are' if connected > 1 else 'is'} connected to it",
            hint="pgpatch makes it anew only while nobody uses it: wait for them to end, "
                 "then run again")
    return None


def make_state_database(conn: psycopg.Connection, patch: Patch, secrets: Mapping[str, str],
                        connect: Callable[[str], psycopg.Connection]) -> None:
    """Run the state database's shipped baseline (core/own_patches.py) as psql runs it,
    without psql: from the maintenance session ``conn`` (the file's user, autocommit, as
    psql starts), ``\\connect`` to the new database through ``connect`` (a session of the
    run, kept for the state patches after it). psql would cost a process and two logins.

    Each meta-command means what it means in psql: ``\\getenv`` reads ``secrets`` (the
    password variables psql would get: each role's SCRAM verifier, never a clear
    password), ``\\gset`` keeps the columns of the query before it, ``\\if`` / ``\\endif``
    skip, ``:'x'`` and ``:"x"`` are a literal and an identifier. Statements before the
    ``\\connect`` run one by one in autocommit (CREATE DATABASE needs it), those after it in
    one transaction with pgpatch's own search_path (psql had it in its PGOPTIONS). A failed
    statement is PatchFailed with its line, as from psql; the caller drops what was made."""
    import psycopg
    from psycopg import sql

    from postgresqlpatches.core.own_patches import (
        RUN_HERE,
        psql_boolean,
        script_steps,
        substitute,
    )
    from postgresqlpatches.core.statements import Statement, parse_sql
    from postgresqlpatches.pg.executor import failure, run_statements
    from postgresqlpatches.pg.server import pin_search_path

    variables = {"database": patch.name.database}  # psql's -v database=...
    skipping: list[bool] = []  # per open \if: whether its branch is skipped
    steps = script_steps(patch.text)
    target = conn
    for index, step in enumerate(steps):
        if step.command not in ("", *RUN_HERE):
            raise PgpatchError(f"{step.command} is not run without psql", path=patch.path,
                               line=step.line)
        if step.command == "\\if":  # inside a skipped branch psql does not evaluate it
            skipping.append(any(skipping) or not _psql_true(
                psql_boolean(substitute(step.text, variables, str, str)), patch, step.line))
            continue
        if step.command == "\\endif":
            skipping.pop()
            continue
        if any(skipping):
            continue
        if step.command == "\\getenv":
            name, variable = step.text.split()
            if variable in secrets:
                variables[name] = secrets[variable]
        elif step.command == "\\connect":
            target = connect(substitute(step.text, variables, str, str))
            target.autocommit = False
            pin_search_path(target)
        elif step.command == "":
            text = substitute(step.text, variables,
                              lambda v: sql.Literal(v).as_string(conn),
                              lambda v: sql.Identifier(v).as_string(conn))
            statements = [Statement(s.text, s.line + step.line - 1, s.start + step.offset,
                                    s.kind, s.non_transactional, s.tree)
                          for s in parse_sql(text).statements]
            gset = index + 1 < len(steps) and steps[index + 1].command == "\\gset"
            run_statements(target, patch, statements[:-1] if gset else statements)
            if gset and statements:  # the query's columns become variables, as psql's text
                try:
                    cur = target.execute(statements[-1].text)
                except psycopg.Error as e:
                    raise failure(e, patch, statements[-1]) from e
                row = cur.fetchone() or ()
                for column, value in zip([c.name for c in cur.description or ()], row,
                                         strict=False):
                    if value is None:  # psql unsets it
                        variables.pop(column, None)
                    else:
                        variables[column] = (("t" if value else "f") if isinstance(value, bool)
                                             else str(value))
    if target is not conn:
        target.commit()


def _psql_true(value: bool | None, patch: Patch, line: int) -> bool:
    if value is None:
        raise PgpatchError("\\if needs a boolean", path=patch.path, line=line)
    return value
