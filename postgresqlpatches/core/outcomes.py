"""The decisions a run's session follows and the words for what a step leaves: pure
functions over steps, so that pg/session.py only carries them out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from postgresqlpatches.core.planner import Action, Step
from postgresqlpatches.errors import LockLost, PatchFailed

if TYPE_CHECKING:
    from postgresqlpatches.core.lockbudget import LockBudget
    from postgresqlpatches.core.locks import Session
    from postgresqlpatches.core.statements import NewSession, Statement


def bootstrap_group(pending: Sequence[Step], index: int) -> list[Step]:
    """The bootstrap steps of the database of ``pending[index]`` from there on: one database
    is made by all of its 00000000 scripts or not at all."""
    database = pending[index].patch.name.database
    return [s for s in pending[index:] if s.action is Action.BOOTSTRAP
            and s.patch.name.database == database]


def side_by_side(pending: Sequence[Step], index: int, state_db: str) -> list[list[Step]]:
    """The group members from ``pending[index]`` on that ``--jobs`` runs side by side: each
    member's pending steps (all of its database's, its own files too, in version order),
    for as long as one member follows another in the plan. Empty when ``pending[index]``
    is not a member's: a database outside every group, a bootstrap and the state database
    run alone, in plan order, so they are the edges of a batch (docs/fleet.md)."""
    members: list[list[Step]] = []
    while index < len(pending):
        database = pending[index].patch.name.database
        end = index
        while end < len(pending) and pending[end].patch.name.database == database:
            end += 1
        steps = list(pending[index:end])
        if (database == state_db or not any(s.patch.group is not None for s in steps)
                or any(s.action is Action.BOOTSTRAP for s in steps)):
            break
        members.append(steps)
        index = end
    return members


def new_session_of(step: Step) -> NewSession | None:
    """Why the next patch on this step's connection needs a new session (DISCARD ALL is not
    enough), or None. A psql baseline's statements are not parsed: it may change any login's
    defaults."""
    from postgresqlpatches.core.own_patches import needs_no_new_session, runs_without_psql
    from postgresqlpatches.core.statements import NewSession, new_session_needed

    if runs_without_psql(step.patch) or needs_no_new_session(step.patch):
        return None  # pgpatch's own, read: DISCARD ALL is enough (core/own_patches.py)
    if step.via_psql:
        return NewSession("a psql baseline", every_connection=True)
    return new_session_needed(step.statements)


def chains(step: Step, following: Step, state_db: str, new_session: NewSession | None) -> bool:
    """``following`` goes down the same pipeline behind ``step``: it is a plain transaction
    (an APPLY step, not in the state database, not non-transactional) on the same connection,
    which ``step`` leaves to DISCARD ALL (``new_session`` is None), not to a new connection."""
    name, other = step.patch.name, following.patch.name
    return (following.action in (Action.APPLY, Action.REAPPLY)
            and not following.non_transactional
            and other.database != state_db
            and (other.database, other.user) == (name.database, name.user)
            and new_session is None)


def as_sent(step: Step, state_db: str) -> Sequence[Statement]:
    """A patch's statements as sent: core/sending.py decides it for apply and `plan --sql`
    alike (one that makes temp objects drops them last, inside its own transaction:
    statements.DISCARD_TEMP says why)."""
    from postgresqlpatches.core.sending import sending

    return sending(step, state_db).statements


def lock_lost(reason: str, step: Step | None, applied: int, done: str) -> LockLost:
    """The error that stops a run whose lock is gone, before its next step."""
    said = (f"{applied} patch{'es' * (applied != 1)} of this run "
            f"{'were' if applied != 1 else 'was'} applied and recorded")
    return LockLost(f"the run lost its lock: {reason}; stopped here, {done}",
                    path=step.patch.path if step is not None else None,
                    hint=f"{said}; the next run goes on from here")


def what_ran(error: PatchFailed, done: int, total: int) -> str:
    """What a failed non-transactional patch leaves, for the end of its error message."""
    failed = done + 1
    if error.dropped_index:
        said = (f"; statement {failed} of {total} had already made the index "
                f"{error.dropped_index}, left invalid: pgpatch dropped it")
        if not done:
            return said + ", so nothing of the file is left and the next run runs it again"
    elif error.left_index:
        said = (f"; statement {failed} of {total} left the invalid index {error.left_index}, "
                f"which pgpatch did not drop ({error.left_reason})")
        error.hint = (f"drop it (DROP INDEX CONCURRENTLY {error.left_index}) before the next "
                      "run, or the statement fails again with \"already exists\"")
        if not done:
            return said + "; no other statement of it ran"
    else:
        if not done:
            return "; no statement of it ran"
        said = ""
    return (said + f"; statements 1-{done} of {total} ran and stay done, the next run resumes "
            f"at statement {failed}")


def undo_hint(database: str, kept: str | None, roles: Sequence[str], *, duplicate: bool,
              hint: str | None) -> str | None:
    """The hint of a failed bootstrap's error once its leftovers were dealt with: what was
    kept and why, or that nothing was (None: the error's own hint stays)."""
    if kept is not None:
        return (f"pgpatch left database {database} as it is ({kept}), and the roles its "
                f"bootstrap created ({', '.join(roles) or 'none'}): drop them by hand if they "
                "are this bootstrap's, then run again")
    if duplicate:
        return ("it exists already (made by hand, or left by an interrupted bootstrap): drop "
                "it, or create it only where missing, as the baselines of `pgpatch baseline` do")
    if not hint:
        return (f"nothing of {database} was kept: pgpatch dropped the database and the roles "
                "its bootstrap created; fix the file and run again")
    return None


def gave_up(budget: LockBudget, retries: int, seconds: float, blockers: Sequence[Session],
            retriable: bool) -> str:
    """What a patch that gave up on its locks says after the server's message: the budget
    it used and who blocked it."""
    if not retriable:
        spent = (f"a CONCURRENTLY statement waits once, up to --concurrent-lock-timeout "
                 f"{budget.concurrent_timeout_ms} ms")
    else:
        spent = (f"gave up after {retries} retr{'y' if retries == 1 else 'ies'} in "
                 f"{seconds:.1f} s (--lock-timeout {budget.timeout_ms} ms, --lock-retries "
                 f"{budget.retries})")
    who = ("blocked by " + ", ".join(b.describe() for b in blockers) if blockers
           else "the blocking session was not seen (it may have ended)")
    return f"; {spent}; {who}"


def step_mode(step: Step, state_db: str) -> str:
    """How a pending step is run, in words (the SQL mode -l debug names)."""
    if step.via_psql:
        from postgresqlpatches.core.own_patches import runs_without_psql

        if runs_without_psql(step.patch):
            return "bootstrap as psql would run it (the state database's 0000 baseline, " \
                   "run by pgpatch itself), as a whole"
        return "bootstrap through psql (a 0000 baseline), as a whole"
    modes = f", {' '.join(step.transaction)}" if step.transaction else ""
    if step.action is Action.BOOTSTRAP:
        return ("bootstrap script, statement by statement in autocommit"
                if step.non_transactional else f"bootstrap script, one transaction{modes}")
    if step.patch.name.database == state_db:
        return f"one transaction with its record in it (the state database){modes}"
    if step.non_transactional:
        start = f", resuming at statement {step.resume_from + 1}" if step.resume_from else ""
        return f"statement by statement in autocommit, each recorded when done{start}"
    return (f"one transaction{modes}, pipelined: its record is written before its COMMIT, "
            "and settled at the end of the run")
