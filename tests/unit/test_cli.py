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


def _invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def test_a_mistyped_command_is_a_usage_error_not_an_apply(tmp_path: Path) -> None:
    result = _invoke("aply", "db/*.sql")
    assert result.exit_code == 2
    assert "no such command 'aply'; did you mean 'apply'?" in result.output


def test_a_bare_word_that_is_no_command_is_not_taken_for_a_glob() -> None:
    result = _invoke("frobnicate")
    assert result.exit_code == 2
    assert "no such command 'frobnicate'" in result.output


def test_a_command_option_before_the_command_is_a_usage_error(tmp_path: Path) -> None:
    result = _invoke("--lint=off", "plan", "--offline", str(tmp_path / "*.sql"))
    assert result.exit_code == 2
    assert "--lint=off goes after the command: pgpatch plan --lint=off ..." in result.output


def test_common_options_before_the_command_still_work(tmp_path: Path) -> None:
    (tmp_path / "app.20240101.0001.app.one.sql").write_text("select 1;\n")
    result = _invoke("-l", "info", "plan", "--offline", str(tmp_path / "*.sql"))
    assert result.exit_code == 0, result.output


def test_log_level_before_new_works(tmp_path: Path) -> None:
    result = _invoke("-l", "debug", "new", "app", "app", "add_orders", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()][0].endswith(".0001.app.add_orders.sql")


def test_an_option_a_command_does_not_take_is_named(tmp_path: Path) -> None:
    result = _invoke("--host", "db", "new", "app", "app", "x", "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert "--host does not apply to pgpatch new" in result.output


def test_the_seed_form_with_a_path_still_means_apply(tmp_path: Path) -> None:
    # no server here: apply is tried and fails to connect (exit 1), it is no usage error
    (tmp_path / "app.20240101.0001.app.one.sql").write_text("select 1;\n")
    result = CliRunner().invoke(cli.main, ["-l", "error", str(tmp_path / "*.sql")],
                                env={"PGHOST": "127.0.0.1", "PGPORT": "1",
                                     "PGCONNECT_TIMEOUT": "2"})
    assert result.exit_code == 1
    assert "cannot connect" in result.output
