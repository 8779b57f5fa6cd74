"""core/sending.py: what apply sends for each kind of step, the SQL `plan --sql` prints."""

from __future__ import annotations

from dataclasses import replace

import pytest

from postgresqlpatches.core.discovery import read_patch
from postgresqlpatches.core.planner import ServerFacts, make_plan
from postgresqlpatches.core.sending import (
    ONE_TRANSACTION,
    STATEMENT_BY_STATEMENT,
    THROUGH_PSQL,
    as_text,
    begin_with,
    sending,
)


def steps(files: dict[str, str], existing: frozenset[str] = frozenset({"app"})) -> list:
    patches = [read_patch(name, text=text) for name, text in sorted(files.items())]
    plan = make_plan(patches, ServerFacts(existing), state_db="patches")
    assert plan.ok, plan.problems
    return list(plan.pending)


def test_a_patch_runs_in_one_transaction_with_its_modes_and_drops_its_temp_tables() -> None:
    [step] = steps({"app.20240101.0001.app.t.sql":
                    "BEGIN READ ONLY;\nCREATE TEMP TABLE x (a int);\nSELECT 1;\nCOMMIT;\n"})
    sent = sending(step, "patches")
    assert sent.mode == ONE_TRANSACTION
    assert sent.sql == ("BEGIN READ ONLY", "CREATE TEMP TABLE x (a int)", "SELECT 1",
                        "DISCARD TEMP", "COMMIT")


def test_bootstrap_scripts_and_state_patches_take_their_modes_after_begin() -> None:
    files = {"app.00000000.0000.postgres.baseline.sql": "CREATE DATABASE app;\n",
             "app.00000000.0001.postgres.s.sql":
                 "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nCREATE TEMP TABLE x (a int);\n",
             "patches.20240101.0001.postgres.s.sql": "BEGIN DEFERRABLE;\nSELECT 1;\nCOMMIT;\n"}
    baseline, script, state = steps(files, frozenset({"patches"}))
    assert sending(baseline, "patches").mode == THROUGH_PSQL
    assert sending(baseline, "patches").sql == ()
    assert sending(script, "patches").sql == (
        "BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "CREATE TEMP TABLE x (a int)",
        "COMMIT")
    assert sending(state, "patches").sql == ("BEGIN", "SET TRANSACTION DEFERRABLE", "SELECT 1",
                                             "COMMIT")


def test_a_non_transactional_file_is_sent_statement_by_statement_from_its_resume_point() -> None:
    [step] = steps({"app.20240101.0001.app.i.sql":
                    "CREATE INDEX CONCURRENTLY a ON t (a);\n"
                    "CREATE INDEX CONCURRENTLY b ON t (b);\n"})
    assert sending(step, "patches").sql == ("CREATE INDEX CONCURRENTLY a ON t (a)",
                                            "CREATE INDEX CONCURRENTLY b ON t (b)")
    resumed = sending(replace(step, resume_from=1), "patches")
    assert (resumed.mode, resumed.start) == (STATEMENT_BY_STATEMENT, 1)
    assert resumed.sql == ("CREATE INDEX CONCURRENTLY b ON t (b)",)
    assert as_text(resumed).splitlines()[1:] == [
        "-- database: app, user: app, statement by statement, resumed at statement 2",
        "CREATE INDEX CONCURRENTLY b ON t (b);"]


def test_a_trailing_comment_does_not_swallow_the_semicolon() -> None:
    [step] = steps({"app.20240101.0001.app.t.sql": "SELECT 1 -- one\n;\n"})
    assert as_text(sending(step, "patches")).splitlines()[2:] == [
        "BEGIN;", "SELECT 1 -- one", ";", "COMMIT;"]


def test_begin_takes_only_transaction_modes() -> None:
    assert begin_with(()) == "BEGIN"
    assert begin_with(("READ ONLY", "DEFERRABLE")) == "BEGIN READ ONLY, DEFERRABLE"
    with pytest.raises(ValueError, match="not a transaction mode"):
        begin_with(("READ ONLY; DROP TABLE t",))
