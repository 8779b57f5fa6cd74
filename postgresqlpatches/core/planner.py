"""The plan: what each patch will do, decided once from files, server facts and records (pure)."""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from postgresqlpatches.core.checksums import CHECKSUM_VERSION
from postgresqlpatches.core.discovery import Patch
from postgresqlpatches.core.naming import PatchName
from postgresqlpatches.core.records import Problem, Record

if TYPE_CHECKING:
    from postgresqlpatches.core.lint import Finding
    from postgresqlpatches.core.locks import LockConflict, Session
    from postgresqlpatches.core.statements import ParsedSql, Statement


class Action(str, enum.Enum):
    BOOTSTRAP = "bootstrap"
    APPLY = "apply"
    APPLIED = "applied"
    SKIP = "skip"
    REAPPLY = "apply (changed)"
    """A repeatable patch whose checksum differs from its last run's: it runs again."""


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
    "state-mismatch", "unsettled", "lint", "unrecorded-database", "interrupted-bootstrap",
    "password",  # runner, with --strict-passwords
    "no-role",  # runner: core/logins.py
    "unknown-group", "group-bootstrap",  # expand_groups
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
    transaction: tuple[str, ...] = ()
    """The modes its transaction begins with (statements.TRANSACTION_MODES), as the file
    wrote them: its BEGIN ... COMMIT wrapper's, or a leading SET TRANSACTION's."""
    lock_conflicts: tuple[LockConflict, ...] = ()
    """plan only: live sessions holding or waiting for locks that conflict with the ones
    this pending patch will take (information, never a problem; runner.plan fills it)."""
    oldest_transaction: Session | None = None
    """plan only: the oldest open transaction of its database, when it is read."""

    @property
    def pending(self) -> bool:
        return self.action in (Action.BOOTSTRAP, Action.APPLY, Action.REAPPLY)

    @property
    def via_psql(self) -> bool:
        return PSQL in self.flags

    @property
    def non_transactional(self) -> bool:
        return NON_TRANSACTIONAL in self.flags

    @property
    def checksum(self) -> str:
        """The file's checksum (version 2); an applied patch whose record is current has it
        in the record already (same text, same tokens), which spares scanning the file."""
        if self.record is not None and self.record.checksum and record_is_current(self) \
                and self.action is Action.APPLIED:
            return self.record.checksum
        return self.patch.checksum


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
        """Every lint finding with its step, in run order; a group's file, planned for each
        of its databases, is one file with the same findings: counted and shown once."""
        seen: set[tuple[str, int, str]] = set()
        out = []
        for s in self.steps:
            for f in s.findings:
                key = (s.patch.path, f.line, f.rule.id)
                if key not in seen:
                    seen.add(key)
                    out.append((s, f))
        return tuple(out)


@dataclass(frozen=True)
class Leftover:
    """What the server says of a database that an interrupted or failed bootstrap may have
    left: enough to tell whether that bootstrap made it and whether anyone else used it."""

    oid: int
    connected: int
    """Sessions connected to it now (autovacuum aside)."""
    sessions: int | None
    """Sessions ever opened to it (pg_stat_database.sessions, PostgreSQL 14+; None: unknown)."""


@dataclass(frozen=True)
class ServerFacts:
    """What the server said: which databases exist, the records, and unsettled xids' fate."""

    existing: frozenset[str]
    records: tuple[Record, ...] = ()
    xact_status: Mapping[int, str | None] = field(default_factory=dict)
    state_exists: bool = False
    half_made: frozenset[str] = frozenset()
    roles: Container[str] | None = None
    """The server's roles, read when a baseline may run (None: not read, or offline); an
    apply's are read only when asked of a role it does not know (pg/server.py Roles)."""
    unrecorded: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Databases of unrecorded_candidates() that hold objects of their own (their
    descriptions); not asked with --adopt."""
    leftovers: Mapping[str, Leftover] = field(default_factory=dict)
    """The databases that exist and whose bootstrap records say it was interrupted."""


def unrecorded_candidates(patches: Iterable[Patch], existing: Iterable[str],
                          records: Iterable[Record], state_db: str) -> set[str]:
    """Databases that exist, have no record at all, and would get patches other than their
    bootstrap: only these are looked into (none when every database has records), because
    a state database that is lost or mistyped would otherwise run everything on them again."""
    present = set(existing)
    recorded = {r.database for r in records}
    # a group with records on some of its databases shows the state database is the right
    # one: its other databases are new members, which catch up (docs/safety.md)
    groups_on_record = {p.group for p in patches
                        if p.group is not None and p.name.database in recorded}
    return {p.name.database for p in patches
            if not p.name.is_bootstrap and p.name.database != state_db
            and p.name.database in present and p.name.database not in recorded
            and (p.group is None or p.group not in groups_on_record)}


# -- database groups -----------------------------------------------------------------------

def group_members(patterns: Sequence[str], databases: Iterable[str],
                  state_db: str) -> list[str]:
    """The databases a group's shell-style patterns match, in name order; never the state
    database (template databases are not among ``databases``: the runner leaves them out)."""
    import fnmatch

    return sorted(d for d in set(databases) if d != state_db
                  and any(fnmatch.fnmatchcase(d, p) for p in patterns))


def expand_groups(patches: Sequence[Patch], groups: Mapping[str, Sequence[str]],
                  databases: Iterable[str] | None,
                  state_db: str) -> tuple[list[Patch], list[Problem]]:
    """Each ``@NAME`` patch becomes one patch per database of group NAME (those of
    ``databases`` it matches when the run starts), in run order with the other patches; a
    member's own files and its group's then sort by version, as one database's do.

    ``databases`` None (offline, no server to ask): group patches stay as they are, one
    each, so that their files are still checked. A group not in the config, or a bootstrap
    in a group (its databases exist by definition), is a problem; a version a member gets
    twice (its own file and its group's, or two groups') is a duplicate."""
    from postgresqlpatches.core.discovery import find_duplicates, sort_patches

    problems: list[Problem] = []
    out: list[Patch] = []
    members: dict[str, list[str]] = {}
    seen: set[tuple[str, str, str]] = set()
    grouped = False
    for patch in patches:
        group = patch.name.group
        if group is None:
            out.append(patch)
            continue
        grouped = True
        if patch.name.key in seen:
            continue  # two files of one version: discovery named both already
        seen.add(patch.name.key)
        if group not in groups:
            known = (f"in the config file (defined: {', '.join(groups)})" if groups
                     else "(no config file defines [groups])")
            problems.append(Problem(
                "unknown-group", patch.path, f"the group {group} is not defined {known}",
                hint=f"define it in pgpatch.toml: [groups.{group}] databases = "
                     "[\"pattern_*\"] (docs/config.md)"))
            continue
        if patch.name.is_bootstrap:
            problems.append(Problem(
                "group-bootstrap", patch.path,
                f"a group has no bootstrap: the databases of group {group} exist already, so "
                "a 00000000 script would never run",
                hint="give the file a dated version (YYYYMMDD), or create each database with "
                     "a bootstrap of its own"))
            continue
        if databases is None:
            out.append(patch)
            continue
        if group not in members:
            members[group] = group_members(groups[group], databases, state_db)
        n = patch.name
        out.extend(Patch(PatchName(member, n.major, n.minor, n.user, n.description),
                         patch.path, patch.text, patch.text_checksum, origin=patch)
                   for member in members[group])
    if not grouped:
        return list(patches), problems
    if databases is not None:  # the duplicates of plain files are named by discovery already
        problems.extend(find_duplicates(out))  # (make_plan keeps one of each problem)
    return sort_patches(out, state_db), problems


def unrecorded_problem(database: str, objects: Sequence[str], state_db: str) -> Problem:
    shown = ", ".join(objects[:3]) + (f" and {len(objects) - 3} more" if len(objects) > 3
                                      else "")
    return Problem(
        "unrecorded-database", None,
        f"database {database} holds objects of its own ({shown}) but the state database "
        f"{state_db} has no record of it: its patches would all run on it again",
        hint=f"if the state database was lost, restore it (or correct --state-db); else "
             f"`pgpatch baseline {database}` to move an existing database over, or --adopt "
             "to apply the pending patches to it anyway (recorded from then on)")


def foreign_use(leftover: Leftover,
                marks: Sequence[tuple[int | None, int | None]]) -> str | None:
    """Why ``leftover`` is not provably the database a bootstrap made and nobody else used
    since, or None. ``marks``: (oid_horizon, session_budget) of each step that began, in
    order."""
    return made_elsewhere(leftover, marks) or used_elsewhere(leftover, marks)


def made_elsewhere(leftover: Leftover,
                   marks: Sequence[tuple[int | None, int | None]]) -> str | None:
    """Why the bootstrap did not provably make ``leftover``, or None.

    It made it when its oid is above the largest database oid at the time the first step
    began (it did not exist then; oids only grow, and a database renamed into the name keeps
    its older oid), and not above the horizon of any later step (it is the database those
    steps ran on)."""
    if not marks or any(horizon is None for horizon, _ in marks):
        return ("its bootstrap left no mark to prove that it made this database (an older "
                "pgpatch began it)")
    first = marks[0][0]
    assert first is not None
    if leftover.oid <= first:
        return "the database existed before that bootstrap began: another one made it"
    if any(horizon is not None and leftover.oid > horizon for horizon, _ in marks[1:]):
        return "the database was made again after that bootstrap began: another one made it"
    return None


def used_elsewhere(leftover: Leftover,
                   marks: Sequence[tuple[int | None, int | None]]) -> str | None:
    """Why someone else may have used ``leftover`` since its bootstrap began, or None: someone
    is connected now, or more sessions were ever opened to it than the steps may open."""
    if leftover.connected:
        return (f"{leftover.connected} session{'s' * (leftover.connected > 1)} "
                f"{'are' if leftover.connected > 1 else 'is'} connected to it")
    if leftover.sessions is None:
        return None  # PostgreSQL 13 counts no sessions
    budgets = [budget for _, budget in marks]
    if any(budget is None for budget in budgets):
        return ("its baseline may open sessions pgpatch cannot count (\\i or \\!), so "
                "pgpatch cannot tell its own sessions from someone else's")
    allowed = sum(b for b in budgets if b is not None)
    if leftover.sessions > allowed:
        return (f"{leftover.sessions} session{'s' * (leftover.sessions > 1)} "
                f"{'were' if leftover.sessions > 1 else 'was'} opened to it, its bootstrap "
                f"opens at most {allowed}: someone else used it")
    return None


def make_plan(patches: Sequence[Patch], facts: ServerFacts, *, state_db: str,
              problems: Iterable[Problem] = (), allow_out_of_order: bool = False,
              lint: str = "warn") -> Plan:
    """One planner for plan, apply and status: ``apply`` executes exactly this value.

    ``lint`` is one of LINT_MODES; pending APPLY steps are linted where they are parsed.
    """
    if lint not in LINT_MODES:
        raise ValueError(f"lint must be one of {LINT_MODES}, not {lint!r}")
    problems = list(problems)
    records = _effective_records(facts, problems, state_db)
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
    # each database's records, gathered once: asking all of them per database made a plan
    # of 300 databases x 20 records quadratic (2 s of CPU for 6,000 records)
    of_database: dict[str, list[Record]] = {}
    for r in records.values():
        of_database.setdefault(r.database, []).append(r)
    for database, group in by_db.items():
        exists = database in facts.existing
        own = of_database.get(database, ())
        if database in facts.unrecorded:
            problems.append(unrecorded_problem(database, facts.unrecorded[database], state_db))
        marks = sorted((r for r in own
                        if r.major == "00000000" and not r.settled and r.xid is None),
                       key=lambda r: r.minor)
        redo = database in facts.half_made or exists and bool(marks)
        if redo:
            # a bootstrap that pgpatch began and never finished: made anew, if provably the
            # database it made and nobody else used it since (docs/safety.md)
            exists = False
            leftover = facts.leftovers.get(database)
            refusal = None if leftover is None or database in facts.half_made else foreign_use(
                leftover, [(r.oid_horizon, r.session_budget) for r in marks])
            if refusal is not None:
                baseline = next((p for p in group if p.name.is_bootstrap), group[0])
                problems.append(interrupted_problem(database, refusal, baseline.path))
        if not exists and not any(p.name.is_baseline for p in group):
            first = group[0]
            problems.append(Problem(
                "no-baseline", first.path,
                f"database {database} does not exist and there is no "
                f"{database}.00000000.0000.<user>.<description>.sql baseline to create it",
                hint="create the database, or add its baseline (see `pgpatch baseline`)"))
        newest = max((r.version for r in own if r.major not in ("00000000", "99999999")),
                     default=None)  # a repeatable patch is outside the order of versions
        for patch in group:
            if patch.name.is_repeatable and database == state_db:
                problems.append(Problem(
                    "bad-name", patch.path, "the state database takes no repeatable patch "
                    "(major 99999999)", hint="give it a version (YYYYMMDD)"))
            step = _step(patch, exists, records.get(patch.name.key), newest,
                         allow_out_of_order, problems)
            if redo and step.action is Action.BOOTSTRAP:
                step = Step(patch, step.action, "the last bootstrap was interrupted: the database "
                            "is dropped and made again", (*step.flags, REDO), record=step.record)
            steps.append(step)
    parsed: dict[str, ParsedSql] = {}  # by path: a group's file is parsed once
    steps = [_parse_step(s, problems, lint, parsed) if s.pending and not s.via_psql else s
             for s in steps]
    return Plan(tuple(steps), tuple(dict.fromkeys(problems)), lint=lint)


def interrupted_problem(database: str, reason: str, path: str | None) -> Problem:
    """The last bootstrap of ``database`` was interrupted and its leftover may not be dropped."""
    busy = reason.endswith(("is connected to it", "are connected to it"))
    hint = ("wait for them to end (a killed run's last statement may still be running), then "
            "run again" if busy else
            f"if it is the half-made one and nothing in it is needed, drop it by hand (DROP "
            f"DATABASE {database}) and run again; to keep it as it is, settle its bootstrap's "
            f"records by hand (UPDATE installed_patches SET settled = true WHERE NOT settled "
            f"AND major = '00000000' AND database_id = (SELECT id FROM databases WHERE name = "
            f"'{database}'))")
    return Problem("interrupted-bootstrap", path,
                   f"the last bootstrap of {database} was interrupted, and the database "
                   f"{database} is not provably its own leftover: {reason}", hint=hint)


def _effective_records(facts: ServerFacts, problems: list[Problem],
                       state_db: str) -> dict[tuple, Record]:
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
            problems.append(unsettled_problem(r, status, state_db))
            out[r.key] = r
    return out


def unsettled_problem(r: Record, status: str | None, state_db: str) -> Problem:
    """A record whose target transaction did not end yet, or whose end the server cannot tell:
    named (database, version, path, record id), with what to do."""
    from postgresqlpatches.core.records import XACT_FUTURE

    where = f"{r.database} {r.version}"  # and r.path, the problem's path
    if status == "in progress":
        return Problem(
            "unsettled", r.path,
            f"the outcome of {where} is unknown: its transaction {r.xid} is in progress",
            hint="wait for the other session to end and run again")
    why = ("in the future of this server: the state database was restored from another "
           "cluster or an older backup, or the record was edited" if status == XACT_FUTURE
           else "too old to look up")
    return Problem(
        "unsettled", r.path, f"the outcome of {where} is unknown: its transaction {r.xid} is "
        f"{why}",
        hint=f"check by hand whether the patch took effect in database {r.database}; then, in "
             f"the state database {state_db}, settle its record if it did (UPDATE "
             f"installed_patches SET settled = true WHERE id = {r.id}) or delete it so that "
             f"the patch runs again if it did not (DELETE FROM installed_patches WHERE id = "
             f"{r.id})")


def record_problems(facts: ServerFacts, state_db: str) -> list[Problem]:
    """What `status` without globs reports: records whose outcome the server cannot tell
    (a transaction in progress is a concurrent run, not a problem of the records)."""
    return [unsettled_problem(r, facts.xact_status.get(r.xid), state_db)
            for r in facts.records if not r.settled and r.xid is not None
            and facts.xact_status.get(r.xid) not in ("committed", "aborted", "in progress")]


def _step(patch: Patch, exists: bool, record: Record | None, newest: str | None,
          allow_out_of_order: bool, problems: list[Problem]) -> Step:
    name = patch.name
    if name.is_repeatable:
        return _repeatable_step(patch, record)
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
        elif not _unchanged(record, patch):
            flags.append(CHANGED)
            problems.append(Problem(
                "changed", patch.path,
                f"the file changed after it was applied on {_when(record)}",
                hint=_CHANGED_HINTS.get(record.checksum_version or 1, _CHANGED_HINT)))
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


def _repeatable_step(patch: Patch, last: Record | None) -> Step:
    """A repeatable patch runs when it is new or its checksum differs from its last run's
    (never a ``changed`` problem, never out of order); ``last``: its last run's record."""
    if last is None:
        return Step(patch, Action.APPLY)
    flags = (UNSETTLED,) if not last.settled else ()
    if last.checksum is not None and _unchanged(last, patch):
        return Step(patch, Action.APPLIED, flags=flags, record=last)
    return Step(patch, Action.REAPPLY, f"changed since its run {last.run or 1} on {_when(last)}",
                flags, record=last)


def next_run(step: Step) -> int | None:
    """The run number of the record a repeatable patch's run writes: one above its last
    run's; None for a versioned patch (one record each)."""
    if not step.patch.name.is_repeatable:
        return None
    return (step.record.run or 1) + 1 if step.record is not None else 1


_CHANGED_HINT = "never edit an applied patch: restore it and put the change in a new patch"
_CHANGED_HINTS = {
    1: "never edit an applied patch: restore it and put the change in a new patch (its record "
       "predates token checksums, so even a comment counts until `apply` upgrades it)",
    CHECKSUM_VERSION: _CHANGED_HINT,
}


def _unchanged(record: Record, patch: Patch) -> bool:
    """Whether today's file is the one on record, in the checksum version of the record.

    Version 1 records compare the text (a comment edit cannot be told from a real change);
    version 2 ones the tokens, after the cheap text comparison that spares the scan.
    """
    version = record.checksum_version or 1
    if version == 1:
        return record.checksum == patch.text_checksum
    if record.text_checksum is not None and record.text_checksum == patch.text_checksum:
        return True
    return version == CHECKSUM_VERSION and record.checksum == patch.checksum


def record_is_current(step: Step) -> bool:
    """The record of an applied, unchanged patch already holds today's checksums; `apply`
    rewrites the others (no checksum, version 1, an edited comment) without running it.
    (True for steps without such a record: there is nothing to rewrite.)"""
    record = step.record
    return (record is None or step.action is not Action.APPLIED or CHANGED in step.flags
            or record.checksum is not None and record.checksum_version == CHECKSUM_VERSION
            and record.text_checksum == step.patch.text_checksum)


def _when(record: Record) -> str:
    return f"{record.installed:%Y-%m-%d %H:%M}" if record.installed else "an earlier run"


def _parse_step(step: Step, problems: list[Problem], lint: str = "warn",
                cache: dict[str, ParsedSql] | None = None) -> Step:
    """Parse what psycopg will run: meta-commands and syntax errors stop the plan.

    ``cache``: the parses of group files, by path (each of a group's databases has the same
    file; the same problems it raises once per database are made one by make_plan). A file
    is parsed once per Patch value (Patch.parsed): plans over one tree share its parses."""
    from postgresqlpatches.core.statements import EXPLICIT_TRANSACTION_CONTROL
    from postgresqlpatches.errors import PgpatchError

    patch = step.patch
    try:
        if cache is not None and patch.origin is not None:
            parsed = cache.get(patch.path) or cache.setdefault(patch.path, patch.parsed)
        else:
            parsed = patch.parsed
    except PgpatchError as e:
        from postgresqlpatches.core.redact import redact

        problems.append(Problem("syntax", patch.path, redact(e.message), e.line,
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
    statements, modes, modes_line = _strip_wrapping_transaction(parsed.statements, patch,
                                                                problems)
    for s in statements:
        if s.kind == "CopyStmt" and s.tree is not None and not s.tree.get("filename") \
                and not s.tree.get("is_program"):
            problems.append(Problem(
                "copy-stdin", patch.path,
                "COPY ... FROM STDIN / TO STDOUT needs psql's data stream", s.line,
                hint="load the rows with INSERT, or in the database's 0000 baseline (psql)"))
    flags = list(step.flags)
    outside = [s for s in statements
               if s.non_transactional not in (None, EXPLICIT_TRANSACTION_CONTROL)]
    if outside and patch.name.is_repeatable:
        problems.append(Problem(
            "transaction-control", patch.path,
            f"a repeatable patch runs in one transaction, and {outside[0].non_transactional} "
            "cannot", outside[0].line,
            hint="put the statement in a versioned patch of its own"))
    if outside:
        flags.append(NON_TRANSACTIONAL)
        if modes:
            problems.append(Problem(
                "transaction-control", patch.path,
                "transaction options in a file that runs outside a transaction "
                f"({outside[0].non_transactional})", modes_line,
                hint="such a file runs statement by statement: drop the options, or put the "
                     "statement in a file of its own"))
    if RESUME in flags and _done_part_changed(step, statements, problems):
        flags.append(CHANGED)
    if not statements:  # only comments: recorded as applied, so a forgotten body is warned
        flags.append(EMPTY)
    findings = _lint(step, parsed, lint, problems)
    return Step(patch, step.action, step.reason, tuple(flags), tuple(statements), step.record,
                step.resume_from, findings, transaction=modes)


def _done_part_changed(step: Step, statements: Sequence[Statement],
                       problems: list[Problem]) -> bool:
    """A resumed patch runs from statement ``resume_from + 1``: the statements before it ran
    and must still be what ran, or an edit there would never run, and a statement moved past
    the resume point would run twice. Records without statement checksums cannot tell."""
    from postgresqlpatches.core.checksums import statement_checksum

    recorded = step.record.statement_checksums if step.record is not None else None
    done = step.resume_from
    if recorded is None or not done:
        return False
    patch = step.patch
    if len(statements) < done:
        problems.append(Problem(
            "changed", patch.path,
            f"statements 1-{done} ran in an earlier run, but the file now has only "
            f"{len(statements)}", hint=_DONE_PART_HINT))
        return True
    for number, (statement, before) in enumerate(zip(statements, recorded[:done], strict=False), 1):
        if statement_checksum(statement.text) != before:
            problems.append(Problem(
                "changed", patch.path,
                f"statement {number} ran in an earlier run (statements 1-{done} did) and has "
                "changed since", statement.line, hint=_DONE_PART_HINT))
            return True
    return False


_DONE_PART_HINT = ("restore the statements that ran as they were; fix only the failed "
                   "statement and those after it")


def _lint(step: Step, parsed: ParsedSql, mode: str, problems: list[Problem]) -> tuple[Finding, ...]:
    """Lint an APPLY step of the user's own files.

    A bootstrap script builds a database nobody uses yet; pgpatch's own patches of the state
    database are not the user's to change.
    """
    if mode == "off" or step.action not in (Action.APPLY, Action.REAPPLY) or step.patch.builtin:
        return ()
    from postgresqlpatches.core.lint import lint

    findings = lint(parsed, step.patch.text)
    if mode == "error":
        problems.extend(lint_problem(step.patch.path, f) for f in findings)
    return findings


def lint_problem(path: str, finding: Finding) -> Problem:
    """A finding as a problem of kind "lint" (with --lint=error)."""
    rule = finding.rule
    return Problem("lint", path, f"{rule.id}: {rule.title} (takes {rule.lock})", finding.line,
                   hint=f"{rule.safer} Or silence it: -- pgpatch: allow {rule.id}")


def _strip_wrapping_transaction(
        statements: Sequence[Statement], patch: Patch,
        problems: list[Problem]) -> tuple[list[Statement], tuple[str, ...], int | None]:
    """A file wrapped in BEGIN ... COMMIT runs as is, and so does a leading SET TRANSACTION:
    their transaction modes become those of the patch's own BEGIN (returned, with the line
    they were written on). Other transaction control, and what pgpatch could only run
    otherwise than written, is refused."""
    from postgresqlpatches.core.statements import EXPLICIT_TRANSACTION_CONTROL, transaction_modes

    stmts = list(statements)
    modes: dict[str, str] = {}  # per setting, the last one written wins (as in PostgreSQL)
    line: int | None = None
    if (len(stmts) >= 2 and stmts[0].kind == "TransactionStmt"
            and stmts[-1].kind == "TransactionStmt"
            and stmts[0].text.split()[0].upper() in ("BEGIN", "START")
            and stmts[-1].text.split()[0].upper() in ("COMMIT", "END")
            and not stmts[-1].tree.get("chain")
            and not any(s.kind == "TransactionStmt" and s.tree.get("kind") in _BLOCK_KINDS
                        for s in stmts[1:-1])):
        written = transaction_modes(stmts[0]) or ()
        modes.update(written)
        line = stmts[0].line if written else None
        stmts = stmts[1:-1]
    while stmts and stmts[0].kind == "VariableSetStmt" \
            and (written := transaction_modes(stmts[0])) is not None:
        modes.update(written)  # right after BEGIN: before pgpatch's first query
        line = line or stmts[0].line
        stmts = stmts[1:]
    stmts, inner = _without_inner_blocks(stmts)
    if inner and any(s.non_transactional not in (None, EXPLICIT_TRANSACTION_CONTROL)
                     for s in stmts):
        problems.append(Problem(
            "transaction-control", patch.path,
            "transaction control (BEGIN) in a file that runs outside a transaction", inner[0].line,
            hint="such a file runs statement by statement: put the block in a file of its own"))
    for s in stmts:
        refused = _refused_transaction_statement(s)
        if refused:
            message, hint = refused
            problems.append(Problem("transaction-control", patch.path, message, s.line,
                                    hint=hint))
    return stmts, tuple(modes.values()), line


_BLOCK_KINDS = ("TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK")


def _without_inner_blocks(stmts: list[Statement]) -> tuple[list[Statement], list[Statement]]:
    """A plain ``BEGIN; ... COMMIT;`` block inside a patch (as Prisma writes its enum changes)
    is part of the patch's one transaction: its BEGIN and COMMIT go (returned apart). The
    whole file then commits or rolls back as one, which is at least as atomic as the block
    asked for. A block with modes or AND CHAIN, a ROLLBACK, or a BEGIN without its COMMIT
    stays, and is refused."""
    from postgresqlpatches.core.statements import transaction_modes

    kept: list[Statement] = []
    dropped: list[Statement] = []
    index = 0
    while index < len(stmts):
        s = stmts[index]
        if s.kind == "TransactionStmt" and s.tree.get("kind") in (
                "TRANS_STMT_BEGIN", "TRANS_STMT_START") and not transaction_modes(s):
            end = next((j for j in range(index + 1, len(stmts))
                        if stmts[j].kind == "TransactionStmt"), None)
            if end is not None and stmts[end].tree.get("kind") == "TRANS_STMT_COMMIT" \
                    and not stmts[end].tree.get("chain"):
                dropped += [s, stmts[end]]
                kept += stmts[index + 1:end]
                index = end + 1
                continue
        kept.append(s)
        index += 1
    return kept, dropped


_LEADING_SET_TRANSACTION = ("pgpatch begins the patch's transaction with the modes of a "
                            "SET TRANSACTION that comes first: move it to the top")


def _refused_transaction_statement(s: Statement) -> tuple[str, str] | None:
    """Why a statement inside a patch cannot run as written, with a hint; None if it can.

    Isolation level and deferrability can only be set before the transaction's first query,
    and pgpatch's own first query (the transaction id) comes before the file's statements.
    """
    if s.kind == "TransactionStmt":
        return (f"transaction control ({s.text.split()[0].upper()}) inside a patch",
                "pgpatch runs each patch in its own transaction; remove it")
    if s.kind != "VariableSetStmt":
        return None
    name = s.tree.get("name", "")
    if name == "TRANSACTION":
        return "SET TRANSACTION after the first statement of a patch", _LEADING_SET_TRANSACTION
    if name == "TRANSACTION SNAPSHOT":
        return ("SET TRANSACTION SNAPSHOT in a patch",
                "a patch cannot import another session's snapshot; remove it")
    if name in ("transaction_isolation", "transaction_deferrable") \
            and s.tree.get("kind") != "VAR_SET_MULTI":
        return (f"SET {name} inside a patch",
                "write it as SET TRANSACTION ... (ISOLATION LEVEL ..., [NOT] DEFERRABLE); "
                + _LEADING_SET_TRANSACTION)
    return None
