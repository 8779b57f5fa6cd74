"""What a rehearsal found, as values: per patch its outcome and time, per statement its locks.

Pure: pg/lockwatch.py reads the server and hands the rows to ``statement_locks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from postgresqlpatches.core.lockmodes import MODES, blocks, conflicts, mode_name, strength

if TYPE_CHECKING:
    from postgresqlpatches.core.locks import LockConflict

INDEX_KINDS = frozenset({"i", "I"})
REWRITABLE_KINDS = frozenset({"r", "m"})
"""Tables and materialized views have their own storage: a new relfilenode is a new copy."""


@dataclass(frozen=True)
class Relation:
    """A relation as it was before the patch began: its name, kind and file (relfilenode)."""

    name: str
    kind: str
    filenode: int
    table: str | None = None
    """The table of an index."""


@dataclass(frozen=True)
class LockTaken:
    relation: str
    mode: str  # the manual's name: ACCESS EXCLUSIVE

    @property
    def blocks_reads(self) -> bool:
        return blocks(self.mode)[0]

    @property
    def blocks_writes(self) -> bool:
        return blocks(self.mode)[1]


@dataclass(frozen=True)
class StatementLocks:
    """The locks a statement took first in its patch, and the tables it rewrote."""

    line: int
    locks: tuple[LockTaken, ...] = ()
    rewritten: tuple[str, ...] = ()


def statement_locks(line: int, before: Mapping[int, Relation], held: set[tuple[int, str]],
                    rows: Iterable[tuple[int, str, int | None]],
                    filenodes: dict[int, int]) -> StatementLocks:
    """One statement's share of what its transaction holds now.

    ``rows``: (oid, pg_locks mode, relfilenode now) of each relation lock granted now.
    ``held``: the (oid, mode) pairs earlier statements took, updated here; a lock held
    already is the earlier statement's (PostgreSQL does not show a lock taken twice).
    ``filenodes``: each relation's relfilenode as last seen, updated here. Relations the
    patch made itself (not in ``before``) block nobody: left out. An index locked in the same
    mode as its table is left out too: it follows from the table's lock.
    """
    now = [(oid, mode_name(mode), node) for oid, mode, node in rows if oid in before]
    modes_now = {(oid, mode) for oid, mode, _ in now}
    earlier = set(held)
    held |= modes_now
    by_name = {before[oid].name: oid for oid, _ in modes_now}
    locks = []
    for oid, mode in sorted(modes_now - earlier):
        relation = before[oid]
        table = by_name.get(relation.table or "")
        if relation.kind in INDEX_KINDS and table is not None and (table, mode) in modes_now:
            continue
        # a mode that blocks no more than one held on the relation adds nothing to say
        if any(m != mode and _covers(m, mode) for o, m in modes_now if o == oid):
            continue
        locks.append(LockTaken(relation.name, mode))
    locks.sort(key=lambda lock: (-strength(lock.mode), lock.relation))
    rewritten = []
    for oid, _mode, node in now:
        if node is None or before[oid].kind not in REWRITABLE_KINDS:
            continue
        if node != filenodes.get(oid, before[oid].filenode):
            rewritten.append(before[oid].name)
        filenodes[oid] = node
    return StatementLocks(line, tuple(locks), tuple(sorted(set(rewritten))))


def _covers(mode: str, other: str) -> bool:
    """Whether holding ``mode`` makes every session wait that ``other`` would."""
    return all(conflicts(mode, m) for m in MODES if conflicts(other, m))


OUTCOMES = ("ran", "failed", "not run")


@dataclass
class PatchRehearsal:
    """One pending patch on the copy: ran, failed (where and why) or not run (after a
    failure); how long it took there; its statements' locks (APPLY steps)."""

    path: str
    database: str
    version: str
    user: str
    action: str
    outcome: str = "not run"
    seconds: float | None = None
    line: int | None = None
    sqlstate: str | None = None
    message: str | None = None
    statements: list[StatementLocks] = field(default_factory=list)
    lock_conflicts: tuple[LockConflict, ...] = ()
    """The live sessions whose locks conflict with the patch's, from the live plan."""
