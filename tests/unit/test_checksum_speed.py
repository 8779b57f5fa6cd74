"""The token checksum's one pass: the same values as before it (they are in state databases),
and no Python call per token (the scan runs for every patch that is applied)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from postgresqlpatches.core import checksums
from postgresqlpatches.core.checksums import token_checksum

# values of the checksum as first shipped (tag-length framing, one digest update per item):
# records in state databases hold them, so any other value would mark every file changed
PINNED = [
    ("CREATE TABLE App.Users (id int, \"Name\" text DEFAULT 'Anna'); -- c\n/* b */ SELECT 1.0;\n",
     False, "2c12d5adc6dd765910569c87e347496adba8a12a363cb60c4c76fbd4f9cae937"),
    ("CREATE TABLE Café (Straße text DEFAULT 'Ärger', \"Ü\" int);\n"
     "COMMENT ON TABLE Café IS 'naïve 😀';\n",
     False, "3007af603b9203a9563cfb39ad6b20c0d6c16f610172e2e320de644db57ec257"),
    ("SELECT '" + "Y" * 300 + "', AbC" + "D" * 400 + ", \"Q" + "é" * 200 + "\";\n",
     False, "fa9760d294cb4779d6c9a1220a7364231f8db59056b47e27f34a063ae7302db3"),
    ("SELECT 'open Ünterminated",
     False, "61ebea1ef13a7d7dc7c07e3be14b86fffdee8f273cbc85c55edd7396fcafedae"),
    ("\\set ON_ERROR_STOP 1\nCREATE DATABASE :\"Database\";\n\\connect :\"Database\"\n"
     "SELECT :Value, :'Pw', a::TEXT;\nCOPY t (a) FROM stdin;\nÄ\tb\n\\.\n",
     True, "b09c1751adf2a5230507f8e4293bfbdfecd4fbefe8e83b3b4c2f1881c86de3f6"),
]


@pytest.mark.parametrize(("text", "psql", "expected"), PINNED,
                         ids=["ascii", "non-ascii", "long-tokens", "unscannable", "psql"])
def test_the_checksum_keeps_its_values(text: str, psql: bool, expected: str) -> None:
    """ASCII text is hashed from its bytes, other text word by word; tokens of 256 bytes and
    more take the slow framing: every path gives the value records hold."""
    assert token_checksum(text, psql=psql) == expected
    assert token_checksum(text.replace("\n", "\r\n"), psql=psql) == expected


def own_calls(work: Callable[[], object]) -> int:
    """How many of the checksum module's Python functions (generators resumed among them)
    ``work`` enters (the scanner's own token values are pglast's)."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call" and frame.f_code.co_filename == checksums.__file__:  # type: ignore[attr-defined]
            calls += 1

    sys.setprofile(count)
    try:
        work()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("word", ["Value", "Wert_ä"], ids=["ascii", "non-ascii"])
def test_the_scan_makes_no_python_call_per_token(word: str) -> None:
    """A file of 3 tokens and one of 3,000 cost the same number of Python calls: the work
    per token stays in one loop and in C (slices, bytes.lower, the digest)."""
    token_checksum("SELECT 1;")  # imports done
    small, large = f"SELECT {word};", "SELECT " + ", ".join(
        f"{word}{i} -- c\n" for i in range(1000)) + ";"
    calls = own_calls(lambda: token_checksum(small))
    assert calls > 0  # the count sees the module's functions
    assert own_calls(lambda: token_checksum(large)) == calls
