"""`pgpatch new`: the next correctly named patch file, so nobody types a version by hand.

The version is today's date (the local date: the day the author sees on their calendar) and
the next free minor for that database and date among the files already in the folder and its
subfolders. `plan` still catches two authors who picked the same minor on two branches.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable
from pathlib import Path

from postgresqlpatches.core.naming import (
    DESCRIPTION,
    FORM,
    MINOR,
    PatchName,
    check_identifier,
)
from postgresqlpatches.errors import PgpatchError

MAX_MINOR = 9999


def check_parts(database: str, user: str, description: str) -> None:
    """Refuse what would make a bad file name, saying which part is wrong."""
    group = database.startswith("@")  # @NAME: a database group of the config file
    for value, what in ((database[1:] if group else database, "group" if group else "database"),
                        (user, "user")):
        reason = check_identifier(value, what)
        if reason:
            raise PgpatchError(reason, hint=f"patch files are named {FORM}")
    if not DESCRIPTION.match(description):
        raise PgpatchError(
            f"the description {description!r} may only hold letters, digits, _ and -",
            hint="e.g. add_orders_index or fix-typo")


def existing_names(directory: Path) -> Iterable[str]:
    """File names in the folder and below it; hidden folders (.git, .venv) are skipped."""
    for _root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from files


def next_minor(names: Iterable[str], database: str, major: str) -> str:
    """One above the highest minor already used by DATABASE.MAJOR.*; 0001 when none is."""
    used = [int(parts[2]) for parts in (n.split(".") for n in names)
            if len(parts) == 6 and parts[0] == database and parts[1] == major
            and parts[5] == "sql" and MINOR.match(parts[2])]
    minor = max(used, default=0) + 1
    if minor > MAX_MINOR:
        raise PgpatchError(f"no free minor version left for {database} on {major}",
                           hint="use tomorrow's date, or merge some of today's patches")
    return f"{minor:04d}"


def new_patch_name(database: str, user: str, description: str, directory: Path,
                   today: _dt.date | None = None) -> PatchName:
    check_parts(database, user, description)
    major = (today or _dt.date.today()).strftime("%Y%m%d")
    names = existing_names(directory) if directory.is_dir() else ()
    return PatchName(database, major, next_minor(names, database, major), user, description)


def template(name: PatchName) -> str:
    where = (f"on each database of group {name.group}" if name.group
             else f"on database {name.database}")
    return (f"-- {name.description}: runs once, as {name.user} {where}, "
            "in one transaction.\n"
            "-- Lint rules: silence one for the next statement with -- pgpatch: allow RULE-ID\n"
            "\n")


def create_patch(database: str, user: str, description: str, directory: str | Path = ".",
                 today: _dt.date | None = None) -> Path:
    """Write the new file (the folder is created if needed); never overwrite one."""
    folder = Path(directory)
    name = new_patch_name(database, user, description, folder, today)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name.filename
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(template(name))
    except FileExistsError as e:
        raise PgpatchError("the file exists already", path=str(path)) from e
    return path
