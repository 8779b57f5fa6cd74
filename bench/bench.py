#!/usr/bin/env python3
"""pgpatch's benchmark: the psql floor, pgpatch and any installed peer, side by side.

usage: python bench/bench.py [--n 1000] [--runs 5] [--sizes 200,1000,5000] [--size-runs 1]
                             [--mix-runs 5] [--plan-n 10000] [--startup-runs 10] [--quick]
                             [--compare DIR] [--output PATH]

It starts a throwaway server (postgresqlpatches.pg.scratch.ScratchServer: the machine's newest
PostgreSQL, else the embedded one; initdb defaults, fsync ON, shared_buffers 128MB as in
../shared/bench/peers), generates the workload of the peers' gen.py (N patches, each a
CREATE TABLE, an INSERT of 10 rows and a CREATE INDEX) and times, as child processes, wall
clock around each:

- floor   `psql -X -q -v ON_ERROR_STOP=1 -1 -f all.sql`: every patch in ONE transaction
- pgpatch `pgpatch apply 'DIR/*.sql'`: one transaction, one commit and one record per patch
- dbmate / yoyo, when they are on PATH (optional)
- `pgpatch@DIR` with --compare DIR: another version's package (`git archive REV
  postgresqlpatches | tar -x -C DIR`), the same command, in the same rounds

Every apply starts from a freshly created, empty target database `bench` (created before the
timed command, for the floor and every tool alike, as in the peers' results.md) and NO state
database: pgpatch creates its state database (and role) inside the timed run, as a first run
does. Runs are interleaved: each round runs the floor right before each other tool, so the
disk's drift hits both, and the paired ratio is run / the floor run just before it.

Then, with everything applied: the no-op `apply` and `plan` (N patches, N records), `plan`
and no-op `apply` with --plan-n files against as many records (records written straight into
the state database), the start-up of `pgpatch --help` / `--version`, the per-patch cost
at each of --sizes, and (--mix-runs) the N-patch apply again with one patch in ten changing
its session (SET lock_timeout, SET search_path, a temp table), floor and pgpatch only. With
--compare, the no-op `apply` and `plan` of both versions also run in turn, each against its
own N records (the other's in a database and state database of their own), and `--help` /
`--version` of both in turn, all through the same `python -c` launcher.
Medians go to stdout and to --output (default bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from postgresqlpatches.pg.scratch import ScratchServer  # noqa: E402

DB = "bench"
STATE_DB = "patches"
CMP_DB = "bench_cmp"  # --compare: the other version's no-op runs against its own records
CMP_STATE_DB = "patches_cmp"
PASSWORD = "postgres"


# ------------------------------------------------------------------------------ workload


def patch_sql(i: int, mix: bool = False) -> str:
    """The peers' gen.py patch, byte for byte; with ``mix`` one patch in ten also changes
    its session (settings, a temp table), which pgpatch must not let reach the next."""
    text = (
        f"CREATE TABLE t_{i} (id bigserial primary key, name text not null, "
        f"created timestamptz default now());\n"
        f"INSERT INTO t_{i}(name) SELECT 'n'||g FROM generate_series(1,10) g;\n"
        f"CREATE INDEX ON t_{i}(name);\n"
    )
    if mix and i % 10 == 5:
        text = (f"SET lock_timeout = '5s';\nSET search_path = public, pg_temp;\n"
                f"CREATE TEMP TABLE scratch_{i} AS SELECT g FROM generate_series(1,10) g;\n"
                + text)
    return text


def pgpatch_name(database: str, i: int) -> str:
    """gen.py's encoding: major 20240101.., minor 0001..9999 (so 10,000 files fit)."""
    return f"{database}.{20240101 + (i - 1) // 9999}.{(i - 1) % 9999 + 1:04d}.postgres.t_{i}.sql"


def generate(n: int, out: Path, database: str = DB, mix: bool = False) -> Path:
    """out/all.sql, out/pgpatch/*.sql, out/dbmate/*.sql, out/yoyo/*.sql."""
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("pgpatch", "dbmate", "yoyo"):
        (out / sub).mkdir(parents=True)
    all_sql = []
    for i in range(1, n + 1):
        body = patch_sql(i, mix)
        all_sql.append(body)
        (out / "pgpatch" / pgpatch_name(database, i)).write_text(body)
        (out / "dbmate" / f"{i:05d}_t_{i}.sql").write_text(
            f"-- migrate:up\n{body}\n-- migrate:down\nDROP TABLE t_{i};\n")
        (out / "yoyo" / f"{i:05d}_t_{i}.sql").write_text(body)
    (out / "all.sql").write_text("".join(all_sql))
    return out


# ------------------------------------------------------------------------------ tools


@dataclass
class Tool:
    name: str
    version: str
    apply: Callable[[Path], list[str]]
    noop: bool = True


def pgpatch_command() -> list[str]:
    """The installed entry point next to this interpreter, as users run it."""
    script = Path(sys.executable).parent / "pgpatch"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "postgresqlpatches"]


def version_of(cmd: list[str], env: dict[str, str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if out.returncode == 0 and text else None


# another checkout's package first on sys.path: `--compare DIR` runs it in the same rounds
COMPARE = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
           "from postgresqlpatches.cli import run; sys.argv[0] = 'pgpatch'; run()")


def find_tools(srv: ScratchServer, env: dict[str, str], psql: str,
               compare: Path | None = None) -> list[Tool]:
    import psycopg

    pgp = pgpatch_command()
    pgp_version = version_of([*pgp, "--version"], env) or "?"
    tools = [
        Tool("floor", version_of([psql, "--version"], env) or "psql",
             lambda d: [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(d / "all.sql")],
             noop=False),
        Tool("pgpatch", f"{pgp_version} (psycopg {psycopg.__version__}, python "
                        f"{platform.python_version()})",
             lambda d: [*pgp, "apply", str(d / "pgpatch" / "*.sql")]),
    ]
    if compare is not None:
        other = [sys.executable, "-c", COMPARE, str(compare)]
        tools.append(Tool(f"pgpatch@{compare.name}", version_of([*other, "--version"], env)
                          or "?", lambda d: [*other, "apply", str(d / "pgpatch" / "*.sql")]))
    url = f"postgres://postgres:{PASSWORD}@{srv.host}:{srv.port}/{DB}"
    dbmate = os.environ.get("DBMATE") or shutil.which("dbmate")
    if dbmate:
        tools.append(Tool("dbmate", version_of([dbmate, "--version"], env) or "?",
                          lambda d: [dbmate, "--url", url + "?sslmode=disable",
                                     "--migrations-dir", str(d / "dbmate"),
                                     "--no-dump-schema", "migrate"]))
    yoyo = shutil.which("yoyo")
    if yoyo:
        tools.append(Tool("yoyo", "yoyo-migrations",
                          lambda d: [yoyo, "apply", "--batch", "--no-config-file", "--database",
                                     "postgresql+psycopg://" + url.split("://", 1)[1],
                                     str(d / "yoyo")]))
    return tools


# ------------------------------------------------------------------------------ timing


@dataclass
class Samples:
    values: list[float] = field(default_factory=list)
    paired: list[float] = field(default_factory=list)  # run / the floor run just before it

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


def timed(cmd: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds


def byte_compile(compare: Path | None) -> None:
    """The .pyc files of the package the pgpatch tool imports and of --compare's, made before
    any timed run (as pip makes them when it installs a wheel)."""
    import compileall

    import postgresqlpatches

    trees = [Path(postgresqlpatches.__file__).parent]
    if compare is not None:
        trees.append(compare / "postgresqlpatches")
    for tree in trees:
        compileall.compile_dir(str(tree), quiet=1)


class Bench:
    def __init__(self, srv: ScratchServer, work: Path, compare: Path | None = None) -> None:
        self.srv = srv
        self.work = work
        self.admin = srv.connect()
        self.psql = str(srv.installation.tool("psql"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRESQL_"))}
        # time what an installed wheel runs: byte-compiled modules (with this set, and an
        # editable or unpacked tree, every run compiled pgpatch's modules again: ~0.1 s)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        byte_compile(compare)
        env.update(srv.env())
        env.update({"PGUSER": "postgres", "PGPASSWORD": PASSWORD, "PGDATABASE": DB,
                    "POSTGRESQL_PATCHES_PASSWORD": "patches"})
        self.env = env
        self.tools = find_tools(srv, env, self.psql, compare)
        self.pgpatch = pgpatch_command()

    def fresh(self, create: bool = True) -> None:
        """No target database (then an empty one), no state database, no state role."""
        for db in (DB, STATE_DB):
            self.admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        self.admin.execute("DROP ROLE IF EXISTS patches")
        if create:
            self.admin.execute(f"CREATE DATABASE {DB}")
        self.admin.execute("CHECKPOINT")

    def count_tables(self) -> int:
        with self.srv.connect(DB) as conn:
            row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                               "AND tablename ~ '^t_[0-9]+$'").fetchone()
        return int(row[0]) if row else 0

    def run_apply(self, tool: Tool, d: Path, n: int) -> float:
        self.fresh()
        seconds = timed(tool.apply(d), self.env, cwd=d)
        got = self.count_tables()
        if got != n:
            raise SystemExit(f"{tool.name} left {got} tables of {n}")
        return seconds

    def apply_rounds(self, n: int, runs: int, say: Callable[[str], None], mix: bool = False
                     ) -> dict[str, Samples]:
        d = generate(n, self.work / f"{'mix' if mix else 'n'}{n}", mix=mix)
        floor, others = self.tools[0], self.tools[1:]
        samples = {t.name: Samples() for t in self.tools}
        for r in range(runs):
            for tool in others:
                f = self.run_apply(floor, d, n)
                samples["floor"].values.append(f)
                t = self.run_apply(tool, d, n)
                samples[tool.name].values.append(t)
                samples[tool.name].paired.append(t / f)
                say(f"  N={n}{' mix' * mix} round {r + 1}/{runs}: floor {f:.3f} s, "
                    f"{tool.name} {t:.3f} s "
                    f"({t / f:.2f}x)")
        return samples

    def repeat(self, cmd: Sequence[str], runs: int) -> Samples:
        """``cmd`` ``runs`` times, from the work directory as the applies run from their
        tree (not from this repository, whose pyproject.toml names pgpatch: the config
        search would read it, as it does nowhere a user has no config)."""
        s = Samples()
        for _ in range(runs):
            s.values.append(timed(cmd, self.env, cwd=self.work))
        return s

    def repeat_pair(self, one: Sequence[str], other: Sequence[str], runs: int
                    ) -> tuple[Samples, Samples]:
        """Two commands run in turn, so the machine's drift hits both alike; which goes
        first changes every round, so that neither always runs first."""
        a, b = Samples(), Samples()
        for r in range(runs):
            for cmd, samples in ((one, a), (other, b)) if r % 2 == 0 else ((other, b), (one, a)):
                samples.values.append(timed(cmd, self.env, cwd=self.work))
        return a, b

    def noop_pairs(self, args: argparse.Namespace, d: Path, glob: str) -> dict[str, Samples]:
        """No-op apply and plan of both versions in turn (so the machine's drift and the
        server's after-work, autovacuum of the new tables, hit both alike), each against its
        own records: the other version's tree is the same workload for database CMP_DB, its
        records in CMP_STATE_DB. Both through the same launcher (`python -c`)."""
        other = next(t for t in self.tools if t.name == f"pgpatch@{args.compare.name}")
        self.admin.execute(f"DROP DATABASE IF EXISTS {CMP_DB} WITH (FORCE)")
        self.admin.execute(f"DROP DATABASE IF EXISTS {CMP_STATE_DB} WITH (FORCE)")
        self.admin.execute(f"CREATE DATABASE {CMP_DB}")
        cmp_glob = str(generate(args.n, self.work / "cmp", database=CMP_DB) / "pgpatch" / "*.sql")
        theirs = [sys.executable, "-c", COMPARE, str(args.compare.resolve())]
        timed([*theirs, "apply", "--state-db", CMP_STATE_DB, cmp_glob], self.env)
        mine = [sys.executable, "-c", COMPARE, str(REPO)]
        self.admin.execute("CHECKPOINT")
        out: dict[str, Samples] = {}
        for command in ("apply", "plan"):
            what = f"{command}, no-op" if command == "apply" else command
            a, b = self.repeat_pair([*mine, command, glob],
                                    [*theirs, command, "--state-db", CMP_STATE_DB, cmp_glob],
                                    args.noop_runs)
            out[f"pgpatch {what}, {args.n} applied (python -c launcher, in turn)"] = a
            out[f"{other.name} {what}, {args.n} applied (python -c launcher, in turn)"] = b
        for db in (CMP_DB, CMP_STATE_DB):
            self.admin.execute(f"DROP DATABASE {db} WITH (FORCE)")
        return out

    def seed_records(self, n: int, d: Path, database: str, state_db: str) -> None:
        """n files and n records: the first file applied by pgpatch (which creates the state
        database), the other records written straight into it, as pgpatch writes them."""
        from postgresqlpatches.core.checksums import text_checksum

        self.admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        self.admin.execute(f"DROP DATABASE IF EXISTS {state_db} WITH (FORCE)")
        self.admin.execute(f"CREATE DATABASE {database}")
        files = sorted((d / "pgpatch").glob("*.sql"))
        timed([*self.pgpatch, "apply", "--state-db", state_db, str(files[0])], self.env)
        rows = []
        for f in files[1:]:
            _, major, minor, user, description, _ = f.name.split(".")
            rows.append((major, minor, f.name, user, description, str(f),
                         text_checksum(f.read_text())))
        with self.srv.connect(state_db) as conn, conn.cursor() as cur:
            db_id = conn.execute("SELECT id FROM databases WHERE name = %s",
                                 [database]).fetchone()[0]
            with cur.copy("COPY installed_patches (database_id, major, minor, name, user_name, "
                          "description, path, checksum, settled) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((db_id, *row, True))


# ------------------------------------------------------------------------------ report


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    return {"cpu": cpu, "nproc": str(os.cpu_count()), "python": platform.python_version(),
            "os": platform.platform(), "commit": commit or "?",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def fmt_ratio(xs: Sequence[float]) -> str:
    if not xs:
        return "—"
    return f"{statistics.median(xs):.2f}x ({min(xs):.2f}–{max(xs):.2f})"


def report(args: argparse.Namespace, b: Bench, apply: dict[str, Samples],
           noop: dict[str, Samples], sizes: dict[int, dict[str, Samples]],
           startup: dict[str, Samples], server: str, settings: str,
           mix: dict[str, Samples] | None = None) -> str:
    m = machine()
    floor = apply["floor"].median
    lines = [
        "# pgpatch benchmark results",
        "",
        "Written by `bench/bench.py` (do not edit by hand; see docs/performance.md).",
        "",
        f"Measured {m['date']} on: {m['cpu']}, nproc {m['nproc']}; {m['os']}; "
        f"python {m['python']}; pgpatch commit {m['commit']}.",
        f"Server: {server}.",
        f"Settings: {settings}.",
        f"Command: `python bench/bench.py {' '.join(args.argv)}`".rstrip() + ".",
        "",
        f"## Apply {args.n} patches (fresh `bench` database, no state database)",
        "",
        "Wall seconds around the child process. ratio = median / floor median; paired = "
        "median (min–max) of each run / the floor run just before it.",
        "",
        "| tool | version | N | runs | apply median s | ms/patch | ratio to floor "
        "| paired ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in b.tools:
        s = apply[t.name]
        lines.append(f"| {t.name} | {t.version} | {args.n} | {len(s.values)} | {s.median:.3f} "
                     f"| {s.median / args.n * 1000:.2f} | {s.median / floor:.2f}x "
                     f"| {fmt_ratio(s.paired)} |")
    if mix and mix["pgpatch"].values:
        mix_floor = mix["floor"].median
        lines += ["", f"## Apply {args.n} patches, one in ten changing its session", "",
                  "Every tenth patch also runs `SET lock_timeout`, `SET search_path` and "
                  "`CREATE TEMP TABLE`; pgpatch resets the session after each patch "
                  "(docs/safety.md). Same columns as above.", "",
                  "| tool | N | runs | apply median s | ms/patch | ratio to floor "
                  "| paired ratio |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, s in mix.items():
            lines.append(f"| {name} (mix) | {args.n} | {len(s.values)} | {s.median:.3f} "
                         f"| {s.median / args.n * 1000:.2f} | {s.median / mix_floor:.2f}x "
                         f"| {fmt_ratio(s.paired)} |")
    lines += ["", "## No-op, plan and start-up", "",
              "| what | runs | median s | min s | max s |", "|---|---:|---:|---:|---:|"]
    for name, s in list(noop.items()) + list(startup.items()):
        if not s.values:  # that measurement was switched off (--noop-runs 0, ...)
            continue
        lines.append(f"| {name} | {len(s.values)} | {s.median:.3f} | {min(s.values):.3f} "
                     f"| {max(s.values):.3f} |")
    if sizes:
        lines += ["", "## Per-patch cost by N (linearity)", "",
                  "| N | runs | floor median s | floor ms/patch | pgpatch median s "
                  "| pgpatch ms/patch | pgpatch − floor ms/patch | paired ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, ss in sizes.items():
            f, p = ss["floor"], ss["pgpatch"]
            lines.append(f"| {n} | {len(p.values)} | {f.median:.3f} | {f.median / n * 1000:.2f} "
                         f"| {p.median:.3f} | {p.median / n * 1000:.2f} "
                         f"| {(p.median - f.median) / n * 1000:+.2f} | {fmt_ratio(p.paired)} |")
    lines += ["", "## Raw samples (s)", ""]
    for t in b.tools:
        lines.append(f"- {t.name} N={args.n} apply: "
                     + ", ".join(f"{x:.3f}" for x in apply[t.name].values))
    for name, s in noop.items():
        lines.append(f"- {name}: " + ", ".join(f"{x:.3f}" for x in s.values))
    for n, ss in sizes.items():
        for name, s in ss.items():
            lines.append(f"- {name} N={n} apply: " + ", ".join(f"{x:.3f}" for x in s.values))
    for name, s in (mix or {}).items():
        lines.append(f"- {name} N={args.n} mix apply: "
                     + ", ".join(f"{x:.3f}" for x in s.values))
    return "\n".join(lines) + "\n"


def kept_sections(path: Path) -> str:
    """The other benchmarks' sections of an earlier file (bench/groups.py writes its own
    between markers): a run of this script replaces only its own part."""
    try:
        earlier = path.read_text()
    except OSError:
        return ""
    import groups  # bench/groups.py, beside this file

    begin, end = groups.BEGIN, groups.END
    start, stop = earlier.find(begin), earlier.find(end)
    if start < 0 or stop < start:
        return ""
    return "\n" + earlier[start:stop + len(end)] + "\n"


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="patches for the main apply comparison")
    p.add_argument("--runs", type=int, default=5, help="interleaved rounds of the main apply")
    p.add_argument("--sizes", default="200,1000,5000",
                   help="N values for the per-patch cost (comma-separated; empty: skip)")
    p.add_argument("--size-runs", type=int, default=1, help="rounds per size")
    p.add_argument("--mix-runs", type=int, default=5,
                   help="rounds of the N-patch mix, one patch in ten changing its session")
    p.add_argument("--noop-runs", type=int, default=5)
    p.add_argument("--plan-n", type=int, default=10000,
                   help="files and records for the big plan / no-op (0: skip)")
    p.add_argument("--startup-runs", type=int, default=10)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: N=5, 1 round, no sizes, plan-n 20, 2 start-ups")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the generated work directory")
    p.add_argument("--compare", type=Path,
                   help="a directory holding another version's postgresqlpatches package "
                        "(e.g. from `git archive`): run as a tool in the same rounds")
    args = p.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.n, args.runs, args.sizes, args.noop_runs = min(args.n, 5), 1, "", 2
        args.mix_runs = min(args.mix_runs, 1)
        args.plan_n, args.startup_runs = min(args.plan_n, 20), 2
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]

    def say(text: str) -> None:
        print(text, flush=True)

    work = Path(tempfile.mkdtemp(prefix="pgpatch-bench-"))
    # max_locks_per_transaction: the floor's single transaction locks ~5 objects per patch
    settings = {"shared_buffers": "128MB", "fsync": "on", "synchronous_commit": "on",
                "max_locks_per_transaction": "1024"}
    try:
        with ScratchServer(settings=settings) as srv:
            b = Bench(srv, work, args.compare.resolve() if args.compare else None)
            server = b.admin.execute("SELECT version()").fetchone()[0]
            shown = b.admin.execute(
                "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings "
                "WHERE name IN ('fsync','synchronous_commit','wal_sync_method','shared_buffers',"
                "'max_wal_size','wal_level','full_page_writes','max_locks_per_transaction')"
            ).fetchone()[0]
            say(f"server: {server}\nsettings: {shown}\ntools: "
                + ", ".join(f"{t.name} ({t.version})" for t in b.tools))

            say(f"== apply N={args.n}, {args.runs} interleaved rounds")
            apply = b.apply_rounds(args.n, args.runs, say)
            d = work / f"n{args.n}"
            glob = str(d / "pgpatch" / "*.sql")
            noop: dict[str, Samples] = {}
            # the last round left everything applied by the last tool: reapply pgpatch's
            b.run_apply(b.tools[1], d, args.n)
            # a no-op run meets a quiet server: not the checkpoint of the apply just before
            b.admin.execute("CHECKPOINT")
            say(f"== no-op apply and plan, N={args.n} applied")
            noop[f"pgpatch apply, no-op, {args.n} applied"] = b.repeat(
                [*b.pgpatch, "apply", glob], args.noop_runs)
            noop[f"pgpatch plan, {args.n} applied"] = b.repeat(
                [*b.pgpatch, "plan", glob], args.noop_runs)
            noop["floor: psql -c 'select 1' (reference)"] = b.repeat(
                [b.psql, "-X", "-q", "-c", "select 1"], args.noop_runs)
            if args.compare:
                noop.update(b.noop_pairs(args, d, glob))
            if args.plan_n:
                say(f"== plan and no-op apply: {args.plan_n} files, {args.plan_n} records")
                big = generate(args.plan_n, work / f"plan{args.plan_n}", database="bigplan")
                b.seed_records(args.plan_n, big, "bigplan", "patches_big")
                bglob = str(big / "pgpatch" / "*.sql")
                common = ["--state-db", "patches_big", bglob]
                noop[f"pgpatch plan, {args.plan_n} files, {args.plan_n} records"] = b.repeat(
                    [*b.pgpatch, "plan", *common], args.noop_runs)
                noop[f"pgpatch apply, no-op, {args.plan_n} files, {args.plan_n} records"] = (
                    b.repeat([*b.pgpatch, "apply", *common], args.noop_runs))
                b.admin.execute("DROP DATABASE bigplan")
                b.admin.execute("DROP DATABASE patches_big")
            say("== start-up")
            startup = {
                "pgpatch --help": b.repeat([*b.pgpatch, "--help"], args.startup_runs),
                "pgpatch --version": b.repeat([*b.pgpatch, "--version"], args.startup_runs),
                "python -c pass (reference)": b.repeat([sys.executable, "-c", "pass"],
                                                       args.startup_runs),
                "python -c 'import psycopg' (reference)": b.repeat(
                    [sys.executable, "-c", "import psycopg"], args.startup_runs),
            }
            if args.compare:
                # both versions through the same launcher (`python -c`), in turn
                here = Path(__file__).resolve().parents[1]
                for flag in ("--help", "--version"):
                    mine, theirs = b.repeat_pair(
                        [sys.executable, "-c", COMPARE, str(here), flag],
                        [sys.executable, "-c", COMPARE, str(args.compare.resolve()), flag],
                        args.startup_runs)
                    startup[f"pgpatch {flag} (python -c launcher)"] = mine
                    startup[f"pgpatch@{args.compare.name} {flag} (python -c launcher)"] = theirs
            size_samples: dict[int, dict[str, Samples]] = {}
            keep = {"floor", "pgpatch"} | ({f"pgpatch@{args.compare.name}"}
                                           if args.compare else set())
            tools, b.tools = b.tools, [t for t in b.tools if t.name in keep]
            for n in sizes:
                say(f"== per-patch cost, N={n}, {args.size_runs} round(s)")
                size_samples[n] = b.apply_rounds(n, args.size_runs, say)
            mix: dict[str, Samples] = {}
            if args.mix_runs:
                say(f"== apply N={args.n}, one patch in ten changing its session, "
                    f"{args.mix_runs} interleaved rounds")
                mix = b.apply_rounds(args.n, args.mix_runs, say, mix=True)
            b.tools = tools
            text = report(args, b, apply, noop, size_samples, startup, server, shown, mix)
            b.admin.close()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + kept_sections(args.output))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
