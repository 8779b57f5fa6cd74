"""The terminal plan: colours by action on a terminal, clean text when piped or with NO_COLOR."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from postgresqlpatches.cli.render import (
    ConsoleReporter,
    plan_json,
    print_plan,
    print_status,
    shorten_path,
    summary,
)
from postgresqlpatches.core.discovery import Problem, read_patch
from postgresqlpatches.core.planner import RESUME, Action, Plan, ServerFacts, Step, make_plan


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def example_plan(lint: str = "warn"):
    patches = [
        read_patch("t/app.00000000.0000.postgres.baseline.sql", text="create database app;\n"),
        read_patch("t/app.20240101.0001.app.drop.sql", text="alter table t drop column a;\n"),
        read_patch("t/app.20240102.0001.app.ok.sql", text="select 1;\n"),
    ]
    problems = [Problem("no-match", "nope/*.sql", "the glob matches no file", hint="check it")]
    return make_plan(patches, ServerFacts(frozenset()), state_db="patches", problems=problems,
                     lint=lint)


def test_piped_output_is_plain_columns_findings_problems_and_a_summary() -> None:
    out = io.StringIO()
    print_plan(example_plan(), out)
    assert out.getvalue().splitlines() == [
        "database  version        user      description  path                              "
        "         action     notes",
        "app       00000000.0000  postgres  baseline     t/app.00000000.0000.postgres.baseline.sql"
        "  bootstrap  psql",
        "app       20240101.0001  app       drop         t/app.20240101.0001.app.drop.sql         "
        "  apply      lint: drop-column",
        "app       20240102.0001  app       ok           t/app.20240102.0001.app.ok.sql           "
        "  apply",
        "warning: t/app.20240101.0001.app.drop.sql:1: DROP COLUMN [drop-column]",
        "  statement: alter table t drop column a",
        "  lock: ACCESS EXCLUSIVE (brief, but it queues behind every running query on the table)",
        "  safer: Stop using the column in the application and deploy that first; drop it in a "
        "later patch (and set a lock_timeout so the drop does not queue everyone).",
        "  silence: -- pgpatch: allow drop-column",
        "problem: nope/*.sql: the glob matches no file [no-match]",
        "  hint: check it",
        "1 to bootstrap, 2 to apply, 0 applied, 0 skipped, 1 problem, 1 lint finding",
    ]


def test_with_lint_error_findings_are_errors_and_not_repeated_as_problems() -> None:
    out = io.StringIO()
    print_plan(example_plan("error"), out)
    text = out.getvalue()
    assert "error: t/app.20240101.0001.app.drop.sql:1: DROP COLUMN [drop-column]" in text
    assert "[lint]" not in text
    assert text.endswith("2 problems, 1 lint finding\n")


def test_summary_leaves_out_lint_when_it_is_off() -> None:
    assert summary(example_plan("off")) == (
        "1 to bootstrap, 2 to apply, 0 applied, 0 skipped, 1 problem")


def test_a_terminal_gets_colours_by_action(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    out = Terminal()
    print_plan(example_plan(), out)
    assert "\x1b[1;35mbootstrap" in out.getvalue()  # bold magenta
    assert "\x1b[1;32mapply" in out.getvalue()  # bold green


def test_no_color_on_a_terminal_prints_the_same_plain_text_as_a_pipe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    terminal, pipe = Terminal(), io.StringIO()
    print_plan(example_plan(), terminal)
    print_plan(example_plan(), pipe)
    assert "\x1b[" not in terminal.getvalue()
    assert terminal.getvalue() == pipe.getvalue()


def test_a_narrow_terminal_keeps_the_paths_that_fit_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    print_plan(example_plan(), out)
    assert "…" not in out.getvalue().split("warning:")[0]


def test_json_carries_findings_per_patch_and_in_one_list() -> None:
    data = plan_json(example_plan(), offline=True)
    assert (data["version"], data["offline"], data["lint"]) == (1, True, "warn")
    assert data["summary"] == {"bootstrap": 1, "apply": 2, "applied": 0, "skip": 0, "reapply": 0,
                               "problems": 1, "findings": 1}
    finding = {"rule": "drop-column", "line": 1, "title": "DROP COLUMN",
               "lock": "ACCESS EXCLUSIVE (brief, but it queues behind every running query on "
                       "the table)",
               "safer": data["findings"][0]["safer"], "statement": "alter table t drop column a"}
    assert data["patches"][1]["findings"] == [finding]
    assert data["findings"] == [dict(finding, path="t/app.20240101.0001.app.drop.sql",
                                     database="app", version="20240101.0001")]


def test_a_terminal_shows_the_bracketed_notes_of_progress_lines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    patches = [
        read_patch("t/app.00000000.0000.postgres.baseline.sql", text="create database app;\n"),
        read_patch("t/app.20240101.0001.app.conc.sql",
                   text="create index concurrently i on t (a);\n"),
        read_patch("t/app.20240102.0001.app.again.sql", text="vacuum t;\nselect 1;\n"),
    ]
    plan = make_plan(patches[:2], ServerFacts(frozenset()), state_db="patches")
    resumed = Step(patches[2], Action.APPLY, "resumes at statement 2", (RESUME,))
    out = Terminal()
    reporter = ConsoleReporter(out)
    reporter.planned(Plan((*plan.steps, resumed)))
    for step in (*plan.steps, resumed):
        reporter.step_started(step)
        reporter.step_done(step, 0.012)
    reporter.close()
    text = out.getvalue()
    assert "\x1b[" in text  # the rich progress bar, not the piped lines
    assert "app 00000000.0000 as postgres: baseline [psql] (12 ms)" in text
    assert "app 20240101.0001 as app: conc [non-transactional] (12 ms)" in text
    assert "app 20240102.0001 as app: again [resume] (12 ms)" in text


def _deep_plan():
    folder = "/srv/deploy/releases/2024/shop/db/migrations/"
    patches = [
        read_patch(folder + "shop.00000000.0000.postgres.baseline.sql",
                   text="create database shop;\n"),
        read_patch(folder + "shop.20240101.0001.shop.drop_legacy_columns.sql",
                   text="alter table t drop column a;\ncreate index i on t (a);\n"
                        "alter table t alter column b set not null;\n"),
        read_patch(folder + "shop.20240102.0001.shop.conc.sql",
                   text="create index concurrently j on t (a);\n"),
        read_patch(folder + "crm.00000000.0000.postgres.baseline.sql", text="select 1;\n"),
        read_patch(folder + "crm.20240102.0001.crm.notes.sql", text="-- later\n"),
    ]
    return make_plan(patches, ServerFacts(frozenset({"crm"})), state_db="patches")


def _demo_plan():
    from postgresqlpatches import runner

    examples = Path(__file__).resolve().parents[2] / "examples" / "hundbidrag"
    return runner.plan_offline(runner.Options(globs=(str(examples / "*.sql"),)))


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("make", [_deep_plan, _demo_plan, example_plan])
def test_a_terminal_plan_keeps_each_rows_file_name_and_action_on_one_line(
        monkeypatch: pytest.MonkeyPatch, width: int, make) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", str(width))
    plan = make()
    out = Terminal()
    print_plan(plan, out)
    table = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).split("\n" + summary(plan))[0]
    table = table.split("\nwarning: ")[0].split("\nproblem: ")[0]
    lines = table.splitlines()
    assert all(len(line) <= width for line in lines)
    for step in plan.steps:
        rows = [line.split() for line in lines if step.patch.name.filename in line]
        assert len(rows) == 1, (step.patch.name.filename, table)
        assert step.action.value in rows[0], (step.action.value, rows[0])


def test_a_wide_terminal_shows_every_column_and_whole_paths(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "220")
    out = Terminal()
    print_plan(_deep_plan(), out)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()
    assert lines[0].split() == ["database", "version", "user", "description", "path", "action",
                                "notes"]
    row = next(line.split() for line in lines if "conc.sql" in line)
    path = "/srv/deploy/releases/2024/shop/db/migrations/shop.20240102.0001.shop.conc.sql"
    assert row[:6] == ["shop", "20240102.0001", "shop", "conc", path, "apply"]


@pytest.mark.parametrize("width, short", [
    (81, "/srv/deploy/releases/2024/shop/db/migrations/app.20240101.0001.app.add_orders.sql"),
    (80, "/…/deploy/releases/2024/shop/db/migrations/app.20240101.0001.app.add_orders.sql"),
    (60, "/…/shop/db/migrations/app.20240101.0001.app.add_orders.sql"),
    (50, "/…/migrations/app.20240101.0001.app.add_orders.sql"),
    (40, "/…/app.20240101.0001.app.add_orders.sql"),
    (37, "app.20240101.0001.app.add_orders.sql"),
    (30, "app.20240101.0….add_orders.sql"),
])
def test_shorten_path_elides_folders_before_the_file_name(width: int, short: str) -> None:
    path = "/srv/deploy/releases/2024/shop/db/migrations/app.20240101.0001.app.add_orders.sql"
    assert shorten_path(path, width) == short
    assert len(short) <= width


@pytest.mark.parametrize("width, left_out", [(80, "user, run by, pgpatch"), (100, "pgpatch"),
                                             (140, None)])
def test_a_terminal_status_keeps_each_record_on_one_line(
        monkeypatch: pytest.MonkeyPatch, width: int, left_out: str | None) -> None:
    import datetime as dt

    from postgresqlpatches.core.records import Record
    from postgresqlpatches.runner import Status

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", str(width))
    at = dt.datetime(2026, 12, 1, 10, 0, 0)
    records = [
        Record(1, "hundbidrag", "00000000", "0000",
               "hundbidrag.00000000.0000.postgres.baseline.sql", at, "postgres", checksum="c",
               duration_ms=120.0, run_by="deploy", pgpatch_version="0.1.0"),
        Record(2, "hundbidrag", "20210301", "0001",
               "hundbidrag.20210301.0001.hundbidrag.allowance_view.sql", at, "hundbidrag",
               checksum="c", duration_ms=3.2, run_by="deploy", pgpatch_version="0.1.0"),
    ]
    out = Terminal()
    print_status(Status(records, None, True), out)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()
    assert all(len(line) <= width for line in lines)
    assert lines[1].split()[:2] == ["hundbidrag", "00000000.0000"]
    assert "2026-12-01 10:00:00  120  applied" in lines[1]
    assert "2026-12-01 10:00:00  3    applied" in lines[2]
    if left_out:
        assert lines[3].startswith(f"left out at this width: {left_out} (")
    else:
        assert lines[1].split()[-3:] == ["applied", "deploy", "0.1.0"] and len(lines) == 3
