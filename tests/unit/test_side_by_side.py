"""Which pending steps ``apply --jobs N`` runs side by side (core/outcomes.py side_by_side):
group members, each with all of its database's pending steps, between the edges that run
alone in plan order (a database outside every group, a bootstrap, the state database)."""

from __future__ import annotations

from postgresqlpatches.core.discovery import read_patch
from postgresqlpatches.core.outcomes import side_by_side
from postgresqlpatches.core.planner import ServerFacts, Step, expand_groups, make_plan

GROUPS = {"tenants": ("tenant_[a-c]", "tenant_x")}
DATABASES = {"aaa", "tenant_a", "tenant_b", "tenant_c", "tenant_m", "tenant_x", "patches"}


def pending(*files: str) -> list[Step]:
    patches, problems = expand_groups([read_patch(f"db/{f}", text="SELECT 1;\n") for f in files],
                                      GROUPS, DATABASES, "patches")
    assert problems == []
    plan = make_plan(patches, ServerFacts(frozenset(DATABASES)), state_db="patches",
                     allow_out_of_order=True)
    assert plan.problems == ()
    return list(plan.pending)


def names(batch: list[list[Step]]) -> list[list[str]]:
    return [[f"{s.patch.name.database} {s.patch.name.version}" for s in member]
            for member in batch]


def test_members_between_other_databases_form_one_batch_each_with_all_its_steps() -> None:
    steps = pending("@tenants.20250301.0001.postgres.a.sql",
                    "@tenants.20250302.0001.postgres.b.sql",
                    "tenant_b.20250301.0002.postgres.own.sql",
                    "aaa.20250101.0001.postgres.x.sql", "tenant_m.20250101.0001.postgres.y.sql")
    order = [f"{s.patch.name.database} {s.patch.name.version}" for s in steps]
    assert order[0] == "aaa 20250101.0001" and order[8] == "tenant_m 20250101.0001"
    assert side_by_side(steps, 0, "patches") == []  # aaa runs alone, first
    assert names(side_by_side(steps, 1, "patches")) == [
        ["tenant_a 20250301.0001", "tenant_a 20250302.0001"],
        ["tenant_b 20250301.0001", "tenant_b 20250301.0002", "tenant_b 20250302.0001"],
        ["tenant_c 20250301.0001", "tenant_c 20250302.0001"]]
    assert side_by_side(steps, 8, "patches") == []  # tenant_m, no member: an edge
    assert names(side_by_side(steps, 9, "patches")) == [
        ["tenant_x 20250301.0001", "tenant_x 20250302.0001"]]


def test_a_database_with_only_its_own_files_is_an_edge_even_if_a_group_matches_it() -> None:
    steps = pending("@tenants.20250301.0001.postgres.a.sql",
                    "tenant_b.20250401.0001.postgres.own.sql")
    steps = [s for s in steps if not (s.patch.name.database == "tenant_b"
                                      and s.patch.group is not None)]
    assert names(side_by_side(steps, 0, "patches")) == [["tenant_a 20250301.0001"]]
    assert side_by_side(steps, 1, "patches") == []  # tenant_b: nothing of the group pending
