"""A bootstrap drops only what it provably made, and only while nobody else used it since.

Each test sets up what real operators and servers do (a database of the state database's name,
an application that writes into a half-made database, a role made while a bootstrap runs) and
checks that pgpatch leaves it as it is, or makes it anew only where the promise allows.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.server import Maintenance, Server
from tests.integration.conftest import Pg
from tests.integration.test_safety import popen

GATE = 4242  # an advisory lock the test holds to stop a baseline half way
APP = "CREATE DATABASE app;\n\\connect app\nCREATE TABLE ledger (name text);\n"


def app_tree(pg: Pg, baseline: str = APP) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", baseline)
    pg.write("app.20240101.0001.postgres.p1.sql", "INSERT INTO ledger VALUES ('p1');\n")


def plan_json(pg: Pg) -> dict[str, Any]:
    return json.loads(pg.cli("plan", pg.glob(), "--format", "json").stdout)


def killed_after_bootstrap(pg: Pg, nth: int) -> None:
    """A real run, killed once every step of the nth bootstrap ran, none recorded as done."""
    proc = popen(pg, "apply", pg.glob(), env={"PGPATCH_CRASH_AT": f"after-bootstrap:{nth}"})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL


@contextmanager
def gate(pg: Pg) -> Iterator[None]:
    """Hold the lock a baseline's ``SELECT pg_advisory_lock(4242)`` waits for; the body runs
    once the baseline waits, and the baseline goes on when the body is done."""
    with pg.server.connect("postgres") as holder:
        holder.autocommit = True
        holder.execute("SELECT pg_advisory_lock(%s)", [GATE])
        yield
        holder.execute("SELECT pg_advisory_unlock(%s)", [GATE])


def wait_for_the_gate(pg: Pg) -> None:
    deadline = time.monotonic() + 60
    while not pg.query(f"SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                       f"AND objid = {GATE} AND NOT granted"):
        assert time.monotonic() < deadline, "the baseline never reached the gate"
        time.sleep(0.05)


def wait_until_nobody_uses(pg: Pg, database: str) -> None:
    """Until the test's own sessions are gone from the server (and counted in its stats)."""
    deadline = time.monotonic() + 30
    while pg.query(f"SELECT 1 FROM pg_stat_activity WHERE datname = '{database}'"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


# -- a database that only looks like a half-made state database -------------------------------

SHAPES = {
    # the case: tables outside public, role patches exists
    "tables in another schema": (
        ["CREATE DATABASE inventory"],
        ["CREATE SCHEMA app", "CREATE TABLE app.items (id int)",
         "INSERT INTO app.items VALUES (1)"],
        "SELECT count(*) = 1 FROM app.items"),
    "an empty table in another schema, owned and locked down like pgpatch's": (
        ["CREATE DATABASE inventory OWNER patches",
         "REVOKE ALL ON DATABASE inventory FROM PUBLIC"],
        ["CREATE SCHEMA app", "CREATE TABLE app.items (id int)"],
        "SELECT to_regclass('app.items') IS NOT NULL"),
    "a function of someone else's": (
        ["CREATE DATABASE inventory OWNER patches",
         "REVOKE ALL ON DATABASE inventory FROM PUBLIC"],
        ["CREATE FUNCTION public.answer() RETURNS int LANGUAGE sql AS 'SELECT 42'"],
        "SELECT public.answer() = 42"),
    "pgpatch's first table, with a row": (
        ["CREATE DATABASE inventory OWNER patches",
         "REVOKE ALL ON DATABASE inventory FROM PUBLIC"],
        ["SET ROLE patches", "CREATE TABLE databases (id serial PRIMARY KEY, name text)",
         "INSERT INTO databases (name) VALUES ('kept')"],
        "SELECT count(*) = 1 FROM databases"),
    "an empty database of someone else's": (
        ["CREATE DATABASE inventory"], [],
        "SELECT has_database_privilege('public', 'inventory', 'CONNECT')"),
    "an empty database with settings of its own": (
        ["CREATE DATABASE inventory OWNER patches",
         "ALTER DATABASE inventory SET work_mem = '64MB'"], [],
        "SELECT current_setting('work_mem') = '64MB'"),
    "pgpatch's first table, without the baseline's REVOKE": (
        ["CREATE DATABASE inventory OWNER patches"],
        ["SET ROLE patches", "CREATE TABLE databases (id serial PRIMARY KEY, name text)"],
        "SELECT to_regclass('databases') IS NOT NULL"),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_a_database_not_provably_a_half_made_state_database_is_never_touched(
        pg: Pg, shape: str) -> None:
    server_sql, database_sql, still_there = SHAPES[shape]
    pg.query("CREATE ROLE patches LOGIN PASSWORD 'state-pw-1'")
    for statement in server_sql:
        pg.query(statement)
    if database_sql:
        pg.query("; ".join(database_sql), "inventory")  # one session: SET ROLE holds
    oid = pg.query("SELECT oid FROM pg_database WHERE datname = 'inventory'")
    app_tree(pg)
    for command in ("plan", "apply"):
        result = pg.cli(command, pg.glob(), "--state-db", "inventory")
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            "error: the database inventory exists but is not a pgpatch state database",
            "hint: name another state database with --state-db"]
    assert pg.query("SELECT oid FROM pg_database WHERE datname = 'inventory'") == oid
    assert pg.query(still_there, "inventory") == [(True,)]
    assert "app" not in pg.databases()


def test_a_state_database_cut_short_half_way_through_its_baseline_is_made_again(
        pg: Pg) -> None:
    pg.query("CREATE ROLE patches LOGIN PASSWORD 'state-pw-1'")
    pg.query("CREATE DATABASE patches OWNER patches")  # what the baseline does, up to
    pg.query("REVOKE ALL ON DATABASE patches FROM PUBLIC")  # its first table
    pg.query("SET ROLE patches; CREATE TABLE databases (id serial PRIMARY KEY, "
             "name text NOT NULL UNIQUE)", "patches")
    app_tree(pg)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT name FROM ledger", "app") == [("p1",)]


def test_a_state_database_whose_first_run_was_killed_is_made_again(pg: Pg) -> None:
    app_tree(pg)
    killed_after_bootstrap(pg, 1)  # the state database's baseline ran, nothing recorded
    assert pg.query("SELECT count(*) FROM installed_patches", "patches") == [(0,)]
    state = next(p for p in plan_json(pg)["patches"] if p["database"] == "patches")
    assert state["action"] == "bootstrap" and "redo" in state["flags"]
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT name FROM ledger", "app") == [("p1",)]


def test_a_half_made_state_database_in_use_is_not_dropped_until_nobody_is_connected(
        pg: Pg) -> None:
    app_tree(pg)
    killed_after_bootstrap(pg, 1)
    with pg.server.connect("patches") as someone:
        result = pg.cli("apply", pg.glob())
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            "error: the database patches is what an interrupted first run of pgpatch left, "
            "but 1 other session is connected to it",
            "hint: pgpatch makes it anew only while nobody uses it: wait for them to end, "
            "then run again"]
        assert someone.execute("SELECT 1").fetchone() == (1,)  # not killed
    wait_until_nobody_uses(pg, "patches")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr


# -- an interrupted bootstrap of a user database ----------------------------------------------

def test_an_interrupted_bootstrap_nobody_else_used_is_made_again(pg: Pg) -> None:
    app_tree(pg)
    killed_after_bootstrap(pg, 2)  # the state database's, then app's
    step = next(p for p in plan_json(pg)["patches"] if p["database"] == "app")
    assert step["action"] == "bootstrap" and "redo" in step["flags"]
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT name FROM ledger", "app") == [("p1",)]


def test_a_bootstrap_killed_before_its_database_existed_simply_runs_again(pg: Pg) -> None:
    baseline = pg.write("app.00000000.0000.postgres.baseline.sql",
                        f"SELECT pg_advisory_lock({GATE});\n{APP}")
    pg.write("app.20240101.0001.postgres.p1.sql", "INSERT INTO ledger VALUES ('p1');\n")
    with gate(pg):
        proc = popen(pg, "apply", pg.glob())
        wait_for_the_gate(pg)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert "app" not in pg.databases()
    baseline.write_text(APP)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT name FROM ledger", "app") == [("p1",)]
    assert plan_json(pg)["ok"]


def refused(pg: Pg, reason: str) -> None:
    """plan and apply both refuse the redo with a problem naming app; app is not dropped."""
    oid = pg.query("SELECT oid FROM pg_database WHERE datname = 'app'")
    plan = plan_json(pg)
    assert not plan["ok"]
    problem = plan["problems"][0]
    assert problem["kind"] == "interrupted-bootstrap"
    assert problem["path"].endswith("app.00000000.0000.postgres.baseline.sql")
    assert problem["message"] == (
        "the last bootstrap of app was interrupted, and the database app is not provably its "
        f"own leftover: {reason}")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].endswith(problem["message"])
    assert pg.query("SELECT oid FROM pg_database WHERE datname = 'app'") == oid


def test_an_interrupted_bootstrap_an_application_wrote_into_is_never_dropped(pg: Pg) -> None:
    app_tree(pg)
    killed_after_bootstrap(pg, 2)
    pg.query("INSERT INTO ledger VALUES ('an order the shop took')", "app")
    wait_until_nobody_uses(pg, "app")
    refused(pg, "2 sessions were opened to it, its bootstrap opens at most 1: someone else "
                "used it")
    assert pg.query("SELECT name FROM ledger", "app") == [("an order the shop took",)]
    hint = pg.cli("apply", pg.glob()).stderr.splitlines()[1]
    assert hint.startswith("hint: if it is the half-made one and nothing in it is needed, "
                           "drop it by hand (DROP DATABASE app) and run again")
    # the hint's other way: keep it as it is, its bootstrap's records settled by hand
    settle = hint.split("settle its bootstrap's records by hand (", 1)[1][:-1]
    pg.query(settle, "patches")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT name FROM ledger ORDER BY 1", "app") == [
        ("an order the shop took",), ("p1",)]


def test_an_interrupted_bootstrap_someone_is_connected_to_is_left_and_nobody_killed(
        pg: Pg) -> None:
    app_tree(pg, "CREATE DATABASE app;\n")  # the baseline itself never connects to it
    pg.write("app.20240101.0001.postgres.p1.sql", "CREATE TABLE ledger (name text);\n")
    killed_after_bootstrap(pg, 2)
    with pg.server.connect("app") as someone:
        refused(pg, "1 session is connected to it")
        assert someone.execute("SELECT 1").fetchone() == (1,)  # not killed
        hint = pg.cli("apply", pg.glob()).stderr.splitlines()[1]
        assert hint.startswith("hint: wait for them to end")


def test_an_older_database_renamed_into_the_name_is_never_dropped(pg: Pg) -> None:
    pg.query("CREATE DATABASE inventory")
    pg.query("CREATE TABLE items (id int)", "inventory")
    app_tree(pg)
    killed_after_bootstrap(pg, 2)
    pg.query("DROP DATABASE app")
    pg.query("ALTER DATABASE inventory RENAME TO app")
    refused(pg, "the database existed before that bootstrap began: another one made it")
    assert pg.query("SELECT to_regclass('items') IS NOT NULL", "app") == [(True,)]


def test_an_interrupted_bootstrap_without_marks_is_not_redone(pg: Pg) -> None:
    app_tree(pg)
    killed_after_bootstrap(pg, 2)
    pg.query("UPDATE installed_patches SET oid_horizon = NULL", "patches")  # an older pgpatch
    refused(pg, "its bootstrap left no mark to prove that it made this database (an older "
                "pgpatch began it)")


# -- a failed bootstrap -----------------------------------------------------------------------

def test_a_failed_bootstrap_drops_only_the_roles_it_created(pg: Pg) -> None:
    app_tree(pg, "CREATE ROLE app_owner;\nCREATE DATABASE app OWNER app_owner;\n"
                 f"SELECT pg_advisory_lock({GATE});\nSELECT 1/0;\n")
    with gate(pg):
        proc = popen(pg, "apply", pg.glob())
        wait_for_the_gate(pg)
        pg.query("CREATE ROLE bystander")  # someone else, while the bootstrap runs
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "division by zero" in stderr.splitlines()[0]
    assert "pgpatch dropped the database and the roles its bootstrap created" in stderr
    assert "app" not in pg.databases()
    assert pg.roles() == {"patches", "bystander"}


def test_a_failed_bootstrap_never_drops_a_database_someone_else_made_meanwhile(pg: Pg) -> None:
    app_tree(pg, f"SELECT pg_advisory_lock({GATE});\nCREATE DATABASE app;\n")
    with gate(pg):
        proc = popen(pg, "apply", pg.glob())
        wait_for_the_gate(pg)
        pg.query("CREATE DATABASE app")
        pg.query("CREATE TABLE theirs (id int)", "app")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert stderr.splitlines()[0].endswith('database "app" already exists [SQLSTATE 42P04]')
    assert stderr.splitlines()[1].startswith(
        "hint: pgpatch left database app as it is (another one made it)")
    assert pg.query("SELECT to_regclass('theirs') IS NOT NULL", "app") == [(True,)]


def test_a_failed_bootstrap_never_drops_its_database_once_someone_else_used_it(pg: Pg) -> None:
    app_tree(pg, f"CREATE DATABASE app;\nSELECT pg_advisory_lock({GATE});\nSELECT 1/0;\n")
    with gate(pg):
        proc = popen(pg, "apply", pg.glob())
        wait_for_the_gate(pg)
        pg.query("CREATE TABLE early_bird (id int); INSERT INTO early_bird VALUES (1)", "app")
        wait_until_nobody_uses(pg, "app")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert stderr.splitlines()[1].startswith(
        "hint: pgpatch left database app as it is (1 session was opened to it, its bootstrap "
        "opens at most 0: someone else used it)")
    assert pg.query("SELECT count(*) FROM early_bird", "app") == [(1,)]


def test_a_drop_never_ends_someone_elses_session(pg: Pg) -> None:
    pg.query("CREATE DATABASE app")
    server = Server(host=pg.env["PGHOST"], port=int(pg.env["PGPORT"]), environ=pg.env)
    maint = Maintenance(server)
    try:
        with pg.server.connect("app") as someone:
            with pytest.raises(PgpatchError) as caught:
                maint.drop_database("app")
            assert caught.value.message == (
                "cannot drop database app: other sessions are connected to it")
            assert someone.execute("SELECT 1").fetchone() == (1,)
    finally:
        maint.close()
    assert "app" in pg.databases()
