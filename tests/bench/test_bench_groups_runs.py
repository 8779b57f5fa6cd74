"""The database-group benchmark runs end to end on a tiny size; timings are never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_groups_bench_quick_run_writes_both_tables(tmp_path: Path) -> None:
    out = tmp_path / "groups.md"
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n## Apply\nkept as it is\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "groups.py"), "--quick", "--output", str(out),
         "--results", str(results)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "### plan: 4 databases x 3 applied patches (12 records)" in text
    assert "| 3 @tenants files | 1 |" in text
    assert "| 12 files, one per database and patch | 1 |" in text
    assert "| 3 @tenants files on 2 servers (`-t all --jobs 2`, 24 records) | 1 |" in text
    assert "### apply: 2 group patches to 4 databases" in text
    rows = [line.split("|")[1].strip() for line in text.splitlines()
            if line.startswith(("| psql loop", "| pgpatch apply"))]
    assert rows == ["psql loop (one `psql -1` per database)",
                    "pgpatch apply --jobs 1 (members one after another)",
                    "pgpatch apply --jobs 4"]
    assert "`--jobs 4` / `--jobs 1`, paired in each round: " in text
    # the section goes between its markers, the rest of the file stays
    written = results.read_text()
    assert written.startswith("# results\n\n## Apply\nkept as it is\n\n")
    assert written.count("<!-- bench/groups.py: begin -->") == 1
    assert text in written


def test_a_second_write_replaces_the_groups_section_and_keeps_the_rest(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("groups_bench", REPO / "bench" / "groups.py")
    assert spec is not None and spec.loader is not None
    groups = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(groups)
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n")
    groups.write_section(results, "## Database groups\nfirst\n")
    results.write_text(results.read_text() + "\n## after\nstays\n")
    groups.write_section(results, "## Database groups\nsecond\n")
    assert results.read_text() == (
        "# results\n\n<!-- bench/groups.py: begin -->\n## Database groups\nsecond\n"
        "<!-- bench/groups.py: end -->\n## after\nstays\n")
