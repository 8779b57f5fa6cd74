"""PostgreSQL's table-level lock modes and which of them conflict: pure, from the manual's table.

A patch's statement takes a mode on a relation; whoever asks for a conflicting mode on it waits
until the patch's transaction ends. ``blocks`` says what that means for an application: plain
reads (``SELECT`` takes ACCESS SHARE) and writes (``INSERT``/``UPDATE``/``DELETE`` take ROW
EXCLUSIVE).
"""

from __future__ import annotations

MODES = ("ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
         "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE")
"""Weakest first, as the manual lists them."""

_CONFLICTS: dict[str, frozenset[str]] = {
    "ACCESS SHARE": frozenset({"ACCESS EXCLUSIVE"}),
    "ROW SHARE": frozenset({"EXCLUSIVE", "ACCESS EXCLUSIVE"}),
    "ROW EXCLUSIVE": frozenset({"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE",
                                "ACCESS EXCLUSIVE"}),
    "SHARE UPDATE EXCLUSIVE": frozenset({"SHARE UPDATE EXCLUSIVE", "SHARE",
                                         "SHARE ROW EXCLUSIVE", "EXCLUSIVE",
                                         "ACCESS EXCLUSIVE"}),
    "SHARE": frozenset({"ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE ROW EXCLUSIVE",
                        "EXCLUSIVE", "ACCESS EXCLUSIVE"}),
    "SHARE ROW EXCLUSIVE": frozenset({"ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
                                      "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}),
    "EXCLUSIVE": frozenset({"ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
                            "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}),
    "ACCESS EXCLUSIVE": frozenset(MODES),
}

_PG_LOCKS_NAMES = {m.title().replace(" ", "") + "Lock": m for m in MODES}
"""pg_locks.mode spells them AccessShareLock, ..., AccessExclusiveLock."""


def mode_name(mode: str) -> str:
    """The manual's name of a mode, from it or from pg_locks' spelling; ValueError if neither."""
    if mode in _PG_LOCKS_NAMES:
        return _PG_LOCKS_NAMES[mode]
    name = " ".join(mode.replace("_", " ").upper().split())
    if name not in _CONFLICTS:
        raise ValueError(f"not a table lock mode: {mode!r}")
    return name


def conflicts(mode_a: str, mode_b: str) -> bool:
    """Whether a holder of one mode makes a session asking for the other wait (symmetric)."""
    return mode_name(mode_b) in _CONFLICTS[mode_name(mode_a)]


def blocks(mode: str) -> tuple[bool, bool]:
    """(reads, writes): whether holding ``mode`` makes plain SELECTs, and INSERT / UPDATE /
    DELETE, on the relation wait."""
    return conflicts(mode, "ACCESS SHARE"), conflicts(mode, "ROW EXCLUSIVE")


def strength(mode: str) -> int:
    """The mode's place in MODES, to list a relation's strongest mode first (the order is
    the manual's; SHARE does not conflict with itself, SHARE UPDATE EXCLUSIVE does)."""
    return MODES.index(mode_name(mode))
