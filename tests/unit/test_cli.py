"""The console entry point's own duties around every command."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
from click.testing import CliRunner

from postgresqlpatches import cli, runner


def _spy_on_the_collector(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the cycle collector was on while the command planned."""
    during: list[bool] = []
    real = runner.plan_offline

    def spy(options: runner.Options) -> runner.Plan:
        during.append(gc.isenabled())
        return real(options)

    monkeypatch.setattr(runner, "plan_offline", spy)
    return during


@pytest.mark.parametrize("text, exit_code", [("select 1;\n", 0), ("selec 1;\n", 1)])
def test_the_console_entry_point_runs_without_the_cycle_collector(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, exit_code: int) -> None:
    """run() = main() with the collector off and the run's objects frozen out of its last
    walk (cli.run says why); the exit code is main()'s, also for a failed plan."""
    (tmp_path / "app.20240101.0001.app.one.sql").write_text(text)
    during = _spy_on_the_collector(monkeypatch)
    monkeypatch.setattr("sys.argv", ["pgpatch", "plan", "--offline", str(tmp_path / "*.sql")])
    was = gc.isenabled()
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.run()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
    assert stopped.value.code == exit_code
    assert during == [False]
    assert frozen > 0


@pytest.mark.parametrize("before", [True, False])
def test_main_in_process_leaves_the_collector_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: bool) -> None:
    (tmp_path / "app.20240101.0001.app.one.sql").write_text("select 1;\n")
    during = _spy_on_the_collector(monkeypatch)
    was = gc.isenabled()
    try:
        (gc.enable if before else gc.disable)()
        result = CliRunner().invoke(cli.main, ["plan", "--offline", str(tmp_path / "*.sql")])
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert result.exit_code == 0, result.output
    assert during == [before]
    assert after is before
