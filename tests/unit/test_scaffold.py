"""pgpatch new: today's date, the next free minor for that database and date, bad names refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from postgresqlpatches.cli import main
from postgresqlpatches.cli.scaffold import create_patch, next_minor
from postgresqlpatches.errors import PgpatchError

DAY = dt.date(2024, 3, 9)


def test_first_patch_of_the_day_is_minor_0001(tmp_path: Path) -> None:
    path = create_patch("app", "app_owner", "add-orders", tmp_path, DAY)
    assert path == tmp_path / "app.20240309.0001.app_owner.add-orders.sql"
    assert path.read_text().startswith("-- add-orders: runs once, as app_owner on database app")


def test_next_minor_counts_files_in_subfolders_of_the_same_database_and_date(
        tmp_path: Path) -> None:
    (tmp_path / "2024").mkdir()
    for name in ["2024/app.20240309.0007.app.x.sql", "app.20240309.0002.app.y.sql",
                 "app.20240308.0042.app.older.sql", "other.20240309.0050.app.z.sql",
                 "app.20240309.0099.app.not-sql.txt"]:
        (tmp_path / name).touch()
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "app.20240309.0500.app.hidden.sql").touch()
    path = create_patch("app", "app", "next", tmp_path, DAY)
    assert path.name == "app.20240309.0008.app.next.sql"


def test_missing_folder_is_created(tmp_path: Path) -> None:
    path = create_patch("app", "app", "x", tmp_path / "new" / "dir", DAY)
    assert path.is_file()


@pytest.mark.parametrize(("database", "user", "description", "message"), [
    ("App", "app", "x", "the database 'App' is not a plain PostgreSQL identifier"),
    ("app", "1user", "x", "the user '1user' is not a plain PostgreSQL identifier"),
    ("app", "app", "add orders", "the description 'add orders' may only hold letters"),
    ("app", "app", "a.b", "the description 'a.b' may only hold letters"),
    ("", "app", "x", "the database part is empty"),
])
def test_bad_parts_are_refused_and_nothing_is_written(
        tmp_path: Path, database: str, user: str, description: str, message: str) -> None:
    with pytest.raises(PgpatchError, match="^" + message.replace("(", r"\(")):
        create_patch(database, user, description, tmp_path, DAY)
    assert list(tmp_path.iterdir()) == []


def test_the_last_minor_of_a_day_is_9999() -> None:
    assert next_minor(["app.20240309.9998.app.x.sql"], "app", "20240309") == "9999"
    with pytest.raises(PgpatchError, match="no free minor version left for app on 20240309"):
        next_minor(["app.20240309.9999.app.x.sql"], "app", "20240309")


def test_cli_prints_the_new_path_with_todays_local_date(tmp_path: Path) -> None:
    today = dt.date.today().strftime("%Y%m%d")
    (tmp_path / f"app.{today}.0001.app.first.sql").touch()
    result = CliRunner().invoke(main, ["new", "app", "app", "second", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / f'app.{today}.0002.app.second.sql'}\n"


def test_cli_refuses_a_bad_name_with_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["new", "app", "app", "no spaces", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: the description 'no spaces' may only hold letters, digits, _ and -",
        "hint: e.g. add_orders_index or fix-typo"]
