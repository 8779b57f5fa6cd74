"""The planner's rules for repeatable patches (major 99999999), without a server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from postgresqlpatches.cli.scaffold import create_patch
from postgresqlpatches.core.discovery import Patch, read_patch
from postgresqlpatches.core.naming import parse_name
from postgresqlpatches.core.planner import Action, ServerFacts, make_plan, next_run
from postgresqlpatches.core.records import Record, last_runs

VIEW = "app.99999999.0001.app.view.sql"


def patch(filename: str, text: str = "CREATE OR REPLACE VIEW v AS SELECT 1;\n") -> Patch:
    return read_patch(f"tree/{filename}", text=text)


def record(p: Patch, *, rid: int = 1, run: int | None = 1, checksum: str | None = None,
           settled: bool = True, xid: int | None = None) -> Record:
    n = p.name
    return Record(id=rid, database=n.database, major=n.major, minor=n.minor, name=n.filename,
                  installed=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), user=n.user,
                  checksum=checksum or p.checksum, checksum_version=2, settled=settled,
                  xid=xid, run=run)


def plan_of(patches: list[Patch], records: tuple[Record, ...] = (), **kw):
    return make_plan(patches, ServerFacts(frozenset({"app"}), records, **kw), state_db="patches")


def test_99999999_is_a_repeatable_major_and_other_non_dates_are_not() -> None:
    assert parse_name(VIEW).is_repeatable
    assert not parse_name("app.20240101.0001.app.x.sql").is_repeatable


def test_new_unchanged_and_changed_repeatables() -> None:
    p = patch(VIEW)
    [new] = plan_of([p]).steps
    assert (new.action, next_run(new)) == (Action.APPLY, 1)
    [same] = plan_of([p], (record(p, run=2),)).steps
    assert same.action is Action.APPLIED and not same.pending
    changed_plan = plan_of([p], (record(p, run=2, checksum="older"),))
    [changed] = changed_plan.steps
    assert changed_plan.ok  # a changed repeatable is no problem
    assert (changed.action, changed.pending, next_run(changed)) == (Action.REAPPLY, True, 3)
    assert changed.reason == "changed since its run 2 on 2024-01-01 00:00"
    assert changed.statements  # parsed, as every pending patch


def test_the_last_run_decides_and_an_aborted_run_does_not_count() -> None:
    p = patch(VIEW)
    runs = (record(p, rid=1, run=1, checksum="first"), record(p, rid=2, run=2),
            record(p, rid=3, run=3, checksum="third", settled=False, xid=900))
    [aborted] = plan_of([p], runs, xact_status={900: "aborted"}).steps
    assert (aborted.action, aborted.record.run) == (Action.APPLIED, 2)
    [committed] = plan_of([p], runs, xact_status={900: "committed"}).steps
    assert (committed.action, committed.record.run, next_run(committed)) == (
        Action.REAPPLY, 3, 4)


def test_a_repeatable_is_never_out_of_order_nor_makes_others_so() -> None:
    view, late = patch(VIEW), patch("app.20240101.0001.app.late.sql", "SELECT 1;\n")
    applied = patch("app.20240102.0001.app.x.sql", "SELECT 2;\n")
    plan = plan_of([late, applied, view], (record(view, rid=5), record(applied, rid=4, run=None)))
    assert [p.kind for p in plan.problems] == ["out-of-order"]  # the versioned one only
    plan = plan_of([applied, view], (record(view, rid=5),))
    assert plan.ok and [s.action for s in plan.steps] == [Action.APPLY, Action.APPLIED]


def test_a_repeatable_runs_in_one_transaction_and_is_linted() -> None:
    index = plan_of([patch(VIEW, "CREATE INDEX CONCURRENTLY i ON t (a);\n")])
    assert [(p.kind, p.line) for p in index.problems] == [("transaction-control", 1)]
    assert "a repeatable patch runs in one transaction" in index.problems[0].message
    p = patch(VIEW, "ALTER TABLE t DROP COLUMN c;\n")
    [changed] = plan_of([p], (record(p, checksum="older"),)).steps
    assert [f.rule.id for f in changed.findings] == ["drop-column"]


def test_the_state_database_takes_no_repeatable() -> None:
    plan = make_plan([patch("patches.99999999.0001.postgres.x.sql", "SELECT 1;\n")],
                     ServerFacts(frozenset({"patches"})), state_db="patches")
    assert [p.kind for p in plan.problems] == ["bad-name"]


def test_status_shows_a_repeatable_once_with_its_last_run() -> None:
    view, other = patch(VIEW), patch("app.20240101.0001.app.x.sql")
    records = [record(other, rid=1, run=None), record(view, rid=2, run=1),
               record(view, rid=7, run=2)]
    assert [(r.id, r.run) for r in last_runs(records)] == [(1, None), (7, 2)]


def test_new_repeatable_takes_the_next_free_minor_of_99999999(tmp_path: Path) -> None:
    (tmp_path / "app.99999999.0001.app.views.sql").write_text("")
    path = create_patch("app", "app", "grants", tmp_path, repeatable=True)
    assert path.name == "app.99999999.0002.app.grants.sql"
    assert "again whenever it changes" in path.read_text()
