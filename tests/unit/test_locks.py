"""core/locks.py: the lock conflict matrix, and the table locks predicted from statements."""

from __future__ import annotations

import pytest

from postgresqlpatches.core import locks
from postgresqlpatches.core.locks import (
    ACCESS_EXCLUSIVE,
    ACCESS_SHARE,
    EXCLUSIVE,
    MODES,
    ROW_EXCLUSIVE,
    ROW_SHARE,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    LiveLocks,
    RelationLock,
    Session,
)
from postgresqlpatches.core.statements import parse_sql

# The PostgreSQL documentation's table "Conflicting Lock Modes", row by row: X = conflicts.
MATRIX = """
AccessShareLock          .......X
RowShareLock             ......XX
RowExclusiveLock         ....XXXX
ShareUpdateExclusiveLock ...XXXXX
ShareLock                ..XX.XXX
ShareRowExclusiveLock    ..XXXXXX
ExclusiveLock            .XXXXXXX
AccessExclusiveLock      XXXXXXXX
"""


def _matrix() -> list[tuple[str, str, bool]]:
    cases = []
    for line in MATRIX.strip().splitlines():
        mode, row = line.split()
        cases += [(mode, other, mark == "X") for other, mark in zip(MODES, row, strict=True)]
    return cases


@pytest.mark.parametrize("mode_a, mode_b, expected", _matrix())
def test_conflicts_follows_the_documented_matrix(mode_a: str, mode_b: str,
                                                 expected: bool) -> None:
    assert locks.conflicts(mode_a, mode_b) is expected
    assert locks.conflicts(mode_b, mode_a) is expected


@pytest.mark.parametrize("mode, expected", [
    (ACCESS_SHARE, (False, False)), (ROW_SHARE, (False, False)),
    (ROW_EXCLUSIVE, (False, False)), (SHARE_UPDATE_EXCLUSIVE, (False, False)),
    (SHARE, (False, True)), (SHARE_ROW_EXCLUSIVE, (False, True)), (EXCLUSIVE, (False, True)),
    (ACCESS_EXCLUSIVE, (True, True))])
def test_blocks_says_whether_reads_and_writes_wait(mode: str,
                                                   expected: tuple[bool, bool]) -> None:
    assert locks.blocks(mode) == expected


def test_an_unknown_mode_conflicts_with_nothing() -> None:
    assert not locks.conflicts("SIReadLock", ACCESS_EXCLUSIVE)


def _locks(sql: str) -> list[tuple[str, str]]:
    (statement,) = parse_sql(sql).statements
    return [(lock.relation, lock.mode) for lock in locks.statement_locks(statement)]


@pytest.mark.parametrize("sql, expected", [
    ("ALTER TABLE s.t ADD COLUMN x int", [("s.t", ACCESS_EXCLUSIVE)]),
    ("ALTER TABLE t VALIDATE CONSTRAINT c", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("ALTER TABLE t ALTER COLUMN a SET STATISTICS 100", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("ALTER TABLE t SET (fillfactor = 70)", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("ALTER TABLE t VALIDATE CONSTRAINT c, ADD COLUMN x int", [("t", ACCESS_EXCLUSIVE)]),
    ("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES o (id) NOT VALID",
     [("t", SHARE_ROW_EXCLUSIVE), ("o", SHARE_ROW_EXCLUSIVE)]),
    ("ALTER TABLE t ADD COLUMN y int REFERENCES o (id)",
     [("t", ACCESS_EXCLUSIVE), ("o", SHARE_ROW_EXCLUSIVE)]),
    ("ALTER TABLE t DISABLE TRIGGER tr", [("t", SHARE_ROW_EXCLUSIVE)]),
    ("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY", [("p", SHARE_UPDATE_EXCLUSIVE)]),
    ("ALTER TABLE p DETACH PARTITION p1", [("p", ACCESS_EXCLUSIVE)]),
    ("ALTER TABLE \"T\" RENAME TO u", [("T", ACCESS_EXCLUSIVE)]),
    ("ALTER TABLE t RENAME COLUMN a TO b", [("t", ACCESS_EXCLUSIVE)]),
    ("ALTER INDEX i RENAME TO j", [("i", SHARE_UPDATE_EXCLUSIVE)]),
    ("CREATE INDEX i ON t (a)", [("t", SHARE)]),
    ("CREATE INDEX CONCURRENTLY i ON t (a)", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("DROP INDEX s.i", [("s.i", ACCESS_EXCLUSIVE)]),
    ("DROP INDEX CONCURRENTLY i", [("i", SHARE_UPDATE_EXCLUSIVE)]),
    ("DROP TABLE a, b.c", [("a", ACCESS_EXCLUSIVE), ("b.c", ACCESS_EXCLUSIVE)]),
    ("DROP VIEW v", [("v", ACCESS_EXCLUSIVE)]),
    ("DROP FUNCTION f()", []),
    ("TRUNCATE a, b", [("a", ACCESS_EXCLUSIVE), ("b", ACCESS_EXCLUSIVE)]),
    ("INSERT INTO t VALUES (1)", [("t", ROW_EXCLUSIVE)]),
    ("UPDATE t SET a = 1", [("t", ROW_EXCLUSIVE)]),
    ("DELETE FROM t", [("t", ROW_EXCLUSIVE)]),
    ("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE", [("t", ROW_EXCLUSIVE)]),
    ("CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
     [("t", SHARE_ROW_EXCLUSIVE)]),
    ("VACUUM t", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("VACUUM (FULL) t", [("t", ACCESS_EXCLUSIVE)]),
    ("VACUUM (FULL false) t", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("ANALYZE t", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("REFRESH MATERIALIZED VIEW mv", [("mv", ACCESS_EXCLUSIVE)]),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY mv", [("mv", EXCLUSIVE)]),
    ("LOCK TABLE t", [("t", ACCESS_EXCLUSIVE)]),
    ("LOCK TABLE t IN SHARE MODE", [("t", SHARE)]),
    ("LOCK TABLE t IN ROW EXCLUSIVE MODE", [("t", ROW_EXCLUSIVE)]),
    ("CLUSTER t USING i", [("t", ACCESS_EXCLUSIVE)]),
    ("REINDEX TABLE t", [("t", SHARE)]),
    ("REINDEX INDEX i", [("i", ACCESS_EXCLUSIVE)]),
    ("REINDEX TABLE CONCURRENTLY t", [("t", SHARE_UPDATE_EXCLUSIVE)]),
    ("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)", [("p", ACCESS_EXCLUSIVE)]),
    ("CREATE TABLE fresh (a int)", []),
    ("SELECT 1", []),
])
def test_statement_locks_of_common_statements(sql: str, expected: list[tuple[str, str]]) -> None:
    assert _locks(sql) == expected


def test_patch_locks_keeps_the_strongest_and_leaves_out_what_the_file_made() -> None:
    statements = parse_sql(
        "CREATE TABLE fresh (a int);\n"
        "CREATE INDEX ON fresh (a);\n"
        "INSERT INTO ledger VALUES (1);\n"
        "ALTER TABLE ledger ADD COLUMN note text;\n"
        "CREATE TABLE app.made AS SELECT 1 AS a;\n"
        "ALTER TABLE app.made ADD COLUMN b int;\n").statements
    assert locks.patch_locks(statements) == (RelationLock(None, "ledger", ACCESS_EXCLUSIVE),)


def _session(pid: int, seconds: float | None = None) -> Session:
    return Session(pid, "alice", "psql", "idle in transaction", seconds, "SELECT 1")


def test_live_locks_keep_only_conflicting_modes_holders_first() -> None:
    live = LiveLocks({
        (None, "ledger"): ((ACCESS_SHARE, True, _session(1, 5.0)),
                           (ROW_EXCLUSIVE, True, _session(1, 5.0)),
                           (ACCESS_EXCLUSIVE, False, _session(3, 1.0)),
                           (ACCESS_SHARE, True, _session(2, 60.0))),
        (None, "other"): ((ACCESS_EXCLUSIVE, True, _session(4)),)})
    found = live.conflicts([RelationLock(None, "ledger", SHARE)])
    assert [(c.session.pid, c.held_mode, c.granted) for c in found] == [
        (1, ROW_EXCLUSIVE, True), (3, ACCESS_EXCLUSIVE, False)]
    assert live.conflicts([RelationLock(None, "ledger", ACCESS_SHARE)])[0].session.pid == 3
    assert [c.session.pid for c in live.conflicts(
        [RelationLock(None, "ledger", ACCESS_EXCLUSIVE)])] == [2, 1, 3]


def test_a_session_is_described_in_one_line() -> None:
    assert _session(4711, 12.4).describe() == (
        "pid 4711 (alice, psql, idle in transaction for 12 s: SELECT 1)")
    assert Session(7, None, None, "active", None, "").describe() == "pid 7 (active)"


@pytest.mark.parametrize("sql, expected", [
    ("CREATE INDEX CONCURRENTLY i ON t (a)", True), ("DROP INDEX CONCURRENTLY i", True),
    ("REINDEX TABLE CONCURRENTLY t", True), ("VACUUM t", False),
    ("CREATE INDEX i ON t (a)", False)])
def test_is_concurrent(sql: str, expected: bool) -> None:
    (statement,) = parse_sql(sql).statements
    assert locks.is_concurrent(statement) is expected


@pytest.mark.parametrize("sql, expected", [
    ("SET lock_timeout = '1s'", True), ("RESET lock_timeout", True), ("RESET ALL", True),
    ("SET LOCAL lock_timeout = 0", True), ("SET statement_timeout = 0", False)])
def test_sets_lock_timeout(sql: str, expected: bool) -> None:
    (statement,) = parse_sql(sql).statements
    assert locks.sets_lock_timeout(statement) is expected


def _pending(conflicts: tuple[locks.LockConflict, ...] = ()) -> object:
    from postgresqlpatches.core.discovery import read_patch
    from postgresqlpatches.core.planner import Action, Step

    patch = read_patch("p/app.20240102.0001.postgres.alter.sql",
                       text="ALTER TABLE ledger ADD COLUMN note text;\n")
    return Step(patch, Action.APPLY, lock_conflicts=conflicts,
                oldest_transaction=_session(4711, 12.0))


def test_the_plan_note_names_the_first_conflict_and_counts_the_rest() -> None:
    from postgresqlpatches.cli.render import step_json, step_note

    conflicts = (locks.LockConflict("ledger", ACCESS_EXCLUSIVE, ACCESS_SHARE, True,
                                    _session(4711, 12.0)),
                 locks.LockConflict("ledger", ACCESS_EXCLUSIVE, ROW_EXCLUSIVE, False,
                                    _session(4712)))
    step = _pending(conflicts)
    assert step_note(step) == ("lock conflict: pid 4711 holds AccessShareLock on ledger "
                               "(+1 more)")
    assert step_note(_pending()) == ""
    data = step_json(step)
    assert data["lock_conflicts"][1] == {
        "pid": 4712, "user": "alice", "application_name": "psql",
        "state": "idle in transaction", "xact_seconds": None, "query": "SELECT 1",
        "relation": "ledger", "mode": ACCESS_EXCLUSIVE, "held_mode": ROW_EXCLUSIVE,
        "granted": False}
    assert data["oldest_transaction"]["pid"] == 4711


def test_a_retry_is_one_line_on_stderr_with_patch_count_and_wait(
        capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from postgresqlpatches.cli.render import ConsoleReporter

    out = io.StringIO()
    reporter = ConsoleReporter(out)
    reporter.lock_retry(_pending(), 2, 5, 0.6149, (_session(4711, 3.0),))
    reporter.lock_retry(_pending(), 3, 5, 1.2, ())
    assert out.getvalue() == ""  # stdout may be JSON
    assert capsys.readouterr().err.splitlines() == [
        "lock timeout: p/app.20240102.0001.postgres.alter.sql: retry 2 of 5 in 0.61 s "
        "(blocked by pid 4711 (alice, psql, idle in transaction for 3 s: SELECT 1))",
        "lock timeout: p/app.20240102.0001.postgres.alter.sql: retry 3 of 5 in 1.20 s"]
