"""docs/architecture.md stays true: every path it names exists, and every function or class
it names beside a module is defined there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
TEXT = PAGE.read_text(encoding="utf-8")
PARTS = ("core/", "pg/", "cli/")

PATH = re.compile(r"`((?:postgresqlpatches|tests|tools|docs|bench)/[\w./-]*|"
                  r"(?:core|pg|cli)/[\w./-]*)`")
NAMED = re.compile(r"`((?:postgresqlpatches/)?(?:core|pg|cli)/\w+\.py)`\s+`(\w+)(?:\.\w+)*`")


def _resolve(path: str) -> Path:
    return ROOT / "postgresqlpatches" / path if path.startswith(PARTS) else ROOT / path


def _paths() -> list[str]:
    return sorted({m.group(1).rstrip(".") for m in PATH.finditer(TEXT)})


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)}


def test_the_page_names_the_modules_of_every_part() -> None:
    named = set(_paths())
    for part in ("core", "pg", "cli"):
        for module in (ROOT / "postgresqlpatches" / part).glob("*.py"):
            if module.name != "__init__.py":
                assert f"postgresqlpatches/{part}/{module.name}" in named, module


@pytest.mark.parametrize("path", _paths())
def test_every_path_the_page_names_exists(path: str) -> None:
    assert _resolve(path).exists(), f"docs/architecture.md names {path}, which is missing"


@pytest.mark.parametrize("path, name", sorted(set(NAMED.findall(TEXT))))
def test_every_function_the_page_names_is_in_its_module(path: str, name: str) -> None:
    assert name in _defined(_resolve(path)), f"{name} is not defined in {path}"


def test_the_page_is_in_the_site_nav() -> None:
    assert "architecture.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
