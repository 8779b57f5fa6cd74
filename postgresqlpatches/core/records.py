"""The values the planner reads and the renderer shows: records of what ran, and problems.

They live in the core so that planning needs nothing from ``pg/``: the state store builds
``Record`` values from its rows, the planner and the renderer only read them.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass

XACT_FUTURE = "in the future"
"""Maintenance.xact_status of a transaction id this server has not handed out yet."""


@dataclass(frozen=True)
class Problem:
    """Something that stops a run before anything runs; ``kind`` is a stable word for JSON."""

    kind: str
    path: str | None
    message: str
    line: int | None = None
    hint: str | None = None


@dataclass(frozen=True)
class Record:
    """One row of installed_patches; old rows (original tool) have no checksum, user or xid."""

    id: int
    database: str
    major: str
    minor: str
    name: str
    installed: _dt.datetime | None
    user: str | None = None
    path: str | None = None
    checksum: str | None = None
    xid: int | None = None
    settled: bool = True
    non_transactional: bool = False
    statements_done: int | None = None
    duration_ms: float | None = None
    run_by: str | None = None
    checksum_version: int | None = None
    """None (records made before versions existed) means 1: the text's sha256."""
    text_checksum: str | None = None
    statement_checksums: tuple[str, ...] | None = None
    """A non-transactional patch: the checksum of each statement done."""
    oid_horizon: int | None = None
    """A bootstrap step's mark: the largest database oid when the step began."""
    session_budget: int | None = None
    """A bootstrap step's mark: how many sessions it may open to its database (None: any)."""
    pgpatch_version: str | None = None
    run: int | None = None
    """A repeatable patch's record: which of its runs (1, 2, ...); None for versioned ones,
    which have one record each."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.database, self.major, self.minor)

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"


def last_runs(records: Iterable[Record]) -> list[Record]:
    """Every record, but of a repeatable patch only its last run (the one with the highest
    id), in place of the first: what `status` shows."""
    out: dict[tuple[str, str, str] | int, Record] = {}
    for r in records:
        key = r.key if r.run is not None else r.id
        if key not in out or out[key].id < r.id:
            out[key] = r
    return list(out.values())
