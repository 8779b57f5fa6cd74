#!/usr/bin/env python3
"""pgpatch's database-group benchmark: plan over a big group, apply to many databases.

usage: python bench/groups.py [--plan-members 300] [--plan-patches 20] [--servers 3]
                              [--apply-members 200] [--apply-patches 5] [--jobs 4]
                              [--runs 5] [--quick] [--output PATH] [--results PATH]

It starts a throwaway server as bench/bench.py does (fsync on) and times, as child
processes, wall clock around each, interleaved so that the machine's drift hits both sides
of each pair:

- plan, groups: `pgpatch plan` of --plan-patches `@tenants` files over --plan-members
  databases, every patch applied (members x patches records, written straight into the
  state database as pgpatch writes them);
- plan, file by file: the same records, with one file per database and patch (what a tree
  without groups holds): the paired ratio is groups / file by file;
- plan, --servers servers: `pgpatch plan -t all` of the groups' tree over that many scratch
  servers (the first one and more, each with the same databases and records): the paired
  ratio is to the one server's plan of the same round;
- apply, groups: `pgpatch apply` of --apply-patches `@tenants` files to --apply-members fresh
  databases (the state database is made inside the timed run, as a first run does), with
  `--jobs 1` (members one after another) and with `--jobs` --jobs (that many at once);
- apply, psql loop (the floor): one `psql -X -1 -f` per database, all the patches in one
  transaction each. The paired ratios are each pgpatch run / the loop run of its round, and
  --jobs N / --jobs 1.

The results go to stdout, to --output when given, and with --results into that file's
database-group section (between its markers, the rest of the file as it is).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench import PASSWORD, Samples, fmt_ratio, machine, pgpatch_command, timed  # noqa: E402
from postgresqlpatches.pg.scratch import ScratchServer  # noqa: E402

STATE_DB = "patches"
SETTINGS = {"shared_buffers": "128MB", "fsync": "on"}
MAJOR = "20250301"


def member(i: int) -> str:
    return f"tenant_{i:04d}"


def group_patch(i: int) -> str:
    return (f"CREATE TABLE g_{i} (id bigserial primary key, name text not null);\n"
            f"INSERT INTO g_{i}(name) SELECT 'n'||g FROM generate_series(1,10) g;\n")


def write_tree(folder: Path, patches: int, members: int, *, grouped: bool,
               servers: Sequence[ScratchServer] = ()) -> Path:
    """The patch files, and pgpatch.toml with the group: ``@tenants`` files, or one file per
    database and patch; with ``servers`` also fleet.toml, a target for each."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "db").mkdir(parents=True)
    config = 'patches = ["db/*.sql"]\n[groups.tenants]\ndatabases = ["tenant_*"]\n'
    (folder / "pgpatch.toml").write_text(config)
    if servers:
        (folder / "fleet.toml").write_text(config + "".join(
            f'[targets.s{i + 1}]\nhost = "{srv.host}"\nport = {srv.port}\n'
            for i, srv in enumerate(servers)))
    for p in range(1, patches + 1):
        names = ["@tenants"] if grouped else [member(m) for m in range(1, members + 1)]
        for database in names:
            (folder / "db" / f"{database}.{MAJOR}.{p:04d}.postgres.g_{p}.sql").write_text(
                group_patch(p))
    return folder


class GroupBench:
    def __init__(self, srv: ScratchServer) -> None:
        import os

        self.srv = srv
        self.admin = srv.connect()
        self.admin.autocommit = True
        self.psql = str(srv.installation.tool("psql"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "POSTGRESQL_"))}
        env.update(srv.env())
        env.update({"PGUSER": "postgres", "PGPASSWORD": PASSWORD,
                    "POSTGRESQL_PATCHES_PASSWORD": "patches"})
        self.env = env
        self.pgpatch = pgpatch_command()

    def make_members(self, n: int) -> None:
        for i in range(1, n + 1):
            self.admin.execute(f"DROP DATABASE IF EXISTS {member(i)} WITH (FORCE)")
            self.admin.execute(f"CREATE DATABASE {member(i)} TEMPLATE template0")

    def drop_members(self, n: int) -> None:
        for i in range(1, n + 1):
            self.admin.execute(f"DROP DATABASE IF EXISTS {member(i)} WITH (FORCE)")

    def drop_state(self) -> None:
        self.admin.execute(f"DROP DATABASE IF EXISTS {STATE_DB} WITH (FORCE)")
        self.admin.execute("DROP ROLE IF EXISTS patches")

    def reset_members(self, members: int, patches: int) -> None:
        """Each member as new (its tables gone), no state database: before every apply."""
        self.drop_state()
        drops = "; ".join(f"DROP TABLE IF EXISTS g_{p}" for p in range(1, patches + 1))
        for i in range(1, members + 1):
            with self.srv.connect(member(i)) as conn:
                conn.execute(drops)
        self.admin.execute("CHECKPOINT")

    def seed_records(self, tree: Path, members: int, patches: int) -> None:
        """Every patch applied on every member: the state database made by pgpatch (one
        real apply of a patch to one member), the other records written straight in."""
        from postgresqlpatches.core.checksums import text_checksum

        self.drop_state()
        first = tree / "db" / f"@tenants.{MAJOR}.0001.postgres.g_1.sql"
        one = tree / "one.toml"
        one.write_text('[groups.tenants]\ndatabases = ["tenant_0001"]\n')
        timed([*self.pgpatch, "apply", "--config", str(one), str(first)], self.env, cwd=tree)
        with self.srv.connect(STATE_DB) as conn, conn.cursor() as cur:
            conn.execute("INSERT INTO databases (name) SELECT unnest(%s::text[]) "
                         "ON CONFLICT (name) DO NOTHING",
                         [[member(i) for i in range(1, members + 1)]])
            ids = dict(conn.execute("SELECT name, id FROM databases").fetchall())
            with cur.copy("COPY installed_patches (database_id, major, minor, name, user_name, "
                          "description, path, checksum, settled) FROM STDIN") as copy:
                for i in range(1, members + 1):
                    for p in range(1, patches + 1):
                        if i == 1 and p == 1:
                            continue  # applied for real above
                        copy.write_row((ids[member(i)], MAJOR, f"{p:04d}",
                                        f"{member(i)}.{MAJOR}.{p:04d}.postgres.g_{p}.sql",
                                        "postgres", f"g_{p}",
                                        f"db/@tenants.{MAJOR}.{p:04d}.postgres.g_{p}.sql",
                                        text_checksum(group_patch(p)), True))

    def plan_rounds(self, work: Path, members: int, patches: int, runs: int,
                    say: Callable[[str], None],
                    others: Sequence[GroupBench] = ()) -> dict[str, Samples]:
        """``others``: more servers for the `plan -t all` row, seeded alike."""
        grouped = write_tree(work / "plan-groups", patches, members, grouped=True,
                             servers=[self.srv, *(o.srv for o in others)] if others else [])
        flat = write_tree(work / "plan-files", patches, members, grouped=False)
        for b in (self, *others):
            b.make_members(members)
            b.seed_records(grouped, members, patches)
        out = {"groups": Samples(), "files": Samples()}
        if others:
            out["servers"] = Samples()
        for r in range(runs):
            f = timed([*self.pgpatch, "plan"], self.env, cwd=flat)
            g = timed([*self.pgpatch, "plan"], self.env, cwd=grouped)
            out["files"].values.append(f)
            out["groups"].values.append(g)
            out["groups"].paired.append(g / f)
            line = (f"  plan round {r + 1}/{runs}: file by file {f:.3f} s, groups {g:.3f} s "
                    f"({g / f:.2f}x)")
            if others:
                t = timed([*self.pgpatch, "plan", "--config", "fleet.toml", "-t", "all",
                           "--jobs", str(1 + len(others))], self.env, cwd=grouped)
                out["servers"].values.append(t)
                out["servers"].paired.append(t / g)
                line += f", {1 + len(others)} servers {t:.3f} s ({t / g:.2f}x)"
            say(line)
        for b in (self, *others):
            b.drop_state()
            b.drop_members(members)
        return out

    def apply_rounds(self, work: Path, members: int, patches: int, runs: int,
                     say: Callable[[str], None], jobs: int) -> dict[str, Samples]:
        tree = write_tree(work / "apply-groups", patches, members, grouped=True)
        all_sql = work / "apply-all.sql"
        all_sql.write_text("".join(group_patch(p) for p in range(1, patches + 1)))
        loop = ["sh", "-c", 'for db in "$@"; do "$0" -X -q -v ON_ERROR_STOP=1 -1 -d "$db" '
                f'-f {all_sql} || exit 1; done', self.psql,
                *(member(i) for i in range(1, members + 1))]
        self.make_members(members)
        out = {"psql loop": Samples(), "pgpatch": Samples(), "jobs": Samples(),
               "jobs / 1": Samples()}
        for r in range(runs):
            self.reset_members(members, patches)
            f = timed(loop, self.env)
            self.reset_members(members, patches)
            t = timed([*self.pgpatch, "apply", "--jobs", "1"], self.env, cwd=tree)
            self.check_applied(members, patches)
            self.reset_members(members, patches)
            j = timed([*self.pgpatch, "apply", "--jobs", str(jobs)], self.env, cwd=tree)
            self.check_applied(members, patches)
            out["psql loop"].values.append(f)
            out["pgpatch"].values.append(t)
            out["pgpatch"].paired.append(t / f)
            out["jobs"].values.append(j)
            out["jobs"].paired.append(j / f)
            out["jobs / 1"].paired.append(j / t)
            say(f"  apply round {r + 1}/{runs}: psql loop {f:.3f} s, pgpatch --jobs 1 {t:.3f} s "
                f"({t / f:.2f}x), --jobs {jobs} {j:.3f} s ({j / f:.2f}x; {j / t:.2f}x of "
                "--jobs 1)")
        self.drop_state()
        self.drop_members(members)
        return out

    def check_applied(self, members: int, patches: int) -> None:
        with self.srv.connect(STATE_DB) as conn:
            (n,) = conn.execute("SELECT count(*) FROM installed_patches WHERE major = %s",
                                [MAJOR]).fetchone()
        if n != members * patches:
            raise SystemExit(f"pgpatch recorded {n} group patches of {members * patches}")


BEGIN = "<!-- bench/groups.py: begin -->"
END = "<!-- bench/groups.py: end -->"


def report(args: argparse.Namespace, plan: dict[str, Samples],
           apply: dict[str, Samples], server: str) -> str:
    m = machine()
    records = args.plan_members * args.plan_patches
    lines = [
        "## Database groups",
        "",
        "Written by `bench/groups.py` (do not edit by hand; see docs/performance.md).",
        "",
        f"Measured {m['date']} on: {m['cpu']}, nproc {m['nproc']}; {m['os']}; "
        f"python {m['python']}; pgpatch commit {m['commit']}. {args.note}".rstrip(),
        f"Server: {server}. Command: `python bench/groups.py {shlex.join(args.argv)}`.",
        "",
        f"### plan: {args.plan_members} databases x {args.plan_patches} applied patches "
        f"({records} records)",
        "",
        "| tree | runs | median s | min s | max s | paired ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [("groups", f"{args.plan_patches} @tenants files", "to file by file"),
            ("files", f"{records} files, one per database and patch", "")]
    if "servers" in plan:
        rows.append(("servers", f"{args.plan_patches} @tenants files on {args.servers} servers "
                     f"(`-t all --jobs {args.servers}`, {args.servers * records} records)",
                     "to one server's"))
    for name, label, to in rows:
        s = plan[name]
        ratio = f"{fmt_ratio(s.paired)} {to}".strip() if s.paired else "—"
        lines.append(f"| {label} | {len(s.values)} | {s.median:.3f} | {min(s.values):.3f} "
                     f"| {max(s.values):.3f} | {ratio} |")
    if apply:
        lines += [
            "",
            f"### apply: {args.apply_patches} group patches to {args.apply_members} databases",
            "",
            "| how | runs | median s | ms per database | paired ratio to the psql loop |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, label in (("psql loop", "psql loop (one `psql -1` per database)"),
                            ("pgpatch", "pgpatch apply --jobs 1 (members one after another)"),
                            ("jobs", f"pgpatch apply --jobs {args.jobs}")):
            s = apply[name]
            lines.append(f"| {label} | {len(s.values)} | {s.median:.3f} "
                         f"| {s.median / args.apply_members * 1000:.1f} "
                         f"| {fmt_ratio(s.paired)} |")
        lines += ["", f"`--jobs {args.jobs}` / `--jobs 1`, paired in each round: "
                      f"{fmt_ratio(apply['jobs / 1'].paired)}."]
    lines += ["", "Raw samples (s): " + "; ".join(
        f"{k}: " + ", ".join(f"{x:.3f}" for x in s.values)
        for k, s in [*plan.items(), *apply.items()] if s.values)]
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """The section between the markers of ``path`` (appended when it has none), the rest of
    the file as it is: bench/bench.py writes the rest."""
    old = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{text}{END}\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan-members", type=int, default=300)
    p.add_argument("--plan-patches", type=int, default=20)
    p.add_argument("--servers", type=int, default=3,
                   help="servers of the `plan -t all` row (1: no such row)")
    p.add_argument("--apply-members", type=int, default=200, help="0: no apply rounds")
    p.add_argument("--apply-patches", type=int, default=5)
    p.add_argument("--jobs", type=int, default=4, help="the --jobs of the apply row")
    p.add_argument("--runs", type=int, default=5, help="interleaved rounds of each pair")
    p.add_argument("--quick", action="store_true", help="a smoke run: 4 databases, 1 round")
    p.add_argument("--output", type=Path, help="also write the results here")
    p.add_argument("--results", type=Path,
                   help="write the results into this file's database-group section "
                        "(bench/RESULTS.md)")
    p.add_argument("--note", default="", help="a sentence for the report (the machine's load)")
    args = p.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.plan_members = args.apply_members = 4
        args.plan_patches, args.apply_patches, args.runs, args.servers = 3, 2, 1, 2

    def say(text: str) -> None:
        print(text, flush=True)

    work = Path(tempfile.mkdtemp(prefix="pgpatch-bench-groups-"))
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            srv, *more = [stack.enter_context(ScratchServer(settings=SETTINGS))
                          for _ in range(max(1, args.servers))]
            b = GroupBench(srv)
            others = [GroupBench(o) for o in more]
            server = b.admin.execute("SELECT version()").fetchone()[0]
            say(f"server: {server}" + (f" (and {len(more)} more)" if more else ""))
            say(f"== plan: {args.plan_members} databases x {args.plan_patches} patches")
            plan = b.plan_rounds(work, args.plan_members, args.plan_patches, args.runs, say,
                                 others)
            for o in others:
                o.admin.close()
            apply: dict[str, Samples] = {}
            if args.apply_members:
                say(f"== apply: {args.apply_patches} patches to {args.apply_members} "
                    "databases")
                apply = b.apply_rounds(work, args.apply_members, args.apply_patches,
                                       args.runs, say, args.jobs)
            text = report(args, plan, apply, server)
            b.admin.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    if args.results:
        write_section(args.results, text)
    print()
    print(text)
    say(f"(whole benchmark: {time.monotonic() - started:.0f} s; medians "
        f"{statistics.median(plan['groups'].values):.3f} s plan)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
