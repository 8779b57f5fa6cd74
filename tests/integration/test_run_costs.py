"""What one apply costs besides the patches' own work: each patch's statements are made
ready once, and a first run logs in no more often than it must (docs/performance.md)."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from typing import Any

import psycopg
import pytest

import postgresqlpatches.core.sending as sending_module
from postgresqlpatches.core.discovery import builtin_patches
from postgresqlpatches.core.planner import Step
from postgresqlpatches.pg import executor
from postgresqlpatches.pg.executor import run_psql
from postgresqlpatches.pg.server import Maintenance, Server, baseline_variables
from postgresqlpatches.pg.state import make_state_database
from tests.integration.conftest import PASSWORDS, STATE_PATCHES, Pg

BASELINE = "CREATE DATABASE app;\n"
PATCHES = {
    "app.20240101.0001.postgres.first.sql": "CREATE TABLE a (id int);\n",
    "app.20240101.0002.postgres.temp.sql": "CREATE TEMP TABLE scratch (id int);\n"
                                           "INSERT INTO a SELECT 1;\n",
    "app.20240101.0003.postgres.behind.sql": "INSERT INTO a VALUES (2);\n",
    "app.20240101.0004.postgres.last.sql": "CREATE INDEX ON a (id);\n",
}


def test_each_patch_is_made_ready_to_send_once(pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch sent behind the COMMIT before it had its statements made then (as_sent,
    DISCARD TEMP added to the one with a temp table): its own run takes them, not a second
    making."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for name, text in PATCHES.items():
        pg.write(f"p/{name}", text)
    made: Counter[str] = Counter()
    real = sending_module.sending

    def counted(step: Step, state_db: str) -> Any:
        made[step.patch.name.filename] += 1
        return real(step, state_db)

    monkeypatch.setattr(sending_module, "sending", counted)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    assert {name: made[name] for name in PATCHES} == dict.fromkeys(PATCHES, 1)
    assert pg.query("SELECT array_agg(id ORDER BY id) FROM a", "app") == [([1, 2],)]


def _dump(pg: Pg, database: str) -> str:
    """The database as pg_dump --create --schema-only shows it, its name made neutral."""
    env = {**os.environ, **pg.env, "PGPASSWORD": pg.server.password}
    out = subprocess.run([str(pg.server.installation.tool("pg_dump")), "--create",
                          "--schema-only", "-U", "postgres", "-d", database],
                         env=env, capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if not line.startswith(("--", "\\restrict",
                                                                       "\\unrestrict"))]
    return re.sub(rf"\b{database}\b", "STATE", "\n".join(lines))


def _make_without_psql(pg: Pg, database: str) -> list[tuple[str, str]]:
    """make_state_database as a run calls it; returns the (database, user) of each session
    it asked for."""
    server = Server(host=pg.server.host, port=pg.server.port, environ=pg.env)
    maint = Maintenance(server)
    asked: list[tuple[str, str]] = []
    opened = []

    def connect(dbname: str) -> Any:
        asked.append((dbname, "postgres"))
        opened.append(server.connect(dbname, "postgres", autocommit=False))
        return opened[-1]

    patch = builtin_patches(database)[0]
    secrets = server.verifiers(baseline_variables(patch.text, server.prefix, database),
                               maint.verifier, database)
    try:
        make_state_database(maint.conn, patch, secrets, connect)
    finally:
        for conn in opened:
            conn.close()
        maint.close()
    return asked


def test_the_state_baseline_without_psql_makes_what_psql_makes(pg: Pg) -> None:
    """The shipped baseline run by pgpatch itself (no psql process, no logins of its own)
    makes the same database as psql running the file: owner, privileges, tables, view,
    routines; the role patches with a SCRAM verifier of its password (never the password
    in a statement); a second database finds the role there and leaves it as it is."""
    assert _make_without_psql(pg, "own_made") == [("own_made", "postgres")]
    verifier = pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'patches'")
    assert verifier[0][0].startswith("SCRAM-SHA-256$4096:")
    server = Server(host=pg.server.host, port=pg.server.port, environ=pg.env)
    maint = Maintenance(server)
    try:  # psql finds the role made: it skips its CREATE ROLE, as the run below does
        run_psql(server, builtin_patches("psql_made")[0], maint.verifier)
    finally:
        maint.close()
    assert _make_without_psql(pg, "own_again") == [("own_again", "postgres")]
    assert pg.query("SELECT rolpassword FROM pg_authid WHERE rolname = 'patches'") == verifier
    assert _dump(pg, "own_made") == _dump(pg, "psql_made") == _dump(pg, "own_again")
    assert "CREATE TABLE public.installed_patches" in _dump(pg, "own_made")
    rows = pg.query("SELECT datname, datdba::regrole::text, datacl::text FROM pg_database "
                    "WHERE datname IN ('own_made', 'psql_made') ORDER BY 1")
    assert [r[1:] for r in rows] == [("patches", "{patches=CTc/patches}")] * 2  # no PUBLIC
    with psycopg.connect(host=pg.server.host, port=pg.server.port, dbname="own_made",
                         user="patches", password=PASSWORDS["PATCHES"]) as conn:
        assert conn.execute("SELECT count(*) FROM installed_patches").fetchone() == (0,)


def test_a_failed_statement_of_the_own_baseline_names_its_line_and_leaves_nothing(
        pg: Pg) -> None:
    """A table of that name in template1 makes the baseline's CREATE TABLE fail: the error
    names the file's line, as psql's would, and the bootstrap's undo drops the database and
    the role it made."""
    pg.query("CREATE DATABASE app")
    pg.write("app.20240101.0001.postgres.one.sql", "CREATE TABLE one ();\n")
    pg.query("CREATE TABLE databases (x int)", "template1")
    try:
        result = pg.cli("apply", pg.glob())
    finally:
        pg.query("DROP TABLE databases", "template1")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: <pgpatch>/patches.00000000.0000.postgres.baseline.sql:14: relation "
        '"databases" already exists [SQLSTATE 42P07]')
    assert pg.databases() == {"app"}
    assert "patches" not in pg.roles()
    assert pg.query("SELECT to_regclass('one') IS NULL", "app") == [(True,)]
    assert pg.cli("apply", pg.glob()).exit_code == 0  # and the next run makes it


def test_a_first_run_logs_in_four_times(pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first run against an empty database logs in as few times as its sessions need: the
    lock's; the target's, which looks for objects of its own (no record yet) and then runs
    its patches; the new state database's as the admin role, for its baseline (no psql) and
    every state patch after it; the state store's, as patches. (Before: 8, with psql's two
    and one more after the first state patch's DO block, which only gives owners away.)"""
    pg.query("CREATE DATABASE app")
    pg.write("app.20240101.0001.postgres.one.sql", "CREATE TABLE one ();\n")
    pg.write("app.20240101.0002.postgres.two.sql", "CREATE TABLE two ();\n")
    logins: list[tuple[str, str]] = []
    connect = Server.connect

    def counted(self: Server, dbname: str, user: str, **kwargs: Any) -> Any:
        logins.append((dbname, user))
        return connect(self, dbname, user, **kwargs)

    def no_psql(*args: Any) -> None:
        raise AssertionError("psql ran")

    monkeypatch.setattr(Server, "connect", counted)
    monkeypatch.setattr(executor, "run_psql", no_psql)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    assert logins == [("postgres", "postgres"), ("app", "postgres"), ("patches", "postgres"),
                      ("patches", "patches")]
    assert pg.query("SELECT count(*) FROM installed_patches", "patches") == [
        (STATE_PATCHES + 2,)]
    logins.clear()
    assert pg.cli("apply", pg.glob()).exit_code == 0  # a no-op: the lock's and the store's
    assert logins == [("postgres", "postgres"), ("patches", "patches")]


def test_pg_roles_is_read_only_for_a_user_the_run_does_not_know(
        pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The no-role check needs the server's roles only for a pending patch's user that the
    run is not logged in as: an apply whose patches run as the admin role never reads them,
    one with a patch as another user reads them once (and still refuses a user that is
    missing)."""
    pg.query("CREATE DATABASE app")
    pg.write("app.20240101.0001.postgres.one.sql", "CREATE TABLE one ();\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    reads: list[int] = []
    roles = Maintenance.roles

    def counted(self: Maintenance) -> set[str]:
        reads.append(1)
        return roles(self)

    monkeypatch.setattr(Maintenance, "roles", counted)
    pg.write("app.20240101.0002.postgres.two.sql", "CREATE TABLE two ();\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert pg.cli("apply", pg.glob()).exit_code == 0  # a no-op
    assert reads == []
    pg.query("CREATE ROLE reader LOGIN PASSWORD 'reader'")
    pg.query("GRANT CREATE ON DATABASE app TO reader")
    pg.write("app.20240101.0003.reader.three.sql", "SELECT 1;\n")
    ghost = pg.write("app.20240101.0004.ghost.four.sql", "SELECT 1;\n")
    refused = pg.cli("apply", pg.glob())
    assert refused.exit_code == 1
    assert f"error: {ghost}: role ghost does not exist on the server" in refused.stderr
    assert reads == [1]
    ghost.unlink()
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert reads == [1, 1]


def test_the_state_patches_after_the_own_baseline_start_in_a_reset_session(
        pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline's session of the new state database ends as role patches (its SET ROLE)
    and the first upgrade gives owners away in a DO block; the state patches after each run
    on that same session, reset by DISCARD ALL first: as the admin role again, with the
    server's search_path."""
    pg.query("CREATE DATABASE app")
    pg.write("app.20240101.0001.postgres.one.sql", "CREATE TABLE one ();\n")
    resets: list[tuple[str, str, str]] = []  # database, user before, user after
    reset = executor.reset_session

    def watched(conn: Any) -> bool:
        before = conn.execute("SELECT current_user").fetchone()[0]
        conn.rollback()
        done = reset(conn)
        after = conn.execute("SELECT current_user").fetchone()[0]
        conn.rollback()
        resets.append((conn.info.dbname, before, after))
        return done

    monkeypatch.setattr(executor, "reset_session", watched)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    state = [r for r in resets if r[0] == "patches"]
    assert state[0] == ("patches", "patches", "postgres")  # the baseline's SET ROLE undone
    assert len(state) == STATE_PATCHES - 1  # before each state patch after the baseline
    assert {r[2] for r in state} == {"postgres"}
