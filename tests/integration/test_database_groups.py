"""Database groups against a real server: ``@NAME`` patches run on every database of the
group, each recorded under its own name; a failing database stops only itself; a new
database catches up; templates and the state database never match."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.integration.conftest import STATE_PATCHES, Pg

# group expansion and hundreds of databases are the same on every major: one major only
pytestmark = pytest.mark.one_major

LEDGER = "CREATE TABLE IF NOT EXISTS ledger (patch text);\nINSERT INTO ledger VALUES ('{n}');\n"
FAIL_ON = """DO $$ BEGIN
  IF current_database() = '{db}' THEN RAISE EXCEPTION 'boom in %', current_database(); END IF;
END $$;
INSERT INTO ledger VALUES ('p2');
"""


@pytest.fixture
def project(pg: Pg, monkeypatch: pytest.MonkeyPatch) -> Path:
    pg.tree.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(pg.tree)
    (pg.tree / "pgpatch.toml").write_text(
        'patches = ["db/**/*.sql"]\n[groups.tenants]\ndatabases = ["tenant_*"]\n')
    return pg.tree


def make_databases(pg: Pg, *names: str) -> None:
    with pg.server.connect("postgres") as conn:
        conn.autocommit = True
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')


def ledger(pg: Pg, db: str) -> list[str]:
    """What the patches wrote into the database, in one query (an empty list: no ledger)."""
    try:
        ((value,),) = pg.query("SELECT string_agg(patch, ',' ORDER BY patch) FROM ledger", db)
    except psycopg.errors.UndefinedTable:
        return []
    return value.split(",") if value else []


def records(pg: Pg, db: str) -> list[tuple[str, str]]:
    return pg.query("SELECT i.major || '.' || i.minor, i.name FROM installed_patches i "
                    "JOIN databases d ON d.id = i.database_id "
                    f"WHERE d.name = '{db}' ORDER BY 1", "patches")


def all_records(pg: Pg) -> dict[str, list[tuple[str, str]]]:
    """Every database's records (version, name) in version order, in one query."""
    out: dict[str, list[tuple[str, str]]] = {}
    for db, version, name in pg.query(
            "SELECT d.name, i.major || '.' || i.minor, i.name FROM installed_patches i "
            "JOIN databases d ON d.id = i.database_id ORDER BY 1, 2", "patches"):
        out.setdefault(db, []).append((version, name))
    return out


def tenants(n: int) -> list[str]:
    return [f"tenant_{i:03d}" for i in range(1, n + 1)]


def test_a_failing_database_of_200_stops_only_itself(pg: Pg, project: Path) -> None:
    members = tenants(200)
    make_databases(pg, *members, "other")
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    pg.write("db/@tenants.20250301.0002.postgres.two.sql", FAIL_ON.format(db="tenant_100"))
    pg.write("db/@tenants.20250301.0003.postgres.three.sql", LEDGER.format(n="p3"))
    result = pg.cli("apply")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith("error: db/@tenants.20250301.0002.postgres.two.sql:")
               and "in database tenant_100 of group tenants: " in line
               and "boom in tenant_100" in line for line in lines), result.stderr
    assert lines[-2:] == [
        "error: 1 database of a group failed: tenant_100",
        "hint: each error above names its database; their later patches did not run, the "
        "other databases' did. Fix the patch and run again: only what is pending runs"]
    on_record = all_records(pg)
    for db in members:
        if db == "tenant_100":
            assert ledger(pg, db) == ["p1"]  # its 0002 rolled back, its 0003 never ran
            assert on_record[db] == [("20250301.0001", f"{db}.20250301.0001.postgres.one.sql")]
        else:  # every other database went on, each patch exactly once
            assert ledger(pg, db) == ["p1", "p2", "p3"], db
            assert on_record[db] == [
                (f"20250301.000{i}", f"{db}.20250301.000{i}.postgres.{d}.sql")
                for i, d in ((1, "one"), (2, "two"), (3, "three"))]
    assert "other" not in on_record
    assert ledger(pg, "other") == []  # not a member
    # the next run tries tenant_100 alone again: nothing runs twice anywhere
    again = pg.cli("apply")
    assert again.exit_code == 1
    assert again.stderr.splitlines()[-2] == "error: 1 database of a group failed: tenant_100"
    # the end summary: what failed and what is left of it (its 0003)
    assert again.stdout.splitlines() == [
        "stopped: nothing applied; failed: tenant_100 of group tenants; "
        "1 left pending (tenant_100: 1)"]
    assert all_records(pg) == on_record


def test_a_fixed_failure_catches_up_on_the_next_run(pg: Pg, project: Path) -> None:
    members = tenants(3)
    make_databases(pg, *members)
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    # fails on tenant_002 until the table it needs is there
    pg.write("db/@tenants.20250301.0002.postgres.two.sql",
             "INSERT INTO needed VALUES (1);\nINSERT INTO ledger VALUES ('p2');\n")
    pg.query("CREATE TABLE needed (i int)", "tenant_001")
    pg.query("CREATE TABLE needed (i int)", "tenant_003")
    first = pg.cli("apply", "--adopt")
    assert first.exit_code == 1
    assert "in database tenant_002 of group tenants" in first.stderr
    assert [ledger(pg, db) for db in members] == [["p1", "p2"], ["p1"], ["p1", "p2"]]
    pg.query("CREATE TABLE needed (i int)", "tenant_002")
    second = pg.cli("apply")
    assert second.exit_code == 0, second.stderr
    assert "applied 1 patch to 1 database" in second.stdout
    assert [ledger(pg, db) for db in members] == [["p1", "p2"]] * 3


def test_fail_fast_stops_the_whole_run(pg: Pg, project: Path) -> None:
    members = tenants(4)
    make_databases(pg, *members)
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", FAIL_ON.format(db="tenant_002")
             .replace("INSERT INTO ledger VALUES ('p2');", LEDGER.format(n="p1")))
    result = pg.cli("apply", "--fail-fast")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: db/@tenants.20250301.0001.postgres.one.sql:1: in database tenant_002 of group "
        "tenants: ")
    assert [ledger(pg, db) for db in members] == [["p1"], [], [], []]


def test_a_new_database_catches_up_on_the_next_run(pg: Pg, project: Path) -> None:
    make_databases(pg, "tenant_a", "tenant_b")
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    pg.write("db/@tenants.20250302.0001.postgres.two.sql", LEDGER.format(n="p2"))
    assert pg.cli("apply").exit_code == 0
    # a new tenant, even one holding objects of its own: the group's records on the other
    # databases show that the state database is the right one, so it is no unrecorded one
    make_databases(pg, "tenant_c")
    pg.query("CREATE TABLE customers (id int)", "tenant_c")
    result = pg.cli("apply")
    assert result.exit_code == 0, result.stderr
    assert "applied 2 patches to 1 database" in result.stdout
    assert {db: ledger(pg, db) for db in ("tenant_a", "tenant_b", "tenant_c")} == {
        db: ["p1", "p2"] for db in ("tenant_a", "tenant_b", "tenant_c")}
    assert pg.cli("apply").stdout.startswith("nothing to do")


def test_a_group_never_on_record_keeps_the_unrecorded_database_check(
        pg: Pg, project: Path) -> None:
    """No record of the group anywhere (a lost state database looks like this): a database
    with objects of its own is the unrecorded-database problem, as any other."""
    make_databases(pg, "tenant_a")
    pg.query("CREATE TABLE customers (id int)", "tenant_a")
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    result = pg.cli("apply")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: database tenant_a holds objects of its own (table "
                                    "customers) but the state database patches has no record")
    assert ledger(pg, "tenant_a") == []


def test_the_plan_shows_one_row_per_group_file_and_json_one_entry_per_database(
        pg: Pg, project: Path) -> None:
    make_databases(pg, "tenant_b", "tenant_a", "solo")
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    pg.write("db/solo.20250301.0001.postgres.own.sql", "SELECT 1;\n")
    pg.write("db/tenant_a.20250302.0001.postgres.own.sql", "SELECT 1;\n")
    table = pg.cli("plan", "--adopt")
    assert table.exit_code == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[1:]
            if line.startswith(("@", "solo", "tenant"))]
    assert rows == [
        ["solo", "20250301.0001", "postgres", "own", "db/solo.20250301.0001.postgres.own.sql",
         "apply"],
        ["@tenants", "20250301.0001", "postgres", "one",
         "db/@tenants.20250301.0001.postgres.one.sql", "apply", "2", "databases"],
        ["tenant_a", "20250302.0001", "postgres", "own",
         "db/tenant_a.20250302.0001.postgres.own.sql", "apply"]]
    data = json.loads(pg.cli("plan", "--format", "json").stdout)
    mine = [(p["database"], p["version"], p["group"]) for p in data["patches"]
            if p["database"] != "patches"]
    # name order: each database through its own and its group's patches, by version
    assert mine == [("solo", "20250301.0001", None),
                    ("tenant_a", "20250301.0001", "tenants"),
                    ("tenant_a", "20250302.0001", None),
                    ("tenant_b", "20250301.0001", "tenants")]
    assert pg.cli("apply").exit_code == 0
    assert records(pg, "tenant_a") == [
        ("20250301.0001", "tenant_a.20250301.0001.postgres.one.sql"),
        ("20250302.0001", "tenant_a.20250302.0001.postgres.own.sql")]


def test_templates_and_the_state_database_never_match(pg: Pg, project: Path) -> None:
    (project / "pgpatch.toml").write_text('patches = ["db/**/*.sql"]\n'
                                          '[groups.tenants]\ndatabases = ["*"]\n')
    make_databases(pg, "tenant_a", "tmpl")
    pg.query("ALTER DATABASE tmpl IS_TEMPLATE true")
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    try:
        result = pg.cli("apply")
        assert result.exit_code == 0, result.stderr
        touched = {r[0] for r in pg.query(
            "SELECT d.name FROM databases d JOIN installed_patches i ON i.database_id = d.id "
            "WHERE i.major = '20250301'", "patches")}
        assert touched == {"tenant_a", "postgres"}
        assert ledger(pg, "patches") == []
    finally:
        pg.query("ALTER DATABASE tmpl IS_TEMPLATE false")
        pg.query("DROP TABLE IF EXISTS ledger")


@pytest.mark.parametrize("name, text, kind, message", [
    ("db/@shops.20250301.0001.postgres.one.sql", "SELECT 1;\n", "unknown-group",
     "the group shops is not defined in the config file (defined: tenants)"),
    ("db/@tenants.00000000.0000.postgres.baseline.sql", "CREATE DATABASE x;\n",
     "group-bootstrap", "a group has no bootstrap: the databases of group tenants exist "
     "already, so a 00000000 script would never run"),
])
def test_a_group_mistake_is_a_plan_problem_and_nothing_runs(
        pg: Pg, project: Path, name: str, text: str, kind: str, message: str) -> None:
    make_databases(pg, "tenant_a")
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    pg.write(name, text)
    data = json.loads(pg.cli("plan", "--format", "json").stdout)
    assert [(p["kind"], p["path"], p["message"]) for p in data["problems"]] == [
        (kind, name, message)]
    refused = pg.cli("apply")
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[0] == f"error: {name}: {message}"
    assert pg.databases() == {"tenant_a"}  # not even the state database
    offline = pg.cli("plan", "--offline", "--format", "json")
    assert [p["kind"] for p in json.loads(offline.stdout)["problems"]] == [kind]


def test_a_version_a_database_gets_twice_is_a_duplicate(pg: Pg, project: Path) -> None:
    make_databases(pg, "tenant_a", "tenant_b")
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    pg.write("db/tenant_b.20250301.0001.postgres.mine.sql", "SELECT 1;\n")
    data = json.loads(pg.cli("plan", "--format", "json").stdout)
    assert [(p["kind"], p["message"]) for p in data["problems"]] == [
        ("duplicate", "version tenant_b 20250301.0001 is used twice: "
         "db/@tenants.20250301.0001.postgres.one.sql and "
         "db/tenant_b.20250301.0001.postgres.mine.sql")]


def test_offline_a_group_file_is_one_entry_checked_like_any(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            pg: Pg) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pgpatch.toml").write_text('[groups.tenants]\ndatabases = ["tenant_*"]\n')
    (tmp_path / "@tenants.20250301.0001.postgres.one.sql").write_text("SELEC 1;\n")
    result = pg.cli("plan", "--offline", "--format", "json", "*.sql")
    data = json.loads(result.stdout)
    assert [(p["database"], p["group"]) for p in data["patches"]
            if p["database"] != "patches"] == [("@tenants", "tenants")]
    assert [p["kind"] for p in data["problems"]] == ["syntax"]


def test_state_records_count_once_per_database(pg: Pg, project: Path) -> None:
    make_databases(pg, *tenants(3))
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    assert pg.cli("apply").exit_code == 0
    assert pg.query("SELECT count(*)::int FROM installed_patches", "patches") == [
        (STATE_PATCHES + 3,)]
