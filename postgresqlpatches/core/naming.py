"""Patch file names: ``<database>.<major>.<minor>.<user>.<description>.sql`` (pure)."""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from postgresqlpatches.errors import PgpatchError

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*\Z")
DESCRIPTION = re.compile(r"[A-Za-z0-9_-]+\Z")
MAJOR = re.compile(r"[0-9]{8}\Z")
MINOR = re.compile(r"[0-9]{4}\Z")
BOOTSTRAP_MAJOR = "00000000"
BASELINE_MINOR = "0000"
MAX_IDENTIFIER_BYTES = 63
FORM = "<database>.<YYYYMMDD>.<NNNN>.<user>.<description>.sql"
GROUP_MARK = "@"
"""A database part ``@NAME`` names the config file's database group NAME: ``@`` cannot start
a PostgreSQL database name as pgpatch takes them, so no existing name changes meaning."""


class BadName(PgpatchError):
    """A file name that is not a valid patch name."""


@dataclass(frozen=True, order=True)
class PatchName:
    """The five parts of a patch file name; ordering follows (database, major, minor)."""

    database: str
    major: str
    minor: str
    user: str
    description: str

    @property
    def key(self) -> tuple[str, str, str]:
        """A patch's identity: two files with the same key are the same patch."""
        return (self.database, self.major, self.minor)

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def group(self) -> str | None:
        """The group an ``@NAME`` file is for (it applies to each of its databases), or None."""
        return self.database[1:] if self.database.startswith(GROUP_MARK) else None

    @property
    def is_bootstrap(self) -> bool:
        """Major 00000000: run only when the database does not exist yet."""
        return self.major == BOOTSTRAP_MAJOR

    @property
    def is_baseline(self) -> bool:
        """00000000.0000: usually pg_dump output with psql meta-commands, so it runs in psql."""
        return self.is_bootstrap and self.minor == BASELINE_MINOR

    @property
    def filename(self) -> str:
        return f"{self.database}.{self.major}.{self.minor}.{self.user}.{self.description}.sql"


def check_identifier(value: str, what: str) -> str | None:
    """Why ``value`` is not a plain lower-case PostgreSQL identifier, or None when it is."""
    if not value:
        return f"the {what} part is empty"
    if not IDENTIFIER.match(value):
        return (
            f"the {what} {value!r} is not a plain PostgreSQL identifier "
            "(lower-case letters, digits and _, not starting with a digit)"
        )
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        return f"the {what} {value!r} is longer than {MAX_IDENTIFIER_BYTES} bytes"
    return None


def parse_name(filename: str, path: str | None = None) -> PatchName:
    """Parse a file's base name; BadName names the file and says which part is wrong."""
    where = path if path is not None else filename
    reason = _why_bad(filename)
    if reason:
        raise BadName(
            f"not a patch file name: {reason}", path=where, hint=f"patch files are named {FORM}"
        )
    database, major, minor, user, description, _ = filename.split(".")
    return PatchName(database, major, minor, user, description)


def _why_bad(filename: str) -> str | None:
    if not filename.endswith(".sql"):
        return "it does not end in .sql"
    parts = filename.split(".")
    if len(parts) != 6:
        return f"it has {len(parts) - 1} dot-separated parts instead of 5 before .sql"
    database, major, minor, user, description, _ = parts
    if database.startswith(GROUP_MARK):  # @NAME: a database group of the config file
        database, first = database[1:], "group"
    else:
        first = "database"
    for value, what in ((database, first), (user, "user")):
        reason = check_identifier(value, what)
        if reason:
            return reason
    if not MAJOR.match(major):
        return f"the major version {major!r} is not 8 digits (YYYYMMDD or 00000000)"
    if major != BOOTSTRAP_MAJOR:
        try:
            _dt.date(int(major[:4]), int(major[4:6]), int(major[6:]))
        except ValueError:
            return f"the major version {major!r} is not a real date (YYYYMMDD)"
    if not MINOR.match(minor):
        return f"the minor version {minor!r} is not 4 digits"
    if not DESCRIPTION.match(description):
        return f"the description {description!r} may only hold letters, digits, _ and -"
    return None
