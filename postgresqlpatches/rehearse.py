"""``pgpatch rehearse``: the pending patches on a throwaway copy, before production sees them.

live (read-only) -> plan -> throwaway server of the live major -> roles, schemas (rows with
--data) and the state database copied -> runner.apply on the copy, with a lock watch ->
per patch: ran or failed, time, per statement locks and rewrites -> the copy is removed.
With --offline there is no live server: the tree is built on an empty copy.
With targets (fleet.rehearse) each target's rehearsal runs in a thread of its own, with its
own copy; ``stop`` ends a running one at once (its copy is stopped, then removed).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from postgresqlpatches.core.planner import Action, Plan, Step
from postgresqlpatches.core.rehearsal import PatchRehearsal
from postgresqlpatches.errors import Interrupted, PgpatchError
from postgresqlpatches.pg.errors import translated

if TYPE_CHECKING:
    from postgresqlpatches.core.discovery import Tree
    from postgresqlpatches.pg.scratch import ScratchServer
    from postgresqlpatches.runner import Options

log = logging.getLogger("pgpatch")

DATA_LIMIT_MB = 100
"""--data copies the rows of a database up to this size (pg_database_size); a larger one is
copied as its schema, and the report says so."""

COPY_SETTINGS = {"sslmode": "disable", "target_session_attrs": "any"}
"""The throwaway copy's libpq settings, given explicitly so that they beat the environment
and a target's own (psql and pg_dump get them as variables, as a target's settings)."""


@dataclass
class Rehearsal:
    plan: Plan
    """The live plan (offline: the tree's, on an empty server)."""
    offline: bool
    major: int | None = None
    copied: list[str] = field(default_factory=list)
    """Databases whose schema was copied from the live server; ``with_rows``: and their rows."""
    with_rows: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)
    patches: list[PatchRehearsal] = field(default_factory=list)
    error: PgpatchError | None = None
    """Why the rehearsal stopped before or outside a patch (a copy that failed, a plan on the
    copy that differs)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.plan.ok and self.error is None
                and all(p.outcome == "ran" for p in self.patches))


class Stop(Protocol):
    """What ends the rehearsals of a run over targets early: --fail-fast after a target
    failed, or Ctrl-C/SIGTERM (fleet.py's, set in the main thread)."""

    reason: str

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class RehearsalStopped(PgpatchError):
    """A rehearsal that ``stop`` ended: what ran on the copy is told, the rest is not run,
    and the copy is removed."""

    kind = "interrupted"


STOP_POLL_SECONDS = 0.1
"""How often a running rehearsal looks whether the run over targets stops."""


class _Timing:
    """runner.Reporter: how long each step took on the copy, and which one was running."""

    def __init__(self, expected: Plan | None) -> None:
        self.expected = expected
        self.started: Step | None = None
        self.t0 = 0.0
        self.done: dict[str, float] = {}
        self.plan: Plan | None = None
        self.failed_after: float | None = None

    def planned(self, plan: Plan) -> None:
        self.plan = plan
        if self.expected is None:
            return
        want = [(s.patch.path, s.action) for s in self.expected.pending]
        got = [(s.patch.path, s.action) for s in plan.pending]
        if want != got:
            differ = next((w, g) for w, g in zip([*want, None], [*got, None], strict=False)
                          if w != g)
            raise PgpatchError(
                "the plan on the copy differs from the live plan (live: "
                f"{_step_text(differ[0])}; copy: {_step_text(differ[1])}): nothing ran",
                hint="run with -l debug and report it: rehearse copies the state database so "
                     "that both plans agree")

    def step_started(self, step: Step) -> None:
        self.started = step
        self.t0 = time.monotonic()

    def step_done(self, step: Step, seconds: float) -> None:
        self.done[step.patch.path] = seconds
        self.started = None

    def running_for(self) -> float | None:
        """How long the step that is running (or failed) has run."""
        return time.monotonic() - self.t0 if self.started is not None else None


def _step_text(step: tuple[str, Action] | None) -> str:
    return "nothing more" if step is None else f"{step[1].value} {step[0]}"


@translated
def rehearse(options: Options, *, offline: bool = False, data: bool = False,
             major: int | None = None, data_limit_mb: int = DATA_LIMIT_MB,
             stop: Stop | None = None, tree: Tree | None = None) -> Rehearsal:
    """The pending patches on a throwaway copy; the live server is only read.

    ``stop`` (a run over targets): once it is set, the rehearsal ends at once: its copy is
    stopped under whatever runs there, and removed. ``tree``: the patch files as read
    already (with targets, once for all of them); else they are read here, once for the
    live plan and the copy's run."""
    from postgresqlpatches import runner
    from postgresqlpatches.pg.rehearsal import CopyPasswords, installation_for
    from postgresqlpatches.pg.server import Maintenance

    started = time.monotonic()
    live = replace(options, read_only=True)
    if tree is None and not offline:  # the live plan and the copy's run read it once
        from postgresqlpatches.core.discovery import read_tree

        tree = read_tree(options.globs, state_db=options.state_db,
                         admin_user=options.admin_user)
    if offline:  # the copy's passwords: an offline plan logs in nowhere else
        plan = runner.plan_offline(replace(options, environ=CopyPasswords()))
    else:
        plan = runner.plan(live, tree)
    result = Rehearsal(plan, offline)
    if not plan.ok or not plan.pending:
        return result
    if stop is not None and stop.is_set():
        raise RehearsalStopped(f"not rehearsed: {stop.reason}")
    existing: set[str] = set()
    if not offline:
        maint = Maintenance(live.server())
        try:
            major = maint.server_version() // 10000
            existing = maint.existing_databases(
                {s.patch.name.database for s in plan.steps} | {options.state_db})
        finally:
            maint.close()
    installation = installation_for(major)
    result.major = installation.major
    try:
        with interruptible():
            _on_copy(options, live, installation, plan, existing, result, offline=offline,
                     data=data, data_limit_mb=data_limit_mb, stop=stop, tree=tree)
    except PgpatchError as e:
        if stop is not None and stop.is_set():  # the copy went away under it: that is why
            raise RehearsalStopped(f"stopped, its copy removed: {stop.reason}") from e
        raise
    if stop is not None and stop.is_set() and not result.ok:
        _stopped(result, stop.reason)
    result.seconds = time.monotonic() - started
    return result


def _on_copy(options: Options, live: Options, installation: Any, plan: Plan,
             existing: set[str], result: Rehearsal, *, offline: bool, data: bool,
             data_limit_mb: int, stop: Stop | None = None,
             tree: Tree | None = None) -> None:
    """Start the copy, fill it, run the patches there, remove it (also on Ctrl-C, and at
    once when ``stop`` is set)."""
    from postgresqlpatches import runner
    from postgresqlpatches.pg.lockwatch import LockWatch
    from postgresqlpatches.pg.rehearsal import (
        CopyPasswords,
        copy_database,
        copy_roles,
        database_sizes,
        psql_command,
    )
    from postgresqlpatches.pg.scratch import ScratchServer

    passwords = CopyPasswords()
    scratch = ScratchServer(installation, password=passwords.password,
                            settings={"fsync": "off", "max_connections": "100"})
    watching = contextlib.ExitStack()
    try:
        scratch.start()
        watching.enter_context(_stopping(stop, scratch))
        if not offline:
            live_server = live.server()
            psql = psql_command(scratch.installation, scratch)
            copy_roles(live_server, scratch, psql)
            targets = sorted({s.patch.name.database for s in plan.pending
                              if s.action is Action.APPLY} & existing - {options.state_db})
            sizes = database_sizes(live_server, set(targets)) if data else {}
            limit = data_limit_mb * 1024 * 1024
            for database in targets:
                rows = data and sizes.get(database, 0) <= limit
                if data and not rows:
                    result.too_large.append(database)
                copy_database(live_server, database, scratch, psql, rows=rows,
                              major=result.major or installation.major)
                result.copied.append(database)
                if rows:
                    result.with_rows.append(database)
            if options.state_db in existing:  # its records make the copy's plan the live one
                copy_database(live_server, options.state_db, scratch, psql, rows=True,
                              major=result.major or installation.major)
        watch = LockWatch(scratch.connect)
        # the copy is ours, on this machine, without TLS: neither the target's libpq settings
        # nor the caller's PGSSLMODE/PGTARGETSESSIONATTRS may apply to it
        on_copy = replace(options, host=scratch.host, port=scratch.port, environ=passwords,
                          read_only=False, observer=watch, lock_wait=10.0,
                          settings=COPY_SETTINGS)
        timing = _Timing(None if offline else plan)
        failure: PgpatchError | None = None
        try:
            runner.apply(on_copy, timing, tree)
        except runner.PlanRefused as e:  # nothing ran on the copy
            if offline:  # the copy's plan is the tree's on an empty server: its problems
                result.plan = e.plan
            else:
                result.error = e
            return
        except PgpatchError as e:
            failure = e
            timing.failed_after = timing.running_for()
        if offline and timing.plan is not None:
            result.plan = timing.plan
        result.patches = _reports(timing.plan or plan, timing, watch, failure, live=plan)
        if isinstance(failure, Interrupted):  # Ctrl-C or SIGTERM in a patch: it did not fail
            _stopped(result, "interrupted")
            return
        if failure is not None and not any(p.outcome == "failed" for p in result.patches):
            result.error = failure  # not one patch's: the copy's, say
    finally:
        watching.close()  # the watch is over before the copy is removed
        with _uninterrupted():
            scratch.cleanup()


@contextmanager
def _stopping(stop: Stop | None, scratch: ScratchServer) -> Iterator[None]:
    """While the copy is in use: once ``stop`` is set, stop the copy at once (``immediate``),
    so that whatever runs there (a dump being copied in, a patch) fails within a moment and
    the rehearsal goes on to remove it. Nothing on a copy is worth finishing."""
    if stop is None:
        yield
        return
    over = threading.Event()

    def watch() -> None:
        while not over.is_set():
            if stop.wait(STOP_POLL_SECONDS):
                if not over.is_set():
                    log.info("rehearse: stopping the throwaway server (%s)", stop.reason)
                    with contextlib.suppress(PgpatchError, OSError, subprocess.SubprocessError):
                        scratch.stop("immediate")
                return

    # in the target's context: its log lines start with the target's name (fleet.py)
    watcher = threading.Thread(target=contextvars.copy_context().run, args=(watch,),
                               name="pgpatch-rehearsal-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        over.set()
        watcher.join()


def _stopped(result: Rehearsal, reason: str) -> None:
    """A rehearsal ``stop`` ended: the patch it was in did not fail, it was not run."""
    for p in result.patches:
        if p.outcome == "failed":
            p.outcome, p.line, p.sqlstate, p.message = "not run", None, None, None
            p.seconds = None
    result.error = RehearsalStopped(f"stopped, its copy removed: {reason}")


def _reports(plan: Plan, timing: _Timing, watch: Any,
             failure: PgpatchError | None, *, live: Plan) -> list[PatchRehearsal]:
    reports = []
    conflicts = {s.patch.path: s.lock_conflicts for s in live.pending}  # plan's, live
    failed_path = (failure.path if failure is not None and failure.path
                   else timing.started.patch.path if timing.started is not None else None)
    for step in plan.pending:
        name = step.patch.name
        report = PatchRehearsal(step.patch.path, name.database, name.version, name.user,
                                step.action.value)
        if step.patch.path in timing.done:
            report.outcome = "ran"
            report.seconds = timing.done[step.patch.path]
        elif failure is not None and step.patch.path == failed_path:
            report.outcome = "failed"
            report.seconds = timing.failed_after
            report.line, report.sqlstate = failure.line, failure.sqlstate
            report.message = failure.message
        report.statements = list(watch.seen.get(step.patch.path, []))
        report.lock_conflicts = conflicts.get(step.patch.path, ())
        reports.append(report)
    return reports


@contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM (a CI job cancelled, a killed terminal) ends the rehearsal as Ctrl-C does: by an
    exception, so that the copy is stopped and removed on the way out. With targets
    fleet.rehearse takes it in the main thread (the rehearsals run in others)."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals are not ours to take
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """A second Ctrl-C while the copy is removed would leave its files: it waits until then."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
