"""Token checksums on real servers, a resume that checks what already ran, and the invalid index
a failed CREATE INDEX CONCURRENTLY leaves (docs/safety.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from postgresqlpatches.core.checksums import text_checksum, token_checksum
from postgresqlpatches.core.discovery import builtin_patches
from tests.integration.conftest import Pg

BASELINE = """-- the app's database
CREATE DATABASE app;
\\connect app
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL);
COPY public.users (id, email) FROM stdin;
1\tann@example.com
2\tbob@example.com
\\.
"""
INDEX = "CREATE INDEX users_email ON users (email);\n"
LICENCE = "-- Copyright 2026 Example Ltd. All rights reserved.\n"


def plan_json(pg: Pg, *args: str) -> dict:
    return json.loads(pg.cli("plan", pg.glob(), "--format", "json", *args).stdout)


def records(pg: Pg) -> dict[str, tuple]:
    rows = pg.query("""SELECT name, checksum, checksum_version, text_checksum
                       FROM installed_patches""", "patches")
    return {r[0]: r[1:] for r in rows}


def invalid_indexes(pg: Pg) -> list[str]:
    return [r[0] for r in pg.query(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1", "app")]


def app_tree(pg: Pg) -> Path:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    return pg.write("p/app.20240101.0001.postgres.index_email.sql", INDEX)


# -- 12.5: the checksum covers what the server executes -------------------------------------

# checksums are pgpatch's, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_silencing_a_lint_finding_in_an_applied_patch_is_not_a_change(pg: Pg) -> None:
    """The lint gate lints applied files too: its way out, a directive, keeps the checksum."""
    index = app_tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    gate = pg.cli("plan", "--offline", "--lint", "error", pg.glob())
    assert gate.exit_code == 1 and "create-index-non-concurrently" in gate.stdout
    index.write_text(LICENCE + "\r\n" + INDEX.replace(
        ";", ";  -- pgpatch: allow create-index-non-concurrently").replace("\n", "\r\n"))
    assert pg.cli("plan", "--offline", "--lint", "error", pg.glob()).exit_code == 0
    plan = plan_json(pg, "--lint", "error")
    assert plan["ok"] is True, plan["problems"]
    assert pg.cli("apply", "--lint", "error", pg.glob()).stdout.startswith("nothing to do")


# checksums are pgpatch's, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_a_changed_token_is_still_a_change(pg: Pg) -> None:
    index = app_tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    index.write_text(INDEX.replace("CREATE INDEX", "create index"))  # the same to the server
    assert plan_json(pg)["ok"] is True
    index.write_text(INDEX.replace("(email)", "(lower(email))"))
    plan = plan_json(pg)
    assert [(p["kind"], p["path"]) for p in plan["problems"]] == [("changed", str(index))]
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {index}: the file changed after it was applied")


# checksums are pgpatch's, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_records_keep_the_token_checksum_and_its_version(pg: Pg) -> None:
    index = app_tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    rows = records(pg)
    assert {r[1] for r in rows.values()} == {2}
    applied = next(p for p in plan_json(pg)["patches"] if p["path"] == str(index))
    assert rows[index.name] == (token_checksum(INDEX), 2, text_checksum(INDEX))
    assert applied["checksum"] == token_checksum(INDEX) != text_checksum(INDEX)
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    assert {(r["checksum"], r["checksum_version"]) for r in status["records"]
            if r["name"] == index.name} == {(applied["checksum"], 2)}


# checksums are pgpatch's, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_a_baseline_counts_its_meta_commands_and_rows_not_its_comments(pg: Pg) -> None:
    app_tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    baseline = pg.tree / "app.00000000.0000.postgres.baseline.sql"
    baseline.write_text(LICENCE + BASELINE.replace("\\connect app", "\\connect  app"))
    assert plan_json(pg)["ok"] is True
    baseline.write_text(BASELINE.replace("bob@", "rob@"))
    assert [p["kind"] for p in plan_json(pg)["problems"]] == ["changed"]


def pre_token_server(pg: Pg) -> None:
    """A state database as pgpatch left it before token checksums: no version columns, no
    record of their patch, each checksum the sha256 of the file's text."""
    pg.query("DELETE FROM installed_patches WHERE major = '20261201' AND minor = '0003' "
             "OR major = '20261202' AND minor = '0001'", "patches")  # and what came later
    pg.query("DROP INDEX installed_patches_once", "patches")
    pg.query("ALTER TABLE installed_patches DROP COLUMN run, "
             "ADD UNIQUE (major, minor, database_id)", "patches")
    pg.query("""ALTER TABLE installed_patches DROP COLUMN checksum_version,
                DROP COLUMN text_checksum, DROP COLUMN statement_checksums""", "patches")
    texts = {p.name.filename: p.text for p in builtin_patches("patches")}
    texts.update({p.name: p.read_text() for p in pg.tree.rglob("*.sql")})
    with pg.server.connect("patches") as conn:
        for name, text in texts.items():
            conn.execute("UPDATE installed_patches SET checksum = %s WHERE name = %s",
                         [text_checksum(text), name])


# checksums are pgpatch's, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_records_of_the_text_checksum_stay_valid_and_are_upgraded(pg: Pg) -> None:
    index = app_tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pre_token_server(pg)
    plan = plan_json(pg)
    assert plan["ok"] is True, plan["problems"]
    assert [(p["version"], p["action"]) for p in plan["patches"] if p["action"] != "applied"] == [
        ("20261201.0003", "apply"), ("20261202.0001", "apply")]
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    assert {r["checksum_version"] for r in status["records"]} == {1}
    assert pg.cli("apply", pg.glob()).exit_code == 0
    rows = records(pg)
    assert {name: r[1] for name, r in rows.items()} == dict.fromkeys(rows, 2)
    assert rows[index.name][2] == text_checksum(INDEX)
    index.write_text(LICENCE + INDEX)  # now a comment is no change
    assert plan_json(pg)["ok"] is True


# checksums are pgpatch's, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_a_text_checksum_record_cannot_tell_a_comment_from_a_change(pg: Pg) -> None:
    index = app_tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pre_token_server(pg)
    index.write_text(LICENCE + INDEX)
    plan = plan_json(pg)
    assert [(p["kind"], p["path"]) for p in plan["problems"]] == [("changed", str(index))]
    assert "even a comment counts until `apply` upgrades it" in plan["problems"][0]["hint"]
    index.write_text(INDEX)  # restored: the next apply upgrades its record
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert records(pg)[index.name][1] == 2


# -- 11.7: a resumed patch checks what already ran ------------------------------------------

NON_TX = ("CREATE INDEX CONCURRENTLY one ON users (email);\n"
          "CREATE INDEX CONCURRENTLY two ON users (nosuch);\n"
          "CREATE INDEX CONCURRENTLY three ON users (id, email);\n")


# checksums are pgpatch's, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_a_resumed_patch_whose_done_part_changed_is_refused(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    bad = pg.write("p/app.20240102.0001.postgres.indexes.sql", NON_TX)
    assert pg.cli("apply", pg.glob()).exit_code == 1
    # the fix goes in the wrong place: a new first statement, the done one moved down
    bad.write_text("CREATE INDEX CONCURRENTLY zero ON users (id);\n" + NON_TX.replace(
        "(nosuch)", "(email, id)"))
    plan = plan_json(pg)
    assert [(p["kind"], p["line"], p["message"]) for p in plan["problems"]] == [
        ("changed", 1, "statement 1 ran in an earlier run (statements 1-1 did) and has "
                       "changed since")]
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: {bad}:1: statement 1 ran in an earlier run (statements 1-1 did) and has "
        "changed since")
    assert pg.query("SELECT relname FROM pg_class WHERE relname IN ('zero', 'two')", "app") == []
    # the fix in the right place: only the failed statement, a comment on the done one
    bad.write_text(NON_TX.replace("(nosuch)", "(email, id)").replace(
        "(email);", "(email);  -- ran on 2024-01-02"))
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT relname FROM pg_class WHERE relname IN ('one', 'two', 'three') "
                    "ORDER BY 1", "app") == [("one",), ("three",), ("two",)]
    assert plan_json(pg)["ok"] is True


# -- 12.4: a failed CREATE INDEX CONCURRENTLY leaves no invalid index -----------------------

def duplicate_emails(pg: Pg) -> None:
    pg.query("INSERT INTO users VALUES (3, 'ann@example.com')", "app")


def test_a_failed_unique_index_is_dropped_and_the_fixed_run_applies(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    duplicate_emails(pg)
    bad = pg.write("p/app.20240102.0001.postgres.unique_email.sql",
                   "CREATE UNIQUE INDEX CONCURRENTLY ON users (email);\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f'error: {bad}:1: could not create unique index "users_email_idx" (Key (email)='
        "(ann@example.com) is duplicated.); statement 1 of 1 had already made the index "
        "public.users_email_idx, left invalid: pgpatch dropped it, so nothing of the file is "
        "left and the next run runs it again [SQLSTATE 23505]")
    assert invalid_indexes(pg) == []
    pg.query("DELETE FROM users WHERE id = 3", "app")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT indisvalid FROM pg_index "
                    "WHERE indexrelid = 'users_email_idx'::regclass", "app") == [(True,)]


def test_a_failed_named_index_after_a_done_statement_is_dropped_and_resumed(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    duplicate_emails(pg)
    # an invalid index someone else left on the same table: never pgpatch's to drop
    assert "duplicated" in _fails(pg, "CREATE UNIQUE INDEX CONCURRENTLY theirs ON users (email)")
    bad = pg.write("p/app.20240102.0001.postgres.indexes.sql",
                   "CREATE INDEX CONCURRENTLY users_id ON users (id);\n"
                   "CREATE UNIQUE INDEX CONCURRENTLY users_email ON public.users (email);\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f'error: {bad}:2: could not create unique index "users_email" (Key (email)='
        "(ann@example.com) is duplicated.); statement 2 of 2 had already made the index "
        "public.users_email, left invalid: pgpatch dropped it; statements 1-1 of 2 ran and "
        "stay done, the next run resumes at statement 2 [SQLSTATE 23505]")
    assert invalid_indexes(pg) == ["theirs"]
    pg.query("DELETE FROM users WHERE id = 3", "app")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT indexrelid::regclass::text, indisvalid FROM pg_index "
                    "WHERE indexrelid::regclass::text LIKE 'users_%' ORDER BY 1", "app") == [
        ("users_email", True), ("users_id", True), ("users_pkey", True)]
    assert invalid_indexes(pg) == ["theirs"]


def _fails(pg: Pg, statement: str) -> str:
    """Run a statement in autocommit and return its error message."""
    import psycopg

    with pg.server.connect("app") as conn:
        try:
            conn.execute(statement)
        except psycopg.Error as e:
            return str(e)
    return ""


def test_a_concurrent_index_that_fails_before_making_anything_says_no_statement_ran(
        pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    bad = pg.write("p/app.20240102.0001.postgres.index.sql",
                   "CREATE INDEX CONCURRENTLY users_x ON users (nosuch);\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f'error: {bad}:1: column "nosuch" does not exist; no statement of it ran '
        "[SQLSTATE 42703]")
    assert invalid_indexes(pg) == []


def test_an_invalid_index_that_cannot_be_dropped_is_named_with_what_to_do(pg: Pg) -> None:
    """A writer keeps its transaction open: the index build waits for it and times out, and
    so does the drop, so the error names the index left behind."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    bad = pg.write("p/app.20240102.0001.postgres.index.sql",
                   "CREATE INDEX CONCURRENTLY users_email ON users (email);\n")
    with pg.server.connect("app", autocommit=False) as writer:
        writer.execute("INSERT INTO users VALUES (10, 'zed@example.com')")  # left open
        pid = writer.info.backend_pid
        result = pg.cli("apply", pg.glob(), "--concurrent-lock-timeout", "300")
        writer.rollback()
    assert result.exit_code == 1
    error, *rest = result.stderr.splitlines()
    blocked = re.search(r"; blocked by pid \d+ \(postgres, idle in transaction for \d+ s: "
                        r"INSERT INTO users VALUES \(10, 'zed@example.com'\)\)", error)
    assert blocked is not None and f"pid {pid} " in blocked.group(0), error
    assert [error.replace(blocked.group(0), ""), *rest] == [
        f"error: {bad}:1: canceling statement due to lock timeout; a CONCURRENTLY statement "
        "waits once, up to --concurrent-lock-timeout 300 ms; statement 1 of 1 left the "
        "invalid index public.users_email, which pgpatch did not drop (canceling statement "
        "due to lock timeout); no other statement of it ran [SQLSTATE 55P03]",
        "hint: drop it (DROP INDEX CONCURRENTLY public.users_email) before the next run, or "
        'the statement fails again with "already exists"']
    assert invalid_indexes(pg) == ["users_email"]
    pg.query("DROP INDEX CONCURRENTLY public.users_email", "app")  # as the hint says
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert invalid_indexes(pg) == []
