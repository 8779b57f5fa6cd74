"""``apply --jobs N`` on a group: up to N of its databases at once on one server, each
through its pending patches in version order, exactly once; a failing database stops only
itself; --fail-fast starts nothing new; a kill or Ctrl-C leaves nothing twice and nothing
lost; the run's connections stay within pg/session.py connections(N)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from postgresqlpatches.pg.scratch import ScratchServer
from postgresqlpatches.pg.session import CONNECTIONS, connections
from tests.integration import test_database_groups
from tests.integration.conftest import Pg
from tests.integration.test_bounded_connections import Peak
from tests.integration.test_database_groups import FAIL_ON, LEDGER, make_databases, tenants
from tests.integration.test_database_groups import all_records as every_record

project = test_database_groups.project
"""The fixture: the folder with the group's config file (the same as there)."""

pytestmark = pytest.mark.one_major

UNTIL_FIXED = """DO $$ BEGIN
  IF current_database() = '{db}' AND to_regclass('fixed') IS NULL THEN
    RAISE EXCEPTION 'boom in %', current_database();
  END IF;
END $$;
INSERT INTO ledger VALUES ('p2');
"""
"""Fails on one database until it has a table ``fixed``."""

GATE = 4711
GATED = """SELECT pg_advisory_lock_shared({key}) WHERE current_database() = '{db}';
INSERT INTO ledger VALUES ('p2');
"""
"""A patch that waits at the test's gate (an advisory lock the test holds) on one database."""


def all_records(pg: Pg) -> dict[str, list[tuple[str, str]]]:
    """The group databases' records (version, name) in version order (the state database's
    own are not the group's)."""
    return {db: r for db, r in every_record(pg).items() if db != "patches"}


def ledgers(pg: Pg, members: list[str]) -> dict[str, list[str]]:
    """Each database's ledger rows in the order they were written (none: no table)."""
    out: dict[str, list[str]] = {}
    for db in members:
        try:
            out[db] = [r[0] for r in pg.query("SELECT patch FROM ledger ORDER BY ctid", db)]
        except psycopg.errors.UndefinedTable:
            out[db] = []
    return out


def three_patches(pg: Pg, second: str = LEDGER.format(n="p2")) -> None:
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", LEDGER.format(n="p1"))
    pg.write("db/@tenants.20250301.0002.postgres.two.sql", second)
    pg.write("db/@tenants.20250301.0003.postgres.three.sql", LEDGER.format(n="p3"))


def expected_records(db: str, n: int = 3) -> list[tuple[str, str]]:
    names = ["one", "two", "three"]
    return [(f"20250301.000{i}", f"{db}.20250301.000{i}.postgres.{names[i - 1]}.sql")
            for i in range(1, n + 1)]


def wait_at_gate(pg: Pg, proc: subprocess.Popen[str], db: str) -> None:
    """Until the patch of ``db`` waits at the gate."""
    deadline = time.monotonic() + 60
    while not pg.query(f"SELECT 1 FROM pg_stat_activity WHERE datname = '{db}' "
                       "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the patch never reached the gate"
        time.sleep(0.02)


def test_200_databases_four_at_once_one_failing_stops_only_itself(pg: Pg,
                                                                  project: Path) -> None:
    members = tenants(200)
    make_databases(pg, *members, "other")
    three_patches(pg, FAIL_ON.format(db="tenant_100"))
    result = pg.cli("apply", "--jobs", "4")
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert any(line.startswith("error: db/@tenants.20250301.0002.postgres.two.sql:")
               and "in database tenant_100 of group tenants: " in line
               and "boom in tenant_100" in line for line in lines), result.stderr
    assert lines[-2] == "error: 1 database of a group failed: tenant_100"
    assert "Traceback" not in result.output
    on_record = all_records(pg)
    written = ledgers(pg, members)
    for db in members:
        if db == "tenant_100":  # its 0002 rolled back, its 0003 never ran
            assert (written[db], on_record[db]) == (["p1"], expected_records(db, 1))
        else:  # every other database: each patch once, in version order
            assert (written[db], on_record[db]) == (["p1", "p2", "p3"], expected_records(db))
    assert "other" not in on_record
    # 598 patches of this run (199 x 3 and tenant_100's first), each a progress line
    assert len([x for x in result.stdout.splitlines() if x.startswith("apply     tenant_")]) \
        == 598
    again = pg.cli("apply", "--jobs", "4")
    assert again.exit_code == 1
    assert again.stderr.splitlines()[-2] == "error: 1 database of a group failed: tenant_100"
    assert all_records(pg) == on_record


def test_failed_databases_are_named_in_name_order_whichever_failed_first(
        pg: Pg, project: Path) -> None:
    members = tenants(8)
    make_databases(pg, *members)
    pg.write("db/@tenants.20250301.0001.postgres.one.sql", """DO $$ BEGIN
  IF current_database() = 'tenant_002' THEN PERFORM pg_sleep(1.5); END IF;
  IF current_database() IN ('tenant_002', 'tenant_003') THEN
    RAISE EXCEPTION 'boom in %', current_database();
  END IF;
END $$;
""")
    result = pg.cli("apply", "--jobs", "4")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    failed = [line for line in lines if "in database tenant_00" in line]
    assert ["tenant_003" in failed[0], "tenant_002" in failed[1]] == [True, True], failed
    assert lines[-2] == "error: 2 databases of a group failed: tenant_002, tenant_003"


def test_members_run_side_by_side_while_one_waits(pg: Pg, project: Path) -> None:
    """One database's patch waits at a gate; with --jobs 2 the other databases go on
    meanwhile and finish (one at a time, they would all wait behind it)."""
    members = tenants(12)
    make_databases(pg, *members)
    three_patches(pg, GATED.format(key=GATE, db="tenant_001"))
    with pg.server.connect("tenant_001", autocommit=True) as gate:  # advisory locks: per db
        gate.execute("SELECT pg_advisory_lock(%s)", [GATE])
        proc = pg.popen("apply", "--jobs", "2", "--lock-timeout", "0", interruptible=True,
                        cwd=pg.tree)
        try:
            wait_at_gate(pg, proc, "tenant_001")
            deadline = time.monotonic() + 60
            others = members[1:]
            while ledgers(pg, others) != {db: ["p1", "p2", "p3"] for db in others}:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, ledgers(pg, members)
                time.sleep(0.05)
            assert ledgers(pg, ["tenant_001"]) == {"tenant_001": ["p1"]}  # still at the gate
            assert proc.poll() is None
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", [GATE])
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert all_records(pg) == {db: expected_records(db) for db in members}
    assert ledgers(pg, members) == {db: ["p1", "p2", "p3"] for db in members}


def test_fail_fast_with_jobs_starts_no_new_database(pg: Pg, project: Path) -> None:
    members = tenants(200)
    make_databases(pg, *members)
    three_patches(pg, UNTIL_FIXED.format(db="tenant_005"))
    result = pg.cli("apply", "--jobs", "4", "--fail-fast")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: db/@tenants.20250301.0002.postgres.two.sql:1: in database tenant_005 of "
        "group tenants: "), result.stderr
    assert "Traceback" not in result.output
    on_record = all_records(pg)
    written = ledgers(pg, members)
    for db in members:  # what ran is recorded, each patch once, in order
        n = len(on_record.get(db, []))
        assert on_record.get(db, []) == expected_records(db, n), db
        assert written[db] == ["p1", "p2", "p3"][:n], db
    assert on_record["tenant_005"] == expected_records("tenant_005", 1)
    # the running ones stopped before their next patch; no later database started
    assert not any(on_record.get(db) for db in members[20:]), sorted(on_record)
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith("stopped: ") and "tenant_005" in summary, result.stdout
    # fixed, the next run does the rest (tenant_005's 0002 rolled back: no record), once
    pg.query("CREATE TABLE fixed ()", "tenant_005")
    again = pg.cli("apply", "--jobs", "4")
    assert again.exit_code == 0, again.output
    assert all_records(pg) == {db: expected_records(db) for db in members}
    assert ledgers(pg, members) == {db: ["p1", "p2", "p3"] for db in members}


def test_a_new_database_catches_up_with_jobs(pg: Pg, project: Path) -> None:
    members = tenants(6)
    make_databases(pg, *members)
    three_patches(pg)
    assert pg.cli("apply", "--jobs", "3").exit_code == 0
    make_databases(pg, "tenant_007")
    pg.write("db/@tenants.20250302.0001.postgres.four.sql", LEDGER.format(n="p4"))
    result = pg.cli("apply", "--jobs", "3")
    assert result.exit_code == 0, result.output
    assert "applied 10 patches to 7 databases" in result.stdout, result.stdout
    written = ledgers(pg, [*members, "tenant_007"])
    assert written == {db: ["p1", "p2", "p3", "p4"] for db in [*members, "tenant_007"]}
    assert all(len(r) == 4 for r in all_records(pg).values())


def test_a_kill_mid_run_then_a_rerun_runs_nothing_twice_and_loses_nothing(
        pg: Pg, project: Path) -> None:
    members = tenants(40)
    make_databases(pg, *members)
    three_patches(pg)
    killed = pg.run("apply", "--jobs", "4", env={"PGPATCH_CRASH_AT": "after-record:50"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = all_records(pg)
    assert 0 < sum(map(len, before.values())) < 120
    rerun = pg.cli("apply", "--jobs", "4")
    assert rerun.exit_code == 0, rerun.output
    assert all_records(pg) == {db: expected_records(db) for db in members}
    assert ledgers(pg, members) == {db: ["p1", "p2", "p3"] for db in members}
    settled = pg.query("SELECT count(*) FILTER (WHERE NOT settled) FROM installed_patches",
                       "patches")
    assert settled == [(0,)]


def test_ctrl_c_lets_each_running_database_finish_its_patch_and_starts_nothing_new(
        pg: Pg, project: Path) -> None:
    members = tenants(12)
    make_databases(pg, *members)
    three_patches(pg, GATED.format(key=GATE, db="tenant_006"))
    with pg.server.connect("tenant_006", autocommit=True) as gate:  # advisory locks: per db
        gate.execute("SELECT pg_advisory_lock(%s)", [GATE])
        proc = pg.popen("apply", "--jobs", "3", "--lock-timeout", "0", interruptible=True,
                        cwd=pg.tree)
        try:
            wait_at_gate(pg, proc, "tenant_006")
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()  # it waits for tenant_006's patch
        finally:
            gate.execute("SELECT pg_advisory_unlock(%s)", [GATE])
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "interrupted (Ctrl-C) between two patches: none was running" in err, err
    assert "Traceback" not in err
    on_record = all_records(pg)
    assert on_record["tenant_006"][:2] == expected_records("tenant_006", 2)  # it finished
    written = ledgers(pg, members)
    for db in members:
        n = len(on_record.get(db, []))
        assert on_record.get(db, []) == expected_records(db, n), db
        assert written[db] == ["p1", "p2", "p3"][:n], db
    assert not all(len(on_record.get(db, [])) == 3 for db in members)  # it stopped
    again = pg.cli("apply", "--jobs", "3")
    assert again.exit_code == 0, again.output
    assert all_records(pg) == {db: expected_records(db) for db in members}
    assert ledgers(pg, members) == {db: ["p1", "p2", "p3"] for db in members}


def test_with_jobs_each_patch_still_starts_in_a_new_sessions_state(pg: Pg,
                                                                    project: Path) -> None:
    members = tenants(6)
    make_databases(pg, *members)
    pg.write("db/@tenants.20250301.0001.postgres.one.sql",
             "CREATE TABLE seen (setting text);\nSET work_mem = '7MB';\n"
             "SELECT set_config('pgpatch.test', 'leaked', false);\n")
    pg.write("db/@tenants.20250301.0002.postgres.two.sql",
             "INSERT INTO seen VALUES (current_setting('work_mem') || ' ' || "
             "coalesce(current_setting('pgpatch.test', true), ''));\n")
    result = pg.cli("apply", "--jobs", "3")
    assert result.exit_code == 0, result.output
    default = pg.query("SHOW work_mem")[0][0]
    for db in members:
        assert pg.query("SELECT setting FROM seen", db) == [(f"{default} ",)], db


def test_jobs_goes_without_targets_on_apply_only(pg: Pg, project: Path) -> None:
    make_databases(pg, "tenant_001")
    three_patches(pg)
    for command in ("plan", "status"):
        result = pg.cli(command, "--jobs", "2")
        assert result.exit_code == 2
        assert "--jobs goes with -t/--target" in result.output
    assert pg.cli("apply", "--jobs", "0").exit_code == 2


class _OpenConnections(threading.Thread):
    """The most psycopg connections pgpatch (in this process) holds open at once: each one
    it opens is kept, and a sampler counts those not closed yet."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(daemon=True)
        self.opened: list[psycopg.Connection] = []
        self.peak = 0
        self.stop = threading.Event()
        real = psycopg.connect

        def connect(*args: object, **kwargs: object) -> psycopg.Connection:
            conn = real(*args, **kwargs)  # type: ignore[arg-type]
            self.opened.append(conn)
            self._count()
            return conn

        monkeypatch.setattr(psycopg, "connect", connect)

    def _count(self) -> None:
        self.peak = max(self.peak, sum(not c.closed for c in list(self.opened)))

    def run(self) -> None:
        while not self.stop.is_set():
            self._count()
            time.sleep(0.0005)


def test_200_databases_with_jobs_4_on_a_server_that_allows_eight_connections(
        pg_server: ScratchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from postgresqlpatches.cli import main

    tree = tmp_path / "tree"
    (tree / "db").mkdir(parents=True)
    (tree / "pgpatch.toml").write_text(
        'patches = ["db/*.sql"]\n[groups.tenants]\ndatabases = ["tenant_*"]\n')
    for i in range(1, 6):
        (tree / "db" / f"@tenants.20250301.000{i}.postgres.p{i}.sql").write_text(
            LEDGER.format(n=f"p{i}"))
    members = tenants(200)
    settings = {"fsync": "off", "max_connections": "8", "shared_buffers": "16MB"}
    with ScratchServer(pg_server.installation, settings=settings) as server:
        with server.connect("postgres", autocommit=True) as conn:
            for db in members:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                    sql.Identifier(db)))
        env: dict[str, str | None] = {k: None for k in os.environ
                                      if k.startswith(("PG", "POSTGRESQL_"))}
        env.update(server.env())
        env["POSTGRESQL_PATCHES_PASSWORD"] = "state-pw"
        monkeypatch.chdir(tree)
        listed = Peak(server)
        held = _OpenConnections(monkeypatch)
        listed.start()
        held.start()
        try:
            done = CliRunner().invoke(main, ["apply", "--jobs", "4"], env=env,
                                      catch_exceptions=False)
        finally:
            listed.stop.set()
            held.stop.set()
            listed.join()
            held.join()
        assert done.exit_code == 0, done.output[-2000:]
        assert "too many clients" not in done.output
        with server.connect("patches") as conn:
            counts = conn.execute(
                "SELECT count(*), count(DISTINCT (database_id, major, minor)) "
                "FROM installed_patches WHERE major = '20250301'").fetchone()
        assert counts == (1000, 1000)
        with server.connect("tenant_200") as conn:
            assert conn.execute("SELECT patch FROM ledger ORDER BY ctid").fetchall() == [
                (f"p{i}",) for i in range(1, 6)]
        print(f"peak: {held.peak} connections held, {listed.peak} sessions listed by the "
              f"server in {listed.samples} samples; bound {connections(4)}")
        assert listed.samples > 100
        # the lock's, the state database's and four members' at once: more than a run of
        # members one at a time ever holds (4), never more than connections(4)
        assert connections(4) == 6
        assert CONNECTIONS - 1 < held.peak <= connections(4), held.peak
        # the server may list one more for a moment: a member's session that pgpatch has
        # closed is listed until its backend has exited, while the next one logs in
        assert CONNECTIONS - 1 < listed.peak <= connections(4) + 1, listed.peak
