"""Many servers in one run (``-t/--target``): each target its own lock, plan and result.

A target is a name and the Options of its server. Targets run in threads, at most ``jobs``
at once, each in a runner call of its own: its own connections, lock and password lookups.
Whatever goes wrong on one target is kept as that target's result, so a failing server fails
only its own rows and the others finish. With ``fail_fast`` no target starts after the first
failure, and running ones stop before their next patch (each patch is its own unit, recorded
before the next one starts, so stopping between two is safe); a running rehearsal stops at
once instead (its copy holds nothing worth finishing) and its copy is removed.

The runner reports to a reporter per target; this module adds nothing to what a run does.
The tree is read and parsed once for all targets (_OneTree); what each server makes of it
(its plan, its groups' databases, its problems) stays the target's own.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from postgresqlpatches import runner
from postgresqlpatches.core import config
from postgresqlpatches.core.discovery import Tree, read_tree
from postgresqlpatches.core.planner import Action, Plan, Step
from postgresqlpatches.errors import ConnectionFailed, PgpatchError

if TYPE_CHECKING:
    from postgresqlpatches.core.locks import Session
    from postgresqlpatches.rehearse import Rehearsal

log = logging.getLogger("pgpatch")

DEFAULT_JOBS = 4

_current_target: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pgpatch_target", default=None)


@dataclass(frozen=True)
class Target:
    """One server of the fleet: ``[targets.NAME]`` made into the Options of its runs."""

    name: str
    options: runner.Options

    @property
    def host(self) -> str | None:
        return self.options.host

    @property
    def port(self) -> int | None:
        return self.options.port


def make_target(target: config.Target, base: runner.Options) -> Target:
    """A target's Options: the run's (globs, state database, lint, ...) with the target's own
    host, port, prefix and other libpq settings. The environment never overrides them:
    libpq takes a given setting over its PG* variable, and psql gets them set (server.py)."""
    return Target(target.name, replace(
        base, host=target.host, port=target.port,
        prefix=target.prefix if target.prefix is not None else base.prefix,
        settings={k: str(v) for k, v in target.settings.items()}))


class UnknownTarget(PgpatchError):
    """``-t NAME`` that the config file does not define: a usage error."""

    exit_code = 2


def select_targets(known: Sequence[str], wanted: Sequence[str], source: str) -> list[str]:
    """The names ``-t`` asked for, each once, in the order given (``all``: every target, in
    the file's order).

    ``source`` names where the targets are defined (the config file), for the error."""
    if not known:
        raise UnknownTarget(f"-t/--target: {source} defines no targets",
                            hint="add a [targets.NAME] table with its host and port")
    names: list[str] = []
    for name in wanted:
        if name == config.ALL_TARGETS:
            names.extend(n for n in known if n not in names)
        elif name not in known:
            raise UnknownTarget(f"-t/--target: no target {name!r} in {source} (its targets: "
                                f"{', '.join(known)}; or all)")
        elif name not in names:
            names.append(name)
    return names


class NotRun(PgpatchError):
    """A target that --fail-fast or Ctrl-C did not start, or stopped before its next patch."""


@dataclass
class TargetResult:
    """What one target's run came to: the plan it made, what ran, or the error it ended with."""

    target: Target
    plan: Plan | None = None
    done: list[tuple[Step, float]] = field(default_factory=list)
    """apply: the steps this run carried out, with their seconds."""
    status: runner.Status | None = None
    rehearsal: Rehearsal | None = None
    """rehearse: what the target's rehearsal found (None when it did not get that far)."""
    error: PgpatchError | None = None
    seconds: float = 0.0
    started: bool = False

    @property
    def ok(self) -> bool:
        return (self.error is None and (self.plan is None or self.plan.ok)
                and (self.rehearsal is None or self.rehearsal.ok))

    @property
    def databases(self) -> int:
        """The databases the target's plan (or, for status, its records) speaks of."""
        if self.plan is not None:
            return len({s.patch.name.database for s in self.plan.steps})
        if self.status is not None:
            return len({r.database for r in self.status.records})
        return 0

    @property
    def not_applied(self) -> list[Step]:
        """apply: the pending steps this run left undone because the target failed."""
        if self.plan is None or self.error is None:
            return []
        ran = {id(s) for s, _ in self.done}
        return [s for s in self.plan.pending if id(s) not in ran]

    def outcomes(self) -> dict[int, str]:
        """apply: what came of each pending step, by ``id(step)``: ``applied`` (by this run),
        ``failed`` (the step the target's error names), or ``not run``."""
        found = {id(s): "applied" for s, _ in self.done}
        left = self.not_applied
        for step in left:
            found[id(step)] = "not run"
        error = self.error
        from postgresqlpatches.stopped import GroupMembersFailed

        if isinstance(error, GroupMembersFailed):  # databases of a group, each its own
            for step, _ in error.result.members_failed:
                found[id(step)] = "failed"
        elif left and error is not None and error.path == left[0].patch.path \
                and not isinstance(error, NotRun | runner.PlanRefused):
            found[id(left[0])] = "failed"
        return found

    def outcome(self, step: Step) -> str | None:
        """outcomes() of one step; None for a step with nothing to do."""
        return self.outcomes().get(id(step))


class _Stop:
    """Set once: at the first failure with --fail-fast, or at Ctrl-C; says why."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """True once set; False after ``timeout`` seconds without."""
        return self._event.wait(timeout)


class _TargetReporter:
    """The runner's reporter for one target: keeps what ran, and stops before the next patch
    once the fleet stops (never between two scripts of one bootstrap: a database is made
    whole or not at all, and stopping inside would only undo it)."""

    def __init__(self, result: TargetResult, stop: _Stop,
                 inner: runner.Reporter | None) -> None:
        self.result = result
        self.stop = stop
        self.inner = inner or runner.SilentReporter()
        self.last: Step | None = None

    def planned(self, plan: Plan) -> None:
        self.result.plan = plan
        self.inner.planned(plan)

    def step_started(self, step: Step) -> None:
        last = self.last
        continues = (last is not None and step.action is Action.BOOTSTRAP
                     and last.action is Action.BOOTSTRAP
                     and last.patch.name.database == step.patch.name.database)
        if self.stop.is_set() and not continues:
            raise NotRun(f"stopped before its next patch: {self.stop.reason}",
                         path=step.patch.path)
        self.last = step
        self.inner.step_started(step)

    def step_done(self, step: Step, seconds: float) -> None:
        self.result.done.append((step, seconds))
        self.inner.step_done(step, seconds)

    def lock_retry(self, step: Step, retry: int, retries: int, wait_seconds: float,
                   blockers: Sequence[Session]) -> None:
        notify = getattr(self.inner, "lock_retry", None)  # optional for a reporter
        if notify is not None:
            notify(step, retry, retries, wait_seconds, blockers)


class _TargetLogFilter(logging.Filter):
    """Every log line of a target's run starts with the target's name (the threads' lines
    interleave); lines outside a target's run are left as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = _current_target.get()
        if name is not None:
            record.msg = f"{name}: {record.getMessage()}"
            record.args = None
        return True


@contextmanager
def _target_log_names() -> Iterator[None]:
    flt = _TargetLogFilter()
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


class _OneTree:
    """The patch files of a run, read, checksummed and parsed once for all its targets
    (make_target gives them one tree: the same globs, state database and admin role). The
    first target to need it reads it; an error reading it is each target's, as without
    targets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trees: dict[tuple[tuple[str, ...], str, str], Tree] = {}

    def of(self, options: runner.Options) -> Tree | None:
        """None without globs (status of the records alone)."""
        if not options.globs:
            return None
        key = (tuple(options.globs), options.state_db, options.admin_user)
        with self._lock:
            if key not in self._trees:
                self._trees[key] = read_tree(options.globs, state_db=options.state_db,
                                             admin_user=options.admin_user)
            return self._trees[key]


Work = Callable[[TargetResult, _Stop], None]


STOPS_BEFORE_NEXT_PATCH = "every target stops before its next patch"
"""What Ctrl-C does to apply's running targets (_TargetReporter); each command says its own."""


def _each(targets: Sequence[Target], jobs: int, fail_fast: bool, work: Work,
          on_interrupt: str = STOPS_BEFORE_NEXT_PATCH) -> list[TargetResult]:
    """``work`` for each target, at most ``jobs`` at once, started in the targets' order.

    ``on_interrupt``: what Ctrl-C does to the running targets, as the warning tells it."""
    results = [TargetResult(t) for t in targets]
    if not results:
        return results
    stop = _Stop()

    def one(result: TargetResult) -> None:
        if stop.is_set():
            result.error = NotRun(f"not started: {stop.reason}")
            return
        result.started = True
        token = _current_target.set(result.target.name)
        t0 = time.monotonic()
        try:
            work(result, stop)
        except PgpatchError as e:
            if isinstance(e, ConnectionFailed) and e.hint and "PGHOST/PGPORT" in e.hint:
                e.hint = (f"check host and port of [targets.{result.target.name}] and that "
                          "the server is running")
            result.error = e
        except Exception as e:  # a bug: this target fails with one line, the others finish
            log.debug("traceback", exc_info=e)
            result.error = PgpatchError(f"unexpected {type(e).__name__}: {e}",
                                        hint="run with -l debug for the traceback")
        finally:
            result.seconds = time.monotonic() - t0
            _current_target.reset(token)
        if fail_fast and not result.ok:
            stop.set(f"target {result.target.name} failed (--fail-fast)")

    with _target_log_names(), ThreadPoolExecutor(
            max_workers=max(1, min(jobs, len(results))),
            thread_name_prefix="pgpatch-target") as pool:
        futures = [pool.submit(one, r) for r in results]
        try:
            _wait(futures)
        except KeyboardInterrupt:
            # Ctrl-C: nothing new starts, running targets stop as ``on_interrupt`` says, and
            # every target's result is still told; a second Ctrl-C leaves at once
            log.warning("interrupted: %s", on_interrupt)
            stop.set("interrupted")
            _wait(futures)
    return results


def _wait(futures: Sequence[Future[None]]) -> None:
    for future in futures:
        future.result()


def plan(targets: Sequence[Target], jobs: int = DEFAULT_JOBS,
         fail_fast: bool = False) -> list[TargetResult]:
    """runner.plan on each target: read-only everywhere."""
    tree = _OneTree()

    def work(result: TargetResult, _stop: _Stop) -> None:
        options = result.target.options
        result.plan = runner.plan(options, tree.of(options))

    return _each(targets, jobs, fail_fast, work,
                 "no target starts; running ones finish their plan")


def apply(targets: Sequence[Target], jobs: int = DEFAULT_JOBS, fail_fast: bool = False,
          reporter_for: Callable[[Target], runner.Reporter] | None = None
          ) -> list[TargetResult]:
    """runner.apply on each target, under each server's own lock."""
    tree = _OneTree()

    def work(result: TargetResult, stop: _Stop) -> None:
        inner = reporter_for(result.target) if reporter_for is not None else None
        options = result.target.options
        try:
            runner.apply(options, _TargetReporter(result, stop, inner), tree.of(options))
        except runner.PlanRefused as e:
            result.plan = e.plan
            raise

    return _each(targets, jobs, fail_fast, work)


def status(targets: Sequence[Target], jobs: int = DEFAULT_JOBS,
           fail_fast: bool = False) -> list[TargetResult]:
    """runner.status on each target."""
    tree = _OneTree()

    def work(result: TargetResult, _stop: _Stop) -> None:
        options = result.target.options
        result.status = runner.status(options, tree.of(options))
        result.plan = result.status.plan

    return _each(targets, jobs, fail_fast, work,
                 "no target starts; running ones finish their status")


def rehearse(targets: Sequence[Target], jobs: int = DEFAULT_JOBS, fail_fast: bool = False,
             *, data: bool = False, data_limit_mb: int | None = None) -> list[TargetResult]:
    """rehearse.rehearse on each target: its live server only read, its own throwaway copy
    of that server's major. A running rehearsal stops at once when the run stops (Ctrl-C,
    SIGTERM, --fail-fast), and every copy is removed before this returns."""
    from postgresqlpatches import rehearse as rehearsing

    limit = rehearsing.DATA_LIMIT_MB if data_limit_mb is None else data_limit_mb
    tree = _OneTree()

    def work(result: TargetResult, stop: _Stop) -> None:
        options = result.target.options
        result.rehearsal = rehearsing.rehearse(options, data=data, data_limit_mb=limit,
                                               stop=stop, tree=tree.of(options))
        result.plan = result.rehearsal.plan

    with rehearsing.interruptible():  # SIGTERM as Ctrl-C: only the main thread takes signals
        return _each(targets, jobs, fail_fast, work,
                     "no target starts; running rehearsals stop at once, their copies removed")
