"""Exactly once, even when killed: checksums, order, the lock, settling, non-transactional files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import STATE_PATCHES, Pg

BASELINE = """CREATE DATABASE app;
\\connect app
CREATE TABLE ledger (name text NOT NULL);
"""


def ledger_tree(pg: Pg, n: int, user: str = "postgres") -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for i in range(1, n + 1):
        pg.write(f"p/app.20240101.{i:04d}.{user}.p{i}.sql",
                 f"INSERT INTO ledger VALUES ('p{i}');\nSELECT count(*) FROM ledger;\n")


def ledger_counts(pg: Pg) -> dict[str, int]:
    return dict(pg.query("SELECT name, count(*)::int FROM ledger GROUP BY name", "app"))


def plan_json(pg: Pg, *args: str) -> dict:
    return json.loads(pg.cli("plan", pg.glob(), "--format", "json", *args).stdout)


def popen(pg: Pg, *args: str, env: dict[str, str | None] | None = None) -> subprocess.Popen[str]:
    """pgpatch as a real process that Ctrl-C (SIGINT) reaches (Pg.popen)."""
    return pg.popen(*args, env=env, interruptible=True)


# -- checksums -----------------------------------------------------------------------------

# pgpatch's own logic, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_changed_applied_patch_stops_plan_and_apply(pg: Pg) -> None:
    ledger_tree(pg, 2)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    changed = pg.tree / "p" / "app.20240101.0001.postgres.p1.sql"
    changed.write_text("INSERT INTO ledger VALUES ('edited');\n")
    pg.write("p/app.20240102.0001.postgres.new.sql", "INSERT INTO ledger VALUES ('new');\n")
    plan = pg.cli("plan", pg.glob())
    assert plan.exit_code == 1
    assert f"problem: {changed}: the file changed after it was applied" in plan.stdout
    data = plan_json(pg)
    assert [(p["kind"], p["path"]) for p in data["problems"]] == [("changed", str(changed))]
    assert "changed" in next(p for p in data["patches"] if p["path"] == str(changed))["flags"]
    applied = pg.cli("apply", pg.glob())
    assert applied.exit_code == 1
    assert applied.stderr.startswith(f"error: {changed}: the file changed after it was applied")
    assert "new" not in ledger_counts(pg)


# pgpatch's own logic, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_crlf_checkout_is_not_a_change(pg: Pg) -> None:
    ledger_tree(pg, 2)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    for path in (pg.tree / "p").glob("*.sql"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert plan_json(pg)["ok"] is True
    assert pg.cli("apply", pg.glob()).stdout.startswith("nothing to do")


# -- order ---------------------------------------------------------------------------------

# pgpatch's own logic, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_out_of_order_patch_is_refused_unless_allowed(pg: Pg) -> None:
    ledger_tree(pg, 2)
    (pg.tree / "p" / "app.20240101.0001.postgres.p1.sql").rename(pg.tree.parent / "held-back.sql")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    late = pg.tree / "p" / "app.20240101.0001.postgres.p1.sql"
    (pg.tree.parent / "held-back.sql").rename(late)
    refused = pg.cli("apply", pg.glob())
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        f"error: {late}: version 20240101.0001 is older than 20240101.0002, already applied")
    assert "--allow-out-of-order" in refused.stderr
    allowed = pg.cli("apply", "--allow-out-of-order", pg.glob())
    assert allowed.exit_code == 0, allowed.stderr
    assert "[out-of-order]" in allowed.stdout
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}


# -- one run at a time -----------------------------------------------------------------------

def test_three_concurrent_applies_run_each_patch_once(pg: Pg) -> None:
    ledger_tree(pg, 40)
    procs = [popen(pg, "apply", pg.glob(), "--lock-wait", "120") for _ in range(3)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outs]
    assert ledger_counts(pg) == {f"p{i}": 1 for i in range(1, 41)}
    summaries = sorted(o[0].splitlines()[-1].split(" in ")[0] for o in outs)
    assert summaries == [f"applied {STATE_PATCHES + 41} patches to 2 databases"] + [
        f"nothing to do: {STATE_PATCHES + 41} patches already applied"] * 2


# pgpatch's own logic, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_a_run_gives_up_waiting_for_the_lock_with_a_clear_message(pg: Pg) -> None:
    ledger_tree(pg, 1)
    with pg.server.connect("postgres") as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (0x70677074, 1))
        started = time.monotonic()
        result = pg.cli("apply", pg.glob(), "--lock-wait", "0.5")
        waited = time.monotonic() - started
    assert result.exit_code == 1
    warning, error = result.stderr.splitlines()[:2]
    assert warning.startswith("warning: another pgpatch run (server pid ")
    assert warning.endswith("holds the lock: waiting up to 0.5 s (--lock-wait)")
    assert error.startswith("error: another pgpatch run (server pid ")
    assert "still holds the lock after 0.5 s" in result.stderr
    assert "hint: wait for it to finish, or raise --lock-wait" in result.stderr
    assert waited < 30
    assert pg.databases() == set()


# -- exactly once across two databases -----------------------------------------------------

@pytest.mark.parametrize("point", ["after-record", "after-commit"])
def test_a_crash_between_the_two_commits_is_settled(pg: Pg, point: str) -> None:
    """after-record: the record is written, the patch's statements may still be running."""
    ledger_tree(pg, 5)
    crashed = pg.run("apply", pg.glob(), env={"PGPATCH_CRASH_AT": f"{point}:3"})
    assert crashed.returncode == -signal.SIGKILL
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    unsettled = [r["version"] for r in status["records"] if r["state"] == "unsettled"]
    assert "20240101.0003" in unsettled  # status shows what a crash left open
    plan = plan_json(pg)
    p3 = next(p for p in plan["patches"] if p["version"] == "20240101.0003")
    assert p3["action"] == ("applied" if point == "after-commit" else "apply")
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.stderr
    assert ledger_counts(pg) == {f"p{i}": 1 for i in range(1, 6)}
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    assert {r["state"] for r in status["records"]} == {"applied"}


def test_an_interrupt_after_the_commit_keeps_the_record_and_settles_it(pg: Pg) -> None:
    """Ctrl-C once the server has committed patch 3 but before pgpatch saw the end of its
    pipeline: deleting the record then would run patch 3 twice. The server says it
    committed: the record is settled there and then, and the error line says so."""
    ledger_tree(pg, 5)
    stopped = pg.run("apply", pg.glob(),
                     env={"PGPATCH_CRASH_AT": "after-commit-result:3:interrupt"})
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr
    assert "interrupted (Ctrl-C) while it ran: it had committed and is recorded as applied" \
        in stopped.stderr
    assert "stopped while committing" not in stopped.stderr
    assert ledger_counts(pg) == {"p1": 1, "p2": 1, "p3": 1}
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    assert "unsettled" not in {r["state"] for r in status["records"]}  # the state
    # database's own first records get their checksums at the end of a run that completes
    assert "20240101.0003" in [r["version"] for r in status["records"]]
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.stderr
    assert ledger_counts(pg) == {f"p{i}": 1 for i in range(1, 6)}


def test_ctrl_c_during_a_statement_cancels_it_and_the_next_run_settles(pg: Pg) -> None:
    """The COMMIT was already queued behind the statement: its record is written, and
    pgpatch asks the server before it exits (the transaction was rolled back: the record
    goes, and the error line says so)."""
    ledger_tree(pg, 2)
    pg.write("p/app.20240101.0002.postgres.p2.sql",
             "INSERT INTO ledger VALUES ('p2');\nSELECT pg_sleep(30);\n")
    proc = popen(pg, "apply", pg.glob())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pg.query(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
            "AND pid <> pg_backend_pid()"):
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err
    assert "interrupted (Ctrl-C) while it ran: it was rolled back, nothing of it committed: " \
           "the next run runs it again" in err
    assert "Aborted!" not in err and "stopped while committing" not in err
    assert time.monotonic() - t0 < 20  # not after the 30 s sleep
    assert pg.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                    "AND pid <> pg_backend_pid()") == [(0,)]
    assert ledger_counts(pg) == {"p1": 1}
    p2 = next(p for p in plan_json(pg)["patches"] if p["version"] == "20240101.0002")
    assert p2["action"] == "apply"
    pg.write("p/app.20240101.0002.postgres.p2.sql", "INSERT INTO ledger VALUES ('p2');\n")
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.stderr
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    assert {r["state"] for r in status["records"]} == {"applied"}


def test_a_patch_session_terminated_by_a_dba_is_one_error_and_settled_next_time(
        pg: Pg) -> None:
    ledger_tree(pg, 2)
    pg.write("p/app.20240101.0002.postgres.p2.sql",
             "INSERT INTO ledger VALUES ('p2');\nSELECT pg_sleep(30);\n")
    proc = popen(pg, "apply", pg.glob())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pg.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"):
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    path = pg.tree / "p" / "app.20240101.0002.postgres.p2.sql"
    assert proc.returncode == 1 and "Traceback" not in err
    assert err.splitlines()[0].startswith(
        f"error: {path}: terminating connection due to administrator command"), err
    assert "hint: it may have committed: the next run asks the server" in err
    pg.write("p/app.20240101.0002.postgres.p2.sql", "INSERT INTO ledger VALUES ('p2');\n")
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.stderr
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}


def test_a_record_that_cannot_be_written_stops_its_patch_at_once(pg: Pg) -> None:
    ledger_tree(pg, 4)
    pg.write("p/app.20240101.0003.postgres.p3.sql",
             "INSERT INTO ledger VALUES ('p3');\nSELECT pg_sleep(30);\n")
    assert pg.cli("apply", str(pg.tree / "*.sql")).exit_code == 0  # the state database
    with pg.server.connect("patches") as conn:
        conn.execute("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.name::text LIKE '%p3.sql' THEN RAISE EXCEPTION 'refused by the test'; END IF;
              RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON installed_patches "
                     "FOR EACH ROW EXECUTE FUNCTION refuse()")
    t0 = time.monotonic()
    failed = pg.run("apply", pg.glob())
    assert failed.returncode == 1
    assert failed.stderr.splitlines()[0] == (
        "error: cannot write the record of app.20240101.0003.postgres.p3.sql in the state "
        "database patches: refused by the test")
    assert failed.stderr.splitlines()[1] == (
        "hint: the patch was cancelled and rolled back, nothing of it committed; fix the "
        "state database and run again")
    assert time.monotonic() - t0 < 20  # the patch's 30 s sleep was cancelled, not awaited
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}
    assert pg.query("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' "
                    "AND pid <> pg_backend_pid()") == [(0,)]
    pg.query("DROP TRIGGER refuse ON installed_patches", "patches")
    pg.write("p/app.20240101.0003.postgres.p3.sql", "INSERT INTO ledger VALUES ('p3');\n")
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.stderr
    assert ledger_counts(pg) == {f"p{i}": 1 for i in range(1, 5)}


def test_a_patch_that_fails_at_commit_leaves_no_record_and_stops_the_run(pg: Pg) -> None:
    """A deferred constraint fails at COMMIT, after the record was written: it goes again."""
    ledger_tree(pg, 1)
    pg.write("p/app.20240101.0002.postgres.deferred.sql",
             "CREATE TABLE parent (id int PRIMARY KEY);\n"
             "CREATE TABLE child (parent_id int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);\n"
             "INSERT INTO child VALUES (1);\n")
    pg.write("p/app.20240101.0003.postgres.after.sql", "INSERT INTO ledger VALUES ('after');\n")
    failed = pg.cli("apply", pg.glob())
    assert failed.exit_code == 1
    path = pg.tree / "p" / "app.20240101.0002.postgres.deferred.sql"
    assert failed.stderr.splitlines()[0] == (
        f'error: {path}: insert or update on table "child" violates foreign key constraint '
        '"child_parent_id_fkey" (Key (parent_id)=(1) is not present in table "parent".) '
        "[SQLSTATE 23503]")
    assert ledger_counts(pg) == {"p1": 1}
    assert pg.query("SELECT to_regclass('child') IS NULL", "app") == [(True,)]
    names = {r[0] for r in pg.query("SELECT name::text FROM installed_patches", "patches")}
    assert "app.20240101.0002.postgres.deferred.sql" not in names
    plan = plan_json(pg)
    assert [p["action"] for p in plan["patches"] if p["database"] == "app"][-2:] == [
        "apply", "apply"]


def test_the_patch_sent_behind_a_failing_one_never_runs(pg: Pg) -> None:
    """Patches on one connection share a pipeline (each sent behind the one before's
    COMMIT): when one fails, the server skips the next, and the error names the right file."""
    ledger_tree(pg, 1)
    pg.write("p/app.20240101.0002.postgres.p2.sql",
             "INSERT INTO ledger VALUES ('p2');\nSELECT 1 / 0;\n")
    pg.write("p/app.20240101.0003.postgres.p3.sql",
             "INSERT INTO ledger VALUES ('p3');\nCREATE TABLE after_p2 (a int);\n")
    failed = pg.cli("apply", pg.glob())
    assert failed.exit_code == 1
    path = pg.tree / "p" / "app.20240101.0002.postgres.p2.sql"
    assert failed.stderr.splitlines()[0] == f"error: {path}:2: division by zero [SQLSTATE 22012]"
    assert ledger_counts(pg) == {"p1": 1}
    assert pg.query("SELECT to_regclass('after_p2') IS NULL", "app") == [(True,)]
    names = {r[0] for r in pg.query("SELECT name::text FROM installed_patches", "patches")}
    assert {"app.20240101.0002.postgres.p2.sql", "app.20240101.0003.postgres.p3.sql"} \
        .isdisjoint(names)
    pg.write("p/app.20240101.0002.postgres.p2.sql", "INSERT INTO ledger VALUES ('p2');\n")
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.stderr
    assert ledger_counts(pg) == {"p1": 1, "p2": 1, "p3": 1}
    assert pg.query("SELECT to_regclass('after_p2') IS NOT NULL", "app") == [(True,)]


# how pgpatch streams a file through the pipeline is its own, the same on every major: on one
# major only (tests/conftest.py)
@pytest.mark.one_major
def test_a_large_file_streams_through_the_pipeline(pg: Pg) -> None:
    """20,000 statements in one pipeline: sent while their results come back, all run."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("app.20240101.0001.postgres.many.sql",
             "".join(f"INSERT INTO ledger VALUES ('{'x' * 80} {i}');\n" for i in range(20000)))
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT count(*) FROM ledger", "app") == [(20000,)]


# pgpatch's own logic, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_an_applied_patch_records_how_long_it_took(pg: Pg) -> None:
    ledger_tree(pg, 2)
    pg.write("p/app.20240101.0002.postgres.p2.sql", "SELECT pg_sleep(0.3);\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    rows = dict(pg.query("SELECT name::text, duration_ms FROM installed_patches", "patches"))
    assert rows["app.20240101.0002.postgres.p2.sql"] >= 300
    assert 0 < rows["app.20240101.0001.postgres.p1.sql"] < 300


# a dozen kills of real runs, the same thing many times: on one major only (tests/conftest.py);
# each major's server rolls back a killed run's transaction in the crash tests above
@pytest.mark.one_major
def test_kill_at_random_moments_never_runs_a_patch_twice(pg: Pg) -> None:
    ledger_tree(pg, 150)
    for path in (pg.tree / "p").glob("*.sql"):  # ~55 ms a patch: kills land mid-run
        path.write_text(path.read_text() + "SELECT pg_sleep(0.05);\n")
    rng = random.Random(int(os.environ.get("PGPATCH_KILL_SEED", "20261126")))
    kills = runs = 0
    while kills < 12 and runs < 40:
        runs += 1
        proc = popen(pg, "apply", pg.glob(), "--lock-wait", "60")
        time.sleep(rng.uniform(0.3, 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=120)
    final = pg.cli("apply", pg.glob())
    assert final.exit_code == 0, final.stderr
    assert ledger_counts(pg) == {f"p{i}": 1 for i in range(1, 151)}
    plan = plan_json(pg)
    assert plan["ok"] and plan["summary"]["apply"] == 0 and plan["summary"]["bootstrap"] == 0
    assert kills == 12  # a dozen real kills, at random moments of real runs


# -- failed and interrupted bootstrap ----------------------------------------------------

def wait_for_sleep(pg: Pg) -> None:
    """Until a session of the server runs pg_sleep: a baseline got that far."""
    deadline = time.monotonic() + 60
    while not pg.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"):
        assert time.monotonic() < deadline, "the baseline never reached its pg_sleep"
        time.sleep(0.05)


def test_interrupted_bootstrap_is_made_again_not_taken_for_done(pg: Pg) -> None:
    # the baseline's own half: a session of anyone else's would make the leftover theirs
    # killed in its pg_sleep, whose backend the next run waits for: a few seconds, not 30
    slow = pg.write("slow.00000000.0000.postgres.baseline.sql",
                    "CREATE DATABASE slow;\n\\connect slow\nCREATE TABLE half_made ();\n"
                    "\\connect postgres\nSELECT pg_sleep(4);\n")
    pg.write("slow.20240101.0001.postgres.t.sql", "CREATE TABLE t ();\n")
    proc = popen(pg, "apply", pg.glob())
    wait_for_sleep(pg)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    plan = pg.cli("plan", pg.glob())
    assert plan.exit_code == 0
    line = next(x for x in plan.stdout.splitlines() if x.startswith("slow") and "baseline" in x)
    assert " bootstrap " in line and "psql, redo" in line
    assert "the last bootstrap was interrupted" in line
    slow.write_text("CREATE DATABASE slow;\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert "dropping the database it left and making it again" in result.stderr
    assert pg.query("SELECT to_regclass('t') IS NOT NULL, to_regclass('half_made') IS NULL",
                    "slow") == [(True, True)]
    assert plan_json(pg)["ok"]  # the record took the baseline as it ran, not as it was killed


# -- statements that cannot run in a transaction -----------------------------------------

def test_non_transactional_patch_just_works_and_is_marked(pg: Pg) -> None:
    ledger_tree(pg, 1)
    pg.write("p/app.20240102.0001.postgres.index.sql",
             "-- CREATE INDEX in a comment: BEGIN; 'quoted'\n"
             "CREATE INDEX CONCURRENTLY ledger_name ON ledger (name);\n"
             "VACUUM (ANALYZE) ledger;\n")
    plan = plan_json(pg)
    idx = next(p for p in plan["patches"] if p["description"] == "index")
    assert "non-transactional" in idx["flags"]
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ledger_name'::regclass",
                    "app") == [(True,)]


def test_non_transactional_patch_failing_midway_says_what_ran_and_resumes(pg: Pg) -> None:
    ledger_tree(pg, 0)
    bad = pg.write("p/app.20240102.0001.postgres.index.sql",
                   "CREATE INDEX CONCURRENTLY one ON ledger (name);\n"
                   "CREATE INDEX CONCURRENTLY two ON ledger (nosuch);\n"
                   "CREATE INDEX CONCURRENTLY three ON ledger (name);\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f'error: {bad}:2: column "nosuch" does not exist; statements 1-1 of 3 ran and stay '
        "done, the next run resumes at statement 2 [SQLSTATE 42703]")
    plan = plan_json(pg)
    step = next(p for p in plan["patches"] if p["description"] == "index")
    assert step["action"] == "apply" and "resume" in step["flags"]
    # the fix may only touch what has not run yet
    bad.write_text("CREATE INDEX CONCURRENTLY one ON ledger (name);\n"
                   "CREATE INDEX CONCURRENTLY two ON ledger (name, name);\n"
                   "CREATE INDEX CONCURRENTLY three ON ledger (name);\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    indexes = pg.query("SELECT relname FROM pg_class WHERE relkind = 'i' AND relname IN "
                       "('one', 'two', 'three') ORDER BY 1", "app")
    assert indexes == [("one",), ("three",), ("two",)]
    assert plan_json(pg)["ok"]  # the fixed file is the one on record


# -- psql meta-commands ----------------------------------------------------------------------

# pgpatch's own logic, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_meta_command_in_a_later_patch_stops_everything(pg: Pg) -> None:
    ledger_tree(pg, 1)
    bad = pg.write("p/app.20240102.0001.postgres.meta.sql",
                   "SELECT 1; -- \\connect in a comment is fine\n"
                   "SELECT '\\set in a string is fine';\n"
                   "\\connect other\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: {bad}:3: psql meta-command \\connect outside a 0000 baseline")
    assert pg.databases() == set()


# -- safety settings -----------------------------------------------------------------------

# the retries are pgpatch's lock budget, the same on every major: on one major only
# (tests/conftest.py); a lock timeout is on every major in test_lock_budget.py's index tests
@pytest.mark.one_major
def test_lock_timeout_makes_a_blocked_patch_fail_cleanly(pg: Pg) -> None:
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    alter = pg.write("p/app.20240102.0001.postgres.alter.sql",
                     "ALTER TABLE ledger ADD COLUMN note text;\n")
    with pg.server.connect("app") as busy:
        busy.autocommit = False
        busy.execute("LOCK TABLE ledger IN ACCESS SHARE MODE")
        started = time.monotonic()
        result = pg.cli("apply", pg.glob(), "--lock-timeout", "200")
        assert time.monotonic() - started < 30
        busy.rollback()
    assert result.exit_code == 1
    *retries, error, hint = result.stderr.splitlines()
    assert [line.split(" in ")[0] for line in retries] == [
        f"lock timeout: {alter}: retry {n} of 5" for n in range(1, 6)]
    assert error.startswith(f"error: {alter}:1: canceling statement due to lock timeout")
    assert error.endswith("[SQLSTATE 55P03]")
    assert hint.startswith("hint: the next apply goes on from here")
    assert pg.cli("apply", pg.glob()).exit_code == 0


def test_statement_timeout_applies_to_patch_sessions(pg: Pg) -> None:
    ledger_tree(pg, 0)
    slow = pg.write("p/app.20240102.0001.postgres.slow.sql", "SELECT pg_sleep(20);\n")
    result = pg.cli("apply", pg.glob(), "--statement-timeout", "300")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: {slow}:1: canceling statement due to statement timeout [SQLSTATE 57014]")


# -- hostile input -------------------------------------------------------------------------

# pgpatch's own logic, the same on every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
@pytest.mark.parametrize("name", [
    "app.20240101.0001.postgres;drop.x.sql", "app.20240101.0001.Robert'); DROP.x.sql",
    'a"b.20240101.0001.postgres.x.sql', "app.20240101.0001.pöstgres.x.sql",
    "my app.20240101.0001.postgres.x.sql"])
def test_hostile_names_are_refused_before_any_sql(pg: Pg, name: str) -> None:
    pg.write(name)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert "not a patch file name" in result.stderr
    assert pg.databases() == set()


def test_psql_gets_passwords_only_through_its_environment(pg: Pg, tmp_path: Path) -> None:
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "psql"
    real = pg.server.installation.tool("psql")
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    ledger_tree(pg, 1)
    result = pg.cli("apply", pg.glob(), env={"PGPATCH_PSQL": str(wrapper)})
    assert result.exit_code == 0, result.stderr
    argv = log.read_text()
    assert argv.count("-f -") == 1  # app's (the state database's runs without psql)
    for secret in [pg.server.password, *[v for k, v in pg.env.items() if "PASSWORD" in k]]:
        assert secret not in argv


def test_a_half_made_state_database_is_made_again(pg: Pg) -> None:
    ledger_tree(pg, 1)
    pg.query("CREATE ROLE patches LOGIN PASSWORD 'state-pw-1'")
    pg.query("CREATE DATABASE patches OWNER patches")  # a first run killed right here
    plan = pg.cli("plan", pg.glob())
    assert plan.exit_code == 0, plan.stderr
    state = [x for x in plan.stdout.splitlines() if x.startswith("patches ")]
    assert "bootstrap" in state[0] and "redo" in state[0]
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert ledger_counts(pg) == {"p1": 1}


def test_a_database_named_like_the_state_database_is_never_touched(pg: Pg) -> None:
    ledger_tree(pg, 1)
    pg.query("CREATE ROLE patches LOGIN PASSWORD 'state-pw-1'")
    pg.query("CREATE DATABASE patches OWNER patches")
    pg.query("CREATE TABLE invoices (id int)", "patches")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: the database patches exists but is not a pgpatch state database",
        "hint: name another state database with --state-db"]
    assert pg.query("SELECT to_regclass('invoices') IS NOT NULL", "patches") == [(True,)]


def test_non_transactional_patch_failing_at_once_leaves_no_record(pg: Pg) -> None:
    ledger_tree(pg, 0)
    bad = pg.write("p/app.20240102.0001.postgres.index.sql",
                   "CREATE INDEX CONCURRENTLY one ON ledger (nosuch);\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f'error: {bad}:1: column "nosuch" does not exist; no statement of it ran '
        "[SQLSTATE 42703]")
    status = json.loads(pg.cli("status", "--format", "json").stdout)
    assert [r["version"] for r in status["records"] if r["database"] == "app"] == [
        "00000000.0000"]
    step = next(p for p in plan_json(pg)["patches"] if p["description"] == "index")
    assert step["action"] == "apply" and step["flags"] == ["non-transactional"]
