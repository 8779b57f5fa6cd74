"""The planner is a pure function: files + server facts + records -> steps and problems."""

from __future__ import annotations

import datetime as dt

import pytest

from postgresqlpatches.core.discovery import Patch, read_patch
from postgresqlpatches.core.planner import (
    Action,
    ServerFacts,
    make_plan,
    record_problems,
    unrecorded_candidates,
)
from postgresqlpatches.core.records import XACT_FUTURE, Record

STATE = "patches"


def patch(filename: str, text: str = "select 1;\n") -> Patch:
    return read_patch(f"tree/{filename}", text=text)


def record(p: Patch, *, checksum: str | None = "same", rid: int = 1, settled: bool = True,
           xid: int | None = None, done: int | None = None) -> Record:
    n = p.name
    return Record(id=rid, database=n.database, major=n.major, minor=n.minor, name=n.filename,
                  installed=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), user=n.user,
                  checksum=p.checksum if checksum == "same" else checksum, checksum_version=2,
                  text_checksum=p.text_checksum if checksum == "same" else None, xid=xid,
                  settled=settled, statements_done=done, non_transactional=done is not None)


BASE = patch("app.00000000.0000.postgres.baseline.sql", "\\connect app\ncreate table t();\n")
SEED = patch("app.00000000.0001.app.seed.sql", "insert into t default values;\n")
P1 = patch("app.20240101.0001.app.one.sql")
P2 = patch("app.20240102.0001.app.two.sql")


def actions(plan) -> list[tuple[str, str]]:
    return [(s.patch.name.version, s.action.value) for s in plan.steps]


def kinds(plan) -> list[str]:
    return [p.kind for p in plan.problems]


def test_missing_database_is_bootstrapped_then_patched() -> None:
    plan = make_plan([BASE, SEED, P1], ServerFacts(frozenset()), state_db=STATE)
    assert actions(plan) == [("00000000.0000", "bootstrap"), ("00000000.0001", "bootstrap"),
                             ("20240101.0001", "apply")]
    assert plan.steps[0].via_psql and not plan.steps[1].via_psql
    assert plan.ok


def test_existing_database_skips_its_bootstrap_scripts() -> None:
    plan = make_plan([BASE, SEED, P1], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert actions(plan) == [("00000000.0000", "skip"), ("00000000.0001", "skip"),
                             ("20240101.0001", "apply")]
    assert plan.steps[0].reason == "database exists"


def test_missing_database_without_baseline_is_a_problem() -> None:
    plan = make_plan([P1], ServerFacts(frozenset()), state_db=STATE)
    assert kinds(plan) == ["no-baseline"]
    assert plan.problems[0].path == P1.path


def test_recorded_patches_are_applied() -> None:
    facts = ServerFacts(frozenset({"app"}), (record(P1),))
    plan = make_plan([P1, P2], facts, state_db=STATE)
    assert actions(plan) == [("20240101.0001", "applied"), ("20240102.0001", "apply")]
    assert len(plan.pending) == 1


def test_changed_applied_patch_is_a_problem() -> None:
    facts = ServerFacts(frozenset({"app"}), (record(P1, checksum="0" * 64),))
    plan = make_plan([P1], facts, state_db=STATE)
    assert kinds(plan) == ["changed"]
    assert "changed" in plan.steps[0].flags


def test_record_without_checksum_is_not_a_change() -> None:
    facts = ServerFacts(frozenset({"app"}), (record(P1, checksum=None),))
    plan = make_plan([P1], facts, state_db=STATE)
    assert plan.ok and "no-checksum" in plan.steps[0].flags


def test_out_of_order_is_refused_unless_allowed() -> None:
    facts = ServerFacts(frozenset({"app"}), (record(P2),))
    refused = make_plan([P1, P2], facts, state_db=STATE)
    assert kinds(refused) == ["out-of-order"]
    allowed = make_plan([P1, P2], facts, state_db=STATE, allow_out_of_order=True)
    assert allowed.ok and "out-of-order" in allowed.steps[0].flags
    assert allowed.steps[0].action is Action.APPLY


def test_unsettled_record_counts_as_what_its_transaction_became() -> None:
    r = record(P1, settled=False, xid=1234)
    committed = make_plan([P1], ServerFacts(frozenset({"app"}), (r,), {1234: "committed"}),
                          state_db=STATE)
    aborted = make_plan([P1], ServerFacts(frozenset({"app"}), (r,), {1234: "aborted"}),
                        state_db=STATE)
    running = make_plan([P1], ServerFacts(frozenset({"app"}), (r,), {1234: "in progress"}),
                        state_db=STATE)
    assert actions(committed) == [("20240101.0001", "applied")]
    assert actions(aborted) == [("20240101.0001", "apply")]
    assert kinds(running) == ["unsettled"]


def test_status_reports_only_records_whose_outcome_the_server_cannot_tell() -> None:
    records = tuple(record(P, settled=False, xid=x, rid=x)
                    for P, x in [(P1, 1), (P2, 2), (SEED, 3), (BASE, 4)])
    fate = {1: "committed", 2: "in progress", 3: XACT_FUTURE, 4: None}
    found = record_problems(ServerFacts(frozenset({"app"}), records, fate), STATE)
    assert [(p.kind, p.message.split(": its")[0]) for p in found] == [
        ("unsettled", "the outcome of app 00000000.0001 is unknown"),
        ("unsettled", "the outcome of app 00000000.0000 is unknown")]
    assert "in the future of this server" in found[0].message
    assert "WHERE id = 3" in (found[0].hint or "") and "too old" in found[1].message


def test_interrupted_non_transactional_patch_resumes() -> None:
    r = record(P1, settled=False, done=2)
    plan = make_plan([P1], ServerFacts(frozenset({"app"}), (r,)), state_db=STATE)
    assert plan.steps[0].action is Action.APPLY and plan.steps[0].resume_from == 2
    assert "resume" in plan.steps[0].flags


def test_interrupted_bootstrap_is_made_again() -> None:
    r = record(BASE, settled=False)
    plan = make_plan([BASE, SEED, P1], ServerFacts(frozenset({"app"}), (r,)), state_db=STATE)
    assert plan.ok
    assert actions(plan) == [("00000000.0000", "bootstrap"), ("00000000.0001", "bootstrap"),
                             ("20240101.0001", "apply")]
    assert all("redo" in s.flags for s in plan.steps[:2])
    assert plan.steps[0].record == r


def test_records_of_a_dropped_database_are_a_problem() -> None:
    plan = make_plan([BASE, P1], ServerFacts(frozenset(), (record(P1),)), state_db=STATE)
    assert "state-mismatch" in kinds(plan)


def test_a_dropped_database_with_only_its_baseline_recorded_is_a_problem_too() -> None:
    plan = make_plan([BASE, P1], ServerFacts(frozenset(), (record(BASE),)), state_db=STATE)
    assert kinds(plan) == ["state-mismatch"]


def test_a_bootstrap_cut_short_before_the_database_existed_runs_again() -> None:
    plan = make_plan([BASE, P1], ServerFacts(frozenset(), (record(BASE, settled=False),)),
                     state_db=STATE)
    assert plan.ok
    assert actions(plan) == [("00000000.0000", "bootstrap"), ("20240101.0001", "apply")]


def test_meta_command_outside_baseline_names_file_and_line() -> None:
    bad = patch("app.20240103.0001.app.meta.sql", "select 1;\n\\set x 1\nselect :x;\n")
    plan = make_plan([bad], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert kinds(plan) == ["meta-command"]
    assert (plan.problems[0].path, plan.problems[0].line) == (bad.path, 2)


def test_meta_commands_are_fine_in_a_baseline() -> None:
    plan = make_plan([BASE], ServerFacts(frozenset()), state_db=STATE)
    assert plan.ok


def test_syntax_error_is_a_problem_with_line() -> None:
    bad = patch("app.20240103.0001.app.typo.sql", "select 1;\n\nselec 2;\n")
    plan = make_plan([bad], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert kinds(plan) == ["syntax"] and plan.problems[0].line == 3


def test_non_transactional_patch_is_marked() -> None:
    p = patch("app.20240103.0001.app.idx.sql", "create index concurrently i on t (a);\n")
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert plan.steps[0].non_transactional


def test_file_wrapped_in_begin_commit_runs_as_one_transaction() -> None:
    p = patch("app.20240103.0001.app.wrapped.sql", "BEGIN;\ncreate table a();\nCOMMIT;\n")
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert plan.ok
    assert [s.kind for s in plan.steps[0].statements] == ["CreateStmt"]


def test_transaction_control_inside_a_patch_is_refused() -> None:
    p = patch("app.20240103.0001.app.commit.sql", "create table a();\nCOMMIT;\ncreate table b();\n")
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert kinds(plan) == ["transaction-control"] and plan.problems[0].line == 2


def test_only_pending_patches_are_parsed() -> None:
    applied = patch("app.20240101.0001.app.one.sql", "this is not sql;\n")
    plan = make_plan([applied], ServerFacts(frozenset({"app"}), (record(applied),)),
                     state_db=STATE)
    assert plan.ok and plan.steps[0].statements == ()


def test_copy_from_stdin_outside_a_baseline_is_refused() -> None:
    p = patch("app.20240103.0001.app.rows.sql",
              "CREATE TABLE r (a int);\nCOPY r (a) FROM stdin;\nCOPY r FROM '/srv/r.csv';\n")
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert kinds(plan) == ["copy-stdin"] and plan.problems[0].line == 2


def test_copy_with_inline_rows_is_one_copy_stdin_problem_at_the_copy() -> None:
    p = patch("app.20240103.0001.app.rows.sql",
              "CREATE TABLE r (a int, b text);\n\nCOPY r (a, b) FROM stdin;\n1\t\\N\n"
              "2\tx\n\\.\nSELECT 1;\n")
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert [(q.kind, q.line) for q in plan.problems] == [("copy-stdin", 3)]
@pytest.mark.parametrize("patches, existing, recorded, expected", [
    ([BASE, P1], {"app"}, [], {"app"}),  # exists, no record, a patch to run: looked into
    ([BASE, P1], {"app"}, [BASE], set()),  # has a record: the common case, nothing to ask
    ([BASE, SEED], {"app"}, [], set()),  # only its bootstrap, which is skipped
    ([BASE, P1], set(), [], set()),  # bootstrapped by this run
    ([patch("patches.20270101.0001.postgres.mine.sql")], {"patches"}, [], set()),
])
def test_only_databases_without_any_record_are_looked_into(
        patches: list[Patch], existing: set[str], recorded: list[Patch],
        expected: set[str]) -> None:
    records = [record(p) for p in recorded]
    assert unrecorded_candidates(patches, existing, records, STATE) == expected


def test_a_database_with_objects_of_its_own_and_no_record_is_a_problem() -> None:
    facts = ServerFacts(frozenset({"app"}),
                        unrecorded={"app": ["table a", "table b", "view c", "function d()"]})
    plan = make_plan([P1, P2], facts, state_db=STATE)
    assert [(p.kind, p.path, p.message) for p in plan.problems] == [(
        "unrecorded-database", None,
        "database app holds objects of its own (table a, table b, view c and 1 more) but the "
        "state database patches has no record of it: its patches would all run on it again")]
    assert "pgpatch baseline app" in (plan.problems[0].hint or "")
    assert actions(make_plan([P1, P2], ServerFacts(frozenset({"app"})), state_db=STATE)) == [
        ("20240101.0001", "apply"), ("20240102.0001", "apply")]
# -- transaction modes: what plan accepts, apply runs as written --------------------------

@pytest.mark.parametrize("text, modes, kinds_of_statements", [
    ("BEGIN;\ncreate table a();\nCOMMIT;\n", (), ["CreateStmt"]),
    ("BEGIN READ ONLY;\nselect 1;\nCOMMIT;\n", ("READ ONLY",), ["SelectStmt"]),
    ("start transaction isolation level serializable, read only, deferrable;\nselect 1;\nend;\n",
     ("ISOLATION LEVEL SERIALIZABLE", "READ ONLY", "DEFERRABLE"), ["SelectStmt"]),
    ("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;\nselect 1;\n",
     ("ISOLATION LEVEL REPEATABLE READ",), ["SelectStmt"]),
    ("BEGIN READ ONLY;\nSET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nselect 1;\nCOMMIT;\n",
     ("READ ONLY", "ISOLATION LEVEL SERIALIZABLE"), ["SelectStmt"]),
    ("BEGIN READ ONLY;\nSET TRANSACTION READ WRITE;\nselect 1;\nCOMMIT;\n", ("READ WRITE",),
     ["SelectStmt"]),
    ("START TRANSACTION READ WRITE, NOT DEFERRABLE;\nselect 1;\nCOMMIT;\n",
     ("READ WRITE", "NOT DEFERRABLE"), ["SelectStmt"]),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;\nselect 1;\n", (),
     ["VariableSetStmt", "SelectStmt"]),
])
def test_transaction_modes_written_in_a_file_are_its_transactions(
        text: str, modes: tuple[str, ...], kinds_of_statements: list[str]) -> None:
    p = patch("app.20240103.0001.app.modes.sql", text)
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert plan.ok, plan.problems
    assert plan.steps[0].transaction == modes
    assert [s.kind for s in plan.steps[0].statements] == kinds_of_statements


@pytest.mark.parametrize("text, line, message", [
    ("select 1;\nSET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n", 2,
     "SET TRANSACTION after the first statement of a patch"),
    ("select 1;\nSET TRANSACTION READ ONLY;\n", 2,
     "SET TRANSACTION after the first statement of a patch"),
    ("SET TRANSACTION SNAPSHOT '00000003-0000001B-1';\n", 1, "SET TRANSACTION SNAPSHOT in a patch"),
    ("SET transaction_isolation = 'serializable';\n", 1,
     "SET transaction_isolation inside a patch"),
    ("SET LOCAL transaction_deferrable = on;\n", 1, "SET transaction_deferrable inside a patch"),
    ("BEGIN;\nselect 1;\nCOMMIT AND CHAIN;\n", 1, "transaction control (BEGIN) inside a patch"),
    ("BEGIN READ ONLY;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;\n", 1,
     "transaction options in a file that runs outside a transaction "
     "(CREATE INDEX CONCURRENTLY)"),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nVACUUM t;\n", 1,
     "transaction options in a file that runs outside a transaction (VACUUM)"),
])
def test_transaction_modes_pgpatch_cannot_honour_are_plan_problems(
        text: str, line: int, message: str) -> None:
    p = patch("app.20240103.0001.app.modes.sql", text)
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert [(k.kind, k.line) for k in plan.problems][:1] == [("transaction-control", line)]
    assert plan.problems[0].message == message


def test_a_non_transactional_bootstrap_script_is_planned_statement_by_statement() -> None:
    index = patch("app.00000000.0001.app.index.sql", "CREATE INDEX CONCURRENTLY i ON t (a);\n")
    plan = make_plan([BASE, index], ServerFacts(frozenset()), state_db=STATE)
    assert plan.ok
    assert plan.steps[1].action is Action.BOOTSTRAP and plan.steps[1].non_transactional


@pytest.mark.parametrize("text, kinds_of_statements", [
    ("create table a();\nBEGIN;\ncreate table b();\nCOMMIT;\ncreate table c();\n",
     ["CreateStmt"] * 3),  # Prisma's enum rewrite amid other statements
    ("BEGIN;\ncreate table a();\nCOMMIT;\nSTART TRANSACTION;\ncreate table b();\nEND;\n",
     ["CreateStmt"] * 2),
])
def test_a_plain_block_inside_a_patch_is_part_of_its_one_transaction(
        text: str, kinds_of_statements: list[str]) -> None:
    p = patch("app.20240103.0001.app.block.sql", text)
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert plan.ok, plan.problems
    assert [s.kind for s in plan.steps[0].statements] == kinds_of_statements
    assert plan.steps[0].transaction == () and not plan.steps[0].non_transactional


@pytest.mark.parametrize("text, first_line, message", [
    ("create table a();\nBEGIN;\ncreate table b();\nROLLBACK;\n", 2,
     "transaction control (BEGIN) inside a patch"),
    ("create table a();\nBEGIN READ ONLY;\nselect 1;\nCOMMIT;\n", 2,
     "transaction control (BEGIN) inside a patch"),
    ("create table a();\nBEGIN;\ncreate table b();\n", 2,
     "transaction control (BEGIN) inside a patch"),
    ("create index concurrently i on t (a);\nBEGIN;\ncreate table b();\nCOMMIT;\n", 2,
     "transaction control (BEGIN) in a file that runs outside a transaction"),
])
def test_a_block_pgpatch_cannot_run_as_part_of_the_patch_is_refused(
        text: str, first_line: int, message: str) -> None:
    p = patch("app.20240103.0001.app.block.sql", text)
    plan = make_plan([p], ServerFacts(frozenset({"app"})), state_db=STATE)
    assert (plan.problems[0].kind, plan.problems[0].line, plan.problems[0].message) == (
        "transaction-control", first_line, message)
