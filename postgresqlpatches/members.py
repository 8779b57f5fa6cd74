"""Group members side by side (``apply --jobs N`` without targets): up to N members of a
batch (core/outcomes.py side_by_side) at once, each through its pending steps in version
order, in a thread of its own with a patch session of its own (pg/session.py
RunSession.members). Orchestration only, as runner.py's loop, whose rules it keeps: a
member's failed group patch stops only that member (``--fail-fast``: the run), any other
error stops the run; a stop (the first error, --fail-fast, Ctrl-C) starts no new patch,
and what runs finishes, each patch recorded before the next starts.

The reporter is called from one thread at a time. The run's error is raised in the
caller's thread once every worker has ended, with the reporter told which step was in
flight (``in_flight``, optional for a reporter: stopped.Tracked has it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from postgresqlpatches.errors import PatchFailed

if TYPE_CHECKING:
    from postgresqlpatches.core.locks import Session
    from postgresqlpatches.core.planner import Step
    from postgresqlpatches.pg.session import MemberSession, RunSession
    from postgresqlpatches.values import ApplyResult, Options, Reporter

log = logging.getLogger("pgpatch")

JOIN_POLL_SECONDS = 0.2
"""How often the caller's thread wakes while workers run."""


class _Batch:
    """What the workers of one batch share: the members not yet started, the stop, the
    first error and the step it stopped in, each change under one lock."""

    def __init__(self, members: list[list[Step]]) -> None:
        self.lock = threading.Lock()
        self._next: Iterator[list[Step]] = iter(members)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.in_flight: tuple[Step, float] | None = None
        self.working = 0  # workers started and not yet ended
        self.ended = threading.Event()  # set when the last worker ends

    def worker_started(self) -> None:
        with self.lock:
            self.working += 1

    def worker_ended(self) -> None:
        with self.lock:
            self.working -= 1
            if self.working == 0:
                self.ended.set()

    def next_member(self) -> list[Step] | None:
        with self.lock:
            return None if self.stop.is_set() else next(self._next, None)

    def failed(self, error: BaseException, in_flight: tuple[Step, float] | None) -> None:
        """The run stops: the first error is the run's."""
        with self.lock:
            if self.error is None:
                self.error, self.in_flight = error, in_flight
            self.stop.set()


def run_side_by_side(options: Options, run: RunSession, members: list[list[Step]],
                     reporter: Reporter, result: ApplyResult,
                     finished: Callable[[Step, float], None], jobs: int) -> None:
    """Run ``members`` (each one database's pending steps), up to ``jobs`` at once."""
    from postgresqlpatches.stopped import member_stops

    batch = _Batch(members)
    said = threading.Lock()  # the reporter, result.members_failed and the log, one at a time

    def retried(step: Step, retry: int, retries: int, wait: float,
                blockers: Sequence[Session]) -> None:
        notify = getattr(reporter, "lock_retry", None)  # optional for a reporter
        if notify is not None:
            with said:
                notify(step, retry, retries, wait, blockers)

    def member(session: MemberSession, steps: list[Step]) -> None:
        session.begin(steps)
        for step in steps:
            if batch.stop.is_set():
                return
            session.ready(step)
            t0 = time.monotonic()
            with said:
                reporter.step_started(step)
            try:
                session.run(step)
            except PatchFailed as e:
                if step.patch.group is None:
                    raise _InFlight(e, (step, t0)) from e
                try:
                    with said:
                        member_stops(options, step, e, result)  # only this member stops
                except PatchFailed as named:  # --fail-fast: the run stops
                    batch.failed(named, (step, t0))
                return
            except BaseException as e:
                raise _InFlight(e, (step, t0)) from e
            with said:
                finished(step, time.monotonic() - t0)

    def work(session: MemberSession) -> None:
        try:
            while (steps := batch.next_member()) is not None:
                member(session, steps)
        except _InFlight as e:
            batch.failed(e.error, e.step)
        except BaseException as e:  # between two patches (the lock's check, ...)
            batch.failed(e, None)
        finally:
            batch.worker_ended()

    with run.members(min(jobs, len(members)), retried) as sessions:
        threads = [threading.Thread(target=work, args=(s,), name=f"pgpatch-member-{i + 1}")
                   for i, s in enumerate(sessions)]
        interrupted = False
        try:
            for thread in threads:
                batch.worker_started()
                try:
                    thread.start()
                except BaseException:
                    batch.worker_ended()
                    raise
        except KeyboardInterrupt:
            batch.stop.set()
            interrupted = True
        _wait(batch, interrupted)
        for thread in threads:
            if thread.ident is not None:
                thread.join()
    order = {id(s): i for i, s in enumerate(result.plan.pending)}  # as one at a time: by name
    result.members_failed.sort(key=lambda failed: order.get(id(failed[0]), -1))
    tell = getattr(reporter, "in_flight", None)  # optional for a reporter
    if tell is not None:
        tell(batch.in_flight)
    if batch.error is not None:
        raise batch.error


def _wait(batch: _Batch, interrupted: bool) -> None:
    """Until every worker has ended. Ctrl-C starts no new patch and lets each running one
    finish (and be recorded); it is raised once they have (stopped.py says what ran). The
    wait is on an event, never on Thread.join: a join that Ctrl-C cuts short may take a
    running thread for ended."""
    while True:
        try:
            if batch.working == 0 or batch.ended.wait(JOIN_POLL_SECONDS):
                break
        except KeyboardInterrupt:
            if not interrupted:
                log.warning("interrupted: each running database of the group finishes the "
                            "patch it runs, and no other patch starts")
            interrupted = True
            batch.stop.set()
    if interrupted:
        batch.failed(KeyboardInterrupt(), None)


class _InFlight(Exception):
    """A worker's error with the step it stopped in (carried to the caller's thread)."""

    def __init__(self, error: BaseException, step: tuple[Step, float]) -> None:
        super().__init__(str(error))
        self.error = error
        self.step = step
