"""The transition by a baseline carries everything: roles wherever the database names them, their
memberships, attributes and settings; and only the rows asked for.

A second, empty server of the same installation is built from the baseline through
``pgpatch apply`` and compared with the source: pg_dump's schema, the ACLs, the memberships, the
role attributes and the settings.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postgresqlpatches.pg.scratch import ScratchServer
from tests.integration.conftest import Pg, reset_server

# Each role is named in one place only; "unrelated" is named nowhere and stays behind.
ROLES = """
CREATE ROLE crm_owner LOGIN CREATEDB CONNECTION LIMIT 7 VALID UNTIL '2031-01-01 00:00:00+00';
CREATE ROLE crm_admin SUPERUSER NOLOGIN;
CREATE ROLE fn_user LOGIN NOINHERIT;
CREATE ROLE type_user CREATEROLE;
CREATE ROLE col_user REPLICATION;
CREATE ROLE seq_user BYPASSRLS;
CREATE ROLE lo_user;
CREATE ROLE defacl_owner;
CREATE ROLE defacl_reader;
CREATE ROLE policy_user;
CREATE ROLE dbset_user;
CREATE ROLE crm_staff;
CREATE ROLE crm_base;
CREATE ROLE "Crm Auditor";
CREATE ROLE "crm-app" LOGIN;
CREATE ROLE unrelated;
GRANT crm_staff TO col_user WITH ADMIN OPTION;
GRANT crm_base TO crm_staff;
GRANT pg_read_all_settings TO fn_user;
ALTER ROLE fn_user SET search_path = app, "$user";
ALTER ROLE type_user SET statement_timeout = '5s';
ALTER ROLE "Crm Auditor" SET crm.tenant = 'it''s';
"""

SCHEMA = """
CREATE SCHEMA app AUTHORIZATION crm_admin;
SET ROLE crm_admin;
CREATE TYPE app.mood AS ENUM ('ok', 'sad');
CREATE TABLE app.customers (id serial PRIMARY KEY, name text, mood app.mood);
INSERT INTO app.customers (name, mood) VALUES ('Astrid', 'ok');
CREATE FUNCTION app.greet() RETURNS text LANGUAGE sql AS $$ SELECT 'hi' $$;
REVOKE EXECUTE ON FUNCTION app.greet() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.greet() TO fn_user;
GRANT USAGE ON TYPE app.mood TO type_user;
GRANT SELECT (name) ON app.customers TO col_user;
GRANT USAGE ON SEQUENCE app.customers_id_seq TO seq_user;
GRANT SELECT ON app.customers TO "Crm Auditor";
GRANT USAGE ON SCHEMA app TO "crm-app";
ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON app.customers TO policy_user USING (name = current_user);
RESET ROLE;
SELECT lo_create(4711);
ALTER LARGE OBJECT 4711 OWNER TO crm_owner;
GRANT SELECT ON LARGE OBJECT 4711 TO lo_user;
ALTER DEFAULT PRIVILEGES FOR ROLE defacl_owner IN SCHEMA app
    GRANT SELECT ON TABLES TO defacl_reader;
"""

PASSWORDS = {"POSTGRESQL_CRM_OWNER_PASSWORD": "owner-Pw-1",
             "POSTGRESQL_FN_USER_PASSWORD": "fn-Pw-2",
             "POSTGRESQL_CRM-APP_PASSWORD": "app-Pw-3"}

ROLE_FACTS = """
SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
       rolbypassrls, rolconnlimit, rolvaliduntil
FROM pg_roles WHERE rolname <> 'postgres' AND rolname !~ '^pg_' ORDER BY 1
"""

SETTINGS = """
SELECT coalesce(d.datname, '-'), coalesce(r.rolname, '-'), s.setconfig
FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_roles r ON r.oid = s.setrole ORDER BY 1, 2
"""

# Every ACL of the database, with role names (oids differ between servers).
ACLS = """
SELECT 'relation', c.oid::regclass::text, c.relacl::text FROM pg_class c
 WHERE c.relnamespace = 'app'::regnamespace
UNION ALL SELECT 'column', a.attrelid::regclass::text || '.' || a.attname, a.attacl::text
 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'app'::regnamespace AND a.attacl IS NOT NULL
UNION ALL SELECT 'function', p.oid::regprocedure::text, p.proacl::text FROM pg_proc p
 WHERE p.pronamespace = 'app'::regnamespace
UNION ALL SELECT 'type', t.oid::regtype::text, t.typacl::text FROM pg_type t
 WHERE t.typnamespace = 'app'::regnamespace
UNION ALL SELECT 'schema', n.nspname, n.nspowner::regrole::text || ' ' || n.nspacl::text
 FROM pg_namespace n WHERE n.nspname = 'app'
UNION ALL SELECT 'default', d.defaclrole::regrole::text || ' ' || d.defaclobjtype::text,
 d.defaclacl::text FROM pg_default_acl d
UNION ALL SELECT 'policy', p.polname, p.polroles::regrole[]::text FROM pg_policy p
UNION ALL SELECT 'large object', l.oid::text, l.lomowner::regrole::text || ' ' || l.lomacl::text
 FROM pg_largeobject_metadata l
UNION ALL SELECT 'database', d.datname,
 d.datdba::regrole::text || ' ' || coalesce(d.datacl::text, '')
 FROM pg_database d WHERE d.datname = current_database()
ORDER BY 1, 2
"""


def memberships_query(major: int) -> str:
    options = "m.inherit_option, m.set_option" if major >= 16 else "NULL, NULL"
    return f"""SELECT r.rolname, u.rolname, m.admin_option, {options} FROM pg_auth_members m
               JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
               WHERE u.rolname <> 'postgres' ORDER BY 1, 2"""


def query(server: ScratchServer, sql: str, db: str = "postgres") -> list[tuple[Any, ...]]:
    with server.connect(db) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def schema_dump(server: ScratchServer, db: str) -> str:
    """pg_dump --create --schema-only, without the random \\restrict keys."""
    env = {**os.environ, "PGPASSWORD": server.password}
    out = subprocess.run(
        [str(server.installation.tool("pg_dump")), "--create", "--schema-only", "-h", server.host,
         "-p", str(server.port), "-U", "postgres", "-d", db],
        env=env, capture_output=True, text=True, check=True, timeout=60)
    return "\n".join(line for line in out.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


def facts(server: ScratchServer) -> dict[str, Any]:
    return {
        "roles": [r for r in query(server, ROLE_FACTS) if r[0] != "unrelated"],
        "memberships": query(server, memberships_query(server.major)),
        "settings": query(server, SETTINGS),
        "acls": query(server, ACLS, "crm"),
        "schema": schema_dump(server, "crm"),
    }


@pytest.fixture(scope="module")
def empty_server(pg_server: ScratchServer) -> Iterator[ScratchServer]:
    """A second small server of the same installation, to build from a baseline."""
    with ScratchServer(pg_server.installation, password="target-Pw-9",
                       settings={"fsync": "off", "max_connections": "20"}) as server:
        yield server


@pytest.fixture
def target(empty_server: ScratchServer) -> Iterator[ScratchServer]:
    reset_server(empty_server)
    yield empty_server
    reset_server(empty_server)


def crm_source(pg: Pg) -> None:
    pg.query(ROLES)
    pg.query("CREATE DATABASE crm OWNER crm_owner")
    pg.query("ALTER ROLE dbset_user IN DATABASE crm SET work_mem = '8MB'")
    if pg.server.major >= 16:
        pg.query("REVOKE crm_base FROM crm_staff; "
                 "GRANT crm_base TO crm_staff WITH INHERIT FALSE, SET FALSE")
    pg.query(SCHEMA, "crm")


def apply_on(pg: Pg, server: ScratchServer, tree: Path, without: str = "") -> Any:
    env: dict[str, str | None] = {"PGHOST": server.host, "PGPORT": str(server.port),
                                  "POSTGRESQL_POSTGRES_PASSWORD": server.password, **PASSWORDS}
    if without:
        env[without] = None
    return pg.cli("apply", str(tree / "*.sql"), env=env)


def test_baseline_builds_an_empty_server_with_every_role_grant_and_setting(
        pg: Pg, target: ScratchServer) -> None:
    crm_source(pg)
    out = pg.tree / "crm"
    made = pg.cli("baseline", "crm", "--output-dir", str(out), env=PASSWORDS)
    assert made.exit_code == 0, made.stderr
    text = (out / "crm.00000000.0000.postgres.baseline.sql").read_text()
    assert not any(pw in text for pw in PASSWORDS.values())
    assert re.search(r"^\\getenv pwd_\d+ 'PGPATCH_CRM-APP_PASSWORD'$", text, re.MULTILINE)
    assert text.count("ALTER ROLE dbset_user IN DATABASE crm SET") == 1  # pg_dump's, once

    built = apply_on(pg, target, out)
    assert built.exit_code == 0, built.stderr
    source, rebuilt = facts(pg.server), facts(target)
    for key in source:
        assert rebuilt[key] == source[key], key
    assert "unrelated" not in {r[0] for r in query(target, ROLE_FACTS)}
    assert query(target, "SELECT name FROM app.customers", "crm") == [("Astrid",)]
    for user, password in [("crm_owner", "owner-Pw-1"), ("crm-app", "app-Pw-3")]:
        with target.connect("crm", user=user, password=password) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)


def test_baseline_runs_where_some_roles_exist_and_leaves_them_as_they_are(
        pg: Pg, target: ScratchServer) -> None:
    crm_source(pg)
    out = pg.tree / "crm"
    made = pg.cli("baseline", "crm", "--output-dir", str(out), env=PASSWORDS)
    assert made.exit_code == 0, made.stderr
    query(target, """CREATE ROLE fn_user NOLOGIN CONNECTION LIMIT 3;
                     ALTER ROLE fn_user SET work_mem = '1MB';
                     CREATE ROLE crm_staff; CREATE ROLE col_user; GRANT crm_staff TO col_user""")

    built = apply_on(pg, target, out)
    assert built.exit_code == 0, built.stderr
    source, rebuilt = facts(pg.server), facts(target)
    assert rebuilt["schema"] == source["schema"]
    assert rebuilt["acls"] == source["acls"]
    kept = {r[0]: r for r in rebuilt["roles"]}
    assert (kept["fn_user"][5], kept["fn_user"][8]) == (False, 3)  # NOLOGIN, limit 3: as it was
    assert [r for r in rebuilt["roles"] if r[0] not in ("fn_user", "crm_staff", "col_user")] == [
        r for r in source["roles"] if r[0] not in ("fn_user", "crm_staff", "col_user")]
    staff = [m for m in rebuilt["memberships"] if m[:2] == ("crm_staff", "col_user")]
    assert [m[2] for m in staff] == [False]  # the existing membership is left without ADMIN
    assert ("-", "fn_user", ["work_mem=1MB"]) in rebuilt["settings"]
    assert ("-", "type_user", ["statement_timeout=5s"]) in rebuilt["settings"]
    assert ("crm", "dbset_user", ["work_mem=8MB"]) in rebuilt["settings"]


def test_a_login_role_without_its_password_is_warned_and_strict_passwords_stops_the_run(
        pg: Pg, target: ScratchServer) -> None:
    crm_source(pg)
    out = pg.tree / "crm"
    assert pg.cli("baseline", "crm", "--output-dir", str(out), env=PASSWORDS).exit_code == 0
    before = {r[0] for r in query(target, ROLE_FACTS)}

    env: dict[str, str | None] = {"PGHOST": target.host, "PGPORT": str(target.port),
                                  "POSTGRESQL_POSTGRES_PASSWORD": target.password, **PASSWORDS,
                                  "POSTGRESQL_CRM-APP_PASSWORD": None}
    strict = pg.cli("apply", "--strict-passwords", str(out / "*.sql"), env=env)
    assert strict.exit_code == 1
    assert ("POSTGRESQL_CRM-APP_PASSWORD is not set: role crm-app would get its name"
            in strict.stderr)
    assert query(target, "SELECT count(*) FROM pg_database WHERE datname = 'crm'") == [(0,)]
    assert {r[0] for r in query(target, ROLE_FACTS)} == before

    built = pg.cli("apply", str(out / "*.sql"), env=env)
    assert built.exit_code == 0, built.stderr
    assert built.stderr.count(
        "warning: POSTGRESQL_CRM-APP_PASSWORD is not set: role crm-app gets its name as "
        "password") == 1
    assert "app-Pw-3" not in built.stderr + built.stdout
