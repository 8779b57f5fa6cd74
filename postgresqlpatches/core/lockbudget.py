"""The lock budget of apply (docs/safety.md, "Lock budget"): how long a patch may wait for
its table locks, and the backoff between its tries. Pure; apart from core/locks.py (the
locks a statement takes), since every command's options carry a budget and only a patch that
waits needs the rest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_LOCK_TIMEOUT_MS = 1000
"""lock_timeout of every patch session: the longest a waiting patch holds up the queries
queued behind it, per try (docs/safety.md says why this value)."""
DEFAULT_LOCK_RETRIES = 5
"""Tries after the first of a patch that hit lock_timeout."""
DEFAULT_CONCURRENT_LOCK_TIMEOUT_MS = 600_000
"""lock_timeout of a ``... CONCURRENTLY`` statement (is_concurrent): it holds nobody's reads
or writes up while it waits for older transactions, so it may wait long; it is not retried."""
BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 5.0


@dataclass(frozen=True)
class LockBudget:
    """How long a patch may wait for its locks: ``timeout_ms`` per try (None: the server's
    setting, 0: no limit), ``retries`` new tries after the first, each after a backoff."""

    timeout_ms: int | None = DEFAULT_LOCK_TIMEOUT_MS
    retries: int = DEFAULT_LOCK_RETRIES
    concurrent_timeout_ms: int | None = DEFAULT_CONCURRENT_LOCK_TIMEOUT_MS

    def backoff(self, retry: int, rng: Callable[[], float] | None = None) -> float:
        """The wait before retry number ``retry`` (1, 2, ...): doubling from
        BACKOFF_FIRST_SECONDS up to BACKOFF_CAP_SECONDS, jittered down to half (``rng``,
        random.random by default), so that the tries of two runs (or a run and the
        application's own retries) drift apart."""
        if rng is None:
            import random

            rng = random.random
        return _backoff_cap(retry) * (0.5 + 0.5 * rng())

    @property
    def total_seconds(self) -> float | None:
        """The most a patch's tries may take together: each try waiting its whole
        lock_timeout and each backoff at its longest. A retry that would start later is not
        made (a try slow for other reasons uses the budget up sooner). None: unbounded
        (no lock_timeout), only ``retries`` counts."""
        if not self.timeout_ms:
            return None
        return ((self.retries + 1) * self.timeout_ms / 1000
                + sum(_backoff_cap(r) for r in range(1, self.retries + 1)))


def _backoff_cap(retry: int) -> float:
    return min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (retry - 1))
