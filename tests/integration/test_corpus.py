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
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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


def _apply_with_pgpatch(pg: Any, files: list[Path], tree: Path) -> tuple[dict[str, str], set[str]]:
    """Per file: ok or the SQLSTATE. pgpatch stops at the first failing (or refused) file and
    the next run tries it again, so that file leaves the tree and the run goes on without it."""
    tree.mkdir()
    for f in files:
        shutil.copy(f, tree / f.name)
    glob = str(tree / "*.sql")
    plan = pg.cli("plan", "--offline", "--format", "json", glob)
    non_tx = {Path(p["path"]).name for p in json.loads(plan.stdout)["patches"]
              if "non-transactional" in p["flags"] and p["database"] != "patches"}
    outcome: dict[str, str] = {}
    for _ in range(len(files) + 1):
        result = pg.cli("apply", "--format", "json", glob)
        if result.exit_code == 0:
            break
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
    else:
        pytest.fail("pgpatch never finished the corpus")
    # what is left in the tree ran: the last run ended well, and the state database agrees
    after = json.loads(pg.cli("plan", "--format", "json", glob).stdout)["patches"]
    applied = {Path(p["path"]).name for p in after
               if p["database"] != "patches" and p["action"] == "applied"}
    assert applied == {p.name for p in tree.glob("*.sql")}
    outcome.update(dict.fromkeys(applied, OK))
    return outcome, non_tx


def _run_with_psql(pg: Any, files: list[Path], db: str, role: str, password: str,
                   non_tx: set[str]) -> dict[str, str]:
    psql = pg.server.installation.tool("psql")
    env = {**os.environ, "PGHOST": pg.server.host, "PGPORT": str(pg.server.port),
           "PGPASSWORD": password, "PGUSER": role, "PGDATABASE": db}
    outcome: dict[str, str] = {}
    for f in files:
        args = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=sqlstate"]
        if f.name not in non_tx:
            args.append("-1")
        done = subprocess.run([*args, "-f", str(f)], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode == 0:
            outcome[f.name] = OK
        else:
            match = PSQL_ERROR.search(done.stderr)
            assert done.returncode == 3 and match, done.stderr
            outcome[f.name] = match["state"]
    return outcome


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

    by_pgpatch, non_tx = _apply_with_pgpatch(pg, files, tmp_path / "tree")
    by_psql = _run_with_psql(pg, files, psql_db, role, password, non_tx)

    assert by_pgpatch == by_psql
    assert by_pgpatch == _expected(corpus)
    assert non_tx == {Path(e["file"]).name for e in MANIFEST
                      if e["file"].startswith(corpus + "/") and e.get("transaction") is False}
    pgpatch_schema, psql_schema = _schema(pg, role, role), _schema(pg, psql_db, role)
    assert "CREATE TABLE" in pgpatch_schema
    assert pgpatch_schema == psql_schema
