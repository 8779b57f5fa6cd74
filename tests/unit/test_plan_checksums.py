"""The planner reads each record in its own checksum version, and checks a resume's done part."""

from __future__ import annotations

import dataclasses
import datetime as dt

from postgresqlpatches.core.checksums import statement_checksum
from postgresqlpatches.core.discovery import Patch, read_patch
from postgresqlpatches.core.planner import ServerFacts, make_plan, record_is_current
from postgresqlpatches.core.records import Record

STATE = "patches"
TEXT = "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n"
COMMENTED = "-- Copyright 2026 Example Ltd.\n" + TEXT.replace(";\n", ";  -- pgpatch: allow x\n", 1)


def patch(text: str) -> Patch:
    return read_patch("tree/app.20240101.0001.app.one.sql", text=text)


def record(applied: Patch, *, version: int | None, **kw: object) -> Record:
    n = applied.name
    checksum = applied.checksum if version == 2 else applied.text_checksum
    text = applied.text_checksum if version == 2 else None
    return Record(id=7, database=n.database, major=n.major, minor=n.minor, name=n.filename,
                  installed=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), user=n.user,
                  checksum=checksum, checksum_version=version, text_checksum=text, **kw)


def plan_for(today: Patch, rec: Record):  # noqa: ANN201
    return make_plan([today], ServerFacts(frozenset({"app"}), (rec,)), state_db=STATE)


def test_a_comment_added_after_apply_is_not_a_change() -> None:
    plan = plan_for(patch(COMMENTED), record(patch(TEXT), version=2))
    assert plan.ok and plan.steps[0].flags == ()
    assert not record_is_current(plan.steps[0])  # apply notes today's text checksum


def test_an_unchanged_file_is_matched_without_scanning_it() -> None:
    today = patch(TEXT)
    plan = plan_for(today, record(patch(TEXT), version=2))
    assert plan.ok and record_is_current(plan.steps[0])
    assert plan.steps[0].checksum == patch(TEXT).checksum  # as plan's JSON shows it
    assert "checksum" not in today.__dict__  # the token checksum was never computed


def test_a_changed_token_is_a_change_in_version_2() -> None:
    plan = plan_for(patch(TEXT.replace("(1)", "(2)")), record(patch(TEXT), version=2))
    assert [p.kind for p in plan.problems] == ["changed"]
    assert "changed" in plan.steps[0].flags


def test_a_version_1_record_of_the_same_text_is_applied_and_upgraded() -> None:
    for version in (None, 1):
        plan = plan_for(patch(TEXT), record(patch(TEXT), version=version))
        assert plan.ok and plan.steps[0].flags == ()
        assert not record_is_current(plan.steps[0])


def test_a_version_1_record_cannot_tell_a_comment_from_a_change() -> None:
    plan = plan_for(patch(COMMENTED), record(patch(TEXT), version=None))
    assert [p.kind for p in plan.problems] == ["changed"]
    assert "even a comment counts until `apply` upgrades it" in (plan.problems[0].hint or "")
    assert record_is_current(plan.steps[0])  # a changed record is never rewritten


NON_TX = ("CREATE INDEX CONCURRENTLY a ON t (x);\n"
          "CREATE INDEX CONCURRENTLY b ON t (y);\n"
          "CREATE INDEX CONCURRENTLY c ON t (nosuch);\n")


def resumed(today: str, ran: str = NON_TX, done: int = 2) -> Record:
    statements = [s.strip() for s in ran.split(";")[:done]]
    rec = record(patch(ran), version=2)
    return dataclasses.replace(rec, settled=False, non_transactional=True,
                               statements_done=done,
                               statement_checksums=tuple(statement_checksum(s)
                                                         for s in statements))


def test_a_resume_may_change_what_has_not_run() -> None:
    today = NON_TX.replace("(nosuch)", "(z)") + "VACUUM t;\n"
    plan = plan_for(patch(today), resumed(today))
    assert plan.ok, plan.problems
    assert plan.steps[0].resume_from == 2 and "resume" in plan.steps[0].flags


def test_a_resume_may_change_comments_of_what_ran() -> None:
    today = "-- fixed the last one\n" + NON_TX.replace("(x);", "(x);  -- done").replace(
        "(nosuch)", "(z)")
    assert plan_for(patch(today), resumed(today)).ok


def test_a_changed_done_statement_stops_the_resume_and_is_named() -> None:
    today = NON_TX.replace("(y)", "(y, x)")
    plan = plan_for(patch(today), resumed(today))
    assert [(p.kind, p.line) for p in plan.problems] == [("changed", 2)]
    assert plan.problems[0].message == (
        "statement 2 ran in an earlier run (statements 1-2 did) and has changed since")
    assert "changed" in plan.steps[0].flags


def test_a_statement_inserted_before_the_done_part_is_a_change() -> None:
    today = "CREATE INDEX CONCURRENTLY new ON t (w);\n" + NON_TX
    plan = plan_for(patch(today), resumed(today))
    assert [(p.kind, p.line) for p in plan.problems] == [("changed", 1)]


def test_a_done_part_cut_short_is_a_change() -> None:
    today = "CREATE INDEX CONCURRENTLY a ON t (x);\n"
    plan = plan_for(patch(today), resumed(today))
    assert [p.message for p in plan.problems] == [
        "statements 1-2 ran in an earlier run, but the file now has only 1"]


def test_a_resume_record_without_statement_checksums_is_resumed_as_before() -> None:
    today = NON_TX.replace("(y)", "(y, x)")
    rec = dataclasses.replace(resumed(today), statement_checksums=None)
    assert plan_for(patch(today), rec).ok
