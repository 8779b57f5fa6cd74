"""``pgpatch demo``: the example end to end on a throwaway server, as a user would run it."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click

from postgresqlpatches.pg.errors import translated


def examples_dir() -> Path:
    """The examples ship inside the wheel; in a source checkout they sit beside the package."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "examples", here.parent / "examples"):
        if (candidate / "hundbidrag").is_dir():
            return candidate
    from postgresqlpatches.errors import PgpatchError

    raise PgpatchError("the example patches are missing from this installation")


def keep_message(host: str, port: int, user: str, password: str | None) -> str:
    """How to log into the server ``--keep`` leaves running: the demo's own throwaway, so
    its superuser password is shown (it exists nowhere else)."""
    import shlex

    login = f"PGPASSWORD={shlex.quote(password)} " if password else ""
    return (f"\nthe server keeps running at {host}:{port}; log in as its superuser {user}:\n"
            f"  {login}psql -h {shlex.quote(host)} -p {port} -U {user} hundbidrag\n"
            "press Ctrl-C to stop it")


@translated
def run(*, keep: bool = False) -> None:
    from postgresqlpatches import runner
    from postgresqlpatches.cli import render
    from postgresqlpatches.pg.scratch import ScratchServer

    example = examples_dir() / "hundbidrag"
    pattern = str(example / "*.sql")
    if example.is_relative_to(Path.cwd()):  # shown as a user would type it
        pattern = str(example.relative_to(Path.cwd()) / "*.sql")
    say = click.echo
    say("starting a throwaway PostgreSQL server ...")
    server = ScratchServer(password=secrets.token_urlsafe(12))
    server.start()
    try:
        env = server.env()
        env["POSTGRESQL_PATCHES_PASSWORD"] = secrets.token_urlsafe(12)
        env["POSTGRESQL_HUNDBIDRAG_PASSWORD"] = secrets.token_urlsafe(12)
        os.environ.update(env)
        say(f"server: PostgreSQL {server.major} at {server.host}:{server.port} "
            f"({server.installation.source} binaries)\n")
        options = runner.Options(globs=(pattern,))
        say(f"$ pgpatch plan '{pattern}'")
        render.print_plan(runner.plan(options))
        say(f"\n$ pgpatch apply '{pattern}'")
        reporter = render.ConsoleReporter()
        try:
            result = runner.apply(options, reporter)
        finally:
            reporter.close()
        say(render.apply_summary(result))
        say(f"\n$ pgpatch apply '{pattern}'   # again: nothing to do")
        say(render.apply_summary(runner.apply(options)))
        say(f"\n$ pgpatch status '{pattern}'")
        render.print_status(runner.status(options))
        with server.connect("hundbidrag") as conn:
            rows = conn.execute("SELECT owner, year, total FROM allowance_per_owner").fetchall()
        say("\nhundbidrag=# SELECT * FROM allowance_per_owner;")
        for owner, year, total in rows:
            say(f"  {owner} | {year} | {total}")
        if keep:
            say(keep_message(server.host, server.port, server.user, server.password))
            try:
                import time

                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        server.cleanup()
        say("\nthrowaway server stopped and removed", err=False)
        sys.stdout.flush()
