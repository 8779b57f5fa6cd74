"""statements.py: where statements start, what cannot run in a transaction, psql meta-commands."""

from __future__ import annotations

import pytest

from postgresqlpatches.core.statements import (
    EXPLICIT_TRANSACTION_CONTROL,
    MetaCommand,
    find_meta_commands,
    line_of,
    new_session_needed,
    parse_sql,
)
from postgresqlpatches.errors import PgpatchError, SqlSyntaxError


def test_statements_keep_their_text_line_and_start_skipping_comments() -> None:
    text = (
        "-- a header comment\n"
        "/* a block /* nested */ comment */\n"
        "create table t (a int);\n"
        "\n"
        "  insert into t values (1); select ';' -- tail\n"
    )
    parsed = parse_sql(text)
    assert [(s.text, s.line, s.kind) for s in parsed.statements] == [
        ("create table t (a int)", 3, "CreateStmt"),
        ("insert into t values (1)", 5, "InsertStmt"),
        ("select ';' -- tail", 5, "SelectStmt"),
    ]
    for s in parsed.statements:
        assert text[s.start : s.start + len(s.text)] == s.text


@pytest.mark.parametrize(
    "prefix",
    ["-- é\n", "-- 日本語 ✓ \n/* ü */\n", "select 'ñ';\n", "-- 🐘🐘🐘\n\n"],
    ids=["latin", "cjk-and-comment", "string", "astral"],
)
def test_multibyte_text_before_a_statement_keeps_character_offsets(prefix: str) -> None:
    text = prefix + "create table t (a int);\nselect 'ö' ;\ncreate index i on t (a);\n"
    statements = parse_sql(text).statements[-3:]
    assert [s.text for s in statements] == [
        "create table t (a int)",
        "select 'ö'",
        "create index i on t (a)",
    ]
    for s in statements:
        assert text[s.start : s.start + len(s.text)] == s.text
        assert s.line == line_of(text, s.start)
    assert statements[-1].line == prefix.count("\n") + 3


def test_a_server_error_position_maps_to_a_file_line() -> None:
    text = "-- ä\ncreate table t (\n  a int,\n  b nosuchtype\n);\n"
    (statement,) = parse_sql(text).statements
    position = statement.text.index("nosuchtype") + 1  # the server's 1-based position
    assert line_of(text, statement.start + position - 1) == 4


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("selec 1;", 1),
        ("select 1;\n\nselect 'é' 'ü' from;\n", 3),
        ("-- ünïcode\nselect 1;\ncreate table (;\n", 3),
        ("select 1;\nselect 'unterminated;\n", 2),
    ],
)
def test_syntax_error_names_its_line(text: str, line: int) -> None:
    with pytest.raises(SqlSyntaxError) as raised:
        parse_sql(text)
    assert raised.value.line == line
    assert isinstance(raised.value, PgpatchError)


def test_empty_and_comment_only_files_have_no_statements() -> None:
    assert parse_sql("").statements == ()
    assert parse_sql("-- nothing\n/* at all */\n;;\n").statements == ()


def test_a_nul_character_is_a_syntax_error_not_a_silent_truncation() -> None:
    with pytest.raises(SqlSyntaxError) as raised:
        parse_sql("select 1;\nselect 2;\x00drop table t;")
    assert raised.value.line == 2


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("create index concurrently i on t (a)", "CREATE INDEX CONCURRENTLY"),
        ("create unique index concurrently if not exists i on t (a)", "CREATE INDEX CONCURRENTLY"),
        ("create index i on t (a)", None),
        ("drop index concurrently i", "DROP INDEX CONCURRENTLY"),
        ("drop index i", None),
        ("reindex index concurrently i", "REINDEX CONCURRENTLY"),
        ("reindex (concurrently) table t", "REINDEX CONCURRENTLY"),
        ("reindex table t", None),
        ("reindex database d", "REINDEX DATABASE"),
        ("reindex schema s", "REINDEX SCHEMA"),
        ("vacuum", "VACUUM"),
        ("vacuum analyze t", "VACUUM"),
        ("vacuum (full) t", "VACUUM"),
        ("analyze t", None),
        ("create database d", "CREATE DATABASE"),
        ("drop database if exists d", "DROP DATABASE"),
        ("alter system set work_mem = '8MB'", "ALTER SYSTEM"),
        ("create tablespace ts location '/srv/ts'", "CREATE TABLESPACE"),
        ("drop tablespace ts", "DROP TABLESPACE"),
        ("alter database d set tablespace ts", "ALTER DATABASE SET TABLESPACE"),
        ("alter database d set work_mem = '8MB'", None),
        ("alter database d connection limit 5", None),
        ("cluster", "CLUSTER without a table name"),
        ("cluster t using i", None),
        ("alter type mood add value 'meh'", None),  # transactional since PostgreSQL 12
        (
            "create subscription s connection 'host=x' publication p",
            "CREATE SUBSCRIPTION (creates a replication slot)",
        ),
        (
            "create subscription s connection 'host=x' publication p with (create_slot = false)",
            None,
        ),
        ("create subscription s connection 'host=x' publication p with (connect = off)", None),
        ("drop subscription s", "DROP SUBSCRIPTION (with a replication slot)"),
        ("alter subscription s refresh publication", "ALTER SUBSCRIPTION ... REFRESH PUBLICATION"),
        ("alter subscription s set publication p with (refresh = false)", None),
        ("alter table t detach partition p concurrently", "DETACH PARTITION CONCURRENTLY"),
        ("alter table t detach partition p", None),
        ("discard all", "DISCARD ALL"),
        ("commit prepared 'x'", "COMMIT PREPARED"),
        ("refresh materialized view concurrently m", None),
        ("select 1", None),
    ],
)
def test_non_transactional_reason(sql: str, reason: str | None) -> None:
    parsed = parse_sql("-- lead\n" + sql + ";\n")
    (statement,) = parsed.statements
    assert statement.non_transactional == reason
    assert parsed.non_transactional == ((statement,) if reason else ())


@pytest.mark.parametrize(
    ("sql", "is_control"),
    [
        ("begin", True),
        ("start transaction isolation level serializable", True),
        ("commit", True),
        ("end", True),
        ("rollback", True),
        ("abort", True),
        ("prepare transaction 'x'", True),
        ("savepoint a", False),
        ("release savepoint a", False),
        ("rollback to savepoint a", False),
    ],
)
def test_explicit_transaction_control_is_reported_apart(sql: str, is_control: bool) -> None:
    parsed = parse_sql(sql + ";")
    (statement,) = parsed.statements
    assert statement.kind == "TransactionStmt"
    assert (statement.non_transactional == EXPLICIT_TRANSACTION_CONTROL) is is_control
    assert parsed.transaction_control == ((statement,) if is_control else ())
    assert parsed.non_transactional == ()


@pytest.mark.parametrize(
    "text",
    [
        "select 'a\\b';",
        "select 'it''s \\n';",
        "select E'\\'\\\\set x';",
        "select e'a\\'b\\\\', 'c\\';",
        'select "we\\ird";',
        'select "a""\\b";',
        "select $$ \\connect x $$;",
        "create function f() returns int language sql as $body$ select 1 \\g $body$;",
        "select $a$ $b$ \\i $b$ $a$;",
        "-- \\connect foo\nselect 1;",
        "/* \\set x 1 */ select 1;",
        "/* outer /* inner */ \\q still comment */ select 1;",
        "select 1; -- ' \\x\n",
        "select 'unterminated \\set",
    ],
)
def test_backslashes_in_strings_identifiers_dollar_quotes_and_comments_are_not_meta_commands(
    text: str,
) -> None:
    assert find_meta_commands(text) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\set ON_ERROR_STOP on\nselect 1;\n", [(1, "\\set")]),
        ("select 1;\n\n\\connect other\nselect 2;\n", [(3, "\\connect")]),
        ("select 'x';\n  \\i other.sql\n", [(2, "\\i")]),
        ("select 1 \\gset\n", [(1, "\\gset")]),
        ("-- é\nselect 'ü\\'; \\c db\n", [(2, "\\c")]),
        ("select $$ x $$;\n\\ir sub.sql\n/* c */ \\dt+\n", [(2, "\\ir"), (3, "\\dt+")]),
        ("copy t from stdin;\n1\t\\N\n\\.\n\\c db\n", [(4, "\\c")]),
        ("select 1;\n\\\\", [(2, "\\\\")]),
        ("select a$b$c from t;\n\\q\n", [(2, "\\q")]),
    ],
)
def test_real_meta_commands_are_found_with_their_line(
    text: str, expected: list[tuple[int, str]]
) -> None:
    assert find_meta_commands(text) == tuple(MetaCommand(line, cmd) for line, cmd in expected)


def test_a_file_with_meta_commands_returns_them_instead_of_a_syntax_error() -> None:
    text = "\\set ON_ERROR_STOP on\ncreate table t (a int);\n\\connect other\nvacuum t;\n"
    parsed = parse_sql(text)
    assert parsed.meta_commands == (MetaCommand(1, "\\set"), MetaCommand(3, "\\connect"))
    assert [(s.text, s.line) for s in parsed.statements] == [
        ("create table t (a int)", 2),
        ("vacuum t", 4),
    ]


def test_a_pg_dump_style_file_with_copy_data_does_not_raise() -> None:
    text = "\\connect app\ncopy public.t (a, b) from stdin;\n1\tO'Brien\n\\.\n"
    parsed = parse_sql(text)
    assert parsed.meta_commands == (MetaCommand(1, "\\connect"),)
    assert [(s.kind, s.line) for s in parsed.statements] == [("CopyStmt", 2)]


@pytest.mark.parametrize(
    "rows",
    [
        "1\t\\N\n2\tO'Brien; drop table t\n\\.\n",  # NULL marker, a quote, a semicolon
        "1\tx\r\n\\.\r\n",  # CRLF line endings
        "1\tno end marker: the data runs to the end of the file\n",
    ],
)
def test_rows_inline_after_copy_from_stdin_are_data(rows: str) -> None:
    text = "-- rows\nCOPY t (a, b) FROM stdin WITH (FORMAT text);\n" + rows + "select 1;\n"
    parsed = parse_sql(text)
    assert parsed.meta_commands == ()
    kinds = [(s.kind, s.line) for s in parsed.statements]
    assert kinds[0] == ("CopyStmt", 2)
    # what follows the end marker is SQL again; without a marker psql reads it as rows too
    assert kinds[1:] == ([("SelectStmt", rows.count("\n") + 3)] if "\\." in rows else [])


def test_copy_from_a_file_or_to_stdout_has_no_inline_rows() -> None:
    text = "copy t to stdout;\nselect 1;\ncopy t from '/tmp/x';\nselect 2;\n"
    assert [s.kind for s in parse_sql(text).statements] == [
        "CopyStmt", "SelectStmt", "CopyStmt", "SelectStmt"]


def test_statement_tree_is_not_part_of_equality() -> None:
    a = parse_sql("create table t (a int);").statements[0]
    b = parse_sql("create table t (a int);").statements[0]
    assert a == b and hash(a) == hash(b)
    assert "relation" in a.tree


@pytest.mark.parametrize(
    ("sql", "every_connection"),
    [
        ("ALTER ROLE app SET search_path = s, public", True),
        ("ALTER USER app RESET ALL", True),
        ("ALTER ROLE ALL SET work_mem = '8MB'", True),
        ("ALTER DATABASE app SET search_path = s", True),
        ("ALTER ROLE app NOSUPERUSER", True),
        ("CREATE ROLE reader IN ROLE app", True),
        ("GRANT app TO reader", True),
        ("REVOKE app FROM reader", True),
        ("DROP ROLE reader", True),
        ("ALTER ROLE reader RENAME TO viewer", True),
        ("ALTER DATABASE app CONNECTION LIMIT 5", True),
        ("DO $$ BEGIN EXECUTE 'ALTER ' || 'ROLE app SET x.y = 1'; END $$", True),
        ("SET app.tenant = 'acme'", False),
        ('SET LOCAL "App".tenant = 1', False),
        ("SELECT set_config('app.tenant', 'acme', false)", False),
        ("SELECT pg_catalog.set_config(name, 'x', false) FROM t", False),
        ("LOAD 'auto_explain'", False),
        ("DO $$ BEGIN PERFORM set_config('app.tenant', 'acme', false); END $$", False),
        ("DO $$ BEGIN SET app.tenant = 'acme'; END $$", False),
        ("DO $$ DECLARE n text := 'app.x'; BEGIN PERFORM set_config(n, '1', false); END $$",
         False),
    ],
)
def test_what_discard_all_cannot_reset_needs_a_new_session(sql: str,
                                                           every_connection: bool) -> None:
    found = new_session_needed(parse_sql(sql).statements)
    assert found is not None and found.reason
    assert found.every_connection is every_connection


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (id int DEFAULT 1); INSERT INTO t SELECT g FROM generate_series(1, 3) g",
        "SET search_path = s; SET ROLE app; SET session_replication_role = replica",
        "SELECT set_config('search_path', 's', false)",
        "CREATE TEMP TABLE x (a int); PREPARE q AS SELECT 1; LISTEN ch",
        "SELECT pg_advisory_lock(1)",
        "DO $$ BEGIN PERFORM set_config('search_path', 's', false); END $$",
        "GRANT SELECT ON t TO app",
        "ALTER TABLE t OWNER TO app",
    ],
)
def test_what_discard_all_resets_keeps_the_session(sql: str) -> None:
    assert new_session_needed(parse_sql(sql).statements) is None
def test_rows_after_a_psql_copy_meta_command_are_data_too() -> None:
    text = "\\copy t (a) from stdin\n1\n\\N\n\\.\nselect 1;\n"
    assert find_meta_commands(text) == (MetaCommand(1, "\\copy"),)


@pytest.mark.parametrize(("sql", "temp"), [
    ("CREATE TEMP TABLE x (a int)", True),
    ("CREATE TEMPORARY VIEW v AS SELECT 1", True),
    ("CREATE TEMP SEQUENCE s", True),
    ("CREATE TEMP TABLE t AS SELECT 1", True),
    ("SELECT 1 INTO TEMP t", True),
    ("CREATE TABLE x (a int); CREATE UNLOGGED TABLE u (a int); SELECT 1", False),
])
def test_a_patch_that_makes_temp_objects_is_told_apart(sql: str, temp: bool) -> None:
    from postgresqlpatches.core.statements import creates_temp_objects

    assert creates_temp_objects(parse_sql(sql).statements) is temp
