"""Targets (-t/--target, --jobs, --fail-fast): several real servers in one run, each with its
own lock, plan, passwords and result; a failing server fails only its own rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result

from postgresqlpatches import fleet, runner
from postgresqlpatches.cli import main
from postgresqlpatches.core import config
from postgresqlpatches.pg.scratch import ScratchServer
from tests.integration.conftest import STATE_PATCHES, reset_server

NAMES = ("eu1", "eu2", "us1")
SMALL = {"fsync": "off", "shared_buffers": "16MB", "max_connections": "20"}


# three servers at once, the same on every major: on one major only (conftest.py)
pytestmark = pytest.mark.one_major

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
        return [fleet.make_target(config.Target(
            n, host=self.servers[n].host, port=self.servers[n].port, prefix=f"{n.upper()}_",
            settings={"sslmode": "disable"}), options) for n in (names or NAMES)]

    def ledger(self, name: str) -> dict[str, int]:
        with self.servers[name].connect("app", sslmode="disable") as conn:
            return dict(conn.execute(
                "SELECT name, count(*)::int FROM ledger GROUP BY name").fetchall())

    def records(self, name: str) -> list[tuple[Any, ...]]:
        with self.servers[name].connect("patches", sslmode="disable") as conn:
            return conn.execute(
                "SELECT d.name, p.major, p.minor, p.name FROM installed_patches p "
                "JOIN databases d ON d.id = p.database_id ORDER BY 1, 2, 3").fetchall()

    def config(self, *names: str, extra: str = "", down: bool = False) -> str:
        """A pgpatch.toml with the targets in the order given (``down``: first, a target
        nothing listens for)."""
        lines = [extra]
        if down:
            lines += ["[targets.down]", 'host = "127.0.0.1"', f"port = {_free_port()}",
                      'sslmode = "disable"', "connect_timeout = 5", ""]
        for n in names or NAMES:
            lines += [f"[targets.{n}]", f'host = "{self.servers[n].host}"',
                      f"port = {self.servers[n].port}", f'prefix = "{n.upper()}_"',
                      'sslmode = "disable"', ""]
        path = self.tree.parent / "pgpatch.toml"
        path.write_text("\n".join(lines), encoding="utf-8")
        return str(path)

    def cli(self, *args: str) -> Result:
        """pgpatch in-process through click, as a user types it (the fixture's environment)."""
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "postgresqlpatches", *args],
                              env=dict(os.environ), capture_output=True, text=True,
                              timeout=180, check=False)

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
    down = fleet.make_target(config.Target("down", host="127.0.0.1", port=_free_port(),
                                           settings={"sslmode": "disable"}), options)
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
    app_tree(fl, patches=6, sleep=0.3)

    def records_and_spans() -> tuple[dict[str, list[tuple[Any, ...]]], list[tuple[Any, Any]]]:
        records, spans = {}, []
        for name in NAMES:
            with fl.servers[name].connect("patches", sslmode="disable") as conn:
                records[name] = conn.execute(
                    "SELECT d.name, p.major, p.minor, p.name, p.checksum FROM installed_patches p"
                    " JOIN databases d ON d.id = p.database_id ORDER BY 1, 2, 3").fetchall()
                spans.append(conn.execute(
                    "SELECT min(installed), max(installed) FROM installed_patches").fetchone())
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
    assert len(one["eu1"]) == STATE_PATCHES + 7


# -- as users type it ----------------------------------------------------------------------

TARGET_KEYS = {"name", "host", "port", "ok", "error", "patches", "problems"}


def test_cli_apply_json_when_a_server_stops_mid_run(fl: Fleet) -> None:
    """`pgpatch apply -t all --format json` as a real process; eu2 is stopped in the middle:
    exit 1, one JSON document on stdout, only eu2's rows failed, no traceback, no password;
    after eu2 is back, the next run applies the rest there, each patch once."""
    app_tree(fl, patches=30, sleep=0.05)
    path = fl.config()
    args = [sys.executable, "-m", "postgresqlpatches", "apply", "--config", path, "-t", "all",
            "--format", "json", fl.glob()]
    proc = subprocess.Popen(args, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def eu2_is_halfway() -> bool:
        try:
            return sum(fl.ledger("eu2").values()) >= 5
        except Exception:  # app or its table is not there yet
            return False

    _until(eu2_is_halfway)
    fl.servers["eu2"].stop("immediate")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "Traceback" not in err + out
    for secret in fl.env.values():
        if "-pw" in secret or secret.startswith(("app-", "state-")):
            assert secret not in out + err
    data = json.loads(out)
    assert data["ok"] is False
    assert [t["name"] for t in data["targets"]] == list(NAMES)
    eu1, eu2, us1 = data["targets"]
    for t in (eu1, us1):
        assert TARGET_KEYS <= set(t)
        assert (t["ok"], t["error"], t["failed"]) == (True, None, 0)
        assert t["applied"] == STATE_PATCHES + 31
        assert {p["result"] for p in t["patches"]} == {"applied"}
    assert eu2["ok"] is False and eu2["error"]
    results = [p["result"] for p in eu2["patches"]]
    assert "applied" in results and results[-1] == "not run"
    assert eu2["applied"] == results.count("applied")
    assert eu2["failed"] == 31 + STATE_PATCHES - eu2["applied"]
    assert (eu2["host"], eu2["port"]) == ("127.0.0.1", fl.servers["eu2"].port)

    fl.servers["eu2"].restart()
    again = fl.run("apply", "--config", path, "-t", "all", "--format", "json", fl.glob())
    assert again.returncode == 0, again.stderr
    assert [t["applied"] for t in json.loads(again.stdout)["targets"]] == [
        0, eu2["failed"], 0]
    for name in NAMES:
        assert fl.ledger(name) == {f"p{i}": 1 for i in range(1, 31)}


def test_an_unknown_target_is_a_usage_error_naming_the_file_and_the_targets(fl: Fleet) -> None:
    app_tree(fl)
    path = fl.config()
    result = fl.cli("plan", "--config", path, "-t", "eu1", "-t", "nope", fl.glob())
    assert result.exit_code == 2
    assert (f"no target 'nope' in {path} (its targets: eu1, eu2, us1; or all)"
            in result.output)
    assert "Traceback" not in result.output
    for args, said in [
            (("-t", "eu1", "--host", "127.0.0.1"), "--host does not go with -t/--target"),
            (("-t", "eu1", "--port", "5432"), "--port does not go with -t/--target"),
            (("--jobs", "2"), "--jobs goes with -t/--target"),
            (("--fail-fast",), "--fail-fast goes with -t/--target"),
            (("--offline", "-t", "eu1"), "-t/--target does not go with --offline")]:
        result = fl.cli("plan", "--config", path, *args, fl.glob())
        assert (result.exit_code, said in result.output) == (2, True), (args, result.output)
    for name in NAMES:
        assert not fl.has_state(name)


def test_targets_run_in_the_order_asked_and_all_in_the_files_order(fl: Fleet) -> None:
    app_tree(fl)
    path = fl.config("us1", "eu1", "eu2")

    def names(*args: str) -> list[str]:
        result = fl.cli("plan", "--config", path, "--format", "json", *args, fl.glob())
        assert result.exit_code == 0, result.output
        return [t["name"] for t in json.loads(result.stdout)["targets"]]

    assert names("-t", "all") == ["us1", "eu1", "eu2"]
    assert names("-t", "eu2", "-t", "us1", "-t", "eu2") == ["eu2", "us1"]
    assert names("-t", "eu1", "-t", "all", "--jobs", "1") == ["eu1", "us1", "eu2"]
    fl.config("us1", "eu1", "eu2", extra='target = ["eu2"]\n')
    assert names() == ["eu2"]  # the file's `target` key, when no -t is given


def test_json_with_targets_for_plan_apply_status_and_unchanged_without(fl: Fleet) -> None:
    app_tree(fl)
    path = fl.config()
    common = ("--config", path, "-t", "eu1", "-t", "us1", "--format", "json")
    plan = json.loads(fl.cli("plan", *common, fl.glob()).stdout)
    assert fl.cli("plan", *common, "--exit-code", fl.glob()).exit_code == 3
    applied = fl.cli("apply", *common, fl.glob())
    assert applied.exit_code == 0, applied.output
    apply = json.loads(applied.stdout)
    status = json.loads(fl.cli("status", *common).stdout)
    status_globs = json.loads(fl.cli("status", *common, fl.glob()).stdout)
    for data in (plan, apply, status, status_globs):
        assert set(data) == {"version", "ok", "targets"}
        assert data["ok"] is True
        assert [t["name"] for t in data["targets"]] == ["eu1", "us1"]
        for t in data["targets"]:
            assert TARGET_KEYS <= set(t)
            assert (t["host"], t["port"]) == ("127.0.0.1", fl.servers[t["name"]].port)
            assert (t["ok"], t["error"], t["problems"]) == (True, None, [])
    for t in plan["targets"]:
        assert [p["action"] for p in t["patches"] if p["database"] == "app"] == [
            "bootstrap", "apply", "apply", "apply"]
        assert t["summary"]["bootstrap"] == 2  # the state database's baseline and app's
    for t in apply["targets"]:
        assert [p["result"] for p in t["patches"]] == ["applied"] * (STATE_PATCHES + 4)
    for t in status["targets"]:
        assert len(t["patches"]) == STATE_PATCHES + 4
        assert {p["state"] for p in t["patches"]} == {"applied"}
    for t in status_globs["targets"]:
        assert t["plan"]["summary"]["apply"] == 0
    assert fl.cli("plan", *common, "--exit-code", fl.glob()).exit_code == 0
    assert not fl.has_state("eu2")

    # without -t: the server of --host/--port and the environment, today's shapes
    eu2 = fl.servers["eu2"]
    alone = ("--config", path, "--host", eu2.host, "--port", str(eu2.port), "-p", "EU2_")
    os.environ["PGSSLMODE"] = "disable"
    plan = json.loads(fl.cli("plan", *alone, "--format", "json", fl.glob()).stdout)
    assert "targets" not in plan and plan["summary"]["apply"] == 3 + STATE_PATCHES - 1
    apply = json.loads(fl.cli("apply", *alone, "--format", "json", fl.glob()).stdout)
    assert "targets" not in apply and len(apply["applied"]) == STATE_PATCHES + 4
    status = json.loads(fl.cli("status", *alone, "--format", "json").stdout)
    assert "targets" not in status and len(status["records"]) == STATE_PATCHES + 4


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _schema_valid(command: str, stdout: str) -> dict[str, Any]:
    """stdout is one JSON document valid against docs/COMMAND.schema.json."""
    schema = json.loads((DOCS / f"{command}.schema.json").read_text(encoding="utf-8"))
    data = json.loads(stdout)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()
                                    ).validate(data)
    return data


def test_the_targets_json_of_every_command_is_valid_against_its_schema(fl: Fleet) -> None:
    """plan, apply, status (with and without GLOBs) and rehearse with -t: a target that ran,
    one that cannot be reached, and (--fail-fast --jobs 1) one never started; each document
    valid against its command's schema, which refuses a member no target entry has."""
    app_tree(fl)
    fl.write("app.20240102.0001.app.fails.sql", "SELECT * FROM nowhere;\n")
    path = fl.config("eu1", "us1", down=True)
    runs = {
        "plan": ["plan", fl.glob()],
        "apply": ["apply", fl.glob()],
        "status": ["status"],
        "status-globs": ["status", fl.glob()],
        "rehearse": ["rehearse", fl.glob()],
    }
    seen: dict[str, dict[str, Any]] = {}
    for name, args in runs.items():
        command = args[0]
        result = fl.cli(*args, "--config", path, "-t", "eu1", "-t", "down", "--format",
                        "json")
        assert result.exit_code == 1, (name, result.output)
        data = seen[name] = _schema_valid(command, result.stdout)
        eu1, down = data["targets"]
        assert (eu1["name"], down["name"], down["ok"], down["started"]) == (
            "eu1", "down", False, True)
        assert down["error"].startswith("cannot connect to database 'postgres'"), name
        never = fl.cli(*args, "--config", path, "-t", "down", "-t", "us1", "--jobs", "1",
                       "--fail-fast", "--format", "json")
        assert never.exit_code == 1, (name, never.output)
        us1 = _schema_valid(command, never.stdout)["targets"][1]
        assert (us1["started"], us1["error"]) == (False, "not started: target down failed "
                                                         "(--fail-fast)"), name
    assert [p["result"] for p in seen["apply"]["targets"][0]["patches"]][-2:] == [
        "applied", "failed"]
    assert seen["plan"]["targets"][0]["summary"]["apply"] > 0
    assert "plan" in seen["status-globs"]["targets"][0]
    assert [p["outcome"] for p in seen["rehearse"]["targets"][0]["patches"]] == ["failed"]
    # the schema is strict: a member no target entry has is refused, for every command
    for name, data in seen.items():
        data["targets"][0]["surplus"] = 1
        with pytest.raises(jsonschema.ValidationError):
            _schema_valid(runs[name][0], json.dumps(data))


def test_the_table_is_grouped_by_target_and_ends_with_a_summary(fl: Fleet) -> None:
    """Piped text: one group per target, then the summary table; a target nobody listens
    for fails its own row only (exit 1); with --fail-fast --jobs 1 nothing starts after it."""
    app_tree(fl, patches=2)
    path = fl.config("eu1", "eu2", down=True)
    result = fl.run("apply", "--config", path, "-t", "all", fl.glob())
    assert result.returncode == 1, result.stderr
    out = result.stdout.splitlines()
    heads = [line for line in out if line.startswith("target ") and "(" in line]
    assert heads == [f"target down (127.0.0.1:{heads[0].split(':')[1]}",
                     f"target eu1 (127.0.0.1:{fl.servers['eu1'].port})",
                     f"target eu2 (127.0.0.1:{fl.servers['eu2'].port})"]
    group = out[out.index(heads[1]) + 1:out.index(heads[2]) - 1]  # a blank line before each
    assert [line.split()[:2] for line in group[:-1]] == (
        [["bootstrap", "patches"]] + [["apply", "patches"]] * (STATE_PATCHES - 1)
        + [["bootstrap", "app"], ["apply", "app"], ["apply", "app"]])
    assert group[-1].startswith(f"applied {STATE_PATCHES + 3} patches to 2 databases in ")
    assert out[out.index(heads[0]) + 1].startswith("error: cannot connect to database")
    assert out[out.index(heads[0]) + 2] == ("hint: check host and port of [targets.down] and "
                                            "that the server is running")
    summary = out[out.index("summary:") + 1:]
    assert summary[0].split() == ["target", "databases", "applied", "failed", "seconds",
                                  "error"]
    down, eu1, eu2 = (row.split(None, 5) for row in summary[1:4])
    assert down[:4] == ["down", "-", "0", "0"] and down[5].startswith("cannot connect")
    assert [eu1[:4], eu2[:4]] == [["eu1", "2", str(STATE_PATCHES + 3), "0"],
                                  ["eu2", "2", str(STATE_PATCHES + 3), "0"]]
    assert len(eu1) == 5  # no error
    assert summary[4] == "3 targets, 1 failed"
    assert "eu1: apply" in result.stderr  # progress, behind each target's name, on stderr

    for server in fl.servers.values():
        reset_server_plain(server)
    result = fl.run("apply", "--config", path, "-t", "all", "--jobs", "1", "--fail-fast",
                    fl.glob())
    assert result.returncode == 1
    assert result.stdout.count("error: not started: target down failed (--fail-fast)") == 2
    assert not fl.has_state("eu1") and not fl.has_state("eu2")


# -- the Ansible recipe of docs/fleet.md, as it is in examples/ ------------------------------

RECIPE = Path(__file__).parents[2] / "examples" / "fleet" / "ansible"


def _ansible_playbook() -> str:
    """ansible-playbook next to this Python (the test extras install ansible-core), or skip."""
    import shutil

    try:
        import ansible  # noqa: F401
    except ImportError:
        pytest.skip("ansible-core is not installed (pip install 'postgresqlpatches[test]')")
    found = shutil.which("ansible-playbook", path=os.path.dirname(sys.executable)) or \
        shutil.which("ansible-playbook")
    if found is None:
        pytest.skip("ansible-core is installed but ansible-playbook is not on PATH")
    return found


def test_the_ansible_recipe_runs_pgpatch_per_target(fl: Fleet, tmp_path: Path) -> None:
    """examples/fleet/ansible/pgpatch.yml over an inventory of the three servers, forks 3:
    each host runs `pgpatch apply -t HOST`; a stopped server fails its host only (exit 2),
    the others apply; once it is back, the next run catches it up, each patch once."""
    playbook = _ansible_playbook()
    app_tree(fl)
    inventory = tmp_path / "inventory.yml"
    hosts = "".join(f"    {n}:\n      pg_host: {s.host}\n      pg_port: {s.port}\n"
                    f"      pg_prefix: {n.upper()}_\n      pg_sslmode: disable\n"
                    for n, s in fl.servers.items())
    inventory.write_text("postgres:\n  hosts:\n" + hosts, encoding="utf-8")
    pgpatch = os.path.join(os.path.dirname(sys.executable), "pgpatch")
    env = dict(os.environ, ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible" / "tmp"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    config = tmp_path / "pgpatch.toml"
    args = [playbook, "-i", str(inventory), str(RECIPE / "pgpatch.yml"), "-f", "3",
            "-e", json.dumps({"pgpatch": pgpatch, "pgpatch_config": str(config),
                              "pgpatch_patches": [fl.glob()]})]

    def play() -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300,
                              check=False)

    def recap(out: str) -> dict[str, dict[str, int]]:
        rows = out[out.index("PLAY RECAP"):].splitlines()[1:]
        return {row.split()[0]: {k: int(v) for k, v in (f.split("=") for f in row.split()[2:])}
                for row in rows if "ok=" in row}

    first = play()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[targets.eu2]" in config.read_text()
    for name in NAMES:
        assert recap(first.stdout)[name]["changed"] == 1
        assert fl.ledger(name) == {"p1": 1, "p2": 1, "p3": 1}

    fl.write("app.20240101.0004.app.p4.sql", "INSERT INTO ledger VALUES ('p4');\n")
    fl.servers["eu2"].stop()
    second = play()
    assert second.returncode == 2, second.stdout + second.stderr
    counts = recap(second.stdout)
    assert (counts["eu1"]["failed"], counts["eu2"]["failed"], counts["us1"]["failed"]) == (
        0, 1, 0)
    assert "pgpatch exited 1: cannot connect to database 'postgres'" in second.stdout
    for name in ("eu1", "us1"):
        assert fl.ledger(name) == {"p1": 1, "p2": 1, "p3": 1, "p4": 1}

    fl.servers["eu2"].restart()
    third = play()
    assert third.returncode == 0, third.stdout + third.stderr
    counts = recap(third.stdout)
    assert [counts[n]["changed"] for n in NAMES] == [0, 1, 0]
    for name in NAMES:
        assert fl.ledger(name) == {"p1": 1, "p2": 1, "p3": 1, "p4": 1}


def test_log_lines_start_with_their_targets_name(fl: Fleet,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Targets run side by side, so their warnings interleave: each says whose it is."""
    app_tree(fl)
    monkeypatch.delenv("EU2_APP_PASSWORD")
    result = fl.run("plan", "--config", fl.config(), "-t", "eu1", "-t", "eu2", fl.glob())
    assert result.returncode == 0, result.stderr
    assert ("warning: eu2: EU2_APP_PASSWORD is not set: role app gets its name as password"
            in result.stderr)
    assert "EU1_APP_PASSWORD" not in result.stderr


def test_ctrl_c_stops_every_target_before_its_next_patch(fl: Fleet) -> None:
    """SIGINT in the middle of `apply -t all`: no target starts anything new, running ones
    stop before their next patch, so each server's ledger is exactly its records, and the
    grouped result and summary are still printed (exit 1); the next run applies the rest,
    each patch once."""
    import signal

    app_tree(fl, patches=40, sleep=0.1)
    path = fl.config()
    args = [sys.executable, "-m", "postgresqlpatches", "apply", "--config", path, "-t", "all",
            fl.glob()]
    proc = subprocess.Popen(args, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def under_way() -> bool:
        try:
            return all(sum(fl.ledger(n).values()) >= 3 for n in NAMES)
        except Exception:  # app or its table is not there yet
            return False

    _until(under_way)
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 3  # each target stops after the patch it is in
    assert proc.returncode == 1
    assert "Traceback" not in err
    assert "warning: interrupted: every target stops before its next patch" in err
    stopped = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(stopped) == 3
    assert all(line.endswith(": stopped before its next patch: interrupted")
               for line in stopped)
    assert out.splitlines()[-1] == "3 targets, 3 failed"
    for name in NAMES:
        applied = sum(fl.ledger(name).values())
        assert 3 <= applied < 40
        assert len(fl.records(name)) == STATE_PATCHES + 1 + applied
    again = fl.run("apply", "--config", path, "-t", "all", fl.glob())
    assert again.returncode == 0, again.stderr
    for name in NAMES:
        assert fl.ledger(name) == {f"p{i}": 1 for i in range(1, 41)}


def test_a_groups_failing_database_is_a_failed_row_of_its_target(fl: Fleet) -> None:
    """@tenants patches on two targets: on eu1 tenant_b refuses; that row fails, tenant_a's
    applies, and eu2 (without tenant_b) applies all."""
    for name, tenants in (("eu1", ("tenant_a", "tenant_b")), ("eu2", ("tenant_a",))):
        with fl.servers[name].connect(sslmode="disable") as conn:
            for tenant in tenants:
                conn.execute(f"CREATE DATABASE {tenant}")
    fl.write("@tenants.20240101.0001.postgres.t.sql",
             "DO $$ BEGIN IF current_database() = 'tenant_b' THEN RAISE EXCEPTION 'no'; "
             "END IF; END $$;\nCREATE TABLE t (id int);\n")
    path = fl.config("eu1", "eu2", extra='[groups.tenants]\ndatabases = ["tenant_*"]\n')
    result = fl.cli("apply", "--config", path, "-t", "all", "--format", "json", fl.glob())
    assert result.exit_code == 1, result.output
    eu1, eu2 = json.loads(result.stdout)["targets"]
    rows = {p["database"]: p["result"] for p in eu1["patches"] if p["database"] != "patches"}
    assert rows == {"tenant_a": "applied", "tenant_b": "failed"}
    assert (eu1["ok"], eu2["ok"]) == (False, True)
    assert [p["result"] for p in eu2["patches"] if p["database"] != "patches"] == ["applied"]


def test_the_tree_is_read_and_parsed_once_and_each_target_keeps_its_own_plan(
        fl: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """plan -t all over three servers: each file is read once and each pending file parsed
    once for all of them, yet each target's plan is its own: its group's databases, and a
    role that only it lacks as its own problem."""
    from postgresqlpatches.core import discovery, statements

    for name, tenants in (("eu1", ("tenant_a", "tenant_b")), ("eu2", ("tenant_a",)),
                          ("us1", ("tenant_a",))):
        with fl.servers[name].connect(sslmode="disable") as conn:
            for tenant in tenants:
                conn.execute(f"CREATE DATABASE {tenant}")
            if name != "us1":
                conn.execute("CREATE ROLE keeper LOGIN")
    fl.write("@tenants.20240101.0001.keeper.t.sql", "CREATE TABLE t (id int);\n")
    fl.write("tenant_a.20240102.0001.postgres.u.sql", "CREATE TABLE u (id int);\n")
    read: list[str] = []
    parsed: list[str] = []
    read_patch, parse_sql = discovery.read_patch, statements.parse_sql

    def counted_read(path: str, **kw: Any) -> Any:
        if not kw.get("builtin"):
            read.append(path)
        return read_patch(path, **kw)

    def counted_parse(text: str) -> Any:
        parsed.append(text)
        return parse_sql(text)

    monkeypatch.setattr(discovery, "read_patch", counted_read)
    monkeypatch.setattr(statements, "parse_sql", counted_parse)
    path = fl.config(extra='[groups.tenants]\ndatabases = ["tenant_*"]\n')
    result = fl.cli("plan", "--config", path, "-t", "all", "--format", "json", fl.glob())
    assert result.exit_code == 1, result.output  # us1 lacks the role
    assert sorted(Path(p).name for p in read) == ["@tenants.20240101.0001.keeper.t.sql",
                                                  "tenant_a.20240102.0001.postgres.u.sql"]
    texts = [t for t in parsed if t in ("CREATE TABLE t (id int);\n",
                                        "CREATE TABLE u (id int);\n")]
    assert sorted(texts) == ["CREATE TABLE t (id int);\n", "CREATE TABLE u (id int);\n"]
    targets = {t["name"]: t for t in json.loads(result.stdout)["targets"]}

    def tenants(name: str) -> list[tuple[str, str]]:
        return [(p["database"], p["action"]) for p in targets[name]["patches"]
                if p["database"] != "patches"]

    assert tenants("eu1") == [("tenant_a", "apply"), ("tenant_a", "apply"),
                              ("tenant_b", "apply")]
    assert tenants("eu2") == tenants("us1") == [("tenant_a", "apply"), ("tenant_a", "apply")]
    assert [p["kind"] for p in targets["eu1"]["problems"]] == []
    assert [p["kind"] for p in targets["eu2"]["problems"]] == []
    assert [(p["kind"], Path(p["path"]).name) for p in targets["us1"]["problems"]] == [
        ("no-role", "@tenants.20240101.0001.keeper.t.sql")]
