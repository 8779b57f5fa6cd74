"""The crash tests' hook (pg/executor.py crash_point) counts passes across threads: group
members run in threads with --jobs, and the Nth pass must be the Nth of the process."""

from __future__ import annotations

import sys
import threading

import pytest

from postgresqlpatches.pg import executor

THREADS = 8
PASSES = 4000


def test_the_nth_pass_of_many_threads_fires_exactly_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    total = THREADS * PASSES
    monkeypatch.setenv("PGPATCH_CRASH_AT", f"threaded-point:{total}:interrupt")
    monkeypatch.setattr(executor, "_passes", {})
    fired: list[int] = []
    start = threading.Barrier(THREADS)

    def passes() -> None:
        start.wait()
        for _ in range(PASSES):
            try:
                executor.crash_point("threaded-point")
            except KeyboardInterrupt:
                fired.append(1)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as can be: a lost count shows
    try:
        threads = [threading.Thread(target=passes) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert executor._passes["threaded-point"] == total  # not one pass lost
    assert fired == [1]  # the last pass, and only it


def test_another_point_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPATCH_CRASH_AT", "after-record:1:interrupt")
    monkeypatch.setattr(executor, "_passes", {})
    executor.crash_point("after-commit")
    with pytest.raises(KeyboardInterrupt):
        executor.crash_point("after-record")
    executor.crash_point("after-record")  # the 2nd pass: nothing
