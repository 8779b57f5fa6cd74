"""The CLI reference is generated from the commands' own --help, so it cannot drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_MD = ROOT / "docs" / "cli.md"


def _load_docgen():  # noqa: ANN202 (a module)
    """tools/docgen.py is a developer's tool outside the package: loaded from its file."""
    spec = importlib.util.spec_from_file_location("docgen", ROOT / "tools" / "docgen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docgen = _load_docgen()
main, render_cli_markdown = docgen.main, docgen.render_cli_markdown


def test_docs_cli_md_is_the_commands_own_help() -> None:
    assert CLI_MD.read_text(encoding="utf-8") == render_cli_markdown(), (
        "docs/cli.md is stale: run python tools/docgen.py")


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


def test_docgen_is_not_in_the_package() -> None:
    """A developer's tool does not ship in the wheel."""
    assert importlib.util.find_spec("postgresqlpatches.docgen") is None
    assert (ROOT / "tools" / "docgen.py").is_file()
