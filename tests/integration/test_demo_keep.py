"""``pgpatch demo --keep`` leaves a server the user can log into: it prints how."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import psycopg


def test_demo_keep_prints_a_login_that_works_and_ctrl_c_stops_the_server() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRESQL_"))}
    proc = subprocess.Popen([sys.executable, "-m", "postgresqlpatches", "demo", "--keep"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if "Ctrl-C" in line:
                break
        assert lines and lines[-1] == "press Ctrl-C to stop it", lines
        assert lines[-3].startswith("the server keeps running at "), lines[-3:]
        words = shlex.split(lines[-2])
        assert words[0].startswith("PGPASSWORD=") and words[1] == "psql", words
        password = words[0].removeprefix("PGPASSWORD=")
        args = dict(zip(words[2:-1:2], words[3:-1:2], strict=True))
        assert words[-1] == "hundbidrag" and args["-U"] == "postgres"
        with psycopg.connect(host=args["-h"], port=int(args["-p"]), user=args["-U"],
                             password=password, dbname="hundbidrag", connect_timeout=10) as conn:
            rows = conn.execute("SELECT owner FROM allowance_per_owner").fetchall()
        assert rows == [("Astrid",)]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "throwaway server stopped and removed" in out
    assert "Traceback" not in err
