"""Plans and status for people (rich table on a terminal, plain text when piped) and JSON."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

from postgresqlpatches.core.planner import EMPTY, Action, Plan, Step

if TYPE_CHECKING:
    from postgresqlpatches.core.lint import Finding
    from postgresqlpatches.core.locks import LockConflict, Session
    from postgresqlpatches.core.records import Problem, Record
    from postgresqlpatches.errors import PgpatchError
    from postgresqlpatches.fleet import Target, TargetResult
    from postgresqlpatches.rehearse import Rehearsal
    from postgresqlpatches.runner import ApplyResult, Reporter, Status

JSON_VERSION = 1
ACTION_STYLE = {
    Action.BOOTSTRAP: "bold magenta", Action.APPLY: "bold green",
    Action.APPLIED: "dim", Action.SKIP: "yellow", Action.REAPPLY: "bold green",
}


def is_terminal(stream: IO[str]) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def use_rich(stream: IO[str]) -> bool:
    """Rich only for a person at a colour terminal: NO_COLOR (any value) means plain text,
    without a single escape code, just as when piped."""
    return (is_terminal(stream) and os.environ.get("TERM") != "dumb"
            and not os.environ.get("NO_COLOR"))


def _console(stream: IO[str]) -> Any:
    from rich.console import Console

    return Console(file=stream, no_color="NO_COLOR" in os.environ, highlight=False,
                   soft_wrap=False)


# -- plans -------------------------------------------------------------------------------

def step_note(step: Step) -> str:
    parts = list(step.flags)
    if step.reason:
        parts.append(step.reason)
    if step.findings:
        parts.append("lint: " + ", ".join(dict.fromkeys(f.rule.id for f in step.findings)))
    if step.lock_conflicts:
        parts.append(lock_conflicts_note(step))
    return ", ".join(parts)


def lock_conflicts_note(step: Step) -> str:
    """The first live session the patch's locks would wait for, short: JSON has them all."""
    first, more = step.lock_conflicts[0], len(step.lock_conflicts) - 1
    verb = "holds" if first.granted else "waits for"
    return (f"lock conflict: pid {first.session.pid} {verb} {first.held_mode} on "
            f"{first.relation}" + (f" (+{more} more)" if more else ""))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def summary(plan: Plan) -> str:
    """One line a pipeline log shows: every count, even when zero, in a fixed order."""
    counts = [f"{plan.count(Action.BOOTSTRAP)} to bootstrap",
              f"{plan.count(Action.APPLY)} to apply",
              *([f"{plan.count(Action.REAPPLY)} to apply (changed)"]
                if plan.count(Action.REAPPLY) else []),  # repeatable patches, when any
              f"{plan.count(Action.APPLIED)} applied", f"{plan.count(Action.SKIP)} skipped",
              _plural(len(plan.problems), "problem")]
    if plan.lint != "off":
        counts.append(_plural(len(plan.findings), "lint finding"))
    return ", ".join(counts)


def finding_severity(plan: Plan) -> str:
    return "error" if plan.lint == "error" else "warning"


def finding_lines(path: str, finding: Finding, severity: str) -> list[str]:
    """A finding as text: where, which rule, the lock it takes, the safer way."""
    rule = finding.rule
    return [f"{severity}: {path}:{finding.line}: {rule.title} [{rule.id}]",
            f"  statement: {finding.excerpt}",
            f"  lock: {rule.lock}",
            f"  safer: {rule.safer}",
            f"  silence: -- pgpatch: allow {rule.id}"]


def empty_warnings(plan: Plan) -> list[str]:
    """A pending patch with no statement is most likely a file whose body was forgotten."""
    return [f"warning: {s.patch.path}: the file holds no SQL statement (only comments or "
            "blank lines): apply records it as applied and runs nothing [empty]"
            for s in plan.steps if s.pending and EMPTY in s.flags]


def plan_rows(plan: Plan) -> list[list[str]]:
    return [[s.patch.name.database, s.patch.name.version, s.patch.name.user,
             s.patch.name.description, s.patch.path, s.action.value, step_note(s)]
            for s in plan.steps]


def grouped_rows(plan: Plan) -> tuple[list[Step], list[list[str]]]:
    """The table's rows: a group's file is one row per action and notes (``@NAME`` and
    how many databases), where the first of its databases comes; others one row each.
    JSON keeps a step per database."""
    rows: list[list[str]] = []
    firsts: list[Step] = []
    where: dict[tuple[str, str, str], int] = {}
    counts: list[int] = []
    for step, row in zip(plan.steps, plan_rows(plan), strict=True):
        group = step.patch.group
        if group is None or step.patch.origin is None:
            rows.append(row)
            firsts.append(step)
            counts.append(0)
            continue
        key = (step.patch.path, row[ACTION], row[NOTES])
        if key in where:
            counts[where[key]] += 1
            continue
        where[key] = len(rows)
        rows.append([f"@{group}", *row[1:]])
        firsts.append(step)
        counts.append(1)
    for i, n in enumerate(counts):
        if n:
            note = _plural(n, "database")
            rows[i][NOTES] = f"{note}, {rows[i][NOTES]}" if rows[i][NOTES] else note
    return firsts, rows


HEADERS = ["database", "version", "user", "description", "path", "action", "notes"]
PATH, ACTION, NOTES = 4, 5, 6
NOTES_ROOM = 20
"""Columns a terminal table keeps for the notes before it shortens paths; longer notes wrap."""


def shorten_path(path: str, width: int) -> str:
    """A path in ``width`` characters: the file name whole while it fits, with as many of the
    last folders (they say most) and then the first ones as fit around a ``…``, else the file
    name alone; on a very narrow terminal the file name's middle goes."""
    if len(path) <= width:
        return path
    folder, _, name = path.rpartition("/")
    if folder and len(name) + 2 <= width:
        parts = folder.split("/")
        head: list[str] = []
        tail: list[str] = []

        def text() -> str:
            return "/".join([*head, "…", *tail, name])

        for part in reversed(parts):
            if len(text()) + len(part) + 1 > width:
                break
            tail.insert(0, part)
        for part in parts[:len(parts) - len(tail)]:
            if len(text()) + len(part) + 1 > width:
                break
            head.append(part)
        return text()
    if len(name) <= width:
        return name
    room = max(width, 12) - 1  # even a tiny terminal shows the version and the description
    return f"{name[:room // 2]}…{name[len(name) - (room - room // 2):]}"


def fit_plan_columns(rows: list[list[str]], width: int) -> tuple[list[int], list[list[str]]]:
    """Which columns a terminal of ``width`` shows, and the rows with paths shortened to fit.

    All columns while the paths fit, shortened if need be to ``…/`` and the file name; on a
    narrower terminal only path, action and notes (the file name says database, version,
    user and description). Piped output and JSON always carry the whole path.
    """
    def widths(columns: list[int]) -> dict[int, int]:
        return {i: max([len(HEADERS[i])] + [len(r[i]) for r in rows]) for i in columns}

    def path_room(columns: list[int]) -> int:
        fixed = widths([i for i in columns if i != PATH])
        fixed[NOTES] = min(fixed[NOTES], NOTES_ROOM)
        return width - sum(fixed.values()) - 2 * (len(columns) - 1)

    every = list(range(len(HEADERS)))
    shortest = max((len(r[PATH].rpartition("/")[2]) + 2 for r in rows), default=0)
    columns = every if path_room(every) >= shortest else [PATH, ACTION, NOTES]
    room = path_room(columns)
    return columns, [[shorten_path(c, room) if i == PATH else c for i, c in enumerate(r)]
                     for r in rows]


def print_plan(plan: Plan, stream: IO[str] | None = None) -> None:
    """The plan table, then lint findings, problems and the summary line.

    Rich (colours by action) on a terminal; plain aligned text when piped or TERM=dumb;
    no colour at all with NO_COLOR set. Lint problems are shown once, as findings.
    """
    stream = stream or sys.stdout
    shown_steps, steps_rows = grouped_rows(plan)
    severity = finding_severity(plan)
    problems = [p for p in plan.problems if p.kind != "lint"]
    if use_rich(stream):
        from rich.markup import escape
        from rich.table import Table

        console = _console(stream)
        columns, rows = fit_plan_columns(steps_rows, console.width)
        table = Table(box=None, header_style="bold", pad_edge=False)
        for i in columns:  # only the notes wrap: each row's path and action stay on its line
            width = max(len(HEADERS[i]), *(len(r[i]) for r in rows)) if rows else None
            table.add_column(HEADERS[i], no_wrap=i != NOTES, overflow="fold",
                             min_width=width if i != NOTES else None)
        for step, row in zip(shown_steps, rows, strict=True):
            row = [escape(c) for c in row]
            style = ACTION_STYLE[step.action]
            row[ACTION] = f"[{style}]{row[ACTION]}[/]"
            if any(f in ("changed", "out-of-order") for f in step.flags):
                row[NOTES] = f"[bold red]{row[NOTES]}[/]"
            elif step.findings:
                row[NOTES] = f"[yellow]{row[NOTES]}[/]"
            table.add_row(*(row[i] for i in columns))
        console.print(table)
        colour = "bold red" if severity == "error" else "bold yellow"
        for step, finding in plan.findings:
            first, *rest = finding_lines(step.patch.path, finding, severity)
            word, text = first.split(": ", 1)
            console.print(f"[{colour}]{word}[/]: {escape(text)}")
            for line in rest:
                console.print(f"[dim]{escape(line)}[/]")
        for line in empty_warnings(plan):
            word, text = line.split(": ", 1)
            console.print(f"[bold yellow]{word}[/]: {escape(text)}")
        for p in problems:
            console.print(f"[bold red]problem[/]: {escape(_problem_text(p))}")
            if p.hint:
                console.print(f"  [dim]hint: {escape(p.hint)}[/]")
        console.print(summary(plan), style="bold" if plan.ok else "bold red")
        return
    write_columns(stream, HEADERS, steps_rows)
    for step, finding in plan.findings:
        stream.write("".join(line + "\n" for line in finding_lines(step.patch.path, finding,
                                                                    severity)))
    stream.write("".join(line + "\n" for line in empty_warnings(plan)))
    for p in problems:
        stream.write(f"problem: {_problem_text(p)}\n")
        if p.hint:
            stream.write(f"  hint: {p.hint}\n")
    stream.write(summary(plan) + "\n")


def _problem_text(p: Any) -> str:
    where = ""
    if p.path:
        where = f"{p.path}:{p.line}: " if p.line else f"{p.path}: "
    return f"{where}{p.message} [{p.kind}]"


def write_columns(stream: IO[str], headers: list[str], rows: Iterable[list[str]]) -> None:
    """Plain aligned text: readable piped into a file, a pager or grep."""
    rows = list(rows)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        cells = (c.ljust(w) for c, w in zip(row, widths, strict=True))
        stream.write("  ".join(cells).rstrip() + "\n")


def plan_json(plan: Plan, *, offline: bool = False) -> dict[str, Any]:
    """The published contract: docs/plan.schema.json describes it, docs/json.md explains it."""
    return {
        "version": JSON_VERSION,
        "ok": plan.ok,
        "offline": offline,
        "lint": plan.lint,
        "summary": {
            "bootstrap": plan.count(Action.BOOTSTRAP), "apply": plan.count(Action.APPLY),
            "applied": plan.count(Action.APPLIED), "skip": plan.count(Action.SKIP),
            "reapply": plan.count(Action.REAPPLY),
            "problems": len(plan.problems), "findings": len(plan.findings),
        },
        "patches": [step_json(s) for s in plan.steps],
        "problems": [
            {"kind": p.kind, "path": p.path, "line": p.line, "message": p.message,
             "hint": p.hint} for p in plan.problems
        ],
        "findings": [dict(finding_json(f), path=s.patch.path, database=s.patch.name.database,
                          version=s.patch.name.version) for s, f in plan.findings],
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    rule = finding.rule
    return {"rule": rule.id, "line": finding.line, "title": rule.title, "lock": rule.lock,
            "safer": rule.safer, "statement": finding.excerpt}


def step_json(step: Step) -> dict[str, Any]:
    n = step.patch.name
    rec = step.record
    return {
        "database": n.database, "major": n.major, "minor": n.minor, "version": n.version,
        "user": n.user, "description": n.description, "path": step.patch.path,
        "group": step.patch.group,
        "action": step.action.value, "reason": step.reason, "flags": list(step.flags),
        "checksum": step.checksum,
        "installed": rec.installed.isoformat() if rec and rec.installed else None,
        "findings": [finding_json(f) for f in step.findings],
        "lock_conflicts": lock_conflicts_json(step.lock_conflicts),
        "oldest_transaction": (session_json(step.oldest_transaction)
                               if step.oldest_transaction is not None else None),
    }


def lock_conflicts_json(conflicts: Sequence[LockConflict]) -> list[dict[str, Any]]:
    """plan's and rehearse's ``lock_conflicts``: each live session with the lock it holds or
    waits for, against the mode the patch will take."""
    return [dict(session_json(c.session), relation=c.relation, mode=c.mode,
                 held_mode=c.held_mode, granted=c.granted) for c in conflicts]


def session_json(session: Session) -> dict[str, Any]:
    return {"pid": session.pid, "user": session.user,
            "application_name": session.application_name, "state": session.state,
            "xact_seconds": (round(session.xact_seconds, 3)
                             if session.xact_seconds is not None else None),
            "query": session.query}


def dump_json(data: Any, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    json.dump(data, stream, indent=2, default=str)
    stream.write("\n")


# -- apply -------------------------------------------------------------------------------

def apply_summary(result: ApplyResult) -> str:
    n = len(result.done)
    if n == 0:
        return f"nothing to do: {result.plan.count(Action.APPLIED)} patches already applied"
    dbs = len({s.patch.name.database for s, _ in result.done})
    return (f"applied {n} patch{'es' * (n != 1)} to {dbs} database{'s' * (dbs != 1)} "
            f"in {result.seconds:.2f} s")


def apply_json(result: ApplyResult) -> dict[str, Any]:
    return apply_json_of(result)


class ConsoleReporter:
    """Progress for apply: a bar on a terminal, one line per patch when piped."""

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.progress: Any = None
        self.task: Any = None

    def planned(self, plan: Plan) -> None:
        for step, finding in plan.findings:  # on stderr: stdout may be JSON
            sys.stderr.write("".join(line + "\n" for line in finding_lines(
                step.patch.path, finding, "warning")))
        sys.stderr.write("".join(line + "\n" for line in empty_warnings(plan)))
        total = len(plan.pending)
        if total and use_rich(self.stream) and not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), console=_console(self.stream),
                                     transient=True)
            self.progress.start()
            self.task = self.progress.add_task("applying", total=total)

    def step_started(self, step: Step) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=step.patch.name.filename)

    def step_done(self, step: Step, seconds: float) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)
            # markup=False: the notes are in brackets, which rich would take for markup tags
            self.progress.console.print(_done_line(step, seconds), highlight=False,
                                        markup=False)
        elif not self.quiet:
            self.stream.write(_done_line(step, seconds) + "\n")

    def lock_retry(self, step: Step, retry: int, retries: int, wait_seconds: float,
                   blockers: Sequence[Session]) -> None:
        """On stderr (stdout may be JSON); rich's bar shows it above itself."""
        sys.stderr.write(lock_retry_line(step, retry, retries, wait_seconds, blockers) + "\n")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def lock_retry_line(step: Step, retry: int, retries: int, wait_seconds: float,
                    blockers: Sequence[Session]) -> str:
    """``lock timeout: PATH: retry 1 of 5 in 0.31 s (blocked by pid 4711 (...))``."""
    who = (f" (blocked by {', '.join(b.describe() for b in blockers)})" if blockers else "")
    return (f"lock timeout: {step.patch.path}: retry {retry} of {retries} in "
            f"{wait_seconds:.2f} s{who}")


def _done_line(step: Step, seconds: float) -> str:
    n = step.patch.name
    note = f" [{', '.join(step.flags)}]" if step.flags else ""
    return (f"{step.action.value:9} {n.database} {n.version} as {n.user}: {n.description}"
            f"{note} ({seconds * 1000:.0f} ms)")


# -- status ------------------------------------------------------------------------------

STATUS_HEADERS = ["database", "version", "user", "description", "installed", "ms", "state",
                  "run by", "pgpatch"]
NOT_TIMED = "-"
NOT_TIMED_NOTE = ("ms -: not timed: the state database's own baseline (recorded before its "
                  "table has the column), the original tool's records, baselines recorded by "
                  "`pgpatch baseline`, bootstraps by older pgpatch versions")


STATUS_LEAVE_OUT = ("pgpatch", "run by", "user", "description")
"""What a narrow terminal's status table leaves out first, so that each record stays on its
line: database, version, installed, ms and state always show."""


def fit_status_columns(rows: list[list[str]], width: int) -> list[int]:
    shown = list(range(len(STATUS_HEADERS)))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(STATUS_HEADERS)]
    for header in STATUS_LEAVE_OUT:
        if sum(widths[i] for i in shown) + 2 * (len(shown) - 1) <= width:
            break
        shown.remove(STATUS_HEADERS.index(header))
    return shown


def record_state(r: Record) -> str:
    if not r.settled:
        return "unsettled" if r.xid is not None else "incomplete"
    return "applied" if r.checksum else "applied (no checksum)"


def status_rows(records: Iterable[Record]) -> list[list[str]]:
    from postgresqlpatches.core.records import last_runs

    return [[r.database, r.version, r.user or "", _description(r),
             f"{r.installed:%Y-%m-%d %H:%M:%S}" if r.installed else "",
             f"{r.duration_ms:.0f}" if r.duration_ms is not None else NOT_TIMED,
             record_state(r) + (f" (run {r.run})" if r.run is not None else ""),
             r.run_by or "", r.pgpatch_version or ""]
            for r in last_runs(records)]


def _description(r: Record) -> str:
    parts = r.name.split(".")
    return parts[4] if len(parts) == 6 else r.name


def print_status(st: Status, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    if not st.state_exists:
        stream.write("no state database yet: nothing has been applied on this server\n")
    rows = status_rows(st.records)
    if st.records:
        if use_rich(stream):
            from rich.table import Table

            console = _console(stream)
            shown = fit_status_columns(rows, console.width)
            table = Table(box=None, header_style="bold", pad_edge=False)
            for i in shown:
                table.add_column(STATUS_HEADERS[i], no_wrap=True)
            for row in rows:
                table.add_row(*(row[i] for i in shown))
            console.print(table)
            left_out = [h for i, h in enumerate(STATUS_HEADERS) if i not in shown]
            if left_out:
                console.print(f"left out at this width: {', '.join(left_out)} (piped output "
                              "and --format json show every column)", style="dim")
        else:
            write_columns(stream, STATUS_HEADERS, rows)
        if any(r.duration_ms is None for r in st.records):
            stream.write(NOT_TIMED_NOTE + "\n")
    for p in st.problems:
        stream.write(f"problem: {_problem_text(p)}\n")
        if p.hint:
            stream.write(f"  hint: {p.hint}\n")
    if st.plan is not None:
        rows = [r for s, r in zip(st.plan.steps, plan_rows(st.plan), strict=True)
                if s.pending or "changed" in s.flags]
        if rows:
            stream.write("\npending or changed:\n")
            write_columns(stream, HEADERS, rows)
        for p in st.plan.problems:
            stream.write(f"problem: {_problem_text(p)}\n")
        stream.write(summary(st.plan) + "\n")


def status_json(st: Status) -> dict[str, Any]:
    from postgresqlpatches.core.records import last_runs

    data: dict[str, Any] = {
        "version": JSON_VERSION,
        "ok": st.plan is None or st.plan.ok,  # as the exit status: 0
        "error": None,
        "state_database": st.state_exists,
        "records": [
            {"database": r.database, "major": r.major, "minor": r.minor, "version": r.version,
             "name": r.name, "user": r.user, "installed": r.installed.isoformat()
             if r.installed else None, "duration_ms": r.duration_ms, "checksum": r.checksum,
             "checksum_version": (r.checksum_version or 1) if r.checksum else None,
             "state": record_state(r), "path": r.path, "run_by": r.run_by,
             "pgpatch_version": r.pgpatch_version, "run": r.run}
            for r in last_runs(st.records)
        ],
    }
    if st.plan is not None:
        data["plan"] = plan_json(st.plan)
    else:
        data["problems"] = [
            {"kind": p.kind, "path": p.path, "line": p.line, "message": p.message,
             "hint": p.hint} for p in st.problems]
    return data


# -- plan --sql --------------------------------------------------------------------------

def print_plan_sql(plan: Plan, state_db: str, stream: IO[str] | None = None) -> None:
    """What apply would send, in order, as SQL text (core/sending.py, which apply uses too);
    nothing when the plan has problems (apply would send nothing), which go to stderr.
    Passwords are masked as in every other output."""
    from postgresqlpatches.core.redact import redact
    from postgresqlpatches.core.sending import as_text, sending

    stream = stream or sys.stdout
    if not plan.ok:
        stream.write("-- nothing would be sent: the plan has "
                     f"{_plural(len(plan.problems), 'problem')}\n")
        for p in plan.problems:
            sys.stderr.write(f"problem: {_problem_text(p)}\n")
            if p.hint:
                sys.stderr.write(f"  hint: {p.hint}\n")
        return
    pending = plan.pending
    stream.write(f"-- pgpatch plan --sql: what apply would send, in order "
                 f"({len(pending)} pending patch{'es' * (len(pending) != 1)})\n"
                 "-- not shown: pgpatch's own queries (each transaction's id, the records in "
                 "the state database, DISCARD ALL after each patch, the lock_timeout set "
                 "around a CONCURRENTLY statement)\n")
    for step in pending:
        stream.write("\n" + redact(as_text(sending(step, state_db))))
# -- rehearse ----------------------------------------------------------------------------

def _blocked(reads: bool, writes: bool) -> str:
    what = [w for w, on in (("reads", reads), ("writes", writes)) if on]
    return "blocks " + " and ".join(what) if what else "blocks neither reads nor writes"


def rehearsal_lines(r: Rehearsal) -> list[str]:
    """Per patch its outcome and time on the copy, then each statement's locks and rewrites."""
    where = (f"a throwaway PostgreSQL {r.major} server" if r.major else "a throwaway server")
    source = ("built from the tree alone (--offline)" if r.offline else
              "copied from the live server: " + (
                  ", ".join(f"{d} (schema and rows)" if d in r.with_rows else f"{d} (schema)"
                            for d in r.copied) or "no database (all are new)"))
    lines = [f"rehearsal on {where}, {source}"]
    lines += [f"warning: {d} is larger than the --data limit: only its schema was copied"
              for d in r.too_large]
    for p in r.patches:
        seconds = f"{p.seconds:.3f} s" if p.seconds is not None else "-"
        if p.outcome == "failed":
            where_line = f"{p.path}:{p.line}" if p.line else p.path
            code = f" [SQLSTATE {p.sqlstate}]" if p.sqlstate else ""
            lines.append(f"failed   {seconds:>9}  {where_line}: {p.message}{code}")
        else:
            lines.append(f"{p.outcome:<8} {seconds:>9}  {p.path}")
        for s in p.statements:
            for lock in s.locks:
                lines.append(f"    line {s.line}: {lock.mode} on {lock.relation} "
                             f"({_blocked(lock.blocks_reads, lock.blocks_writes)})")
            for table in s.rewritten:
                lines.append(f"    line {s.line}: rewrote {table}")
        for c in p.lock_conflicts:  # on the live server, now (plan's lock_conflicts)
            verb = "holds" if c.granted else "waits for"
            lines.append(f"    live: pid {c.session.pid} ({c.session.user}) {verb} "
                         f"{c.held_mode} on {c.relation}")
    for p in r.plan.problems:
        lines.append(f"problem: {_problem_text(p)}")
        if p.hint:
            lines.append(f"  hint: {p.hint}")
    if r.error is not None:
        lines.append(f"error: {r.error}")
        if r.error.hint:
            lines.append(f"hint: {r.error.hint}")
    lines.append(rehearsal_summary(r))
    return lines


def rehearsal_summary(r: Rehearsal) -> str:
    if not r.plan.ok:
        return f"not rehearsed: the plan has {_plural(len(r.plan.problems), 'problem')}"
    if not r.patches and r.error is None:
        return "nothing to rehearse: no pending patch"
    counts = {o: sum(p.outcome == o for p in r.patches) for o in ("ran", "failed", "not run")}
    said = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    return (f"rehearsal {'passed' if r.ok else 'failed'}: {said or 'no patch ran'} "
            f"({r.seconds:.2f} s)")


def print_rehearsal(r: Rehearsal, stream: IO[str] | None = None) -> None:
    from postgresqlpatches.core.redact import redact

    stream = stream or sys.stdout
    stream.write("".join(redact(line) + "\n" for line in rehearsal_lines(r)))


def rehearsal_json(r: Rehearsal) -> dict[str, Any]:
    """docs/rehearse.md describes it."""
    return {
        "version": JSON_VERSION,
        "ok": r.ok,
        "offline": r.offline,
        "major": r.major,
        "copied": [{"database": d, "rows": d in r.with_rows} for d in r.copied],
        "too_large": r.too_large,
        "seconds": round(r.seconds, 6),
        "patches": [{
            "path": p.path, "database": p.database, "version": p.version, "user": p.user,
            "action": p.action, "outcome": p.outcome,
            "seconds": round(p.seconds, 6) if p.seconds is not None else None,
            "error": None if p.outcome != "failed" else {
                "line": p.line, "sqlstate": p.sqlstate, "message": p.message},
            "statements": [{
                "line": s.line,
                "locks": [{"relation": lk.relation, "mode": lk.mode,
                           "blocks_reads": lk.blocks_reads, "blocks_writes": lk.blocks_writes}
                          for lk in s.locks],
                "rewritten": list(s.rewritten)} for s in p.statements],
            "lock_conflicts": lock_conflicts_json(p.lock_conflicts),
        } for p in r.patches],
        "problems": [
            {"kind": p.kind, "path": p.path, "line": p.line, "message": p.message,
             "hint": p.hint} for p in r.plan.problems],
        "error": None if r.error is None else {
            "path": r.error.path, "line": r.error.line, "sqlstate": r.error.sqlstate,
            "message": r.error.message, "hint": r.error.hint},
    }
# -- JSON from every command, also when it fails ---------------------------------------------
# Each command's document: docs/COMMAND.schema.json; a usage error's: docs/error.schema.json.

def error_json(e: BaseException, exit_code: int | None = None) -> dict[str, Any]:
    """The ``error`` member: what stopped the command, as its error line says it (never a
    password); ``kind`` is the error's stable word (errors.PgpatchError.kind)."""
    import click

    from postgresqlpatches.core.redact import redact
    from postgresqlpatches.errors import PgpatchError

    if isinstance(e, click.UsageError):
        kind, message, code = "usage", e.format_message(), e.exit_code
        hint = path = line = sqlstate = None
    elif isinstance(e, PgpatchError):
        kind, message, code = e.kind, e.message, e.exit_code
        hint, path, line, sqlstate = e.hint, e.path, e.line, e.sqlstate
    else:  # not the project's error: a bug, told as the error line tells it
        kind, message, code = "internal", f"unexpected {type(e).__name__}: {e}", 1
        hint = path = line = sqlstate = None
    return {"kind": kind, "message": redact(message), "path": path, "line": line,
            "sqlstate": sqlstate, "hint": redact(hint) if hint else None,
            "exit_code": code if exit_code is None else exit_code}


def usage_error_json(e: BaseException, command: str | None) -> dict[str, Any]:
    """A usage error (exit 2) with --format json: no command ran, so no command's document."""
    return {"version": JSON_VERSION, "ok": False, "command": command, "error": error_json(e)}


def plan_failure_json(e: BaseException, *, offline: bool, lint: str) -> dict[str, Any]:
    """plan's document when no plan was made (the server cannot be reached, ...): the plan's
    shape, empty, and the error."""
    empty = plan_json(Plan((), (), lint=lint), offline=offline)
    return dict(empty, ok=False, error=error_json(e))


def apply_json_of(result: ApplyResult | None, error: BaseException | None = None,
                  ) -> dict[str, Any]:
    """apply's document, whatever happened: what ran (with seconds), the step that failed
    (with the error's line, SQLSTATE, message and hint), what is left, and the error.

    ``pending`` and ``summary`` are null when the run stopped before it had a plan (the
    server could not be reached, the lock wait ran out)."""
    failed = None
    if result is not None and result.failed is not None and error is not None:
        step, seconds = result.failed
        err = error_json(error)
        failed = dict(step_json(step), seconds=round(seconds, 6), line=err["line"],
                      sqlstate=err["sqlstate"], message=err["message"], hint=err["hint"])
    problems = result.plan.problems if result is not None else ()
    return {
        "version": JSON_VERSION,
        "ok": error is None,
        "applied": [dict(step_json(s), seconds=round(t, 6)) for s, t in result.done]
        if result is not None else [],
        "failed": failed,
        "pending": [step_json(s) for s in result.pending] if result is not None else None,
        "seconds": round(result.seconds, 6) if result is not None else 0.0,
        "summary": plan_json(result.plan)["summary"] if result is not None else None,
        "problems": [
            {"kind": p.kind, "path": p.path, "line": p.line, "message": p.message,
             "hint": p.hint} for p in problems
        ],
        "error": error_json(error) if error is not None else None,
    }


def apply_stopped_summary(result: ApplyResult | None) -> str:
    """The last line of an apply that stopped (its error is on stderr): what ran, what
    failed, what is left, by database."""
    if result is None:
        return "stopped before anything ran"
    n = len(result.done)
    ran = (f"applied {n} patch{'es' * (n != 1)} in {result.seconds:.2f} s" if n
           else "nothing applied")
    parts = [f"stopped: {ran}"]
    if result.failed is not None:
        parts.append(f"failed: {result.failed[0].patch.path}")
    if result.members_failed:
        parts.append("failed: " + ", ".join(f"{s.patch.name.database} of group {s.patch.group}"
                                            for s, _ in result.members_failed))
    left = result.pending
    if left:
        per_db: dict[str, int] = {}
        for s in left:
            per_db[s.patch.name.database] = per_db.get(s.patch.name.database, 0) + 1
        parts.append(f"{len(left)} left pending ("
                     + ", ".join(f"{db}: {k}" for db, k in per_db.items()) + ")")
    elif result.plan.problems:
        parts.append(_plural(len(result.plan.problems), "problem"))
    else:
        parts.append("nothing left pending")
    return "; ".join(parts)


def rehearsal_failure_json(e: BaseException, *, offline: bool) -> dict[str, Any]:
    """rehearse's document when the rehearsal ended without its report (the live server
    cannot be reached, no binaries for --major, the copy cannot start, Ctrl-C or SIGTERM):
    the rehearsal's shape, empty, and the error in the members rehearsal_json gives it."""
    err = error_json(e)
    return {"version": JSON_VERSION, "ok": False, "offline": offline, "major": None,
            "copied": [], "too_large": [], "seconds": 0.0, "patches": [], "problems": [],
            "error": {k: err[k] for k in ("path", "line", "sqlstate", "message", "hint")}}


def status_failure_json(e: BaseException) -> dict[str, Any]:
    return {"version": JSON_VERSION, "ok": False, "state_database": None, "records": [],
            "problems": [], "error": error_json(e)}


def baseline_json(database: str, written: Any = None,
                  error: BaseException | None = None) -> dict[str, Any]:
    """baseline's document: the file written and recorded, or the error (then nothing was
    recorded; ``path`` is null)."""
    return {"version": JSON_VERSION, "ok": error is None, "database": database,
            "path": str(written.path) if written is not None else None,
            "size": written.size if written is not None else None,
            "rows_of": list(written.rows_of) if written is not None
            and written.rows_of is not None else None,
            "recorded": written is not None,
            "error": error_json(error) if error is not None else None}


def forget_json(database: str, forgotten: int | None,
                error: BaseException | None = None) -> dict[str, Any]:
    return {"version": JSON_VERSION, "ok": error is None, "database": database,
            "forgotten": forgotten, "error": error_json(error) if error is not None else None}
# -- fleets (-t/--target) ----------------------------------------------------------------
# One group per target, in the order asked for, then a summary table; JSON is
# {"version", "ok", "targets": [...]} for plan, apply, status and rehearse alike
# (docs/fleet.md).

FLEET_SUMMARY_HEADERS = {
    "plan": ["target", "databases", "pending", "problems", "seconds", "error"],
    "apply": ["target", "databases", "applied", "failed", "seconds", "error"],
    "status": ["target", "databases", "records", "problems", "seconds", "error"],
    "rehearse": ["target", "databases", "major", "ran", "failed", "not run", "seconds",
                 "error"],
}


def _target_where(result: TargetResult) -> str:
    return result.target.options.server().where()


def _error_lines(error: PgpatchError) -> list[str]:
    """A target's error as the CLI prints a run's: ``error:`` and an optional ``hint:``."""
    from postgresqlpatches.core.redact import redact

    lines = [redact(f"error: {error}")]
    if error.hint:
        lines.append(redact(f"hint: {error.hint}"))
    return lines


def fleet_summary_rows(results: Sequence[TargetResult], command: str) -> list[list[str]]:
    """The last table of a fleet run: one row per target (FLEET_SUMMARY_HEADERS[command])."""
    rows = []
    for r in results:
        error = _error_lines(r.error)[0].removeprefix("error: ") if r.error else ""
        if command == "apply":
            counts = [str(len(r.done)), str(len(r.not_applied))]
        elif command == "rehearse":
            counts, error = _rehearsal_counts(r, error)
        elif command == "plan":
            counts = [str(len(r.plan.pending)) if r.plan else "-",
                      str(len(r.plan.problems)) if r.plan else "-"]
        else:
            problems = (r.plan.problems if r.plan is not None
                        else r.status.problems if r.status is not None else None)
            counts = [str(len(r.status.records)) if r.status else "-",
                      str(len(problems)) if problems is not None else "-"]
        rows.append([r.target.name, str(r.databases) if r.plan or r.status else "-", *counts,
                     f"{r.seconds:.2f}", error])
    return rows


def _rehearsal_counts(result: TargetResult, error: str) -> tuple[list[str], str]:
    """rehearse's summary cells: the copy's major and its patches' outcomes; the error is
    the target's, else the rehearsal's, else the patch that failed."""
    from postgresqlpatches.core.redact import redact

    r = result.rehearsal
    if r is None:
        return ["-", "-", "-", "-"], error
    counts = [str(sum(p.outcome == o for p in r.patches)) for o in ("ran", "failed", "not run")]
    failed = next((p for p in r.patches if p.outcome == "failed"), None)
    if not error and r.error is not None:
        error = _error_lines(r.error)[0].removeprefix("error: ")
    elif not error and failed is not None:
        error = redact(f"{failed.path}:{failed.line}: {failed.message}" if failed.line
                       else f"{failed.path}: {failed.message}")
    elif not error and not r.plan.ok:
        error = f"not rehearsed: the plan has {_plural(len(r.plan.problems), 'problem')}"
    return [str(r.major) if r.major else "-", *counts], error


def print_fleet_summary(results: Sequence[TargetResult], command: str,
                        stream: IO[str]) -> None:
    headers = FLEET_SUMMARY_HEADERS[command]
    rows = fleet_summary_rows(results, command)
    failed = sum(not r.ok for r in results)
    stream.write("\nsummary:\n")
    if use_rich(stream):
        from rich.markup import escape
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for h in headers:
            table.add_column(h, no_wrap=h != "error", overflow="fold")
        for r, row in zip(results, rows, strict=True):
            table.add_row(*(escape(c) for c in row), style=None if r.ok else "red")
        _console(stream).print(table)
    else:
        write_columns(stream, headers, rows)
    stream.write(f"{_plural(len(results), 'target')}, {failed} failed\n")


def _print_target_head(result: TargetResult, stream: IO[str], first: bool) -> None:
    stream.write(("" if first else "\n") + f"target {result.target.name} "
                 f"({_target_where(result)})\n")


def _print_fleet(results: Sequence[TargetResult], command: str, part: str,
                 show: Callable[[Any, IO[str]], None], stream: IO[str] | None) -> None:
    """Per target its head, its ``part`` (plan, status, rehearsal) shown as without targets,
    the error it ended with; then the summary."""
    stream = stream or sys.stdout
    for i, r in enumerate(results):
        _print_target_head(r, stream, i == 0)
        if getattr(r, part) is not None:
            show(getattr(r, part), stream)
        if r.error is not None:
            stream.write("".join(line + "\n" for line in _error_lines(r.error)))
    print_fleet_summary(results, command, stream)


def print_fleet_plan(results: Sequence[TargetResult], stream: IO[str] | None = None) -> None:
    _print_fleet(results, "plan", "plan", print_plan, stream)


def print_fleet_status(results: Sequence[TargetResult], stream: IO[str] | None = None) -> None:
    _print_fleet(results, "status", "status", print_status, stream)


def print_fleet_rehearsal(results: Sequence[TargetResult],
                          stream: IO[str] | None = None) -> None:
    _print_fleet(results, "rehearse", "rehearsal", print_rehearsal, stream)


def print_fleet_apply(results: Sequence[TargetResult], stream: IO[str] | None = None) -> None:
    """Per target: each pending patch with what came of it, the error, then the summary."""
    from postgresqlpatches.runner import ApplyResult

    stream = stream or sys.stdout
    for i, r in enumerate(results):
        _print_target_head(r, stream, i == 0)
        seconds = dict((id(s), t) for s, t in r.done)
        outcomes = r.outcomes()
        for step in r.plan.pending if r.plan is not None else ():
            outcome = outcomes.get(id(step), "not run")
            if outcome == "applied":
                stream.write(_done_line(step, seconds[id(step)]) + "\n")
            else:
                n = step.patch.name
                stream.write(f"{outcome:9} {n.database} {n.version} as {n.user}: "
                             f"{n.description}\n")
        if r.error is not None:
            stream.write("".join(line + "\n" for line in _error_lines(r.error)))
        elif r.plan is not None:
            stream.write(apply_summary(ApplyResult(r.plan, r.done, r.seconds)) + "\n")
    print_fleet_summary(results, "apply", stream)


def _problems_json(problems: Iterable[Problem]) -> list[dict[str, Any]]:
    return [{"kind": p.kind, "path": p.path, "line": p.line, "message": p.message,
             "hint": p.hint} for p in problems]


def _target_json(result: TargetResult) -> dict[str, Any]:
    """What every command's JSON says of a target; ``patches`` and ``problems`` follow."""
    from postgresqlpatches.core.redact import redact

    error = result.error
    return {"name": result.target.name, "host": result.target.host,
            "port": result.target.port, "ok": result.ok,
            "error": redact(str(error)) if error is not None else None,
            "hint": redact(error.hint) if error is not None and error.hint else None,
            "started": result.started, "seconds": round(result.seconds, 6),
            "databases": result.databases}


def _fleet_json(results: Sequence[TargetResult],
                entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": JSON_VERSION, "ok": all(r.ok for r in results), "targets": entries}


def fleet_plan_json(results: Sequence[TargetResult]) -> dict[str, Any]:
    entries = []
    for r in results:
        data = _target_json(r)
        data["patches"] = [step_json(s) for s in r.plan.steps] if r.plan else []
        data["problems"] = _problems_json(r.plan.problems) if r.plan else []
        if r.plan is not None:
            data["summary"] = plan_json(r.plan)["summary"]
        entries.append(data)
    return _fleet_json(results, entries)


def fleet_apply_json(results: Sequence[TargetResult]) -> dict[str, Any]:
    """Every step of each target's plan with ``result``: applied (by this run), failed,
    not run, or null (nothing to do)."""
    entries = []
    for r in results:
        data = _target_json(r)
        seconds = dict((id(s), t) for s, t in r.done)
        outcomes = r.outcomes()
        data["patches"] = [
            dict(step_json(s), result=outcomes.get(id(s)),
                 seconds=round(seconds[id(s)], 6) if id(s) in seconds else None)
            for s in (r.plan.steps if r.plan else ())]
        data["problems"] = _problems_json(r.plan.problems) if r.plan else []
        data["applied"] = len(r.done)
        data["failed"] = len(r.not_applied)
        entries.append(data)
    return _fleet_json(results, entries)


def fleet_status_json(results: Sequence[TargetResult]) -> dict[str, Any]:
    """``patches`` are the records of the target's state database (status_json's records);
    with globs ``plan`` is the target's plan."""
    entries = []
    for r in results:
        data = _target_json(r)
        st = status_json(r.status) if r.status is not None else None
        data["state_database"] = st["state_database"] if st else None
        data["patches"] = st["records"] if st else []
        data["problems"] = (st["plan"]["problems"] if st and "plan" in st
                            else st["problems"] if st else [])
        if st and "plan" in st:
            data["plan"] = st["plan"]
        entries.append(data)
    return _fleet_json(results, entries)


def fleet_rehearsal_json(results: Sequence[TargetResult]) -> dict[str, Any]:
    """Each target's entry holds, beside the members every command's has, its rehearsal's
    members as rehearsal_json gives them (``error`` stays the target's one line: its own, or
    the rehearsal's)."""
    from postgresqlpatches.core.redact import redact

    entries = []
    for r in results:
        data = _target_json(r)
        if r.rehearsal is not None:
            own = rehearsal_json(r.rehearsal)
            for key in ("version", "ok", "error", "seconds"):
                own.pop(key)
            data.update(own)
            failure = r.rehearsal.error
            if r.error is None and failure is not None:
                data["error"] = redact(str(failure))
                data["hint"] = redact(failure.hint) if failure.hint else None
        else:
            data.update(offline=False, major=None, copied=[], too_large=[], patches=[],
                        problems=[])
        entries.append(data)
    return _fleet_json(results, entries)


class FleetProgress:
    """apply's progress over many targets, on stderr (stdout is the grouped result): one
    line per patch as it is done, behind its target's name; lint findings once, not once per
    target."""

    def __init__(self, stream: IO[str] | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.lock = threading.Lock()
        self.shown: set[tuple[str, int, str]] = set()

    def reporter(self, target: Target) -> Reporter:
        return _TargetLines(self, target.name)

    def write(self, text: str) -> None:
        with self.lock:
            self.stream.write(text)
            self.stream.flush()


class _TargetLines:
    def __init__(self, progress: FleetProgress, name: str) -> None:
        self.progress = progress
        self.name = name

    def planned(self, plan: Plan) -> None:
        lines: list[str] = []
        with self.progress.lock:
            for step, finding in plan.findings:
                key = (step.patch.path, finding.line, finding.rule.id)
                if key not in self.progress.shown:
                    self.progress.shown.add(key)
                    lines += finding_lines(step.patch.path, finding, "warning")
            warnings = [w for w in empty_warnings(plan) if (w, 0, "") not in self.progress.shown]
            self.progress.shown.update((w, 0, "") for w in warnings)
        self.progress.write("".join(line + "\n" for line in [*lines, *warnings]))

    def step_started(self, step: Step) -> None:
        pass

    def step_done(self, step: Step, seconds: float) -> None:
        if not self.progress.quiet:
            self.progress.write(f"{self.name}: {_done_line(step, seconds)}\n")
