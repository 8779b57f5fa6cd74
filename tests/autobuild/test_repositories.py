"""Branches built, and the package repository each branch ships to."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .support import AUTOBUILD, load_module

repositories = load_module(AUTOBUILD / "repositories.py", "pgpatch_autobuild_repositories")
BASE = "https://python.repo.example/repository/"


@pytest.mark.parametrize(
    ("branch", "repository"),
    [
        ("master", "production"),
        ("main", "production"),
        ("release", "releases"),
        ("release/1.2", "releases"),
        ("develop", "develop"),
        ("feature/login", "snapshots"),
        ("hotfix/1.2.1", "snapshots"),
        ("masterpiece", "snapshots"),
        ("developer", "snapshots"),
    ],
)
def test_branch_ships_to_its_repository(branch: str, repository: str) -> None:
    assert repositories.repository_name(branch) == repository
    assert repositories.repository_url(branch, BASE) == f"{BASE}{repository}/"


def test_base_url_with_or_without_trailing_slash() -> None:
    assert repositories.repository_url("develop", BASE.rstrip("/")) == f"{BASE}develop/"


@pytest.mark.parametrize("base", ["", "  ", "ftp://x/", "python.repo.example/repository"])
def test_bad_base_url_is_refused(base: str) -> None:
    with pytest.raises(repositories.ConfigurationError):
        repositories.repository_url("master", base)


@pytest.mark.parametrize(
    ("value", "branches"),
    [
        ("master", ["master"]),
        ("master develop", ["master", "develop"]),
        (" master,develop ,  release/1.2 ", ["master", "develop", "release/1.2"]),
        ("develop develop master", ["develop", "master"]),
    ],
)
def test_branches_variable_lists_the_branches_built(value: str, branches: list[str]) -> None:
    assert repositories.parse_branches(value) == branches


@pytest.mark.parametrize("value", [None, "", "   ", "master;rm", "a..b", "-x", "$(id)", "br*"])
def test_branches_variable_refuses_what_is_no_branch_name(value: str | None) -> None:
    with pytest.raises(repositories.ConfigurationError):
        repositories.parse_branches(value)


def test_command_line_prints_the_url_upload_sh_uses() -> None:
    done = subprocess.run(
        [sys.executable, str(AUTOBUILD / "repositories.py"), "url", "feature/x"],
        env={repositories.BASE_URL_VARIABLE: BASE},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"{BASE}snapshots/"


def test_command_line_without_base_url_fails_clearly() -> None:
    done = subprocess.run(
        [sys.executable, str(AUTOBUILD / "repositories.py"), "url", "master"],
        env={},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert repositories.BASE_URL_VARIABLE in done.stderr
