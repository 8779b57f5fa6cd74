"""pgpatch runs its state database's shipped baseline without psql: the file as psql reads
it, psql's variables and booleans, and only that exact text (core/own_patches.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from postgresqlpatches.core.discovery import builtin_patches
from postgresqlpatches.core.own_patches import (
    OWN_BASELINE,
    OWNERS_ONLY,
    needs_no_new_session,
    psql_boolean,
    runs_without_psql,
    script_steps,
    substitute,
)
from postgresqlpatches.core.statements import new_session_needed, parse_sql


def test_the_shipped_baseline_is_read_as_psql_reads_it() -> None:
    baseline = builtin_patches("patches")[0]
    steps = [(s.line, s.command, s.text.split("\n", 1)[0]) for s in script_steps(baseline.text)]
    assert steps == [
        (1, "", "-- pgpatch's state database, created in the original tool's shape; the later "
                "patches.* files"),
        (4, "\\getenv", "patches_password PGPATCH_PATCHES_PASSWORD"),
        (5, "", "SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'patches') AS "
                "create_role "),
        (5, "\\gset", ""),
        (6, "\\if", ":create_role"),
        (7, "", "CREATE ROLE patches LOGIN PASSWORD :'patches_password';"),
        (8, "\\endif", ""),
        (9, "", 'CREATE DATABASE :"database" OWNER patches;'),
        (11, "\\connect", ':"database"'),
        (12, "", "SET ROLE patches;"),
    ]
    last = script_steps(baseline.text)[-1]
    assert baseline.text[last.offset:] == last.text and baseline.text.endswith(last.text)


@pytest.mark.parametrize("state_db, admin", [("patches", "postgres"), ("pgpatch_state", "admin")])
def test_only_the_shipped_text_runs_without_psql(state_db: str, admin: str) -> None:
    baseline, *later = builtin_patches(state_db, admin)
    assert runs_without_psql(baseline)  # renamed for --state-db and --admin-user alike
    assert OWN_BASELINE[0] in baseline.path
    assert not runs_without_psql(replace(baseline, text_checksum="0" * 64))  # edited
    assert not runs_without_psql(replace(baseline, builtin=False))  # a user's file
    assert not any(runs_without_psql(p) for p in later)


def test_the_patches_that_only_give_owners_away_are_the_shipped_ones() -> None:
    """Each listed file is shipped with that text, and is the only kind of file the rules
    would otherwise give new sessions (its DO block names the database)."""
    patches = {p.path.rsplit("/", 1)[-1]: p for p in builtin_patches("patches")}
    for name, checksum in OWNERS_ONLY.items():
        patch = patches[name]
        assert patch.text_checksum == checksum
        assert needs_no_new_session(patch)
        assert new_session_needed(parse_sql(patch.text).statements) is not None
        assert not needs_no_new_session(replace(patch, text_checksum="0" * 64))
        assert not needs_no_new_session(replace(patch, builtin=False))


def test_psql_variables_are_replaced_where_psql_replaces_them() -> None:
    variables = {"pw": "se'cret", "database": 'My "db"', "flag": "t"}
    text = ("CREATE ROLE x PASSWORD :'pw'; CREATE DATABASE :\"database\"; SELECT :flag, "
            "':pw', \":pw\", x::text, :unset, $$ :pw $$, $f$ :'pw' $f$ -- :pw\n/* :pw */")
    assert substitute(text, variables, lambda v: "L<" + v + ">", lambda v: "I<" + v + ">") == (
        "CREATE ROLE x PASSWORD L<se'cret>; CREATE DATABASE I<My \"db\">; SELECT t, "
        "':pw', \":pw\", x::text, :unset, $$ :pw $$, $f$ :'pw' $f$ -- :pw\n/* :pw */")


@pytest.mark.parametrize("value, meaning", [
    ("t", True), ("true", True), ("TRUE", True), ("on", True), ("yes", True), ("1", True),
    ("f", False), ("false", False), ("off", False), ("no", False), ("0", False),
    ("o", None), ("", None), ("maybe", None), ("2", None)])
def test_if_reads_a_boolean_as_psql_does(value: str, meaning: bool | None) -> None:
    assert psql_boolean(value) is meaning
