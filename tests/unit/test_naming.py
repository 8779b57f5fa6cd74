"""Patch file names: what is accepted, and the one line that says what is wrong."""

import pytest

from postgresqlpatches.core.naming import BadName, PatchName, parse_name


def test_parses_the_five_parts() -> None:
    name = parse_name("hundbidrag.20210301.0001.hundbidrag.allowance_view.sql")
    assert name == PatchName("hundbidrag", "20210301", "0001", "hundbidrag", "allowance_view")
    assert name.key == ("hundbidrag", "20210301", "0001")
    assert name.version == "20210301.0001"
    assert not name.is_bootstrap and not name.is_baseline


def test_bootstrap_and_baseline() -> None:
    baseline = parse_name("db.00000000.0000.postgres.baseline.sql")
    later = parse_name("db.00000000.0001.postgres.seed.sql")
    assert baseline.is_bootstrap and baseline.is_baseline
    assert later.is_bootstrap and not later.is_baseline


def test_order_is_database_major_minor() -> None:
    names = [parse_name(n) for n in [
        "b.20200101.0001.u.x.sql", "a.20210101.0001.u.x.sql", "a.20200101.0002.u.x.sql",
        "a.20200101.0001.u.y.sql"]]
    assert [n.key for n in sorted(names, key=lambda n: n.key)] == [
        ("a", "20200101", "0001"), ("a", "20200101", "0002"), ("a", "20210101", "0001"),
        ("b", "20200101", "0001")]


@pytest.mark.parametrize(("filename", "says"), [
    ("db.20210101.0001.user.desc.txt", "does not end in .sql"),
    ("db.20210101.0001.user.sql", "4 dot-separated parts"),
    ("db.20210101.0001.user.more.desc.sql", "6 dot-separated parts"),
    ("Db.20210101.0001.user.desc.sql", "the database 'Db' is not a plain PostgreSQL identifier"),
    ("1db.20210101.0001.user.desc.sql", "the database '1db'"),
    ("db.20210101.0001.us-er.desc.sql", "the user 'us-er'"),
    ("db;drop.20210101.0001.user.desc.sql", "the database 'db;drop'"),
    ("db'x.20210101.0001.user.desc.sql", "the database \"db'x\""),
    ("db.20210101.0001.usér.desc.sql", "the user 'usér'"),
    ("db.20210101.0001. user.desc.sql", "the user ' user'"),
    ("db.2021011.0001.user.desc.sql", "major version '2021011' is not 8 digits"),
    ("db.20211301.0001.user.desc.sql", "'20211301' is not a real date"),
    ("db.20210230.0001.user.desc.sql", "'20210230' is not a real date"),
    ("db.20210101.001.user.desc.sql", "minor version '001' is not 4 digits"),
    ("db.20210101.00a1.user.desc.sql", "minor version '00a1'"),
    ("db.20210101.0001.user.de sc.sql", "the description 'de sc'"),
    ("db.20210101.0001.user..sql", "the description ''"),
    (".20210101.0001.user.desc.sql", "the database part is empty"),
    ("d" * 64 + ".20210101.0001.user.desc.sql", "longer than 63 bytes"),
])
def test_bad_names_say_which_part_is_wrong(filename: str, says: str) -> None:
    with pytest.raises(BadName) as caught:
        parse_name(filename, f"dir/{filename}")
    assert says in caught.value.message
    assert caught.value.path == f"dir/{filename}"
    assert "<database>.<YYYYMMDD>" in (caught.value.hint or "")


def test_longest_identifier_is_accepted() -> None:
    assert parse_name("d" * 63 + ".20210101.0001.u.x.sql").database == "d" * 63
