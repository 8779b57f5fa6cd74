"""pgpatch rehearse -t: one rehearsal per target, each on a throwaway copy of its own server's
major, read-only on every live server; a failing target fails only its own rows, and every
copy is removed, also on Ctrl-C and SIGTERM with several running (docs/rehearse.md,
docs/fleet.md)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from postgresqlpatches.cli import main
from postgresqlpatches.pg.scratch import ScratchServer
from tests.conftest import _installations_by_major
from tests.integration.conftest import reset_server
from tests.integration.test_rehearse import _running

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "rehearse.schema.json").read_text(encoding="utf-8"))
SMALL = {"fsync": "off", "shared_buffers": "16MB", "max_connections": "20"}

# two live servers at once (and their copies): on the first major under test only
pytestmark = pytest.mark.one_major

BASELINE = """\\getenv app_password PGPATCH_APP_PASSWORD
CREATE ROLE app LOGIN PASSWORD :'app_password';
CREATE DATABASE app OWNER app;
\\connect app
SET ROLE app;
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'x' FROM generate_series(1, 10) g;
"""
ADD_COLUMN = "ALTER TABLE t ADD COLUMN seen timestamptz DEFAULT clock_timestamp();\n"
# fails where the live rows hold a null, and says the major of the server it ran on
NO_NULLS = """DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM t WHERE v IS NULL) THEN
    RAISE EXCEPTION 'nulls in t on PostgreSQL %',
      current_setting('server_version_num')::int / 10000;
  END IF;
END $$;
"""
NOT_NULL = "ALTER TABLE t ALTER COLUMN v SET NOT NULL;\n"
PENDING = ["app.20240101.0001.app.seen.sql", "app.20240102.0001.app.no_nulls.sql",
           "app.20240103.0001.app.v_not_null.sql"]


def _majors() -> tuple[int, int]:
    """Two majors for the two live servers: different ones when two are installed."""
    available = sorted(_installations_by_major()[0])
    if not available:
        pytest.fail("no PostgreSQL for the tests", pytrace=False)
    return available[0], available[-1]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ScratchServer]]:
    """``old`` of the oldest major installed, ``new`` of the newest, each with its own
    superuser password."""
    installations = _installations_by_major()[0]
    started: dict[str, ScratchServer] = {}
    try:
        for name, major in zip(("old", "new"), _majors(), strict=True):
            server = ScratchServer(installations[major], password=f"su-{name}-pw",
                                   settings=SMALL)
            server.start()
            started[name] = server
        yield started
    finally:
        for server in started.values():
            server.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Targets:
    servers: dict[str, ScratchServer]
    tree: Path
    tmp: Path
    """The TMPDIR of every pgpatch this test runs: where the copies live."""
    env: dict[str, str] = field(default_factory=dict)

    def write(self, name: str, text: str) -> None:
        self.tree.mkdir(parents=True, exist_ok=True)
        (self.tree / name).write_text(text, encoding="utf-8")

    def glob(self) -> str:
        return str(self.tree / "*.sql")

    def config(self, extra: str = "") -> str:
        """old, new and down (nothing listens there), in that order."""
        lines = [extra]
        for name, server in self.servers.items():
            lines += [f"[targets.{name}]", f'host = "{server.host}"', f"port = {server.port}",
                      f'prefix = "{name.upper()}_"', 'sslmode = "disable"', ""]
        lines += ["[targets.down]", 'host = "127.0.0.1"', f"port = {_free_port()}",
                  'sslmode = "disable"', "connect_timeout = 5", ""]
        path = self.tree.parent / "pgpatch.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        return path.as_posix()

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    def query(self, name: str, sql: str, db: str = "app") -> list[tuple[Any, ...]]:
        with self.servers[name].connect(db, sslmode="disable") as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def live_state(self) -> dict[str, Any]:
        """What a rehearsal must leave as it was on each live server."""
        return {name: (self.query(name, "SELECT * FROM installed_patches ORDER BY id",
                                  db="patches"),
                       self.query(name, "SELECT attname FROM pg_attribute WHERE attrelid = "
                                        "'t'::regclass AND attnum > 0 ORDER BY 1"),
                       self.query(name, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
                for name in self.servers}

    def copies(self) -> list[Path]:
        return sorted(self.tmp.glob("pgpatch-scratch-*"))


@pytest.fixture
def tg(servers: dict[str, ScratchServer], tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Targets]:
    """Each target's passwords under its prefix; PGHOST/PGPORT point nowhere; TMPDIR is a
    folder of the test's own that the servers' OS user may enter."""
    tmp = Path(tempfile.mkdtemp(prefix="pgpatch-rehearse-targets-", dir="/tmp"))
    tmp.chmod(0o755)
    for key in [k for k in os.environ if k.startswith(("PG", "POSTGRESQL_"))]:
        monkeypatch.delenv(key)
    for name, server in servers.items():
        reset_server(server)
        prefix = name.upper()
        monkeypatch.setenv(f"{prefix}_POSTGRES_PASSWORD", server.password)
        monkeypatch.setenv(f"{prefix}_PATCHES_PASSWORD", f"state-{name}")
        monkeypatch.setenv(f"{prefix}_APP_PASSWORD", f"app-{name}")
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    newest = servers["new"].installation.bin_dir
    monkeypatch.setenv("PATH", f"{newest}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    try:
        yield Targets(servers, tmp_path / "tree", tmp)
    finally:
        monkeypatch.undo()
        tempfile.tempdir = None
        for server in servers.values():
            reset_server(server)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def _live_tree(tg: Targets) -> str:
    """app applied on old and new; a null in new's rows; three patches pending."""
    tg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    path = tg.config()
    applied = tg.cli("apply", "--config", path, "-t", "old", "-t", "new", tg.glob())
    assert applied.exit_code == 0, applied.output
    tg.query("new", "INSERT INTO t VALUES (11, NULL)")
    for name, text in zip(PENDING, [ADD_COLUMN, NO_NULLS, NOT_NULL], strict=True):
        tg.write(name, text)
    return path


def _valid(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    return data


def test_each_target_is_rehearsed_on_a_copy_of_its_own_major_and_fails_only_its_rows(
        tg: Targets) -> None:
    path = _live_tree(tg)
    before = tg.live_state()
    result = tg.cli("rehearse", "--config", path, "-t", "all", "--data", "--format", "json",
                    tg.glob())
    assert result.exit_code == 1, result.output
    doc = _valid(result.stdout)
    assert doc["ok"] is False
    old, new, down = doc["targets"]
    assert [t["name"] for t in doc["targets"]] == ["old", "new", "down"]
    lo, hi = _majors()
    # old: every patch ran on a copy of old's major, with old's rows
    assert old["ok"] is True and old["error"] is None and old["major"] == lo
    assert old["copied"] == [{"database": "app", "rows": True}]
    assert [(Path(p["path"]).name, p["outcome"]) for p in old["patches"]] == [
        (name, "ran") for name in PENDING]
    assert old["port"] == tg.servers["old"].port and old["started"] is True
    # new: its null fails the second patch on a copy that is new's major (the patch says so)
    assert new["ok"] is False and new["major"] == hi
    assert [p["outcome"] for p in new["patches"]] == ["ran", "failed", "not run"]
    failed = new["patches"][1]
    assert failed["error"]["message"] == f"nulls in t on PostgreSQL {hi}"
    assert failed["error"]["sqlstate"] == "P0001"
    assert new["error"] is None  # the failure is the patch's, told in its row
    # down: only its own entry fails, with its one line and the target's hint
    assert down["ok"] is False and down["major"] is None and down["patches"] == []
    assert down["error"].startswith("cannot connect to database 'postgres' as 'postgres' at "
                                    "127.0.0.1:")
    assert down["hint"] == "check host and port of [targets.down] and that the server is running"
    assert "Traceback" not in result.output
    for name in ("su-old-pw", "su-new-pw", "state-old", "app-new"):
        assert name not in result.output
    assert tg.live_state() == before  # the live servers were only read
    assert tg.copies() == []


def test_the_text_is_grouped_by_target_and_ends_with_the_summary(tg: Targets) -> None:
    path = _live_tree(tg)
    result = tg.cli("rehearse", "--config", path, "-t", "new", "-t", "old", "--data",
                    tg.glob())
    assert result.exit_code == 1, result.output
    out = result.stdout
    lo, hi = _majors()
    new_at, old_at = out.index("target new ("), out.index("target old (")
    assert new_at == 0 and old_at > new_at
    new_part, old_part = out[:old_at], out[old_at:out.index("\nsummary:\n")]
    assert f"rehearsal on a throwaway PostgreSQL {hi} server" in new_part
    assert f"nulls in t on PostgreSQL {hi} [SQLSTATE P0001]" in new_part
    assert "rehearsal failed: 1 ran, 1 failed, 1 not run" in new_part
    assert f"rehearsal on a throwaway PostgreSQL {lo} server" in old_part
    assert "rehearsal passed: 3 ran" in old_part
    lines = out.splitlines()
    header = lines.index("summary:") + 1
    assert lines[header].split() == ["target", "databases", "major", "ran", "failed", "not",
                                     "run", "seconds", "error"]
    assert lines[header + 1].split()[:6] == ["new", "2", str(hi), "1", "1", "1"]
    assert lines[header + 1].endswith(f"no_nulls.sql:1: nulls in t on PostgreSQL {hi}")
    assert lines[header + 2].split()[:6] == ["old", "2", str(lo), "3", "0", "0"]
    assert lines[-1] == "2 targets, 1 failed"
    assert tg.copies() == []


def test_every_target_passing_is_exit_0_and_the_files_target_key_picks_them(
        tg: Targets) -> None:
    _live_tree(tg)
    path = tg.config(extra='target = ["old"]')
    result = tg.cli("rehearse", "--config", path, "--format", "json", tg.glob())
    assert result.exit_code == 0, result.output
    assert [(t["name"], t["ok"]) for t in _valid(result.stdout)["targets"]] == [("old", True)]


def test_a_target_whose_copy_cannot_be_made_fails_alone(tg: Targets,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lo, hi = _majors()
    if lo == hi:
        pytest.skip("one major installed: every target's copy can be made")
    path = _live_tree(tg)
    monkeypatch.setenv("PGPATCH_PG_BIN", str(tg.servers["old"].installation.bin_dir))
    result = tg.cli("rehearse", "--config", path, "-t", "new", "-t", "old", "--format", "json",
                    tg.glob())
    assert result.exit_code == 1, result.output
    new, old = _valid(result.stdout)["targets"]
    assert new["ok"] is False and new["patches"] == [] and new["major"] is None
    assert new["error"] == (f"rehearse needs PostgreSQL {hi} server binaries (the same major "
                            f"as the server) and found none (found majors: {lo})")
    assert old["ok"] is True and [p["outcome"] for p in old["patches"]] == ["ran"] * 3
    assert tg.copies() == []


def test_fail_fast_starts_no_other_target(tg: Targets) -> None:
    path = _live_tree(tg)
    result = tg.cli("rehearse", "--config", path, "-t", "new", "-t", "old", "--data",
                    "--jobs", "1", "--fail-fast", "--format", "json", tg.glob())
    assert result.exit_code == 1, result.output
    new, old = _valid(result.stdout)["targets"]
    assert new["ok"] is False and [p["outcome"] for p in new["patches"]] == [
        "ran", "failed", "not run"]
    assert old["started"] is False and old["patches"] == []
    assert old["error"] == "not started: target new failed (--fail-fast)"


def test_fail_fast_stops_a_running_rehearsal_at_once_and_removes_its_copy(
        tg: Targets) -> None:
    path = _live_tree(tg)
    tg.write("app.20240104.0001.app.slow.sql", "SELECT pg_sleep(60);\n")
    t0 = time.monotonic()
    result = tg.cli("rehearse", "--config", path, "-t", "new", "-t", "old", "--data",
                    "--jobs", "2", "--fail-fast", "--format", "json", tg.glob())
    took = time.monotonic() - t0
    assert result.exit_code == 1, result.output
    new, old = _valid(result.stdout)["targets"]
    assert [p["outcome"] for p in new["patches"]] == ["ran", "failed", "not run", "not run"]
    # old was under way when new failed: stopped there, its 60 s patch cut short
    assert old["started"] is True and old["ok"] is False
    assert old["error"] == "stopped, its copy removed: target new failed (--fail-fast)"
    assert "failed" not in [p["outcome"] for p in old["patches"]]
    assert took < 45, took
    assert tg.copies() == []


@pytest.mark.parametrize("args, message", [
    (["-t", "old", "--offline"], "-t/--target does not go with --offline"),
    (["--jobs", "2"], "--jobs goes with -t/--target"),
    (["--fail-fast"], "--fail-fast goes with -t/--target"),
    (["-t", "nope"], "no target 'nope' in"),
    (["-t", "old", "--port", "5432"], "--port does not go with -t/--target"),
])
def test_target_mistakes_are_usage_errors(tg: Targets, args: list[str], message: str) -> None:
    tg.write("app.20240101.0001.app.one.sql", "SELECT 1;\n")
    result = tg.cli("rehearse", "--config", tg.config(), *args, tg.glob())
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [
        next(line for line in result.stderr.splitlines() if message in line)]
    as_json = tg.cli("rehearse", "--config", tg.config(), *args, "--format", "json", tg.glob())
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["error"]["kind"] == "usage"
    assert tg.copies() == []


def _postgres_under(folder: Path) -> list[int]:
    """Processes whose command line names a path under ``folder`` (a copy's postgres)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in cmdline and _running(int(entry.name)):
            found.append(int(entry.name))
    return found


def _sleeping(copy: Path, psql: str) -> bool:
    """The copy runs the slow patch: asked over its socket."""
    pid_file = copy / "data" / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return False
    if len(lines) < 4:
        return False
    found = subprocess.run(
        [psql, "-X", "-At", "-h", str(copy), "-p", lines[3], "-U", "postgres", "-d",
         "postgres", "-c",
         "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"],
        capture_output=True, text=True, check=False)
    return found.stdout.strip() == "1"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_with_two_rehearsals_running_removes_both_copies(
        tg: Targets, sig: signal.Signals) -> None:
    path = _live_tree(tg)
    tg.write("app.20240104.0001.app.slow.sql", "SELECT pg_sleep(60);\n")
    psql = str(tg.servers["new"].installation.tool("psql"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "postgresqlpatches", "rehearse", "--config", path, "-t", "old",
         "-t", "new", tg.glob()],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            copies = tg.copies()
            if len(copies) == 2 and all(_sleeping(c, psql) for c in copies):
                break
            time.sleep(0.1)
        else:
            pytest.fail("timed out waiting for both copies to run the slow patch")
        # each copy is its own target's major
        assert sorted(int((c / "data" / "PG_VERSION").read_text()) for c in copies) == sorted(
            _majors())
        postmasters = [int((c / "data" / "postmaster.pid").read_text().split()[0])
                       for c in copies]
        proc.send_signal(sig)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 15, took  # the copies are stopped at once, not after the 60 s patch
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert tg.copies() == []
    assert not any(_running(pid) for pid in postmasters)
    assert _postgres_under(tg.tmp) == []
    stopped = [line for line in out.splitlines() if line.startswith("error: ")]
    assert stopped == ["error: stopped, its copy removed: interrupted"] * 2
    # the warning says what a rehearsal does, not what apply's targets do
    assert ("warning: interrupted: no target starts; running rehearsals stop at once, their "
            "copies removed") in err.splitlines()
    assert "before its next patch" not in err
    assert out.splitlines()[-1] == "2 targets, 2 failed"
