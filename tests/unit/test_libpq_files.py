"""libpq's password file and service file, read by libpq's rules (no server)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postgresqlpatches.core.libpq_files import (
    ServiceFileError,
    passfile_host,
    passfile_password,
    service_section,
)
from postgresqlpatches.errors import ConnectionFailed
from postgresqlpatches.pg.server import Server

PASSFILE = """\
# host:port:database:user:password
db1:5432:shop:app:exact-one
db1:*:shop:app:any-port
db1:5432:*:app:any-database
*:*:*:rep:rep\\:with\\\\escapes:and-more
localhost:5432:shop:app:over-the-socket
db\\:2:5432:shop:app:escaped-host
"""


@pytest.mark.parametrize("host, port, db, user, expected", [
    ("db1", "5432", "shop", "app", ("exact-one", 2)),     # the first line that matches wins
    ("db1", "5432", "crm", "app", ("any-database", 4)),   # '*' matches any database
    ("db2", "6000", "x", "rep", ("rep:with\\escapes", 5)),  # an unescaped ':' ends it
    ("localhost", "5432", "shop", "app", ("over-the-socket", 6)),
    ("db:2", "5432", "shop", "app", ("escaped-host", 7)),
    ("db1", "5433", "shop", "app", ("any-port", 3)),      # "*" matches any port
    ("db1", "5432", "shop", "ap", None),                  # a prefix of a field is no match
    ("db1", "5432", "shop", "apps", None),
])
def test_passfile_lines_match_host_port_database_and_user(host: str, port: str, db: str,
                                                          user: str,
                                                          expected: tuple | None) -> None:
    found = passfile_password(PASSFILE, host, port, db, user)
    assert (None if found is None else (found.password, found.line)) == expected


@pytest.mark.parametrize("host, hostaddr, expected", [
    (None, None, "localhost"),
    ("", "10.0.0.7", "10.0.0.7"),
    ("db1", "10.0.0.7", "db1"),
    ("/var/run/postgresql", None, "localhost"),
    ("/srv/sockets", None, "/srv/sockets"),
])
def test_passfile_host_is_localhost_for_the_default_socket(host: str | None,
                                                          hostaddr: str | None,
                                                          expected: str) -> None:
    assert passfile_host(host, hostaddr) == expected


SERVICES = """\
# a comment
[staging]
host=db-staging
password=staging-pw

  [prod]
  host=db-prod
port=6432
host=ignored-second-host
password=a=b
[other]
host=x
"""


def test_service_section_by_libpq_rules() -> None:
    assert service_section(SERVICES, "prod") == {"host": "db-prod", "port": "6432",
                                                 "password": "a=b"}
    assert service_section(SERVICES, "nosuch") is None
    with pytest.raises(ServiceFileError, match="line 2: nested"):
        service_section("[a]\nservice=b\n", "a")
    with pytest.raises(ServiceFileError, match="line 3: expected key=value"):
        service_section("[a]\nhost=x\nnonsense\n", "a")


def _server(tmp_path: Path, passfile: str, mode: int = 0o600, **env: str) -> Server:
    path = tmp_path / "pgpass"
    path.write_text(passfile)
    path.chmod(mode)
    return Server(environ={"PGPASSFILE": str(path), "PGHOST": "db1", "PGPORT": "5432", **env})


def test_password_sources_in_order_and_pgpassword_only_for_the_admin(tmp_path: Path) -> None:
    server = _server(tmp_path, "*:*:*:*:from-file\n", PGPASSWORD="from-env",
                     POSTGRESQL_APP_PASSWORD="from-variable")
    assert server.password("app", "shop") == "from-variable"
    assert server.password("postgres", "shop") == "from-env"
    assert server.password("rep", "shop") == "from-file"  # PGPASSWORD is not rep's
    assert server.password_source("rep", "shop").where.endswith("pgpass (line 1)")
    admin = Server(environ={**server.environ}, admin_user="admin")
    assert admin.password("admin") == "from-env"
    assert admin.password("postgres") == "from-file"


def test_a_passfile_others_may_read_is_ignored_with_libpqs_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = _server(tmp_path, "*:*:*:app:from-file\n", mode=0o644)
    assert server.password_source("app", "shop") is None
    assert "has group or world access" in caplog.text


def test_the_service_password_is_for_its_user_or_the_admin(tmp_path: Path) -> None:
    services = tmp_path / "services"
    services.write_text("[prod]\nhost=db9\nport=7000\npassword=svc-pw\n"
                        "[app]\nuser=app\npassword=app-svc-pw\n")
    env = {"PGSERVICEFILE": str(services), "PGPASSWORD": "env-pw"}
    prod = _server(tmp_path, "db9:7000:shop:app:file-pw\n", PGSERVICE="prod", **env)
    assert prod.password("postgres") == "svc-pw"  # the service's beats PGPASSWORD, as in libpq
    # the service's host and port beat PGHOST/PGPORT when the password file is matched
    assert prod.password("app", "shop") == "file-pw"
    app = _server(tmp_path, "", PGSERVICE="app", **env)
    assert app.password("app") == "app-svc-pw"
    assert app.password("postgres") == "env-pw"
    child = prod.psql_environment("app", dbname="shop")
    assert "PGSERVICE" not in child  # its password would beat PGPASSWORD in the child
    assert (child["PGHOST"], child["PGPORT"], child["PGPASSWORD"]) == ("db9", "7000", "file-pw")
    with pytest.raises(ConnectionFailed, match="PGSERVICE: no service 'nosuch'"):
        _server(tmp_path, "", PGSERVICE="nosuch", **env).password("app")


def test_passfile_default_is_in_home(tmp_path: Path) -> None:
    (tmp_path / ".pgpass").write_text("*:*:*:app:home-pw\n")
    os.chmod(tmp_path / ".pgpass", 0o600)
    assert Server(environ={"HOME": str(tmp_path)}).password("app") == "home-pw"


def test_a_password_read_from_a_file_is_masked_from_then_on(tmp_path: Path) -> None:
    from postgresqlpatches.core.redact import redact

    server = _server(tmp_path, "*:*:*:app:Only-In-The-File-7\n")
    assert server.password("app", "shop") == "Only-In-The-File-7"
    assert redact("psql: error near Only-In-The-File-7") == "psql: error near ***"


def test_the_state_patches_run_as_the_admin_user() -> None:
    from postgresqlpatches.core.discovery import builtin_patches

    users = {p.name.user for p in builtin_patches("patches", "admin")}
    assert users == {"admin"}
    assert {p.name.user for p in builtin_patches("patches")} == {"postgres"}


def test_admin_user_is_a_common_option_also_before_the_command() -> None:
    from click.testing import CliRunner

    from postgresqlpatches.cli import main

    bad = CliRunner().invoke(main, ["--admin-user", "Bad-Name", "status"])
    assert bad.exit_code == 2
    assert "Invalid value for '--admin-user'" in bad.output
    env = CliRunner().invoke(main, ["status"], env={"PGPATCH_ADMIN_USER": "Bad-Name"})
    assert env.exit_code == 2 and "--admin-user" in env.output
