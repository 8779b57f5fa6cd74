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

from tests.integration.conftest import STATE_PATCHES, Pg
from tests.integration.test_safety import ledger_tree

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
