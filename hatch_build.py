"""Build-time version of postgresqlpatches: the release version plus, off master, the commit time.

The release version lives in one place, ``__version__`` in ``postgresqlpatches/__init__.py``.
A build from ``master`` (or ``main``) is that version; a build from any other branch gets a
PEP 440 local label with the UTC time of the commit, ``X.Y.Z+YYYYMMDDHHMMSS``, so every build
that is uploaded and tagged has a version of its own (one per second is enough).

Git is asked at build time only, never when the package is imported. Inside the git tree the
computed version is written to ``VERSION`` and shipped in the sdist; a build outside the tree
(``python -m build`` makes the wheel from the unpacked sdist) reads it back from there.

The branch comes from ``PGPATCH_BUILD_BRANCH`` when set: buildbot checks out a commit, not a
branch, so git itself answers ``HEAD`` there. A detached HEAD with no such variable is not
taken for master.
"""

from __future__ import annotations

import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

RELEASE_BRANCHES = frozenset({"master", "main"})
BRANCH_VARIABLE = "PGPATCH_BUILD_BRANCH"
VERSION_FILE = "VERSION"
BASE_VERSION_FILE = "postgresqlpatches/__init__.py"
_BASE_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


class VersionError(RuntimeError):
    """The version cannot be computed: no git tree and no VERSION file, or a bad base."""


def is_release_branch(branch: str | None) -> bool:
    """Only master (``main`` counts the same) builds the plain release version."""
    if branch is None:
        return False
    name = branch.strip()
    for prefix in ("refs/heads/", "origin/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name in RELEASE_BRANCHES


def local_label(commit_time: int) -> str:
    """``YYYYMMDDHHMMSS`` of a commit's Unix time, in UTC whatever the machine's zone."""
    return datetime.fromtimestamp(commit_time, tz=timezone.utc).strftime("%Y%m%d%H%M%S")


def compute_version(base: str, branch: str | None, commit_time: int) -> str:
    """The version of a build of ``base`` from ``branch`` at a commit made at ``commit_time``."""
    if "+" in base:
        raise VersionError(f"release version {base!r} must not carry a local label")
    if is_release_branch(branch):
        return base
    return f"{base}+{local_label(commit_time)}"


def read_base_version(root: Path) -> str:
    text = (root / BASE_VERSION_FILE).read_text(encoding="utf-8")
    match = _BASE_VERSION.search(text)
    if match is None:
        raise VersionError(f"no __version__ = '...' line in {BASE_VERSION_FILE}")
    return match.group(1)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError:  # no git on this machine: treat as outside a tree
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def in_git_tree(root: Path) -> bool:
    """True only when ``root`` is the top of a work tree (an unpacked sdist inside some other
    repository is not)."""
    top = _git(root, "rev-parse", "--show-toplevel")
    return top is not None and Path(top).resolve() == root.resolve()


def git_branch(root: Path) -> str | None:
    """The branch to version for: the build's own word first, then git's (``None`` if detached)."""
    from_env = os.environ.get(BRANCH_VARIABLE, "").strip()
    if from_env:
        return from_env
    name = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return None if name in (None, "HEAD") else name


def git_commit_time(root: Path) -> int:
    out = _git(root, "log", "-1", "--format=%ct")
    if not out:
        raise VersionError("git has no commit to take the version's time from")
    return int(out)


def resolve_version(root: Path) -> str:
    """Compute the version in a git tree (and write VERSION); read VERSION outside one."""
    version_file = root / VERSION_FILE
    if in_git_tree(root):
        version = compute_version(read_base_version(root), git_branch(root), git_commit_time(root))
        if not version_file.exists() or version_file.read_text().strip() != version:
            version_file.write_text(version + "\n", encoding="utf-8")
        return version
    if version_file.exists():
        return version_file.read_text(encoding="utf-8").strip()
    raise VersionError(
        "not a git work tree and no VERSION file: build from a clone, or from an sdist"
    )


class CommitTimeVersionHook(MetadataHookInterface):
    """``[tool.hatch.metadata.hooks.custom]``: sets ``project.version`` (listed in dynamic)."""

    def update(self, metadata: dict[str, Any]) -> None:
        metadata["version"] = resolve_version(Path(self.root))


class ShipVersionFileHook(BuildHookInterface):
    """``[tool.hatch.build.targets.sdist.hooks.custom]``: put VERSION in the sdist although
    .gitignore names it (it is a build product, never committed)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        path = Path(self.root) / VERSION_FILE
        if not path.exists():  # the metadata hook writes it; a missing one is a bug upstream
            raise VersionError(f"{VERSION_FILE} was not written before the sdist")
        build_data["force_include"][str(path)] = VERSION_FILE
