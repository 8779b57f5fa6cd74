#!/usr/bin/env python3
"""What pgpatch's per-patch protocol costs, drift-free: variants in turns, in one process.

usage: python bench/protocol.py [--rounds 40] [--chunk 20] [--output PATH]

Whole runs on a VM's disk drift by ±15 % or more (bench/bench.py's floor runs move by 2x
within one run), which hides per-patch differences of a tenth of a millisecond. This script
starts a throwaway server (as bench.py does), makes the state database with pgpatch, and then
applies the workload's patches (CREATE TABLE, INSERT of 10 rows, CREATE INDEX) in chunks: each
round runs one chunk with every variant, in a random order, on the same connections, so a
variant's chunk is compared with the others' chunks of the same round.

- `one-transaction`: the whole chunk in ONE transaction, no record (the floor's shape)
- `commit-each`: a transaction and a commit per patch, no record (the least any runner does
  that commits each patch)
- `record-after`: commit per patch, the record written after the statements and before the
  COMMIT, three round trips (pgpatch before it wrote the record during the statements)
- `unchained`: pgpatch's own code, but each patch in a pipeline of its own (pgpatch before
  it sent the next patch behind the COMMIT)
- `no-reset`: pgpatch's own code without the DISCARD ALL behind each COMMIT (pgpatch before
  each patch got the session of a new connection: what the reset costs)
- `reconnect-1-in-10`: no DISCARD ALL, a new connection after one patch in ten instead (the
  alternative: reconnect only after a patch that changes its session, when one in ten does)
- `pgpatch`: pgpatch's own code as the runner calls it (executor.run_transaction with the
  runner's record write, the next patch sent behind each COMMIT, DISCARD ALL behind it, and
  the runner's look at the lock's session before each record)

Only the loop is timed (ms per patch); per round the difference to `pgpatch` is taken, and
the median and mean ± 2 standard errors of those differences are printed (and written to
--output if given). Timings are never asserted anywhere; tests run this with --rounds 2.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench import patch_sql, pgpatch_command, timed  # noqa: E402
from postgresqlpatches.core.discovery import Patch  # noqa: E402
from postgresqlpatches.core.naming import parse_name  # noqa: E402
from postgresqlpatches.core.statements import Statement, parse_sql  # noqa: E402
from postgresqlpatches.pg.executor import run_transaction  # noqa: E402
from postgresqlpatches.pg.scratch import ScratchServer  # noqa: E402

DB = "protocol"
Chunk = Sequence[tuple[Patch, tuple[Statement, ...]]]
VARIANTS = ("one-transaction", "commit-each", "record-after", "unchained", "no-reset",
            "reconnect-1-in-10", "pgpatch")


def workload(i: int) -> tuple[Patch, tuple[Statement, ...]]:
    text = patch_sql(i)
    name = f"{DB}.{20300101 + (i - 1) // 9999}.{(i - 1) % 9999 + 1:04d}.postgres.t_{i}.sql"
    patch = Patch(name=parse_name(name), path=name, text=text, text_checksum=f"{i:064x}")
    return patch, parse_sql(text).statements


class Protocols:
    def __init__(self, srv: ScratchServer, env: dict[str, str]) -> None:
        from postgresqlpatches.pg.server import Maintenance, Server
        from postgresqlpatches.pg.state import StateStore, cluster_identity, open_state

        server = Server(host=srv.host, port=srv.port, environ=env)
        self.maint = Maintenance(server)
        self.maint.lock(10)
        conn = open_state(server, "patches")
        assert conn is not None
        self.server = server
        self.store = StateStore(conn)
        self.target = server.connect(DB, "postgres", autocommit=False, session_settings=True)
        self.flush = cluster_identity(self.target) != self.store.identity
        self.records: list[int] = []

    def one_transaction(self, chunk: Chunk) -> None:
        with self.target.pipeline():
            for _, statements in chunk:
                for s in statements:
                    self.target.execute(s.text)
        self.target.commit()

    def commit_each(self, chunk: Chunk) -> None:
        for _, statements in chunk:
            with self.target.pipeline():
                for s in statements:
                    self.target.execute(s.text)
            self.target.commit()

    def record_after(self, chunk: Chunk) -> None:
        for patch, statements in chunk:
            with self.target.pipeline():
                cur = self.target.execute("SELECT pg_current_xact_id()::text")
                for s in statements:
                    self.target.execute(s.text)
            row = cur.fetchone()
            assert row is not None
            self.records.append(self.store.insert(patch, xid=int(row[0]), settled=False,
                                                  flush=self.flush))
            self.target.commit()

    def pgpatch(self, chunk: Chunk, chained: bool = True, reset: bool = True,
                reconnect_every: int = 0) -> None:
        for k, (patch, statements) in enumerate(chunk):
            def record(xid: int, patch: Patch = patch) -> None:
                lost = self.maint.lock_lost()
                assert lost is None, lost
                self.records.append(self.store.insert(patch, xid=xid, settled=False,
                                                      flush=self.flush))
            new = bool(reconnect_every) and k % reconnect_every == reconnect_every - 1
            after_new = bool(reconnect_every) and k > 0 and (
                (k - 1) % reconnect_every == reconnect_every - 1)
            following = chunk[k + 1] if chained and not new and k + 1 < len(chunk) else None
            run_transaction(self.target, patch, statements, record, following,
                            sent=chained and k > 0 and not after_new, reset=reset)
            if new:  # as the runner reconnects: a login, then the cluster identity
                from postgresqlpatches.pg.state import cluster_identity

                self.target.close()
                self.target = self.server.connect(DB, "postgres", autocommit=False,
                                                  session_settings=True)
                cluster_identity(self.target)

    def unchained(self, chunk: Chunk) -> None:
        self.pgpatch(chunk, chained=False)

    def no_reset(self, chunk: Chunk) -> None:
        self.pgpatch(chunk, reset=False)

    def reconnect_1_in_10(self, chunk: Chunk) -> None:
        self.pgpatch(chunk, reset=False, reconnect_every=10)

    def settle(self) -> None:
        self.store.mark_settled(self.records)
        self.records = []


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--chunk", type=int, default=20, help="patches per variant and round")
    p.add_argument("--seed", type=int, default=20261126)
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    settings = {"shared_buffers": "128MB", "fsync": "on", "synchronous_commit": "on",
                "max_locks_per_transaction": "1024"}
    with ScratchServer(settings=settings) as srv:
        env = dict(srv.env())
        env.update({"PGUSER": "postgres", "PGPASSWORD": srv.password,
                    "POSTGRESQL_PATCHES_PASSWORD": "patches"})
        admin = srv.connect()
        admin.execute(f"CREATE DATABASE {DB}")
        seed = Path(srv.data_dir).parent / "seed"
        seed.mkdir(exist_ok=True)
        (seed / f"{DB}.20200101.0001.postgres.seed.sql").write_text("SELECT 1;\n")
        timed([*pgpatch_command(), "apply", str(seed / "*.sql")], env)  # the state database
        protocols = Protocols(srv, env)
        runs: dict[str, Callable[[Chunk], None]] = {
            "one-transaction": protocols.one_transaction, "commit-each": protocols.commit_each,
            "record-after": protocols.record_after, "unchained": protocols.unchained,
            "no-reset": protocols.no_reset, "reconnect-1-in-10": protocols.reconnect_1_in_10,
            "pgpatch": protocols.pgpatch}
        per: dict[str, list[float]] = {v: [] for v in VARIANTS}
        diff: dict[str, list[float]] = {v: [] for v in VARIANTS}
        counter = 0
        for _ in range(args.rounds):
            order = list(VARIANTS)
            rng.shuffle(order)
            this: dict[str, float] = {}
            for variant in order:
                chunk = [workload(counter + k + 1) for k in range(args.chunk)]
                counter += args.chunk
                t0 = time.perf_counter()
                runs[variant](chunk)
                this[variant] = (time.perf_counter() - t0) / args.chunk * 1000
                per[variant].append(this[variant])
            for variant in VARIANTS:
                diff[variant].append(this[variant] - this["pgpatch"])
        protocols.settle()
        version = admin.execute("SHOW server_version").fetchone()[0]
    lines = [f"PostgreSQL {version}; {args.rounds} rounds x {args.chunk} patches per variant; "
             "ms per patch (loop only)", "",
             "| variant | median ms/patch | minus pgpatch, same round: median | mean ± 2 SE |",
             "|---|---:|---:|---:|"]
    for variant in VARIANTS:
        d = diff[variant]
        se = 2 * statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
        lines.append(f"| {variant} | {statistics.median(per[variant]):.3f} "
                     f"| {statistics.median(d):+.3f} | {statistics.mean(d):+.3f} ± {se:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
