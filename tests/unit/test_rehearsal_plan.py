"""rehearse runs on the copy only the live plan: a copy whose plan differs runs nothing."""

from __future__ import annotations

import pytest

from postgresqlpatches.core.discovery import read_patch
from postgresqlpatches.core.planner import Action, Plan, Step
from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.rehearse import _Timing

FIRST = read_patch("db/app.20240101.0001.app.one.sql", text="SELECT 1;\n")
SECOND = read_patch("db/app.20240102.0001.app.two.sql", text="SELECT 2;\n")


def _plan(*steps: Step) -> Plan:
    return Plan(tuple(steps), ())


def test_the_same_pending_steps_on_the_copy_go_ahead() -> None:
    live = _plan(Step(FIRST, Action.APPLIED), Step(SECOND, Action.APPLY))
    timing = _Timing(live)
    timing.planned(_plan(Step(FIRST, Action.APPLIED), Step(SECOND, Action.APPLY)))
    assert timing.plan is not None


@pytest.mark.parametrize("copy, said", [
    ((Step(FIRST, Action.APPLY), Step(SECOND, Action.APPLY)),
     "live: apply db/app.20240102.0001.app.two.sql; copy: apply db/app.20240101.0001.app.one.sql"),
    ((Step(FIRST, Action.APPLIED), Step(SECOND, Action.APPLIED)),
     "live: apply db/app.20240102.0001.app.two.sql; copy: nothing more"),
])
def test_a_copy_whose_plan_differs_runs_nothing(copy: tuple[Step, ...], said: str) -> None:
    timing = _Timing(_plan(Step(FIRST, Action.APPLIED), Step(SECOND, Action.APPLY)))
    with pytest.raises(PgpatchError, match="the plan on the copy differs") as raised:
        timing.planned(_plan(*copy))  # the runner calls it before the first step
    assert said in raised.value.message
