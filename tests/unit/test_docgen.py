"""The CLI reference is generated from the commands' own --help, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

from postgresqlpatches.docgen import main, render_cli_markdown

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_the_commands_own_help() -> None:
    assert CLI_MD.read_text(encoding="utf-8") == render_cli_markdown(), (
        "docs/cli.md is stale: run python -m postgresqlpatches.docgen")


def test_check_passes_when_every_generated_page_is_current() -> None:
    assert main(["--check"]) == 0


def test_every_command_has_a_section_with_its_exit_codes_where_they_matter() -> None:
    text = render_cli_markdown()
    for command in ["apply", "baseline", "demo", "new", "plan", "status"]:
        assert f"\n## pgpatch {command}\n" in text
    assert "  3  with --exit-code: the plan is valid and has patches to run" in text


def test_the_pre_commit_hook_runs_the_offline_plan_over_the_whole_tree(
        tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import json
    import re
    import shlex

    from click.testing import CliRunner

    from postgresqlpatches.cli import main as cli

    hooks = (CLI_MD.parents[1] / ".pre-commit-hooks.yaml").read_text(encoding="utf-8")
    entry = re.search(r"^  entry: (.+)$", hooks, re.M).group(1)
    args = json.loads(re.search(r"^  args: (\[.*\])", hooks, re.M).group(1))
    assert "pass_filenames: false" in hooks
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "app.20240101.0001.app.x.sql").write_text("\\set x 1\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*shlex.split(entry)[1:], *args])
    assert result.exit_code == 1
    assert "psql meta-command \\set outside a 0000 baseline [meta-command]" in result.stdout
