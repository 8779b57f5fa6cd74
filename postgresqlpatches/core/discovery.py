"""Globs to patches: read each file once, parse its name, find duplicates."""

from __future__ import annotations

import functools
import glob
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from postgresqlpatches.core.checksums import text_checksum, token_checksum
from postgresqlpatches.core.naming import BadName, PatchName, parse_name
from postgresqlpatches.core.records import Problem
from postgresqlpatches.errors import PgpatchError

if TYPE_CHECKING:
    from postgresqlpatches.core.statements import ParsedSql

BUILTIN_PREFIX = "<pgpatch>/"
BUILTIN_USER = "postgres"
"""The user the shipped state patches name: they run as the --admin-user."""
log = logging.getLogger("pgpatch")


@dataclass(frozen=True)
class Patch:
    """One patch file: its parsed name, where it was found, its text and checksums."""

    name: PatchName
    path: str
    text: str = field(repr=False)
    text_checksum: str
    """Checksum version 1, of the text: cheap, so an unchanged file costs no scan."""
    builtin: bool = False
    origin: Patch | None = field(default=None, repr=False, compare=False)
    """For one database of a group: the ``@NAME`` file's patch (planner.expand_groups)."""

    @functools.cached_property
    def checksum(self) -> str:
        """Checksum version 2, of PostgreSQL's tokens (what records keep); scanned on first use.

        A 0000 baseline runs through psql: its meta-commands and COPY rows count as well.
        The databases of a group share their file's: it is scanned once, not once each."""
        if self.origin is not None:
            return self.origin.checksum
        return token_checksum(self.text, psql=self.name.is_baseline)

    @functools.cached_property
    def parsed(self) -> ParsedSql:
        """The statements psycopg will run, parsed on first use and kept: every plan over
        this value (one per target, a group's databases) shares one parse. A file that does
        not parse raises each time (PgpatchError with its line)."""
        if self.origin is not None:
            return self.origin.parsed
        from postgresqlpatches.core.statements import parse_sql

        return parse_sql(self.text)

    @functools.cached_property
    def created_roles(self) -> frozenset[str]:
        """The roles the file creates by name (statements.created_role_names), scanned once
        per Patch value like ``parsed``."""
        if self.origin is not None:
            return self.origin.created_roles
        from postgresqlpatches.core.statements import created_role_names

        return created_role_names(self.text)

    @property
    def group(self) -> str | None:
        """The database group this patch came from (``@NAME`` files), or None."""
        return (self.origin or self).name.group


def expand_globs(patterns: Sequence[str]) -> tuple[list[str], list[Problem]]:
    """Expand shell-style globs (``**`` allowed); a glob that matches nothing is a problem."""
    paths: list[str] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    real_dirs: dict[str, str] = {}
    for pattern in patterns:
        matches = _glob_telling_case(os.path.expanduser(pattern))
        files = []
        special = 0
        for m in matches:
            # one lstat per file, realpath once per folder: 10,000 realpath calls cost 0.17 s
            try:
                mode = os.lstat(m).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                real = os.path.realpath(m)
                try:
                    mode = os.stat(real).st_mode
                except OSError:  # a dangling link: read_patch names it
                    mode = stat.S_IFREG
                if stat.S_ISDIR(mode):
                    continue
            elif stat.S_ISDIR(mode):
                continue
            else:
                head, tail = os.path.split(m)
                real_dir = real_dirs.get(head)
                if real_dir is None:
                    real_dir = real_dirs[head] = os.path.realpath(head or ".")
                real = os.path.join(real_dir, tail)
            if not stat.S_ISREG(mode):
                # opening a FIFO waits for a writer forever; a device may act on open
                special += 1
                if real not in seen:
                    seen.add(real)
                    problems.append(_not_a_file(m, mode))
                continue
            files.append((m, real))
        if not files and not special:
            problems.append(
                Problem("no-match", pattern, "the glob matches no file", hint="check the path; "
                        "quote globs so that pgpatch, not the shell, expands them")
            )
        for m, real in files:
            if real not in seen:
                seen.add(real)
                paths.append(m)
    return paths, problems


def _glob_telling_case(pattern: str) -> list[str]:
    """The glob's matches; a file that a ``*.sql`` glob misses only by the case of its
    extension (``.SQL``, ``.Sql``) is named in a warning instead of being skipped silently.

    One walk of the folders either way: the extension is matched in any case, and only the
    case of the extension tells the two apart (where glob ignores case, as on Windows, the
    glob matched them all already).
    """
    folder, last = os.path.split(pattern)
    if not last.endswith(".sql"):
        return sorted(glob.glob(pattern, recursive=True))
    any_case = os.path.join(folder, last[:-len(".sql")] + ".[sS][qQ][lL]")
    case_blind = os.path.normcase("A") == "a"
    matches = []
    for m in sorted(glob.glob(any_case, recursive=True)):
        if case_blind or m.endswith(".sql"):
            matches.append(m)
        else:
            log.warning("%s: skipped: the glob '%s' matches names ending in .sql, and this one "
                        "ends in %s (rename it to .sql)", m, pattern, m[-len(".sql"):])
    return matches


SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _not_a_file(path: str, mode: int) -> Problem:
    """A match that is not a regular file is refused from its lstat/stat alone, unopened."""
    what = next((word for test, word in SPECIAL_FILES if test(mode)), "a special file")
    return Problem("unreadable", path, f"the file is {what}, not a regular file: pgpatch "
                   "does not open it", hint="remove it, or narrow the glob to patch files")


def read_patch(path: str, *, builtin: bool = False, text: str | None = None) -> Patch:
    """Read and name one file; PgpatchError names the file when it cannot be used."""
    name = parse_name(os.path.basename(path), path)
    if text is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise PgpatchError(f"cannot read the file: {e.strerror}", path=path) from e
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            raise PgpatchError(
                "the file is not valid UTF-8", path=path, line=line,
                hint="save patch files as UTF-8",
            ) from e
    if text.startswith("\ufeff"):
        text = text[1:]
    return Patch(name=name, path=path, text=text, text_checksum=text_checksum(text),
                 builtin=builtin)


def builtin_patches(state_db: str, admin_user: str = BUILTIN_USER) -> list[Patch]:
    """The state database's own patches, shipped in the package; renamed for --state-db, and
    run as the --admin-user (their files name postgres)."""
    patches = []
    # package data beside this module (plain files: the wheel is never zipped)
    for entry in sorted(Path(__file__).resolve().parents[1].joinpath("sql").glob("*.sql")):
        patch = read_patch(BUILTIN_PREFIX + entry.name, builtin=True,
                           text=entry.read_text("utf-8"))
        if state_db != patch.name.database or admin_user != patch.name.user:
            user = admin_user if patch.name.user == BUILTIN_USER else patch.name.user
            name = PatchName(state_db, *patch.name.key[1:], user, patch.name.description)
            patch = Patch(name, patch.path, patch.text, patch.text_checksum, builtin=True)
        patches.append(patch)
    return patches


@dataclass(frozen=True)
class Tree:
    """What discover found, for several runs over one tree (targets): the files are read,
    checksummed and parsed once, whatever the number of servers."""

    patches: tuple[Patch, ...]
    problems: tuple[Problem, ...]


def read_tree(patterns: Sequence[str], *, state_db: str, admin_user: str) -> Tree:
    """discover, kept as a value that several runs share."""
    patches, problems = discover(patterns, state_db=state_db, admin_user=admin_user)
    return Tree(tuple(patches), tuple(problems))


def discover(patterns: Sequence[str], *, state_db: str = "patches",
             with_builtin: bool = True,
             admin_user: str = BUILTIN_USER) -> tuple[list[Patch], list[Problem]]:
    """All patches in run order (the state database's own first) and the problems found."""
    paths, problems = expand_globs(patterns)
    found: list[Patch] = builtin_patches(state_db, admin_user) if with_builtin else []
    for path in paths:
        try:
            found.append(read_patch(path))
        except PgpatchError as e:
            kind = "bad-name" if isinstance(e, BadName) else "unreadable"
            problems.append(Problem(kind, e.path, e.message, e.line, e.hint))
    problems.extend(find_duplicates(found))
    return sort_patches(found, state_db), problems


def find_duplicates(patches: Iterable[Patch]) -> list[Problem]:
    by_key: dict[tuple[str, str, str], Patch] = {}
    problems = []
    for patch in patches:
        other = by_key.setdefault(patch.name.key, patch)
        if other is not patch:
            hint = ("the state database's own patches ship with pgpatch; remove yours"
                    if other.builtin else "give one of them the next free minor version")
            problems.append(Problem(
                "duplicate", patch.path,
                f"version {patch.name.database} {patch.name.version} is used twice: "
                f"{other.path} and {patch.path}", hint=hint))
    return problems


def sort_patches(patches: Iterable[Patch], state_db: str) -> list[Patch]:
    """Run order: the state database first, then by (database, major, minor); paths never count."""
    return sorted(patches, key=lambda p: (p.name.database != state_db, p.name.key))
