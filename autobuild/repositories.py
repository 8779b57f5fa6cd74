"""Which branches the build server builds, and which package repository each one ships to.

Git flow as the seed has it: master ships to ``production``, release to ``releases``, develop
to ``develop``, any other branch to ``snapshots``. ``main`` counts as master, and git flow's
``release/X.Y`` branches as release. The repositories sit under one base URL (Nexus:
``https://python.repo.example/repository/``) taken from the environment.

Used by master.cfg and by upload.sh (``python3 repositories.py url BRANCH``), so the build
server and a developer's hand run cannot disagree.
"""

from __future__ import annotations

import os
import re
import sys

BRANCHES_VARIABLE = "PYTHON_POSTGRESQL_PATCHES_BRANCHES"
BASE_URL_VARIABLE = "PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL"

PRODUCTION = "production"
RELEASES = "releases"
DEVELOP = "develop"
SNAPSHOTS = "snapshots"

_BY_BRANCH = {"master": PRODUCTION, "main": PRODUCTION, "release": RELEASES, "develop": DEVELOP}
# A git branch name as the build server accepts it: no spaces, no shell or glob characters.
_BRANCH_NAME = re.compile(r"^[A-Za-z0-9._/-]+$")


class ConfigurationError(ValueError):
    """The environment does not say what the build server needs to know."""


def repository_name(branch: str) -> str:
    """The repository a build of ``branch`` ships to."""
    if branch in _BY_BRANCH:
        return _BY_BRANCH[branch]
    if branch.startswith("release/"):
        return RELEASES
    return SNAPSHOTS


def repository_url(branch: str, base_url: str) -> str:
    """``base_url`` joined with the branch's repository, ending in ``/`` as twine wants it."""
    if not base_url.strip():
        raise ConfigurationError(f"{BASE_URL_VARIABLE} is empty")
    if not base_url.startswith(("https://", "http://")):
        raise ConfigurationError(f"{BASE_URL_VARIABLE} must be an http(s) URL, not {base_url!r}")
    return f"{base_url.rstrip('/')}/{repository_name(branch)}/"


def parse_branches(value: str | None) -> list[str]:
    """The branches to build: names separated by spaces or commas, in order, no repeats."""
    if value is None or not value.strip():
        raise ConfigurationError(
            f"{BRANCHES_VARIABLE} is not set: name the branches to build, e.g. 'master develop'"
        )
    branches: list[str] = []
    for name in re.split(r"[\s,]+", value.strip()):
        if not name:
            continue
        if not _BRANCH_NAME.match(name) or name.startswith(("-", "/")) or ".." in name:
            raise ConfigurationError(f"{BRANCHES_VARIABLE}: {name!r} is not a branch name")
        if name not in branches:
            branches.append(name)
    return branches


def _main(argv: list[str]) -> int:
    usage = "usage: repositories.py url BRANCH | name BRANCH | branches"
    try:
        if len(argv) == 2 and argv[0] == "url":
            print(repository_url(argv[1], os.environ.get(BASE_URL_VARIABLE, "")))
        elif len(argv) == 2 and argv[0] == "name":
            print(repository_name(argv[1]))
        elif argv == ["branches"]:
            print("\n".join(parse_branches(os.environ.get(BRANCHES_VARIABLE))))
        else:
            print(usage, file=sys.stderr)
            return 2
    except ConfigurationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
