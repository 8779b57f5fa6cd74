"""`plan --sql` prints what `apply` sends: compared with the server's own log of a real run
(log_statement = all), statement by statement, for a tree of varied patches."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.conftest import Pg

# what plan --sql prints is pgpatch's, the same on every major: on one major only
# (tests/conftest.py)
pytestmark = pytest.mark.one_major


PREFIX = "%m [%p] <%d|%u|%a> "
RECORD = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] <([^|]*)\|([^|]*)\|([^>]*)> "
                    r"(?:LOG|ERROR|STATEMENT|DETAIL|HINT|WARNING|NOTICE|FATAL|CONTEXT):  ")


@pytest.fixture
def statement_log(pg: Pg) -> Iterator[Callable[[], str]]:
    """The server logs every statement with its session's database, user and application;
    the returned function gives the log written since."""
    start = len(pg.server.server_log())
    pg.query("ALTER SYSTEM SET log_statement = 'all'")
    pg.query(f"ALTER SYSTEM SET log_line_prefix = '{PREFIX}'")
    pg.query("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while pg.query("SHOW log_statement") != [("all",)]:  # a new session sees the reload
        assert time.monotonic() < deadline, "the server did not take log_statement"
        time.sleep(0.05)
    try:
        yield lambda: pg.server.server_log()[start:]
    finally:
        pg.query("ALTER SYSTEM RESET log_statement")
        pg.query("ALTER SYSTEM RESET log_line_prefix")
        pg.query("SELECT pg_reload_conf()")


TREE = {
    "app.00000000.0000.postgres.baseline.sql":
        "\\getenv pw POSTGRESQL_APP_PASSWORD\nCREATE ROLE app LOGIN PASSWORD :'pw';\n"
        "CREATE DATABASE :\"database\" OWNER app;\n",
    "app.00000000.0001.app.schema.sql":
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;\nCREATE TABLE t (a int);\n",
    "app.20240101.0001.app.rows.sql":
        "-- a comment\nINSERT INTO t VALUES (1); -- trailing\n"
        "INSERT INTO t\n  VALUES (2) -- x\n;\n",
    "app.20240101.0002.app.temp.sql":
        "BEGIN ISOLATION LEVEL SERIALIZABLE;\nCREATE TEMP TABLE x AS SELECT 3 AS a;\n"
        "INSERT INTO t SELECT a FROM x;\nCOMMIT;\n",
    "app.20240101.0003.app.index.sql":
        "CREATE INDEX CONCURRENTLY t_a ON t (a);\nVACUUM t;\n",
    "app.20240101.0004.app.inner.sql":
        "SELECT 1;\nBEGIN;\nALTER TABLE t ADD b int;\nCOMMIT;\nUPDATE t SET b = a;\n",
    "app.20240101.0005.app.nothing.sql": "-- only a comment\n",
    "app.20240101.0006.postgres.grant.sql": "GRANT SELECT ON t TO PUBLIC;\n",
}


BOOKKEEPING = ("SELECT pg_current_xact_id()::text", "DISCARD ALL",
               # the lock budget of a CONCURRENTLY statement, set around it and reset after
               "SELECT set_config('lock_timeout', $1, false)", "RESET lock_timeout")
"""pgpatch's own queries on a patch's session, which `plan --sql` says it does not show."""


def sent_by_apply(log: str, database: str) -> list[tuple[str, str]]:
    """(user, statement) of every statement the sessions on ``database`` ran, in order,
    without pgpatch's bookkeeping: the transaction id, DISCARD ALL, the cluster identity
    asked when a session opens (in a transaction of its own) and the invalid-index look."""
    records: list[tuple[str, str, str, str]] = []  # pid, database, user, message
    for line in log.splitlines():
        m = RECORD.match(line)
        if m:
            records.append((m.group(1), m.group(2), m.group(3), line[m.end():]))
        elif records and line.startswith("\t"):
            pid, db, user, message = records[-1]
            records[-1] = (pid, db, user, message + "\n" + line[1:])
    sent: list[tuple[str, str, str]] = []
    for pid, db, user, message in records:
        m = re.match(r"(?:statement|execute <unnamed>): (.*)\Z", message, re.DOTALL)
        if db == database and m:
            sent.append((pid, user, m.group(1)))
    out: list[tuple[str, str]] = []
    skip_rollback: set[str] = set()
    for pid, user, text in sent:
        if text.startswith("SELECT system_identifier"):  # behind a BEGIN of its own
            assert out and out[-1] == (user, "BEGIN")
            out.pop()
            skip_rollback.add(pid)
        elif text == "ROLLBACK" and pid in skip_rollback:
            skip_rollback.discard(pid)
        elif text not in BOOKKEEPING and not text.lstrip().startswith("SELECT c.oid::int8"):
            out.append((user, text))
    return out


def printed_blocks(output: str) -> list[tuple[str, str, str, str]]:
    """(database, user, mode, body) of each patch `plan --sql` printed."""
    blocks = []
    for chunk in re.split(r"\n\n(?=-- \S+\n-- database: )", output.rstrip("\n"))[1:]:
        path_line, header, *body = chunk.split("\n")
        m = re.match(r"-- database: (\w+), user: (\w+), (.*)\Z", header)
        assert path_line.startswith("-- ") and m, chunk
        blocks.append((m.group(1), m.group(2), m.group(3), "\n".join(body)))
    return blocks


def printed_statements(output: str, database: str) -> list[tuple[str, str]]:
    """(user, statement) `plan --sql` printed for ``database``, split as pgpatch splits."""
    from postgresqlpatches.core.statements import parse_sql

    return [(user, s.text) for db, user, mode, body in printed_blocks(output)
            if db == database and "psql" not in mode
            for s in parse_sql(body).statements]


def test_plan_sql_prints_what_apply_sends(pg: Pg, statement_log: Callable[[], str]) -> None:
    for name, text in TREE.items():
        pg.write(name, text)
    printed = pg.cli("plan", "--sql", pg.glob())
    assert printed.exit_code == 0, printed.output
    offline = pg.cli("plan", "--sql", "--offline", pg.glob())
    assert offline.exit_code == 0, offline.output
    assert offline.stdout == printed.stdout  # on an empty server every patch is pending
    applied = pg.cli("apply", pg.glob())
    assert applied.exit_code == 0, applied.output

    expected = printed_statements(printed.stdout, "app")
    assert sent_by_apply(statement_log(), "app") == expected
    # every kind of step is in the comparison
    assert ("app", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ") in expected
    assert ("app", "BEGIN ISOLATION LEVEL SERIALIZABLE") in expected
    assert ("app", "DISCARD TEMP") in expected
    assert ("app", "INSERT INTO t\n  VALUES (2) -- x") in expected
    assert ("postgres", "GRANT SELECT ON t TO PUBLIC") in expected
    modes = {(m, b.split("\n")[0]) for db, _, m, b in printed_blocks(printed.stdout)
             if db == "app"}
    assert ("statement by statement", "CREATE INDEX CONCURRENTLY t_a ON t (a);") in modes
    assert ("one transaction", "-- (the file holds no statement)") in modes
    inner = [b for _, _, _, b in printed_blocks(printed.stdout) if "ALTER TABLE t ADD b" in b]
    assert inner == ["BEGIN;\nSELECT 1;\nALTER TABLE t ADD b int;\nUPDATE t SET b = a;\nCOMMIT;"]
    # a psql baseline is printed as the file it is, and said to run through psql
    [(_, user, mode, body)] = [b for b in printed_blocks(printed.stdout)
                               if b[0] == "app" and "psql" in b[2]]
    assert (user, body) == ("postgres", TREE["app.00000000.0000.postgres.baseline.sql"].rstrip())
    assert mode.startswith("bootstrap, psql")
    assert pg.query("SELECT a, b FROM t ORDER BY a", "app") == [(1, 1), (2, 2), (3, 3)]


def test_plan_sql_prints_only_what_is_pending_and_resumes_where_apply_would(pg: Pg) -> None:
    pg.write("app.00000000.0000.postgres.baseline.sql", "CREATE DATABASE app;\n")
    pg.write("app.20240101.0001.postgres.t.sql", "CREATE TABLE t (a int);\n")
    assert pg.cli("apply", pg.glob()).exit_code == 0
    pg.write("app.20240102.0001.postgres.index.sql",
             "CREATE INDEX CONCURRENTLY t_a ON t (a);\nCREATE INDEX CONCURRENTLY t_b ON t (b);\n")
    failed = pg.cli("apply", pg.glob())
    assert failed.exit_code == 1  # column b does not exist: statement 1 stays done
    printed = pg.cli("plan", "--sql", pg.glob())
    assert printed.exit_code == 0, printed.output
    [(_, user, mode, body)] = printed_blocks(printed.stdout)
    assert (user, mode, body) == ("postgres",
                                  "statement by statement, resumed at statement 2",
                                  "CREATE INDEX CONCURRENTLY t_b ON t (b);")
    assert "(1 pending patch)" in printed.stdout


def test_plan_sql_with_problems_prints_no_sql(pg: Pg) -> None:
    pg.write("app.20240101.0001.postgres.t.sql", "CREATE TABLE t (a int);\nCOMMIT;\n")
    result = pg.cli("plan", "--sql", "--offline", pg.glob())
    assert result.exit_code == 1
    assert result.stdout == "-- nothing would be sent: the plan has 1 problem\n"
    assert "transaction control (COMMIT) inside a patch [transaction-control]" in result.stderr
    assert "Traceback" not in result.output


def test_plan_sql_and_json_is_a_usage_error(pg: Pg) -> None:
    pg.write("app.20240101.0001.postgres.t.sql")
    result = pg.cli("plan", "--sql", "--format", "json", "--offline", pg.glob())
    assert result.exit_code == 2
    assert "--sql prints SQL text: it does not combine with --format json" in result.stderr
    # with --format json a usage error is one JSON document too (docs/json.md)
    doc = json.loads(result.stdout)
    assert (doc["ok"], doc["command"], doc["error"]["kind"]) == (False, "plan", "usage")


def test_plan_sql_masks_passwords(pg: Pg) -> None:
    pg.write("app.20240101.0001.postgres.role.sql",
             "CREATE ROLE rep LOGIN PASSWORD 'Rep-secret-77';\n"
             f"ALTER ROLE app PASSWORD '{pg.env['POSTGRESQL_APP_PASSWORD']}';\n")
    result = pg.cli("plan", "--sql", "--offline", pg.glob())
    assert result.exit_code == 0, result.output
    assert "Rep-secret-77" not in result.output
    assert pg.env["POSTGRESQL_APP_PASSWORD"] not in result.output
    assert "CREATE ROLE rep LOGIN PASSWORD '***';" in result.stdout
