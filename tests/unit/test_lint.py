"""lint.py: each rule fires on dangerous DDL, stays quiet on the safe form, and can be silenced."""

from __future__ import annotations

from pathlib import Path

import pytest

from postgresqlpatches.core.lint import (
    NEXT_PATCH,
    RULES,
    RULES_BY_ID,
    Finding,
    lint,
    render_rules_markdown,
)
from postgresqlpatches.core.statements import parse_sql

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lint.md"


def rule_ids(text: str) -> list[str]:
    return [f.rule.id for f in lint(parse_sql(text), text)]


# (rule id, SQL that must fire it, SQL of the same shape that must not)
# fmt: off
CASES = [
    ("create-index-non-concurrently", "create index i on t (a);",
     "create index concurrently i on t (a);"),
    ("create-index-non-concurrently", "create unique index i on s.t (lower(a));",
     "create table s.t (a text); create unique index i on s.t (lower(a));"),
    ("add-column-volatile-default", "alter table t add column a float default random();",
     "alter table t add column a int default 0;"),
    ("add-column-volatile-default",
     "alter table t add column a timestamptz default clock_timestamp();",
     "alter table t add column a timestamptz default now();"),
    ("add-column-volatile-default", "alter table t add column a uuid default gen_random_uuid();",
     "alter table t add column a uuid;"),
    ("add-column-volatile-default", "alter table t add column id bigserial;",
     "alter table t add column id bigint;"),
    ("add-column-volatile-default", "alter table t add column id int generated always as identity;",
     "create table t (id int generated always as identity);"),
    ("add-column-volatile-default",
     "alter table t add column d int generated always as (a*2) stored;",
     "alter table t add column d text default 'x' || 'y';"),
    ("add-column-not-null-without-default",
     "alter table t add column a text not null;",
     "alter table t add column a text not null default 'x';"),
    ("add-column-not-null-without-default",
     "alter table t add column a int primary key;",
     "alter table t add column a int generated always as identity primary key;"),
    ("add-column-not-null-without-default",
     "alter table s.t add column a int not null, add column b int;",
     "create table s.t (x int); alter table s.t add column a int not null;"),
    ("alter-column-type", "alter table t alter column a type bigint;",
     "alter table t alter column a set default 1;"),
    ("set-not-null", "alter table t alter column a set not null;",
     "alter table t add constraint a_nn check (a is not null);\n"
     "alter table t alter column a set not null;"),
    ("set-not-null",
     "alter table t add constraint a_nn check (a is not null) not valid;\n"
     "alter table t alter column a set not null;",
     "alter table t add constraint a_nn check (a is not null) not valid;\n"
     "alter table t validate constraint a_nn;\n"
     "alter table t alter column a set not null;"),
    ("set-not-null",
     "alter table t add constraint b_nn check (b is not null);\n"
     "alter table t alter column a set not null;",
     "alter table t alter column a drop not null;"),
    ("add-foreign-key-without-not-valid",
     "alter table t add constraint fk foreign key (u_id) references u (id);",
     "alter table t add constraint fk foreign key (u_id) references u (id) not valid;"),
    ("add-foreign-key-without-not-valid",
     "alter table t add column u_id int references u (id);",
     "alter table t add column u_id int;"),
    ("add-check-without-not-valid", "alter table t add constraint c check (a > 0);",
     "alter table t add constraint c check (a > 0) not valid;"),
    ("validate-in-same-transaction",
     "alter table t add constraint fk foreign key (u_id) references u (id) not valid;\n"
     "alter table t validate constraint fk;",
     "alter table t validate constraint fk;"),
    ("validate-in-same-transaction",
     "alter table t add constraint c check (a > 0) not valid; alter table t validate constraint c;",
     "alter table t add constraint c check (a > 0) not valid;\n"
     "alter table t validate constraint c; create index concurrently i on t (a);"),
    ("set-not-null",
     "alter table t validate constraint a_nn; alter table u alter column a set not null;",
     "alter table t validate constraint a_nn; alter table t alter column a set not null;"),
    ("add-unique-without-index", "alter table t add constraint k unique (a);",
     "alter table t add constraint k unique using index k;"),
    ("add-unique-without-index", "alter table t add primary key (id);",
     "alter table t add constraint t_pkey primary key using index t_id;"),
    ("drop-column", "alter table t drop column a;",
     "create table t (a int, b int); alter table t drop column a;"),
    ("drop-index-non-concurrently", "drop index i;", "drop index concurrently i;"),
    ("drop-table", "drop table t;", "drop view t;"),
    ("drop-table", "drop table if exists s.t, u;", "create table s.t (); drop table s.t;"),
    ("rename", "alter table t rename to u;", "create table t (); alter table t rename to u;"),
    ("rename", "alter table t rename column a to b;", "comment on column t.a is 'b';"),
    ("lock-table", "lock table t;", "lock table t in share update exclusive mode;"),
    ("lock-table", "lock table t in share mode;", "lock table t in row exclusive mode;"),
    ("truncate", "truncate t, u cascade;", "delete from t where a < 10;"),
    ("vacuum-full", "vacuum full t;", "vacuum (analyze) t;"),
    ("vacuum-full", "vacuum (full, analyze) t;", "create table t (); vacuum full t;"),
    ("cluster", "cluster t using i;", "analyze t;"),
    ("reindex-non-concurrently", "reindex table t;", "reindex table concurrently t;"),
    ("reindex-non-concurrently", "reindex index i;", "create index i on t (a); reindex index i;"),
]
# fmt: on


@pytest.mark.parametrize(("rule_id", "bad", "good"), CASES, ids=[c[0] for c in CASES])
def test_rule_fires_on_the_dangerous_form_only(rule_id: str, bad: str, good: str) -> None:
    assert rule_id in rule_ids(bad)
    assert rule_id not in rule_ids(good)


def test_every_rule_has_cases() -> None:
    assert {rule.id for rule in RULES} == {case[0] for case in CASES}


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_each_rules_own_bad_example_fires_it_and_good_example_is_clean(rule) -> None:  # noqa: ANN001
    assert rule_ids(rule.bad) == [rule.id]
    for patch_file in rule.good.split(NEXT_PATCH):
        assert rule_ids(patch_file) == []


def test_findings_carry_line_and_a_one_line_excerpt() -> None:
    text = "create table t (a int);\n\ncreate index i\n    on u (a);\n"
    assert lint(parse_sql(text), text) == (
        Finding(RULES_BY_ID["create-index-non-concurrently"], 3, "create index i on u (a)"),
    )


def test_one_statement_can_break_several_rules() -> None:
    text = "alter table t alter column a type bigint, drop column b, add check (a > 0);"
    assert rule_ids(text) == ["alter-column-type", "add-check-without-not-valid", "drop-column"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # on the line before: silences the next statement only
        ("-- pgpatch: allow truncate\ntruncate t;\ntruncate u;\n", ["truncate"]),
        # on the same line, after the statement
        ("truncate t; -- pgpatch: allow truncate\ntruncate u;\n", ["truncate"]),
        # several ids, and a reason after them
        (
            "-- pgpatch: allow truncate, drop-table  (staging only)\ntruncate t; drop table t;\n",
            ["drop-table"],
        ),
        ("/* pgpatch: allow drop-table */ drop table t;\n", []),
        # a different rule id silences nothing
        ("-- pgpatch: allow drop-table\ntruncate t;\n", ["truncate"]),
        # the whole file
        ("-- pgpatch: allow-file truncate\ntruncate t;\nselect 1;\ntruncate u;\n", []),
        ("truncate t;\n-- pgpatch: allow-file truncate, vacuum-full\nvacuum full u;\n", []),
        # inside a string it is not a comment, so not a directive
        ("select '-- pgpatch: allow truncate';\ntruncate t;\n", ["truncate"]),
    ],
)
def test_silencing(text: str, expected: list[str]) -> None:
    assert rule_ids(text) == expected


def test_silenced_statement_still_reports_other_rules() -> None:
    text = "-- pgpatch: allow drop-column\nalter table t drop column a, alter column b type text;\n"
    assert rule_ids(text) == ["alter-column-type"]


def test_rules_are_complete_values() -> None:
    assert len(RULES_BY_ID) == len(RULES)
    for rule in RULES:
        assert rule.id and rule.title and rule.why and rule.lock and rule.safer
        assert rule.id == rule.id.lower() and " " not in rule.id


def test_docs_lint_md_is_generated_from_the_rules() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_rules_markdown(), (
        "docs/lint.md is stale: run\n"
        "  python -c 'from postgresqlpatches.core.lint import render_rules_markdown as r; "
        'import pathlib; pathlib.Path("docs/lint.md").write_text(r())\''
    )
