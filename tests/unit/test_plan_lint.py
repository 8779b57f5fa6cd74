"""Lint lives in the one planner: pending APPLY steps carry findings; error mode adds problems."""

from __future__ import annotations

import pytest

from postgresqlpatches.core.discovery import Patch, builtin_patches, read_patch
from postgresqlpatches.core.planner import Action, ServerFacts, make_plan

STATE = "patches"
DROP = "select 1;\nalter table t drop column a;\n"


def patch(filename: str, text: str) -> Patch:
    return read_patch(f"tree/{filename}", text=text)


def plan_of(*patches: Patch, lint: str = "warn", existing: tuple[str, ...] = ("app",)):
    return make_plan(list(patches), ServerFacts(frozenset(existing)), state_db=STATE, lint=lint)


def test_warn_puts_findings_on_the_step_and_keeps_the_plan_valid() -> None:
    plan = plan_of(patch("app.20240101.0001.app.drop.sql", DROP))
    (step,) = plan.steps
    assert [(f.rule.id, f.line) for f in step.findings] == [("drop-column", 2)]
    assert plan.ok and plan.lint == "warn"
    assert [(s.patch.name.version, f.rule.id) for s, f in plan.findings] == [
        ("20240101.0001", "drop-column")]


def test_error_makes_each_finding_a_lint_problem_with_file_line_and_the_safer_way() -> None:
    plan = plan_of(patch("app.20240101.0001.app.drop.sql", DROP), lint="error")
    assert not plan.ok
    (problem,) = plan.problems
    assert (problem.kind, problem.path, problem.line) == (
        "lint", "tree/app.20240101.0001.app.drop.sql", 2)
    assert problem.message == ("drop-column: DROP COLUMN (takes ACCESS EXCLUSIVE (brief, but it "
                               "queues behind every running query on the table))")
    assert problem.hint.startswith("Stop using the column in the application")
    assert problem.hint.endswith("Or silence it: -- pgpatch: allow drop-column")


def test_off_does_not_lint() -> None:
    plan = plan_of(patch("app.20240101.0001.app.drop.sql", DROP), lint="off")
    assert plan.steps[0].findings == () and plan.ok


def test_a_comment_naming_the_rule_silences_it() -> None:
    text = "-- pgpatch: allow drop-column\nalter table t drop column a;\n"
    plan = plan_of(patch("app.20240101.0001.app.drop.sql", text), lint="error")
    assert plan.ok and plan.findings == ()


def test_applied_and_bootstrap_steps_are_not_linted() -> None:
    base = patch("app.00000000.0000.postgres.baseline.sql", "create database app;\n")
    seed = patch("app.00000000.0001.app.seed.sql", "create index i on t (a);\n")
    plan = plan_of(base, seed, lint="error", existing=())
    assert [s.action for s in plan.steps] == [Action.BOOTSTRAP, Action.BOOTSTRAP]
    assert plan.ok and plan.findings == ()


def test_pgpatchs_own_state_database_patches_are_not_linted() -> None:
    plan = make_plan(builtin_patches(STATE), ServerFacts(frozenset()), state_db=STATE,
                     lint="error")
    assert plan.ok and plan.findings == ()


def test_a_file_that_does_not_parse_is_a_syntax_problem_not_a_lint_crash() -> None:
    plan = plan_of(patch("app.20240101.0001.app.bad.sql", "alter table;\n"), lint="error")
    assert [p.kind for p in plan.problems] == ["syntax"]


def test_an_unknown_lint_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="lint must be one of"):
        plan_of(lint="loud")
