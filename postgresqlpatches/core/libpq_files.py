"""libpq's own password sources read as libpq reads them: the password file and the service file.

pgpatch hands every connection an explicit password (so that ``PGPASSWORD`` or a service's
password meant for one role is never sent as another's), so it must find the password libpq
would have found itself: these are libpq's rules (``passwordFromFile`` and
``parseServiceInfo`` in fe-connect.c), as pure functions of the files' text.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "localhost"
"""What a password file line's host field is matched against for a connection without a host,
or over the default socket folder."""
DEFAULT_PORT = "5432"
DEFAULT_SOCKET_DIRS = ("/tmp", "/var/run/postgresql", "/run/postgresql")
"""Socket folders libpq builds may default to: a host that names one is matched as localhost."""


@dataclass(frozen=True)
class PassfileMatch:
    password: str
    line: int


def _field_matches(line: str, at: int, value: str) -> int | None:
    """Where the next field starts if the field at ``at`` matches ``value``, else None.

    ``*`` alone matches anything; ``\\`` takes the next character as it is."""
    if line.startswith("*:", at):
        return at + 2
    i, j = at, 0
    while i < len(line) and line[i] != ":":
        if line[i] == "\\" and i + 1 < len(line):
            i += 1
        if j >= len(value) or line[i] != value[j]:
            return None
        i += 1
        j += 1
    if i < len(line) and j == len(value):  # the field ended at its ':' with the whole value
        return i + 1
    return None


def passfile_password(text: str, host: str, port: str, dbname: str,
                      user: str) -> PassfileMatch | None:
    """The first line of a password file that matches, as libpq takes it.

    ``hostname:port:database:username:password``; lines starting with ``#`` are comments;
    the password is the rest of the line up to an unescaped ``:``, its escapes undone."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line or line.startswith("#"):
            continue
        at: int | None = 0
        for value in (host, port, dbname, user):
            at = _field_matches(line, at, value) if at is not None else None
        if at is None:
            continue
        out, i, rest = [], 0, line[at:]
        while i < len(rest) and rest[i] != ":":  # an unescaped ':' ends it, as in libpq
            if rest[i] == "\\" and i + 1 < len(rest):
                i += 1
            out.append(rest[i])
            i += 1
        return PassfileMatch("".join(out), number)
    return None


def passfile_host(host: str | None, hostaddr: str | None) -> str:
    """The host a password file line is matched with: the host (or else the host address)
    given, localhost when none is or when it is the default socket folder."""
    chosen = host or hostaddr
    if not chosen or chosen in DEFAULT_SOCKET_DIRS:
        return DEFAULT_HOST
    return chosen


class ServiceFileError(ValueError):
    """A line libpq refuses too (it fails the connection); the message names the line."""


def service_section(text: str, name: str) -> dict[str, str] | None:
    """The settings of service ``name`` in a service file's text, or None if it has none.

    Lines are stripped of surrounding blanks; ``#`` starts a comment line; ``[name]`` starts a
    section; ``key=value`` (no blanks around ``=`` are removed from the key, as in libpq)."""
    found: dict[str, str] | None = None
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if found is not None:
                return found  # the next section ends ours
            current = line[1:line.index("]")] if "]" in line else line[1:]
            if current == name:
                found = {}
            continue
        if current != name or found is None:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ServiceFileError(f"line {number}: expected key=value")
        if key == "service":
            raise ServiceFileError(f"line {number}: nested service specifications are not "
                                   "supported")
        found.setdefault(key, value)  # an earlier setting wins, as in libpq
    return found
