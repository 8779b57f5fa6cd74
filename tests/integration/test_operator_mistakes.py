"""What real operators do to a run: a pager that quits, a FIFO in the tree, PGOPTIONS, a lost
or mistyped state database, a record edited or restored by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.conftest import STATE_PATCHES, Pg

# what pgpatch makes of an operator's mistake (pipes, fifos, a lost or mistyped state database,
# adopt) is its own logic, the same on every major: on one major only (tests/conftest.py)
pytestmark = pytest.mark.one_major


BASELINE = """CREATE DATABASE app;
\\connect app
CREATE TABLE ledger (name text NOT NULL);
"""


def ledger_tree(pg: Pg, n: int) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for i in range(1, n + 1):
        pg.write(f"p/app.20240101.{i:04d}.postgres.p{i}.sql",
                 f"INSERT INTO ledger VALUES ('p{i}');\n")


def ledger_counts(pg: Pg) -> dict[str, int]:
    return dict(pg.query("SELECT name, count(*)::int FROM ledger GROUP BY name", "app"))


def plan_json(pg: Pg, *args: str) -> dict:
    return json.loads(pg.cli("plan", pg.glob(), "--format", "json", *args).stdout)


def popen(pg: Pg, *args: str, env: dict[str, str | None] | None = None,
          **kwargs: object) -> subprocess.Popen[str]:
    """pgpatch as a real process, stdout and stderr piped (Pg.popen)."""
    return pg.popen(*args, env=env, **kwargs)


# -- a reader that goes away (item 12) -------------------------------------------------------

@pytest.mark.parametrize("unbuffered", ["1", None], ids=["unbuffered", "buffered"])
def test_apply_piped_into_head_runs_to_the_end(pg: Pg, unbuffered: str | None) -> None:
    """`pgpatch apply ... | head -1`: the reader takes one line and goes; the run does not."""
    ledger_tree(pg, 50)
    proc = popen(pg, "apply", pg.glob(), env={"PYTHONUNBUFFERED": unbuffered})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline() if unbuffered else None  # buffered: nothing comes before the end
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "error" not in stderr
    assert ledger_counts(pg) == {f"p{i}": 1 for i in range(1, 51)}
    plan = plan_json(pg)
    assert plan["ok"] and plan["summary"]["apply"] == 0
    assert plan["summary"]["applied"] == 51 + STATE_PATCHES


def test_apply_with_stdout_and_stderr_closed_runs_to_the_end(pg: Pg) -> None:
    """`pgpatch apply ... >&- 2>&-`: fd 1 and 2 closed from the start."""
    ledger_tree(pg, 5)
    full = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRESQL_", "PG"))}
    full.update(pg.env)
    code = subprocess.run(
        ["sh", "-c", 'exec "$0" -m postgresqlpatches -l info apply "$1" >&- 2>&-',
         sys.executable, pg.glob()], env=full, timeout=120, check=False).returncode
    assert code == 0
    assert ledger_counts(pg) == {f"p{i}": 1 for i in range(1, 6)}


@pytest.mark.parametrize("command", ["plan", "status"])
def test_plan_and_status_into_a_closed_pipe_keep_their_exit_code(pg: Pg, command: str) -> None:
    ledger_tree(pg, 3)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    bad = pg.write("p/app.20240101.0001.postgres.p1.sql", "INSERT INTO ledger VALUES ('x');\n")
    for expected in (1, 0):  # a changed file: exit 1; restored: exit 0
        proc = popen(pg, command, pg.glob(), env={"PYTHONUNBUFFERED": None})
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == expected, stderr
        assert stderr == ""
        bad.write_text("INSERT INTO ledger VALUES ('p1');\n")


# -- the caller's PGOPTIONS (item 14) ----------------------------------------------------------

APP_SCHEMA_BASELINE = """CREATE DATABASE app;
\\connect app
CREATE SCHEMA app;
CREATE TABLE app.ledger (name text NOT NULL, search_path text);
"""


def test_pgoptions_search_path_reaches_patches_not_pgpatch_own_queries(pg: Pg) -> None:
    """PGOPTIONS='-c search_path=app': patch sessions (psql and psycopg, with or without the
    timeouts pgpatch adds) see it as a new psql session would; the state database's
    queries and pgpatch's own patches of it do not depend on it."""
    pg.write("app.00000000.0000.postgres.baseline.sql", APP_SCHEMA_BASELINE)
    pg.write("app.20240101.0001.postgres.one.sql",
             "INSERT INTO ledger VALUES ('one', current_setting('search_path'));\n")
    env = {"PGOPTIONS": "-c search_path=app"}
    first = pg.cli("apply", pg.glob(), env=env)
    assert first.exit_code == 0, first.stderr
    pg.write("app.20240102.0001.postgres.two.sql",
             "INSERT INTO ledger VALUES ('two', current_setting('search_path'));\n")
    plan = pg.cli("plan", pg.glob(), "--format", "json", env=env)
    assert plan.exit_code == 0, plan.stderr
    assert [p["action"] for p in json.loads(plan.stdout)["patches"]] == [
        *["applied"] * (STATE_PATCHES + 2), "apply"]
    second = pg.cli("apply", pg.glob(), "--lock-timeout", "5000", "--statement-timeout",
                    "60000", env=env)
    assert second.exit_code == 0, second.stderr
    status = pg.cli("status", pg.glob(), "--format", "json", env=env)
    assert status.exit_code == 0, status.stderr
    assert [r["version"] for r in json.loads(status.stdout)["records"]
            if r["database"] == "app"] == ["00000000.0000", "20240101.0001", "20240102.0001"]
    assert pg.query("SELECT name, search_path FROM app.ledger ORDER BY 1", "app") == [
        ("one", "app"), ("two", "app")]
    assert pg.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND "
                    "tablename IN ('databases', 'installed_patches')", "patches") == [(2,)]


# -- a record whose transaction the server never handed out (item 13) ------------------------

def test_a_record_with_a_transaction_id_from_the_future_is_named_with_what_to_do(
        pg: Pg) -> None:
    """As after the state database was restored onto another cluster: pg_xact_status would
    raise "transaction ID ... is in the future" and name no record."""
    ledger_tree(pg, 2)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    p2 = pg.tree / "p" / "app.20240101.0002.postgres.p2.sql"
    (rid,) = pg.query("UPDATE installed_patches SET xid = '4000000000', settled = false "
                      "WHERE name = 'app.20240101.0002.postgres.p2.sql' RETURNING id",
                      "patches")[0]
    message = (f"{p2}: the outcome of app 20240101.0002 is unknown: its transaction "
               "4000000000 is in the future of this server: the state database was restored "
               "from another cluster or an older backup, or the record was edited")
    hint = ("check by hand whether the patch took effect in database app; then, in the "
            "state database patches, settle its record if it did (UPDATE installed_patches "
            f"SET settled = true WHERE id = {rid}) or delete it so that the patch runs again "
            f"if it did not (DELETE FROM installed_patches WHERE id = {rid})")
    plan = pg.cli("plan", pg.glob())
    assert plan.exit_code == 1, plan.stderr
    assert f"problem: {message} [unsettled]\n  hint: {hint}\n" in plan.stdout
    applied = pg.cli("apply", pg.glob())
    assert applied.exit_code == 1
    assert applied.stderr.splitlines() == [f"error: {message}", f"hint: {hint}"]
    with_globs = pg.cli("status", pg.glob())
    assert with_globs.exit_code == 1 and f"problem: {message} [unsettled]" in with_globs.stdout
    alone = pg.cli("status")
    assert alone.exit_code == 0, alone.stderr
    assert f"problem: {message} [unsettled]\n  hint: {hint}\n" in alone.stdout
    data = json.loads(pg.cli("status", "--format", "json").stdout)
    assert [(p["kind"], p["path"]) for p in data["problems"]] == [("unsettled", str(p2))]
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}  # nothing ran again
    pg.query(f"UPDATE installed_patches SET settled = true WHERE id = {rid}", "patches")
    assert pg.cli("apply", pg.glob()).stdout.startswith("nothing to do")


# -- a lost, new or mistyped state database (item 5) -----------------------------------------

UNRECORDED = ("database app holds objects of its own (table ledger) "
              "but the state database {state} has no record of it: its patches would all run "
              "on it again")
ADOPT_HINT = ("if the state database was lost, restore it (or correct --state-db); else "
              "`pgpatch baseline app` to move an existing database over, or --adopt to apply "
              "the pending patches to it anyway (recorded from then on)")


def test_a_dropped_state_database_does_not_run_everything_again(pg: Pg) -> None:
    ledger_tree(pg, 2)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.query("DROP DATABASE patches WITH (FORCE)")  # by hand
    refused = pg.cli("apply", pg.glob())
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [f"error: {UNRECORDED.format(state='patches')}",
                                           f"hint: {ADOPT_HINT}"]
    assert pg.databases() == {"app"}  # not even the state database was made again
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}
    plan = pg.cli("plan", pg.glob(), "--format", "json")
    assert plan.exit_code == 1
    assert [(p["kind"], p["path"], p["message"], p["hint"])
            for p in json.loads(plan.stdout)["problems"]] == [
        ("unrecorded-database", None, UNRECORDED.format(state="patches"), ADOPT_HINT)]
    status = pg.cli("status", pg.glob())
    assert status.exit_code == 1 and "[unrecorded-database]" in status.stdout


def test_a_mistyped_state_database_runs_nothing(pg: Pg) -> None:
    ledger_tree(pg, 2)
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("p/app.20240102.0001.postgres.new.sql", "INSERT INTO ledger VALUES ('new');\n")
    refused = pg.cli("apply", "--state-db", "patchs", pg.glob())
    assert refused.exit_code == 1
    assert refused.stderr.splitlines()[0] == f"error: {UNRECORDED.format(state='patchs')}"
    assert pg.databases() == {"app", "patches"}
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}


def test_adopt_applies_the_pending_patches_and_records_them(pg: Pg) -> None:
    pg.query("CREATE DATABASE app")
    pg.query("CREATE TABLE ledger (name text NOT NULL)", "app")
    for i in (1, 2):
        pg.write(f"p/app.20240101.{i:04d}.postgres.p{i}.sql",
                 f"INSERT INTO ledger VALUES ('p{i}');\n")
    assert pg.cli("plan", pg.glob()).exit_code == 1
    planned = pg.cli("plan", "--adopt", pg.glob(), "--format", "json")
    assert planned.exit_code == 0, planned.stdout
    assert [p["action"] for p in json.loads(planned.stdout)["patches"]] == [
        "bootstrap", *["apply"] * (STATE_PATCHES - 1), "apply", "apply"]
    adopted = pg.cli("apply", "--adopt", pg.glob())
    assert adopted.exit_code == 0, adopted.stderr
    assert ledger_counts(pg) == {"p1": 1, "p2": 1}
    again = pg.cli("apply", pg.glob())  # recorded from then on: no --adopt needed
    assert again.exit_code == 0, again.stderr
    assert again.stdout.strip() == f"nothing to do: {STATE_PATCHES + 2} patches already applied"


def test_an_empty_database_made_by_hand_is_filled_without_adopt(pg: Pg) -> None:
    """Empty: nothing beyond what CREATE DATABASE copies from template1 (an object of
    template1's own included), nor the schema a temporary table leaves, nor a public schema
    made anew."""
    pg.query("CREATE SCHEMA pgpatch_test_tpl; CREATE TABLE pgpatch_test_tpl.t (a int)",
             "template1")
    try:
        pg.query("CREATE DATABASE app")
        assert pg.query("SELECT to_regclass('pgpatch_test_tpl.t') IS NOT NULL", "app") == [
            (True,)]
        pg.query("DROP SCHEMA public; CREATE SCHEMA public; CREATE TEMP TABLE scratch (a int)",
                 "app")
        assert pg.query("SELECT count(*) FROM pg_namespace WHERE nspname ~ '^pg_temp_'",
                        "app") != [(0,)]
        pg.write("app.20240101.0001.postgres.t.sql", "CREATE TABLE t (a int);\n")
        result = pg.cli("apply", pg.glob())
    finally:
        pg.query("DROP SCHEMA pgpatch_test_tpl CASCADE", "template1")
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT to_regclass('public.t') IS NOT NULL", "app") == [(True,)]


def test_only_databases_without_records_are_looked_into(
        pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero extra sessions when every database has records; a database that would get only
    its bootstrap (skipped: it exists) is not looked into either."""
    from postgresqlpatches.pg.server import Maintenance

    asked: list[str] = []
    real = Maintenance._user_objects

    def spy(self: Maintenance, database: str) -> list[tuple[int, int, str]]:
        asked.append(database)
        return real(self, database)

    monkeypatch.setattr(Maintenance, "_user_objects", spy)
    ledger_tree(pg, 1)
    pg.query("CREATE DATABASE other")
    pg.query("CREATE TABLE x (a int)", "other")
    pg.write("other.00000000.0000.postgres.baseline.sql", "CREATE DATABASE other;\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("p/app.20240102.0001.postgres.new.sql", "INSERT INTO ledger VALUES ('new');\n")
    for command in ("plan", "apply", "status"):
        assert pg.cli(command, pg.glob()).exit_code == 0
    assert asked == []
    pg.write("other.20240101.0001.postgres.t.sql", "CREATE TABLE t (a int);\n")
    assert pg.cli("plan", pg.glob()).exit_code == 1
    assert asked == ["other", "template1"]


# -- a FIFO named like a patch (item 15) -----------------------------------------------------

def test_a_fifo_named_like_a_patch_is_a_problem_not_a_hang(pg: Pg) -> None:
    ledger_tree(pg, 1)
    fifo = pg.tree / "p" / "app.20240102.0001.postgres.pipe.sql"
    os.mkfifo(fifo)
    for command in ("plan", "apply"):
        result = pg.run(command, pg.glob(), timeout=60)  # a regression hangs: TimeoutExpired
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert (f"problem: {fifo}: the file is a FIFO, not a regular file: pgpatch does not open "
            "it [unreadable]") in pg.run("plan", pg.glob(), timeout=60).stdout
    assert result.stderr.splitlines()[0] == (
        f"error: {fifo}: the file is a FIFO, not a regular file: pgpatch does not open it")
    assert pg.databases() == set()  # apply ran nothing
