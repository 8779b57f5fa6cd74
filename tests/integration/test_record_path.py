"""What runs between a patch's transaction id and its COMMIT: only the record's write. The
token checksum the record keeps is scanned before, while the server runs what was sent."""

from __future__ import annotations

from typing import Any

import pytest

from postgresqlpatches.core.checksums import token_checksum
from postgresqlpatches.core.discovery import Patch
from postgresqlpatches.pg.state import StateStore
from tests.integration.conftest import Pg

# how pgpatch writes its record is its own code path, the same on every major: on one major
# only (tests/conftest.py)
pytestmark = pytest.mark.one_major


BASELINE = "CREATE DATABASE app;\n"
PATCHES = {
    "app.20240101.0001.postgres.first.sql": "CREATE TABLE a (id int);  -- opens its session\n",
    "app.20240101.0002.postgres.sent_behind.sql": "SET lock_timeout = '5s';\n"
                                                  "CREATE TABLE b (id int);\n",
    "app.20240101.0003.postgres.sent_behind_too.sql": "INSERT INTO a VALUES (1);\n",
    "app.20240101.0004.postgres.Last_One.sql": "CREATE INDEX ON a (id);\n",
}


def test_the_record_finds_the_checksum_scanned(pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch 1 opens its session (scanned while BEGIN and the id's query run), 2-4 are sent
    behind the COMMIT before them (scanned while that patch runs): when each record is
    written, its checksum is there already, and the record holds the file's token checksum."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for name, text in PATCHES.items():
        pg.write(f"p/{name}", text)
    seen: dict[str, bool] = {}
    insert = StateStore.insert

    def watched(self: StateStore, patch: Patch, **kwargs: Any) -> int:
        if kwargs.get("xid") is not None:  # the record between a transaction id and COMMIT
            seen[patch.name.filename] = "checksum" in patch.__dict__  # the cached scan
        return insert(self, patch, **kwargs)

    monkeypatch.setattr(StateStore, "insert", watched)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    assert seen == dict.fromkeys(PATCHES, True)
    rows = dict(pg.query("SELECT name, checksum FROM installed_patches WHERE database_id = "
                         "(SELECT id FROM databases WHERE name = 'app')", "patches"))
    assert {n: rows[n] for n in PATCHES} == {n: token_checksum(t) for n, t in PATCHES.items()}
    assert pg.query("SELECT count(*) FROM a", "app") == [(1,)]


def test_the_record_is_a_prepared_statement_of_the_state_session(
        pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server plans the record's INSERT once per run, not for every patch in the wait
    before its COMMIT: the store's session prepares it at the first patch's record (its own
    bootstrap records are other statements), and every later record executes it."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for name, text in PATCHES.items():
        pg.write(f"p/{name}", text)
    prepared: list[tuple[int, int]] = []  # after each record: statements, their executions
    insert = StateStore.insert

    def watched(self: StateStore, patch: Patch, **kwargs: Any) -> int:
        record_id = insert(self, patch, **kwargs)
        if kwargs.get("xid") is not None:
            row = self.conn.execute(
                "SELECT count(*), coalesce(sum(generic_plans + custom_plans), 0)::int "
                "FROM pg_prepared_statements "
                "WHERE statement LIKE '%%INSERT INTO installed_patches%%'").fetchone()
            assert row is not None
            prepared.append((row[0], row[1]))
        return record_id

    monkeypatch.setattr(StateStore, "insert", watched)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    assert len(prepared) == len(PATCHES)
    counts, runs = zip(*prepared, strict=True)
    assert counts[0] >= 1 and set(counts) == {counts[0]}  # made once, at the first record
    assert [b - a for a, b in zip(runs[:-1], runs[1:], strict=True)] == [1] * (len(runs) - 1)
