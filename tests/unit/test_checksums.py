"""Token checksums: what the server executes counts, how the file is laid out does not."""

from __future__ import annotations

import hashlib

import pytest

from postgresqlpatches.core.checksums import statement_checksum, text_checksum, token_checksum
from postgresqlpatches.core.statements import psql_script_parts

BASE = "CREATE TABLE app.users (id int PRIMARY KEY, name text DEFAULT 'Anna');\n"


@pytest.mark.parametrize("variant", [
    "-- Copyright 2026 Example Ltd. Licensed under the MIT licence.\n" + BASE,
    "/* a block comment /* nested */ still a comment */\n" + BASE,
    BASE.replace("PRIMARY KEY,", "PRIMARY KEY,  -- the key\n   "),
    BASE.replace(" ", "\n\t  "),
    BASE.replace("\n", "\r\n"),
    BASE.replace("\n", "\r"),
    BASE + "\n\n\n",
    "   " + BASE.rstrip("\n"),
    "-- pgpatch: allow-file require-timeout\n" + BASE,
    BASE.replace(";", ";  -- pgpatch: allow add-column-default"),
], ids=["licence-header", "block-comment", "line-comment", "whitespace", "crlf", "cr",
        "trailing-lines", "no-final-newline", "file-directive", "statement-directive"])
def test_layout_and_comments_are_not_a_change(variant: str) -> None:
    assert token_checksum(variant) == token_checksum(BASE)


@pytest.mark.parametrize("variant", [
    BASE.replace("CREATE TABLE", "create table"),
    BASE.replace("PRIMARY KEY", "Primary Key"),
    BASE.replace("app.users", "APP.Users"),
    BASE.replace("name text", "NAME TEXT"),
], ids=["keywords", "mixed-case-keywords", "unquoted-identifiers", "type-name"])
def test_case_of_keywords_and_unquoted_names_is_not_a_change(variant: str) -> None:
    """The server folds keywords and unquoted identifiers to lower case itself."""
    assert token_checksum(variant) == token_checksum(BASE)


@pytest.mark.parametrize("variant", [
    BASE.replace("'Anna'", "'anna'"),
    BASE.replace("'Anna'", "'Anna '"),
    BASE.replace("'Anna'", "E'Anna'"),
    BASE.replace("app.users", '"app".users'),
    BASE.replace("app.users", 'app."Users"'),
    BASE.replace("app.users", "app.user"),
    BASE.replace("id int", "id bigint"),
    BASE.replace("id int", "id integer"),
    BASE.replace("PRIMARY KEY", "UNIQUE"),
    BASE.replace(";", ""),
    BASE + "SELECT 1;\n",
    BASE.replace("name text", "nametext"),
], ids=["literal-case", "literal-space", "escape-string", "quoted-identifier",
        "quoted-identifier-case", "identifier", "type", "type-spelling", "keyword", "semicolon",
        "added-statement", "joined-words"])
def test_any_changed_token_is_a_change(variant: str) -> None:
    assert token_checksum(variant) != token_checksum(BASE)


def test_a_number_counts_as_written() -> None:
    """1.0 and 1.00 are numerics of different scale to the server."""
    assert token_checksum("SELECT 1.0;") != token_checksum("SELECT 1.00;")


FUNCTION = """CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$
    SELECT 1  -- the answer
$body$;
"""


@pytest.mark.parametrize("variant", [
    FUNCTION.replace("-- the answer", "-- another answer"),
    FUNCTION.replace("SELECT 1", "select 1"),
    FUNCTION.replace("    SELECT", "  SELECT"),
    FUNCTION.replace("$body$", "$$"),
], ids=["comment-in-body", "case-in-body", "space-in-body", "dollar-tag"])
def test_a_dollar_quoted_body_counts_to_the_character(variant: str) -> None:
    """The server stores the body as written: it is a string constant."""
    assert token_checksum(variant) != token_checksum(FUNCTION)


def test_a_crlf_checkout_inside_a_string_is_not_a_change() -> None:
    assert token_checksum(FUNCTION.replace("\n", "\r\n")) == token_checksum(FUNCTION)


def test_text_checksum_is_the_version_1_sha256() -> None:
    """Records made before token checksums hold this value: it must never change."""
    assert text_checksum("select 1;\r\n") == hashlib.sha256(b"select 1;\n").hexdigest()
    assert text_checksum("select 1;\n") != text_checksum("select 1; -- c\n")


def test_unscannable_text_still_has_a_checksum_of_its_text() -> None:
    assert token_checksum("SELECT 'open") != token_checksum("SELECT 'open ")
    assert token_checksum("SELECT 'open") == token_checksum("SELECT 'open")
    # the scanner reads a C string: what follows a NUL must still count
    assert token_checksum("SELECT 1;\x00DROP TABLE a;") != token_checksum(
        "SELECT 1;\x00DROP TABLE b;")


def test_statement_checksum_ignores_comments_inside_the_statement() -> None:
    assert statement_checksum("CREATE INDEX CONCURRENTLY i ON t (a)") == statement_checksum(
        "CREATE INDEX CONCURRENTLY i  -- pgpatch: allow x\n ON t (a)")
    assert statement_checksum("CREATE INDEX CONCURRENTLY i ON t (a)") != statement_checksum(
        "CREATE INDEX CONCURRENTLY i ON t (b)")


# -- baselines, which psql runs ------------------------------------------------------------

DUMP = """--
-- PostgreSQL database dump
--
\\connect app
SET statement_timeout = 0;
CREATE TABLE public.t (a text, b text);
COPY public.t (a, b) FROM stdin;
it's\t\\N
x  y\tz
\\.
SELECT pg_catalog.setval('public.s', 1, false);
"""


def test_psql_script_parts_follow_psql() -> None:
    assert [kind for kind, _ in psql_script_parts(DUMP)] == ["sql", "meta", "sql", "data", "sql"]
    data = dict((k, v) for k, v in psql_script_parts(DUMP) if k != "sql")
    assert data["meta"] == "\\connect app"
    assert data["data"] == "it's\t\\N\nx  y\tz\n\\."


@pytest.mark.parametrize("variant", [
    DUMP.replace("-- PostgreSQL database dump", "-- dumped on another day"),
    DUMP.replace("\\connect app", "\\connect   app  "),
    DUMP.replace("SET statement_timeout", "set   statement_timeout"),
    DUMP.replace("\n", "\r\n"),
], ids=["comment", "meta-spaces", "sql-layout", "crlf"])
def test_a_baseline_keeps_its_checksum_when_only_its_layout_changes(variant: str) -> None:
    assert token_checksum(variant, psql=True) == token_checksum(DUMP, psql=True)


@pytest.mark.parametrize("variant", [
    DUMP.replace("\\connect app", "\\connect other"),
    DUMP.replace("\\connect app", "\\c app"),
    DUMP.replace("x  y", "x y"),
    DUMP.replace("it's", "its"),
    DUMP.replace("\\N", "N"),
    DUMP.replace("z\n", "z \n"),
], ids=["meta-argument", "meta-command", "row-space", "row-value", "row-null",
        "row-trailing-space"])
def test_a_baseline_changes_with_its_meta_commands_and_rows(variant: str) -> None:
    assert token_checksum(variant, psql=True) != token_checksum(DUMP, psql=True)


def test_psql_variables_keep_their_case() -> None:
    base = "CREATE DATABASE :\"database\";\nSELECT :Value, :'Pw';\n"
    assert token_checksum(base, psql=True) != token_checksum(base.replace(":Value", ":value"),
                                                            psql=True)
    assert token_checksum(base, psql=True) == token_checksum(base.replace("SELECT", "select"),
                                                            psql=True)
