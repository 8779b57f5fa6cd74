"""The core contracts against a real server: plan, apply, status, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import PASSWORDS, STATE_PATCHES, Pg

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
APP_BASELINE = """\\getenv pw PGPATCH_APP_PASSWORD
CREATE ROLE app LOGIN PASSWORD :'pw';
CREATE DATABASE app OWNER app;
\\connect app
CREATE TABLE ledger (name text NOT NULL, who text NOT NULL DEFAULT current_user);
GRANT ALL ON ledger TO app;
"""


def app_tree(pg: Pg, n: int = 3) -> None:
    pg.write("base/app.00000000.0000.postgres.baseline.sql", APP_BASELINE)
    for i in range(1, n + 1):
        pg.write(f"later/app.20240101.{i:04d}.app.p{i}.sql",
                 f"INSERT INTO ledger (name) VALUES ('p{i}');\n")


def ledger(pg: Pg) -> list[tuple[str, str]]:
    return pg.query("SELECT name, who FROM ledger ORDER BY name", "app")


def test_example_bootstraps_and_a_second_apply_does_nothing(pg: Pg) -> None:
    glob = str(EXAMPLES / "hundbidrag" / "*.sql")
    first = pg.cli("apply", glob)
    assert first.exit_code == 0, first.stderr
    assert f"applied {STATE_PATCHES + 3} patches to 2 databases" in first.stdout
    assert pg.databases() == {"patches", "hundbidrag"}
    rows = pg.query("SELECT owner, year, total FROM allowance_per_owner", "hundbidrag")
    assert [(o, y, float(t)) for o, y, t in rows] == [("Astrid", 2021, 1200.0)]
    second = pg.cli("apply", glob)
    assert second.exit_code == 0
    assert second.stdout.strip() == f"nothing to do: {STATE_PATCHES + 3} patches already applied"


def test_plan_is_read_only_even_on_an_empty_server(pg: Pg) -> None:
    app_tree(pg)
    result = pg.cli("plan", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.databases() == set() and pg.roles() == set()
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["database", "version", "user", "description", "path", "action",
                                "notes"]
    assert f"2 to bootstrap, {STATE_PATCHES + 2} to apply, 0 applied, 0 skipped, 0 problems" in (
        result.stdout)


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_plan_json_lists_patches_in_run_order(pg: Pg) -> None:
    app_tree(pg, 2)
    pg.cli("apply", str(pg.tree / "base" / "*.sql"))
    data = json.loads(pg.cli("plan", pg.glob(), "--format", "json").stdout)
    assert data["version"] == 1 and data["ok"] is True and data["problems"] == []
    assert [(p["database"], p["version"], p["action"]) for p in data["patches"]] == [
        ("patches", "00000000.0000", "applied"), ("patches", "20261126.0001", "applied"),
        ("patches", "20261201.0001", "applied"), ("patches", "20261201.0003", "applied"),
        ("patches", "20261202.0001", "applied"),
        ("app", "00000000.0000", "applied"), ("app", "20240101.0001", "apply"),
        ("app", "20240101.0002", "apply")]
    first = data["patches"][6]
    assert {k: first[k] for k in ("major", "minor", "user", "description")} == {
        "major": "20240101", "minor": "0001", "user": "app", "description": "p1"}
    assert first["path"].endswith("app.20240101.0001.app.p1.sql")


def test_each_patch_runs_as_the_user_in_its_name(pg: Pg) -> None:
    app_tree(pg, 1)
    pg.write("later/app.20240102.0001.postgres.as_superuser.sql",
             "INSERT INTO ledger (name) VALUES ('su');\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert ledger(pg) == [("p1", "app"), ("su", "postgres")]


def test_failed_patch_is_rolled_back_earlier_work_kept_and_retried(pg: Pg) -> None:
    app_tree(pg, 1)
    bad = pg.write("later/app.20240102.0001.app.bad.sql",
                   "INSERT INTO ledger (name) VALUES ('half');\n\n"
                   "INSERT INTO ledger (nme) VALUES ('x');\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f'error: {bad}:3: column "nme" of relation "ledger" does not exist [SQLSTATE 42703]')
    assert ledger(pg) == [("p1", "app")]  # 'half' rolled back with its patch
    plan = json.loads(pg.cli("plan", pg.glob(), "--format", "json").stdout)
    assert [p["action"] for p in plan["patches"] if p["database"] == "app"] == [
        "applied", "applied", "apply"]
    bad.write_text("INSERT INTO ledger (name) VALUES ('fixed');\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert ledger(pg) == [("fixed", "app"), ("p1", "app")]


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_error_in_a_multiline_statement_points_at_the_right_line(pg: Pg) -> None:
    app_tree(pg, 0)
    bad = pg.write("later/app.20240102.0001.app.bad.sql",
                   "-- ünïcödé comment\nSELECT 1;\nSELECT\n  1,\n  no_such_column\nFROM ledger;\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {bad}:5: column \"no_such_column\" does not exist")


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_missing_database_without_baseline_runs_nothing(pg: Pg) -> None:
    p = pg.write("app.20240101.0001.app.x.sql")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: {p}: database app does not exist and there is no "
        "app.00000000.0000.<user>.<description>.sql baseline to create it")
    assert pg.databases() == set()


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_duplicate_versions_name_both_files_and_nothing_runs(pg: Pg) -> None:
    app_tree(pg, 1)
    a = pg.tree / "later" / "app.20240101.0001.app.p1.sql"
    b = pg.write("other/app.20240101.0001.app.again.sql")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert str(a) in result.stderr and str(b) in result.stderr
    assert pg.databases() == set()


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_malformed_name_is_named_and_nothing_runs(pg: Pg) -> None:
    app_tree(pg, 1)
    bad = pg.write("later/app.2024-01-01.0001.app.x.sql")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {bad}: not a patch file name")
    assert pg.databases() == set()


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_non_utf8_file_is_named_and_nothing_runs(pg: Pg) -> None:
    app_tree(pg, 1)
    bad = pg.tree / "later" / "app.20240102.0001.app.latin1.sql"
    bad.write_bytes(b"SELECT 'caf\xe9';\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {bad}:1: the file is not valid UTF-8")
    assert pg.databases() == set()


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_glob_matching_nothing_is_named(pg: Pg) -> None:
    result = pg.cli("apply", str(pg.tree / "nope" / "*.sql"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {pg.tree / 'nope' / '*.sql'}: the glob matches")


def test_wrong_password_is_one_line_without_the_password(pg: Pg) -> None:
    app_tree(pg, 1)
    result = pg.cli("apply", pg.glob(), env={"POSTGRESQL_POSTGRES_PASSWORD": "Sekr1t-wrong"})
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: cannot connect to database 'postgres' as 'postgres' at "
        f"{pg.env['PGHOST']}:{pg.env['PGPORT']}: password authentication failed for user "
        '"postgres"',
        "hint: set POSTGRESQL_POSTGRES_PASSWORD to postgres's password"]
    assert "Sekr1t" not in result.output
    assert pg.databases() == set()


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_unreachable_server_is_one_line(pg: Pg) -> None:
    app_tree(pg, 1)
    result = pg.run("plan", pg.glob(), "--port", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to database 'postgres'")
    assert "Connection refused" in result.stderr and "Traceback" not in result.stderr


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_missing_password_variable_uses_the_user_name_and_warns(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql",
             "CREATE ROLE app LOGIN PASSWORD 'app';\nCREATE DATABASE app OWNER app;\n")
    pg.write("app.20240101.0001.app.t.sql", "CREATE TABLE t ();\n")
    result = pg.cli("apply", pg.glob(), env={"POSTGRESQL_APP_PASSWORD": None})
    assert result.exit_code == 0, result.stderr
    assert ("warning: POSTGRESQL_APP_PASSWORD is not set: using the user name as app's "
            "password") in result.stderr


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_prefix_option_picks_the_password_variables(pg: Pg) -> None:
    app_tree(pg, 1)
    env = {k.replace("POSTGRESQL_", "MYAPP_"): v for k, v in pg.env.items()
           if k.startswith("POSTGRESQL_")}
    env.update({k: None for k in pg.env if k.startswith("POSTGRESQL_")})
    result = pg.cli("apply", "-p", "MYAPP", pg.glob(), env=env)
    assert result.exit_code == 0, result.stderr
    assert ledger(pg) == [("p1", "app")]


def test_failed_bootstrap_leaves_nothing_behind(pg: Pg) -> None:
    glob = str(EXAMPLES / "error_bootstrap" / "*.sql")
    result = pg.cli("apply", glob)
    assert result.exit_code == 1
    path = EXAMPLES / "error_bootstrap" / "kennel.00000000.0000.postgres.baseline.sql"
    assert result.stderr.splitlines()[0] == (
        f'error: {path}:8: relation "breed" does not exist [SQLSTATE 42P01]')
    assert "dropped the database and the roles" in result.stderr
    assert "kennel" not in pg.databases() and "kennel" not in pg.roles()
    again = pg.cli("plan", glob)
    assert [line.split()[-2:] for line in again.stdout.splitlines()
            if line.startswith("kennel")] == [["bootstrap", "psql"]]


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_error_in_a_later_patch_example(pg: Pg) -> None:
    glob = str(EXAMPLES / "error_patch" / "*.sql")
    result = pg.cli("apply", glob)
    assert result.exit_code == 1
    path = EXAMPLES / "error_patch" / "vet.20210402.0001.postgres.cost_per_dog.sql"
    assert result.stderr.splitlines()[0] == f"error: {path}:4: division by zero [SQLSTATE 22012]"
    assert pg.query("SELECT count(*) FROM visits", "vet") == [(2,)]
    assert pg.query("SELECT to_regclass('cost_share')", "vet") == [(None,)]


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_status_shows_records_and_with_globs_what_is_pending(pg: Pg) -> None:
    app_tree(pg, 2)
    pg.cli("apply", pg.glob())
    pg.write("later/app.20240201.0001.app.new.sql")
    data = json.loads(pg.cli("status", pg.glob(), "--format", "json").stdout)
    app = [r for r in data["records"] if r["database"] == "app"]
    assert [(r["version"], r["user"], r["state"]) for r in app] == [
        ("00000000.0000", "postgres", "applied"), ("20240101.0001", "app", "applied"),
        ("20240101.0002", "app", "applied")]
    assert all(r["installed"] for r in app)
    assert [p["version"] for p in data["plan"]["patches"] if p["action"] == "apply"] == [
        "20240201.0001"]
    text = pg.cli("status").stdout
    assert "app       20240101.0002  app" in text


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_seed_form_means_apply_and_prints_no_traceback(pg: Pg) -> None:
    app_tree(pg, 1)
    result = pg.run("-l", "debug", pg.glob())
    assert result.returncode == 0, result.stderr
    assert f"applied {STATE_PATCHES + 2} patches" in result.stdout
    assert ledger(pg) == [("p1", "app")]
    bad = pg.run("-l", "info", str(pg.tree / "missing" / "*.sql"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_state_db_option_keeps_the_record_elsewhere(pg: Pg) -> None:
    app_tree(pg, 1)
    result = pg.cli("apply", "--state-db", "pgpatch_state", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.databases() == {"pgpatch_state", "app"}
    bad = pg.cli("apply", "--state-db", "Bad-Name", pg.glob())
    assert bad.exit_code == 2 and "Invalid value for '--state-db'" in bad.stderr


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_password_never_appears_in_debug_output(pg: Pg) -> None:
    app_tree(pg, 1)
    result = pg.run("apply", "-l", "debug", pg.glob())
    assert result.returncode == 0
    for secret in [*PASSWORDS.values(), pg.server.password]:
        assert secret not in result.stdout + result.stderr


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_records_of_a_dropped_database_are_refused_until_forgotten(pg: Pg) -> None:
    app_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    refused = pg.cli("forget", "app")
    assert refused.exit_code == 1 and "database app exists" in refused.stderr
    pg.query("DROP DATABASE app WITH (FORCE)")
    pg.query("DROP ROLE app")
    plan = pg.cli("plan", pg.glob())
    assert plan.exit_code == 1 and "[state-mismatch]" in plan.stdout
    assert "pgpatch forget app" in plan.stdout
    forgot = pg.cli("forget", "app")
    assert forgot.exit_code == 0 and forgot.stdout.strip() == "forgot 2 records of app"
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert ledger(pg) == [("p1", "app")]


# pgpatch's CLI and records, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_a_first_run_leaves_every_record_with_its_checksum_and_user(pg: Pg) -> None:
    app_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    rows = pg.query("SELECT name, user_name, checksum IS NOT NULL FROM installed_patches "
                    "ORDER BY id", "patches")
    assert [(u, c) for _, u, c in rows] == [
        *[("postgres", True)] * (STATE_PATCHES + 1), ("app", True)]


def test_a_baseline_whose_role_exists_already_says_what_to_do(pg: Pg) -> None:
    app_tree(pg, 1)
    pg.query("CREATE ROLE app LOGIN")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    error, hint = result.stderr.splitlines()[:2]
    assert error.endswith('role "app" already exists [SQLSTATE 42710]')
    assert hint.startswith("hint: it exists already (made by hand, or left by an interrupted")
    assert "app" not in pg.databases() and "app" in pg.roles()  # not ours to drop
