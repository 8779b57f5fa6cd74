"""Which targets -t picks, and how a target's settings reach libpq and psql."""

from __future__ import annotations

import pytest

from postgresqlpatches import fleet, runner
from postgresqlpatches.core import config
from postgresqlpatches.pg.server import TARGET_SETTINGS

KNOWN = ["us1", "eu1", "eu2"]


@pytest.mark.parametrize(("wanted", "chosen"), [
    (["all"], ["us1", "eu1", "eu2"]),
    (["eu2", "us1"], ["eu2", "us1"]),
    (["eu2", "eu2"], ["eu2"]),
    (["eu1", "all"], ["eu1", "us1", "eu2"]),
    (["all", "eu1"], ["us1", "eu1", "eu2"]),
])
def test_targets_in_the_order_asked_each_once(wanted: list[str], chosen: list[str]) -> None:
    assert fleet.select_targets(KNOWN, wanted, "pgpatch.toml") == chosen


def test_an_unknown_target_names_the_file_and_the_known_ones() -> None:
    with pytest.raises(fleet.UnknownTarget) as caught:
        fleet.select_targets(KNOWN, ["eu1", "eu3"], "ops/pgpatch.toml")
    assert caught.value.exit_code == 2
    assert caught.value.message == ("-t/--target: no target 'eu3' in ops/pgpatch.toml (its "
                                    "targets: us1, eu1, eu2; or all)")


def test_every_libpq_setting_a_target_may_give_reaches_psql() -> None:
    """Each key of [targets.NAME] but host, port and prefix has the PG* variable psql reads."""
    assert set(config.TARGET_KEYS) - {"host", "port", "prefix"} == set(TARGET_SETTINGS)


def test_a_target_keeps_the_runs_options_with_its_own_server() -> None:
    base = runner.Options(globs=("db/*.sql",), host="elsewhere", port=1, prefix="POSTGRESQL_",
                          lint="error")
    target = fleet.make_target(config.Target("eu1", host="db1", port=6432, prefix="EU1_",
                                             settings={"sslmode": "verify-full",
                                                       "connect_timeout": 5}), base)
    options = target.options
    assert (options.globs, options.lint) == (("db/*.sql",), "error")
    assert (options.host, options.port, options.prefix) == ("db1", 6432, "EU1_")
    server = options.server()
    assert server.libpq_params() == {"host": "db1", "port": "6432", "sslmode": "verify-full",
                                     "connect_timeout": "5"}
    assert server._connect_timeout() == 5
    assert fleet.make_target(config.Target("us1", host="db2"), base).options.prefix == (
        "POSTGRESQL_")
