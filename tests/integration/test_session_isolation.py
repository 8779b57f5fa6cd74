"""Each patch starts in the session of a new connection as its user, as psql gives each file.

pgpatch keeps one connection per (database, user) for a run and sends the next patch behind
the COMMIT of the one before; whatever a patch does to its session (settings, role, temp
tables, prepared statements, LISTEN, session locks, role and database defaults) must not
reach the patches after it (docs/safety.md, "Each patch gets a session of its own").
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Pg

BASELINE = """\\getenv pw PGPATCH_APP_PASSWORD
CREATE ROLE app LOGIN PASSWORD :'pw';
CREATE DATABASE iso OWNER app;
\\connect iso
CREATE SCHEMA elsewhere AUTHORIZATION app;
CREATE TABLE ledger (name text NOT NULL, value text);
GRANT ALL ON ledger TO app;
"""

WHERE_MADE = ("SELECT relnamespace::regnamespace::text FROM pg_class "
              "WHERE relname = 'made_here'")


def observe(expression: str, name: str = "b") -> str:
    """A later patch writes down what its session sees: the row (name, value) of ledger."""
    return f"INSERT INTO public.ledger SELECT '{name}', ({expression})::text;\n"


def seen(pg: Pg, name: str = "b") -> list[str | None]:
    return [r[0] for r in pg.query(
        f"SELECT value FROM public.ledger WHERE name = '{name}' ORDER BY value", "iso")]


def tree(pg: Pg, *patches: tuple[str, str]) -> None:
    """The baseline, then the patches of database iso in the order given."""
    pg.write("iso.00000000.0000.postgres.baseline.sql", BASELINE)
    for i, (user, text) in enumerate(patches, start=1):
        pg.write(f"p/iso.20240101.{i:04d}.{user}.p{i}.sql", text)


def apply_ok(pg: Pg, *args: str) -> None:
    result = pg.cli("apply", pg.glob(), *args)
    assert result.exit_code == 0, result.stderr


# -- what a patch leaves in its session ----------------------------------------------------

LEAKS = [
    pytest.param("CREATE TEMP TABLE ledger (name text, value text);\n",
                 "INSERT INTO ledger VALUES ('b', 'kept');\n", ["kept"], id="temp-table"),
    pytest.param("SET session_replication_role = replica;\n",
                 observe("current_setting('session_replication_role')"), ["origin"],
                 id="session_replication_role"),
    pytest.param("SET search_path = elsewhere;\n",
                 "CREATE TABLE made_here (a int);\n" + observe(WHERE_MADE), ["public"],
                 id="search_path"),
    pytest.param("SET ROLE app;\n", observe("current_user"), ["postgres"], id="set-role"),
    pytest.param("SET SESSION AUTHORIZATION app;\n", observe("session_user"), ["postgres"],
                 id="session-authorization"),
    pytest.param("SELECT set_config('search_path', 'elsewhere', false);\n",
                 "CREATE TABLE made_here (a int);\n" + observe(WHERE_MADE), ["public"],
                 id="set_config"),
    pytest.param("SELECT set_config('iso.tenant', 'acme', false);\n",
                 observe("current_setting('iso.tenant', true)"), [None],
                 id="set_config-custom-setting"),
    pytest.param("SET check_function_bodies = off;\n",
                 observe("current_setting('check_function_bodies')"), ["on"],
                 id="check_function_bodies"),
    pytest.param("PREPARE lookup AS SELECT 1;\n",
                 "PREPARE lookup AS SELECT 2;\n"
                 + observe("SELECT count(*) FROM pg_prepared_statements"), ["1"],
                 id="prepare"),
    pytest.param("LISTEN iso_channel;\n",
                 observe("SELECT count(*) FROM pg_listening_channels()"), ["0"], id="listen"),
    pytest.param("SELECT pg_advisory_lock(42);\n",
                 observe("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                         "AND pid = pg_backend_pid()"), ["0"], id="advisory-lock"),
    pytest.param("DECLARE held CURSOR WITH HOLD FOR SELECT 1;\n",
                 observe("SELECT count(*) FROM pg_cursors WHERE name = 'held'"), ["0"],
                 id="cursor-with-hold"),
    pytest.param("DO $$ BEGIN PERFORM set_config('search_path', 'elsewhere', false); END $$;\n",
                 "CREATE TABLE made_here (a int);\n" + observe(WHERE_MADE), ["public"],
                 id="do-block"),
    pytest.param("CREATE FUNCTION switch() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
                 "PERFORM set_config('search_path', 'elsewhere', false); END $$;\n"
                 "SELECT switch();\n",
                 "CREATE TABLE made_here (a int);\n" + observe(WHERE_MADE), ["public"],
                 id="inside-a-function"),
]


@pytest.mark.parametrize(("change", "later", "expected"), LEAKS)
def test_what_a_patch_does_to_its_session_does_not_reach_the_next(
        pg: Pg, change: str, later: str, expected: list[str | None]) -> None:
    # the two patches share the (database, user) connection, the second sent behind the
    # first one's COMMIT; the third shows that the run goes on as well
    tree(pg, ("postgres", change), ("postgres", later), ("postgres", observe("'ran'", "c")))
    apply_ok(pg)
    assert seen(pg) == expected
    assert seen(pg, "c") == ["ran"]


def test_session_replication_role_does_not_switch_off_a_later_patchs_foreign_keys(
        pg: Pg) -> None:
    tree(pg, ("postgres", "CREATE TABLE parent (id int PRIMARY KEY);\n"
                          "CREATE TABLE child (parent int REFERENCES parent);\n"),
         ("postgres", "SET session_replication_role = replica;\n"),
         ("postgres", "INSERT INTO child VALUES (7);\n"))
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    assert "[SQLSTATE 23503]" in result.stderr.splitlines()[0]
    assert pg.query("SELECT count(*) FROM child", "iso") == [(0,)]


def test_check_function_bodies_off_does_not_let_a_later_broken_function_through(
        pg: Pg) -> None:
    tree(pg, ("postgres", "SET check_function_bodies = off;\n"),
         ("postgres", "CREATE FUNCTION broken() RETURNS bigint LANGUAGE sql\n"
                      "AS 'SELECT count(*) FROM no_such_table';\n"))
    result = pg.cli("apply", pg.glob())
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert "p2.sql" in first and "no_such_table" in first and "[SQLSTATE 42P01]" in first


def test_a_setting_goes_back_to_the_run_options_not_the_server_default(pg: Pg) -> None:
    tree(pg, ("postgres", "SET lock_timeout = '1s';\nSET statement_timeout = 0;\n"),
         ("postgres", observe("current_setting('lock_timeout') || ' ' "
                              "|| current_setting('statement_timeout')")))
    apply_ok(pg, "--lock-timeout", "2500", "--statement-timeout", "60000")
    assert seen(pg) == ["2500ms 1min"]


# -- role and database defaults: what only a new login reads -------------------------------

DEFAULTS = [
    pytest.param("app", "ALTER ROLE app SET search_path = elsewhere, public;\n",
                 id="alter-role-by-itself"),
    pytest.param("postgres", "ALTER ROLE app SET search_path = elsewhere, public;\n",
                 id="alter-role-by-postgres"),
    pytest.param("postgres", "ALTER DATABASE iso SET search_path = elsewhere, public;\n",
                 id="alter-database"),
    pytest.param("postgres", "DO $$ BEGIN EXECUTE 'ALTER ROLE app SET search_path = '\n"
                             "  || 'elsewhere, public'; END $$;\n", id="alter-role-in-a-do-block"),
]


@pytest.mark.parametrize(("who", "change"), DEFAULTS)
def test_new_session_defaults_reach_a_later_patch_as_a_new_login_sees_them(
        pg: Pg, who: str, change: str) -> None:
    # app's connection is open before the change (p1), and used after it (p3)
    tree(pg, ("app", observe("'ran'", "a")), (who, change),
         ("app", "CREATE TABLE made_here (a int);\n" + observe(WHERE_MADE)))
    apply_ok(pg)
    assert seen(pg) == ["elsewhere"]
    assert pg.query("SELECT value FROM public.ledger WHERE name = 'b'", "iso") == [
        ("elsewhere",)]


# -- across kinds of steps on the same connection ------------------------------------------

def test_a_transactional_patch_does_not_leak_into_a_non_transactional_one(pg: Pg) -> None:
    tree(pg, ("postgres", "SET search_path = elsewhere;\n"),
         ("postgres", "CREATE TABLE made_here (a int);\nVACUUM made_here;\n"
                      + observe(WHERE_MADE)))
    apply_ok(pg)
    assert seen(pg) == ["public"]


def test_a_non_transactional_patch_does_not_leak_into_the_next(pg: Pg) -> None:
    tree(pg, ("postgres", "SET search_path = elsewhere;\nVACUUM public.ledger;\n"),
         ("postgres", "CREATE TABLE made_here (a int);\n" + observe(WHERE_MADE)))
    apply_ok(pg)
    assert seen(pg) == ["public"]


def test_bootstrap_scripts_do_not_leak_into_each_other_or_into_later_patches(pg: Pg) -> None:
    pg.write("iso.00000000.0000.postgres.baseline.sql", BASELINE)
    pg.write("iso.00000000.0001.postgres.switch.sql", "SET search_path = elsewhere;\n")
    pg.write("iso.00000000.0002.postgres.look.sql",
             "CREATE TABLE made_first (a int);\n"
             "INSERT INTO public.ledger SELECT 'boot', relnamespace::regnamespace::text "
             "FROM pg_class WHERE relname = 'made_first';\n"
             "SET search_path = elsewhere;\n")
    pg.write("p/iso.20240101.0001.postgres.later.sql",
             "CREATE TABLE made_here (a int);\n" + observe(WHERE_MADE))
    apply_ok(pg)
    assert seen(pg, "boot") == ["public"]
    assert seen(pg) == ["public"]
