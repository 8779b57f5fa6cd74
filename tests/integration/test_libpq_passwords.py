"""libpq's own password sources, per user: ``{PREFIX}{USER}_PASSWORD`` first, then the service
file of PGSERVICE, PGPASSWORD (the admin role only), the password file; else the user name with
its warning. psql (bootstraps) and pg_dump (``pgpatch baseline``) get the same passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import PASSWORDS, Pg

# which password libpq's files give is the client's business, the same on every major: on one
# major only (tests/conftest.py)
pytestmark = pytest.mark.one_major


BASELINE = """\\getenv pw PGPATCH_APP_PASSWORD
CREATE ROLE app LOGIN PASSWORD :'pw';
CREATE DATABASE app OWNER app;
"""
APP_PATCH = "CREATE TABLE t (who text DEFAULT current_user);\nINSERT INTO t DEFAULT VALUES;\n"
NO_VARIABLES = {"POSTGRESQL_POSTGRES_PASSWORD": None, "POSTGRESQL_APP_PASSWORD": None,
                "PGPASSWORD": None}


def _tree(pg: Pg) -> None:
    pg.write("app/app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app/app.20260101.0001.app.table.sql", APP_PATCH)


def _passfile(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "pgpass"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def _logs_in(pg: Pg, user: str, password: str, db: str = "app") -> bool:
    with pg.server.connect(db, user=user, password=password) as conn:
        return conn.execute("SELECT current_user").fetchone() == (user,)


def test_pgpassword_is_the_admin_roles_only(pg: Pg) -> None:
    """PGPASSWORD logs the admin role in; app, without a variable, is not sent it: it gets its
    name (the original tool's rule, with its warning), in psql's CREATE ROLE and at login."""
    _tree(pg)
    result = pg.cli("apply", pg.glob(), env={**NO_VARIABLES, "PGPASSWORD": pg.server.password})
    assert result.exit_code == 0, result.output
    assert ("warning: POSTGRESQL_APP_PASSWORD is not set: role app gets its name as password "
            "(app.00000000.0000.postgres.baseline.sql creates it)") in result.stderr
    assert "POSTGRESQL_POSTGRES_PASSWORD is not set" not in result.stderr
    assert pg.query("SELECT who FROM t", db="app") == [("app",)]
    assert _logs_in(pg, "app", "app")


def test_the_password_file_matched_by_host_port_database_and_user(pg: Pg,
                                                                  tmp_path: Path) -> None:
    """The first line that matches wins; '*' matches anything, '\\:' is a colon. The state
    database's bootstrap (psql as postgres), the role app made by the baseline (its verifier)
    and app's own login all use the file; then pg_dump (`pgpatch baseline`) does too."""
    port = pg.env["PGPORT"]
    passfile = _passfile(tmp_path, "\n".join([
        "# pgpatch's test",
        f"otherhost:*:*:postgres:wrong-host-{port}",
        "127.0.0.1:1:*:postgres:wrong-port",
        f"127.0.0.1:{port}:*:postgres:{pg.server.password}",
        f"127.0.0.1:{port}:other:app:wrong-database",
        f"*:{port}:app:app:app\\:from-file",
        "*:*:*:app:too-late", ""]))
    _tree(pg)
    env = {**NO_VARIABLES, "PGPASSFILE": passfile}
    result = pg.cli("apply", pg.glob(), env=env)
    assert result.exit_code == 0, result.output
    assert "is not set" not in result.stderr
    assert pg.query("SELECT who FROM t", db="app") == [("app",)]
    assert _logs_in(pg, "app", "app:from-file")

    pg.query("CREATE DATABASE crm")
    pg.query("CREATE TABLE ledger (n int)", db="crm")
    out = tmp_path / "out"
    result = pg.cli("baseline", "crm", "--output-dir", str(out), env=env)
    assert result.exit_code == 0, result.output
    assert (out / "crm.00000000.0000.postgres.baseline.sql").is_file()
    assert pg.server.password not in result.output + result.stderr


def test_a_variable_comes_before_the_password_file_and_pgpassword(pg: Pg,
                                                                  tmp_path: Path) -> None:
    passfile = _passfile(tmp_path, "*:*:*:*:wrong-from-file\n")
    result = pg.cli("status", env={"PGPASSFILE": passfile, "PGPASSWORD": "wrong-from-env"})
    assert result.exit_code == 0, result.output


def test_a_wrong_password_from_the_file_is_named_and_not_shown(pg: Pg, tmp_path: Path) -> None:
    passfile = _passfile(tmp_path, "\n*:*:*:postgres:Wrong-Secret-9\n")
    result = pg.cli("status", env={**NO_VARIABLES, "PGPASSFILE": passfile})
    assert result.exit_code == 1
    assert f"hint: the password came from the password file {passfile} (line 2)" in (
        result.stderr)
    assert "Wrong-Secret-9" not in result.output + result.stderr


def test_a_password_file_others_may_read_is_ignored_as_libpq_does(pg: Pg,
                                                                  tmp_path: Path) -> None:
    passfile = _passfile(tmp_path, f"*:*:*:postgres:{pg.server.password}\n", mode=0o644)
    result = pg.cli("status", env={**NO_VARIABLES, "PGPASSFILE": passfile})
    assert result.exit_code == 1
    assert (f"warning: password file {passfile} has group or world access; permissions "
            "should be u=rw (0600) or less: ignored") in result.stderr
    assert "POSTGRESQL_POSTGRES_PASSWORD is not set" in result.stderr


def test_the_service_file_of_pgservice(pg: Pg, tmp_path: Path) -> None:
    """Host, port and the admin's password from the service (no PGHOST/PGPORT), in a real
    process; psql children get the same server and the right password each; app's own
    variable is used for app, never the service's password."""
    services = tmp_path / "services.conf"
    services.write_text(f"[other]\npassword=not-this-one\n\n[pgpatch_test]\n"
                        f"host={pg.env['PGHOST']}\nport={pg.env['PGPORT']}\n"
                        f"user=postgres\npassword={pg.server.password}\n")
    _tree(pg)
    result = pg.run("apply", pg.glob(), env={
        **NO_VARIABLES, "PGHOST": None, "PGPORT": None, "PGSERVICEFILE": str(services),
        "PGSERVICE": "pgpatch_test", "POSTGRESQL_APP_PASSWORD": PASSWORDS["APP"]})
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr
    assert pg.query("SELECT who FROM t", db="app") == [("app",)]
    assert _logs_in(pg, "app", PASSWORDS["APP"])
