"""Shipping: upload.sh puts the wheel in its branch's repository of a real package index on
loopback (pypiserver, with a login), and tag.sh tags the built commit with its version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PackageIndex
from .support import AUTOBUILD, git, make_git_repo, run_script, tools_env

pytest.importorskip("twine")
COMMIT_DATE = "2024-02-29T23:59:58+02:00"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A clone on develop and the wheel autobuild/build.sh made of it."""
    source = make_git_repo(tmp_path_factory.mktemp("clone"), "develop", COMMIT_DATE)
    done = run_script(source / "autobuild" / "build.sh", env=tools_env())
    (wheel,) = (source / "dist").glob("*.whl")
    assert f"wheel: {wheel}" in done.stdout
    return source, wheel


def upload_env(index: PackageIndex, password: str | None = None) -> dict[str, str]:
    return tools_env(
        PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL=index.base_url,
        TWINE_USERNAME=index.username,
        TWINE_PASSWORD=password or index.password,
    )


@pytest.mark.parametrize(
    ("branch", "repository"),
    [("develop", "develop"), ("master", "production"), ("feature/x", "snapshots")],
)
def test_upload_goes_to_the_branch_repository(
    package_index: PackageIndex, built: tuple[Path, Path], branch: str, repository: str
) -> None:
    _, wheel = built
    done = run_script(AUTOBUILD / "upload.sh", str(wheel), branch, env=upload_env(package_index))
    assert package_index.files(repository) == [wheel.name]
    others = [
        name for name in ("production", "releases", "develop", "snapshots") if name != repository
    ]
    assert all(package_index.files(name) == [] for name in others)
    assert package_index.password not in done.stdout + done.stderr


def test_uploaded_wheel_installs_from_the_index(
    package_index: PackageIndex, built: tuple[Path, Path], tmp_path: Path
) -> None:
    _, wheel = built
    run_script(AUTOBUILD / "upload.sh", str(wheel), "develop", env=upload_env(package_index))
    version = wheel.name.split("-")[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path),
         "--index-url", f"{package_index.base_url}develop/simple/",
         f"postgresqlpatches=={version}"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert (tmp_path / wheel.name).read_bytes() == wheel.read_bytes()


def test_upload_with_a_wrong_password_fails_and_prints_no_password(
    package_index: PackageIndex, built: tuple[Path, Path]
) -> None:
    _, wheel = built
    wrong = "wrong-Secret-d41"
    done = run_script(
        AUTOBUILD / "upload.sh", str(wheel), "develop",
        env=upload_env(package_index, wrong), check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert package_index.files("develop") == []
    assert wrong not in done.stdout + done.stderr


def test_upload_on_a_detached_head_needs_the_branch(built: tuple[Path, Path]) -> None:
    source, wheel = built
    git(source, "checkout", "-q", "--detach")
    try:
        done = run_script(
            source / "autobuild" / "upload.sh", str(wheel), env=tools_env(), check=False
        )
    finally:
        git(source, "checkout", "-q", "develop")
    assert done.returncode == 2
    assert "PGPATCH_BUILD_BRANCH" in done.stderr


def test_tag_names_the_built_commit_and_is_pushed(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    source = make_git_repo(tmp_path / "clone", "develop", COMMIT_DATE)
    git(source, "remote", "add", "origin", str(remote))
    version = "0.1.0+20240229215958"
    run_script(source / "autobuild" / "tag.sh", version, env=tools_env())
    head = git(source, "rev-parse", "HEAD")
    assert git(remote, "rev-parse", f"refs/tags/{version}^{{commit}}") == head
    # Again on the same commit (a rebuild): nothing to do, not an error.
    run_script(source / "autobuild" / "tag.sh", version, env=tools_env())


def test_tag_of_a_version_on_another_commit_is_an_error(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "clone", "master", COMMIT_DATE)
    env = tools_env(PGPATCH_TAG_PUSH="0")
    run_script(source / "autobuild" / "tag.sh", "0.1.0", env=env)
    git(
        source,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@l",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "next",
    )
    done = run_script(source / "autobuild" / "tag.sh", "0.1.0", env=env, check=False)
    assert done.returncode == 1
    assert "raise __version__" in done.stderr


@pytest.mark.parametrize("bad", ["", "v1.0", "1.0; rm -rf /", "--delete"])
def test_tag_refuses_what_is_no_version(bad: str, tmp_path: Path) -> None:
    done = run_script(AUTOBUILD / "tag.sh", bad, env=tools_env(PGPATCH_TAG_PUSH="0"), check=False)
    assert done.returncode == 2
