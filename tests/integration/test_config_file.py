"""The config file against a real server: command line > environment > file > defaults, the
file's globs, and every mistake in the file as one line, exit 2, nothing done."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.conftest import STATE_PATCHES, Pg

# the config file is pgpatch's, the same on every major: on one major only (conftest.py)
pytestmark = pytest.mark.one_major

BASELINE = "CREATE DATABASE app;\n\\connect app\nCREATE TABLE t (a int, b int);\n"
DROP = "ALTER TABLE t DROP COLUMN a;\n"


@pytest.fixture
def project(pg: Pg, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: a project folder holding the patch tree (pg.tree)."""
    pg.tree.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(pg.tree)
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("db/app.20240101.0001.postgres.drop.sql", DROP)
    return pg.tree


def config(project: Path, text: str) -> None:
    (project / "pgpatch.toml").write_text(text)


def state_databases(pg: Pg) -> set[str]:
    return pg.databases() - {"app"}


def planned_state_db(pg: Pg, *args: str) -> str:
    """The state database a plan would use: the database of the state's own rows."""
    result = pg.cli("plan", "--format", "json", *args)
    data = json.loads(result.stdout)
    return next(p["database"] for p in data["patches"] if p["path"].startswith("<pgpatch>"))


def test_the_files_globs_are_used_when_none_are_given(pg: Pg, project: Path) -> None:
    config(project, 'patches = ["*.sql", "db/*.sql"]\n')
    (project / "sub").mkdir()
    os.chdir(project / "sub")  # found in the parent folder; globs relative to its folder
    result = pg.cli("apply")
    assert result.exit_code == 0, result.stderr
    assert pg.query("SELECT count(*) FROM pg_tables WHERE tablename = 't'", "app") == [(1,)]
    # a glob on the command line replaces the file's
    only = pg.cli("plan", str(project / "*.sql"), "--format", "json")
    assert only.exit_code == 0
    assert [p["description"] for p in json.loads(only.stdout)["patches"]
            if p["database"] == "app"] == ["baseline"]


def test_file_beats_default_and_command_line_beats_file(pg: Pg, project: Path) -> None:
    config(project, 'state_db = "from_file"\npatches = ["**/*.sql"]\n')
    assert pg.cli("apply").exit_code == 0
    assert state_databases(pg) == {"from_file"}
    assert pg.query("SELECT count(*)::int FROM installed_patches", "from_file") == [
        (STATE_PATCHES + 2,)]
    assert planned_state_db(pg) == "from_file"
    assert planned_state_db(pg, "--state-db", "from_line") == "from_line"


def test_lint_from_the_file_and_the_command_line_over_it(pg: Pg, project: Path) -> None:
    pg.query("CREATE DATABASE app")  # lint looks at patches to databases that exist
    pg.query("CREATE TABLE t (a int, b int)", "app")
    config(project, 'lint = "error"\npatches = ["**/*.sql"]\n')
    refused = pg.cli("apply", "--adopt")
    assert refused.exit_code == 1
    assert "drop-column" in refused.stderr
    assert pg.databases() == {"app"}
    assert pg.cli("apply", "--adopt", "--lint", "warn").exit_code == 0
    assert pg.query("SELECT count(*)::int FROM pg_attribute WHERE attrelid = 't'::regclass "
                    "AND attname = 'a'", "app") == [(0,)]


def test_environment_beats_file_and_command_line_beats_environment(
        pg: Pg, project: Path) -> None:
    """libpq's PGPORT is the environment of --port: it wins over the file's port (here a
    port nothing listens on), and --port wins over both."""
    config(project, 'port = 1\npatches = ["**/*.sql"]\n')
    real = pg.env["PGPORT"]
    assert pg.cli("plan", env={"PGPORT": real}).exit_code == 0  # environment > file
    from_file = pg.cli("plan", env={"PGPORT": None})  # file > default (5432)
    assert from_file.exit_code == 1
    assert ":1" in from_file.stderr or " 1" in from_file.stderr, from_file.stderr
    assert pg.cli("plan", "--port", real, env={"PGPORT": "1"}).exit_code == 0  # line > env
    assert pg.cli("plan", "--port", real, env={"PGPORT": None}).exit_code == 0  # line > file


def test_an_explicit_config_replaces_the_search(pg: Pg, project: Path) -> None:
    config(project, 'lok_wait = 1\n')  # broken, but not read: --config names another file
    other = project / "elsewhere.toml"
    other.write_text('state_db = "elsewhere"\npatches = ["**/*.sql"]\n')
    result = pg.cli("apply", "--config", str(other))
    assert result.exit_code == 0, result.stderr
    assert state_databases(pg) == {"elsewhere"}
    # before the command's name too, and in a real process
    proc = pg.run("--config", str(other), "status")
    assert proc.returncode == 0, proc.stderr


def test_pgpatch_toml_wins_over_pyproject_in_one_folder(pg: Pg, project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.pgpatch]\nstate_db = "from_pyproject"\n'
                                            'patches = ["**/*.sql"]\n')
    assert planned_state_db(pg) == "from_pyproject"
    config(project, 'state_db = "from_toml"\npatches = ["**/*.sql"]\n')
    assert planned_state_db(pg) == "from_toml"


@pytest.mark.parametrize("text, error", [
    ("lok_wait = 3\n", "error: pgpatch.toml: key 'lok_wait' is not known (known: host, port, "
     "prefix, state_db, strict_passwords, log_level, lint, lock_wait, lock_timeout, "
     "statement_timeout, patches, target, targets, groups); did you mean 'lock_wait'?"),
    ("lock_wait = 'long'\n", "error: pgpatch.toml: key 'lock_wait' must be a number of "
     "seconds, 0 or more (got 'long')"),
    ("password = 'hunter2-secret'\n", "error: pgpatch.toml: key 'password': passwords never go "
     "in the config file; they come from the environment, {PREFIX}{USER}_PASSWORD (or libpq's "
     "pgpass)"),
    ("target = 'prod'\n", "error: pgpatch.toml: key 'target' names the target 'prod', which "
     "is not defined (the file defines no [targets])"),
    ("lock_wait = \n", "error: pgpatch.toml: not valid TOML: Invalid value (at line 1, "
     "column 13)"),
    ("[groups.t]\ndatabases = 't_*'\npassword = 'hunter2-secret'\n",
     "error: pgpatch.toml: key 'groups.t.password': passwords never go in the config file; "
     "they come from the environment, {PREFIX}{USER}_PASSWORD (or libpq's pgpass)"),
])
@pytest.mark.parametrize("command", [("apply", "**/*.sql"), ("status",),
                                     ("new", "app", "app", "x")])
def test_every_mistake_in_the_file_is_one_line_exit_2_whatever_the_command(
        pg: Pg, project: Path, text: str, error: str, command: tuple[str, ...]) -> None:
    config(project, text)
    before = sorted(p.name for p in project.rglob("*"))
    result = pg.cli(*command)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [error]
    assert result.stdout == ""
    assert "hunter2" not in result.output
    assert pg.databases() == set()
    assert sorted(p.name for p in project.rglob("*")) == before


def test_a_missing_given_config_and_an_unreadable_one(pg: Pg, project: Path) -> None:
    missing = pg.cli("apply", "--config", "nope.toml")
    assert (missing.exit_code, missing.stderr) == (
        2, "error: nope.toml: the config file given with --config does not exist\n")
    folder = pg.cli("status", "--config", str(project))
    assert (folder.exit_code, folder.stderr) == (
        2, f"error: {project}: cannot read the config file: Is a directory\n")
    config(project, "")
    (project / "pgpatch.toml").chmod(0)
    try:
        if os.access(project / "pgpatch.toml", os.R_OK):
            pytest.skip("running as a user who reads any file")
        unreadable = pg.cli("status")
        assert (unreadable.exit_code, unreadable.stderr) == (
            2, "error: pgpatch.toml: cannot read the config file: Permission denied\n")
    finally:
        (project / "pgpatch.toml").chmod(0o644)
    assert pg.databases() == set()


def test_a_real_process_reports_a_bad_file_without_traceback(pg: Pg, project: Path) -> None:
    config(project, "port = 'x'\n")
    proc = pg.run("apply", "**/*.sql")
    assert proc.returncode == 2
    assert proc.stderr == ("error: pgpatch.toml: key 'port' must be an integer from 1 to "
                           "65535 (got 'x')\n")


def test_help_works_with_a_broken_file(pg: Pg, project: Path) -> None:
    config(project, "lok_wait = 3\n")
    assert pg.cli("plan", "--help").exit_code == 0
    assert pg.cli("--help").exit_code == 0

