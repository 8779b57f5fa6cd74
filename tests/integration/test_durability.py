"""Applied means on disk: a patch apply reported as done survives a crash of the server.

Against a private server whose WAL writer sleeps 10 s, so that nothing reaches the disk behind
the run's back: a commit that did not wait for its own WAL flush would be lost by an immediate
stop (a crash). Each patch's COMMIT waits for its flush (docs/safety.md, "Durability"): every
patch apply printed, and every record, is still there after the crash, before any rerun.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from postgresqlpatches.pg.scratch import ScratchServer
from tests.integration.conftest import PASSWORDS, Pg

SETTINGS = {"wal_writer_delay": "10s", "fsync": "off"}
DONE = re.compile(r"^\S+\s+app 20240101\.(\d{4}) as postgres: ")


def _pg(server: ScratchServer, tmp_path: Path) -> Pg:
    env = dict(server.env())
    env.update({f"POSTGRESQL_{k}_PASSWORD": v for k, v in PASSWORDS.items()})
    pg = Pg(server, tmp_path / "tree", env)
    pg.write("app.00000000.0000.postgres.baseline.sql",
             "CREATE DATABASE app;\n\\connect app\nCREATE TABLE ledger (n int);\n")
    first = pg.run("apply", pg.glob())  # the state database and app, before the patches
    assert first.returncode == 0, first.stderr
    return pg


def _patches(pg: Pg, n: int, more: str = "") -> None:
    """Patches 1..n of app, each inserting its number into the ledger (then ``more``)."""
    for i in range(1, n + 1):
        pg.write(f"app.20240101.{i:04d}.postgres.p{i}.sql",
                 f"INSERT INTO ledger VALUES ({i});\n{more}")


def _settled(pg: Pg) -> int:
    return pg.query("SELECT count(*)::int FROM installed_patches p JOIN databases d "
                    "ON d.id = p.database_id WHERE d.name = 'app' AND major <> '00000000' "
                    "AND settled", "patches")[0][0]


def test_every_patch_of_a_finished_run_survives_a_crash_right_after_it(
        pg_server: ScratchServer, tmp_path: Path) -> None:
    with ScratchServer(pg_server.installation, settings=SETTINGS) as server:
        pg = _pg(server, tmp_path)
        _patches(pg, 30)
        done = pg.run("apply", pg.glob())
        assert done.returncode == 0, done.stderr
        assert len([line for line in done.stdout.splitlines() if DONE.match(line)]) == 30
        server.stop("immediate")  # what is only in the WAL buffers is gone
        server.restart()
        assert pg.query("SELECT count(*)::int, sum(n)::int FROM ledger", "app") == [(30, 465)]
        assert _settled(pg) == 30


def test_a_crash_mid_run_keeps_every_patch_reported_applied(
        pg_server: ScratchServer, tmp_path: Path) -> None:
    with ScratchServer(pg_server.installation, settings=SETTINGS) as server:
        pg = _pg(server, tmp_path)
        _patches(pg, 120, "SELECT pg_sleep(0.02);\n")
        proc = pg.popen("apply", pg.glob())
        deadline = time.monotonic() + 60
        while pg.query("SELECT count(*) >= 10 FROM ledger", "app") != [(True,)]:
            assert time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.05)
        server.stop("immediate")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (out, err)
        reported = {int(m.group(1)) for m in map(DONE.match, out.splitlines()) if m}
        assert len(reported) >= 9, out  # 10 committed: at most one not printed yet
        server.restart()
        # before any rerun: every patch printed as applied is there, and nothing else
        rows = {r[0] for r in pg.query("SELECT n FROM ledger", "app")}
        assert reported <= rows, sorted(reported - rows)
        assert len(rows) <= len(reported) + 1, (sorted(rows), sorted(reported))  # the one in flight
        again = pg.run("apply", pg.glob())
        assert again.returncode == 0, again.stderr
        counts = pg.query("SELECT n, count(*)::int FROM ledger GROUP BY n", "app")
        assert dict(counts) == {i: 1 for i in range(1, 121)}
