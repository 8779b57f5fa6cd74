"""pgpatch rehearse: the pending patches on a throwaway copy; the live server is only read.

docs/rehearse.md and the rehearse section of docs/safety.md promise what these tests check.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.integration.conftest import Pg

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SCHEMA = json.loads((ROOT / "docs" / "rehearse.schema.json").read_text(encoding="utf-8"))

BASELINE = """\\getenv app_password PGPATCH_APP_PASSWORD
CREATE ROLE app LOGIN PASSWORD :'app_password';
CREATE ROLE reporting NOLOGIN;
CREATE DATABASE app OWNER app;
\\connect app
SET ROLE app;
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, CASE WHEN g % 2 = 0 THEN 'x' END FROM generate_series(1, 20) g;
"""
ADD_COLUMN = ("-- a volatile default: every row gets its own value, so the table is rewritten\n"
              "ALTER TABLE t ADD COLUMN seen timestamptz DEFAULT clock_timestamp();\n")
CONCURRENT_INDEX = "CREATE INDEX CONCURRENTLY t_v ON t (v);\n"
NOT_NULL = ("SELECT 1;\nGRANT SELECT ON t TO reporting;\n"
            "ALTER TABLE t ALTER COLUMN v SET NOT NULL;\n")


def _live_tree(pg: Pg) -> None:
    """app applied on the live server; three pending patches, the last needing the rows."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    pg.write("app.20240101.0001.app.seen.sql", ADD_COLUMN)
    pg.write("app.20240102.0001.app.index_v.sql", CONCURRENT_INDEX)
    pg.write("app.20240103.0001.app.v_not_null.sql", NOT_NULL)


def _live_state(pg: Pg) -> dict[str, Any]:
    """What must not change: databases, roles with their passwords, the records, app's
    relations and their files, and the next transaction id (any write would take one)."""
    return {
        "databases": pg.query("SELECT oid, datname FROM pg_database ORDER BY 1"),
        "roles": pg.query("SELECT rolname, rolpassword, rolcanlogin FROM pg_authid ORDER BY 1"),
        "records": pg.query("SELECT * FROM installed_patches ORDER BY id", db="patches"),
        "relations": pg.query("SELECT relname, relfilenode FROM pg_class WHERE oid >= 16384 "
                              "ORDER BY 1", db="app"),
        "columns": pg.query("SELECT attname, attnotnull FROM pg_attribute "
                            "WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY 1", db="app"),
        "next_xid": pg.query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"),
    }


@pytest.fixture
def no_autovacuum(pg: Pg) -> Iterator[None]:
    """Autovacuum off while a test watches the next transaction id: its ANALYZE of the tables
    the live tree just filled takes transaction ids of its own (seen under load), which are
    not rehearse's writes."""
    pg.query("ALTER SYSTEM SET autovacuum = off")
    pg.query("SELECT pg_reload_conf()")
    try:
        deadline = time.monotonic() + 30
        while pg.query("SELECT 1 FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"):
            assert time.monotonic() < deadline, "an autovacuum worker did not end within 30 s"
            time.sleep(0.05)
        yield
    finally:
        pg.query("ALTER SYSTEM RESET autovacuum")
        pg.query("SELECT pg_reload_conf()")


def _rehearse_json(pg: Pg, *args: str) -> tuple[int, dict[str, Any]]:
    """The document, valid against docs/rehearse.schema.json."""
    result = pg.cli("rehearse", pg.glob(), "--format", "json", *args)
    doc = json.loads(result.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    return result.exit_code, doc


def _by_file(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(p["path"]).name: p for p in doc["patches"]}


def _locks(patch: dict[str, Any]) -> set[tuple[str, str]]:
    return {(lock["relation"], lock["mode"]) for s in patch["statements"] for lock in s["locks"]}


def test_rehearse_shows_each_statements_locks_and_rewrites_and_the_live_server_stays_as_it_was(
        pg: Pg, no_autovacuum: None) -> None:
    _live_tree(pg)
    before = _live_state(pg)
    code, doc = _rehearse_json(pg)
    assert code == 0, doc
    assert doc["ok"] and not doc["offline"] and doc["copied"] == [{"database": "app",
                                                                   "rows": False}]
    patches = _by_file(doc)
    assert list(patches) == ["app.20240101.0001.app.seen.sql", "app.20240102.0001.app.index_v.sql",
                             "app.20240103.0001.app.v_not_null.sql"]  # the applied do not rerun
    seen = patches["app.20240101.0001.app.seen.sql"]
    assert seen["outcome"] == "ran" and seen["seconds"] > 0
    [statement] = seen["statements"]
    assert statement["line"] == 2
    assert statement["locks"] == [{"relation": "public.t", "mode": "ACCESS EXCLUSIVE",
                                   "blocks_reads": True, "blocks_writes": True}]
    assert statement["rewritten"] == ["public.t"]
    index = patches["app.20240102.0001.app.index_v.sql"]
    assert _locks(index) == {("public.t", "SHARE UPDATE EXCLUSIVE")}
    assert index["statements"][0]["locks"][0]["blocks_writes"] is False
    assert index["statements"][0]["rewritten"] == []
    not_null = patches["app.20240103.0001.app.v_not_null.sql"]
    # without --data the copy has no rows: SET NOT NULL runs (with rows it fails, below)
    assert not_null["outcome"] == "ran"
    assert [s["line"] for s in not_null["statements"]] == [1, 2, 3]
    select, grant, alter = not_null["statements"]
    assert select["locks"] == []
    # (PostgreSQL 18's GRANT takes ACCESS SHARE on the table; 15's takes none)
    assert {lock["mode"] for lock in grant["locks"]} <= {"ACCESS SHARE"}
    assert [(lock["relation"], lock["mode"]) for lock in alter["locks"]] == [
        ("public.t", "ACCESS EXCLUSIVE")]
    assert _live_state(pg) == before


def test_rehearse_with_data_fails_where_the_rows_say_so_with_file_and_line(
        pg: Pg, no_autovacuum: None) -> None:
    _live_tree(pg)
    before = _live_state(pg)
    result = pg.cli("rehearse", pg.glob(), "--data")
    assert result.exit_code == 1, result.output
    path = pg.tree / "app.20240103.0001.app.v_not_null.sql"
    assert (f'{path}:3: column "v" of relation "t" contains null values [SQLSTATE 23502]'
            in result.stdout)
    assert "app (schema and rows)" in result.stdout
    assert "rehearsal failed: 2 ran, 1 failed" in result.stdout
    assert "Traceback" not in result.output
    assert _live_state(pg) == before
    # a database above the limit is copied as its schema: the rows are not there to fail on
    code, doc = _rehearse_json(pg, "--data", "--data-limit", "0")
    assert code == 0 and doc["too_large"] == ["app"] and doc["copied"][0]["rows"] is False


def test_every_live_session_of_rehearse_is_read_only(pg: Pg,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from postgresqlpatches.pg import dump

    _live_tree(pg)
    live_port = str(pg.server.port)
    sessions: list[str | None] = []
    real_connect = psycopg.connect  # the one every pgpatch session is opened with

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = real_connect(*args, **kwargs)
        if conn.info.port == int(live_port):  # the copy's sessions are not the live server's
            sessions.append(conn.info.parameter_status("default_transaction_read_only"))
        return conn

    dumps: list[str] = []
    real_popen = subprocess.Popen

    def popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        # (subprocess.run comes here too) a dump rehearse runs reads the live server only
        if Path(args[0]).name == "pg_dump" and "--version" not in args:
            dumps.append(kwargs["env"].get("PGOPTIONS", ""))
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(psycopg, "connect", connect)
    monkeypatch.setattr(dump.subprocess, "Popen", popen)
    result = pg.cli("rehearse", pg.glob())
    assert result.exit_code == 0, result.output
    assert len(sessions) >= 3 and set(sessions) == {"on"}
    assert dumps == ["-c default_transaction_read_only=on"] * 2  # app, then the state database


def test_a_database_the_live_server_lacks_is_built_from_its_bootstraps(pg: Pg) -> None:
    _live_tree(pg)
    pg.write("zoo.00000000.0000.postgres.baseline.sql", "CREATE DATABASE zoo;\n")
    pg.write("zoo.00000000.0001.postgres.cages.sql", "CREATE TABLE cage (id int);\n")
    pg.write("zoo.20240101.0001.postgres.cage_name.sql",
             "ALTER TABLE cage ADD COLUMN name text;\n")
    code, doc = _rehearse_json(pg)
    assert code == 0, doc
    patches = _by_file(doc)
    assert [patches[f]["action"] for f in patches if f.startswith("zoo.")] == [
        "bootstrap", "bootstrap", "apply"]
    assert all(p["outcome"] == "ran" for p in doc["patches"])
    assert _locks(patches["zoo.20240101.0001.postgres.cage_name.sql"]) == {
        ("public.cage", "ACCESS EXCLUSIVE")}
    assert [d["database"] for d in doc["copied"]] == ["app"]
    assert "zoo" not in pg.databases()


# pgpatch's own handling (signals, usage, reporting), the same on every major: on one major only
# (tests/conftest.py); building and running a copy of each major is tested on each above
@pytest.mark.one_major
def test_a_plan_with_problems_is_not_rehearsed(pg: Pg) -> None:
    _live_tree(pg)
    pg.write("app.20240104.0001.app.meta.sql", "\\set x 1\n")
    result = pg.cli("rehearse", pg.glob())
    assert result.exit_code == 1
    assert "[meta-command]" in result.stdout
    assert "not rehearsed: the plan has 1 problem" in result.stdout


# pgpatch's own handling (signals, usage, reporting), the same on every major: on one major only
# (tests/conftest.py); building and running a copy of each major is tested on each above
@pytest.mark.one_major
def test_nothing_pending_is_nothing_to_rehearse(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    result = pg.cli("rehearse", pg.glob())
    assert result.exit_code == 0, result.output
    assert "nothing to rehearse" in result.stdout


# a copy of each major is built from hundbidrag's bootstraps; a second example is the same
# thing again: on one major only (tests/conftest.py)
@pytest.mark.parametrize("example", [
    "hundbidrag", pytest.param("ci/clean", marks=pytest.mark.one_major)])
def test_rehearse_offline_builds_the_examples(pg: Pg, example: str) -> None:
    result = pg.cli("rehearse", "--offline", str(EXAMPLES / example / "*.sql"),
                    "--major", str(pg.server.major))
    assert result.exit_code == 0, result.output
    assert f"rehearsal on a throwaway PostgreSQL {pg.server.major} server" in result.stdout
    assert "rehearsal passed" in result.stdout
    assert "warning:" not in result.output  # the copy's passwords are its own


# pgpatch's own handling (signals, usage, reporting), the same on every major: on one major only
# (tests/conftest.py); building and running a copy of each major is tested on each above
@pytest.mark.one_major
@pytest.mark.parametrize("example, failing", [
    ("error_patch", 'vet.20210402.0001.postgres.cost_per_dog.sql:4: division by zero '
                    '[SQLSTATE 22012]'),
    ("error_bootstrap", 'kennel.00000000.0000.postgres.baseline.sql:8: relation "breed" '
                        'does not exist [SQLSTATE 42P01]'),
])
def test_rehearse_offline_of_an_error_example_fails_with_its_file_and_line(
        pg: Pg, example: str, failing: str) -> None:
    result = pg.cli("rehearse", "--offline", str(EXAMPLES / example / "*.sql"),
                    "--major", str(pg.server.major))
    assert result.exit_code == 1, result.output
    assert f"examples/{example}/{failing}" in result.stdout
    assert "Traceback" not in result.output


# pgpatch's own handling (signals, usage, reporting), the same on every major: on one major only
# (tests/conftest.py); building and running a copy of each major is tested on each above
@pytest.mark.one_major
def test_offline_without_binaries_of_the_major_names_the_major(pg: Pg) -> None:
    result = pg.cli("rehearse", "--offline", str(EXAMPLES / "hundbidrag" / "*.sql"),
                    "--major", "11")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: rehearse needs PostgreSQL 11 server binaries")
    assert "Traceback" not in result.output


# pgpatch's own handling (signals, usage, reporting), the same on every major: on one major only
# (tests/conftest.py); building and running a copy of each major is tested on each above
@pytest.mark.one_major
@pytest.mark.parametrize("args, message", [
    (["--major", "15"], "--major goes with --offline"),
    (["--offline", "--data"], "--data copies a live server's rows"),
])
def test_options_that_do_not_go_together_are_usage_errors(pg: Pg, args: list[str],
                                                          message: str) -> None:
    result = pg.cli("rehearse", str(EXAMPLES / "hundbidrag" / "*.sql"), *args)
    assert result.exit_code == 2 and message in result.stderr


@pytest.fixture
def reachable_tmp() -> Iterator[Path]:
    """A TMPDIR of the test's own that the server's OS user can enter (tmp_path's parents
    are private to us when we are root)."""
    path = Path(tempfile.mkdtemp(prefix="pgpatch-rehearse-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def _scratch_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("pgpatch-scratch-*"))


def _wait_for(condition: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# pgpatch's own handling (signals, usage, reporting), the same on every major: on one major only
# (tests/conftest.py); building and running a copy of each major is tested on each above
@pytest.mark.one_major
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_rehearsal_removes_its_throwaway_server(
        pg: Pg, reachable_tmp: Path, sig: signal.Signals) -> None:
    _live_tree(pg)
    pg.write("app.20240104.0001.app.slow.sql", "SELECT pg_sleep(60);\n")
    env = {**pg.env, "TMPDIR": str(reachable_tmp)}
    full = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRESQL_", "PG"))}
    full.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "postgresqlpatches", "rehearse", pg.glob()],
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        root = _wait_for(lambda: _scratch_dirs(reachable_tmp), "the throwaway server")[0]
        pid_file = root / "data" / "postmaster.pid"

        def sleeping() -> bool:  # the copy runs the slow patch: ask it over its socket
            if not pid_file.exists():
                return False
            lines = pid_file.read_text().splitlines()
            if len(lines) < 4:
                return False
            port = lines[3]
            found = subprocess.run(
                [str(pg.server.installation.tool("psql")), "-X", "-At", "-h", str(root),
                 "-p", port, "-U", "postgres", "-d", "postgres", "-c",
                 "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"],
                capture_output=True, text=True, check=False)
            return found.stdout.strip() == "1"

        _wait_for(sleeping, "the slow patch on the copy")
        postmaster = int(pid_file.read_text().splitlines()[0])
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert _scratch_dirs(reachable_tmp) == []
    assert not _running(postmaster)


def _running(pid: int) -> bool:
    """Alive and not a zombie (in a container nobody may reap the stopped postmaster)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# pgpatch's own handling (signals, usage, reporting), the same on every major: on one major only
# (tests/conftest.py); building and running a copy of each major is tested on each above
@pytest.mark.one_major
def test_offline_a_database_without_a_bootstrap_is_a_problem(pg: Pg) -> None:
    pg.write("zoo.20240101.0001.postgres.cage.sql", "CREATE TABLE cage (id int);\n")
    code, doc = _rehearse_json(pg, "--offline", "--major", str(pg.server.major))
    assert code == 1
    assert [p["kind"] for p in doc["problems"]] == ["no-baseline"]
    assert doc["patches"] == []
