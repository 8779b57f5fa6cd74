"""The pure parts of ``pgpatch baseline``: list settings, psql arguments, the summary line."""

from pathlib import Path

import pytest

from postgresqlpatches.baseline import BaselineFile, human_size
from postgresqlpatches.pg.dump import psql_argument, split_setting_list


@pytest.mark.parametrize(("stored", "elements"), [
    ('app, "$user"', ["app", "$user"]),
    ("public", ["public"]),
    ('""', [""]),
    ('"a ""quoted"", one", b', ['a "quoted", one', "b"]),
    ('  x ,y  ', ["x", "y"]),
])
def test_list_settings_are_split_as_the_server_keeps_them(stored: str,
                                                          elements: list[str]) -> None:
    assert split_setting_list(stored) == elements


@pytest.mark.parametrize(("text", "argument"), [
    ("PGPATCH_SHOP_PASSWORD", "PGPATCH_SHOP_PASSWORD"),
    ("PGPATCH_CRM-APP_PASSWORD", "'PGPATCH_CRM-APP_PASSWORD'"),
    ("PGPATCH_IT'S_PASSWORD", "'PGPATCH_IT''S_PASSWORD'"),
    ("A\\B\nC", "'A\\\\B\\nC'"),
])
def test_psql_arguments_are_quoted_when_not_plain(text: str, argument: str) -> None:
    assert psql_argument(text) == argument


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 kB"), (11_366, "11.1 kB"),
    (5 * 1024 * 1024, "5.0 MB"), (3 * 1024 ** 4, "3072.0 GB"),
])
def test_sizes_read_like_pg_size_pretty(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_the_summary_says_whether_the_file_holds_rows() -> None:
    path = Path("out/shop.00000000.0000.postgres.baseline.sql")
    assert BaselineFile(path, 2048, None).summary() == (
        f"wrote {path} (2.0 kB; schema and the rows of every table) and recorded it as applied")
    assert BaselineFile(path, 900, ()).summary() == (
        f"wrote {path} (900 bytes; schema only, no rows) and recorded it as applied")
    assert BaselineFile(path, 900, ("public.countries", 'ref."Tax Rates"')).summary() == (
        f'wrote {path} (900 bytes; schema and the rows of public.countries, ref."Tax Rates") '
        "and recorded it as applied")
