"""Database groups in the pure core: ``@NAME`` names, expansion over database names, order,
problems, and the planner's view of new members."""

from __future__ import annotations

from pathlib import Path

import pytest

from postgresqlpatches.core.discovery import Patch, read_patch
from postgresqlpatches.core.naming import BadName, parse_name
from postgresqlpatches.core.planner import (
    Action,
    ServerFacts,
    expand_groups,
    group_members,
    make_plan,
    unrecorded_candidates,
)
from postgresqlpatches.core.records import Record

GROUPS = {"tenants": ("tenant_*",), "eu": ("tenant_eu_?", "shop")}


def patch(filename: str, text: str = "SELECT 1;\n") -> Patch:
    return read_patch(f"db/{filename}", text=text)


def test_an_at_name_is_a_group_and_checked_like_a_database_name() -> None:
    name = parse_name("@tenants.20250301.0001.app.add_flag.sql")
    assert (name.database, name.group) == ("@tenants", "tenants")
    assert parse_name("tenants.20250301.0001.app.add_flag.sql").group is None
    with pytest.raises(BadName, match="the group 'Tenants' is not a plain PostgreSQL"):
        parse_name("@Tenants.20250301.0001.app.x.sql")
    with pytest.raises(BadName, match="the group part is empty"):
        parse_name("@.20250301.0001.app.x.sql")


def test_members_match_shell_patterns_in_name_order_never_the_state_database() -> None:
    databases = ["tenant_b", "tenant_a", "patches", "shop", "tenant_eu_1", "other", "Tenant_c"]
    assert group_members(("tenant_*",), databases, "patches") == [
        "tenant_a", "tenant_b", "tenant_eu_1"]
    assert group_members(("*",), databases, "patches") == sorted(set(databases) - {"patches"})
    assert group_members(("tenant_eu_?", "shop"), databases, "patches") == ["shop",
                                                                            "tenant_eu_1"]


def test_each_member_gets_the_file_in_version_order_with_its_own() -> None:
    group_file = patch("@tenants.20250301.0001.app.flag.sql")
    own = patch("tenant_a.20250201.0001.app.own.sql")
    later = patch("tenant_a.20250401.0001.app.later.sql")
    other = patch("zoo.20250101.0001.app.z.sql")
    out, problems = expand_groups([group_file, own, later, other], GROUPS,
                                  {"tenant_a", "tenant_b", "zoo", "patches"}, "patches")
    assert problems == []
    assert [(p.name.database, p.name.version, p.group) for p in out] == [
        ("tenant_a", "20250201.0001", None), ("tenant_a", "20250301.0001", "tenants"),
        ("tenant_a", "20250401.0001", None), ("tenant_b", "20250301.0001", "tenants"),
        ("zoo", "20250101.0001", None)]
    member = out[1]
    assert member.path == group_file.path and member.origin is group_file
    assert member.name.filename == "tenant_a.20250301.0001.app.flag.sql"
    assert member.checksum == group_file.checksum


def test_a_group_without_members_plans_nothing() -> None:
    out, problems = expand_groups([patch("@tenants.20250301.0001.app.flag.sql")], GROUPS,
                                  {"shop"}, "patches")
    assert (out, problems) == ([], [])


@pytest.mark.parametrize("filename, kind, message", [
    ("@shops.20250301.0001.app.x.sql", "unknown-group",
     "the group shops is not defined in the config file (defined: tenants, eu)"),
    ("@tenants.00000000.0001.app.seed.sql", "group-bootstrap",
     "a group has no bootstrap: the databases of group tenants exist already, so a 00000000 "
     "script would never run"),
])
def test_group_mistakes_are_problems_naming_the_file(filename: str, kind: str,
                                                     message: str) -> None:
    for databases in ({"tenant_a"}, None):  # online and offline alike
        out, problems = expand_groups([patch(filename)], GROUPS, databases, "patches")
        assert out == []
        assert [(p.kind, p.path, p.message) for p in problems] == [
            (kind, f"db/{filename}", message)]


def test_no_groups_in_the_config_says_so() -> None:
    _, problems = expand_groups([patch("@tenants.20250301.0001.app.x.sql")], {}, set(),
                                "patches")
    assert problems[0].message == ("the group tenants is not defined (no config file defines "
                                   "[groups])")


def test_a_version_a_member_gets_twice_is_a_duplicate_per_member() -> None:
    out, problems = expand_groups(
        [patch("@tenants.20250301.0001.app.x.sql"), patch("@eu.20250301.0001.app.y.sql")],
        GROUPS, {"tenant_a", "tenant_eu_1"}, "patches")
    assert [(p.kind, p.message) for p in problems] == [(
        "duplicate", "version tenant_eu_1 20250301.0001 is used twice: "
        "db/@tenants.20250301.0001.app.x.sql and db/@eu.20250301.0001.app.y.sql")]


def test_offline_a_group_file_stays_one_patch() -> None:
    group_file = patch("@tenants.20250301.0001.app.flag.sql")
    out, problems = expand_groups([group_file], GROUPS, None, "patches")
    assert (out, problems) == ([group_file], [])


def _record(database: str, version: str = "20250301.0001") -> Record:
    major, minor = version.split(".")
    return Record(id=1, database=database, major=major, minor=minor,
                  name=f"{database}.{version}.app.flag.sql", installed=None)


def test_a_new_member_of_a_group_on_record_is_no_unrecorded_candidate() -> None:
    out, _ = expand_groups([patch("@tenants.20250301.0001.app.flag.sql")], GROUPS,
                           {"tenant_a", "tenant_b"}, "patches")
    existing = {"tenant_a", "tenant_b"}
    # nothing on record for the group: each member is looked into (a lost state database)
    assert unrecorded_candidates(out, existing, [], "patches") == {"tenant_a", "tenant_b"}
    # the group is on record for tenant_a: tenant_b is a new member and catches up
    assert unrecorded_candidates(out, existing, [_record("tenant_a")], "patches") == set()


def test_the_plan_parses_a_group_file_once_and_names_a_problem_once() -> None:
    out, _ = expand_groups([patch("@tenants.20250301.0001.app.flag.sql", "SELEC 1;\n")],
                           GROUPS, {f"tenant_{i}" for i in range(50)}, "patches")
    plan = make_plan(out, ServerFacts(frozenset(f"tenant_{i}" for i in range(50))),
                     state_db="patches")
    assert len(plan.steps) == 50 and all(s.action is Action.APPLY for s in plan.steps)
    assert [p.kind for p in plan.problems] == ["syntax"]


def test_a_finding_of_a_group_file_counts_once() -> None:
    out, _ = expand_groups([patch("@tenants.20250301.0001.app.drop.sql",
                                  "ALTER TABLE t DROP COLUMN a;\n")],
                           GROUPS, {"tenant_a", "tenant_b"}, "patches")
    plan = make_plan(out, ServerFacts(frozenset({"tenant_a", "tenant_b"})), state_db="patches",
                     lint="error")
    assert all(s.findings for s in plan.steps)
    assert len(plan.findings) == 1
    assert [p.kind for p in plan.problems] == ["lint"]


def test_new_writes_a_group_file(tmp_path: Path) -> None:
    import datetime as dt

    from postgresqlpatches.cli.scaffold import create_patch

    (tmp_path / "@tenants.20240309.0001.app.first.sql").touch()
    path = create_patch("@tenants", "app", "add_flag", tmp_path, dt.date(2024, 3, 9))
    assert path == tmp_path / "@tenants.20240309.0002.app.add_flag.sql"
    assert path.read_text().startswith("-- add_flag: runs once, as app on each database of "
                                       "group tenants")
    assert parse_name(path.name).group == "tenants"
    with pytest.raises(Exception, match="the group 'Bad' is not a plain"):
        create_patch("@Bad", "app", "x", tmp_path, dt.date(2024, 3, 9))
