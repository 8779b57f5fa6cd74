"""One exception type for everything a user should see as a clean error line."""

from __future__ import annotations


class PgpatchError(Exception):
    """An error the user can act on: printed as ``error: PATH:LINE: message`` and ``hint: ...``."""

    exit_code = 1
    kind = "error"
    """A stable word for the ``error`` member of ``--format json`` (docs/json.md)."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: str | None = None,
        line: int | None = None,
        sqlstate: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = path
        self.line = line
        self.sqlstate = sqlstate

    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}: " if self.line else f"{self.path}: "

    def __str__(self) -> str:
        code = f" [SQLSTATE {self.sqlstate}]" if self.sqlstate else ""
        return f"{self.location()}{self.message}{code}"


class ConnectionFailed(PgpatchError):
    """The server could not be reached or refused the login."""

    kind = "connection"


class PatchFailed(PgpatchError):
    """A patch raised an error on the server; it was rolled back."""

    kind = "patch-failed"

    dropped_index: str | None = None
    """A failed CREATE INDEX CONCURRENTLY had made this (invalid) index; pgpatch dropped it."""
    left_index: str | None = None
    """... had made this invalid index, and pgpatch could not drop it (``left_reason``)."""
    left_reason: str | None = None


class LockTimeout(PgpatchError):
    """Another pgpatch run held the lock longer than --lock-wait."""

    kind = "lock-timeout"


class SqlSyntaxError(PgpatchError):
    """A patch file does not parse as PostgreSQL SQL; ``line`` says where."""

    kind = "syntax"


class LockLost(PgpatchError):
    """The run's lock ended under it (its session was ended): the run stopped."""

    kind = "lock-lost"


class Interrupted(PgpatchError):
    """Ctrl-C (SIGINT) stopped the command; the message says what became of the patch in
    flight, the hint what the next run does."""

    kind = "interrupted"


class ServerError(PgpatchError):
    """A server or driver error that no step turned into a more specific one (pg/errors.py
    makes it): ``sqlstate`` keeps the server's code, ``text`` the driver's whole message.

    Printed as the one line ``error: the server failed: <first line>``, without the SQLSTATE
    suffix, as such errors always were."""

    kind = "server"

    def __init__(self, reason: str, *, sqlstate: str | None = None, text: str = "") -> None:
        super().__init__(f"the server failed: {reason}", sqlstate=sqlstate)
        self.reason = reason
        self.text = text or reason

    def __str__(self) -> str:
        return self.message
