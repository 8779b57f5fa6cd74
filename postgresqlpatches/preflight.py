"""What is checked and added to a plan before anything runs: the passwords each login will
use, the roles the patches run as, the live sessions whose locks conflict with a pending
patch's, and the plan as -l debug shows it. Called by runner.py for plan, apply and status;
the decisions are core/'s, the reading pg/'s."""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from postgresqlpatches.core.planner import Action, Plan
from postgresqlpatches.core.records import Problem
from postgresqlpatches.pg.server import MAINTENANCE_DB, Maintenance, Server
from postgresqlpatches.pg.state import STATE_USER
from postgresqlpatches.values import DEFAULT_STATE_DB

if TYPE_CHECKING:
    from postgresqlpatches.core.discovery import Patch
    from postgresqlpatches.core.locks import RelationLock
    from postgresqlpatches.values import Options

log = logging.getLogger("pgpatch")


def check_passwords(server: Server, the_plan: Plan, roles: Container[str] | None, *,
                     online: bool, state_db: str = DEFAULT_STATE_DB) -> Plan:
    """Every fallback to the user name, found before anything runs: one warning line per
    role, or with --strict-passwords a problem each (kind ``password``).

    Who needs a password: every user a pending step logs in as, the admin role and patches
    (online, they always log in), and every role a pending baseline names a password
    variable of and that does not exist yet (``roles``; unknown offline: all of them).
    A password is had from a variable or from libpq's sources for the database it logs in to
    (``first_db``)."""
    from postgresqlpatches.pg.server import baseline_variables, fallback_problem

    created: dict[str, Patch] = {}  # role: the first baseline that names it
    logins: dict[str, Patch | None] = (dict.fromkeys((server.admin_user, STATE_USER))
                                       if online else {})
    first_db = {server.admin_user: MAINTENANCE_DB, STATE_USER: state_db}
    for step in the_plan.pending:
        patch = step.patch
        if step.via_psql:
            for role in baseline_variables(patch.text, server.prefix,
                                           patch.name.database).values():
                if roles is None or role not in roles:
                    created.setdefault(role, patch)
                    first_db.setdefault(role, patch.name.database)
        logins.setdefault(patch.name.user, patch)
        first_db.setdefault(patch.name.user,
                            MAINTENANCE_DB if step.via_psql else patch.name.database)
    problems: list[Problem] = []
    for role in [*created, *(r for r in logins if r not in created)]:
        if server.has_password(role, first_db[role]):
            continue
        first = created.get(role) or logins[role]
        if not server.strict:
            server.warn_fallback(role, first.name.filename if role in created and first
                                 else None)
            continue
        message, hint = fallback_problem(server.prefix, role, role in created)
        problems.append(Problem("password", first.path if first else None, message,
                                hint=hint))
    if not problems:
        return the_plan
    return replace(the_plan, problems=(*the_plan.problems, *problems))


def check_logins(the_plan: Plan, roles: Container[str] | None) -> Plan:
    """A pending patch's user that will not exist when it runs (core/logins.py): a problem,
    or a warning line where an earlier patch may make it unseen."""
    from postgresqlpatches.core.logins import missing_logins

    if roles is None:
        return the_plan
    blamed = frozenset(p.path for p in the_plan.problems if p.path)  # told once is enough
    problems, warnings = missing_logins(the_plan.pending, roles, blamed)
    for line in warnings:
        log.warning("%s", line)
    return replace(the_plan, problems=(*the_plan.problems, *problems)) if problems \
        else the_plan


def with_lock_conflicts(server: Server, the_plan: Plan, existing: frozenset[str]) -> Plan:
    """Each pending patch of a database that exists gets the live sessions whose locks
    conflict with the ones it will take, and its database's oldest open transaction: one
    read-only query per such database, none when nothing is pending (information for
    whoever picks the moment to apply; never a problem)."""
    from postgresqlpatches.core.locks import patch_locks
    from postgresqlpatches.pg.locks import read_live_locks

    wanted: dict[str, dict[int, tuple[RelationLock, ...]]] = {}  # database: {step index: its locks}
    # a database that gets a bootstrap is made (or made again: an interrupted one's leftover,
    # whose sessions prove who used it, planner.foreign_use): plan never connects to it
    built = {s.patch.name.database for s in the_plan.steps if s.action is Action.BOOTSTRAP}
    for index, step in enumerate(the_plan.steps):
        database = step.patch.name.database
        if step.action in (Action.APPLY, Action.REAPPLY) and database in existing - built:
            wanted.setdefault(database, {})[index] = patch_locks(step.statements)
    if not wanted:
        return the_plan
    steps = list(the_plan.steps)
    for database, by_step in wanted.items():
        live = read_live_locks(server, database,
                               [lock for locks in by_step.values() for lock in locks])
        if live is None:
            continue
        for index, locks in by_step.items():
            steps[index] = replace(steps[index], lock_conflicts=live.conflicts(locks),
                                   oldest_transaction=live.oldest)
    return replace(the_plan, steps=tuple(steps))


def log_plan(plan: Plan, state_db: str) -> None:
    """What pgpatch decided, for -l debug: the plan's counts and how each pending step runs."""
    from postgresqlpatches.core.outcomes import step_mode

    if not log.isEnabledFor(logging.DEBUG):
        return
    pending = plan.pending
    log.debug("plan: %d patch%s, %d pending (%d to bootstrap), %d applied", len(plan.steps),
              "es" * (len(plan.steps) != 1), len(pending), plan.count(Action.BOOTSTRAP),
              plan.count(Action.APPLIED))
    for step in pending:
        log.debug("plan: %s: %s", step.patch.path, step_mode(step, state_db))


# -- database groups (@NAME patches) ---------------------------------------------------------

def expand_groups(options: Options, maint: Maintenance | None,
                   patches: Sequence[Patch]) -> tuple[Sequence[Patch], list[Problem]]:
    """``@NAME`` patches, one per database of the group when this is asked (planner.
    expand_groups); without a session (offline) they stay one each. Asks the server only
    when a group patch is among ``patches``."""
    from postgresqlpatches.core.planner import expand_groups as expand

    if not any(p.name.group is not None for p in patches):
        return patches, []
    names = maint.group_candidates() if maint is not None else None
    return expand(patches, options.groups, names, options.state_db)


def expand_groups_read_only(options: Options, server: Server, patches: Sequence[Patch],
                             problems: Sequence[Problem]) -> tuple[Sequence[Patch],
                                                                   list[Problem]]:
    """plan and status: the groups' databases from a short session of its own (only when a
    group patch is among ``patches``)."""
    if not any(p.name.group is not None for p in patches):
        return patches, list(problems)
    maint = Maintenance(server)
    try:
        patches, more = expand_groups(options, maint, patches)
    finally:
        maint.close()
    return patches, [*problems, *more]
