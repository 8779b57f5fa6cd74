"""--admin-user on a server where the admin role is no superuser (RDS, Cloud SQL, Azure):
CREATEDB, CREATEROLE and pg_monitor. The maintenance session, the state database's bootstrap
and its upgrades run as that role; patch files still run as the user in their names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postgresqlpatches.pg.server import LOCK_KEY
from tests.integration.conftest import PASSWORDS, STATE_PATCHES, Pg

ADMIN_PW = "admin-Pw-4c1"
# what a managed service's baseline does: its admin is no superuser, so it makes itself a
# member of the role it creates before the database can be that role's (PostgreSQL 16+: with
# SET, which GRANT gives by default)
BASELINE = """\\getenv pw PGPATCH_APP_PASSWORD
CREATE ROLE app LOGIN PASSWORD :'pw';
GRANT app TO admin;
CREATE DATABASE app OWNER app;
"""
APP_PATCH = "CREATE TABLE t (who text DEFAULT current_user);\nINSERT INTO t DEFAULT VALUES;\n"


@pytest.fixture
def managed(pg: Pg) -> Pg:
    """The server as a managed service shows it: pgpatch gets the admin role only."""
    pg.query(f"CREATE ROLE admin LOGIN CREATEDB CREATEROLE PASSWORD '{ADMIN_PW}' "
             "IN ROLE pg_monitor")
    pg.env.pop("POSTGRESQL_POSTGRES_PASSWORD")
    pg.env["POSTGRESQL_ADMIN_PASSWORD"] = ADMIN_PW
    pg.env["PGPATCH_ADMIN_USER"] = "admin"
    return pg


def _tree(pg: Pg) -> None:
    pg.write("app/app.00000000.0000.admin.baseline.sql", BASELINE)
    pg.write("app/app.20260101.0001.app.table.sql", APP_PATCH)


def test_plan_apply_status_as_an_admin_without_superuser(managed: Pg) -> None:
    pg = managed
    assert pg.query("SELECT rolsuper FROM pg_roles WHERE rolname = 'admin'") == [(False,)]
    _tree(pg)
    plan = pg.cli("plan", "--format", "json", pg.glob())
    assert plan.exit_code == 0, plan.output
    actions = [(p["database"], p["user"], p["action"]) for p in json.loads(plan.stdout)["patches"]]
    assert actions[0] == ("patches", "admin", "bootstrap")  # the state baseline runs as admin
    assert actions[-2:] == [("app", "admin", "bootstrap"), ("app", "app", "apply")]

    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    assert "is not set" not in result.stderr
    assert pg.query("SELECT who FROM t", db="app") == [("app",)]
    # the state database is patches' as with a superuser, its records say who ran what
    assert pg.query("SELECT pg_get_userbyid(datdba) FROM pg_database "
                    "WHERE datname = 'patches'") == [("patches",)]
    assert pg.query("SELECT user_name, count(*) FROM installed_patches "
                    "GROUP BY 1 ORDER BY 1", db="patches") == [
        ("admin", STATE_PATCHES + 1), ("app", 1)]

    status = pg.cli("status", "--format", "json", pg.glob())
    assert status.exit_code == 0, status.output
    again = pg.cli("apply", pg.glob())
    assert again.exit_code == 0, again.output
    assert pg.query("SELECT count(*) FROM installed_patches", db="patches") == [
        (STATE_PATCHES + 2,)]


def test_baseline_as_an_admin_without_superuser(managed: Pg, tmp_path: Path) -> None:
    pg = managed
    pg.query("CREATE ROLE crm LOGIN PASSWORD 'crm-pw-1'")
    pg.query("GRANT crm TO admin")
    pg.query("CREATE DATABASE crm OWNER crm")
    with pg.server.connect("crm", user="crm", password="crm-pw-1") as conn:
        conn.execute("CREATE TABLE ledger (n int); INSERT INTO ledger VALUES (7)")
    out = tmp_path / "out"
    result = pg.cli("baseline", "crm", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    text = (out / "crm.00000000.0000.admin.baseline.sql").read_text()
    assert "COPY public.ledger" in text
    assert pg.query("SELECT user_name FROM installed_patches WHERE path LIKE '%crm%'",
                    db="patches") == [("admin",)]


def test_the_state_bootstrap_names_the_privilege_the_admin_lacks(pg: Pg) -> None:
    """Without CREATEROLE the admin cannot make role patches: one line naming it, nothing made."""
    pg.query(f"CREATE ROLE admin LOGIN CREATEDB PASSWORD '{ADMIN_PW}'")
    _tree(pg)
    result = pg.cli("apply", "--admin-user", "admin", pg.glob(),
                    env={"POSTGRESQL_ADMIN_PASSWORD": ADMIN_PW,
                         "POSTGRESQL_POSTGRES_PASSWORD": None})
    assert result.exit_code == 1
    assert "CREATEROLE" in result.stderr, result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert "patches" not in pg.databases()
    assert PASSWORDS["PATCHES"] not in result.stderr


def test_a_database_the_admin_may_not_drop_is_left_with_the_privilege_named(managed: Pg) -> None:
    """A failed bootstrap run as app made app's database: the admin, no member of app, may not
    drop it (the owner only), so it is left and the error says why and what to grant."""
    pg = managed
    pg.query(f"CREATE ROLE app LOGIN CREATEDB PASSWORD '{PASSWORDS['APP']}'")
    pg.write("x/shop.00000000.0000.app.baseline.sql", "CREATE DATABASE shop;\nSELECT nosuch;\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert "Traceback" not in result.output + result.stderr
    assert ("cannot drop database shop: only its owner may, and the admin role admin is "
            "neither a superuser nor a member of the owner") in result.stderr, result.stderr
    assert "shop" in pg.databases()


def test_a_lock_holder_hidden_without_pg_monitor_is_named_by_its_pid(managed: Pg) -> None:
    pg = managed
    pg.query("REVOKE pg_monitor FROM admin")
    pg.write("x/app.00000000.0000.admin.baseline.sql", BASELINE)
    with pg.server.connect("postgres") as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
        pid = holder.info.backend_pid
        result = pg.cli("apply", pg.glob(), "--lock-wait", "0.2")
    assert result.exit_code == 1
    assert (f"error: another pgpatch run (server pid {pid}; when it started is hidden from "
            "admin: grant it pg_monitor to see it) still holds the lock after 0.2 s"
            ) in result.stderr, result.stderr


def test_without_createdb_the_state_bootstrap_says_so_and_leaves_nothing(pg: Pg) -> None:
    pg.query(f"CREATE ROLE admin LOGIN CREATEROLE PASSWORD '{ADMIN_PW}'")
    _tree(pg)
    result = pg.cli("apply", "--admin-user", "admin", pg.glob(),
                    env={"POSTGRESQL_ADMIN_PASSWORD": ADMIN_PW,
                         "POSTGRESQL_POSTGRES_PASSWORD": None})
    assert result.exit_code == 1
    assert "permission denied to create database" in result.stderr, result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert "patches" not in pg.databases() and "patches" not in pg.roles()


def test_baseline_of_tables_the_admin_may_not_read_names_the_privilege(managed: Pg,
                                                                      tmp_path: Path) -> None:
    pg = managed
    pg.query("CREATE ROLE crm LOGIN PASSWORD 'crm-pw-1'")
    pg.query("CREATE DATABASE crm OWNER crm")
    with pg.server.connect("crm", user="crm", password="crm-pw-1") as conn:
        conn.execute("CREATE TABLE ledger (n int)")
    out = tmp_path / "out"
    result = pg.cli("baseline", "crm", "--output-dir", str(out))
    assert result.exit_code == 1
    assert ("error: pg_dump failed: pg_dump: error: query failed: ERROR:  permission denied "
            "for table ledger") in result.stderr, result.stderr
    assert "GRANT pg_read_all_data TO admin" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_plan_reads_who_holds_a_patchs_locks_as_the_admin_role(managed: Pg) -> None:
    """The live locks a plan compares with a patch's are read as --admin-user, not as a
    postgres role a managed service does not give out."""
    pg = managed
    _tree(pg)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("app/app.20260102.0001.app.alter.sql", "ALTER TABLE t ADD COLUMN note text;\n")
    with pg.server.connect("app", autocommit=False) as holder:
        holder.execute("SET application_name = 'report'")
        holder.execute("SELECT count(*) FROM t")
        pid = holder.info.backend_pid
        result = pg.cli("plan", pg.glob(), "--format", "json")
        holder.rollback()
    assert result.exit_code == 0, result.stderr
    assert "not read" not in result.stderr, result.stderr
    alter = next(p for p in json.loads(result.stdout)["patches"] if p["description"] == "alter")
    assert [(c["pid"], c["application_name"]) for c in alter["lock_conflicts"]] == [
        (pid, "report")]
