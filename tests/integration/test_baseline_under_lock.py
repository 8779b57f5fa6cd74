"""``pgpatch baseline`` is one run under the server's lock: dump, write and record, and
nothing of it (no file, no temporary file, no record) left when a step after the dump fails."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from postgresqlpatches.pg.server import LOCK_KEY
from tests.integration.conftest import Pg

FILE = "shop.00000000.0000.postgres.baseline.sql"


def _shop(pg: Pg) -> None:
    pg.query("CREATE DATABASE shop")
    pg.query("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)", "shop")


def _baseline_records(pg: Pg) -> list[tuple[str]]:
    return pg.query("SELECT ip.name::text FROM installed_patches ip JOIN databases d "
                    "ON d.id = ip.database_id WHERE d.name = 'shop'", "patches")


def test_baseline_waits_for_the_lock_before_it_dumps_or_writes(pg: Pg) -> None:
    _shop(pg)
    out = pg.tree / "shop"
    out.mkdir(parents=True)
    with pg.server.connect("postgres", autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", LOCK_KEY)
        proc = _popen(pg, out)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # until the baseline waits for the lock
                waiting = holder.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted AND classid = %s AND objid = %s", LOCK_KEY).fetchone()
                if waiting == (1,):
                    break
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            else:
                raise AssertionError("the baseline never waited for the lock")
            time.sleep(0.3)
            assert list(out.iterdir()) == []  # nothing dumped or written while it waits
            dumps = holder.execute("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE application_name = 'pg_dump'").fetchone()
            assert dumps == (0,)
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s, %s)", LOCK_KEY)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert [p.name for p in out.iterdir()] == [FILE]
    assert "recorded it as applied" in stdout
    assert _baseline_records(pg) == [(FILE,)]


def _popen(pg: Pg, out: Path) -> subprocess.Popen[str]:
    return pg.popen("baseline", "shop", "--output-dir", str(out))


def test_a_record_that_cannot_be_written_leaves_no_file(pg: Pg) -> None:
    _shop(pg)
    pg.query("CREATE DATABASE other")
    made = pg.cli("baseline", "other", "--output-dir", str(pg.tree / "other"))
    assert made.exit_code == 0, made.stderr  # the state database exists now
    pg.query("""CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'no more records'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON installed_patches
                FOR EACH ROW EXECUTE FUNCTION refuse();""", "patches")
    out = pg.tree / "shop"
    result = pg.cli("baseline", "shop", "--output-dir", str(out))
    assert result.exit_code == 1
    assert "no more records" in result.stderr.splitlines()[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or list(out.iterdir()) == []  # no file, no .tmp
    pg.query("DROP TRIGGER refuse ON installed_patches", "patches")
    assert _baseline_records(pg) == []


def test_an_unwritable_output_dir_is_one_line_naming_the_file_and_records_nothing(
        pg: Pg) -> None:
    _shop(pg)
    blocker = pg.tree / "a-file"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder\n")
    out = blocker / "shop"
    result = pg.cli("baseline", "shop", "--output-dir", str(out))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {out / FILE}: cannot write the baseline: "), lines
    assert lines[1].startswith("hint: choose an --output-dir pgpatch can write to")
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr
    assert [p.name for p in pg.tree.iterdir()] == ["a-file"]
    if "patches" in pg.databases():
        assert _baseline_records(pg) == []
