"""What one apply costs besides the patches' own work: each patch's statements are made
ready once, and a first run logs in no more often than it must (docs/performance.md)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

import postgresqlpatches.core.sending as sending_module
from postgresqlpatches.core.planner import Step
from tests.integration.conftest import Pg

BASELINE = "CREATE DATABASE app;\n"
PATCHES = {
    "app.20240101.0001.postgres.first.sql": "CREATE TABLE a (id int);\n",
    "app.20240101.0002.postgres.temp.sql": "CREATE TEMP TABLE scratch (id int);\n"
                                           "INSERT INTO a SELECT 1;\n",
    "app.20240101.0003.postgres.behind.sql": "INSERT INTO a VALUES (2);\n",
    "app.20240101.0004.postgres.last.sql": "CREATE INDEX ON a (id);\n",
}


def test_each_patch_is_made_ready_to_send_once(pg: Pg, monkeypatch: pytest.MonkeyPatch) -> None:
    """A patch sent behind the COMMIT before it had its statements made then (as_sent,
    DISCARD TEMP added to the one with a temp table): its own run takes them, not a second
    making."""
    pg.write("app.00000000.0000.postgres.baseline.sql", BASELINE)
    for name, text in PATCHES.items():
        pg.write(f"p/{name}", text)
    made: Counter[str] = Counter()
    real = sending_module.sending

    def counted(step: Step, state_db: str) -> Any:
        made[step.patch.name.filename] += 1
        return real(step, state_db)

    monkeypatch.setattr(sending_module, "sending", counted)
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 0, result.output
    assert {name: made[name] for name in PATCHES} == dict.fromkeys(PATCHES, 1)
    assert pg.query("SELECT array_agg(id ORDER BY id) FROM a", "app") == [([1, 2],)]
