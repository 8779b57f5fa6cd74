"""Lock impact and the lock budget, against real servers: plan names the live sessions a
pending patch's locks would wait for; apply waits a bounded time per try, retries a patch
blocked by a held lock, and gives up naming the blocker, leaving the run resumable."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from postgresqlpatches.core.lockbudget import LockBudget
from tests.integration.conftest import STATE_PATCHES, Pg
from tests.integration.test_safety import ledger_counts, ledger_tree, popen

ALTER = "ALTER TABLE ledger ADD COLUMN note text;\n"


@contextlib.contextmanager
def holder(pg: Pg, lock: str = "SELECT count(*) FROM ledger",
           database: str = "app") -> Iterator[psycopg.Connection]:
    """A session of someone else's that keeps a transaction open after ``lock``."""
    with pg.server.connect(database, autocommit=False) as conn:
        conn.execute("SET application_name = 'report'")
        conn.execute(lock)
        yield conn
        conn.rollback()


def pid_of(conn: psycopg.Connection) -> int:
    return int(conn.info.backend_pid)


def plan_entries(pg: Pg) -> dict[str, dict]:
    result = pg.cli("plan", pg.glob(), "--format", "json")
    assert result.exit_code == 0, result.stderr
    return {p["description"]: p for p in json.loads(result.stdout)["patches"]}


# -- plan: lock_conflicts ------------------------------------------------------------------

def test_a_session_holding_a_conflicting_lock_shows_in_plans_lock_conflicts(pg: Pg) -> None:
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("p/app.20240102.0001.postgres.alter.sql", ALTER)
    pg.write("p/app.20240102.0002.postgres.insert.sql", "INSERT INTO ledger VALUES ('x');\n")
    with holder(pg) as conn:
        pid = pid_of(conn)
        entries = plan_entries(pg)
        table = pg.cli("plan", pg.glob())
    conflicts = entries["alter"]["lock_conflicts"]
    assert [(c["pid"], c["relation"], c["mode"], c["held_mode"], c["granted"],
             c["application_name"], c["state"], c["query"]) for c in conflicts] == [
        (pid, "ledger", "AccessExclusiveLock", "AccessShareLock", True, "report",
         "idle in transaction", "SELECT count(*) FROM ledger")]
    assert conflicts[0]["user"] == "postgres" and conflicts[0]["xact_seconds"] >= 0
    # an INSERT's ROW EXCLUSIVE does not conflict with a reader's ACCESS SHARE
    assert entries["insert"]["lock_conflicts"] == []
    oldest = entries["insert"]["oldest_transaction"]
    assert oldest is not None and oldest["pid"] == pid
    assert entries["p1"]["lock_conflicts"] == [] and entries["p1"]["oldest_transaction"] is None
    assert table.exit_code == 0  # information, not a problem
    assert (f"lock conflict: pid {pid} holds AccessShareLock on ledger"
            in table.stdout)



# rehearse shows the live plan's lock_conflicts, whose pg_locks query the plan tests above run on
# every major: on one major only (tests/conftest.py)
@pytest.mark.one_major
def test_rehearse_reports_the_live_lock_conflicts_of_each_patch(pg: Pg) -> None:
    """15.2: rehearse shows, beside what each patch locked on the copy, the live sessions
    whose locks conflict with it now (the live plan's lock_conflicts)."""
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("p/app.20240102.0001.postgres.alter.sql", ALTER)
    with holder(pg) as conn:
        pid = pid_of(conn)
        result = pg.cli("rehearse", "--format", "json", pg.glob())
        text = pg.cli("rehearse", pg.glob())
    assert result.exit_code == 0, result.output
    (alter,) = [p for p in json.loads(result.stdout)["patches"] if p["path"].endswith("alter.sql")]
    assert [(c["pid"], c["relation"], c["held_mode"], c["granted"])
            for c in alter["lock_conflicts"]] == [(pid, "ledger", "AccessShareLock", True)]
    assert text.exit_code == 0, text.output
    assert f"live: pid {pid} (postgres) holds AccessShareLock on ledger" in text.stdout

def test_a_session_waiting_for_a_conflicting_lock_shows_too(pg: Pg) -> None:
    """A reader holds ACCESS SHARE (no conflict with an INSERT); a second session waits
    for ACCESS EXCLUSIVE behind it: the INSERT would queue behind that one."""
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("p/app.20240102.0001.postgres.insert.sql", "INSERT INTO ledger VALUES ('x');\n")
    with holder(pg) as reader, pg.server.connect("app", autocommit=False) as waiter:
        waiter.execute("SET application_name = 'migrator'")
        waiting, reading = pid_of(waiter), pid_of(reader)
        thread = threading.Thread(target=lambda: _quietly(
            waiter, "LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE"))
        thread.start()
        try:
            wait_until(lambda: bool(pg.query(
                f"SELECT 1 FROM pg_locks WHERE pid = {waiting} AND NOT granted")))
            entries = plan_entries(pg)
        finally:
            pg.query(f"SELECT pg_cancel_backend({waiting})")
            thread.join(timeout=30)
    (conflict,) = entries["insert"]["lock_conflicts"]
    assert (conflict["pid"], conflict["held_mode"], conflict["granted"],
            conflict["application_name"]) == (waiting, "AccessExclusiveLock", False, "migrator")
    assert entries["insert"]["oldest_transaction"]["pid"] == reading
    entries = plan_entries(pg)
    assert entries["insert"]["lock_conflicts"] == []
    assert entries["insert"]["oldest_transaction"] is None


def _quietly(conn: psycopg.Connection, sql: str) -> None:
    with contextlib.suppress(psycopg.errors.QueryCanceled):
        conn.execute(sql)


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_plan_does_not_query_a_database_that_does_not_exist_yet(pg: Pg) -> None:
    ledger_tree(pg, 1)
    result = pg.cli("plan", pg.glob(), "--format", "json", "-l", "debug")
    assert result.exit_code == 0, result.stderr
    patches = json.loads(result.stdout)["patches"]
    assert len(patches) == STATE_PATCHES + 2
    assert all(p["lock_conflicts"] == [] and p["oldest_transaction"] is None
               for p in patches)
    assert "lock conflicts of" not in result.stderr


# -- apply: the lock budget ----------------------------------------------------------------

def records_of(pg: Pg, version: str, settled_only: bool = False) -> int:
    major, minor = version.split(".")
    return int(pg.query(
        "SELECT count(*) FROM installed_patches i JOIN databases d ON d.id = i.database_id "
        f"WHERE d.name = 'app' AND i.major = '{major}' AND i.minor = '{minor}'"
        + (" AND i.settled" if settled_only else ""), "patches")[0][0])


# the retries are pgpatch's lock budget, the same on every major: on one major only
# (tests/conftest.py); the server's lock timeout is on every major in the index tests below
@pytest.mark.one_major
def test_a_patch_blocked_by_a_held_lock_is_retried_and_applies_once_the_holder_commits(
        pg: Pg) -> None:
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    alter = pg.write("p/app.20240102.0001.postgres.alter.sql", ALTER)
    with holder(pg) as conn:
        proc = popen(pg, "apply", pg.glob(), "--lock-timeout", "100", "--lock-retries", "50")
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the first retry: the patch waited and was rolled back
        assert first.startswith(f"lock timeout: {alter}: retry 1 of 50 in "), first
        # no try has committed (the next one may have written its unsettled record already)
        assert records_of(pg, "20240102.0001", settled_only=True) == 0
        conn.commit()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert all(line.startswith(f"lock timeout: {alter}: retry ") for line in err.splitlines())
    assert pg.query("SELECT count(*) FROM information_schema.columns "
                    "WHERE table_name = 'ledger' AND column_name = 'note'", "app") == [(1,)]
    assert records_of(pg, "20240102.0001") == 1


# the retries are pgpatch's lock budget, the same on every major: on one major only
# (tests/conftest.py); the server's lock timeout is on every major in the index tests below
@pytest.mark.one_major
def test_with_the_holder_kept_apply_gives_up_within_its_budget_naming_the_blocker(
        pg: Pg) -> None:
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("p/app.20240102.0001.postgres.before.sql", "INSERT INTO ledger VALUES ('b');\n")
    alter = pg.write("p/app.20240102.0002.postgres.alter.sql", ALTER)
    pg.write("p/app.20240102.0003.postgres.after.sql", "INSERT INTO ledger VALUES ('a');\n")
    budget = LockBudget(100, 2)
    with holder(pg) as conn:
        pid = pid_of(conn)
        started = time.monotonic()
        result = pg.cli("apply", pg.glob(), "--lock-timeout", "100", "--lock-retries", "2",
                        "--format", "json")
        took = time.monotonic() - started
    assert result.exit_code == 1
    # retry lines go to stderr; stdout is the one JSON document, which names the failure
    doc = json.loads(result.stdout)
    assert "retry 1 of" not in result.stdout and doc["error"]["kind"] == "patch-failed"
    assert doc["failed"]["path"] == str(alter) and doc["failed"]["sqlstate"] == "55P03"
    assert budget.total_seconds is not None and took < budget.total_seconds + 10
    *retries, error, hint = result.stderr.splitlines()
    assert [line.split(" in ")[0] for line in retries] == [
        f"lock timeout: {alter}: retry 1 of 2", f"lock timeout: {alter}: retry 2 of 2"]
    assert error.startswith(f"error: {alter}:1: canceling statement due to lock timeout; "
                            "gave up after 2 retries in ")
    assert (f"(--lock-timeout 100 ms, --lock-retries 2); blocked by pid {pid} (postgres, "
            "report, idle in transaction for ") in error
    assert error.endswith(": SELECT count(*) FROM ledger) [SQLSTATE 55P03]")
    assert hint.startswith("hint: the next apply goes on from here")
    assert "Traceback" not in result.stderr
    assert ledger_counts(pg) == {"p1": 1, "b": 1}  # before it: applied; after it: not run
    assert records_of(pg, "20240102.0001") == 1 and records_of(pg, "20240102.0002") == 0
    again = pg.cli("apply", pg.glob())
    assert again.exit_code == 0, again.stderr
    assert ledger_counts(pg) == {"p1": 1, "b": 1, "a": 1}
    assert records_of(pg, "20240102.0002") == 1


# the retries are pgpatch's lock budget, the same on every major: on one major only
# (tests/conftest.py); the server's lock timeout is on every major in the index tests below
@pytest.mark.one_major
def test_a_blocked_non_transactional_statement_is_retried_alone(pg: Pg) -> None:
    """The INSERT before the VACUUM ran in autocommit and stays done: only the VACUUM is
    tried again, on giving up too, and the next run resumes at it."""
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    vacuum = pg.write("p/app.20240102.0001.postgres.vacuum.sql",
                      "INSERT INTO ledger VALUES ('nt');\nVACUUM ledger;\n")
    with holder(pg, "LOCK TABLE ledger IN SHARE UPDATE EXCLUSIVE MODE") as conn:
        pid = pid_of(conn)
        result = pg.cli("apply", pg.glob(), "--lock-timeout", "100", "--lock-retries", "1")
    assert result.exit_code == 1
    retry, error, _hint = result.stderr.splitlines()
    assert retry.startswith(f"lock timeout: {vacuum}: retry 1 of 1 in ")
    assert error.startswith(f"error: {vacuum}:2: canceling statement due to lock timeout; "
                            "gave up after 1 retry in ")
    assert f"blocked by pid {pid} (postgres, report, " in error
    assert error.endswith("; statements 1-1 of 2 ran and stay done, the next run resumes at "
                          "statement 2 [SQLSTATE 55P03]")
    assert ledger_counts(pg) == {"p1": 1, "nt": 1}
    with holder(pg, "LOCK TABLE ledger IN SHARE UPDATE EXCLUSIVE MODE") as conn:
        proc = popen(pg, "apply", pg.glob(), "--lock-timeout", "100", "--lock-retries", "50")
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith(f"lock timeout: {vacuum}: retry 1 of 50 in ")
        conn.commit()
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert ledger_counts(pg) == {"p1": 1, "nt": 1}  # the INSERT never ran again


def test_create_index_concurrently_waits_for_old_transactions_past_lock_timeout(
        pg: Pg) -> None:
    """Its own bound: it holds nobody up while it waits, so --lock-timeout does not cut it
    short (the writer keeps its transaction open ten times longer than that)."""
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("p/app.20240102.0001.postgres.index.sql",
             "CREATE INDEX CONCURRENTLY ledger_name ON ledger (name);\n")
    with pg.server.connect("app", autocommit=False) as writer:
        writer.execute("INSERT INTO ledger VALUES ('w')")
        release = threading.Timer(1.0, writer.commit)
        release.start()
        try:
            result = pg.cli("apply", pg.glob(), "--lock-timeout", "100")
        finally:
            release.join()
    assert result.exit_code == 0, result.stderr
    assert "lock timeout:" not in result.stderr
    assert pg.query("SELECT indisvalid FROM pg_index "
                    "WHERE indexrelid = 'ledger_name'::regclass", "app") == [(True,)]


def test_a_file_that_sets_lock_timeout_itself_keeps_it_for_its_concurrent_index(
        pg: Pg) -> None:
    ledger_tree(pg, 1)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    bad = pg.write("p/app.20240102.0001.postgres.index.sql",
                   "SET lock_timeout = '150ms';\n"
                   "CREATE INDEX CONCURRENTLY ledger_name ON ledger (name);\n")
    with pg.server.connect("app", autocommit=False) as writer:
        writer.execute("INSERT INTO ledger VALUES ('w')")
        result = pg.cli("apply", pg.glob())
        writer.rollback()
    assert result.exit_code == 1
    (error, _hint) = result.stderr.splitlines()
    assert error.startswith(f"error: {bad}:2: canceling statement due to lock timeout; "
                            "a CONCURRENTLY statement waits once")

