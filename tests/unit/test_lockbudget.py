"""core/lockbudget.py: how long a patch may wait for its locks, and the backoff between tries."""

from __future__ import annotations

import pytest

from postgresqlpatches.core import lockbudget
from postgresqlpatches.core.lockbudget import LockBudget


@pytest.mark.parametrize("retry, lowest, highest", [(1, 0.125, 0.25), (2, 0.25, 0.5),
                                                    (3, 0.5, 1.0), (6, 2.5, 5.0),
                                                    (20, 2.5, 5.0)])
def test_the_backoff_doubles_up_to_a_cap_and_is_jittered_down_to_half(
        retry: int, lowest: float, highest: float) -> None:
    budget = LockBudget()
    assert budget.backoff(retry, rng=lambda: 0.0) == lowest
    assert budget.backoff(retry, rng=lambda: 1.0) == highest


def test_the_total_budget_is_every_try_at_its_timeout_and_every_backoff_at_its_longest(
        ) -> None:
    assert LockBudget(1000, 2).total_seconds == 3 * 1.0 + 0.25 + 0.5
    assert LockBudget(100, 0).total_seconds == 0.1
    assert LockBudget(0, 3).total_seconds is None


def test_the_cli_spells_the_lock_budget_defaults_as_core_does() -> None:
    from postgresqlpatches.cli import commands

    assert commands.LOCK_TIMEOUT_MS == lockbudget.DEFAULT_LOCK_TIMEOUT_MS
    assert commands.LOCK_RETRIES == lockbudget.DEFAULT_LOCK_RETRIES
    assert commands.CONCURRENT_LOCK_TIMEOUT_MS == lockbudget.DEFAULT_CONCURRENT_LOCK_TIMEOUT_MS
