"""What apply sends to the server for a pending step, decided in one place (pure).

`apply` hands the executor exactly these statements, and `plan --sql` prints them, so the SQL
a reviewer reads is the SQL that runs: the one transaction around a patch, the inner
``BEGIN``/``COMMIT`` of a Prisma-style block left out, ``DISCARD TEMP`` at the end of a patch
that makes temp objects, a non-transactional file statement by statement (from its resume
point), and a ``0000`` baseline as the file itself, through psql.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from postgresqlpatches.core.planner import Action, Step
from postgresqlpatches.core.statements import (
    DISCARD_TEMP,
    TRANSACTION_MODES,
    Statement,
    creates_temp_objects,
)

ONE_TRANSACTION = "one transaction"
STATEMENT_BY_STATEMENT = "statement by statement"
THROUGH_PSQL = "psql"


@dataclass(frozen=True)
class Sending:
    """One pending step as apply sends it."""

    step: Step
    mode: str
    """ONE_TRANSACTION, STATEMENT_BY_STATEMENT or THROUGH_PSQL."""
    statements: tuple[Statement, ...]
    """The file's statements in the order sent, from the first one sent (``start``)."""
    start: int = 0
    """How many statements of the file ran in an earlier run (a resumed one): not sent."""
    begin: tuple[str, ...] = ()
    """What opens the transaction (ONE_TRANSACTION only)."""

    @property
    def sql(self) -> tuple[str, ...]:
        """Every statement sent, in order, pgpatch's own bookkeeping aside (the transaction
        id, the records, DISCARD ALL between patches); empty for psql (the file is sent)."""
        if self.mode == THROUGH_PSQL:
            return ()
        body = tuple(s.text for s in self.statements)
        if self.mode == STATEMENT_BY_STATEMENT:
            return body
        return (*self.begin, *body, "COMMIT")


def begin_with(modes: Sequence[str]) -> str:
    """The BEGIN of a patch with its transaction modes (statements.TRANSACTION_MODES only),
    as executor.begin_statement sends it."""
    _check_modes(modes)
    return "BEGIN " + ", ".join(modes) if modes else "BEGIN"


def _check_modes(modes: Sequence[str]) -> None:
    unknown = set(modes) - TRANSACTION_MODES
    if unknown:
        raise ValueError(f"not a transaction mode: {sorted(unknown)}")


def sending(step: Step, state_db: str) -> Sending:
    """How apply sends ``step`` (a pending one) to the server.

    Patches of the user's databases begin with their modes in BEGIN (before pgpatch's own
    query for the transaction id); bootstrap scripts and patches of the state database are
    run by psycopg, which sends a plain BEGIN, and get their modes as SET TRANSACTION right
    after it. Only those patches drop their temp objects with DISCARD TEMP: the others are
    followed by a new session or run no DISCARD ALL behind their commit.
    """
    if step.via_psql:
        return Sending(step, THROUGH_PSQL, ())
    in_state = step.action is Action.APPLY and step.patch.name.database == state_db
    if step.non_transactional and not in_state:  # the state's patches commit with their record
        return Sending(step, STATEMENT_BY_STATEMENT, tuple(step.statements[step.resume_from:]),
                       start=step.resume_from)
    if step.action is Action.BOOTSTRAP or in_state:
        _check_modes(step.transaction)
        begin = ("BEGIN",) + ((f"SET TRANSACTION {', '.join(step.transaction)}",)
                              if step.transaction else ())
        return Sending(step, ONE_TRANSACTION, tuple(step.statements), begin=begin)
    statements = tuple(step.statements)
    if creates_temp_objects(statements):
        statements = (*statements, DISCARD_TEMP)  # statements.DISCARD_TEMP says why
    return Sending(step, ONE_TRANSACTION, statements, begin=(begin_with(step.transaction),))


def as_text(send: Sending, *, what: str = "") -> str:
    """``send`` as SQL a reviewer reads (and psql could run): a comment header, then each
    statement with its semicolon; a psql file as it is. ``what``: the header's last words."""
    step = send.step
    name = step.patch.name
    mode = send.mode
    if mode == THROUGH_PSQL:
        from postgresqlpatches.core.own_patches import runs_without_psql

        mode = (f"psql on database postgres with -v database={name.database}, "
                "the file as it is")
        if runs_without_psql(step.patch):  # the same, without a psql process
            mode = mode.replace("psql on", "as psql would run it, by pgpatch itself, on", 1)
    elif send.start:
        mode += f", resumed at statement {send.start + 1}"
    if step.action is Action.BOOTSTRAP:
        mode = f"bootstrap, {mode}"
    elif name.is_repeatable:
        from postgresqlpatches.core.planner import next_run

        mode = f"repeatable (run {next_run(step)}), {mode}"
    lines = [f"-- {step.patch.path}",
             f"-- database: {name.database}, user: {name.user}, {mode}{what}"]
    if send.mode == THROUGH_PSQL:
        text = step.patch.text
        return "\n".join(lines) + "\n" + text + ("" if text.endswith("\n") else "\n")
    if not send.statements:
        lines.append("-- (the file holds no statement)")
    for statement in send.sql:
        last = statement.rsplit("\n", 1)[-1]
        # a trailing "-- comment" would swallow the semicolon
        lines.append(statement + ("\n;" if "--" in last else ";"))
    return "\n".join(lines) + "\n"
