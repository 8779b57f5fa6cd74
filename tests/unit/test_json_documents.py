"""Every command's --format json is a published contract: the generated schemas are current,
name every error kind the code has, and hold for what the commands print when no server can
be reached or the line is wrong; --format takes the same values everywhere."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
from click.testing import CliRunner, Result

from postgresqlpatches import cli, runner
from postgresqlpatches.cli import commands

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
JSON_MD = (DOCS / "json.md").read_text(encoding="utf-8")
COMMANDS = ["plan", "apply", "status", "baseline", "forget"]


def _load_tool():  # noqa: ANN202 (a module)
    spec = importlib.util.spec_from_file_location("schemas", ROOT / "tools" / "schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schemas_tool = _load_tool()


def schema(name: str) -> dict[str, Any]:
    return json.loads((DOCS / f"{name}.schema.json").read_text(encoding="utf-8"))


def valid(name: str, stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)
    jsonschema.Draft202012Validator(schema(name)).validate(data)
    return data


def _invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    clean: dict[str, str | None] = {"PGHOST": None, "PGPORT": None, "PGCONNECT_TIMEOUT": "5",
                                    **{f"POSTGRESQL_{role}_PASSWORD": f"pw-{role}"
                                       for role in ("POSTGRES", "PATCHES", "APP")}}
    return CliRunner().invoke(cli.main, list(args), env={**clean, **(env or {})},
                              prog_name="pgpatch")


def _tree(tmp_path: Path) -> str:
    (tmp_path / "app.20240101.0001.app.one.sql").write_text("select 1;\n")
    return str(tmp_path / "*.sql")


def _args(command: str, tmp_path: Path) -> list[str]:
    return {"plan": [_tree(tmp_path)], "apply": [_tree(tmp_path)], "status": [],
            "baseline": ["app", "--output-dir", str(tmp_path / "out")],
            "forget": ["app"]}[command]


@pytest.mark.parametrize("name", [*COMMANDS, "error", "rehearse"])
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schema(name))


def test_the_generated_schemas_are_current() -> None:
    assert schemas_tool.main(["--check"]) == 0, "run python tools/schemas.py"


def test_the_error_kinds_are_exactly_those_of_the_code() -> None:
    code = "\n".join(p.read_text(encoding="utf-8")
                     for p in (ROOT / "postgresqlpatches").rglob("*.py"))
    kinds = set(re.findall(r'^\s+kind = "([a-z-]+)"$', code, re.MULTILINE))
    kinds |= {"usage", "internal"}  # render.error_json's own: click's and a bug's
    assert set(schema("plan")["$defs"]["error"]["properties"]["kind"]["enum"]) == kinds
    for kind in kinds:
        assert f"`{kind}`" in JSON_MD, kind


@pytest.mark.parametrize("name", COMMANDS)
def test_docs_json_md_has_a_section_per_command(name: str) -> None:
    assert f"## `{name} --format json`" in JSON_MD
    assert f"({name}.schema.json)" in JSON_MD


@pytest.mark.parametrize("command", COMMANDS)
def test_no_server_is_one_valid_document_with_the_error_and_its_hint(
        tmp_path: Path, command: str) -> None:
    folder = tmp_path / "no-server-here"
    folder.mkdir()
    result = _invoke(command, "--format", "json", "--host", str(folder), "--port", "5999",
                     *_args(command, tmp_path))
    assert result.exit_code == 1, result.output
    data = valid(command, result.stdout)
    assert data["ok"] is False
    error = data["error"]
    assert error["kind"] == "connection" and error["exit_code"] == 1
    assert error["message"].startswith(f"cannot connect to database 'postgres' as 'postgres' "
                                       f"at {folder}:5999")
    assert error["hint"].startswith(f"no server listens on the socket {folder}/.s.PGSQL.5999")
    assert result.stderr.startswith(f"error: {error['message']}")


def test_a_host_that_does_not_resolve_is_a_document_with_its_hint(tmp_path: Path) -> None:
    result = _invoke("status", "--format", "json", "--host", "no-such-host.invalid")
    assert valid("status", result.stdout)["error"]["hint"] == (
        "the host name no-such-host.invalid does not resolve to an address: check --host or "
        "PGHOST for a typo")


def test_plan_offline_says_error_null() -> None:
    result = _invoke("plan", "--offline", "--format", "json", str(ROOT / "examples" / "**"
                                                                  / "*.sql"))
    assert valid("plan", result.stdout)["error"] is None


@pytest.mark.parametrize("command", COMMANDS)
def test_format_takes_table_json_and_text_on_every_command(command: str) -> None:
    option = next(p for p in commands.main.commands[command].params if p.name == "fmt")
    assert isinstance(option.type, click.Choice)
    assert list(option.type.choices) == ["table", "json"]
    assert option.type.convert("text", option, None) == "table"


@pytest.mark.parametrize("args, command", [
    (["status", "--format", "json", "--state-db", "my-state"], "status"),
    (["forget", "--format", "json"], "forget"),
    (["--format", "json", "plan"], None),
    (["apply", "--format=json", "--no-such-option", "x.sql"], "apply"),
    (["baseline", "app", "--format", "json", "--output-dir", "o", "--schema-only",
      "--data-for", "t"], "baseline"),
])
def test_a_usage_error_with_format_json_is_the_error_document_and_exit_2(
        args: list[str], command: str | None) -> None:
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    data = valid("error", result.stdout)
    assert data["command"] == command
    assert data["error"]["kind"] == "usage" and data["error"]["exit_code"] == 2
    assert f"Error: {data['error']['message']}" in result.stderr


def test_a_usage_error_without_format_json_prints_nothing_on_stdout() -> None:
    assert _invoke("status", "--state-db", "my-state").stdout == ""
    assert _invoke("status", "--format", "jsn").stdout == ""


@pytest.mark.parametrize("command", ["plan", "status"])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_ctrl_c_outside_apply_is_an_error_line_not_aborted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, fmt: str) -> None:
    def interrupted(_options: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, command, interrupted)
    result = _invoke(command, "--format", fmt, *_args(command, tmp_path))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: interrupted (Ctrl-C)",
                                          "hint: run the command again"]
    assert "Aborted!" not in result.output
    if fmt == "json":
        assert valid(command, result.stdout)["error"]["kind"] == "interrupted"
    else:
        assert result.stdout == ""


def test_an_unforeseen_error_is_a_document_of_kind_internal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(_options: object) -> None:
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(runner, "status", bug)
    result = _invoke("status", "--format", "json")
    assert result.exit_code == 1
    error = valid("status", result.stdout)["error"]
    assert (error["kind"], error["message"]) == ("internal", "unexpected ZeroDivisionError: oops")
