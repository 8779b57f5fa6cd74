"""--format json from every command, whatever happens, against real servers: one document on
stdout, valid against its docs/COMMAND.schema.json, saying what ran, what failed, what is left
or the error; and the end of every apply in words. Ctrl-C through a real process."""

from __future__ import annotations

import json
import os
import shutil
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

from tests.integration.conftest import PASSWORDS, STATE_PATCHES, Pg

# the documents, their schemas and what Ctrl-C says are pgpatch's, the same on every major: on
# one major only (tests/conftest.py); the server's part of a failure is tested on each elsewhere
pytestmark = pytest.mark.one_major


DOCS = Path(__file__).resolve().parents[2] / "docs"
BASELINE = ("CREATE ROLE app LOGIN PASSWORD 'app-pw-2';\nCREATE DATABASE app OWNER app;\n")
OTHER = "CREATE DATABASE other;\n"


def valid(command: str, stdout: str) -> dict[str, Any]:
    """stdout is exactly one JSON document, valid against the command's schema."""
    schema = json.loads((DOCS / f"{command}.schema.json").read_text(encoding="utf-8"))
    data = json.loads(stdout)  # fails on anything else on stdout
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()
                                    ).validate(data)
    return data


def two_databases(pg: Pg, failing: str = "SELECT * FROM no_such_table;\n") -> Path:
    """app: a bootstrap, a patch that works and one that fails; other: two patches after."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.20240101.0001.app.works.sql", "CREATE TABLE t (a int);\n")
    bad = pg.write("app.20240101.0002.app.fails.sql", "INSERT INTO t VALUES (1);\n" + failing)
    pg.write("other.00000000.0000.postgres.baseline.sql", OTHER)
    pg.write("other.20240101.0001.postgres.one.sql", "CREATE TABLE o (a int);\n")
    pg.write("other.20240101.0002.postgres.two.sql", "INSERT INTO o VALUES (1);\n")
    return bad


def versions(entries: list[dict[str, Any]]) -> list[str]:
    return [f"{e['database']} {e['version']}" for e in entries]


def test_a_patch_failing_after_others_committed_lists_what_ran_failed_and_is_left(
        pg: Pg) -> None:
    bad = two_databases(pg)
    result = pg.cli("apply", "--format", "json", pg.glob())
    assert result.exit_code == 1
    data = valid("apply", result.stdout)
    assert data["ok"] is False
    assert versions(data["applied"])[STATE_PATCHES:] == [
        "app 00000000.0000", "app 20240101.0001"]
    assert all(e["seconds"] > 0 for e in data["applied"])
    failed = data["failed"]
    assert (failed["path"], failed["line"], failed["sqlstate"]) == (str(bad), 2, "42P01")
    assert failed["message"] == 'relation "no_such_table" does not exist'
    assert failed["seconds"] > 0
    assert "hint" in failed
    assert versions(data["pending"]) == ["other 00000000.0000", "other 20240101.0001",
                                         "other 20240101.0002"]
    assert data["error"]["kind"] == "patch-failed" and data["error"]["path"] == str(bad)
    assert data["error"]["exit_code"] == 1
    assert result.stderr.startswith(f"error: {bad}:2: relation \"no_such_table\"")
    # what the JSON says is what the state database says
    rows = pg.query("SELECT name::text FROM installed_patches WHERE name NOT LIKE 'patches.%' "
                    "ORDER BY 1", "patches")
    assert rows == [("app.00000000.0000.postgres.baseline.sql",),
                    ("app.20240101.0001.app.works.sql",)]


def test_a_failed_apply_ends_with_what_ran_what_failed_and_what_is_left(pg: Pg) -> None:
    bad = two_databases(pg)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"stopped: applied {STATE_PATCHES + 2} patches in ")
    assert last.endswith(f" s; failed: {bad}; 3 left pending (other: 3)")


def test_a_failed_bootstrap_is_not_among_what_ran(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.00000000.0001.app.seed.sql", "CREATE TABLE t (a int);\n")
    bad = pg.write("app.00000000.0002.app.broken.sql", "SELECT * FROM nowhere;\n")
    data = valid("apply", pg.cli("apply", "--format", "json", pg.glob()).stdout)
    assert [e["database"] for e in data["applied"]] == ["patches"] * STATE_PATCHES
    assert data["failed"]["path"] == str(bad)
    assert versions(data["pending"]) == ["app 00000000.0000", "app 00000000.0001"]
    assert "app" not in pg.databases()


def test_plan_problems_refuse_apply_with_the_problems_and_everything_pending(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    changed = pg.write("app.20240101.0001.app.one.sql", "CREATE TABLE t (a int);\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    changed.write_text("CREATE TABLE t (b int);\n")
    pg.write("app.20240102.0001.app.two.sql", "ALTER TABLE t ADD c int;\n")
    result = pg.cli("apply", "--format", "json", pg.glob())
    assert result.exit_code == 1
    data = valid("apply", result.stdout)
    assert (data["applied"], data["failed"]) == ([], None)
    assert [(p["kind"], p["path"]) for p in data["problems"]] == [("changed", str(changed))]
    assert versions(data["pending"]) == ["app 20240102.0001"]
    assert data["error"]["kind"] == "problems"
    assert data["summary"]["problems"] == 1
    text = pg.cli("apply", pg.glob())
    assert text.stdout.splitlines()[-1] == "stopped: nothing applied; 1 left pending (app: 1)"


def test_a_discovery_problem_refuses_apply_with_a_document(pg: Pg) -> None:
    pg.write("app.2024-01-01.0001.app.bad.sql")
    data = valid("apply", pg.cli("apply", "--format", "json", pg.glob()).stdout)
    assert [p["kind"] for p in data["problems"]] == ["bad-name"]
    assert data["pending"] == [] and data["error"]["kind"] == "problems"


def test_a_lock_timeout_is_a_document_without_a_plan(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    with pg.server.connect("postgres") as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (0x70677074, 1))
        result = pg.cli("apply", "--format", "json", "--lock-wait", "0.2", pg.glob())
        forget = pg.cli("forget", "gone", "--format", "json", "--lock-wait", "0.2")
    assert result.exit_code == 1
    data = valid("apply", result.stdout)
    assert (data["applied"], data["failed"], data["pending"], data["summary"]) == (
        [], None, None, None)
    assert data["error"]["kind"] == "lock-timeout"
    assert "still holds the lock after 0.2 s" in data["error"]["message"]
    assert data["error"]["hint"] == "wait for it to finish, or raise --lock-wait"
    assert forget.exit_code == 1
    assert valid("forget", forget.stdout)["error"]["kind"] == "lock-timeout"


def test_a_bad_password_is_a_document_of_every_command_and_never_shows_it(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    wrong = "Wr0ng-Secret-9"
    env = {"POSTGRESQL_POSTGRES_PASSWORD": wrong, "PGPASSWORD": None}
    for command, args in [("plan", [pg.glob()]), ("apply", [pg.glob()]),
                          ("status", []), ("forget", ["gone"]),
                          ("baseline", ["app", "--output-dir", str(pg.tree.parent / "out")])]:
        result = pg.cli(command, "--format", "json", *args, env=env)
        assert result.exit_code == 1, (command, result.output)
        data = valid(command, result.stdout)
        assert data["ok"] is False
        assert data["error"]["kind"] == "connection", command
        assert "password authentication failed" in data["error"]["message"]
        assert data["error"]["hint"] == "set POSTGRESQL_POSTGRES_PASSWORD to postgres's password"
        assert wrong not in result.stdout + result.stderr


def test_success_documents_of_every_command_are_valid_and_alone_on_stdout(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.20240101.0001.app.one.sql", "CREATE TABLE t (a int);\n")
    plan = valid("plan", pg.cli("plan", "--format", "json", pg.glob()).stdout)
    assert plan["error"] is None and plan["ok"] is True
    applied = pg.cli("apply", "--format", "json", pg.glob())
    data = valid("apply", applied.stdout)
    assert (data["ok"], data["failed"], data["pending"], data["error"]) == (True, None, [], None)
    assert versions(data["applied"])[STATE_PATCHES:] == ["app 00000000.0000",
                                                         "app 20240101.0001"]
    # text: apply's old spelling of table, accepted on every command
    assert pg.cli("apply", "--format", "text", pg.glob()).stdout.startswith("nothing to do")
    assert pg.cli("plan", "--format", "text", pg.glob()).exit_code == 0
    status = valid("status", pg.cli("status", "--format", "json", pg.glob()).stdout)
    assert status["ok"] is True and "error" not in status["plan"]
    out = pg.tree.parent / "out"
    pg.query("CREATE DATABASE legacy")
    base = valid("baseline", pg.cli("baseline", "legacy", "--output-dir", str(out),
                                    "--schema-only", "--format", "json").stdout)
    assert (base["ok"], base["database"], base["rows_of"], base["recorded"]) == (
        True, "legacy", [], True)
    assert Path(base["path"]).is_file() and base["size"] == Path(base["path"]).stat().st_size
    pg.query("DROP DATABASE legacy")
    forgot = valid("forget", pg.cli("forget", "legacy", "--format", "json").stdout)
    assert (forgot["ok"], forgot["forgotten"]) == (True, 1)
    refused = pg.cli("forget", "app", "--format", "json")
    assert refused.exit_code == 1
    assert valid("forget", refused.stdout)["error"]["message"].startswith(
        "database app exists")


def test_usage_errors_print_the_error_document_and_exit_2(pg: Pg) -> None:
    for args in (["apply", "--format", "json", "--state-db", "My-State", pg.glob()],
                 ["plan", "--format=json"],
                 ["status", "--format", "json", "--port", "0"],
                 ["aply", "--format", "json", pg.glob()],
                 ["baseline", "app", "--format", "json", "--output-dir", "x",
                  "--schema-only", "--data-for", "t"]):
        result = pg.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        data = valid("error", result.stdout)
        assert data["error"]["kind"] == "usage" and data["error"]["exit_code"] == 2
        assert data["error"]["message"] in result.stderr
    assert valid("error", pg.cli("plan", "--format", "json").stdout)["command"] == "plan"
    assert pg.cli("plan", "--format", "table").stdout == ""  # no JSON unless asked


# -- Ctrl-C ------------------------------------------------------------------------------------

def interrupt_when_sleeping(pg: Pg, proc: subprocess.Popen[str]) -> tuple[str, str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pg.query(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
            "AND pid <> pg_backend_pid()"):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)


def test_ctrl_c_in_a_patch_says_it_rolled_back_and_the_json_lists_what_is_left(
        pg: Pg) -> None:
    sleeper = two_databases(pg, "SELECT pg_sleep(30);\n")
    proc = pg.popen("apply", "--format", "json", pg.glob(), interruptible=True)
    out, err = interrupt_when_sleeping(pg, proc)
    assert proc.returncode == 1
    assert "Aborted!" not in err and "Traceback" not in err
    assert err.splitlines() == [
        f"error: {sleeper}: interrupted (Ctrl-C) while it ran: it was rolled back, nothing "
        "of it committed: the next run runs it again",
        f"hint: {STATE_PATCHES + 2} patches of this run were applied and recorded; the next "
        "run goes on from here"]
    data = valid("apply", out)
    assert versions(data["applied"])[STATE_PATCHES:] == ["app 00000000.0000",
                                                         "app 20240101.0001"]
    assert data["failed"]["path"] == str(sleeper)
    assert data["failed"]["message"].startswith("interrupted (Ctrl-C) while it ran")
    assert data["error"]["kind"] == "interrupted"
    assert versions(data["pending"]) == ["other 00000000.0000", "other 20240101.0001",
                                         "other 20240101.0002"]
    # its record is gone already: nothing is left unsettled for the next run
    records = valid("status", pg.cli("status", "--format", "json").stdout)["records"]
    assert "unsettled" not in {r["state"] for r in records}
    assert "app.20240101.0002.app.fails.sql" not in {r["name"] for r in records}
    assert pg.query("SELECT count(*) FROM t", "app") == [(0,)]


def test_ctrl_c_after_the_server_committed_says_it_is_applied(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for i in (1, 2, 3):
        pg.write(f"app.20240101.000{i}.app.p{i}.sql", f"CREATE TABLE t{i} (a int);\n")
    stopped = pg.run("apply", pg.glob(), env={
        "PGPATCH_CRASH_AT": "after-commit-result:2:interrupt"})
    assert stopped.returncode == 1
    second = pg.tree / "app.20240101.0002.app.p2.sql"
    assert stopped.stderr.splitlines()[-2:] == [
        f"error: {second}: interrupted (Ctrl-C) while it ran: it had committed and is "
        "recorded as applied",
        f"hint: {STATE_PATCHES + 3} patches of this run were applied and recorded; the next "
        "run goes on from here"]
    assert stopped.stdout.splitlines()[-1].endswith(" s; 1 left pending (app: 1)")
    status = valid("status", pg.cli("status", "--format", "json").stdout)
    assert "unsettled" not in {r["state"] for r in status["records"]}
    assert "app.20240101.0002.app.p2.sql" in {r["name"] for r in status["records"]}
    final = pg.cli("apply", "--format", "json", pg.glob())
    assert versions(valid("apply", final.stdout)["applied"]) == ["app 20240101.0003"]


def test_ctrl_c_while_waiting_for_the_lock_says_nothing_ran(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    with pg.server.connect("postgres") as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (0x70677074, 1))
        proc = pg.popen("apply", "--format", "json", pg.glob(), interruptible=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pg.query(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.splitlines()[-2] == ("error: interrupted (Ctrl-C) while waiting for the lock: "
                                    "nothing ran")
    data = valid("apply", out)
    assert (data["applied"], data["pending"], data["error"]["kind"]) == ([], None,
                                                                         "interrupted")
    assert "app" not in pg.databases()


def test_passwords_of_the_environment_never_reach_a_document(pg: Pg) -> None:
    bad = two_databases(pg, "SELECT 'app-pw-2'::int;\n")  # the server quotes the value back
    result = pg.cli("apply", "--format", "json", pg.glob())
    data = valid("apply", result.stdout)
    assert data["failed"]["path"] == str(bad)
    assert data["failed"]["message"].startswith("invalid input syntax for type integer: ")
    assert not any(pw in result.stdout + result.stderr for pw in PASSWORDS.values())


# -- rehearse, and every other way a command ends (issue 16.3's gaps) --------------------------

def rehearsal_error(result: Any, offline: bool = False) -> dict[str, Any]:
    """rehearse's error document: the rehearsal's shape, empty, and the error."""
    data = valid("rehearse", result.stdout)
    assert (data["ok"], data["offline"], data["major"], data["patches"], data["copied"]) == (
        False, offline, None, [], [])
    assert data["error"]["message"] in result.stderr
    return data


def test_rehearse_that_cannot_reach_the_live_server_prints_its_error_document(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    result = pg.cli("rehearse", "--port", "1", "--format", "json", pg.glob())
    assert result.exit_code == 1, result.output
    data = rehearsal_error(result)
    assert data["error"]["message"].startswith("cannot connect to database 'postgres'")
    assert data["error"]["hint"] is not None


def test_rehearse_offline_without_binaries_of_the_major_prints_its_error_document(
        pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    result = pg.cli("rehearse", "--offline", "--major", "99", "--format", "json", pg.glob())
    assert result.exit_code == 1, result.output
    data = rehearsal_error(result, offline=True)
    assert data["error"]["message"].startswith("rehearse needs PostgreSQL 99 server binaries")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A TMPDIR for pgpatch that the server's OS user can reach (else pgpatch takes /tmp,
    and the test could not find or break the copy there)."""
    base = Path(tempfile.mkdtemp(prefix="pgpatch-test-tmp-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_rehearse_whose_copy_cannot_start_prints_its_error_document(pg: Pg,
                                                                     open_tmp: Path) -> None:
    """A TMPDIR so deep that the copy's socket path is longer than a Unix socket's may be:
    the throwaway server fails to start (a real process, so the TMPDIR is its own)."""
    two_databases(pg)
    deep = open_tmp / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    for folder in (deep.parent, deep):
        folder.chmod(0o755)
    result = pg.run("rehearse", "--format", "json", pg.glob(), env={"TMPDIR": str(deep)})
    assert result.returncode == 1, result.stderr
    data = rehearsal_error(result)
    assert " did not start on " in data["error"]["message"]
    assert "Traceback" not in result.stderr
    assert list(deep.glob("pgpatch-scratch-*")) == []  # the copy's folder is removed


def _copy_sleeping(tmp: Path, psql: str) -> bool:
    """A copy under ``tmp`` runs the slow patch: asked over its socket."""
    for copy in tmp.glob("pgpatch-scratch-*"):
        try:
            lines = (copy / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            continue
        if len(lines) >= 4 and subprocess.run(
                [psql, "-X", "-At", "-h", str(copy), "-p", lines[3], "-U", "postgres", "-d",
                 "postgres", "-c", "SELECT count(*) FROM pg_stat_activity "
                 "WHERE query LIKE 'SELECT pg_sleep%'"],
                capture_output=True, text=True, check=False).stdout.strip() == "1":
            return True
    return False


# the subject is pgpatch's signal handling, not the server's: on one major
@pytest.mark.one_major
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_rehearsal_prints_the_error_document_and_removes_the_copy(
        pg: Pg, open_tmp: Path, sig: signal.Signals) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.20240101.0001.postgres.slow.sql", "SELECT pg_sleep(60);\n")
    tmp = open_tmp
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRESQL_", "PG"))}
    env.update(pg.env, TMPDIR=str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "postgresqlpatches", "rehearse", "--offline",
                             "--format", "json", pg.glob()], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    psql = str(pg.server.installation.tool("psql"))
    try:
        deadline = time.monotonic() + 120
        while not _copy_sleeping(tmp, psql):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the copy never ran the slow patch"
            time.sleep(0.1)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Aborted!" not in err
    # what ran on the copy is told; the patch it was in did not fail, it was not run
    data = valid("rehearse", out)
    assert data["ok"] is False and data["offline"] is True
    outcomes = {p["path"]: p["outcome"] for p in data["patches"]}
    assert outcomes.pop(str(pg.tree / "app.20240101.0001.postgres.slow.sql")) == "not run"
    assert set(outcomes.values()) == {"ran"}
    assert data["error"]["message"] == "stopped, its copy removed: interrupted"
    assert list(tmp.glob("pgpatch-scratch-*")) == []


# the subject is pgpatch's signal handling, not the server's: on one major
@pytest.mark.one_major
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_while_rehearse_reads_the_live_server_prints_the_error_document(
        pg: Pg, sig: signal.Signals) -> None:
    """Before any copy: the live plan waits on a table a session holds locked."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.20240101.0001.app.one.sql", "CREATE TABLE t (a int);\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("app.20240102.0001.app.two.sql", "ALTER TABLE t ADD b int;\n")
    with pg.server.connect("patches") as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE installed_patches IN ACCESS EXCLUSIVE MODE")
        proc = pg.popen("rehearse", "--format", "json", pg.glob(), interruptible=True)
        deadline = time.monotonic() + 60
        while not pg.query("SELECT 1 FROM pg_locks WHERE NOT granted"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "rehearse never waited for the lock"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "Aborted!" not in err
    data = valid("rehearse", out)
    assert (data["ok"], data["patches"], data["major"]) == (False, [], None)
    assert data["error"]["message"] == "interrupted (Ctrl-C)"
    assert err.splitlines()[-2:] == ["error: interrupted (Ctrl-C)",
                                     "hint: run the command again"]


def test_a_bad_config_file_and_commands_without_json_print_the_usage_document(
        pg: Pg, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("bogus = 1\n", encoding="utf-8")
    for args in (["status", "--config", str(bad), "--format", "json"],
                 ["rehearse", "--format", "json", "--config", str(bad), pg.glob()],
                 ["new", "app", "app", "x", "--format", "json"],
                 ["demo", "--format", "json"]):
        result = pg.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        data = valid("error", result.stdout)
        assert data["command"] == args[0] and data["error"]["exit_code"] == 2
        assert data["error"]["message"] in result.stderr
    assert "bogus" in valid("error", pg.cli("plan", "--format", "json", "--config", str(bad),
                                             pg.glob()).stdout)["error"]["message"]
