"""plan --format json is a published contract: the schema holds for real output, docs name all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from postgresqlpatches.cli import main
from postgresqlpatches.core.planner import FLAGS, LINT_MODES, PROBLEM_KINDS, Action

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "plan.schema.json").read_text(encoding="utf-8"))
JSON_MD = (ROOT / "docs" / "json.md").read_text(encoding="utf-8")
SOURCES = ROOT / "postgresqlpatches"


def validate(data: object) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(data)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_problem_kinds_lists_exactly_the_kinds_the_code_raises() -> None:
    code = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES.rglob("*.py"))
    made = set(re.findall(r'Problem\(\s*"([a-z-]+)"', code))
    made |= set(re.findall(r'kind = "([a-z-]+)" if .*? else "([a-z-]+)"', code)[0])
    assert made == set(PROBLEM_KINDS)


@pytest.mark.parametrize("word", [*PROBLEM_KINDS, *FLAGS, *(a.value for a in Action),
                                  *LINT_MODES])
def test_docs_json_md_documents_each_kind_flag_action_and_mode(word: str) -> None:
    assert f"`{word}`" in JSON_MD


def test_schema_enums_match_the_code() -> None:
    defs = SCHEMA["$defs"]
    assert defs["problem"]["properties"]["kind"]["enum"] == list(PROBLEM_KINDS)
    assert defs["patch"]["properties"]["flags"]["items"]["enum"] == list(FLAGS)
    assert defs["patch"]["properties"]["action"]["enum"] == [a.value for a in Action]
    assert SCHEMA["properties"]["lint"]["enum"] == list(LINT_MODES)


def test_the_example_in_the_docs_is_valid() -> None:
    example = re.search(r"```json\n(\{\n.*?\n\})\n```", JSON_MD, re.DOTALL)
    assert example is not None
    validate(json.loads(example.group(1)))


@pytest.mark.parametrize("lint", LINT_MODES)
def test_offline_output_with_findings_and_every_offline_problem_is_valid(
        tmp_path: Path, lint: str) -> None:
    files = {
        "app.00000000.0000.postgres.baseline.sql": "\\connect app\n",
        "app.00000000.0001.app.seed.sql": "create table t (a int);\n",
        "app.20240101.0001.app.index.sql": "create index i on t (a);\n",
        "app.20240102.0001.app.meta.sql": "\\set x 1\n",
        "app.20240103.0001.app.syntax.sql": "select 1;\nselec 2;\n",
        "app.20240104.0001.app.commit.sql": "select 1;\ncommit;\n",
        "app.20240105.0001.app.conc.sql": "create index concurrently j on t (a);\n",
        "dup/app.20240105.0001.app.again.sql": "select 1;\n",
        "app.2024-01-06.0001.app.bad.sql": "select 1;\n",
        "app.20240107.0001.app.latin1.sql": b"select 'caf\xe9';\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = CliRunner().invoke(main, ["plan", "--offline", "--format", "json", "--lint", lint,
                                       str(tmp_path / "**" / "*.sql"), str(tmp_path / "x*")])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    validate(data)
    expected = ["no-match", "bad-name", "unreadable", "duplicate", "meta-command", "syntax",
                "transaction-control"] + (["lint"] if lint == "error" else [])
    assert sorted(p["kind"] for p in data["problems"]) == sorted(expected)
    assert [f["rule"] for f in data["findings"]] == (
        [] if lint == "off" else ["create-index-non-concurrently"])
    flags = {p["description"]: p["flags"] for p in data["patches"]}
    assert flags["conc"] == ["non-transactional"] and flags["baseline"] == ["psql"]
