"""A server error that no step expected leaves the runner as the project's ServerError (its
SQLSTATE a value) and reaches the user as one line, as it always did: no traceback."""

from __future__ import annotations

import pytest

from postgresqlpatches import runner
from postgresqlpatches.errors import ServerError
from tests.integration.conftest import Pg

# how a driver error reaches the user is pgpatch's mapping, the same on every major: on one
# major only (tests/conftest.py)
pytestmark = pytest.mark.one_major


def _break_the_state_table(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", "CREATE DATABASE app;\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.query("ALTER TABLE installed_patches RENAME COLUMN minor TO minor_by_hand", db="patches")


def test_a_driver_error_leaves_the_runner_as_a_server_error_with_its_sqlstate(
        pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    _break_the_state_table(pg)
    for name, value in pg.env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ServerError) as caught:
        runner.status(runner.Options())
    assert caught.value.sqlstate == "42703"  # undefined_column
    assert caught.value.reason == 'column ip.minor does not exist'


def test_a_driver_error_reaches_the_user_as_one_line_and_exit_1(pg: Pg) -> None:
    _break_the_state_table(pg)
    proc = pg.run("status")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: the server failed: column ip.minor does not exist",
        "hint: run with -l debug for the traceback"]
    assert proc.stdout == ""
    debug = pg.run("-l", "debug", "status")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "UndefinedColumn" in debug.stderr
