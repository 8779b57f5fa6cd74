"""Passwords: masking what the server quotes back, the variables a baseline names, the
fallback to the user name (no server: the lines psql and PostgreSQL really print)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from postgresqlpatches.cli import main
from postgresqlpatches.core.redact import known_passwords, redact
from postgresqlpatches.pg.server import ORIGINAL_TOOL_VARIABLE, Server, baseline_variables

VERIFIER = ("SCRAM-SHA-256$4096:WHxGG2S91SAuZ8IjaFi+Fg==$KAxk6q9pQFglORf+Dee4RrkJl+IN8fIZnOl"
            "J44UTcPI=:GradfkJpd7UTEy0OCuAMUGKpVrSkIeLp6t4zX0nFyqw=")


@pytest.mark.parametrize("text, expected", [
    # psql's context, the statement fits
    ("LINE 1: CREATE ROLE app LOGIN PASSWORD 'app-pw-2' BOGUS;",
     "LINE 1: CREATE ROLE app LOGIN PASSWORD '***' BOGUS;"),
    ("STATEMENT:  ALTER ROLE app password E'it''s' VALID UNTIL 'x'",
     "STATEMENT:  ALTER ROLE app password '***' VALID UNTIL 'x'"),
    # a verifier, whole, cut at its start (psql's "...") and cut at its end
    (f"CREATE ROLE app PASSWORD '{VERIFIER}'", "CREATE ROLE app PASSWORD '***'"),
    ("LINE 1: ...4UTcPI=:GradfkJpd7UTEy0OCuAMUGKpVrSkIeLp6t4zX0nFyqw=' BOGUS;",
     "LINE 1: ...***' BOGUS;"),
    ("LINE 1: CREATE ROLE app NOINHERIT PASSWORD 'SCRAM-SHA-256$4096:WHxGG2S91SAuZ8...",
     "LINE 1: CREATE ROLE app NOINHERIT PASSWORD '***'"),
    ("md5 of it: md5" + "0123456789abcdef" * 2, "md5 of it: ***"),
    # a clear literal cut where the keyword is gone: the part that may be inside it
    ("LINE 1: ...ord-Of-Some-Length' BOGUS;", "LINE 1: ...***' BOGUS;"),
    ("LINE 2: SELECT 'a-secret-that-goes-on-and-on...", "LINE 2: SELECT '***..."),
    # no password: left as it is
    ("LINE 1: SELECT 'abc' AND nosuch;", "LINE 1: SELECT 'abc' AND nosuch;"),
    ('role "app" already exists', 'role "app" already exists'),
])
def test_redact_masks_passwords_in_server_and_psql_text(text: str, expected: str) -> None:
    assert redact(text, secrets=()) == expected


def test_redact_masks_the_known_passwords_anywhere() -> None:
    text = 'invalid input syntax for type integer: "app-pw-2"; also pw-xyz and abc'
    assert redact(text, {"app-pw-2", "pw-xyz", "abc"}) == (
        'invalid input syntax for type integer: "***"; also *** and abc')  # abc: too short


def test_known_passwords_are_the_password_variables_but_a_roles_own_name() -> None:
    env = {"POSTGRESQL_APP_PASSWORD": "app-pw-2", "PGPASSWORD": "su-pw-1",
           "POSTGRESQL_POSTGRES_PASSWORD": "postgres", "PGPATCH_X_PASSWORD": "xx-pw-3",
           "HOME": "/root-secret"}
    assert known_passwords(env) == {"app-pw-2", "su-pw-1", "xx-pw-3"}


@pytest.mark.parametrize("text, prefix, expected", [
    ("\\getenv pw PGPATCH_APP_PASSWORD\n", "POSTGRESQL_", {"PGPATCH_APP_PASSWORD": "app"}),
    ("\\getenv pw POSTGRESQL_MY_APP_PASSWORD\n", "POSTGRESQL_",
     {"POSTGRESQL_MY_APP_PASSWORD": "my_app"}),
    ("\\getenv pw MYAPP_APP_PASSWORD\n\\getenv x POSTGRESQL_APP_PASSWORD", "MYAPP",
     {"MYAPP_APP_PASSWORD": "app"}),
    (f"\\getenv pw {ORIGINAL_TOOL_VARIABLE}\n", "POSTGRESQL_", {ORIGINAL_TOOL_VARIABLE: "shop"}),
    ("-- set POSTGRESQL_<ROLE>_PASSWORD; X_PGPATCH_APP_PASSWORD_2\n", "POSTGRESQL_", {}),
    ("CREATE DATABASE shop;\n", "POSTGRESQL_", {}),
])
def test_baseline_variables_are_the_password_variables_a_file_names(
        text: str, prefix: str, expected: dict[str, str]) -> None:
    assert baseline_variables(text, prefix, "shop") == expected


def test_psql_environment_holds_verifiers_and_its_users_password_only() -> None:
    environ = {"POSTGRESQL_POSTGRES_PASSWORD": "su-pw-1", "POSTGRESQL_APP_PASSWORD": "app-pw-2",
               "PGPASSWORD": "other", "PGPATCH_OLD_PASSWORD": "old", "PGHOST": "db"}
    server = Server(environ=environ)
    env = server.psql_environment("app", {"PGPATCH_APP_PASSWORD": "app",
                                          "PGPATCH_NEW_PASSWORD": "new"},
                                  lambda password, role: f"verifier({password},{role})")
    assert {k: v for k, v in env.items() if k.endswith("PASSWORD")} == {
        "PGPASSWORD": "app-pw-2", "PGPATCH_APP_PASSWORD": "verifier(app-pw-2,app)",
        "PGPATCH_NEW_PASSWORD": "verifier(new,new)"}
    assert env["PGHOST"] == "db"


def test_log_lines_and_errors_are_masked_at_the_edge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from postgresqlpatches import runner
    from postgresqlpatches.errors import PgpatchError

    def leaky(options: runner.Options) -> runner.Plan:
        logging.getLogger("pgpatch").warning("LINE 1: ALTER ROLE x PASSWORD 'su-pw-1'")
        raise PgpatchError("server said: su-pw-1", hint="try app-pw-2")

    monkeypatch.setattr(runner, "plan_offline", leaky)
    result = CliRunner().invoke(main, ["plan", "--offline", str(tmp_path / "*.sql")],
                                env={"POSTGRESQL_X_PASSWORD": "su-pw-1",
                                     "POSTGRESQL_APP_PASSWORD": "app-pw-2"})
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["warning: LINE 1: ALTER ROLE x PASSWORD '***'",
                                          "error: server said: ***", "hint: try ***"]


def test_strict_passwords_offline_names_every_role_without_its_variable(tmp_path: Path) -> None:
    (tmp_path / "app.00000000.0000.postgres.baseline.sql").write_text(
        "\\getenv pw PGPATCH_APP_PASSWORD\nCREATE ROLE app LOGIN PASSWORD :'pw';\n"
        "CREATE DATABASE app OWNER app;\n")
    (tmp_path / "app.20240101.0001.rep.t.sql").write_text("SELECT 1;\n")
    env = {k: None for k in ("POSTGRESQL_APP_PASSWORD", "POSTGRESQL_REP_PASSWORD",
                             "POSTGRESQL_PATCHES_PASSWORD")}
    env["POSTGRESQL_POSTGRES_PASSWORD"] = "su-pw-1"
    glob = str(tmp_path / "*.sql")
    strict = CliRunner().invoke(main, ["plan", "--offline", "--strict-passwords", "--format",
                                       "json", glob], env=env)
    assert strict.exit_code == 1
    problems = json.loads(strict.stdout)["problems"]
    assert [(p["kind"], Path(p["path"]).name, p["message"]) for p in problems] == [
        ("password", "patches.00000000.0000.postgres.baseline.sql",
         "POSTGRESQL_PATCHES_PASSWORD is not set: role patches would get its name as password"),
        ("password", "app.00000000.0000.postgres.baseline.sql",
         "POSTGRESQL_APP_PASSWORD is not set: role app would get its name as password"),
        ("password", "app.20240101.0001.rep.t.sql",
         "POSTGRESQL_REP_PASSWORD is not set: pgpatch would log in as rep with its name as "
         "password")]
    warned = CliRunner().invoke(main, ["plan", "--offline", glob], env=env)
    assert warned.exit_code == 0
    assert [x for x in warned.stderr.splitlines() if x.startswith("warning")] == [
        "warning: POSTGRESQL_PATCHES_PASSWORD is not set: role patches gets its name as "
        "password (patches.00000000.0000.postgres.baseline.sql creates it)",
        "warning: POSTGRESQL_APP_PASSWORD is not set: role app gets its name as password "
        "(app.00000000.0000.postgres.baseline.sql creates it)",
        "warning: POSTGRESQL_REP_PASSWORD is not set: using the user name as rep's password"]


def test_plan_output_masks_a_password_quoted_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "app.20240101.0001.app.index.sql").write_text(
        "CREATE INDEX i ON t (c) WHERE c <> 'app-pw-2-xyz';\n")
    (tmp_path / "app.20240101.0002.app.role.sql").write_text(
        "ALTER ROLE x PASSWORD 'a' 'app-pw-2-xyz';\n")
    result = CliRunner().invoke(main, ["plan", "--offline", "--format", "json",
                                       str(tmp_path / "*.sql")],
                                env={"POSTGRESQL_APP_PASSWORD": "app-pw-2-xyz"})
    data = json.loads(result.stdout)
    assert [f["statement"] for f in data["findings"]] == [
        "CREATE INDEX i ON t (c) WHERE c <> '***'"]
    assert [p["message"] for p in data["problems"]] == ['syntax error at or near "\'***\'"']
    assert "app-pw-2-xyz" not in result.output
