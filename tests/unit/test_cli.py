"""The CLI wrapper's own duties around every command."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from click.testing import CliRunner

from postgresqlpatches import runner
from postgresqlpatches.cli import main


@pytest.mark.parametrize("text, exit_code", [("select 1;\n", 0), ("selec 1;\n", 1)])
@pytest.mark.parametrize("before", [True, False])
def test_a_command_runs_without_the_cycle_collector_and_gives_it_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, exit_code: int,
        before: bool) -> None:
    """cli.py says why; it comes back after the command, also after a failed one, and stays
    off if it was off before."""
    (tmp_path / "app.20240101.0001.app.one.sql").write_text(text)
    during: list[bool] = []
    real = runner.plan_offline

    def spy(options: runner.Options) -> runner.Plan:
        during.append(gc.isenabled())
        return real(options)

    monkeypatch.setattr(runner, "plan_offline", spy)
    was = gc.isenabled()
    try:
        (gc.enable if before else gc.disable)()
        result = CliRunner().invoke(main, ["plan", "--offline", str(tmp_path / "*.sql")])
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert result.exit_code == exit_code, result.output
    assert during == [False]
    assert after is before


@pytest.mark.parametrize("text, exit_code", [("select 1;\n", 0), ("selec 1;\n", 1)])
def test_the_console_entry_point_keeps_the_exit_code_and_leaves_the_heap_to_the_os(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, exit_code: int) -> None:
    """run() = main() with the run's objects frozen out of the cycle collector at the end
    (cli.run says why)."""
    from postgresqlpatches import cli

    (tmp_path / "app.20240101.0001.app.one.sql").write_text(text)
    monkeypatch.setattr("sys.argv", ["pgpatch", "plan", "--offline", str(tmp_path / "*.sql")])
    monkeypatch.setattr(cli, "_console", False)  # run() sets it; restored after the test
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.run()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    assert stopped.value.code == exit_code
    assert frozen > 0
