"""Real teams' SQL: published migrations run with pgpatch and with psql give the same result.

tests/corpus/ holds PostgreSQL migrations from the test suites of peer tools and from an
application's history (origins in tests/corpus/README.md and manifest.json), renamed into
pgpatch's scheme. Each corpus is one database. pgpatch applies it into that database; psql runs
the same files one process per file into a second database on the same server. Per file the
outcome (success, or the SQLSTATE) must agree, and so must ``pg_dump --schema-only`` of the two.

How psql runs a file follows what pgpatch does with it: a transactional patch is one
transaction, so ``psql -1``; a non-transactional one (pgpatch's plan says so) runs statement
by statement in autocommit, so plain psql. A file pgpatch refuses up front as a syntax error is
compared with psql's 42601 (syntax_error) for the same file.

Where pgpatch refuses on purpose what psql runs (the manifest's ``pgpatch`` names the problem
kind, e.g. ``transaction-control`` for a ``BEGIN; ... COMMIT;`` block inside a file), the test
checks that pgpatch refuses exactly that file with exactly that problem and runs nothing, then
runs the file by hand with psql into pgpatch's database, as a team would, and goes on. The
outcome of such a file is ``refused: <kind>`` on pgpatch's side and psql's outcome on the other;
every other file must agree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
MANIFEST: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())["files"]
CORPORA = sorted({entry["file"].split("/", 1)[0] for entry in MANIFEST})
OK = "ok"
SYNTAX_ERROR = "42601"
ERROR_LINE = re.compile(r"^error: (?P<path>[^:]+\.sql):\d+: .*?(?:\[SQLSTATE (?P<state>\w{5})\])?$")
PSQL_ERROR = re.compile(r"ERROR:\s+(?P<state>[0-9A-Z]{5})")


def _expected(corpus: str) -> dict[str, str]:
    return {Path(e["file"]).name: e.get("expect", OK) for e in MANIFEST
            if e["file"].startswith(corpus + "/")}


def _refused(corpus: str) -> dict[str, str]:
    """Files pgpatch refuses on purpose, with the problem kind the manifest says."""
    return {Path(e["file"]).name: e["pgpatch"] for e in MANIFEST
            if e["file"].startswith(corpus + "/") and "pgpatch" in e}


def _make_databases(pg: Any, corpus: str, password: str) -> tuple[str, str]:
    """The corpus's own login role owns both databases, as a team's app role would."""
    role, other = corpus, f"{corpus}_psql"
    with pg.server.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        for db in (role, other):
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(db), sql.Identifier(role)))
    return role, other


def _apply_with_pgpatch(pg: Any, files: list[Path], tree: Path, refused: dict[str, str],
                        by_hand: Callable[[Path], None]) -> tuple[dict[str, str], set[str]]:
    """Per file: ok or the SQLSTATE. pgpatch stops at the first failing (or refused) file and
    the next run tries it again, so that file leaves the tree and the run goes on without it.
    A file the manifest lists as refused is brought in on its own, after everything before it
    ran: pgpatch must refuse it with that problem kind; then it runs ``by_hand``."""
    every = tree.parent / "every"
    every.mkdir()
    for f in files:
        shutil.copy(f, every / f.name)
    non_tx = _non_transactional(pg, str(every / "*.sql"))
    tree.mkdir()
    glob = str(tree / "*.sql")
    outcome: dict[str, str] = {}
    for f in files:
        if f.name not in refused:
            shutil.copy(f, tree / f.name)
            continue
        _apply_tree(pg, tree, outcome)
        shutil.copy(f, tree / f.name)
        plan = json.loads(pg.cli("plan", "--offline", "--format", "json", glob).stdout)
        kinds = {p["kind"] for p in plan["problems"] if Path(p["path"]).name == f.name}
        before = _applied(pg, glob)
        result = pg.cli("apply", "--format", "json", glob)
        assert result.exit_code == 1 and f.name in result.stderr.splitlines()[0], result.stderr
        assert kinds == {refused[f.name]}, plan["problems"]
        assert _applied(pg, glob) == before, "a refused plan ran something"
        outcome[f.name] = f"refused: {refused[f.name]}"
        (tree / f.name).unlink()
        by_hand(f)
    _apply_tree(pg, tree, outcome)
    # what is left in the tree ran: the last run ended well, and the state database agrees
    applied = _applied(pg, glob)
    assert applied == {p.name for p in tree.glob("*.sql")}
    outcome.update(dict.fromkeys(applied, OK))
    return outcome, non_tx


def _apply_tree(pg: Any, tree: Path, outcome: dict[str, str]) -> None:
    """Apply what is in the tree until a run ends well; a failing file leaves the tree."""
    glob = str(tree / "*.sql")
    for _ in range(len(list(tree.glob("*.sql"))) + 1):
        result = pg.cli("apply", "--format", "json", glob)
        if result.exit_code == 0:
            return
        first = result.stderr.splitlines()[0]
        match = ERROR_LINE.match(first)
        assert result.exit_code == 1 and match, result.stderr
        failed = Path(match["path"]).name
        if match["state"]:
            outcome[failed] = match["state"]
        else:
            assert "syntax error" in first, first
            outcome[failed] = SYNTAX_ERROR
        (tree / failed).unlink()
    pytest.fail("pgpatch never finished the corpus")


def _non_transactional(pg: Any, glob: str) -> set[str]:
    plan = pg.cli("plan", "--offline", "--format", "json", glob)
    return {Path(p["path"]).name for p in json.loads(plan.stdout)["patches"]
            if "non-transactional" in p["flags"] and p["database"] != "patches"}


def _applied(pg: Any, glob: str) -> set[str]:
    after = json.loads(pg.cli("plan", "--format", "json", glob).stdout)["patches"]
    return {Path(p["path"]).name for p in after
            if p["database"] != "patches" and p["action"] == "applied"}


def _psql_env(pg: Any, db: str, role: str, password: str) -> dict[str, str]:
    return {**os.environ, "PGHOST": pg.server.host, "PGPORT": str(pg.server.port),
            "PGPASSWORD": password, "PGUSER": role, "PGDATABASE": db}


def _psql_file(pg: Any, f: Path, env: dict[str, str], *, transaction: bool) -> str:
    """One psql process for one file: ok or the SQLSTATE."""
    args = [str(pg.server.installation.tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            "-v", "VERBOSITY=sqlstate"]
    if transaction:
        args.append("-1")
    done = subprocess.run([*args, "-f", str(f)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode == 0:
        return OK
    match = PSQL_ERROR.search(done.stderr)
    assert done.returncode == 3 and match, done.stderr
    return match["state"]


def _run_with_psql(pg: Any, files: list[Path], db: str, role: str, password: str,
                   non_tx: set[str]) -> dict[str, str]:
    env = _psql_env(pg, db, role, password)
    return {f.name: _psql_file(pg, f, env, transaction=f.name not in non_tx) for f in files}


def _schema(pg: Any, db: str, as_name: str) -> str:
    """pg_dump --schema-only, without what differs by run or by name: the \\restrict key
    (dumps since the August 2025 minors), and the database's name (written as ``as_name``)."""
    pg_dump = pg.server.installation.tool("pg_dump")
    env = {**os.environ, "PGPASSWORD": pg.server.password}
    dump = subprocess.run(
        [str(pg_dump), "--schema-only", "-h", pg.server.host, "-p", str(pg.server.port),
         "-U", pg.server.user, "-d", db],
        env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    lines = [line for line in dump.splitlines() if not line.startswith(("\\restrict",
                                                                          "\\unrestrict"))]
    return re.sub(rf"\b{re.escape(db)}\b", as_name, "\n".join(lines))


@pytest.mark.parametrize("corpus", CORPORA)
def test_corpus_gives_pgpatch_and_psql_the_same_outcome_and_schema(
        pg: Any, corpus: str, tmp_path: Path) -> None:
    files = sorted((CORPUS / corpus).glob("*.sql"))
    assert [f.name for f in files] == sorted(_expected(corpus)), "manifest and files differ"
    password = f"{corpus}-pw-9"
    role, psql_db = _make_databases(pg, corpus, password)
    pg.env[f"POSTGRESQL_{role.upper()}_PASSWORD"] = password

    refused = _refused(corpus)
    by_hand: dict[str, str] = {}

    def run_by_hand(f: Path) -> None:
        by_hand[f.name] = _psql_file(pg, f, _psql_env(pg, role, role, password), transaction=True)

    by_pgpatch, non_tx = _apply_with_pgpatch(pg, files, tmp_path / "tree", refused, run_by_hand)
    by_psql = _run_with_psql(pg, files, psql_db, role, password, non_tx)

    assert {n: o for n, o in by_pgpatch.items() if n not in refused} == \
        {n: o for n, o in by_psql.items() if n not in refused}
    assert {n: by_pgpatch[n] for n in refused} == {n: f"refused: {k}" for n, k in refused.items()}
    assert by_hand == {n: by_psql[n] for n in refused}
    assert by_psql == _expected(corpus)
    assert non_tx == {Path(e["file"]).name for e in MANIFEST
                      if e["file"].startswith(corpus + "/") and e.get("transaction") is False}
    pgpatch_schema, psql_schema = _schema(pg, role, role), _schema(pg, psql_db, role)
    assert "CREATE TABLE" in pgpatch_schema
    assert pgpatch_schema == psql_schema
