"""Which major the suite's ``one_major`` tests run on (tests/conftest.py, README's Development):
the first one under test."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_MAJORS_ENV, one_major_under_test


@pytest.mark.parametrize("majors, chosen", [
    ("15,16,18", 15),  # the machine's 15 and both wheels
    ("16 18", 16),  # no PostgreSQL 15 from Debian: the pgserver wheel's 16
    ("18", 18),  # PGPATCH_TEST_MAJORS=18 picks it
])
def test_one_major_tests_run_on_the_first_major_under_test(
        monkeypatch: pytest.MonkeyPatch, majors: str, chosen: int) -> None:
    monkeypatch.setenv(TEST_MAJORS_ENV, majors)
    assert one_major_under_test() == chosen
