"""core/locks.py: the manual's table of conflicting lock modes, and what each mode blocks;
core/rehearsal.py: one statement's share of its transaction's locks."""

from __future__ import annotations

import pytest

from postgresqlpatches.core.lockmodes import MODES, blocks, conflicts, mode_name
from postgresqlpatches.core.rehearsal import LockTaken, Relation, statement_locks

# The manual's "Conflicting Lock Modes" table, row by row: X where the two conflict.
TABLE = """
ACCESS SHARE           . . . . . . . X
ROW SHARE              . . . . . . X X
ROW EXCLUSIVE          . . . . X X X X
SHARE UPDATE EXCLUSIVE . . . X X X X X
SHARE                  . . X X . X X X
SHARE ROW EXCLUSIVE    . . X X X X X X
EXCLUSIVE              . X X X X X X X
ACCESS EXCLUSIVE       X X X X X X X X
"""


def _table() -> list[tuple[str, str, bool]]:
    cases = []
    for row in TABLE.strip().splitlines():
        *words, = row.split()
        marks = words[-8:]
        mode = " ".join(words[:-8])
        cases += [(mode, other, mark == "X") for other, mark in zip(MODES, marks, strict=True)]
    return cases


@pytest.mark.parametrize("mode, other, expected", _table())
def test_conflicts_is_the_manuals_table(mode: str, other: str, expected: bool) -> None:
    assert conflicts(mode, other) is expected
    assert conflicts(other, mode) is expected  # the table is symmetric


@pytest.mark.parametrize("mode, reads, writes", [
    ("ACCESS SHARE", False, False),
    ("ROW SHARE", False, False),
    ("ROW EXCLUSIVE", False, False),
    ("SHARE UPDATE EXCLUSIVE", False, False),
    ("SHARE", False, True),
    ("SHARE ROW EXCLUSIVE", False, True),
    ("EXCLUSIVE", False, True),
    ("ACCESS EXCLUSIVE", True, True),
])
def test_blocks_says_whether_selects_and_writes_wait(mode: str, reads: bool,
                                                     writes: bool) -> None:
    assert blocks(mode) == (reads, writes)


@pytest.mark.parametrize("spelling, name", [
    ("AccessExclusiveLock", "ACCESS EXCLUSIVE"),
    ("ShareUpdateExclusiveLock", "SHARE UPDATE EXCLUSIVE"),
    ("share row exclusive", "SHARE ROW EXCLUSIVE"),
    ("ROW_EXCLUSIVE", "ROW EXCLUSIVE"),
])
def test_pg_locks_spelling_and_the_manuals_are_one_mode(spelling: str, name: str) -> None:
    assert mode_name(spelling) == name


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="not a table lock mode"):
        blocks("AdvisoryLock")


BEFORE = {
    1: Relation("public.t", "r", 100),
    2: Relation("public.t_pkey", "i", 200, table="public.t"),
    3: Relation("public.u", "r", 300),
}


def test_a_statement_shows_the_locks_it_took_first_and_the_tables_it_rewrote() -> None:
    held: set[tuple[int, str]] = set()
    nodes: dict[int, int] = {}
    first = statement_locks(1, BEFORE, held, [
        (1, "AccessExclusiveLock", 101), (1, "ShareLock", 101),
        (2, "AccessExclusiveLock", 201), (9, "AccessExclusiveLock", 900)], nodes)
    # the index follows its table, SHARE adds nothing to ACCESS EXCLUSIVE, relation 9 is new
    assert first.locks == (LockTaken("public.t", "ACCESS EXCLUSIVE"),)
    assert first.rewritten == ("public.t",)
    second = statement_locks(2, BEFORE, held, [
        (1, "AccessExclusiveLock", 101), (3, "RowExclusiveLock", 300)], nodes)
    assert second.locks == (LockTaken("public.u", "ROW EXCLUSIVE"),)
    assert second.rewritten == ()  # t keeps the file the first statement gave it


def test_an_index_locked_more_strongly_than_its_table_shows() -> None:
    got = statement_locks(1, BEFORE, set(), [
        (1, "ShareLock", 100), (2, "AccessExclusiveLock", 200)], {})
    assert got.locks == (LockTaken("public.t_pkey", "ACCESS EXCLUSIVE"),
                         LockTaken("public.t", "SHARE"))
    assert got.locks[0].blocks_reads and got.locks[1].blocks_writes
    assert not got.locks[1].blocks_reads
