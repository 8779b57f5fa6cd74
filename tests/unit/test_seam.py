"""The seam: psycopg only inside postgresqlpatches/pg/, the core free of pg/, and driver
errors turned into the project's own ServerError with the SQLSTATE kept as a value."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from postgresqlpatches.errors import PgpatchError, ServerError
from postgresqlpatches.pg import errors as pg_errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "postgresqlpatches"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_no_module_outside_pg_imports_psycopg() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imported_modules(p)
                                         if n == "psycopg" or n.startswith("psycopg."))
        for p in _modules(PACKAGE) if "pg" not in p.relative_to(PACKAGE).parts[:1]}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_imports_nothing_from_pg_cli_or_the_runner() -> None:
    forbidden = ("postgresqlpatches.pg", "postgresqlpatches.cli", "postgresqlpatches.runner",
                 "postgresqlpatches.baseline", "psycopg")
    found = {str(p.relative_to(ROOT)): sorted(n for n in _imported_modules(p)
                                              if n.startswith(forbidden))
             for p in _modules(PACKAGE / "core")}
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None,
                    reason="ruff is not installed beside this python")
@pytest.mark.parametrize("where, banned", [
    ("postgresqlpatches/runner.py", True),
    ("postgresqlpatches/core/planner.py", True),
    ("postgresqlpatches/cli/commands.py", True),
    ("postgresqlpatches/pg/state.py", False),
    ("tests/unit/test_anything.py", False),
])
def test_ruff_bans_psycopg_outside_pg(where: str, banned: bool) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    source = "from psycopg import sql\n\nprint(sql)\n"
    proc = subprocess.run([str(ruff), "check", "--no-cache", "--select", "TID251",
                           "--stdin-filename", where, "-"], input=source, text=True,
                          capture_output=True, cwd=ROOT, check=False)
    assert ("TID251" in proc.stdout) is banned, proc.stdout + proc.stderr


def test_a_driver_error_becomes_a_server_error_with_its_sqlstate() -> None:
    with pytest.raises(ServerError) as caught, pg_errors.server_errors():
        raise psycopg.errors.UndefinedColumn('column "minor" does not exist\nLINE 1: SELECT')
    e = caught.value
    assert isinstance(e, PgpatchError) and e.exit_code == 1
    assert e.sqlstate == "42703"
    assert e.reason == 'column "minor" does not exist'
    assert str(e) == 'the server failed: column "minor" does not exist'  # no SQLSTATE suffix
    assert e.text.endswith("LINE 1: SELECT")
    assert isinstance(e.__cause__, psycopg.errors.UndefinedColumn)


def test_a_driver_error_without_text_is_named_by_its_class() -> None:
    with pytest.raises(ServerError, match="the server failed: OperationalError$"), \
            pg_errors.server_errors():
        raise psycopg.OperationalError("")


def test_other_errors_pass_the_seam_unchanged() -> None:
    mine = PgpatchError("mine")
    with pytest.raises(PgpatchError) as caught, pg_errors.server_errors():
        raise mine
    assert caught.value is mine
    with pytest.raises(KeyError), pg_errors.server_errors():
        raise KeyError("bug")


def test_translated_functions_raise_server_errors() -> None:
    @pg_errors.translated
    def reads() -> None:
        raise psycopg.errors.InsufficientPrivilege("permission denied for table t")

    with pytest.raises(ServerError) as caught:
        reads()
    assert caught.value.sqlstate == "42501"


@pytest.mark.parametrize("name", ["DUPLICATE_OBJECT", "INVALID_PASSWORD", "OBJECT_IN_USE"])
def test_named_sqlstates_are_psycopgs_classes(name: str) -> None:
    cls = psycopg.errors.lookup(getattr(pg_errors, name))
    assert cls.__name__.upper() == name.replace("_", "")


def test_the_seam_does_not_import_psycopg() -> None:
    code = ("import sys, postgresqlpatches.pg.errors, postgresqlpatches.runner, "
            "postgresqlpatches.cli; print(sorted(m for m in sys.modules if m.startswith("
            "('psycopg', 'pglast', 'rich'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|DISCARD|WITH|SET|"
                       r"BEGIN|COMMIT|ROLLBACK|GRANT|REVOKE)\b")


def _string_constants(path: Path) -> list[str]:
    """The module's string constants, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr)
                  and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and id(n) not in docstrings]


@pytest.mark.parametrize("module", ["runner.py", "baseline.py", "cli/commands.py",
                                    "cli/render.py"])
def test_orchestration_and_cli_hold_no_sql_text(module: str) -> None:
    """SQL is pg/'s (the demo's one query of the example's view is what it shows the user)."""
    sql = [s for s in _string_constants(PACKAGE / module) if SQL_START.match(s)]
    assert sql == []
