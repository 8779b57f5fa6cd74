"""The benchmark script runs end to end on a tiny N; timings are never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_quick_run_writes_a_results_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench.py"), "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "| tool | version | N | runs | apply median s |" in text
    rows = [line for line in text.splitlines() if line.startswith(("| floor |", "| pgpatch |"))]
    assert [r.split("|")[1].strip() for r in rows] == ["floor", "pgpatch"]
    assert "| pgpatch --help |" in text
    mix = [line.split("|")[1].strip() for line in text.splitlines() if "(mix) |" in line]
    assert mix == ["floor (mix)", "pgpatch (mix)"]
    assert "PostgreSQL" in text  # the server's version is written down


def test_protocol_script_runs_every_variant(tmp_path: Path) -> None:
    out = tmp_path / "protocol.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "protocol.py"), "--rounds", "2", "--chunk", "2",
         "--output", str(out)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line.split("|")[1].strip() for line in out.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| variant")]
    assert rows == ["one-transaction", "commit-each", "record-after", "unchained", "no-reset",
                    "reconnect-1-in-10", "pgpatch"]
