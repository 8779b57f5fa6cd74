"""Coming to pgpatch: a baseline from a live database, and the original tool's state database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from postgresqlpatches.baseline import human_size
from tests.integration.conftest import STATE_PATCHES, Pg

ORIGINAL_STATE = """
CREATE TABLE databases (id serial PRIMARY KEY, name varchar(63) NOT NULL UNIQUE);
CREATE TABLE installed_patches (
    id serial PRIMARY KEY, major integer NOT NULL, minor integer NOT NULL,
    database_id integer NOT NULL REFERENCES databases (id), name varchar(255) NOT NULL,
    installed timestamptz NOT NULL DEFAULT now(), UNIQUE (major, minor, database_id));
CREATE VIEW patches AS SELECT d.name AS database, p.major, p.minor, p.name, p.installed
    FROM installed_patches p JOIN databases d ON d.id = p.database_id;
CREATE PROCEDURE sp_patch_installed(p_database text, p_major integer, p_minor integer,
                                    p_name text) LANGUAGE sql AS $$
    INSERT INTO databases (name) VALUES (p_database) ON CONFLICT (name) DO NOTHING;
    INSERT INTO installed_patches (major, minor, database_id, name)
    SELECT p_major, p_minor, id, p_name FROM databases WHERE name = p_database; $$;
CREATE FUNCTION fn_patch_installed(p_database text, p_major integer, p_minor integer)
    RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CALL sp_patch_installed('patches', 0, 0, 'patches.00000000.0000.postgres.baseline.sql');
CALL sp_patch_installed('app', 0, 0, 'app.00000000.0000.postgres.baseline.sql');
CALL sp_patch_installed('app', 20240101, 1, 'app.20240101.0001.app.p1.sql');
UPDATE installed_patches SET installed = '2021-06-01 12:00+00';
"""


def original_tool_server(pg: Pg) -> None:
    """A server as the original tool left it: its state database, records without checksums."""
    pg.query("CREATE ROLE patches LOGIN CREATEDB PASSWORD 'state-pw-1'")
    pg.query("CREATE DATABASE patches")  # owned by postgres, as the original left it
    pg.query(ORIGINAL_STATE, "patches")
    pg.query("CREATE ROLE app LOGIN PASSWORD 'app-pw-2'")
    pg.query("CREATE DATABASE app OWNER app")
    pg.query("CREATE TABLE ledger (name text); GRANT ALL ON ledger TO app", "app")
    pg.query("INSERT INTO ledger VALUES ('p1')", "app")


def test_original_state_database_is_upgraded_in_place(pg: Pg) -> None:
    original_tool_server(pg)
    pg.write("app.00000000.0000.postgres.baseline.sql", "CREATE DATABASE app;\n")
    pg.write("app.20240101.0001.app.p1.sql", "INSERT INTO ledger VALUES ('p1');\n")
    pg.write("app.20240102.0001.app.p2.sql", "INSERT INTO ledger VALUES ('p2');\n")
    planned = pg.cli("plan", pg.glob(), "--format", "json")
    assert planned.stderr == ""
    plan = json.loads(planned.stdout)
    assert [(p["database"], p["version"], p["action"]) for p in plan["patches"]] == [
        ("patches", "00000000.0000", "applied"), ("patches", "20261126.0001", "apply"),
        ("patches", "20261201.0001", "apply"), ("patches", "20261201.0003", "apply"),
        ("patches", "20261202.0001", "apply"),
        ("app", "00000000.0000", "applied"), ("app", "20240101.0001", "applied"),
        ("app", "20240102.0001", "apply")]
    assert plan["ok"], plan["problems"]
    assert "no-checksum" in plan["patches"][6]["flags"]

    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT name FROM ledger ORDER BY name", "app") == [("p1",), ("p2",)]
    rows = pg.query("""SELECT d.name, major, minor, installed::date::text, checksum IS NOT NULL
                       FROM installed_patches p JOIN databases d ON d.id = p.database_id
                       ORDER BY 1, 2, 3""", "patches")
    assert rows == [
        ("app", "00000000", "0000", "2021-06-01", True),
        ("app", "20240101", "0001", "2021-06-01", True),
        ("app", "20240102", "0001", rows[2][3], True),
        ("patches", "00000000", "0000", "2021-06-01", True),
        ("patches", "20261126", "0001", rows[4][3], True),
        ("patches", "20261201", "0001", rows[5][3], True),
        ("patches", "20261201", "0003", rows[6][3], True),
        ("patches", "20261202", "0001", rows[7][3], True)]
    owner = pg.query("SELECT tableowner FROM pg_tables WHERE tablename = 'installed_patches'",
                     "patches")
    assert owner == [("patches",)]
    second = pg.cli("apply", pg.glob())
    assert second.stdout.strip() == f"nothing to do: {STATE_PATCHES + 3} patches already applied"


def test_baseline_recreates_the_database_on_an_empty_server(pg: Pg) -> None:
    pg.query("CREATE ROLE shop LOGIN PASSWORD 'shop-old'")
    pg.query("CREATE ROLE shop_reader NOLOGIN")
    pg.query("CREATE DATABASE shop OWNER shop")
    pg.query("""SET ROLE shop;
                CREATE TABLE items (id int PRIMARY KEY, name text);
                INSERT INTO items VALUES (1, 'collar'), (2, 'leash');
                GRANT SELECT ON items TO shop_reader;""", "shop")
    out = pg.tree / "shop"
    result = pg.cli("baseline", "shop", "--output-dir", str(out),
                    env={"POSTGRESQL_SHOP_PASSWORD": "shop-new"})
    assert result.exit_code == 0, result.stderr
    path = out / "shop.00000000.0000.postgres.baseline.sql"
    size = human_size(path.stat().st_size)
    assert result.stdout.strip() == (
        f"wrote {path} ({size}; schema and the rows of every table) and recorded it as applied")
    text = path.read_text()
    assert "shop-old" not in text and "shop-new" not in text and "SCRAM" not in text
    assert "\\restrict" not in text
    assert "\\getenv pwd_shop PGPATCH_SHOP_PASSWORD" in text
    plan = json.loads(pg.cli("plan", str(out / "*.sql"), "--format", "json").stdout)
    assert [p["action"] for p in plan["patches"] if p["database"] == "shop"] == ["applied"]
    again = pg.cli("baseline", "shop", "--output-dir", str(out))
    assert again.exit_code == 1 and "exists already" in again.stderr

    for stmt in ["DROP DATABASE shop", "DROP DATABASE patches", "DROP ROLE shop",
                 "DROP ROLE shop_reader", "DROP ROLE patches"]:
        pg.query(stmt)
    rebuilt = pg.cli("apply", str(out / "*.sql"), env={"POSTGRESQL_SHOP_PASSWORD": "shop-new"})
    assert rebuilt.exit_code == 0, rebuilt.stderr
    assert pg.query("SELECT name FROM items ORDER BY id", "shop") == [("collar",), ("leash",)]
    with pg.server.connect("shop", user="shop", password="shop-new") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("shop",)
    assert pg.query("SELECT has_table_privilege('shop_reader', 'items', 'SELECT')", "shop") == [
        (True,)]


def shop_with_personal_data(pg: Pg) -> None:
    """Reference rows worth keeping, customers' rows that do not belong in a repository."""
    pg.query("CREATE ROLE shop LOGIN PASSWORD 'shop-old'")
    pg.query("CREATE DATABASE shop OWNER shop")
    pg.query("""SET ROLE shop;
                CREATE TABLE countries (id serial PRIMARY KEY, name text);
                INSERT INTO countries (name) VALUES ('Sweden'), ('Norway');
                CREATE TABLE customers (id serial PRIMARY KEY, email text);
                INSERT INTO customers (email) VALUES ('astrid@example.org');
                CREATE SCHEMA ref;
                CREATE TABLE ref."Tax Rates" (rate numeric);
                INSERT INTO ref."Tax Rates" VALUES (0.25);
                CREATE MATERIALIZED VIEW customer_count AS SELECT count(*) AS n FROM customers;
                SELECT lo_from_bytea(0, 'scan of a passport');""", "shop")


def rebuild_shop(pg: Pg, out: Path) -> None:
    """Drop what the baseline came from and build it again from the file alone."""
    for stmt in ["DROP DATABASE shop", "DROP DATABASE patches", "DROP ROLE shop",
                 "DROP ROLE patches"]:
        pg.query(stmt)
    rebuilt = pg.cli("apply", str(out / "*.sql"), env={"POSTGRESQL_SHOP_PASSWORD": "shop-new"})
    assert rebuilt.exit_code == 0, rebuilt.stderr


def test_baseline_schema_only_holds_no_rows(pg: Pg) -> None:
    shop_with_personal_data(pg)
    out = pg.tree / "shop"
    result = pg.cli("baseline", "shop", "--output-dir", str(out), "--schema-only",
                    env={"POSTGRESQL_SHOP_PASSWORD": "shop-new"})
    assert result.exit_code == 0, result.stderr
    path = out / "shop.00000000.0000.postgres.baseline.sql"
    size = human_size(path.stat().st_size)
    assert result.stdout.strip() == (
        f"wrote {path} ({size}; schema only, no rows) and recorded it as applied")
    text = path.read_text()
    for row in ["Sweden", "astrid@example.org", "0.25", "passport", "setval", "COPY "]:
        assert row not in text, row

    rebuild_shop(pg, out)
    assert pg.query("SELECT (SELECT count(*) FROM countries), (SELECT count(*) FROM customers),"
                    " (SELECT count(*) FROM ref.\"Tax Rates\"),"
                    " (SELECT count(*) FROM pg_largeobject_metadata)", "shop") == [(0, 0, 0, 0)]
    assert pg.query("INSERT INTO countries (name) VALUES ('Finland') RETURNING id", "shop") == [
        (1,)]


def test_baseline_data_for_keeps_the_rows_of_the_chosen_tables_only(pg: Pg) -> None:
    shop_with_personal_data(pg)
    out = pg.tree / "shop"
    result = pg.cli("baseline", "shop", "--output-dir", str(out), "--data-for", "countries",
                    "--data-for", 'ref."Tax Rates"', env={"POSTGRESQL_SHOP_PASSWORD": "shop-new"})
    assert result.exit_code == 0, result.stderr
    path = out / "shop.00000000.0000.postgres.baseline.sql"
    size = human_size(path.stat().st_size)
    assert result.stdout.strip() == (
        f'wrote {path} ({size}; schema and the rows of public.countries, ref."Tax Rates") '
        "and recorded it as applied")
    text = path.read_text()
    assert "Sweden" in text and "0.25" in text
    for row in ["astrid@example.org", "passport", "customers_id_seq', 1"]:
        assert row not in text, row

    rebuild_shop(pg, out)
    assert pg.query("SELECT name FROM countries ORDER BY id", "shop") == [("Sweden",), ("Norway",)]
    assert pg.query("SELECT rate::text FROM ref.\"Tax Rates\"", "shop") == [("0.25",)]
    assert pg.query("SELECT count(*) FROM customers", "shop") == [(0,)]
    assert pg.query("SELECT n FROM customer_count", "shop") == [(0,)]  # refreshed from what is
    assert pg.query("SELECT count(*) FROM pg_largeobject_metadata", "shop") == [(0,)]
    # the kept table's sequence goes on from its rows; the emptied one starts again
    assert pg.query("SELECT nextval('countries_id_seq'), nextval('customers_id_seq')",
                    "shop") == [(3, 1)]


def test_baseline_data_for_a_pattern_matching_nothing_writes_nothing(pg: Pg) -> None:
    shop_with_personal_data(pg)
    out = pg.tree / "shop"
    result = pg.cli("baseline", "shop", "--output-dir", str(out), "--data-for", "countries",
                    "--data-for", "nosuch*")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: baseline: --data-for nosuch* matches no table of shop")
    assert "Traceback" not in result.stderr
    assert not out.exists() or not list(out.iterdir())
    assert "patches" not in pg.databases()  # nothing recorded either
    both = pg.cli("baseline", "shop", "--output-dir", str(out), "--schema-only",
                  "--data-for", "countries")
    assert both.exit_code == 2 and "--schema-only and --data-for exclude each other" in both.stderr


def test_baseline_of_a_missing_database_is_one_line(pg: Pg) -> None:
    result = pg.cli("baseline", "nosuch", "--output-dir", str(pg.tree))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("error: database nosuch does not exist")
    assert not pg.tree.exists() or not list(pg.tree.iterdir())


def test_demo_runs_the_example_on_its_own_server() -> None:
    result = subprocess.run([sys.executable, "-m", "postgresqlpatches", "demo"],
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"3 to bootstrap, {STATE_PATCHES} to apply, 0 applied, 0 skipped, 0 problems" in out
    assert f"applied {STATE_PATCHES + 3} patches to 2 databases" in out
    assert f"nothing to do: {STATE_PATCHES + 3} patches already applied" in out
    assert "Astrid | 2021 | 1200.00" in out
    assert "throwaway server stopped and removed" in out
    assert "Traceback" not in result.stderr


def test_a_baseline_names_the_password_variables_of_its_prefix(pg: Pg) -> None:
    shop_with_personal_data(pg)
    out = pg.tree / "shop"
    env = {k.replace("POSTGRESQL_", "MYAPP_", 1): v for k, v in pg.env.items()
           if k.startswith("POSTGRESQL_")}
    result = pg.cli("baseline", "shop", "--output-dir", str(out), "--schema-only",
                    "-p", "MYAPP", env={**env, "MYAPP_SHOP_PASSWORD": "shop-new"})
    assert result.exit_code == 0, result.stderr
    text = (out / "shop.00000000.0000.postgres.baseline.sql").read_text()
    assert "MYAPP_<ROLE>_PASSWORD" in text and "set MYAPP_SHOP_PASSWORD" in text
    assert "POSTGRESQL_" not in text
