"""The version of a build: release version on master, commit time in UTC elsewhere, VERSION file
outside git, and ``pgpatch --version`` of what was installed."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from .support import REPO, git, load_module, make_git_repo, tools_env

pytest.importorskip("hatchling")
pytest.importorskip("build")
hatch_build = load_module(REPO / "hatch_build.py", "pgpatch_hatch_build")

# 2024-02-29 23:59:58 at UTC+2 is 21:59:58 UTC.
COMMIT_DATE = "2024-02-29T23:59:58+02:00"
LABEL = "20240229215958"


def base_version() -> str:
    return hatch_build.read_base_version(REPO)


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("master", "1.2.3"),
        ("main", "1.2.3"),
        ("refs/heads/master", "1.2.3"),
        ("origin/main", "1.2.3"),
        ("develop", f"1.2.3+{LABEL}"),
        ("release", f"1.2.3+{LABEL}"),
        ("feature/master", f"1.2.3+{LABEL}"),
        ("mastermind", f"1.2.3+{LABEL}"),
        (None, f"1.2.3+{LABEL}"),  # detached HEAD, no branch given: never taken for master
    ],
)
def test_version_per_branch(branch: str | None, expected: str) -> None:
    assert hatch_build.compute_version("1.2.3", branch, 1709243998) == expected


def test_local_label_is_utc_whatever_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    assert hatch_build.local_label(1709243998) == LABEL


def test_commits_one_second_apart_get_different_versions() -> None:
    first = hatch_build.compute_version("1.0.0", "develop", 1709243998)
    second = hatch_build.compute_version("1.0.0", "develop", 1709243999)
    assert first != second


def test_label_is_a_pep440_local_version() -> None:
    packaging_version = pytest.importorskip("packaging.version")
    version = packaging_version.Version(hatch_build.compute_version("0.1.0", "x", 1709243998))
    assert version.public == "0.1.0"
    assert version.local == LABEL


def test_release_version_with_a_label_is_refused() -> None:
    with pytest.raises(hatch_build.VersionError):
        hatch_build.compute_version("1.0.0+local", "master", 0)


def test_release_version_is_read_from_the_package() -> None:
    import postgresqlpatches

    assert base_version() == postgresqlpatches.__version__


def build(source: Path, out: Path, **env: str) -> tuple[Path, Path]:
    """``python -m build`` as the build server runs it: sdist, then the wheel from the sdist."""
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        env=tools_env(**env),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def wheel_version(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        for line in archive.read(metadata).decode().splitlines():
            if line.startswith("Version: "):
                return line.removeprefix("Version: ")
    raise AssertionError("no Version in METADATA")


def test_master_build_is_the_release_version(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "src", "master", COMMIT_DATE)
    sdist, wheel = build(source, tmp_path / "dist", TZ="America/New_York")
    assert wheel_version(wheel) == base_version()
    assert wheel.name == f"postgresqlpatches-{base_version()}-py3-none-any.whl"
    assert (source / "VERSION").read_text().strip() == base_version()


def test_branch_build_carries_the_commit_time_in_utc(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "src", "feature/x", COMMIT_DATE)
    sdist, wheel = build(source, tmp_path / "dist", TZ="Asia/Tokyo")
    expected = f"{base_version()}+{LABEL}"
    assert wheel_version(wheel) == expected
    with tarfile.open(sdist) as archive:  # the sdist carries it for builds outside git
        member = archive.extractfile(f"postgresqlpatches-{expected}/VERSION")
        assert member is not None and member.read().decode().strip() == expected


def test_detached_checkout_takes_the_branch_from_the_build(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "src", "master", COMMIT_DATE)
    git(source, "checkout", "-q", "--detach")
    _, wheel = build(tmp_path / "src", tmp_path / "d1", PGPATCH_BUILD_BRANCH="master")
    assert wheel_version(wheel) == base_version()
    _, wheel = build(tmp_path / "src", tmp_path / "d2")  # no word from the build: a snapshot
    assert wheel_version(wheel) == f"{base_version()}+{LABEL}"


def test_build_outside_git_reads_version_file(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "src", "develop", COMMIT_DATE)
    sdist, _ = build(source, tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    # Even told it is master, a tree without git keeps the version it was given.
    _, wheel = build(unpacked, tmp_path / "again", PGPATCH_BUILD_BRANCH="master")
    assert wheel_version(wheel) == f"{base_version()}+{LABEL}"


def test_build_outside_git_without_version_file_fails(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "src", "develop", COMMIT_DATE)
    subprocess.run(["rm", "-rf", str(source / ".git"), str(source / "VERSION")], check=True)
    with pytest.raises(subprocess.CalledProcessError) as failed:
        build(source, tmp_path / "dist")
    assert "no VERSION file" in failed.value.stderr + failed.value.stdout


def test_pgpatch_version_shows_the_installed_build(tmp_path: Path) -> None:
    source = make_git_repo(tmp_path / "src", "develop", COMMIT_DATE)
    _, wheel = build(source, tmp_path / "dist")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "postgresqlpatches", "--version"],
        cwd=tmp_path,
        env=tools_env(PYTHONPATH=str(target)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == f"pgpatch {base_version()}+{LABEL}"
