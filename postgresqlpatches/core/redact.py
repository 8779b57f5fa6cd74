"""Passwords out of everything pgpatch prints: server and psql text can quote them back.

PostgreSQL quotes the statement that failed (psql's ``LINE 1: ...`` context, the server's
``STATEMENT:``), so a ``CREATE ROLE ... PASSWORD '...'`` comes back in an error. Every line
pgpatch logs or prints goes through :func:`redact` at the command line's edge; the places
that turn server text into messages call it too, so library callers get clean messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not searched for: masking every "abc" would mangle the output, and a
password that short is no secret worth the name."""

# PASSWORD 'literal' (also E'...', and one that psql cut off at the end of its context line)
_LITERAL = re.compile(r"(\bPASSWORD\s+)E?'(?:[^'\n]|'')*(?:'|$)", re.IGNORECASE | re.MULTILINE)
# a SCRAM verifier, whole or its start (psql cuts long context lines) ...
_SCRAM_START = re.compile(r"SCRAM-SHA-256\$[^\s']*")
# ... or its end (StoredKey:ServerKey, each the base64 of 32 bytes); and md5 verifiers
_SCRAM_END = re.compile(r"[A-Za-z0-9+/]*={0,2}:[A-Za-z0-9+/]{43}=")
_MD5 = re.compile(r"\bmd5[0-9a-f]{32}\b")
# a connection URI's password (postgresql://user:secret@host) and conninfo's password=secret
_URI_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)",
                                re.IGNORECASE)
# psql's context line of a long statement: "LINE 3: ...text..." cut at either end
_CONTEXT = re.compile(r"^(\s*(?:psql: )?LINE \d+: )(.*)$", re.MULTILINE)


def is_password_variable(name: str) -> bool:
    """``{PREFIX}{ROLE}_PASSWORD``, ``PGPATCH_{ROLE}_PASSWORD``, the original tool's variable
    and libpq's ``PGPASSWORD``: every variable whose value pgpatch treats as a password."""
    return name == "PGPASSWORD" or name.endswith("_PASSWORD")


_REMEMBERED: set[str] = set()
"""Passwords read from libpq's files (the password file, a service file): no variable holds
them, so pg/server.py tells them here as it reads them."""


def remember_password(secret: str) -> None:
    """Mask ``secret`` from now on, in this process (a password read from a file)."""
    if len(secret) >= MIN_SECRET_LENGTH:
        _REMEMBERED.add(secret)


def remembered_passwords() -> set[str]:
    return set(_REMEMBERED)


def known_passwords(environ: Mapping[str, str] | None = None) -> set[str]:
    """The passwords this process was given, to be masked wherever they turn up (not one
    that is its role's own name, as in POSTGRESQL_POSTGRES_PASSWORD=postgres); without
    ``environ``, this process's environment and the passwords read from libpq's files."""
    env = os.environ if environ is None else environ
    given = {v for k, v in env.items() if is_password_variable(k)
             and len(v) >= MIN_SECRET_LENGTH
             and not k.endswith(f"_{v.upper()}_PASSWORD")}  # a role's own name is no secret
    return given | remembered_passwords() if environ is None else given


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with passwords, password literals and verifiers replaced by ``***``.

    ``secrets``: the clear passwords to mask (default: :func:`known_passwords`)."""
    if secrets is None:
        secrets = known_passwords()
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_LENGTH:
            text = text.replace(secret, MASK)
    text = _LITERAL.sub(lambda m: f"{m.group(1)}'{MASK}'", text)
    text = _SCRAM_START.sub(MASK, text)
    text = _SCRAM_END.sub(MASK, text)
    text = _MD5.sub(MASK, text)
    text = _URI_PASSWORD.sub(rf"\1{MASK}@", text)
    text = _CONNINFO_PASSWORD.sub(rf"\1{MASK}", text)
    return _CONTEXT.sub(_cut_context, text)


def _cut_context(m: re.Match[str]) -> str:
    """A context line cut inside a string literal shows only part of it, without the
    PASSWORD keyword that told what it was: mask the part that may be inside the literal."""
    head, body = m.group(1), m.group(2)
    if body.count("'") % 2 == 0:
        return m.group(0)
    if body.startswith("...") and "'" in body:
        body = f"...{MASK}" + body[body.index("'"):]
    if body.endswith("...") and body.count("'") % 2:
        body = body[: body.rindex("'") + 1] + f"{MASK}..."
    return head + body
