"""The database-group benchmark runs end to end on a tiny size; timings are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_groups_bench_quick_run_writes_both_tables(tmp_path: Path) -> None:
    out = tmp_path / "groups.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "groups.py"), "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "## plan: 4 databases x 3 applied patches (12 records)" in text
    assert "| 3 @tenants files | 1 |" in text
    assert "| 12 files, one per database and patch | 1 |" in text
    assert "## apply: 2 group patches to 4 databases" in text
    rows = [line.split("|")[1].strip() for line in text.splitlines()
            if line.startswith(("| psql loop", "| pgpatch apply"))]
    assert rows == ["psql loop (one `psql -1` per database)",
                    "pgpatch apply (members one after another)"]
