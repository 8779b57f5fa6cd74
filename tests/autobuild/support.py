"""Helpers of the build pipeline's tests: paths, running the step scripts, git repositories.

These tests need the ``autobuild`` extra (buildbot, build, twine, pypiserver, pip-audit).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
AUTOBUILD = REPO / "autobuild"
VERIFY = REPO / "verify"
REPOSITORY_NAMES = ("production", "releases", "develop", "snapshots")


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def tools_env(**extra: str) -> dict[str, str]:
    """The environment of a step script: this interpreter holds the tools (build, twine ...)."""
    env = dict(os.environ)
    env["PGPATCH_TOOLS_PYTHON"] = sys.executable
    env.pop("PGPATCH_BUILD_BRANCH", None)
    env.update(extra)
    return env


def run_script(
    script: Path, *args: str, env: dict[str, str], cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["sh", str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and done.returncode != 0:
        pytest.fail(f"{script.name} {args} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def copy_source_tree(destination: Path) -> Path:
    """The files a build needs, outside this checkout, to make a git repository of."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "hatch_build.py", "README.md", ".gitignore"):
        shutil.copy2(REPO / name, destination / name)
    for folder in ("postgresqlpatches", "autobuild", "verify", "examples"):
        shutil.copytree(
            REPO / folder,
            destination / folder,
            ignore=shutil.ignore_patterns("__pycache__", "venv", "master_root", "reports"),
        )
    return destination


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def make_git_repo(path: Path, branch: str, commit_date: str) -> Path:
    """A one-commit repository of the source tree on ``branch``, committed at ``commit_date``."""
    copy_source_tree(path)
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@localhost",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@localhost",
        GIT_AUTHOR_DATE=commit_date,
        GIT_COMMITTER_DATE=commit_date,
    )
    git(path, "init", "-q", "-b", branch)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "build me", env=env)
    return path
