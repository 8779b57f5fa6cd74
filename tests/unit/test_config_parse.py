"""The config file's text to a Config or one ConfigError line (core/config.py), and the search
for the file (cli/configfile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from postgresqlpatches.cli.configfile import find_config, load_config, patch_globs
from postgresqlpatches.core.config import ConfigError, Target, parse_config

FULL = """
patches = ["db/**/*.sql"]
host = "db.internal"
port = 6432
prefix = "PG_"
state_db = "state"
strict_passwords = true
log_level = "info"
lint = "error"
lock_wait = 30
lock_timeout = 2000
statement_timeout = 0
target = ["prod", "stage"]

[targets.prod]
host = "prod.internal"
port = 5433
sslmode = "verify-full"
sslrootcert = "/etc/ca.pem"
prefix = "PROD_"

[targets.stage]
host = "stage.internal"

[groups.tenants]
databases = ["tenant_*", "demo"]
"""


def test_a_full_file_gives_every_value_typed_and_in_file_order() -> None:
    config = parse_config(FULL, "pgpatch.toml")
    assert config is not None
    assert config.path == "pgpatch.toml"
    assert config.patches == ("db/**/*.sql",)
    assert config.options == {"host": "db.internal", "port": 6432, "prefix": "PG_",
                              "state_db": "state", "strict_passwords": True,
                              "log_level": "info", "lint": "error", "lock_wait": 30.0,
                              "lock_timeout": 2000, "statement_timeout": 0}
    assert list(config.targets) == ["prod", "stage"]
    assert config.targets["prod"] == Target(
        "prod", host="prod.internal", port=5433, prefix="PROD_",
        settings={"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"})
    assert config.targets["stage"] == Target("stage", host="stage.internal")
    assert config.groups == {"tenants": ("tenant_*", "demo")}
    assert config.default_targets == ("prod", "stage")


def test_an_empty_file_is_a_config_with_nothing_set() -> None:
    config = parse_config("", "pgpatch.toml")
    assert config is not None
    assert (config.options, config.patches, config.targets, config.groups) == ({}, (), {}, {})


def test_a_single_glob_may_be_a_string() -> None:
    config = parse_config('patches = "db/*.sql"\n', "pgpatch.toml")
    assert config is not None and config.patches == ("db/*.sql",)


@pytest.mark.parametrize("text, message", [
    ("lok_wait = 3\n",
     "pgpatch.toml: key 'lok_wait' is not known (known: host, port, prefix, state_db, "
     "strict_passwords, log_level, lint, lock_wait, lock_timeout, statement_timeout, patches, "
     "target, targets, groups); did you mean 'lock_wait'?"),
    ("password = 'secret'\n",
     "pgpatch.toml: key 'password': passwords never go in the config file; they come from the "
     "environment, {PREFIX}{USER}_PASSWORD (or libpq's pgpass)"),
    ("[targets.prod]\npassword = 'secret'\n",
     "pgpatch.toml: key 'targets.prod.password': passwords never go in the config file; they "
     "come from the environment, {PREFIX}{USER}_PASSWORD (or libpq's pgpass)"),
    ("port = '5432'\n", "pgpatch.toml: key 'port' must be an integer from 1 to 65535 "
     "(got '5432')"),
    ("port = 0\n", "pgpatch.toml: key 'port' must be an integer from 1 to 65535 (got 0)"),
    ("lock_wait = -1\n", "pgpatch.toml: key 'lock_wait' must be a number of seconds, 0 or more "
     "(got -1)"),
    ("lock_wait = true\n", "pgpatch.toml: key 'lock_wait' must be a number of seconds, 0 or "
     "more (got true)"),
    ("lint = 'strict'\n", "pgpatch.toml: key 'lint' must be one of error, warn, off "
     "(got 'strict')"),
    ("strict_passwords = 'yes'\n", "pgpatch.toml: key 'strict_passwords' must be true or false "
     "(got 'yes')"),
    ("state_db = 'Patches'\n", "pgpatch.toml: key 'state_db' must be a plain database name (the "
     "state database 'Patches' is not a plain PostgreSQL identifier (lower-case letters, "
     "digits and _, not starting with a digit)) (got 'Patches')"),
    ("host = 'postgresql://u:secret@db/x'\n", "pgpatch.toml: key 'host' must be a host name, "
     "IP address or socket folder, not a connection URI or conninfo string (those may carry a "
     "password) (got a string)"),
    ("patches = [1]\n", "pgpatch.toml: key 'patches' must be a string or a list of non-empty "
     "strings (got [1])"),
    ("target = 'prod'\n", "pgpatch.toml: key 'target' names the target 'prod', which is not "
     "defined (the file defines no [targets])"),
    ("target = ['a', 'b']\n[targets.a]\n", "pgpatch.toml: key 'target' names the target 'b', "
     "which is not defined (defined: a)"),
    ("targets = 3\n", "pgpatch.toml: key 'targets' must be a table (got 3)"),
    ("[targets.prod]\nsslmod = 'require'\n",
     "pgpatch.toml: key 'targets.prod.sslmod' is not known (known: host, port, prefix, "
     "sslmode, sslrootcert, sslcert, sslkey, sslcrl, connect_timeout, target_session_attrs); "
     "did you mean 'sslmode'?"),
    ("[targets.prod]\nsslmode = 'on'\n", "pgpatch.toml: key 'targets.prod.sslmode' must be one "
     "of disable, allow, prefer, require, verify-ca, verify-full (got 'on')"),
    ("[targets.all]\n", "pgpatch.toml: 'targets.all': 'all' stands for every target and cannot "
     "name one"),
    ("[targets.Prod]\n", "pgpatch.toml: 'targets.Prod': the target name 'Prod' is not a plain "
     "name (lower-case letters, digits and _, not starting with a digit)"),
    ("[groups.tenants]\n", "pgpatch.toml: 'groups.tenants' has no key 'databases' (a list of "
     "database name patterns, e.g. [\"tenant_*\"])"),
    ("[groups.tenants]\ndatabases = 'tenant_*'\nmembers = []\n",
     "pgpatch.toml: key 'groups.tenants.members' is not known (known: databases)"),
    ("[groups.tenants]\ndatabases = [true]\n", "pgpatch.toml: key 'groups.tenants.databases' "
     "must be a string or a list of non-empty strings (got [True])"),
    ("port = \n", "pgpatch.toml: not valid TOML: Invalid value (at line 1, column 8)"),
])
def test_each_mistake_is_one_line_naming_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "pgpatch.toml")
    assert str(raised.value) == message
    assert raised.value.exit_code == 2


def test_a_pyproject_counts_only_with_its_tool_pgpatch_table() -> None:
    assert parse_config("[tool.ruff]\nline-length = 100\n", "pyproject.toml",
                        pyproject=True) is None
    config = parse_config("[tool.pgpatch]\nlint = 'off'\n", "pyproject.toml", pyproject=True)
    assert config is not None and config.options == {"lint": "off"}
    with pytest.raises(ConfigError, match=r"^pyproject.toml: key 'tool.pgpatch.lnt' is not"):
        parse_config("[tool.pgpatch]\nlnt = 'off'\n", "pyproject.toml", pyproject=True)


def test_the_search_stops_at_the_first_folder_with_a_config(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (tmp_path / "pgpatch.toml").write_text("")
    (tmp_path / "a" / "b" / "pyproject.toml").write_text("[tool.pgpatch]\n")
    (tmp_path / "a" / "b" / "c" / "pyproject.toml").write_text("[tool.ruff]\n")
    # c's pyproject has no [tool.pgpatch]: skipped; b's has: found, tmp_path's never reached
    assert find_config(str(deep)) == str(tmp_path / "a" / "b" / "pyproject.toml")
    (tmp_path / "a" / "b" / "pgpatch.toml").write_text("")
    assert find_config(str(deep)) == str(tmp_path / "a" / "b" / "pgpatch.toml")


def test_globs_are_relative_to_the_files_folder(tmp_path: Path) -> None:
    (tmp_path / "pgpatch.toml").write_text("patches = ['db/*.sql', '/abs/*.sql']\n")
    (tmp_path / "sub").mkdir()
    config = load_config(None, str(tmp_path / "sub"))
    assert config is not None and config.path == "../pgpatch.toml"
    assert patch_globs(config) == ("../db/*.sql", "/abs/*.sql")
    config = load_config(None, str(tmp_path))
    assert config is not None and patch_globs(config) == ("db/*.sql", "/abs/*.sql")


def test_a_given_file_that_is_missing_or_has_no_table_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^nope.toml: the config file given with --config "
                                          "does not exist$"):
        load_config("nope.toml", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\n")
    with pytest.raises(ConfigError, match="has no \\[tool.pgpatch\\] table$"):
        load_config(str(tmp_path / "pyproject.toml"), str(tmp_path))
