"""Passwords: never in a statement, a log line or psql's environment but where they must be.

Against real servers: the server's own log (log_statement=ddl) is read back, and a psql
wrapper records the environment pgpatch hands psql.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import PASSWORDS, Pg

APP_PW = PASSWORDS["APP"]
CREATE_APP = """\\getenv pw {variable}
CREATE ROLE app LOGIN PASSWORD :'pw';
CREATE DATABASE app OWNER app;
"""
APP_PATCH = "CREATE TABLE t (who text DEFAULT current_user);\nINSERT INTO t DEFAULT VALUES;\n"


@pytest.fixture
def ddl_log(pg: Pg) -> Iterator[Callable[[], str]]:
    """The server logs every DDL statement (as a DBA may set it) for this test; the returned
    function gives the log written since."""
    start = len(pg.server.server_log())
    pg.query("ALTER SYSTEM SET log_statement = 'ddl'")
    pg.query("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while pg.query("SHOW log_statement") != [("ddl",)]:  # a new session sees the reload
        assert time.monotonic() < deadline, "the server did not take log_statement"
        time.sleep(0.05)
    try:
        yield lambda: pg.server.server_log()[start:]
    finally:
        pg.query("ALTER SYSTEM RESET log_statement")
        pg.query("SELECT pg_reload_conf()")


def psql_recorder(pg: Pg, tmp_path: Path) -> Path:
    """A psql that writes its command line and environment to runs/<pid>.* first."""
    runs = tmp_path / "runs"
    runs.mkdir()
    wrapper = tmp_path / "psql"
    real = pg.server.installation.tool("psql")
    wrapper.write_text(f'#!/bin/sh\necho "$@" > {runs}/$$.argv\nenv -0 > {runs}/$$.env\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    pg.env["PGPATCH_PSQL"] = str(wrapper)
    return runs


def psql_runs(runs: Path) -> list[tuple[str, dict[str, str]]]:
    """(command line, environment) of each psql run."""
    out = []
    for argv in sorted(runs.glob("*.argv")):
        raw = argv.with_suffix(".env").read_bytes().decode()
        env = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
        out.append((argv.read_text(), env))
    return out


@pytest.mark.parametrize("variable", ["PGPATCH_APP_PASSWORD", "POSTGRESQL_APP_PASSWORD",
                                      "PATCHES_POSTGRESQL_TEMPORARY_USER_PASSWORD"])
def test_a_baseline_creates_its_role_from_a_verifier_and_the_role_logs_in(
        pg: Pg, tmp_path: Path, ddl_log: Callable[[], str], variable: str) -> None:
    runs = psql_recorder(pg, tmp_path)
    pg.write("app.00000000.0000.postgres.baseline.sql", CREATE_APP.format(variable=variable))
    pg.write("app.20240101.0001.app.t.sql", APP_PATCH)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT who FROM t", "app") == [("app",)]  # app logged in with app-pw-2
    [(_, env)] = [(argv, env) for argv, env in psql_runs(runs) if "database=app" in argv]
    verifier = env[variable]
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'") == [(verifier,)]
    log = ddl_log()
    assert "CREATE ROLE app LOGIN PASSWORD 'SCRAM-SHA-256$" in log  # the log was written
    assert "CREATE ROLE patches LOGIN PASSWORD 'SCRAM-SHA-256$" in log
    for secret in PASSWORDS.values():
        assert secret not in log


def test_psql_gets_the_clear_password_of_its_user_only(pg: Pg, tmp_path: Path) -> None:
    runs = psql_recorder(pg, tmp_path)
    pg.query(f"CREATE ROLE app LOGIN CREATEDB PASSWORD '{APP_PW}'")
    pg.write("app.00000000.0000.app.baseline.sql", "CREATE DATABASE app;\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    by_user = {argv.split(" -U ")[1].split()[0]: env for argv, env in psql_runs(runs)}
    # app's baseline only: the state database's runs without psql, its role made from a
    # verifier all the same (tests/integration/test_run_costs.py)
    assert set(by_user) == {"app"}
    app = by_user["app"]
    assert app["PGPASSWORD"] == APP_PW
    assert [k for k in app if k.endswith("PASSWORD") and k != "PGPASSWORD"] == []
    assert pg.server.password not in app.values()


@pytest.mark.parametrize("password", [":'pw'", f"'{APP_PW}'", "'a-literal-Secret-99'"])
def test_no_output_holds_a_password_when_create_role_fails(
        pg: Pg, tmp_path: Path, ddl_log: Callable[[], str], password: str) -> None:
    runs = psql_recorder(pg, tmp_path)
    bad = pg.write("app.00000000.0000.postgres.baseline.sql",
                   "\\getenv pw PGPATCH_APP_PASSWORD\n"
                   "CREATE ROLE app LOGIN CREATEDB NOINHERIT NOCREATEROLE CONNECTION LIMIT 5 "
                   f"PASSWORD {password} BOGUS;\n")
    result = pg.run("apply", "-l", "debug", pg.glob())
    assert result.returncode == 1
    assert f'error: {bad}:2: unrecognized role option "bogus" [SQLSTATE 42601]' in result.stderr
    assert "debug: psql: LINE 1: " in result.stderr  # psql's context was logged, masked
    output = result.stdout + result.stderr
    for secret in [*PASSWORDS.values(), pg.server.password, "a-literal-Secret-99", "Secret"]:
        assert secret not in output
    [(_, env)] = [(a, e) for a, e in psql_runs(runs) if "database=app" in a]
    _, salt, keys = env["PGPATCH_APP_PASSWORD"].split("$")  # nor the verifier, nor parts
    for part in ["SCRAM-SHA-256", salt.split(":")[1], *keys.split(":")]:
        assert part not in output
    log = ddl_log()
    assert "BOGUS" in log
    if password == ":'pw'":  # (a password written into the file is in the statement)
        assert APP_PW not in log


BASELINE_WITH_ROLE = """\\getenv pw PGPATCH_APP_PASSWORD
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') AS create_app \\gset
\\if :create_app
CREATE ROLE app LOGIN PASSWORD :'pw';
\\endif
CREATE DATABASE app OWNER app;
"""


def app_tree(pg: Pg) -> Path:
    baseline = pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE_WITH_ROLE)
    pg.write("app.20240101.0001.app.t.sql", APP_PATCH)
    return baseline


# the warnings and --strict-passwords are pgpatch's, the same on every major: on one major only
# (tests/conftest.py); what reaches the server and its log is tested on each above
@pytest.mark.one_major
def test_a_role_a_baseline_creates_without_its_variable_is_warned_once(pg: Pg) -> None:
    app_tree(pg)
    result = pg.cli("apply", pg.glob(), env={"POSTGRESQL_APP_PASSWORD": None})
    assert result.exit_code == 0, result.stderr
    assert [x for x in result.stderr.splitlines() if "POSTGRESQL_APP_PASSWORD" in x] == [
        "warning: POSTGRESQL_APP_PASSWORD is not set: role app gets its name as password "
        "(app.00000000.0000.postgres.baseline.sql creates it)"]
    with pg.server.connect("app", user="app", password="app") as conn:
        assert conn.execute("SELECT who FROM t").fetchall() == [("app",)]


# the warnings and --strict-passwords are pgpatch's, the same on every major: on one major only
# (tests/conftest.py); what reaches the server and its log is tested on each above
@pytest.mark.one_major
def test_the_state_role_made_without_its_variable_is_warned_once(pg: Pg) -> None:
    app_tree(pg)
    result = pg.cli("apply", pg.glob(), env={"POSTGRESQL_PATCHES_PASSWORD": None})
    assert result.exit_code == 0, result.stderr
    assert [x for x in result.stderr.splitlines() if "PATCHES_PASSWORD" in x] == [
        "warning: POSTGRESQL_PATCHES_PASSWORD is not set: role patches gets its name as "
        "password (patches.00000000.0000.postgres.baseline.sql creates it)"]
    again = pg.cli("apply", pg.glob(), env={"POSTGRESQL_PATCHES_PASSWORD": None})
    assert again.exit_code == 0
    assert again.stderr.splitlines() == [
        "warning: POSTGRESQL_PATCHES_PASSWORD is not set: using the user name as patches's "
        "password"]


# the warnings and --strict-passwords are pgpatch's, the same on every major: on one major only
# (tests/conftest.py); what reaches the server and its log is tested on each above
@pytest.mark.one_major
def test_strict_passwords_stops_the_run_before_anything_runs(pg: Pg) -> None:
    baseline = app_tree(pg)
    unset = {"POSTGRESQL_APP_PASSWORD": None}
    result = pg.cli("apply", "--strict-passwords", pg.glob(), env=unset)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {baseline}: POSTGRESQL_APP_PASSWORD is not set: role app would get its "
        "name as password",
        "hint: set POSTGRESQL_APP_PASSWORD, or run without --strict-passwords"]
    assert pg.databases() == set() and pg.roles() == set()
    seed_form = pg.cli("--strict-passwords", pg.glob(), env=unset)
    assert seed_form.exit_code == 1 and "would get its name" in seed_form.stderr
    plan = pg.cli("plan", "--strict-passwords", "--format", "json", pg.glob(), env=unset)
    assert plan.exit_code == 1
    problems = json.loads(plan.stdout)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [("password", str(baseline))]
    offline = pg.cli("plan", "--offline", "--strict-passwords", "--format", "json", pg.glob(),
                     env=unset)
    assert [p["kind"] for p in json.loads(offline.stdout)["problems"]] == ["password"]
    assert pg.databases() == set() and pg.roles() == set()
    assert pg.cli("apply", "--strict-passwords", pg.glob()).exit_code == 0


# the warnings and --strict-passwords are pgpatch's, the same on every major: on one major only
# (tests/conftest.py); what reaches the server and its log is tested on each above
@pytest.mark.one_major
def test_strict_passwords_refuses_a_login_with_the_user_name(pg: Pg) -> None:
    app_tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    later = pg.write("app.20240102.0001.app.more.sql", "INSERT INTO t DEFAULT VALUES;\n")
    result = pg.cli("apply", "--strict-passwords", pg.glob(),
                    env={"POSTGRESQL_APP_PASSWORD": None})
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"error: {later}: POSTGRESQL_APP_PASSWORD is not set: pgpatch would log in as app "
        "with its name as password")
    assert pg.query("SELECT count(*) FROM t", "app") == [(1,)]
    superuser = pg.cli("plan", "--strict-passwords", pg.glob(),
                       env={"POSTGRESQL_POSTGRES_PASSWORD": None})
    assert superuser.exit_code == 1
    assert superuser.stderr.splitlines()[0] == (
        "error: POSTGRESQL_POSTGRES_PASSWORD is not set: pgpatch would log in as postgres "
        "with its name as password")


# the warnings and --strict-passwords are pgpatch's, the same on every major: on one major only
# (tests/conftest.py); what reaches the server and its log is tested on each above
@pytest.mark.one_major
def test_a_role_that_exists_already_needs_no_variable(pg: Pg) -> None:
    app_tree(pg)
    pg.query(f"CREATE ROLE app LOGIN PASSWORD '{APP_PW}'")
    (pg.tree / "app.20240101.0001.app.t.sql").unlink()  # nobody logs in as app
    result = pg.cli("apply", "--strict-passwords", pg.glob(),
                    env={"POSTGRESQL_APP_PASSWORD": None})
    assert result.exit_code == 0, result.stderr
    assert "POSTGRESQL_APP_PASSWORD" not in result.stderr
    assert "app" in pg.databases()

