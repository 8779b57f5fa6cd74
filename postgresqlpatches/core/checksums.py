"""Checksums of patch files: what the server executes, not how the file is laid out.

Version 2 (today's) hashes PostgreSQL's own tokens (pglast's scanner), so comments, pgpatch's
directives among them, whitespace between tokens and line endings are not a change; version 1
(records made before it) is the sha256 of the text with line endings normalised. Pure.
"""

from __future__ import annotations

import hashlib

CHECKSUM_VERSION = 2
"""The version written with every new record; a record without one has version 1."""

_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_TOKEN_HEADS = tuple(b"t%d:" % n for n in range(256))
"""A token's tag and length, made once: formatting them for every token cost a third of the
loop."""


def normalise_line_endings(text: str) -> str:
    if "\r" not in text:  # the common case: no copy
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_checksum(text: str) -> str:
    """Version 1: sha256 of the text with line endings normalised (a CRLF checkout is not a
    change). Cheap: equal text checksums mean equal tokens, so it also spares the scan."""
    return hashlib.sha256(normalise_line_endings(text).encode("utf-8")).hexdigest()


def token_checksum(text: str, *, psql: bool = False) -> str:
    """Version 2: sha256 over the file's tokens as the server reads them.

    Each item is hashed as its tag, its length in UTF-8 bytes, a colon and its bytes, so no
    two different token lists give the same bytes. ``psql``: the file runs through psql (a
    0000 baseline), so its meta-command lines and COPY ... FROM STDIN data are part of what
    runs: they are hashed as lines (see docs/safety.md for exactly what counts).
    """
    text = normalise_line_endings(text)
    digest = hashlib.sha256()
    if not psql:
        digest.update(_sql_bytes(text, psql=False))
        return digest.hexdigest()
    from postgresqlpatches.core.statements import psql_script_parts

    for kind, part in psql_script_parts(text):
        if kind == "sql":
            digest.update(_sql_bytes(part, psql=True))
            continue
        # a meta-command's words, or COPY data (every character is a value)
        data = (" ".join(part.split()) if kind == "meta" else part).encode("utf-8")
        digest.update(b"%s%d:" % (b"m" if kind == "meta" else b"d", len(data)))
        digest.update(data)
    return digest.hexdigest()


def _sql_bytes(text: str, *, psql: bool) -> bytes:
    """The hashed bytes of SQL text's tokens, comments left out, unquoted words folded as the
    server does.

    Text the scanner refuses (an unterminated quote: `plan` reports it as a syntax error) is
    hashed as it is, so that the checksum is still defined; so is text with a NUL character,
    which the scanner (a C string) would silently cut short.

    One pass over the scanner's tokens, as every patch that runs is checksummed: ASCII text
    (nearly every file) is sliced as bytes, whose offsets are then the scanner's character
    offsets; ``bytes.lower`` folds ASCII letters only, as the server does.
    """
    import pglast.parser

    try:
        tokens = pglast.parser.scan(text) if "\x00" not in text else None
    except pglast.parser.ParseError:
        tokens = None
    if tokens is None:
        data = text.encode("utf-8")
        return b"r%d:" % len(data) + data
    ascii_only = text.isascii()
    source: str | bytes = text.encode("ascii") if ascii_only else text
    out: list[bytes] = []
    append = out.append
    previous_end = -2
    previous_colon = False
    for start, end, name, kind in tokens:  # character offsets, end inclusive
        if name in _COMMENTS:
            continue
        word = source[start : end + 1]
        if not ascii_only:
            word = word.encode("utf-8")  # type: ignore[union-attr]
        # a keyword or an unquoted identifier (not starting with a double quote, 34): the
        # server folds its ASCII letters to lower case (as in a UTF-8 database); quoted
        # identifiers and constants stay exact; psql's :name, :'name', :"name" variables
        # keep their case: psql's names are exact
        if (kind != "NO_KEYWORD" or name == "IDENT" and word[0] != 34) and not (
                psql and previous_colon and start == previous_end + 1):
            word = word.lower()
        previous_colon = word == b":"
        previous_end = end
        size = len(word)
        append(_TOKEN_HEADS[size] if size < 256 else b"t%d:" % size)
        append(word)
    return b"".join(out)


def statement_checksum(text: str) -> str:
    """One statement's token checksum: kept for each statement of a non-transactional patch
    that ran, so a resume can tell that a done statement was edited."""
    return token_checksum(text)
