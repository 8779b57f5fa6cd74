"""plan / apply / status / baseline as library functions; the CLI only parses and renders.

apply = connect -> lock (bounded) -> settle -> read state -> plan -> stop on problems ->
per step: run, record, report -> unlock. plan is the same without lock or writes. The
database work, connections and pipelining included, is pg/session.py's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from postgresqlpatches.core.discovery import Patch, Tree, discover
from postgresqlpatches.core.planner import Action, Plan, ServerFacts, Step, make_plan
from postgresqlpatches.core.records import Problem
from postgresqlpatches.errors import PatchFailed, PgpatchError
from postgresqlpatches.pg.errors import translated
from postgresqlpatches.pg.server import (
    RUN_APPLICATION_NAME,
    Maintenance,
    Server,
)
from postgresqlpatches.pg.session import RunSession, read_facts, read_server, state_store

if TYPE_CHECKING:
    pass

from postgresqlpatches.values import (  # the library's values, named here as before
    DEFAULT_STATE_DB,
    ApplyResult,
    Options,
    PlanRefused,
    Reporter,
    SilentReporter,
    Status,
)

__all__ = ["DEFAULT_STATE_DB", "ApplyResult", "Options", "PlanRefused", "Reporter",
           "SilentReporter", "Status", "apply", "execute", "forget", "locked", "plan",
           "plan_offline", "status"]

log = logging.getLogger("pgpatch")


def _make_plan(options: Options, server: Server, patches: Sequence[Patch],
               facts: ServerFacts, problems: Sequence[Problem] = (), *,
               online: bool = True) -> Plan:
    """The one planner call, with the options every command passes alike, and the password
    check of what it will run."""
    the_plan = make_plan(patches, facts, state_db=options.state_db, problems=problems,
                         allow_out_of_order=options.allow_out_of_order, lint=options.lint)
    from postgresqlpatches.preflight import check_logins, check_passwords, log_plan

    the_plan = check_passwords(server, the_plan, facts.roles, online=online,
                               state_db=options.state_db)
    the_plan = check_logins(the_plan, facts.roles) if online else the_plan
    log_plan(the_plan, options.state_db)
    return the_plan



def _discovered(options: Options, tree: Tree | None) -> tuple[list[Patch], list[Problem]]:
    """The tree as ``tree`` holds it (read once for several targets), else read now."""
    if tree is not None:
        return list(tree.patches), list(tree.problems)
    return discover(options.globs, state_db=options.state_db, admin_user=options.admin_user)


@translated
def plan(options: Options, tree: Tree | None = None) -> Plan:
    """Read-only: never creates anything, not even the state database."""
    patches, problems = _discovered(options, tree)
    server = options.server()
    from postgresqlpatches.preflight import expand_groups_read_only, with_lock_conflicts

    patches, problems = expand_groups_read_only(options, server, patches, problems)
    facts = read_server(server, options.state_db, patches, options.adopt)
    return with_lock_conflicts(server, _make_plan(options, server, patches, facts, problems),
                               facts.existing)



def plan_offline(options: Options) -> Plan:
    """No server: the plan for an empty server, so every file is parsed and checked.

    A database with a 0000 baseline in the tree is taken as new (built from its scripts);
    one without is taken as existing with nothing applied (it must be on the server).
    """
    from postgresqlpatches.preflight import expand_groups

    patches, problems = discover(options.globs, state_db=options.state_db,
                                 admin_user=options.admin_user)
    patches, more = expand_groups(options, None, patches)
    problems = [*problems, *more]
    built_here = {p.name.database for p in patches if p.name.is_baseline}
    facts = ServerFacts(frozenset(p.name.database for p in patches) - built_here)
    return _make_plan(options, options.server(), patches, facts, problems, online=False)


@translated
def apply(options: Options, reporter: Reporter | None = None,
          tree: Tree | None = None) -> ApplyResult:
    """Carry the plan out; nothing runs when the plan has a problem. An apply that stops
    raises an error that carries what ran, what failed and what is left (stopped.py)."""
    from postgresqlpatches.stopped import Tracked, stopped_error

    tracked = Tracked(reporter or SilentReporter())
    started = time.monotonic()
    patches, problems = _discovered(options, tree)
    if problems:
        raise PlanRefused(Plan((), tuple(problems)))

    def stopped(e: BaseException, server: Server, maint: Maintenance,
                run: RunSession | None) -> BaseException:
        return stopped_error(e, options, server, maint, run is not None, tracked, started)

    with locked(options, stopped) as run:
        result = execute(options, run, patches, tracked)
    result.seconds = time.monotonic() - started
    return result


Stopped = Callable[[BaseException, Server, Maintenance, "RunSession | None"], BaseException]


@contextmanager
def locked(options: Options, stopped: Stopped | None = None) -> Iterator[RunSession]:
    """The server's lock and a run's session under it, for apply and baseline alike: the
    session's connections close first, then the lock goes. ``stopped``: what an error
    becomes, asked once the run's sessions are closed and while the lock is still held."""
    server = options.server()
    server.application_name = RUN_APPLICATION_NAME  # the next run waits for these sessions
    maint = Maintenance(server)
    run: RunSession | None = None
    try:
        maint.lock(options.lock_wait)
        run = RunSession(server, maint, options.state_db, options.lock_wait,
                         options.lock_budget, observer=options.observer)
        try:
            yield run
        finally:
            run.close()
    except BaseException as e:
        error = stopped(e, server, maint, run) if stopped is not None else e
        if error is e:
            raise
        raise error from e
    finally:
        maint.close()


def execute(options: Options, run: RunSession, patches: Sequence[Patch],
             reporter: Reporter) -> ApplyResult:
    """Under the lock (``locked``): settle, read, plan, stop on problems, then each step:
    run (which records it), report."""
    from postgresqlpatches.core.outcomes import bootstrap_group, side_by_side
    from postgresqlpatches.preflight import expand_groups

    patches, problems = expand_groups(options, run.maint, patches)  # under the lock
    if problems:
        raise PlanRefused(Plan((), tuple(dict.fromkeys(problems))))
    existing = run.open({p.name.database for p in patches})
    facts = read_facts(run.maint, options.state_db, existing, run.store, patches,
                       options.adopt, look=run.look_into, lazy_roles=True)
    plan = _make_plan(options, run.server, patches, facts)
    if plan.problems:
        raise PlanRefused(plan)
    reporter.planned(plan)
    run.on_retry = getattr(reporter, "lock_retry", None)  # optional for a reporter
    result = ApplyResult(plan)

    def finished(step: Step, seconds: float) -> None:
        reporter.step_done(step, seconds)
        result.done.append((step, seconds))

    pending = list(plan.pending)
    run.begin(pending)
    index = 0
    failed: set[str] = set()  # group databases whose patch failed: the rest of theirs wait
    while index < len(pending):
        step = pending[index]
        if step.patch.name.database in failed:
            index += 1
            continue
        if step.action is Action.BOOTSTRAP:
            group = bootstrap_group(pending, index)
            run.bootstrap(group, reporter.step_started, finished)
            index += len(group)
            continue
        members = side_by_side(pending, index, options.state_db) if options.jobs > 1 else []
        if members:  # --jobs N: up to N of them at once (members.py)
            from postgresqlpatches.members import run_side_by_side

            run_side_by_side(options, run, members, reporter, result, finished, options.jobs)
            index += sum(len(m) for m in members)
            continue
        run.ready(step)
        t0 = time.monotonic()
        reporter.step_started(step)
        try:
            run.run(step)
        except PatchFailed as e:
            if step.patch.group is None:
                raise
            from postgresqlpatches.stopped import member_stops

            member_stops(options, step, e, result)  # only this database stops
            failed.add(step.patch.name.database)
            index += 1
            continue
        finished(step, time.monotonic() - t0)
        index += 1
    run.fill_checksums(plan)
    if result.members_failed:
        from postgresqlpatches.stopped import GroupMembersFailed

        raise GroupMembersFailed(result)
    return result


# -- status ------------------------------------------------------------------------------

@translated
def status(options: Options, tree: Tree | None = None) -> Status:
    """The records; with globs also the plan, from the same reading of the server."""
    server = options.server()
    if not options.globs:
        from postgresqlpatches.core.planner import record_problems

        facts = read_server(server, options.state_db, (), options.adopt)
        return Status(list(facts.records), None, facts.state_exists,
                      record_problems(facts, options.state_db))
    from postgresqlpatches.preflight import expand_groups_read_only

    patches, problems = _discovered(options, tree)
    patches, problems = expand_groups_read_only(options, server, patches, problems)
    facts = read_server(server, options.state_db, patches, options.adopt)
    return Status(list(facts.records), _make_plan(options, server, patches, facts, problems),
                  facts.state_exists)


@translated
def forget(options: Options, database: str) -> int:
    """Drop the records of a database that no longer exists, so its bootstrap runs again."""
    server = options.server()
    maint = Maintenance(server)
    try:
        maint.lock(options.lock_wait)
        existing = maint.existing_databases({database, options.state_db})
        if database in existing:
            raise PgpatchError(
                f"database {database} exists: forgetting its records would run its patches "
                "again on it", hint=f"drop database {database} first, if that is what you want")
        store = state_store(server, options.state_db, existing)
        if store is None:
            return 0
        try:
            return store.forget_database(database)
        finally:
            store.close()
    finally:
        maint.close()
