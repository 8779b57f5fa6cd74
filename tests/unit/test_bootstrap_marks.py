"""What a bootstrap's marks prove about a database found under its name (planner.foreign_use),
and what its files say about the sessions and roles it makes (statements)."""

from __future__ import annotations

import pytest

from postgresqlpatches.core.planner import Leftover, foreign_use
from postgresqlpatches.core.statements import connect_budget, created_role_names


@pytest.mark.parametrize(("leftover", "marks", "reason"), [
    (Leftover(500, 0, 1), [(400, 1)], None),
    (Leftover(500, 0, 2), [(400, 1), (500, 1)], None),  # a later step ran on the same one
    (Leftover(500, 0, None), [(400, 1)], None),  # PostgreSQL 13: sessions not counted
    (Leftover(400, 0, 0), [(400, 1)], "the database existed before that bootstrap began"),
    (Leftover(300, 0, 0), [(400, 1)], "the database existed before that bootstrap began"),
    (Leftover(600, 0, 0), [(400, 1), (500, 1)], "the database was made again after"),
    (Leftover(500, 0, 0), [(None, 1)], "its bootstrap left no mark"),
    (Leftover(500, 0, 0), [], "its bootstrap left no mark"),
    (Leftover(500, 1, 0), [(400, 1)], "1 session is connected to it"),
    (Leftover(500, 3, 0), [(400, 1)], "3 sessions are connected to it"),
    (Leftover(500, 0, 2), [(400, 1)], "2 sessions were opened to it, its bootstrap opens at "
                                      "most 1: someone else used it"),
    (Leftover(500, 0, 1), [(400, None)], "its baseline may open sessions pgpatch cannot count"),
])
def test_foreign_use_says_why_a_leftover_is_not_provably_the_bootstraps(
        leftover: Leftover, marks: list[tuple[int | None, int | None]],
        reason: str | None) -> None:
    found = foreign_use(leftover, marks)
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)


@pytest.mark.parametrize(("text", "budget"), [
    ("CREATE DATABASE app;\n", 0),
    ("CREATE DATABASE app;\n\\connect app\nCREATE TABLE t ();\n\\c postgres\n", 2),
    ("SELECT '\\connect app';\n-- \\connect app\n", 0),  # not meta-commands
    ("\\i more.sql\n", None),
    ("\\ir more.sql\n", None),
    ("\\! psql -d app\n", None),
    ("SELECT 1 \\g | psql -d app\n", None),
    ("\\o | psql\n", None),
    ("\\copy t FROM PROGRAM 'psql -d app'\n", None),
    ("\\copy t FROM 'file.csv'\n", 0),
])
def test_connect_budget_counts_the_sessions_a_baseline_may_open(
        text: str, budget: int | None) -> None:
    assert connect_budget(text) == budget


def test_created_role_names_are_the_roles_a_script_creates_by_name() -> None:
    text = ("\\if :create_app\nCREATE ROLE app LOGIN PASSWORD :'app_password';\n\\endif\n"
            "create user \"Mixed\"\"Case\"; CREATE GROUP Admins; CREATE ROLE admin;\n"
            "-- CREATE ROLE in_a_comment\nSELECT 'CREATE ROLE in_a_string';\n"
            "CREATE USER MAPPING FOR app SERVER remote;\nCREATE ROLE :\"computed\";\n"
            "ALTER ROLE app SET search_path = app; GRANT reader TO app;\n")
    assert created_role_names(text) == {"app", 'Mixed"Case', "admins", "admin"}


def test_created_role_names_of_what_does_not_scan_is_nothing() -> None:
    assert created_role_names("CREATE ROLE app; SELECT 'unterminated") == frozenset()
