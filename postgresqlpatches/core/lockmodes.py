"""Table lock modes by the manual's names (ACCESS SHARE, ..., ACCESS EXCLUSIVE), as rehearse
reports them, over the one conflict matrix in core/locks.py (which spells them as pg_locks
does). Pure.

A patch's statement takes a mode on a relation; whoever asks for a conflicting mode on it waits
until the patch's transaction ends. ``blocks`` says what that means for an application: plain
reads (``SELECT`` takes ACCESS SHARE) and writes (``INSERT``/``UPDATE``/``DELETE`` take ROW
EXCLUSIVE).
"""

from __future__ import annotations

import re

from postgresqlpatches.core import locks

MODES = tuple(" ".join(re.findall("[A-Z][a-z]+", m[: -len("Lock")])).upper()
              for m in locks.MODES)
"""Weakest first, as the manual lists them."""

_PG_LOCKS_NAMES = dict(zip(locks.MODES, MODES, strict=True))
"""pg_locks.mode spells them AccessShareLock, ..., AccessExclusiveLock."""
_BY_NAME = {name: pg for pg, name in _PG_LOCKS_NAMES.items()}


def mode_name(mode: str) -> str:
    """The manual's name of a mode, from it or from pg_locks' spelling; ValueError if neither."""
    if mode in _PG_LOCKS_NAMES:
        return _PG_LOCKS_NAMES[mode]
    name = " ".join(mode.replace("_", " ").upper().split())
    if name not in _BY_NAME:
        raise ValueError(f"not a table lock mode: {mode!r}")
    return name


def conflicts(mode_a: str, mode_b: str) -> bool:
    """Whether a holder of one mode makes a session asking for the other wait (symmetric)."""
    return locks.conflicts(_BY_NAME[mode_name(mode_a)], _BY_NAME[mode_name(mode_b)])


def blocks(mode: str) -> tuple[bool, bool]:
    """(reads, writes): whether holding ``mode`` makes plain SELECTs, and INSERT / UPDATE /
    DELETE, on the relation wait."""
    return conflicts(mode, "ACCESS SHARE"), conflicts(mode, "ROW EXCLUSIVE")


def strength(mode: str) -> int:
    """The mode's place in MODES, to list a relation's strongest mode first (the order is
    the manual's; SHARE does not conflict with itself, SHARE UPDATE EXCLUSIVE does)."""
    return MODES.index(mode_name(mode))
