"""An apply that stopped (a failed patch, a lost server, Ctrl-C): the error it raises
carries what ran, what failed and what is left, so that every apply can end with that
(docs/json.md), and Ctrl-C says what became of the patch in flight."""

from __future__ import annotations

import logging
import time

from postgresqlpatches.core.planner import Action, Plan, Step
from postgresqlpatches.errors import PatchFailed
from postgresqlpatches.pg.errors import is_driver_error
from postgresqlpatches.pg.server import Maintenance, Server
from postgresqlpatches.values import ApplyResult, Options, Reporter

log = logging.getLogger("pgpatch")


class Tracked:
    """The caller's reporter, and which step is running and since when (stopped_error)."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.running: tuple[Step, float] | None = None
        self.plan: Plan | None = None
        self.done: list[tuple[Step, float]] = []
        self.lock_retry = getattr(reporter, "lock_retry", None)  # optional for a reporter

    def planned(self, plan: Plan) -> None:
        self.plan = plan
        self.reporter.planned(plan)

    def step_started(self, step: Step) -> None:
        self.running = (step, time.monotonic())
        self.reporter.step_started(step)

    def step_done(self, step: Step, seconds: float) -> None:
        self.running = None
        self.done.append((step, seconds))
        self.reporter.step_done(step, seconds)

    def in_flight(self, running: tuple[Step, float] | None) -> None:
        """Group members side by side (members.py): the step the run stopped in, if any,
        once every worker has ended (their steps started and ended in any order)."""
        self.running = running


def stopped_error(e: BaseException, options: Options, server: Server, maint: Maintenance,
             locked: bool, tracked: Tracked, started: float) -> BaseException:
    """The error an apply stops with, carrying as ``result`` what ran, what failed and what
    is left (when a plan was made), so that every apply can end with that (docs/json.md).

    Ctrl-C becomes ``Interrupted``, saying what became of the patch in flight (asked of the
    server once every session of the run is closed: pg/aftermath.py) and what the next run
    does. The steps of a bootstrap that did not finish are not among what ran: none of them
    is recorded as applied."""
    from postgresqlpatches.errors import Interrupted
    from postgresqlpatches.pg.errors import as_server_error

    if not isinstance(e, Exception | KeyboardInterrupt):
        return e
    error: BaseException = as_server_error(e) if is_driver_error(e) else e
    plan = tracked.plan if tracked.plan is not None else getattr(e, "plan", None)
    result = None
    if tracked.plan is not None:
        result = ApplyResult(tracked.plan, list(tracked.done))
    elif plan is not None:
        result = ApplyResult(plan)
    running = tracked.running
    failed = (running[0], time.monotonic() - running[1]) if running is not None else None
    if isinstance(e, GroupMembersFailed):  # the run went on past them: they are listed
        failed = None
        if result is not None:
            result.members_failed = list(e.result.members_failed)
    if result is not None:
        unfinished = {s.patch.name.database for s in result.plan.pending
                      if s.action is Action.BOOTSTRAP and not any(s is d for d, _ in result.done)}
        result.done = [(s, t) for s, t in result.done
                       if not (s.action is Action.BOOTSTRAP
                               and s.patch.name.database in unfinished)]
    if isinstance(e, KeyboardInterrupt):
        from postgresqlpatches.pg.aftermath import fate_of

        if running is not None and failed is not None:
            fate = fate_of(server, maint, options.state_db, running[0])
            if fate.committed and result is not None:
                result.done.append(failed)
                failed = None
            where = f"while it ran: {fate.words}"
        elif not locked:
            where = "while waiting for the lock: nothing ran"
        elif plan is None:
            where = "while reading the server: nothing ran"
        else:
            where = "between two patches: none was running"
        n = len(result.done) if result is not None else 0
        error = Interrupted(
            f"interrupted (Ctrl-C) {where}",
            path=running[0].patch.path if running is not None else None,
            hint=f"{n} patch{'es' * (n != 1)} of this run {'were' if n != 1 else 'was'} "
                 "applied and recorded; the next run goes on from here")
    if result is not None:
        result.failed = failed
        result.seconds = time.monotonic() - started
    error.result = result  # type: ignore[attr-defined]
    return error


class GroupMembersFailed(PatchFailed):
    """Patches failed on some databases of a group; the others went on (``result`` says
    what ran)."""

    def __init__(self, result: ApplyResult) -> None:
        names = [s.patch.name.database for s, _ in result.members_failed]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        super().__init__(
            f"{len(names)} database{'s' * (len(names) != 1)} of a group failed: {shown}",
            hint="each error above names its database; their later patches did not run, the "
                 "other databases' did. Fix the patch and run again: only what is pending runs")
        self.result = result


def member_failed(step: Step, error: PatchFailed) -> PatchFailed:
    """A group database's failure, naming the database (the file is the group's)."""
    named = PatchFailed(f"in database {step.patch.name.database} of group {step.patch.group}: "
                        f"{error.message}", hint=error.hint, path=error.path, line=error.line,
                        sqlstate=error.sqlstate)
    named.dropped_index, named.left_index = error.dropped_index, error.left_index
    named.left_reason = error.left_reason
    return named


def member_stops(options: Options, step: Step, error: PatchFailed, result: ApplyResult) -> None:
    """A group database's patch failed (rolled back, no record): named on stderr, and only
    that database stops; with --fail-fast the run stops (the named error is raised). One
    at a time and side by side (members.py) alike."""
    named = member_failed(step, error)
    if options.fail_fast:
        raise named from error
    log.error("%s", named)
    result.members_failed.append((step, named))
