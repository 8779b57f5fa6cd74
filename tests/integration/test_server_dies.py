"""A server that dies in the middle of a run: one clear line, and the next run finishes the job."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from postgresqlpatches.pg.scratch import ScratchServer


def test_server_dying_mid_run_is_one_line_and_the_next_run_finishes(
        pg_server: ScratchServer, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "app.00000000.0000.postgres.baseline.sql").write_text(
        "CREATE DATABASE app;\n\\connect app\nCREATE TABLE ledger (name text);\n")
    for i in range(1, 121):
        (tree / f"app.20240101.{i:04d}.postgres.p{i}.sql").write_text(
            f"INSERT INTO ledger VALUES ('p{i}');\nSELECT pg_sleep(0.02);\n")
    with ScratchServer(pg_server.installation, settings={"fsync": "off"}) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRESQL_"))}
        env.update(server.env())
        env["POSTGRESQL_PATCHES_PASSWORD"] = "state-pw"
        args = [sys.executable, "-m", "postgresqlpatches", "apply", str(tree / "*.sql")]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with server.connect("postgres") as conn:
                if conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'app'"
                                ).fetchone() == (1,):
                    with server.connect("app") as app:
                        try:
                            row = app.execute("SELECT count(*) >= 10 FROM ledger").fetchone()
                        except psycopg.errors.UndefinedTable:
                            row = None  # the baseline is still running
                        if row == (True,):
                            break
            time.sleep(0.05)
        server.stop("immediate")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (out, err)
        assert err.startswith("error: "), err
        assert "Traceback" not in err and "state-pw" not in err
        assert len([x for x in err.splitlines() if x.startswith("error:")]) == 1

        server.restart()
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        with server.connect("app") as conn:
            counts = dict(conn.execute(
                "SELECT name, count(*)::int FROM ledger GROUP BY name").fetchall())
        assert counts == {f"p{i}": 1 for i in range(1, 121)}
