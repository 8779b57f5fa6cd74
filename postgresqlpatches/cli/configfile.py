"""Finding the config file and turning it into click's defaults (core/config.py checks it).

click looks an option up on the command line, then in its environment variable, then in
the context's ``default_map``, then takes its default: the config file's values go into
``default_map``, so precedence is exactly command line > environment > file > defaults.
libpq's variables (PGHOST, PGPORT) are read by libpq, not by click: a file's ``host`` or
``port`` is left out while its variable is set, so the environment still wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # core/config.py is imported once there is a file to check
    from postgresqlpatches.core.config import Config

CONFIG_FILE = "pgpatch.toml"
PYPROJECT_FILE = "pyproject.toml"

ENVIRONMENT_OF = {"host": "PGHOST", "port": "PGPORT"}
"""File keys whose environment variable libpq reads itself."""


def find_config(start: str) -> str | None:
    """The first ``pgpatch.toml``, or ``pyproject.toml`` with a ``[tool.pgpatch]`` table,
    from ``start`` up to the root: in one folder pgpatch.toml wins, and the search stops at
    the first folder that has a config. A pyproject.toml without the table does not count
    (the search goes on past it, as ruff's does)."""
    folder = os.path.abspath(start)
    while True:
        candidate = os.path.join(folder, CONFIG_FILE)
        if os.path.isfile(candidate):
            return candidate
        candidate = os.path.join(folder, PYPROJECT_FILE)
        if os.path.isfile(candidate) and _has_our_table(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _has_our_table(path: str) -> bool:
    """Whether a pyproject.toml holds [tool.pgpatch]; one that cannot be read or parsed is
    taken as ours only when its text names the table (then load_config says what is wrong)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    if "pgpatch" not in text:
        return False  # no parse for the common case: another tool's pyproject.toml
    from postgresqlpatches.core.config import ConfigError, parse_config

    try:
        return parse_config(text, path, pyproject=True) is not None
    except ConfigError:
        return "[tool.pgpatch" in text or "tool.pgpatch" in text


def load_config(given: str | None, cwd: str | None = None) -> Config | None:
    """The config named by ``--config`` (which replaces the search), else the one found
    from ``cwd`` up; None when there is none. ConfigError (exit 2) names the file."""
    if given is not None:
        from postgresqlpatches.core.config import ConfigError

        path = real = given
        if not os.path.exists(path):
            raise ConfigError("the config file given with --config does not exist", path=path)
    else:
        if cwd is None:
            try:
                cwd = os.getcwd()
            except OSError:  # the working directory was removed: no folder to search
                return None
        found = find_config(cwd)
        if found is None:
            return None
        real, path = found, _shown_path(found, cwd)
    from postgresqlpatches.core.config import ConfigError, parse_config  # a file to check

    try:
        with open(real, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the config file: {e.strerror}", path=path) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("the config file is not valid UTF-8", path=path) from e
    config = parse_config(text, path, pyproject=os.path.basename(path) == PYPROJECT_FILE)
    if config is None:  # --config pyproject.toml without the table
        raise ConfigError("the file has no [tool.pgpatch] table", path=path)
    return config


def _shown_path(path: str, cwd: str) -> str:
    """A found file as messages show it: relative to the working directory (``pgpatch.toml``,
    ``../pgpatch.toml``)."""
    try:
        return os.path.relpath(path, cwd)
    except ValueError:  # another drive on Windows
        return path


def option_defaults(config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
    """The file's option values as click's defaults; host/port only while libpq's variable
    is unset, so that PGHOST/PGPORT still win over the file."""
    return {key: value for key, value in config.options.items()
            if not environ.get(ENVIRONMENT_OF.get(key, ""))}


def patch_globs(config: Config) -> tuple[str, ...]:
    """The file's ``patches`` globs, relative to the file's folder (absolute ones as they are)."""
    folder = os.path.dirname(config.path)
    out = []
    for pattern in config.patches:
        expanded = os.path.expanduser(pattern)
        out.append(expanded if os.path.isabs(expanded) or not folder
                   else os.path.join(folder, expanded))
    return tuple(out)
