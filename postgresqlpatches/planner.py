"""The plan: what each patch will do, decided once from files, server facts and records (pure)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from postgresqlpatches.discovery import Patch, Problem
from postgresqlpatches.state import Record

if TYPE_CHECKING:
    from postgresqlpatches.lint import Finding
    from postgresqlpatches.statements import ParsedSql, Statement


class Action(str, enum.Enum):
    BOOTSTRAP = "bootstrap"
    APPLY = "apply"
    APPLIED = "applied"
    SKIP = "skip"


# flags shown in the plan; stable words for JSON
NON_TRANSACTIONAL = "non-transactional"
OUT_OF_ORDER = "out-of-order"
CHANGED = "changed"
PSQL = "psql"
RESUME = "resume"
UNSETTLED = "unsettled"
NO_CHECKSUM = "no-checksum"
REDO = "redo"
EMPTY = "empty"
FLAGS = (NON_TRANSACTIONAL, OUT_OF_ORDER, CHANGED, PSQL, RESUME, UNSETTLED, NO_CHECKSUM, REDO,
         EMPTY)

PROBLEM_KINDS = (
    "no-match", "bad-name", "unreadable", "duplicate",  # discovery
    "changed", "out-of-order", "meta-command", "syntax", "transaction-control", "copy-stdin",
    "no-baseline",
    "state-mismatch", "unsettled", "lint",  # planner
)
"""Every Problem.kind, stable words for JSON (docs/json.md documents each)."""

LINT_MODES = ("error", "warn", "off")
"""error: each finding is a problem (nothing runs); warn: shown, runs; off: not linted."""


@dataclass(frozen=True)
class Step:
    """One patch's part in the plan; pending steps carry their parsed statements."""

    patch: Patch
    action: Action
    reason: str | None = None
    flags: tuple[str, ...] = ()
    statements: tuple[Statement, ...] = ()
    record: Record | None = None
    resume_from: int = 0
    findings: tuple[Finding, ...] = ()
    """Lint findings of a pending, non-bootstrap step (a database being created has no users)."""

    @property
    def pending(self) -> bool:
        return self.action in (Action.BOOTSTRAP, Action.APPLY)

    @property
    def via_psql(self) -> bool:
        return PSQL in self.flags

    @property
    def non_transactional(self) -> bool:
        return NON_TRANSACTIONAL in self.flags


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    problems: tuple[Problem, ...] = ()
    lint: str = "warn"
    """The lint mode it was made with: with "error" every finding is also a problem."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def pending(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.pending)

    def count(self, action: Action) -> int:
        return sum(1 for s in self.steps if s.action is action)

    @property
    def findings(self) -> tuple[tuple[Step, Finding], ...]:
        """Every lint finding with its step, in run order."""
        return tuple((s, f) for s in self.steps for f in s.findings)


@dataclass(frozen=True)
class ServerFacts:
    """What the server said: which databases exist, the records, and unsettled xids' fate."""

    existing: frozenset[str]
    records: tuple[Record, ...] = ()
    xact_status: Mapping[int, str | None] = field(default_factory=dict)
    state_exists: bool = False
    half_made: frozenset[str] = frozenset()


def make_plan(patches: Sequence[Patch], facts: ServerFacts, *, state_db: str,
              problems: Iterable[Problem] = (), allow_out_of_order: bool = False,
              parse: bool = True, lint: str = "warn") -> Plan:
    """One planner for plan, apply and status: ``apply`` executes exactly this value.

    ``lint`` is one of LINT_MODES; pending APPLY steps are linted where they are parsed.
    """
    if lint not in LINT_MODES:
        raise ValueError(f"lint must be one of {LINT_MODES}, not {lint!r}")
    problems = list(problems)
    records = _effective_records(facts, problems)
    steps: list[Step] = []
    by_db: dict[str, list[Patch]] = {}
    for patch in patches:
        by_db.setdefault(patch.name.database, []).append(patch)
    for record in records.values():
        if record.database not in facts.existing and record.database not in by_db:
            continue  # a dropped database nobody asks about
        interrupted_bootstrap = record.major == "00000000" and not record.settled
        if record.database not in facts.existing and not interrupted_bootstrap:
            problems.append(Problem(
                "state-mismatch", None,
                f"database {record.database} does not exist, but the state database records "
                f"patches applied to it (e.g. {record.version})",
                hint=f"drop its records with `pgpatch forget {record.database}` to build it anew,"
                     " or restore the database"))
            break
    for database, group in by_db.items():
        exists = database in facts.existing
        redo = database in facts.half_made or exists and any(
            r.database == database and r.major == "00000000" and not r.settled
            and r.xid is None for r in records.values())
        if redo:
            # a bootstrap that pgpatch began and never finished: nothing else ran on that
            # database (later patches come after the bootstrap is settled), so make it anew
            exists = False
        if not exists and not any(p.name.is_baseline for p in group):
            first = group[0]
            problems.append(Problem(
                "no-baseline", first.path,
                f"database {database} does not exist and there is no "
                f"{database}.00000000.0000.<user>.<description>.sql baseline to create it",
                hint="create the database, or add its baseline (see `pgpatch baseline`)"))
        newest = max((r.version for r in records.values()
                      if r.database == database and r.major != "00000000"), default=None)
        for patch in group:
            step = _step(patch, exists, records.get(patch.name.key), newest,
                         allow_out_of_order, problems)
            if redo and step.action is Action.BOOTSTRAP:
                step = Step(patch, step.action, "the last bootstrap was interrupted: the database "
                            "is dropped and made again", (*step.flags, REDO), record=step.record)
            steps.append(step)
    if parse:
        steps = [_parse_step(s, problems, lint) if s.pending and not s.via_psql else s
                 for s in steps]
    return Plan(tuple(steps), tuple(problems), lint=lint)


def _effective_records(facts: ServerFacts, problems: list[Problem]) -> dict[tuple, Record]:
    """Unsettled records count as what their target transaction became."""
    out: dict[tuple, Record] = {}
    for r in facts.records:
        if r.settled or r.xid is None:
            out[r.key] = r
            continue
        status = facts.xact_status.get(r.xid)
        if status == "committed":
            out[r.key] = r
        elif status == "aborted":
            continue
        else:
            problems.append(Problem(
                "unsettled", r.path,
                f"the outcome of {r.database} {r.version} is unknown: its transaction "
                f"{r.xid} is {status or 'too old to look up'}",
                hint="wait for the other session to end and run again" if status
                else "check the database by hand, then fix the record in the state database"))
            out[r.key] = r
    return out


def _step(patch: Patch, exists: bool, record: Record | None, newest: str | None,
          allow_out_of_order: bool, problems: list[Problem]) -> Step:
    name = patch.name
    psql = (PSQL,) if name.is_baseline else ()
    if record is not None and not record.settled and record.xid is None:
        if name.is_bootstrap:
            return Step(patch, Action.BOOTSTRAP, flags=psql, record=record)
        done = record.statements_done or 0
        return Step(patch, Action.APPLY, f"resumes at statement {done + 1}", (RESUME,),
                    record=record, resume_from=done)
    if record is not None:
        flags: list[str] = []
        if not record.settled:
            flags.append(UNSETTLED)
        if record.checksum is None:
            flags.append(NO_CHECKSUM)
        elif record.checksum != patch.checksum:
            flags.append(CHANGED)
            problems.append(Problem(
                "changed", patch.path,
                f"the file changed after it was applied on {_when(record)}",
                hint="never edit an applied patch: restore it and put the change in a new patch"))
        return Step(patch, Action.APPLIED, flags=tuple(flags), record=record)
    if name.is_bootstrap:
        if exists:
            return Step(patch, Action.SKIP, "database exists")
        return Step(patch, Action.BOOTSTRAP, flags=psql)
    if not exists:
        return Step(patch, Action.APPLY)
    if newest is not None and name.version < newest:
        if not allow_out_of_order:
            problems.append(Problem(
                "out-of-order", patch.path,
                f"version {name.version} is older than {newest}, already applied to "
                f"{name.database}",
                hint="rename it to a newer version, or run with --allow-out-of-order"))
        return Step(patch, Action.APPLY, flags=(OUT_OF_ORDER,))
    return Step(patch, Action.APPLY)


def _when(record: Record) -> str:
    return f"{record.installed:%Y-%m-%d %H:%M}" if record.installed else "an earlier run"


def _parse_step(step: Step, problems: list[Problem], lint: str = "warn") -> Step:
    """Parse what psycopg will run: meta-commands and syntax errors stop the plan."""
    from postgresqlpatches.errors import PgpatchError
    from postgresqlpatches.statements import EXPLICIT_TRANSACTION_CONTROL, parse_sql

    patch = step.patch
    try:
        parsed = parse_sql(patch.text)
    except PgpatchError as e:
        problems.append(Problem("syntax", patch.path, e.message, e.line,
                                hint="pgpatch parses every patch before it runs any"))
        return step
    for meta in parsed.meta_commands:
        problems.append(Problem(
            "meta-command", patch.path,
            f"psql meta-command {meta.command} outside a 0000 baseline", meta.line,
            hint="only a database's 00000000.0000 baseline runs through psql; "
                 "write plain SQL here"))
    if parsed.meta_commands:
        return step
    statements = _strip_wrapping_transaction(parsed.statements, patch, problems)
    for s in statements:
        if s.kind == "CopyStmt" and s.tree is not None and not s.tree.get("filename") \
                and not s.tree.get("is_program"):
            problems.append(Problem(
                "copy-stdin", patch.path,
                "COPY ... FROM STDIN / TO STDOUT needs psql's data stream", s.line,
                hint="load the rows with INSERT, or in the database's 0000 baseline (psql)"))
    flags = list(step.flags)
    if any(s.non_transactional not in (None, EXPLICIT_TRANSACTION_CONTROL) for s in statements):
        flags.append(NON_TRANSACTIONAL)
    if not statements:  # only comments: recorded as applied, so a forgotten body is warned
        flags.append(EMPTY)
    findings = _lint(step, parsed, lint, problems)
    return Step(patch, step.action, step.reason, tuple(flags), tuple(statements), step.record,
                step.resume_from, findings)


def _lint(step: Step, parsed: ParsedSql, mode: str, problems: list[Problem]) -> tuple[Finding, ...]:
    """Lint an APPLY step of the user's own files.

    A bootstrap script builds a database nobody uses yet; pgpatch's own patches of the state
    database are not the user's to change.
    """
    if mode == "off" or step.action is not Action.APPLY or step.patch.builtin:
        return ()
    from postgresqlpatches.lint import lint

    findings = lint(parsed, step.patch.text)
    if mode == "error":
        problems.extend(lint_problem(step.patch.path, f) for f in findings)
    return findings


def lint_problem(path: str, finding: Finding) -> Problem:
    """A finding as a problem of kind "lint" (with --lint=error)."""
    rule = finding.rule
    return Problem("lint", path, f"{rule.id}: {rule.title} (takes {rule.lock})", finding.line,
                   hint=f"{rule.safer} Or silence it: -- pgpatch: allow {rule.id}")


def _strip_wrapping_transaction(statements: Sequence[Statement], patch: Patch,
                                problems: list[Problem]) -> list[Statement]:
    """A file wrapped in BEGIN ... COMMIT runs as is; other transaction control is refused."""
    stmts = list(statements)
    if (len(stmts) >= 2 and stmts[0].kind == "TransactionStmt"
            and stmts[-1].kind == "TransactionStmt"
            and stmts[0].text.split()[0].upper() in ("BEGIN", "START")
            and stmts[-1].text.split()[0].upper() in ("COMMIT", "END")):
        stmts = stmts[1:-1]
    for s in stmts:
        if s.kind == "TransactionStmt":
            problems.append(Problem(
                "transaction-control", patch.path,
                f"transaction control ({s.text.split()[0].upper()}) inside a patch", s.line,
                hint="pgpatch runs each patch in its own transaction; remove it"))
    return stmts
