"""-l debug shows what pgpatch decided, not the driver's chatter (that is -l trace); a user in
a file name that will not exist when its patch runs is found by the plan, on real servers."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import STATE_PATCHES, Pg

# what pgpatch decided and logs is its own, the same on every major: on one major only
# (tests/conftest.py)
pytestmark = pytest.mark.one_major


BASELINE = "CREATE ROLE app LOGIN PASSWORD 'app-pw-2';\nCREATE DATABASE app OWNER app;\n"


def test_debug_shows_the_plan_the_settling_and_each_steps_mode_without_psycopg(
        pg: Pg) -> None:
    base = pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    one = pg.write("app.20240101.0001.app.one.sql", "CREATE TABLE t (a int);\n")
    conc = pg.write("app.20240101.0002.app.idx.sql", "CREATE INDEX CONCURRENTLY i ON t (a);\n")
    result = pg.cli("-l", "debug", "apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert f"debug: plan: {STATE_PATCHES + 3} patches, {STATE_PATCHES + 3} pending " \
           "(2 to bootstrap), 0 applied" in lines  # the state database's baseline and app's
    assert f"debug: plan: {base}: bootstrap through psql (a 0000 baseline), as a whole" in lines
    assert (f"debug: plan: {one}: one transaction, pipelined: its record is written before "
            "its COMMIT, and settled at the end of the run") in lines
    assert (f"debug: plan: {conc}: statement by statement in autocommit, each recorded when "
            "done") in lines
    again = pg.cli("-l", "debug", "apply", pg.glob()).stderr.splitlines()
    assert "debug: settle: 0 unsettled records of an earlier run" in again
    for output in (lines, again):
        assert not any("psycopg" in line or "connection attempt" in line for line in output)
    traced = pg.run("-l", "trace", "plan", pg.glob()).stderr.splitlines()
    assert any(line.startswith("debug: psycopg: connection succeeded") for line in traced)
    assert any(line.startswith("debug: plan: ") for line in traced)


def test_a_user_no_patch_creates_is_a_plan_problem_and_nothing_runs(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.20240101.0001.app.one.sql", "CREATE TABLE t (a int);\n")
    ghost = pg.write("app.20240101.0002.reporter.grant.sql", "SELECT 1;\n")
    plan = pg.cli("plan", "--format", "json", pg.glob())
    assert plan.exit_code == 1
    problems = json.loads(plan.stdout)["problems"]
    assert problems == [{
        "kind": "no-role", "path": str(ghost), "line": None,
        "message": "role reporter does not exist on the server, and no earlier patch of this "
                   "run creates it: the patch would fail to log in",
        "hint": "create the role reporter before it (in the database's 0000 baseline, or a "
                "patch of its own), or fix the user in the file name"}]
    applied = pg.cli("apply", pg.glob())
    assert applied.exit_code == 1
    assert any(line.startswith(f"error: {ghost}: role reporter does not exist")
               for line in applied.stderr.splitlines())
    assert pg.databases() == set()  # refused before anything ran


def test_a_user_an_earlier_patch_creates_is_fine_and_one_it_may_create_is_a_warning(
        pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.20240101.0001.postgres.roles.sql",
             "CREATE ROLE reporter LOGIN PASSWORD 'reporter';\n"
             "DO $$ BEGIN EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', 'audit' || 'or', "
             "'auditor'); END $$;\n")
    pg.write("app.20240101.0002.reporter.read.sql", "SELECT 1;\n")
    later = pg.write("app.20240101.0003.auditor.read.sql", "SELECT 1;\n")
    plan = pg.cli("plan", pg.glob())
    assert plan.exit_code == 0, plan.output
    assert (f"warning: {later}: role auditor does not exist on the server; an earlier patch "
            "of this run names it but does not create it by name (CREATE ROLE): if it does "
            "not make it, this patch fails to log in [no-role]") in plan.stderr.splitlines()
    assert "reporter does not exist" not in plan.stderr
    applied = pg.cli("apply", pg.glob())  # the DO block does make it
    assert applied.exit_code == 0, applied.output
