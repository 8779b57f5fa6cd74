"""Targets (-t/--target, --jobs, --fail-fast): several real servers in one run, each with its
own lock, plan, passwords and result; a failing server fails only its own rows."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from postgresqlpatches import fleet, runner
from postgresqlpatches.pg.scratch import ScratchServer
from tests.integration.conftest import STATE_PATCHES, reset_server

NAMES = ("eu1", "eu2", "us1")
SMALL = {"fsync": "off", "shared_buffers": "16MB", "max_connections": "20"}


@pytest.fixture(scope="module")
def servers(pg_server: ScratchServer) -> Iterator[dict[str, ScratchServer]]:
    """Three small servers of the session's major, each with a superuser password of its own."""
    started: dict[str, ScratchServer] = {}
    try:
        for name in NAMES:
            server = ScratchServer(pg_server.installation, password=f"su-{name}-pw",
                                   settings=SMALL)
            server.start()
            started[name] = server
        yield started
    finally:
        for server in started.values():
            server.cleanup()


@dataclass
class Fleet:
    """A test's view of the servers: a patch tree, each target's passwords, and pgpatch."""

    servers: dict[str, ScratchServer]
    tree: Path
    env: dict[str, str] = field(default_factory=dict)

    def write(self, name: str, text: str) -> None:
        path = self.tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def glob(self) -> str:
        return str(self.tree / "*.sql")

    def targets(self, *names: str, **base: Any) -> list[fleet.Target]:
        options = runner.Options(globs=(self.glob(),), **base)
        return [fleet.make_target(n, {"host": self.servers[n].host,
                                      "port": self.servers[n].port,
                                      "prefix": f"{n.upper()}_", "sslmode": "disable"},
                                  options) for n in (names or NAMES)]

    def ledger(self, name: str) -> dict[str, int]:
        with self.servers[name].connect("app", sslmode="disable") as conn:
            return dict(conn.execute(
                "SELECT name, count(*)::int FROM ledger GROUP BY name").fetchall())

    def records(self, name: str) -> list[tuple[Any, ...]]:
        with self.servers[name].connect("patches", sslmode="disable") as conn:
            return conn.execute(
                "SELECT d.name, p.major, p.minor, p.name FROM installed_patches p "
                "JOIN databases d ON d.id = p.database_id ORDER BY 1, 2, 3").fetchall()

    def has_state(self, name: str) -> bool:
        with self.servers[name].connect(sslmode="disable") as conn:
            return conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'patches'"
                                ).fetchone() == (1,)


@pytest.fixture
def fl(servers: dict[str, ScratchServer], tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    """Each target's passwords under its own prefix (EU1_POSTGRES_PASSWORD, ...); the
    caller's PGHOST, PGPORT and PGSSLMODE point elsewhere, and must not win over a target's."""
    env: dict[str, str] = {}
    for name, server in servers.items():
        reset_server(server)
        prefix = f"{name.upper()}_"
        env.update({f"{prefix}POSTGRES_PASSWORD": server.password,
                    f"{prefix}PATCHES_PASSWORD": f"state-{name}", f"{prefix}APP_PASSWORD":
                    f"app-{name}"})
    env.update({"PGHOST": "127.0.0.1", "PGPORT": "1", "PGSSLMODE": "require",
                "PATH": f"{next(iter(servers.values())).installation.bin_dir}{os.pathsep}"
                        f"{os.environ.get('PATH', os.defpath)}"})
    for key in [k for k in os.environ if k.startswith(("PG", "POSTGRESQL_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Fleet(servers, tmp_path / "tree", env)
    monkeypatch.undo()
    for server in servers.values():
        if server._running:
            reset_server(server)


BASELINE = ("CREATE ROLE app LOGIN PASSWORD :'app_password';\n"
            "CREATE DATABASE app OWNER app;\n\\connect app\n"
            "CREATE TABLE ledger (name text);\nALTER TABLE ledger OWNER TO app;\n")


def app_tree(fl: Fleet, patches: int = 3, sleep: float = 0.0) -> None:
    fl.write("app.00000000.0000.postgres.baseline.sql",
             "\\getenv app_password PGPATCH_APP_PASSWORD\n" + BASELINE)
    for i in range(1, patches + 1):
        fl.write(f"app.20240101.{i:04d}.app.p{i}.sql",
                 f"INSERT INTO ledger VALUES ('p{i}');\n"
                 + (f"SELECT pg_sleep({sleep});\n" if sleep else ""))


def test_each_target_gets_its_own_run_passwords_and_settings(fl: Fleet) -> None:
    """Three servers, each with its own superuser password (under its target's prefix);
    the caller's PGHOST/PGPORT/PGSSLMODE point nowhere: each target's own settings win, for
    psycopg and for psql (the baseline) alike."""
    app_tree(fl)
    results = fleet.apply(fl.targets(), jobs=3)
    assert [(r.target.name, r.ok, r.error) for r in results] == [(n, True, None) for n in NAMES]
    for name in NAMES:
        assert fl.ledger(name) == {"p1": 1, "p2": 1, "p3": 1}
        assert len(fl.records(name)) == STATE_PATCHES + 4
    again = fleet.apply(fl.targets(), jobs=3)
    assert [len(r.done) for r in again] == [0, 0, 0]
    assert all(r.ok for r in again)
    for name in NAMES:
        assert fl.ledger(name) == {"p1": 1, "p2": 1, "p3": 1}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(check: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_server_stopped_mid_run_fails_only_its_rows(fl: Fleet) -> None:
    """eu2 is stopped in the middle of its patches: only its rows fail, eu1 and us1 apply
    everything; once eu2 is back, the next run finishes it, and every patch ran once."""
    app_tree(fl, patches=30, sleep=0.05)
    done: list[list[fleet.TargetResult]] = []
    run = threading.Thread(target=lambda: done.append(fleet.apply(fl.targets(), jobs=3)))
    run.start()

    def eu2_is_halfway() -> bool:
        try:
            return sum(fl.ledger("eu2").values()) >= 5
        except Exception:  # app or its table is not there yet
            return False

    _until(eu2_is_halfway)
    fl.servers["eu2"].stop("immediate")
    run.join(120)
    assert not run.is_alive()
    eu1, eu2, us1 = done[0]
    assert (eu1.ok, us1.ok, eu2.ok) == (True, True, False)
    assert len(eu1.done) == len(us1.done) == STATE_PATCHES + 31
    assert eu2.error is not None and "Traceback" not in str(eu2.error)
    assert 0 < len(eu2.not_applied) < 30
    for name in ("eu1", "us1"):
        assert fl.ledger(name) == {f"p{i}": 1 for i in range(1, 31)}

    fl.servers["eu2"].restart()
    again = fleet.apply(fl.targets(), jobs=3)
    assert [r.ok for r in again] == [True, True, True]
    assert [len(r.done) for r in again] == [0, len(eu2.not_applied), 0]
    for name in NAMES:
        assert fl.ledger(name) == {f"p{i}": 1 for i in range(1, 31)}


def test_an_unreachable_target_fails_alone_and_fail_fast_starts_no_other(fl: Fleet) -> None:
    app_tree(fl)
    options = runner.Options(globs=(fl.glob(),))
    down = fleet.make_target("down", {"host": "127.0.0.1", "port": _free_port(),
                                      "sslmode": "disable"}, options)
    results = fleet.apply([down, *fl.targets("eu1", "eu2")], jobs=1)
    assert [r.ok for r in results] == [False, True, True]
    assert "cannot connect" in str(results[0].error)
    assert fl.ledger("eu1") == fl.ledger("eu2") == {"p1": 1, "p2": 1, "p3": 1}

    for server in fl.servers.values():
        reset_server_plain(server)
    results = fleet.apply([down, *fl.targets("eu1", "eu2")], jobs=1, fail_fast=True)
    assert [(r.ok, r.started) for r in results] == [(False, True), (False, False),
                                                     (False, False)]
    assert [str(r.error) for r in results[1:]] == [
        "not started: target down failed (--fail-fast)"] * 2
    assert not fl.has_state("eu1") and not fl.has_state("eu2")


def reset_server_plain(server: ScratchServer) -> None:
    """reset_server without the caller's PGSSLMODE (the fixture points it nowhere)."""
    saved = os.environ.pop("PGSSLMODE", None)
    try:
        reset_server(server)
    finally:
        if saved is not None:
            os.environ["PGSSLMODE"] = saved


def test_fail_fast_stops_running_targets_before_their_next_patch(fl: Fleet) -> None:
    """eu1's second patch fails (once the others are under way: it waits for a database
    named go): eu2 and us1, still running, stop before their next patch; what they applied
    stays applied and recorded, nothing is half done."""
    app_tree(fl, patches=40, sleep=0.1)
    port = fl.servers["eu1"].port
    fl.write("app.20240101.0002.app.p2.sql",
             f"DO $$ BEGIN IF inet_server_port() = {port} THEN\n"
             "  WHILE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'go') LOOP\n"
             "    PERFORM pg_sleep(0.05);\n  END LOOP;\n"
             "  RAISE EXCEPTION 'eu1 says no';\nEND IF; END $$;\n"
             "INSERT INTO ledger VALUES ('p2');\n")
    done: list[list[fleet.TargetResult]] = []
    run = threading.Thread(target=lambda: done.append(
        fleet.apply(fl.targets(), jobs=3, fail_fast=True)))
    run.start()

    def under_way(name: str) -> bool:
        try:
            return sum(fl.ledger(name).values()) >= 3
        except Exception:  # app or its table is not there yet
            return False

    _until(lambda: under_way("eu2") and under_way("us1"))
    with fl.servers["eu1"].connect(sslmode="disable") as conn:
        conn.execute("CREATE DATABASE go")
    run.join(120)
    assert not run.is_alive()
    eu1, eu2, us1 = done[0]
    assert "eu1 says no" in str(eu1.error)
    assert [s.patch.name.minor for s in eu1.not_applied][:1] == ["0002"]
    assert eu1.outcome(eu1.not_applied[0]) == "failed"
    for r in (eu2, us1):
        assert isinstance(r.error, fleet.NotRun), r.error
        assert str(r.error).endswith("stopped before its next patch: target eu1 failed "
                                     "(--fail-fast)")
        applied = sum(fl.ledger(r.target.name).values())
        assert 3 <= applied < 40
        assert applied == len([s for s, _ in r.done if s.patch.name.database == "app"]) - 1
        assert len(fl.records(r.target.name)) == len(r.done)
        assert {r.outcome(s) for s in r.not_applied} == {"not run"}


def test_jobs_one_and_several_give_the_same_records(fl: Fleet) -> None:
    """--jobs 1 runs one target after the other, --jobs 3 all at once (their patches'
    installed times overlap); the records are the same."""
    app_tree(fl, patches=4, sleep=0.1)

    def records_and_spans() -> tuple[dict[str, list[tuple[Any, ...]]], list[tuple[Any, Any]]]:
        records, spans = {}, []
        for name in NAMES:
            with fl.servers[name].connect("patches", sslmode="disable") as conn:
                records[name] = conn.execute(
                    "SELECT d.name, p.major, p.minor, p.name, p.checksum FROM installed_patches p"
                    " JOIN databases d ON d.id = p.database_id ORDER BY 1, 2, 3").fetchall()
                spans.append(conn.execute(
                    "SELECT min(p.installed), max(p.installed) FROM installed_patches p "
                    "JOIN databases d ON d.id = p.database_id WHERE d.name = 'app'").fetchone())
        return records, spans

    assert all(r.ok for r in fleet.apply(fl.targets(), jobs=1))
    one, serial = records_and_spans()
    assert serial[0][1] < serial[1][0] and serial[1][1] < serial[2][0]
    for server in fl.servers.values():
        reset_server_plain(server)
    assert all(r.ok for r in fleet.apply(fl.targets(), jobs=3))
    several, side_by_side = records_and_spans()
    assert side_by_side[1][0] < side_by_side[0][1] and side_by_side[2][0] < side_by_side[1][1]
    assert one == several
    assert len(one["eu1"]) == STATE_PATCHES + 5
