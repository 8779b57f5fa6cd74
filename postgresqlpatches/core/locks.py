"""Which table locks a patch will take, predicted from its parsed statements alone, and the
PostgreSQL lock conflict matrix.

Pure: statements in, (relation, mode) pairs out. ``plan`` compares them with the locks that
live sessions hold or wait for (pg/locks.py); the modes are spelled as ``pg_locks.mode``
spells them, so the two meet without translation. The table follows the PostgreSQL
documentation ("Explicit Locking", "Table-Level Locks") and the lock each command's page
names; statements not listed take no table lock worth predicting (a plain SELECT's ACCESS
SHARE conflicts with ACCESS EXCLUSIVE only, which is what the listed DDL takes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a no-op run imports this module (values.py) but parses nothing
    from postgresqlpatches.core.statements import Statement

ACCESS_SHARE = "AccessShareLock"
ROW_SHARE = "RowShareLock"
ROW_EXCLUSIVE = "RowExclusiveLock"
SHARE_UPDATE_EXCLUSIVE = "ShareUpdateExclusiveLock"
SHARE = "ShareLock"
SHARE_ROW_EXCLUSIVE = "ShareRowExclusiveLock"
EXCLUSIVE = "ExclusiveLock"
ACCESS_EXCLUSIVE = "AccessExclusiveLock"

MODES = (ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE,
         SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE)
"""Weakest first; LOCK TABLE's mode number (pglast's LockStmt.mode) is the index plus one."""

_CONFLICTS: dict[str, frozenset[str]] = {
    ACCESS_SHARE: frozenset({ACCESS_EXCLUSIVE}),
    ROW_SHARE: frozenset({EXCLUSIVE, ACCESS_EXCLUSIVE}),
    ROW_EXCLUSIVE: frozenset({SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE}),
    SHARE_UPDATE_EXCLUSIVE: frozenset({SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE,
                                       EXCLUSIVE, ACCESS_EXCLUSIVE}),
    SHARE: frozenset({ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE,
                      ACCESS_EXCLUSIVE}),
    SHARE_ROW_EXCLUSIVE: frozenset({ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE,
                                    SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE}),
    EXCLUSIVE: frozenset({ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE,
                          SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE}),
    ACCESS_EXCLUSIVE: frozenset(MODES),
}


def conflicts(mode_a: str, mode_b: str) -> bool:
    """Whether two sessions can hold these table lock modes at once (the matrix is
    symmetric); an unknown mode (not a table lock) conflicts with nothing."""
    return mode_b in _CONFLICTS.get(mode_a, ())


def blocks(mode: str) -> tuple[bool, bool]:
    """(reads, writes): whether a plain SELECT (ACCESS SHARE) and INSERT/UPDATE/DELETE (ROW
    EXCLUSIVE) of other sessions wait while ``mode`` is held or queued."""
    return conflicts(mode, ACCESS_SHARE), conflicts(mode, ROW_EXCLUSIVE)


def stronger(mode_a: str, mode_b: str) -> str:
    return max(mode_a, mode_b, key=MODES.index)


@dataclass(frozen=True)
class RelationLock:
    """A lock a statement takes: on ``schema.name`` as written (schema None: the search_path
    finds it), in ``mode``."""

    schema: str | None
    name: str
    mode: str

    @property
    def relation(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class Session:
    """A live session as pg_stat_activity shows it (pgpatch's own excluded)."""

    pid: int
    user: str | None
    application_name: str | None
    state: str | None
    xact_seconds: float | None
    """How long its transaction has been open (None: not in a transaction)."""
    query: str
    """The first line of its current or last query."""

    def describe(self) -> str:
        """``pid 4711 (alice, psql, idle in transaction for 12 s: UPDATE ledger ...)``."""
        parts = [p for p in (self.user, self.application_name) if p]
        state = self.state or "state unknown"
        if self.xact_seconds is not None:
            state += f" for {self.xact_seconds:.0f} s"
        parts.append(state + (f": {self.query}" if self.query else ""))
        return f"pid {self.pid} ({', '.join(parts)})"


@dataclass(frozen=True)
class LockConflict:
    """A live session that holds (``granted``) or waits for ``held_mode`` on ``relation``,
    which conflicts with the ``mode`` the patch will take there: the patch would wait for
    it (or, queued behind a waiting one, still wait)."""

    relation: str
    mode: str
    held_mode: str
    granted: bool
    session: Session


# -- from statements to locks -------------------------------------------------------------

_RELATION_DROPS = frozenset({"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SEQUENCE",
                             "OBJECT_FOREIGN_TABLE", "OBJECT_INDEX"})
_SHARE_UPDATE_EXCLUSIVE_CMDS = frozenset({
    "AT_SetStatistics", "AT_SetOptions", "AT_ResetOptions", "AT_ClusterOn", "AT_DropCluster",
    "AT_SetRelOptions", "AT_ResetRelOptions", "AT_ValidateConstraint", "AT_AttachPartition",
    "AT_ReplaceRelOptions"})
_SHARE_ROW_EXCLUSIVE_CMDS = frozenset({
    "AT_EnableTrig", "AT_EnableAlwaysTrig", "AT_EnableReplicaTrig", "AT_EnableTrigAll",
    "AT_EnableTrigUser", "AT_DisableTrig", "AT_DisableTrigAll", "AT_DisableTrigUser"})
_CREATED = frozenset({"CreateStmt", "CreateTableAsStmt", "ViewStmt", "CreateSeqStmt"})
_CONCURRENT = frozenset({"CREATE INDEX CONCURRENTLY", "DROP INDEX CONCURRENTLY",
                         "REINDEX CONCURRENTLY", "DETACH PARTITION CONCURRENTLY"})


def _range_var(node: Mapping[str, Any] | None, mode: str) -> Iterator[RelationLock]:
    if node and node.get("relname"):
        yield RelationLock(node.get("schemaname"), node["relname"], mode)


def _option_given(options: Iterable[Mapping[str, Any]] | None, name: str) -> bool:
    """A VACUUM/REINDEX option like ``FULL`` or ``CONCURRENTLY`` given and not turned off."""
    for item in options or ():
        elem = item.get("DefElem", {})
        if elem.get("defname") == name:
            arg = elem.get("arg") or {}
            off = arg.get("Boolean", {}).get("boolval") is False or \
                str(arg.get("String", {}).get("sval", "")).lower() in ("false", "off", "0")
            return not off
    return False


def _alter_table(node: Mapping[str, Any]) -> Iterator[RelationLock]:
    mode = SHARE_UPDATE_EXCLUSIVE
    referenced: list[Mapping[str, Any]] = []
    for item in node.get("cmds") or ():
        cmd = item.get("AlterTableCmd", {})
        subtype = cmd.get("subtype", "")
        definition = cmd.get("def") or {}
        constraint = definition.get("Constraint", {})
        column_fks = [c.get("Constraint", {}) for c in
                      definition.get("ColumnDef", {}).get("constraints") or ()]
        for fk in [constraint, *column_fks]:
            if fk.get("contype") == "CONSTR_FOREIGN" and fk.get("pktable"):
                referenced.append(fk["pktable"])
        if subtype in _SHARE_UPDATE_EXCLUSIVE_CMDS:
            this = SHARE_UPDATE_EXCLUSIVE
        elif subtype in _SHARE_ROW_EXCLUSIVE_CMDS or (
                subtype == "AT_AddConstraint" and constraint.get("contype") == "CONSTR_FOREIGN"):
            this = SHARE_ROW_EXCLUSIVE
        elif subtype == "AT_DetachPartition" and \
                definition.get("PartitionCmd", {}).get("concurrent"):
            this = SHARE_UPDATE_EXCLUSIVE
        else:
            this = ACCESS_EXCLUSIVE
        mode = stronger(mode, this)
    yield from _range_var(node.get("relation"), mode)
    for table in referenced:  # the referenced table's rows are checked: writes there wait
        yield from _range_var(table, SHARE_ROW_EXCLUSIVE)


def statement_locks(statement: Statement) -> tuple[RelationLock, ...]:
    """The table locks ``statement`` takes, strongest per relation, for common statements:
    ALTER TABLE (each sub-command's mode), CREATE/DROP/REINDEX INDEX [CONCURRENTLY], DROP
    TABLE/VIEW/SEQUENCE, TRUNCATE, INSERT/UPDATE/DELETE/MERGE, CREATE TRIGGER, VACUUM [FULL],
    ANALYZE, REFRESH MATERIALIZED VIEW [CONCURRENTLY], LOCK TABLE, ALTER ... RENAME, CLUSTER,
    CREATE TABLE ... PARTITION OF. Anything else: none."""
    node, kind = statement.tree, statement.kind
    found: list[RelationLock] = []
    if kind == "AlterTableStmt":
        found += _alter_table(node)
    elif kind == "IndexStmt":
        found += _range_var(node.get("relation"),
                            SHARE_UPDATE_EXCLUSIVE if node.get("concurrent") else SHARE)
    elif kind == "DropStmt" and node.get("removeType") in _RELATION_DROPS:
        mode = SHARE_UPDATE_EXCLUSIVE if node.get("concurrent") else ACCESS_EXCLUSIVE
        for obj in node.get("objects") or ():
            parts = [i.get("String", {}).get("sval") for i in obj.get("List", {}).get("items", [])]
            if parts and all(parts) and len(parts) <= 2:
                found.append(RelationLock(parts[0] if len(parts) == 2 else None, parts[-1], mode))
    elif kind == "TruncateStmt":
        for rel in node.get("relations") or ():
            found += _range_var(rel.get("RangeVar"), ACCESS_EXCLUSIVE)
    elif kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        found += _range_var(node.get("relation"), ROW_EXCLUSIVE)
    elif kind == "CreateTrigStmt":
        found += _range_var(node.get("relation"), SHARE_ROW_EXCLUSIVE)
    elif kind == "VacuumStmt":
        full = node.get("is_vacuumcmd") and _option_given(node.get("options"), "full")
        for rel in node.get("rels") or ():
            found += _range_var(rel.get("VacuumRelation", {}).get("relation"),
                                ACCESS_EXCLUSIVE if full else SHARE_UPDATE_EXCLUSIVE)
    elif kind == "RefreshMatViewStmt":
        found += _range_var(node.get("relation"),
                            EXCLUSIVE if node.get("concurrent") else ACCESS_EXCLUSIVE)
    elif kind == "LockStmt":
        number = int(node.get("mode") or len(MODES))
        mode = MODES[number - 1] if 1 <= number <= len(MODES) else ACCESS_EXCLUSIVE
        for rel in node.get("relations") or ():
            found += _range_var(rel.get("RangeVar"), mode)
    elif kind == "RenameStmt" and node.get("relation"):
        # renaming an index takes SHARE UPDATE EXCLUSIVE since PostgreSQL 12
        index = node.get("renameType") == "OBJECT_INDEX"
        found += _range_var(node["relation"], SHARE_UPDATE_EXCLUSIVE if index
                            else ACCESS_EXCLUSIVE)
    elif kind == "ClusterStmt":
        found += _range_var(node.get("relation"), ACCESS_EXCLUSIVE)
    elif kind == "ReindexStmt" and node.get("relation"):
        concurrently = _option_given(node.get("params"), "concurrently")
        table = node.get("kind") == "REINDEX_OBJECT_TABLE"
        found += _range_var(node["relation"], SHARE_UPDATE_EXCLUSIVE if concurrently
                            else SHARE if table else ACCESS_EXCLUSIVE)
    elif kind == "CreateStmt" and node.get("partbound"):
        for parent in node.get("inhRelations") or ():
            found += _range_var(parent.get("RangeVar"), ACCESS_EXCLUSIVE)
    return _strongest(found)


def _strongest(locks: Iterable[RelationLock]) -> tuple[RelationLock, ...]:
    """One lock per relation, the strongest asked for, in the order first named."""
    best: dict[tuple[str | None, str], str] = {}
    for lock in locks:
        key = (lock.schema, lock.name)
        best[key] = stronger(best[key], lock.mode) if key in best else lock.mode
    return tuple(RelationLock(schema, name, mode) for (schema, name), mode in best.items())


def patch_locks(statements: Sequence[Statement]) -> tuple[RelationLock, ...]:
    """The table locks a whole patch takes, strongest per relation; relations the file made
    itself earlier on are left out (no other session can hold a lock on them yet)."""
    created: set[tuple[str | None, str]] = set()
    found: list[RelationLock] = []
    for statement in statements:
        for lock in statement_locks(statement):
            if (lock.schema, lock.name) not in created and (None, lock.name) not in created:
                found.append(lock)
        if statement.kind in _CREATED:
            relation = statement.tree.get("relation") or statement.tree.get(
                "into", {}).get("rel") or statement.tree.get("view") or \
                statement.tree.get("sequence") or {}
            if relation.get("relname"):
                created.add((relation.get("schemaname"), relation["relname"]))
    return _strongest(found)


def is_concurrent(statement: Statement) -> bool:
    """A ``... CONCURRENTLY`` statement that runs outside a transaction: it waits for older
    transactions to end rather than in a lock queue that holds others up, so it has its own
    bound (docs/safety.md, "Lock budget")."""
    return statement.non_transactional in _CONCURRENT


def sets_lock_timeout(statement: Statement) -> bool:
    """``SET``/``RESET lock_timeout`` (or ``RESET ALL``): from here on the file's own choice."""
    if statement.kind != "VariableSetStmt":
        return False
    name = statement.tree.get("name")
    return name == "lock_timeout" or (name is None and
                                      statement.tree.get("kind") == "VAR_RESET_ALL")


@dataclass(frozen=True)
class LiveLocks:
    """What one database's live sessions hold or wait for on the relations asked about
    (keyed like RelationLock: schema as written, name), and its oldest open transaction."""

    held: Mapping[tuple[str | None, str], tuple[tuple[str, bool, Session], ...]]
    oldest: Session | None = None

    def conflicts(self, locks: Iterable[RelationLock]) -> tuple[LockConflict, ...]:
        """Per relation and session, the strongest held or awaited mode that conflicts with
        the patch's; holders first, then the longest open transaction."""
        found: dict[tuple[str, int], LockConflict] = {}
        for lock in locks:
            for mode, granted, session in self.held.get((lock.schema, lock.name), ()):
                if not conflicts(lock.mode, mode):
                    continue
                key = (lock.relation, session.pid)
                seen = found.get(key)
                if seen is None or MODES.index(mode) > MODES.index(seen.held_mode):
                    found[key] = LockConflict(lock.relation, lock.mode, mode, granted, session)
        return tuple(sorted(found.values(), key=lambda c: (
            not c.granted, -(c.session.xact_seconds or 0.0), c.session.pid)))
