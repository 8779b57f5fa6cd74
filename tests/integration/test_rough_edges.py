"""What a new user sees on day one, against real servers: status says who ran what with
which pgpatch and how long each patch took, bootstraps included; empty patches are named."""

from __future__ import annotations

import getpass
import json

import pytest

from postgresqlpatches import __version__
from postgresqlpatches.cli.render import NOT_TIMED_NOTE
from tests.integration.conftest import Pg

# status and warnings are pgpatch's rendering, the same on every major: on one major only
# (tests/conftest.py)
pytestmark = pytest.mark.one_major


def test_status_shows_run_by_pgpatch_version_and_how_long_bootstraps_took(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql",
             "CREATE ROLE app LOGIN PASSWORD 'app-pw-2';\nCREATE DATABASE app OWNER app;\n")
    pg.write("app.00000000.0001.app.seed.sql", "CREATE TABLE t (a int);\n")
    pg.write("app.20240101.0001.app.one.sql", "INSERT INTO t VALUES (1);\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    records = json.loads(pg.cli("status", "--format", "json").stdout)["records"]
    own_baseline = "patches.00000000.0000.postgres.baseline.sql"
    assert [r["name"] for r in records][:3] == [
        "app.00000000.0000.postgres.baseline.sql", "app.00000000.0001.app.seed.sql",
        "app.20240101.0001.app.one.sql"]
    me = getpass.getuser()
    for r in records:
        if r["name"] == own_baseline:
            # recorded in the original tool's table, before the upgrade that adds the columns
            assert (r["duration_ms"], r["run_by"]) == (None, None)
            continue
        assert r["duration_ms"] is not None and r["duration_ms"] > 0, r
        assert (r["run_by"], r["pgpatch_version"]) == (me, __version__), r
    lines = pg.cli("status").stdout.splitlines()
    assert lines[0].split() == ["database", "version", "user", "description", "installed",
                                "ms", "state", "run", "by", "pgpatch"]
    assert lines[-1] == NOT_TIMED_NOTE
    assert NOT_TIMED_NOTE.startswith("ms -: not timed: the state database's own baseline")
    for line in lines[1:-1]:
        cells = line.split()
        if cells[:2] == ["patches", "00000000.0000"]:
            assert cells[-2:] == ["-", "applied"]
            continue
        assert cells[-3:] == ["applied", me, __version__], line
        assert cells[-4].isdigit(), line  # the duration, bootstraps included


def test_status_marks_records_without_a_duration_and_says_why(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql",
             "CREATE ROLE app LOGIN PASSWORD 'app-pw-2';\nCREATE DATABASE app OWNER app;\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.query("UPDATE installed_patches SET duration_ms = NULL, run_by = NULL, "
             "pgpatch_version = NULL WHERE name LIKE 'app.%'", "patches")
    lines = pg.cli("status").stdout.splitlines()
    row = next(line for line in lines if line.startswith("app "))
    assert row.split()[-2:] == ["-", "applied"]
    assert lines[-1] == NOT_TIMED_NOTE
    record = json.loads(pg.cli("status", "--format", "json").stdout)["records"][0]
    assert (record["name"], record["duration_ms"], record["run_by"],
            record["pgpatch_version"]) == ("app.00000000.0000.postgres.baseline.sql", None,
                                           None, None)


def test_apply_warns_of_an_empty_patch_and_records_it(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql",
             "CREATE ROLE app LOGIN PASSWORD 'app-pw-2';\nCREATE DATABASE app OWNER app;\n")
    empty = pg.write("app.20240101.0001.app.forgotten.sql", "-- TODO: write the body\n")
    pg.write("app.20240101.0002.app.real.sql", "CREATE TABLE t (a int);\n")
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.stderr
    assert _empty_warning(empty) in result.stderr.splitlines()
    blank = pg.write("app.20240102.0001.app.blank.sql", "\n")
    as_json = pg.cli("apply", "--format", "json", pg.glob())
    assert as_json.exit_code == 0, as_json.stderr
    assert as_json.stderr.splitlines() == [_empty_warning(blank)]
    assert [p["flags"] for p in json.loads(as_json.stdout)["applied"]] == [["empty"]]
    rows = pg.query("SELECT name::text FROM installed_patches WHERE name LIKE 'app.2%' "
                    "ORDER BY 1", "patches")
    assert rows == [("app.20240101.0001.app.forgotten.sql",), ("app.20240101.0002.app.real.sql",),
                    ("app.20240102.0001.app.blank.sql",)]
    assert "warning" not in pg.cli("apply", pg.glob()).stderr  # nothing pending: no warning


def _empty_warning(path: object) -> str:
    return (f"warning: {path}: the file holds no SQL statement (only comments or blank "
            "lines): apply records it as applied and runs nothing [empty]")
