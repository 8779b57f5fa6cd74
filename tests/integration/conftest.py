"""Per-test helpers over the session's throwaway servers (``pg_server`` in tests/conftest.py).

Each test gets an empty server: every database and role it made is dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from postgresqlpatches.cli import main
from postgresqlpatches.core.discovery import builtin_patches

STATE_PATCHES = len(builtin_patches("patches"))
"""How many of the state database's own patches every first run bootstraps or applies."""

PASSWORDS = {"PATCHES": "state-pw-1", "APP": "app-pw-2", "HUNDBIDRAG": "hund-pw-3"}


@dataclass
class Pg:
    """A test's view of the server: its environment, a patch tree, and the CLI."""

    server: Any
    tree: Path
    env: dict[str, str] = field(default_factory=dict)

    def write(self, name: str, text: str = "select 1;\n") -> Path:
        path = self.tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def glob(self) -> str:
        return str(self.tree / "**" / "*.sql")

    def cli(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        """Run pgpatch in-process through click, as a user types it."""
        full: dict[str, str | None] = {k: None for k in os.environ
                                       if k.startswith(("POSTGRESQL_", "PG"))}
        full.update(self.env)
        full.update(env or {})
        return CliRunner().invoke(main, list(args), env=full, catch_exceptions=False)

    def run(self, *args: str, env: dict[str, str | None] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``python -m postgresqlpatches`` as a real process."""
        return subprocess.run([sys.executable, "-m", "postgresqlpatches", *args],
                              env=self._environment(env), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def popen(self, *args: str, env: dict[str, str | None] | None = None,
              interruptible: bool = False, **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``python -m postgresqlpatches``, stdout and stderr piped; ``interruptible``:
        Ctrl-C (SIGINT) reaches it as in a terminal (a test worker may ignore SIGINT, and a
        child inherits that)."""
        if interruptible:
            kwargs["preexec_fn"] = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
        return subprocess.Popen([sys.executable, "-m", "postgresqlpatches", *args],
                                env=self._environment(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kwargs)

    def _environment(self, env: dict[str, str | None] | None) -> dict[str, str]:
        """The test's environment without the caller's libpq and pgpatch variables, then
        this server's, then ``env`` (None: unset)."""
        full = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRESQL_", "PG"))}
        full.update(self.env)
        for k, v in (env or {}).items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        return full

    def query(self, sql: str, db: str = "postgres") -> list[tuple[Any, ...]]:
        with self.server.connect(db) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def databases(self) -> set[str]:
        return {r[0] for r in self.query(
            "SELECT datname FROM pg_database WHERE datname NOT IN "
            "('postgres', 'template0', 'template1')")}

    def roles(self) -> set[str]:
        return {r[0] for r in self.query(
            "SELECT rolname FROM pg_roles WHERE rolname <> 'postgres' AND rolname !~ '^pg_'")}


def reset_server(server: Any) -> None:
    """Drop what a test made: every user database and role."""
    with server.connect("postgres") as conn:
        for (db,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname NOT IN "
                "('postgres', 'template0', 'template1')").fetchall():
            conn.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
        for (role,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname <> 'postgres' "
                "AND rolname !~ '^pg_'").fetchall():
            conn.execute(f'DROP ROLE "{role}"')
        conn.execute("SELECT pg_advisory_unlock_all()")


@pytest.fixture
def pg(pg_server: Any, tmp_path: Path) -> Iterator[Pg]:
    env = {k: v for k, v in pg_server.env().items() if k != "PATH"}
    env["PATH"] = pg_server.env()["PATH"]
    env.update({f"POSTGRESQL_{k}_PASSWORD": v for k, v in PASSWORDS.items()})
    reset_server(pg_server)
    yield Pg(pg_server, tmp_path / "tree", env)
    reset_server(pg_server)
