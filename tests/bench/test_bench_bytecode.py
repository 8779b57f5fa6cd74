"""The benchmark times byte-compiled modules, as an installed wheel has them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_compared_tree_is_byte_compiled_before_it_is_timed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_script", REPO / "bench" / "bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_script", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
    package = tmp_path / "postgresqlpatches"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "checksums.py").write_text("VALUE = 1\n")
    bench.byte_compile(tmp_path)
    tag = sys.implementation.cache_tag
    assert (package / "core" / "__pycache__" / f"checksums.{tag}.pyc").is_file()
    assert (package / "__pycache__" / f"__init__.{tag}.pyc").is_file()
