"""The buildbot master configuration: ``buildbot checkconfig`` passes, and what it configures
follows the environment (branches, repository, secrets, web UI login)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .support import AUTOBUILD

buildbot_config = pytest.importorskip("buildbot.config.master")
BUILDBOT = Path(sys.executable).parent / "buildbot"

ENVIRONMENT = {
    "PYTHON_POSTGRESQL_PATCHES_BRANCHES": "master develop feature/x",
    "PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL": "https://python.repo.example/repository/",
    "PYTHON_POSTGRESQL_PATCHES_GIT_URL": "https://git.example/pgpatch.git",
    "PYTHON_POSTGRESQL_PATCHES_WWW_USERNAME": "technician",
    "PYTHON_POSTGRESQL_PATCHES_WWW_PASSWORD": "www-Secret-91b",
    "TWINE_USERNAME": "uploader",
    "TWINE_PASSWORD": "twine-Secret-0ad",
    "NEXUS_IQ_USERNAME": "iq",
    "NEXUS_IQ_PASSWORD": "iq-Secret-5f2",
    "POSTGRESQL_POSTGRES_PASSWORD": "pg-Secret-3e9",
}


@pytest.fixture
def master_dir(tmp_path: Path) -> Path:
    """A master directory as setup.sh makes it: master.cfg is a link to autobuild/master.cfg."""
    (tmp_path / "master.cfg").symlink_to(AUTOBUILD / "master.cfg")
    return tmp_path


def checkconfig(master_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    buildbot = str(BUILDBOT) if BUILDBOT.exists() else shutil.which("buildbot")
    assert buildbot, "buildbot is not installed (the autobuild extra)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON_POSTGRESQL_")}
    return subprocess.run(
        [buildbot, "checkconfig", str(master_dir)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(master_dir: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]):  # type: ignore[no-untyped-def]
    for name in list(os.environ):
        if name.startswith("PYTHON_POSTGRESQL_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return buildbot_config.FileLoader(str(master_dir), "master.cfg").loadConfig()


def test_checkconfig_passes(master_dir: Path) -> None:
    done = checkconfig(master_dir, ENVIRONMENT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Config file is good" in done.stdout
    for name, value in ENVIRONMENT.items():
        if name.endswith("PASSWORD"):
            assert value not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "missing",
    [
        "PYTHON_POSTGRESQL_PATCHES_BRANCHES",
        "PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL",
        "PYTHON_POSTGRESQL_PATCHES_WWW_USERNAME",
        "PYTHON_POSTGRESQL_PATCHES_WWW_PASSWORD",
    ],
)
def test_checkconfig_names_a_missing_variable(master_dir: Path, missing: str) -> None:
    env = {k: v for k, v in ENVIRONMENT.items() if k != missing}
    done = checkconfig(master_dir, env)
    assert done.returncode != 0
    assert missing in done.stdout + done.stderr


def test_branches_variable_selects_what_is_polled_and_built(
    master_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load(master_dir, monkeypatch, ENVIRONMENT)
    (poller,) = config.change_sources
    polled = poller._config_kwargs  # a service keeps its arguments until it starts
    assert polled["branches"] == ["master", "develop", "feature/x"]
    repourl = polled.get("repourl", poller._config_args[0] if poller._config_args else None)
    assert repourl == ENVIRONMENT["PYTHON_POSTGRESQL_PATCHES_GIT_URL"]
    branch_filter = config.schedulers["branches"]._config_kwargs["change_filter"]
    assert branch_filter.filter_change(_Change("develop"))
    assert not branch_filter.filter_change(_Change("other"))
    (codebase,) = config.schedulers["force"]._config_kwargs["codebases"]
    (branch,) = [field for field in codebase.fields if field.name == "branch"]
    assert branch.choices == ["master", "develop", "feature/x"]


class _Change:
    def __init__(self, branch: str) -> None:
        self.branch = branch
        self.project = ""
        self.repository = ENVIRONMENT["PYTHON_POSTGRESQL_PATCHES_GIT_URL"]
        self.codebase = ""
        self.category = None
        self.files: list[str] = []
        self.properties: dict[str, object] = {}


def steps_of(config):  # type: ignore[no-untyped-def]
    (builder,) = config.builders
    return [(step.kwargs.get("name"), step) for step in builder.factory.steps]


def test_steps_are_the_seed_pipeline_in_order(
    master_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [name for name, _ in steps_of(load(master_dir, monkeypatch, ENVIRONMENT))]
    assert names == [
        "git-checkout",
        "python-build",
        "version",
        "wheel",
        "install-wheel",
        "postgresql-drop-databases",
        "run-postgresqlpatches",
        "scan-dependencies",
        "twine-upload",
        "git-tag",
    ]


def test_no_step_logs_its_environment(master_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, step in steps_of(load(master_dir, monkeypatch, ENVIRONMENT)):
        assert step.kwargs.get("logEnviron") is False, name


def test_secrets_reach_only_the_steps_that_need_them(
    master_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    util = pytest.importorskip("buildbot.plugins").util
    given = {}
    for name, step in steps_of(load(master_dir, monkeypatch, ENVIRONMENT)):
        env = step.kwargs.get("env") or {}
        given[name] = sorted(k for k, v in env.items() if isinstance(v, util.Secret))
        for key, value in env.items():  # a secret is a buildbot Secret (masked) or removed
            if key.endswith("_PASSWORD"):
                assert value is None or isinstance(value, util.Secret), (name, key)
    assert given["twine-upload"] == ["TWINE_PASSWORD", "TWINE_USERNAME"]
    assert given["scan-dependencies"] == ["NEXUS_IQ_PASSWORD", "NEXUS_IQ_USERNAME"]
    assert given["run-postgresqlpatches"] == ["POSTGRESQL_POSTGRES_PASSWORD"]
    assert given["postgresql-drop-databases"] == ["POSTGRESQL_POSTGRES_PASSWORD"]
    assert given["python-build"] == []
    assert given["git-tag"] == []


def test_web_ui_needs_a_login_and_listens_on_loopback(
    master_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    util = pytest.importorskip("buildbot.plugins").util
    www = load(master_dir, monkeypatch, ENVIRONMENT).www
    assert www["port"] == "tcp:8010:interface=127.0.0.1"
    assert isinstance(www["auth"], util.UserPasswordAuth)
    (rule,) = www["authz"].allowRules
    assert isinstance(rule, util.AnyEndpointMatcher)  # every endpoint, reading included
    assert rule.defaultDeny is True
