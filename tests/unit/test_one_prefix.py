"""The password prefix's default is spelled once: postgresqlpatches.DEFAULT_PREFIX."""

from __future__ import annotations

import ast
from pathlib import Path

import postgresqlpatches
from postgresqlpatches import runner
from postgresqlpatches.pg import scratch, server

PACKAGE = Path(postgresqlpatches.__file__).resolve().parent


def test_the_default_prefix_is_one_constant() -> None:
    spelled = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                     if isinstance(n, ast.Constant) and n.value == postgresqlpatches.DEFAULT_PREFIX)
    assert spelled == ["__init__.py"]


def test_every_default_is_that_constant() -> None:
    from click.testing import CliRunner

    from postgresqlpatches.cli import main

    assert server.DEFAULT_PREFIX is postgresqlpatches.DEFAULT_PREFIX
    assert runner.Options().prefix is postgresqlpatches.DEFAULT_PREFIX
    assert scratch.ScratchServer.env.__defaults__ == (postgresqlpatches.DEFAULT_PREFIX,)
    shown = CliRunner().invoke(main, ["plan", "--help"]).output
    assert f"[default: {postgresqlpatches.DEFAULT_PREFIX}]" in shown
