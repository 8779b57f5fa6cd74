"""The CI gate end to end: offline and online plans of example trees, exit codes and JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from postgresqlpatches.cli import main
from tests.integration.conftest import STATE_PATCHES, Pg

# the gate's exit codes and findings are pgpatch's, the same on every major: on one major only
# (tests/conftest.py)
pytestmark = pytest.mark.one_major


ROOT = Path(__file__).resolve().parents[2]
CLEAN = ROOT / "examples" / "ci" / "clean"
PROBLEMS = ROOT / "examples" / "ci" / "problems"
SCHEMA = json.loads((ROOT / "docs" / "plan.schema.json").read_text(encoding="utf-8"))
SHOP = {"POSTGRESQL_SHOP_PASSWORD": "shop-pw-5"}


def offline(*args: str) -> Any:
    """No server in reach: libpq variables point nowhere, and offline must not care."""
    return CliRunner().invoke(main, ["plan", "--offline", *args], catch_exceptions=False,
                              env={"PGHOST": "127.0.0.1", "PGPORT": "1"})


def valid_json(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    return data


def shop(data: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return [(p["version"], p["action"], p["flags"]) for p in data["patches"]
            if p["database"] == "shop"]


def problems(data: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    return [(p["kind"], Path(p["path"]).name if p["path"] else "", p["line"])
            for p in data["problems"]]


# -- offline: no server at all -----------------------------------------------------------------

def test_offline_gate_on_a_clean_tree_exits_0_or_3_with_exit_code() -> None:
    glob = str(CLEAN / "*.sql")
    assert offline(glob).exit_code == 0
    result = offline(glob, "--exit-code", "--format", "json")
    assert result.exit_code == 3
    data = valid_json(result.stdout)
    assert (data["ok"], data["offline"], data["problems"], data["findings"]) == (
        True, True, [], [])
    assert shop(data) == [
        ("00000000.0000", "bootstrap", ["psql"]), ("20240301.0001", "apply", []),
        ("20240302.0001", "apply", []), ("20240303.0001", "apply", []),
        ("20240304.0001", "apply", []), ("20240305.0001", "apply", ["non-transactional"])]


def test_offline_gate_on_a_tree_with_problems_exits_1_and_names_file_and_line() -> None:
    result = offline(str(PROBLEMS / "*.sql"), "--format", "json", "--exit-code")
    assert result.exit_code == 1
    data = valid_json(result.stdout)
    assert problems(data) == [
        ("meta-command", "shop.20240303.0001.shop.psql_variable.sql", 2),
        ("transaction-control", "shop.20240304.0001.shop.own_commit.sql", 3)]
    assert [(Path(f["path"]).name, f["line"], f["rule"], f["lock"]) for f in data["findings"]] == [
        ("shop.20240302.0001.shop.index_customer_name.sql", 2, "create-index-non-concurrently",
         "SHARE (writes wait; reads go on)")]


def test_offline_table_names_each_problem_and_finding_and_ends_with_the_summary() -> None:
    result = offline(str(PROBLEMS / "*.sql"))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    index = str(PROBLEMS / "shop.20240302.0001.shop.index_customer_name.sql")
    assert lines[-10:] == [
        f"warning: {index}:2: CREATE INDEX without CONCURRENTLY [create-index-non-concurrently]",
        "  statement: CREATE INDEX customers_name ON customers (name)",
        "  lock: SHARE (writes wait; reads go on)",
        "  safer: CREATE INDEX CONCURRENTLY, in a patch of its own (pgpatch runs it outside a "
        "transaction). If it fails with an error, pgpatch drops the INVALID index it left; fix the "
        "cause and run again.",
        "  silence: -- pgpatch: allow create-index-non-concurrently",
        f"problem: {PROBLEMS / 'shop.20240303.0001.shop.psql_variable.sql'}:2: psql "
        "meta-command \\set outside a 0000 baseline [meta-command]",
        "  hint: only a database's 00000000.0000 baseline runs through psql; write plain SQL here",
        f"problem: {PROBLEMS / 'shop.20240304.0001.shop.own_commit.sql'}:3: transaction control "
        "(COMMIT) inside a patch [transaction-control]",
        "  hint: pgpatch runs each patch in its own transaction; remove it",
        f"2 to bootstrap, {STATE_PATCHES + 3} to apply, 0 applied, 0 skipped, 2 problems, "
        "1 lint finding",
    ]


def lint_tree(folder: Path) -> None:
    """The clean tree's first two files and a plain CREATE INDEX: lint findings, no problems."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ["shop.00000000.0000.postgres.baseline.sql", "shop.20240301.0001.shop.orders.sql"]:
        shutil.copy(CLEAN / name, folder)
    shutil.copy(PROBLEMS / "shop.20240302.0001.shop.index_customer_name.sql", folder)


def test_offline_lint_error_turns_a_finding_into_a_problem(tmp_path: Path) -> None:
    lint_tree(tmp_path)
    glob = str(tmp_path / "*.sql")
    assert offline(glob).exit_code == 0
    assert offline(glob, "--lint", "off", "--format", "json").stdout.count('"rule"') == 0
    result = offline(glob, "--lint", "error", "--format", "json")
    assert result.exit_code == 1
    assert problems(valid_json(result.stdout)) == [
        ("lint", "shop.20240302.0001.shop.index_customer_name.sql", 2)]


def test_offline_takes_a_database_without_baseline_as_existing(tmp_path: Path) -> None:
    shutil.copy(CLEAN / "shop.20240301.0001.shop.orders.sql", tmp_path)
    result = offline(str(tmp_path / "*.sql"), "--format", "json")
    assert result.exit_code == 0
    assert shop(valid_json(result.stdout)) == [("20240301.0001", "apply", [])]


def test_offline_gate_runs_as_a_process_with_no_server_and_no_traceback(pg: Pg) -> None:
    result = pg.run("plan", "--offline", str(PROBLEMS / "*.sql"), "--port", "1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "\x1b[" not in result.stdout
    assert result.stdout.splitlines()[-1] == (
        f"2 to bootstrap, {STATE_PATCHES + 3} to apply, 0 applied, 0 skipped, 2 problems, "
        "1 lint finding")


# -- online: the staging gate ------------------------------------------------------------------

def test_online_gate_pending_then_nothing_to_do(pg: Pg) -> None:
    glob = str(CLEAN / "*.sql")
    before = pg.cli("plan", glob, "--exit-code", "--format", "json", env=SHOP)
    assert before.exit_code == 3, before.stderr
    data = valid_json(before.stdout)
    assert data["offline"] is False and data["summary"]["apply"] == STATE_PATCHES + 4
    assert pg.databases() == set()  # plan is read-only
    applied = pg.cli("apply", glob, env=SHOP)
    assert applied.exit_code == 0, applied.stderr
    after = pg.cli("plan", glob, "--exit-code", "--format", "json", env=SHOP)
    assert after.exit_code == 0, after.stderr
    data = valid_json(after.stdout)
    assert {p["action"] for p in data["patches"]} == {"applied"}
    assert data["summary"] == {"bootstrap": 0, "apply": 0, "reapply": 0,
                               "applied": STATE_PATCHES + 6, "skip": 0, "problems": 0,
                               "findings": 0}
    assert pg.cli("plan", glob, env=SHOP).exit_code == 0


def test_online_gate_on_the_problem_tree_exits_1_and_runs_nothing(pg: Pg) -> None:
    glob = str(PROBLEMS / "*.sql")
    result = pg.cli("plan", glob, "--format", "json", "--exit-code", env=SHOP)
    assert result.exit_code == 1
    data = valid_json(result.stdout)
    assert [k for k, _, _ in problems(data)] == ["meta-command", "transaction-control"]
    assert [f["rule"] for f in data["findings"]] == ["create-index-non-concurrently"]
    refused = pg.cli("apply", glob, env=SHOP)
    assert refused.exit_code == 1
    assert pg.databases() == set()


def test_online_gate_catches_an_edited_applied_patch_and_a_late_one(pg: Pg) -> None:
    tree = pg.tree
    shutil.copytree(CLEAN, tree)
    glob = str(tree / "*.sql")
    assert pg.cli("apply", glob, env=SHOP).exit_code == 0
    orders = tree / "shop.20240301.0001.shop.orders.sql"
    orders.write_text(orders.read_text() + "SELECT 'edited after it ran';\n")
    (tree / "shop.20240302.0002.shop.late.sql").write_text("SELECT 1;\n")
    result = pg.cli("plan", glob, "--format", "json", env=SHOP)
    assert result.exit_code == 1
    data = valid_json(result.stdout)
    assert problems(data) == [("changed", orders.name, None),
                              ("out-of-order", "shop.20240302.0002.shop.late.sql", None)]
    flags = {p["version"]: p["flags"] for p in data["patches"] if p["database"] == "shop"}
    assert flags["20240301.0001"] == ["changed"] and flags["20240302.0002"] == ["out-of-order"]


def test_apply_warns_on_lint_by_default_and_refuses_with_lint_error(pg: Pg) -> None:
    lint_tree(pg.tree)
    glob = str(pg.tree / "*.sql")
    refused = pg.cli("apply", glob, "--lint", "error", env=SHOP)
    assert refused.exit_code == 1
    index = pg.tree / "shop.20240302.0001.shop.index_customer_name.sql"
    assert refused.stderr.splitlines()[0] == (
        f"error: {index}:2: create-index-non-concurrently: CREATE INDEX without CONCURRENTLY "
        "(takes SHARE (writes wait; reads go on))")
    assert pg.databases() == set()
    warned = pg.cli("apply", glob, env=SHOP)
    assert warned.exit_code == 0, warned.stderr
    assert (f"warning: {index}:2: CREATE INDEX without CONCURRENTLY "
            "[create-index-non-concurrently]") in warned.stderr
    assert pg.query("SELECT to_regclass('customers_name') IS NOT NULL", "shop") == [(True,)]
