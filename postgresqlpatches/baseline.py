"""``pgpatch baseline``: the move to pgpatch by a pg_dump of a live database.

The reading and dumping is pg/dump.py's; here the file is put together, written and recorded,
all under the server's lock (runner.locked).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from postgresqlpatches.core.discovery import discover, read_patch
from postgresqlpatches.core.naming import check_identifier
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.binaries import find_pg_dump
from postgresqlpatches.pg.dump import read_source, run_pg_dump
from postgresqlpatches.pg.errors import translated
from postgresqlpatches.pg.server import SUPERUSER

if TYPE_CHECKING:
    from postgresqlpatches.runner import Options

RESTRICT = re.compile(r"^\\(un)?restrict\b.*\n?", re.MULTILINE)


@dataclass(frozen=True)
class BaselineFile:
    """What ``baseline`` wrote: the file, its size, and which rows it holds (None: all)."""

    path: Path
    size: int
    rows_of: tuple[str, ...] | None

    def summary(self) -> str:
        if self.rows_of is None:
            holds = "schema and the rows of every table"
        elif not self.rows_of:
            holds = "schema only, no rows"
        else:
            holds = f"schema and the rows of {', '.join(self.rows_of)}"
        return f"wrote {self.path} ({human_size(self.size)}; {holds}) and recorded it as applied"


def human_size(size: int) -> str:
    """Sizes as pg_size_pretty prints them (1024-based): 900 bytes, 12.3 kB, 4.0 MB."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def baseline_filename(database: str, admin_user: str = SUPERUSER) -> str:
    """Run as the admin role, which can create its roles and database (--admin-user)."""
    return f"{database}.00000000.0000.{admin_user}.baseline.sql"


@translated
def write_baseline(options: Options, database: str, output_dir: str, *,
                   schema_only: bool = False, data_for: tuple[str, ...] = ()) -> BaselineFile:
    """Dump the database (all rows, none, or those of ``data_for`` tables) with its roles.

    Dump, write and record happen under the server's lock, as one run: the file appears
    only when its record is written, and nothing of it (no temporary file, no record) is
    left when any step fails.
    """
    from postgresqlpatches import runner

    reason = check_identifier(database, "database")
    if reason:
        raise PgpatchError(f"baseline: {reason}")
    if schema_only and data_for:
        raise PgpatchError("baseline: --schema-only and --data-for exclude each other")
    target = Path(output_dir) / baseline_filename(database, options.admin_user)
    if target.exists():
        raise PgpatchError("the baseline file exists already", path=str(target),
                           hint="move it away first; pgpatch never overwrites a patch file")
    with runner.locked(options) as run:
        server = run.server
        if not run.maint.existing_databases({database}):
            raise PgpatchError(f"database {database} does not exist on {server.where()}")
        pg_dump = find_pg_dump(run.maint.server_version() // 10000)
        section, scope, rows_of = read_source(pg_dump, server, database,
                                              schema_only=schema_only, data_for=data_for)
        dump = run_pg_dump(pg_dump, server, database, scope)
        what = ("pg_dump --create --schema-only" if schema_only else
                "pg_dump --create, rows of the --data-for tables only" if data_for else
                "pg_dump --create")
        text = (f"-- Baseline of {database}: {what}, taken by pgpatch baseline.\n"
                f"-- Runs through psql as {options.admin_user} on the maintenance database, only on"
                " a server\n"
                "-- where the database does not exist yet.\n\n"
                + section
                + RESTRICT.sub("", dump))
        patch = read_patch(str(target), text=text)
        tmp = target.with_name(target.name + ".tmp")
        try:
            _write(tmp, text, target)
            # the state database first (made by its own patches if needed), then the record
            state_patches, _ = discover((), state_db=options.state_db,
                                        admin_user=options.admin_user)
            runner.execute(_only_state(options), run, state_patches, runner.SilentReporter())
            assert run.store is not None  # the run above made it
            store = run.store
            store.delete([r.id for r in store.records() if r.key == patch.name.key])
            record_id = store.insert(patch)
            try:
                tmp.rename(target)
            except OSError as e:
                store.delete([record_id])
                raise _unwritable(target, e) from e
        except BaseException:
            with contextlib.suppress(OSError):  # never written, or its folder is not one
                tmp.unlink(missing_ok=True)
            raise
    return BaselineFile(target, target.stat().st_size, rows_of)


def _write(tmp: Path, text: str, target: Path) -> None:
    """The file under its temporary name; an unwritable folder is one line naming it."""
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise _unwritable(target, e) from e


def _unwritable(target: Path, e: OSError) -> PgpatchError:
    return PgpatchError(f"cannot write the baseline: {e.strerror or type(e).__name__}",
                        path=str(target),
                        hint="choose an --output-dir pgpatch can write to; nothing was recorded")


def _only_state(options: Options) -> Options:
    from dataclasses import replace

    return replace(options, globs=())
