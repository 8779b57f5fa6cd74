"""What pgpatch knows of the state database's own shipped patches (postgresqlpatches/sql/),
pinned by their text checksums, so an edit of a file (which tests/unit/test_builtin_patches.py
forbids anyway) falls back to the general rules.

- The baseline is a psql script; pgpatch runs that exact text itself (pg/state.py
  ``make_state_database``), as psql would run it, without a psql process and its two
  logins: ``script_steps`` is the file as psql reads it, ``substitute`` psql's variables.
- Patches whose DO blocks only change owners need no new session after them: DISCARD ALL
  is enough (a DO block that names a role or database otherwise gets every kept connection
  made anew, statements.new_session_needed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postgresqlpatches.core.discovery import Patch

OWN_BASELINE = ("patches.00000000.0000.postgres.baseline.sql",
                "21aed3cef18ece0af88ddbf68951d5f64400052076938019781d7921bddb579f")
"""The shipped baseline's file name and text checksum (version 1: its bytes)."""

OWNERS_ONLY = {
    "patches.20261126.0001.postgres.checksums_and_xids.sql":
        "3e65b1f9b2ede94e30c2b38a6227ebbdedbf26bcf2942d25aa64373f6acb52a5",
}
"""Shipped patches whose DO block only gives the database and its tables to ``patches``
(ALTER DATABASE / TABLE ... OWNER TO): nothing a login reads changes."""

RUN_HERE = frozenset({"\\getenv", "\\gset", "\\if", "\\endif", "\\connect"})
"""The meta-commands of the shipped baseline, each of which make_state_database runs as psql
does; a script with any other is not run without psql."""


def _shipped_name(patch: Patch) -> str:
    """The file's shipped name (the patch is renamed for --state-db and --admin-user)."""
    return patch.path.rsplit("/", 1)[-1]


def runs_without_psql(patch: Patch) -> bool:
    """The state database's shipped baseline, byte for byte: pgpatch runs it itself."""
    return patch.builtin and (_shipped_name(patch), patch.text_checksum) == OWN_BASELINE


def needs_no_new_session(patch: Patch) -> bool:
    """A shipped state patch whose only session-wide change is reset by DISCARD ALL."""
    return patch.builtin and OWNERS_ONLY.get(_shipped_name(patch)) == patch.text_checksum


@dataclass(frozen=True)
class ScriptStep:
    """One thing psql does, in file order: send SQL (``command`` empty: ``text`` holds one or
    more statements, from ``offset`` in the file, ``line`` its first) or run a meta-command
    (``text`` its arguments)."""

    line: int
    command: str
    text: str
    offset: int = 0


def script_steps(text: str) -> tuple[ScriptStep, ...]:
    """The script as psql reads it: SQL up to each meta-command, then the meta-command (a
    ``\\gset`` ends the SQL before it on its line, which is then its query)."""
    from postgresqlpatches.core.statements import meta_command_spans

    steps: list[ScriptStep] = []
    pos = 0
    for start, end, line, name in meta_command_spans(text):
        _sql(steps, text, pos, start)
        steps.append(ScriptStep(line, name, text[start + len(name):end].strip()))
        pos = end
    _sql(steps, text, pos, len(text))
    return tuple(steps)


def _sql(steps: list[ScriptStep], text: str, start: int, end: int) -> None:
    from postgresqlpatches.core.statements import line_of

    chunk = text[start:end]
    if chunk.strip():
        first = start + len(chunk) - len(chunk.lstrip())
        steps.append(ScriptStep(line_of(text, first), "", text[first:end], first))


_VARIABLE = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|(\$[A-Za-z_]*\$).*?\1"""
    r"""|:'(\w+)'|:"(\w+)"|(?<!:):(\w+)""", re.DOTALL)
"""psql's variable forms (:'name', :"name", :name), outside quotes, comments and dollar
quotes (and not a ``::`` cast)."""


def substitute(text: str, variables: Mapping[str, str], literal: Callable[[str], str],
               identifier: Callable[[str], str]) -> str:
    """``text`` with psql's variables replaced as psql replaces them: ``:'name'`` by the value
    as a string literal, ``:"name"`` as an identifier, ``:name`` as it is; a name that is not
    set stays as written (as in psql). ``literal`` and ``identifier`` quote (psycopg.sql)."""

    def one(m: re.Match[str]) -> str:
        as_literal, as_identifier, plain = m.group(2), m.group(3), m.group(4)
        name = as_literal or as_identifier or plain
        if name is None or name not in variables:
            return m.group(0)
        value = variables[name]
        if as_literal:
            return literal(value)
        return identifier(value) if as_identifier else value

    return _VARIABLE.sub(one, text)


def psql_boolean(value: str) -> bool | None:
    """A value as psql's ``\\if`` reads it (None: not a boolean, an error in psql)."""
    word = value.strip().lower()
    if word in ("1", "0"):
        return word == "1"
    if not word or word == "o":  # on or off: ambiguous
        return None
    for meaning, words in ((True, ("true", "yes", "on")), (False, ("false", "no", "off"))):
        if any(w.startswith(word) for w in words):
            return meaning
    return None
