"""The seam's edge for errors: psycopg's exceptions become the project's own here.

Only pg/ may import psycopg (ruff's banned-api rule), so code outside it never catches a
psycopg class: it wraps a call in ``server_errors()`` (or decorates a function with
``translated``) and catches ``ServerError``, whose ``sqlstate`` it compares with the named
constants below, never with strings of its own.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from postgresqlpatches.errors import ServerError

# SQLSTATEs the code outside pg/ asks about, named as psycopg.errors names their classes
# (a unit test checks each against psycopg.errors.lookup).
DUPLICATE_OBJECT = "42710"
INVALID_PASSWORD = "28P01"
OBJECT_IN_USE = "55006"
INSUFFICIENT_PRIVILEGE = "42501"
LOCK_NOT_AVAILABLE = "55P03"

T = TypeVar("T")


def is_driver_error(e: BaseException) -> bool:
    """A psycopg error, without importing psycopg where nothing did (plan --offline)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(e, psycopg.Error)


def as_server_error(e: BaseException) -> ServerError:
    """The project's error for a driver error: its first line, its SQLSTATE, its text."""
    text = str(e).strip()
    reason = (text.splitlines() or [type(e).__name__])[0]
    return ServerError(reason, sqlstate=getattr(e, "sqlstate", None), text=text)


@contextlib.contextmanager
def server_errors() -> Iterator[None]:
    """Run a block whose driver errors leave it as ``ServerError`` (``from`` the original)."""
    try:
        yield
    except Exception as e:
        if is_driver_error(e):
            raise as_server_error(e) from e
        raise


def translated(func: Callable[..., T]) -> Callable[..., T]:
    """A library entry point (runner.apply, ...) whose driver errors leave as ``ServerError``."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> T:
        with server_errors():
            return func(*args, **kwargs)

    return wrapper
