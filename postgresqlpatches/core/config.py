"""The config file (``pgpatch.toml`` or ``[tool.pgpatch]`` in ``pyproject.toml``): text in,
a checked ``Config`` or a ``ConfigError`` out (pure: finding the file is the CLI's job).

The whole file is checked whatever the command, so a typo in a key used by one command
only is found by the next command anyone runs, not on the day that command is needed.

API for other parts (the CLI, targets):

- ``Config.path``: the file, as it is shown in messages.
- ``Config.options``: the top-level keys that stand for command-line options, by the
  option's parameter name (``lock_wait``), values checked and converted (``patches`` is
  not among them: see ``Config.patches``).
- ``Config.patches``: the globs of ``patches``, relative to the file's folder as given.
- ``Config.targets``: ``dict[str, Target]`` in file order.
- ``Config.groups``: ``dict[str, tuple[str, ...]]``, each group's database patterns.
- ``Config.default_targets``: the ``target`` key's names (``()`` when absent).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from postgresqlpatches.core.naming import check_identifier
from postgresqlpatches.errors import PgpatchError

ALL_TARGETS = "all"
"""``-t all`` and ``target = "all"``: every target of the file; so no target is named all."""

LOG_LEVELS = ("debug", "info", "warning", "error")
LINT_MODES = ("error", "warn", "off")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TARGET_SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby",
                        "prefer-standby")
GROUP_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class ConfigError(PgpatchError):
    """The config file cannot be used: a usage error (exit 2), naming the file and key."""

    exit_code = 2


@dataclass(frozen=True)
class Target:
    """One ``[targets.NAME]`` table: a server and how to reach it (never a password)."""

    name: str
    host: str | None = None
    port: int | None = None
    prefix: str | None = None
    """The password variables' prefix for this server (``None``: the common one)."""
    settings: Mapping[str, str | int] = field(default_factory=dict)
    """Other libpq connection settings given (``sslmode``, ``sslrootcert``, ...), by name."""


@dataclass(frozen=True)
class Config:
    """A checked config file; see the module's docstring for what each field holds."""

    path: str
    options: Mapping[str, Any] = field(default_factory=dict)
    patches: tuple[str, ...] = ()
    targets: dict[str, Target] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_targets: tuple[str, ...] = ()


# --- checks of one value: each returns the converted value or raises _Wrong(what is allowed)


class _Wrong(Exception):
    """A value of the wrong type or outside what is allowed; the text says what is."""


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Wrong("a string")
    return value


def _nonempty_string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Wrong("a non-empty string")
    return value


def _host(value: Any) -> str:
    value = _nonempty_string(value)
    if _URI.match(value.strip()) or "=" in value:
        raise _Wrong("a host name, IP address or socket folder, not a connection URI or "
                     "conninfo string (those may carry a password)")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _Wrong("an integer from 1 to 65535")
    return value


def _milliseconds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Wrong("an integer number of milliseconds, 0 or more")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _Wrong("a number of seconds, 0 or more")
    return float(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Wrong("true or false")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _Wrong("one of " + ", ".join(choices))
        return value

    return check


def _state_db(value: Any) -> str:
    value = _string(value)
    reason = check_identifier(value, "state database")
    if reason:
        raise _Wrong(f"a plain database name ({reason})")
    return value


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Wrong("a string or a list of non-empty strings")
    return tuple(value)


def _connect_timeout(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Wrong("an integer number of seconds, 0 or more")
    return value


OPTION_KEYS: dict[str, Callable[[Any], Any]] = {
    "host": _host,
    "port": _port,
    "prefix": _nonempty_string,
    "state_db": _state_db,
    "strict_passwords": _boolean,
    "log_level": _one_of(LOG_LEVELS),
    "lint": _one_of(LINT_MODES),
    "lock_wait": _seconds,
    "lock_timeout": _milliseconds,
    "statement_timeout": _milliseconds,
}
"""Top-level keys that stand for command-line options, named as the options' parameters
(``--lock-wait`` is ``lock_wait``); each command takes those it has."""

OTHER_KEYS = ("patches", "target", "targets", "groups")

TARGET_KEYS: dict[str, Callable[[Any], Any]] = {
    "host": _host,
    "port": _port,
    "prefix": _nonempty_string,
    "sslmode": _one_of(SSLMODES),
    "sslrootcert": _nonempty_string,
    "sslcert": _nonempty_string,
    "sslkey": _nonempty_string,
    "sslcrl": _nonempty_string,
    "connect_timeout": _connect_timeout,
    "target_session_attrs": _one_of(TARGET_SESSION_ATTRS),
}
"""A target's keys: libpq connection settings (same names as libpq's) and ``prefix``."""

GROUP_KEYS = ("databases",)

PASSWORD_KEYS = ("password", "passwd", "pgpassword")


def parse_config(text: str, path: str, *, pyproject: bool = False) -> Config | None:
    """The checked config in ``text`` (the file at ``path``, as shown in messages).

    For a ``pyproject.toml`` only its ``[tool.pgpatch]`` table counts; without one the file
    is no config: None (the search goes on, as ruff's and pytest's do)."""
    if sys.version_info >= (3, 11):  # imported only when there is a file to read
        import tomllib
    else:  # pragma: no cover - Python 3.10 has no tomllib
        import tomli as tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", path=path) from e
    where = ""
    if pyproject:
        tool = data.get("tool")
        if not isinstance(tool, dict) or "pgpatch" not in tool:
            return None
        data = tool["pgpatch"]
        where = "tool.pgpatch."
        if not isinstance(data, dict):
            raise ConfigError("[tool.pgpatch] is not a table", path=path)
    return _check(data, path, where)


def _check(data: dict[str, Any], path: str, where: str) -> Config:
    def fail(message: str) -> ConfigError:
        return ConfigError(message, path=path)

    options: dict[str, Any] = {}
    for key, value in data.items():
        if key in OPTION_KEYS:
            options[key] = _value(OPTION_KEYS[key], value, f"{where}{key}", fail)
        elif key not in OTHER_KEYS:
            raise fail(_unknown(f"{where}{key}", key, [*OPTION_KEYS, *OTHER_KEYS]))
    patches = _value(_strings, data.get("patches", []), f"{where}patches", fail)
    targets = _targets(data.get("targets", {}), where, fail)
    groups = _groups(data.get("groups", {}), where, fail)
    default_targets = _value(_strings, data.get("target", []), f"{where}target", fail)
    for name in default_targets:
        if name != ALL_TARGETS and name not in targets:
            raise fail(f"key '{where}target' names the target {name!r}, which is not "
                       f"defined ({_known_targets(targets)})")
    return Config(path=path, options=options, patches=patches, targets=targets,
                  groups=groups, default_targets=default_targets)


def _value(check: Callable[[Any], Any], value: Any, key: str,
           fail: Callable[[str], ConfigError]) -> Any:
    try:
        return check(value)
    except _Wrong as e:
        raise fail(f"key '{key}' must be {e} (got {_shown(key, value)})") from None


def _shown(key: str, value: Any) -> str:
    """The wrong value as TOML would spell it; a host's is not echoed (it may hold a
    password, as a URI)."""
    if key.rsplit(".", 1)[-1] == "host" and isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unknown(key: str, last: str, known: list[str] | tuple[str, ...]) -> str:
    if last.lower() in PASSWORD_KEYS:
        return (f"key '{key}': passwords never go in the config file; they come from the "
                "environment, {PREFIX}{USER}_PASSWORD (or libpq's pgpass)")
    import difflib

    close = difflib.get_close_matches(last, list(known), n=1)
    guess = f"; did you mean '{close[0]}'?" if close else ""
    return f"key '{key}' is not known (known: {', '.join(known)}){guess}"


def _table(value: Any, key: str, fail: Callable[[str], ConfigError]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(f"key '{key}' must be a table (got {_shown(key, value)})")
    return value


def _name(name: str, key: str, what: str, fail: Callable[[str], ConfigError]) -> None:
    if not GROUP_NAME.match(name):
        raise fail(f"'{key}': the {what} name {name!r} is not a plain name (lower-case "
                   "letters, digits and _, not starting with a digit)")


def _targets(value: Any, where: str, fail: Callable[[str], ConfigError]) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    for name, table in _table(value, f"{where}targets", fail).items():
        key = f"{where}targets.{name}"
        _name(name, key, "target", fail)
        if name == ALL_TARGETS:
            raise fail(f"'{key}': 'all' stands for every target and cannot name one")
        found: dict[str, Any] = {}
        for k, v in _table(table, key, fail).items():
            if k not in TARGET_KEYS:
                raise fail(_unknown(f"{key}.{k}", k, tuple(TARGET_KEYS)))
            found[k] = _value(TARGET_KEYS[k], v, f"{key}.{k}", fail)
        settings = {k: v for k, v in found.items() if k not in ("host", "port", "prefix")}
        targets[name] = Target(name=name, host=found.get("host"), port=found.get("port"),
                               prefix=found.get("prefix"), settings=settings)
    return targets


def _groups(value: Any, where: str,
            fail: Callable[[str], ConfigError]) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for name, table in _table(value, f"{where}groups", fail).items():
        key = f"{where}groups.{name}"
        _name(name, key, "group", fail)
        table = _table(table, key, fail)
        for k in table:
            if k not in GROUP_KEYS:
                raise fail(_unknown(f"{key}.{k}", k, GROUP_KEYS))
        if "databases" not in table:
            raise fail(f"'{key}' has no key 'databases' (a list of database name patterns, "
                       "e.g. [\"tenant_*\"])")
        groups[name] = _value(_strings, table["databases"], f"{key}.databases", fail)
    return groups


def _known_targets(targets: Mapping[str, Target]) -> str:
    if not targets:
        return "the file defines no [targets]"
    return "defined: " + ", ".join(targets)
