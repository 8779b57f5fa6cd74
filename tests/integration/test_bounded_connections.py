"""A run needs a bounded number of connections, whatever the number of databases
(pg/session.py CONNECTIONS, docs/safety.md): 300 databases on a server that allows 20."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from psycopg import sql

from postgresqlpatches.pg.scratch import ScratchServer
from postgresqlpatches.pg.session import CONNECTIONS
from tests.integration.conftest import STATE_PATCHES

DATABASES = 300
EXISTING = DATABASES // 2
"""The first half exist before the run (a fleet's databases), the second half are made by
their bootstraps in the run."""


def _tree(tree: Path) -> None:
    """Each existing database: a patch as postgres and one as another user, so sessions
    alternate between users of one database too. Each new database: a psql baseline, a
    bootstrap script in a session, and a patch."""
    tree.mkdir()
    for i in range(EXISTING):
        db = f"fleet{i:03d}"
        (tree / f"{db}.20240101.0001.postgres.schema.sql").write_text(
            "CREATE TABLE ledger (n int);\nGRANT ALL ON ledger TO PUBLIC;\n")
        (tree / f"{db}.20240101.0002.tenant.first.sql").write_text(
            "INSERT INTO ledger VALUES (1);\n")
        (tree / f"{db}.20240101.0003.postgres.second.sql").write_text(
            "INSERT INTO ledger VALUES (2);\n")
    for i in range(EXISTING, DATABASES):
        db = f"tenant{i:03d}"
        (tree / f"{db}.00000000.0000.postgres.baseline.sql").write_text(
            f"CREATE DATABASE {db};\n")
        (tree / f"{db}.00000000.0001.postgres.schema.sql").write_text(
            "CREATE TABLE ledger (n int);\nGRANT ALL ON ledger TO PUBLIC;\n")
        (tree / f"{db}.20240101.0001.postgres.first.sql").write_text(
            "INSERT INTO ledger VALUES (1);\n")


class Peak(threading.Thread):
    """The most client sessions the server lists at once besides this sampler's own (its
    session opens here, before a test counts pgpatch's connections in process)."""

    def __init__(self, server: ScratchServer) -> None:
        super().__init__(daemon=True)
        self.conn = server.connect("postgres", autocommit=True)
        self.peak = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with self.conn as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    " AND pid <> pg_backend_pid()").fetchone()
                assert row is not None
                self.peak = max(self.peak, int(row[0]))
                self.samples += 1
                time.sleep(0.002)


@pytest.mark.one_major
def test_three_hundred_databases_on_a_server_that_allows_twenty_connections(
        pg_server: ScratchServer, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _tree(tree)
    settings = {"fsync": "off", "max_connections": "20"}
    with ScratchServer(pg_server.installation, settings=settings) as server:
        with server.connect("postgres", autocommit=True) as conn:
            conn.execute("CREATE ROLE tenant LOGIN PASSWORD 'tenant-pw'")
            for i in range(EXISTING):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(
                    sql.Identifier(f"fleet{i:03d}")))
            assert conn.execute("SHOW max_connections").fetchone() == ("20",)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRESQL_"))}
        env.update(server.env())
        env["POSTGRESQL_PATCHES_PASSWORD"] = "state-pw"
        env["POSTGRESQL_TENANT_PASSWORD"] = "tenant-pw"
        sampler = Peak(server)
        sampler.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "postgresqlpatches", "apply", str(tree / "*.sql")],
                env=env, capture_output=True, text=True, timeout=900, check=False)
        finally:
            sampler.stop.set()
            sampler.join()
        assert done.returncode == 0, done.stderr[-2000:]
        assert "too many clients" not in done.stderr
        patches = EXISTING * 3 + (DATABASES - EXISTING) * 3
        assert f"applied {STATE_PATCHES + patches} patches" in done.stdout, done.stdout[-500:]
        with server.connect("patches") as conn:
            counts = conn.execute(
                "SELECT count(*), count(DISTINCT (database_id, major, minor)) "
                "FROM installed_patches").fetchone()
        assert counts == (STATE_PATCHES + patches, STATE_PATCHES + patches)
        with server.connect("fleet149") as conn:
            assert conn.execute("SELECT n FROM ledger ORDER BY n").fetchall() == [(1,), (2,)]
        with server.connect("tenant299") as conn:
            assert conn.execute("SELECT n FROM ledger").fetchall() == [(1,)]
        print(f"peak sessions {sampler.peak} in {sampler.samples} samples, bound {CONNECTIONS}")
        assert sampler.samples > 100
        assert 3 <= sampler.peak <= CONNECTIONS, sampler.peak
