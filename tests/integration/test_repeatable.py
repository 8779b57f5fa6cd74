"""Repeatable patches (major 99999999): run when new or changed, after the versioned patches
of their database, recorded run by run, exactly once per change even across a crash."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from tests.integration.conftest import Pg

# when a repeatable runs again is decided by pgpatch's plan and records, the same on every
# major: on one major only (tests/conftest.py)
pytestmark = pytest.mark.one_major


BASELINE = "app.00000000.0000.postgres.baseline.sql"
TABLE = "app.20240101.0001.postgres.table.sql"
VIEW = "app.99999999.0001.postgres.view.sql"


def view_sql(label: str) -> str:
    """A repeatable that says which version of it ran, once per run."""
    return (f"CREATE OR REPLACE VIEW v AS SELECT '{label}'::text AS label;\n"
            f"INSERT INTO runs VALUES ('{label}');\n")


def tree(pg: Pg, label: str = "v1") -> None:
    pg.write(BASELINE, "CREATE DATABASE app;\n")
    pg.write(TABLE, "CREATE TABLE runs (label text);\n")
    pg.write(VIEW, view_sql(label))


def runs(pg: Pg) -> list[str]:
    return [r[0] for r in pg.query("SELECT label FROM runs", "app")]


def plan_json(pg: Pg) -> dict[str, Any]:
    result = pg.cli("plan", "--format", "json", pg.glob())
    return json.loads(result.stdout)


def step(plan: dict[str, Any], version: str) -> dict[str, Any]:
    return next(p for p in plan["patches"] if p["version"] == version)


def repeatable_records(pg: Pg) -> list[tuple[Any, ...]]:
    return pg.query("SELECT run, checksum, settled FROM installed_patches "
                    "WHERE major = '99999999' ORDER BY id", "patches")


def test_a_repeatable_patch_runs_when_new_and_again_each_time_it_changes(pg: Pg) -> None:
    tree(pg)
    assert step(plan_json(pg), "99999999.0001")["action"] == "apply"
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert runs(pg) == ["v1"]
    unchanged = plan_json(pg)
    assert unchanged["ok"] and step(unchanged, "99999999.0001")["action"] == "applied"
    pg.write(VIEW, "-- a comment is no change\n" + view_sql("v1"))
    assert step(plan_json(pg), "99999999.0001")["action"] == "applied"
    for label in ("v2", "v3"):  # changed, and changed twice
        pg.write(VIEW, view_sql(label))
        plan = plan_json(pg)
        assert plan["ok"] and plan["problems"] == []
        assert step(plan, "99999999.0001")["action"] == "apply (changed)"
        assert plan["summary"]["reapply"] == 1
        text = pg.cli("plan", pg.glob())
        assert "apply (changed)" in text.stdout and "1 to apply (changed)" in text.stdout
        sql = pg.cli("plan", "--sql", pg.glob()).stdout
        run = {"v2": 2, "v3": 3}[label]
        assert f"-- database: app, user: postgres, repeatable (run {run}), one transaction\n" \
            f"BEGIN;\nCREATE OR REPLACE VIEW v AS SELECT '{label}'::text AS label;\n" in sql
        applied = pg.cli("apply", pg.glob())
        assert applied.exit_code == 0, applied.output
        assert pg.query("SELECT label FROM v", "app") == [(label,)]
    assert runs(pg) == ["v1", "v2", "v3"]
    records = repeatable_records(pg)
    assert [(run, settled) for run, _, settled in records] == [(1, True), (2, True), (3, True)]
    assert len({checksum for _, checksum, _ in records}) == 3
    assert pg.cli("apply", pg.glob()).stdout.startswith("nothing to do")
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    shown = [r for r in status["records"] if r["major"] == "99999999"]
    assert [(r["run"], r["state"]) for r in shown] == [(3, "applied")]  # its last run
    assert "applied (run 3)" in pg.cli("status").stdout


def test_repeatables_run_after_every_versioned_patch_of_their_database_in_minor_order(
        pg: Pg) -> None:
    tree(pg)
    pg.write("app.99999999.0002.postgres.grants.sql",
             "INSERT INTO runs SELECT 'grants after ' || label FROM v;\n")
    # a versioned patch written later than the repeatables still runs before them
    pg.write("app.20240301.0001.postgres.column.sql", "ALTER TABLE runs ADD note text;\n")
    pg.write(VIEW, "CREATE OR REPLACE VIEW v AS SELECT 'v1'::text AS label, note FROM runs;\n"
                   "INSERT INTO runs VALUES ('v1');\n")
    result = pg.cli("apply", "--format", "json", pg.glob())
    assert result.exit_code == 0, result.output
    order = [p["version"] for p in json.loads(result.stdout)["applied"]
             if p["database"] == "app"]
    assert order == ["00000000.0000", "20240101.0001", "20240301.0001", "99999999.0001",
                     "99999999.0002"]
    assert runs(pg) == ["v1", "grants after v1"]


def test_a_changed_repeatable_runs_alone_and_a_repeatable_is_never_out_of_order(
        pg: Pg) -> None:
    tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write(VIEW, view_sql("v2"))  # no versioned patch pending: it still runs
    result = pg.cli("apply", "--format", "json", pg.glob())
    assert result.exit_code == 0, result.output
    assert [p["action"] for p in json.loads(result.stdout)["applied"]] == ["apply (changed)"]
    # a new versioned patch is not older than the repeatable's 99999999 in any sense
    pg.write("app.20240102.0001.postgres.more.sql", "ALTER TABLE runs ADD note text;\n")
    plan = plan_json(pg)
    assert plan["ok"], plan["problems"]
    assert step(plan, "20240102.0001")["flags"] == []
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert runs(pg) == ["v1", "v2"]


def test_a_failing_repeatable_records_nothing_and_runs_once_fixed(pg: Pg) -> None:
    tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write(VIEW, view_sql("v2") + "SELECT 1 / 0;\n")
    failed = pg.cli("apply", pg.glob())
    assert failed.exit_code == 1
    assert "division by zero [SQLSTATE 22012]" in failed.stderr
    assert "Traceback" not in failed.output
    assert runs(pg) == ["v1"]
    assert [run for run, _, _ in repeatable_records(pg)] == [1]
    assert step(plan_json(pg), "99999999.0001")["action"] == "apply (changed)"
    pg.write(VIEW, view_sql("v2"))
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert runs(pg) == ["v1", "v2"]
    assert [run for run, _, _ in repeatable_records(pg)] == [1, 2]


@pytest.mark.parametrize("point", ["after-record", "after-commit"])
def test_a_crash_during_a_repeatable_neither_runs_it_twice_nor_loses_its_record(
        pg: Pg, point: str) -> None:
    tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write(VIEW, view_sql("v2"))
    crashed = pg.run("apply", pg.glob(), env={"PGPATCH_CRASH_AT": f"{point}:1"})
    assert crashed.returncode == -signal.SIGKILL
    assert [(run, settled) for run, _, settled in repeatable_records(pg)] == [(1, True),
                                                                              (2, False)]
    plan = plan_json(pg)  # plan settles nothing, it reads the transaction's fate
    assert step(plan, "99999999.0001")["action"] == (
        "applied" if point == "after-commit" else "apply (changed)")
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.output
    assert runs(pg) == ["v1", "v2"]
    assert [(run, settled) for run, _, settled in repeatable_records(pg)] == [(1, True),
                                                                              (2, True)]
    assert pg.cli("apply", pg.glob()).stdout.startswith("nothing to do")
