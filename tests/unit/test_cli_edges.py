"""What a new user hits on day one: usage errors that say what is wrong, hints that help,
and no password echoed back."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from postgresqlpatches import cli


def _invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    clean: dict[str, str | None] = {"PGHOST": None, "PGPORT": None, "PGCONNECT_TIMEOUT": "5",
                                    **{f"POSTGRESQL_{role}_PASSWORD": f"pw-{role}"
                                       for role in ("POSTGRES", "PATCHES", "APP")}}
    return CliRunner().invoke(cli.main, list(args), env={**clean, **(env or {})},
                              prog_name="pgpatch")


def _tree(tmp_path: Path) -> str:
    (tmp_path / "app.20240101.0001.app.one.sql").write_text("select 1;\n")
    return str(tmp_path / "*.sql")


@pytest.mark.parametrize("host", ["postgresql://u:s3cret-pw@db.example.org/app",
                                  "postgres://u:s3cret-pw@db.example.org:5433",
                                  "host=db.example.org password=s3cret-pw"])
@pytest.mark.parametrize("command", ["plan", "apply", "status"])
def test_a_connection_uri_given_to_host_is_a_usage_error_that_never_echoes_it(
        tmp_path: Path, host: str, command: str) -> None:
    result = _invoke(command, "--host", host, _tree(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--host': expected a host name, an IP address or a socket " \
           "folder, not a connection URI or conninfo string" in result.output
    assert "s3cret-pw" not in result.output
    assert "Traceback" not in result.output


def test_a_connection_uri_in_pghost_is_refused_without_echoing_it(tmp_path: Path) -> None:
    result = _invoke("plan", _tree(tmp_path),
                     env={"PGHOST": "postgresql://u:s3cret-pw@db.example.org/app"})
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: PGHOST: expected a host name")
    assert "s3cret-pw" not in result.output


def test_a_password_in_a_uri_or_conninfo_is_masked_wherever_it_is_printed() -> None:
    from postgresqlpatches.redact import redact

    assert redact("at postgresql://u:s3cret@h:5432/db: refused", ()) == \
        "at postgresql://u:***@h:5432/db: refused"
    assert redact("host=h password='a b' port=1 PASSWORD=x", ()) == \
        "host=h password=*** port=1 PASSWORD=***"
    assert redact("at db.example.org:5432: password authentication failed", ()) == \
        "at db.example.org:5432: password authentication failed"


def test_a_host_that_does_not_resolve_gets_a_hint(tmp_path: Path) -> None:
    result = _invoke("plan", "--host", "no-such-host.invalid", _tree(tmp_path))
    assert result.exit_code == 1
    assert "hint: the host name no-such-host.invalid does not resolve to an address: " \
           "check --host or PGHOST for a typo" in result.output


def test_a_socket_that_is_not_there_gets_a_hint_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "no-server-here"
    folder.mkdir()
    result = _invoke("plan", "--host", str(folder), "--port", "5999", _tree(tmp_path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"error: cannot connect to database 'postgres' as 'postgres' "
                               f"at {folder}:5999: No such file or directory")
    assert lines[1] == (f"hint: no server listens on the socket {folder}/.s.PGSQL.5999: start "
                        "the server, or give --host (or PGHOST) the folder its socket is in, "
                        "or its host name, and --port (or PGPORT)")


@pytest.mark.parametrize("args", [
    ["plan", "--offline", "--state-db", "my-state"],
    ["apply", "--state-db", "my-state"],
    ["status", "--state-db", "my-state"],
    ["forget", "--state-db", "my-state", "app"],
])
def test_a_bad_state_db_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    result = _invoke(*args, *([_tree(tmp_path)] if args[0] != "forget" else []))
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--state-db': the state database 'my-state' is not a plain "
        "PostgreSQL identifier (lower-case letters, digits and _, not starting with a digit)")


@pytest.mark.parametrize("args", [["forget", "Bad;name"],
                                  ["baseline", "Bad;name", "--output-dir", "out"]])
def test_a_bad_database_argument_is_a_usage_error_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for 'DATABASE': the database 'Bad;name' is not a plain "
        "PostgreSQL identifier (lower-case letters, digits and _, not starting with a digit)")
    assert list(tmp_path.iterdir()) == []


def test_demo_offers_only_the_options_it_honours() -> None:
    result = _invoke("demo", "--help")
    assert result.exit_code == 0
    options = {line.split()[0].rstrip(",") for line in result.output.split("Options:")[1]
               .splitlines() if line.strip().startswith("-")}
    assert options == {"--keep", "-l", "-h"}
    for given in (["demo", "--host", "db"], ["demo", "--state-db", "x"], ["--port", "1", "demo"]):
        refused = _invoke(*given)
        assert refused.exit_code == 2, (given, refused.output)


def test_demo_honours_the_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    from postgresqlpatches import demo

    levels: list[str] = []
    monkeypatch.setattr(demo, "run", lambda keep: levels.append(cli.log.getEffectiveLevel()))
    assert _invoke("demo", "-l", "debug").exit_code == 0
    assert _invoke("-l", "error", "demo").exit_code == 0
    assert levels == [10, 40]


def test_status_shows_its_glob_as_optional() -> None:
    result = _invoke("status", "--help")
    assert result.output.startswith("Usage: pgpatch status [OPTIONS] [GLOB]...\n")
    for command in ("plan", "apply"):
        assert _invoke(command, "--help").output.startswith(
            f"Usage: pgpatch {command} [OPTIONS] GLOB...\n")


EMPTY_FILES = {"app.20240101.0001.app.blank.sql": "\n\n",
               "app.20240101.0002.app.comments.sql": "-- TODO: the body\n/* later */\n",
               "app.20240101.0003.app.wrapped.sql": "BEGIN;\n-- nothing yet\nCOMMIT;\n",
               "app.20240101.0004.app.real.sql": "-- a comment\nselect 1;\n"}


def _empty_tree(tmp_path: Path) -> str:
    for name, text in EMPTY_FILES.items():
        (tmp_path / name).write_text(text)
    return str(tmp_path / "*.sql")


def _empty_warning(tmp_path: Path, name: str) -> str:
    return (f"warning: {tmp_path / name}: the file holds no SQL statement (only comments or "
            "blank lines): apply records it as applied and runs nothing [empty]")


def test_plan_warns_of_each_empty_or_comment_only_patch(tmp_path: Path) -> None:
    result = _invoke("plan", "--offline", _empty_tree(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == [_empty_warning(tmp_path, name) for name in list(EMPTY_FILES)[:3]]
    rows = [line for line in lines if line.startswith("app ")]
    notes = {line.split()[-1] for line in rows if "real" not in line}
    assert notes == {"empty"}


def test_plan_json_flags_empty_patches(tmp_path: Path) -> None:
    import json

    import jsonschema

    result = _invoke("plan", "--offline", "--format", "json", _empty_tree(tmp_path))
    data = json.loads(result.stdout)
    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "docs" / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    flags = {p["description"]: p["flags"] for p in data["patches"] if p["database"] == "app"}
    assert flags == {"blank": ["empty"], "comments": ["empty"], "wrapped": ["empty"],
                     "real": []}


def test_a_terminal_plan_shows_the_empty_warning(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import re

    from postgresqlpatches import runner
    from postgresqlpatches.render import print_plan

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "400")
    out = Terminal()
    print_plan(runner.plan_offline(runner.Options(globs=(_empty_tree(tmp_path),))), out)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert _empty_warning(tmp_path, "app.20240101.0002.app.comments.sql") in text


def test_a_sql_glob_names_the_files_it_skips_for_the_case_of_their_extension(
        tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "app.20240101.0001.app.one.sql").write_text("select 1;\n")
    upper = tmp_path / "sub" / "app.20240101.0002.app.two.SQL"
    mixed = tmp_path / "app.20240101.0003.app.three.Sql"
    for path in (upper, mixed):
        path.write_text("select 2;\n")
    (tmp_path / "notes.txt").write_text("not a patch\n")
    glob = str(tmp_path / "**" / "*.sql")
    result = _invoke("plan", "--offline", glob)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: {mixed}: skipped: the glob '{glob}' matches names ending in .sql, and this "
        "one ends in .Sql (rename it to .sql)",
        f"warning: {upper}: skipped: the glob '{glob}' matches names ending in .sql, and this "
        "one ends in .SQL (rename it to .sql)"]
    assert "two" not in result.stdout and "three" not in result.stdout
    exact = _invoke("plan", "--offline", str(mixed))
    assert exact.exit_code == 1 and "does not end in .sql" in exact.stdout  # named: a problem
