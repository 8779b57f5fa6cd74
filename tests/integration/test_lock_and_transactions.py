"""The run's lock is never lost unnoticed; what plan accepts, apply runs as written.

Two real pgpatch processes against a real server: the lock's session survives the server's
timeouts; ended anyway (a DBA, pg_terminate_backend), the run stops before its next step and
a second run waits until the first has stopped working. Transaction options written in a
patch (a BEGIN ... COMMIT wrapper's, a leading SET TRANSACTION) are those it runs with.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from postgresqlpatches.pg.server import LOCK_KEY, RUN_APPLICATION_NAME
from tests.integration.conftest import Pg
from tests.integration.test_safety import BASELINE, ledger_counts, popen

LOCK_HOLDER = ("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
               f"AND classid = {LOCK_KEY[0]} AND objid = {LOCK_KEY[1]}")
GATE = 4242
"""An advisory lock the test holds: a patch that takes it waits there until the test lets go,
so each test decides exactly when a run is inside which step."""
AT_THE_GATE = "SELECT pg_advisory_xact_lock(4242);\n"
AT_THE_GATE_OPTIONS = ("--lock-timeout", "0")
"""A run that waits at the gate waits as long as the test holds it, not one lock_timeout."""
EARLIER_RUN_WARNING = "warning: an earlier pgpatch run is still working (server pid"


Start = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start(pg: Pg) -> Iterator[Start]:
    """Start ``pgpatch ARGS...`` as a real process; any still running at the end is killed
    (a test that fails must not leave runs waiting at its gate)."""
    procs: list[subprocess.Popen[str]] = []

    def run(*args: str) -> subprocess.Popen[str]:
        procs.append(popen(pg, *args))
        return procs[-1]

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    """Poll the server until ``check`` holds (the processes under test give no other sign)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def waiting_at_the_gate(pg: Pg, proc: subprocess.Popen[str], seconds: float = 0) -> bool:
    """A session waits for the gate, for at least ``seconds`` (or ``proc`` ended, which the
    test's assertions then report)."""
    return proc.poll() is not None or bool(pg.query(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND wait_event = 'advisory' AND query LIKE '%%pg_advisory_xact_lock(4242)%%' "
        f"AND now() - query_start >= interval '{seconds} s'"))


@contextlib.contextmanager
def gate(pg: Pg, database: str = "app") -> Iterator[psycopg.Connection]:
    with pg.server.connect(database) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [GATE])
        yield conn


def end_the_lock_session(pg: Pg) -> None:
    """What a DBA does to an idle session: end the lock holder's backend (and wait until it
    is gone, so that its end has reached the run)."""
    holders = pg.query(LOCK_HOLDER)
    assert len(holders) == 1, holders
    assert pg.query(f"SELECT pg_terminate_backend({holders[0][0]}, 10000)") == [(True,)]


def first_line(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The first line ``proc`` writes on stderr ("" if none comes in time: the test fails
    instead of hanging on a run that never says it waits)."""
    assert proc.stderr is not None
    readable, _, _ = select.select([proc.stderr], [], [], timeout)
    return proc.stderr.readline() if readable else ""


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def three_patches(pg: Pg, second: str) -> None:
    """app exists (its baseline applied); p1, p2 (``second``), p3 are pending."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    assert pg.cli("apply", str(pg.tree / "*.sql")).exit_code == 0
    pg.write("p/app.20240101.0001.postgres.p1.sql", "INSERT INTO ledger VALUES ('p1');\n")
    pg.write("p/app.20240101.0002.postgres.p2.sql", second)
    pg.write("p/app.20240101.0003.postgres.p3.sql", "INSERT INTO ledger VALUES ('p3');\n")


# A non-transactional patch: the INSERT after the gate is the one that must not run twice.
NON_TRANSACTIONAL_AT_THE_GATE = (AT_THE_GATE + "INSERT INTO ledger VALUES ('p2');\n"
                                 "VACUUM ledger;\n")


# -- item 6: the lock ------------------------------------------------------------------------

def test_an_idle_session_timeout_does_not_end_the_lock_and_the_second_run_waits(
        pg: Pg, start: Start) -> None:
    three_patches(pg, NON_TRANSACTIONAL_AT_THE_GATE)
    pg.query("ALTER ROLE postgres IN DATABASE postgres SET idle_session_timeout = '300ms'")
    try:
        with gate(pg):
            first = start("apply", pg.glob(), *AT_THE_GATE_OPTIONS)
            wait_for("the first run at the gate", lambda: waiting_at_the_gate(pg, first, 0.8))
            assert len(pg.query(LOCK_HOLDER)) == 1  # well past 300 ms idle, still there
            second = start("apply", pg.glob(), "--lock-wait", "60")
            assert "holds the lock: waiting up to 60 s" in first_line(second)
        code1, out1, err1 = finish(first)
        code2, out2, err2 = finish(second)
    finally:
        pg.query("ALTER ROLE postgres IN DATABASE postgres RESET idle_session_timeout")
    assert ledger_counts(pg) == {"p1": 1, "p2": 1, "p3": 1}
    assert (code1, code2) == (0, 0), (err1, err2)
    assert out2.startswith("nothing to do"), out2


def test_a_lost_lock_stops_the_run_and_the_second_waits_for_its_unfinished_statement(
        pg: Pg, start: Start) -> None:
    three_patches(pg, NON_TRANSACTIONAL_AT_THE_GATE)
    with gate(pg):
        first = start("apply", pg.glob(), *AT_THE_GATE_OPTIONS)
        wait_for("the first run at the gate", lambda: waiting_at_the_gate(pg, first))
        end_the_lock_session(pg)
        second = start("apply", pg.glob(), "--lock-wait", "60")
        assert first_line(second).startswith(EARLIER_RUN_WARNING)
    code1, _, err1 = finish(first)
    code2, out2, err2 = finish(second)
    assert ledger_counts(pg) == {"p1": 1, "p2": 1, "p3": 1}
    p2 = pg.tree / "p" / "app.20240101.0002.postgres.p2.sql"
    assert code1 == 1
    assert err1.splitlines() == [
        f"error: {p2}: the run lost its lock: its session on the maintenance database ended "
        "(terminating connection due to administrator command); stopped here, statements "
        "1-1 of 3 ran and stay done, the next run resumes at statement 2",
        "hint: 1 patch of this run was applied and recorded; the next run goes on from here"]
    assert code2 == 0, err2
    assert "app 20240101.0002" in out2 and "app 20240101.0003" in out2


def test_a_lost_lock_during_a_patch_stops_before_the_one_sent_behind_it(
        pg: Pg, start: Start) -> None:
    three_patches(pg, "INSERT INTO ledger VALUES ('p2');\n" + AT_THE_GATE)
    with gate(pg):
        first = start("apply", pg.glob(), *AT_THE_GATE_OPTIONS)
        wait_for("the first run at the gate", lambda: waiting_at_the_gate(pg, first))
        end_the_lock_session(pg)
    code1, _, err1 = finish(first)
    p3 = pg.tree / "p" / "app.20240101.0003.postgres.p3.sql"
    assert code1 == 1
    assert err1.splitlines()[0] == (
        f"error: {p3}: the run lost its lock: its session on the maintenance database ended "
        "(terminating connection due to administrator command); stopped here, nothing of it "
        "ran")
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}  # p2 committed; p3, sent behind, rolled back
    again = pg.cli("apply", pg.glob())
    assert again.exit_code == 0, again.stderr
    assert ledger_counts(pg) == {"p1": 1, "p2": 1, "p3": 1}


def test_a_lost_lock_during_a_bootstrap_never_lets_the_second_run_drop_it(
        pg: Pg, start: Start) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql",
             "CREATE DATABASE app;\n" + AT_THE_GATE +
             "\\connect app\nCREATE TABLE ledger (name text NOT NULL);\n")
    pg.write("p/app.20240101.0001.postgres.p1.sql", "INSERT INTO ledger VALUES ('p1');\n")
    with gate(pg, "postgres"):
        first = start("apply", pg.glob(), *AT_THE_GATE_OPTIONS)
        wait_for("the baseline at the gate", lambda: waiting_at_the_gate(pg, first))
        end_the_lock_session(pg)
        second = start("apply", pg.glob(), "--lock-wait", "60")
        assert first_line(second).startswith(EARLIER_RUN_WARNING)
    code1, _, err1 = finish(first)
    code2, _, err2 = finish(second)
    p1 = pg.tree / "p" / "app.20240101.0001.postgres.p1.sql"
    assert code1 == 1
    assert err1.startswith(f"error: {p1}: the run lost its lock: "), err1
    assert code2 == 0, err2
    assert "interrupted" not in err2 and "dropping" not in err2  # no redo of the first's work
    assert ledger_counts(pg) == {"p1": 1}


def test_a_second_run_gives_up_on_an_earlier_run_that_keeps_working(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    with pg.server.connect("postgres", application_name=RUN_APPLICATION_NAME) as stuck:
        pid = stuck.info.backend_pid
        result = pg.cli("apply", pg.glob(), "--lock-wait", "1")
    assert result.exit_code == 1
    warning, error, hint = result.stderr.splitlines()
    assert warning == (f"warning: an earlier pgpatch run is still working (server pid {pid}) "
                       "although it lost its lock: waiting up to 1 s for it to stop "
                       "(--lock-wait)")
    assert error == (f"error: an earlier pgpatch run lost its lock but is still working "
                     f"(server pid {pid}) after 1 s")
    assert hint.startswith("hint: it stops before its next step: wait for it")
    assert pg.databases() == set()


# -- item 11: transactions as written --------------------------------------------------------

def applied(pg: Pg, *files: tuple[str, str]) -> tuple[int, str]:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for name, text in files:
        pg.write(name, text)
    result = pg.cli("apply", pg.glob())
    return result.exit_code, result.stderr


def test_a_bootstrap_script_with_create_index_concurrently_runs(pg: Pg) -> None:
    code, err = applied(pg, ("app.00000000.0001.postgres.index.sql",
                             "CREATE INDEX CONCURRENTLY ledger_name ON ledger (name);\n"))
    assert code == 0, err
    assert pg.query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ledger_name'::regclass",
                    "app") == [(True,)]


def test_a_leading_set_transaction_is_the_transactions_own(pg: Pg) -> None:
    code, err = applied(
        pg, ("app.20240101.0001.postgres.serial.sql",
             "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n"
             "INSERT INTO ledger SELECT current_setting('transaction_isolation');\n"),
        ("app.20240101.0002.postgres.plain.sql",
         "INSERT INTO ledger SELECT current_setting('transaction_isolation');\n"))
    assert code == 0, err
    assert ledger_counts(pg) == {"serializable": 1, "read committed": 1}


def test_a_read_only_wrapper_stays_read_only(pg: Pg) -> None:
    code, err = applied(pg, ("app.20240101.0001.postgres.ro.sql",
                             "BEGIN READ ONLY;\nINSERT INTO ledger VALUES ('written');\nCOMMIT;\n"))
    assert code == 1
    assert "cannot execute INSERT in a read-only transaction [SQLSTATE 25006]" in err
    assert ledger_counts(pg) == {}
    records = json.loads(pg.cli("status", "--format", "json").stdout)["records"]
    assert [r["version"] for r in records if r["database"] == "app"] == ["00000000.0000"]


@pytest.mark.parametrize("begin, setting, value", [
    ("BEGIN ISOLATION LEVEL REPEATABLE READ", "transaction_isolation", "repeatable read"),
    ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
     "transaction_deferrable", "on"),
    ("BEGIN TRANSACTION", "transaction_read_only", "off"),
])
def test_a_wrappers_options_are_honoured(pg: Pg, begin: str, setting: str, value: str) -> None:
    check = (f"DO $$ BEGIN IF current_setting('{setting}') <> '{value}' THEN "
             f"RAISE EXCEPTION '{setting} is %', current_setting('{setting}'); END IF; END $$;\n")
    code, err = applied(pg, ("app.20240101.0001.postgres.wrapped.sql",
                             f"{begin};\n{check}COMMIT;\n"))
    assert code == 0, err


@pytest.mark.parametrize("text, line, message", [
    ("INSERT INTO ledger VALUES ('a');\nSET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n", 2,
     "SET TRANSACTION after the first statement of a patch"),
    ("SET TRANSACTION SNAPSHOT '00000003-0000001B-1';\nSELECT 1;\n", 1,
     "SET TRANSACTION SNAPSHOT in a patch"),
    ("SET LOCAL transaction_isolation = serializable;\nSELECT 1;\n", 1,
     "SET transaction_isolation inside a patch"),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE;\nVACUUM ledger;\nCOMMIT;\n", 1,
     "transaction options in a file that runs outside a transaction (VACUUM)"),
])
def test_transaction_options_pgpatch_cannot_honour_are_refused_up_front(
        pg: Pg, text: str, line: int, message: str) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    path = pg.write("app.20240101.0001.postgres.opts.sql", text)
    plan = pg.cli("plan", pg.glob(), "--format", "json")
    problems = json.loads(plan.stdout)["problems"]
    assert [(p["kind"], p["line"]) for p in problems] == [("transaction-control", line)]
    assert problems[0]["message"].startswith(message), problems[0]["message"]
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}:{line}: {message}")
    assert pg.databases() == set()


def test_a_block_amid_a_patch_commits_with_the_whole_file_or_not_at_all(pg: Pg) -> None:
    """Prisma's enum rewrite: a BEGIN ... COMMIT block amid other statements. The file is one
    transaction: when a statement after the block fails, the block is rolled back too."""
    block = ("INSERT INTO ledger VALUES ('before');\nBEGIN;\n"
             "INSERT INTO ledger VALUES ('block');\nCOMMIT;\n")
    code, err = applied(pg, ("app.20240101.0001.postgres.prisma.sql",
                             block + "SELECT 1 / 0;\n"))
    assert code == 1 and "division by zero [SQLSTATE 22012]" in err
    assert ledger_counts(pg) == {}
    pg.write("app.20240101.0001.postgres.prisma.sql",
             block + "INSERT INTO ledger VALUES ('after');\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    assert ledger_counts(pg) == {"before": 1, "block": 1, "after": 1}
