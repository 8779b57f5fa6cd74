"""Checksums of patch files: what the server executes, not how the file is laid out.

Version 2 (today's) hashes PostgreSQL's own tokens (pglast's scanner), so comments, pgpatch's
directives among them, whitespace between tokens and line endings are not a change; version 1
(records made before it) is the sha256 of the text with line endings normalised. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

CHECKSUM_VERSION = 2
"""The version written with every new record; a record without one has version 1."""

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})


def normalise_line_endings(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def text_checksum(text: str) -> str:
    """Version 1: sha256 of the text with line endings normalised (a CRLF checkout is not a
    change). Cheap: equal text checksums mean equal tokens, so it also spares the scan."""
    return hashlib.sha256(normalise_line_endings(text).encode("utf-8")).hexdigest()


def token_checksum(text: str, *, psql: bool = False) -> str:
    """Version 2: sha256 over the file's tokens as the server reads them.

    ``psql``: the file runs through psql (a 0000 baseline), so its meta-command lines and
    COPY ... FROM STDIN data are part of what runs: they are hashed as lines (see
    docs/safety.md for exactly what counts).
    """
    text = normalise_line_endings(text)
    digest = hashlib.sha256()
    if psql:
        from postgresqlpatches.core.statements import psql_script_parts

        parts: Iterator[tuple[str, str]] = psql_script_parts(text)
    else:
        parts = iter((("sql", text),))
    for kind, part in parts:
        if kind == "sql":
            items = _sql_items(part, psql=psql)
        elif kind == "meta":
            items = iter((("m", " ".join(part.split())),))
        else:  # COPY data: every character is a value
            items = iter((("d", part),))
        for tag, item in items:
            # tag and length first: no two different token lists give the same bytes
            data = item.encode("utf-8")
            digest.update(b"%s%d:" % (tag.encode(), len(data)))
            digest.update(data)
    return digest.hexdigest()


def _sql_items(text: str, *, psql: bool) -> Iterator[tuple[str, str]]:
    """The tokens of SQL text, comments left out, unquoted words folded as the server does.

    Text the scanner refuses (an unterminated quote: `plan` reports it as a syntax error) is
    hashed as it is, so that the checksum is still defined; so is text with a NUL character,
    which the scanner (a C string) would silently cut short.
    """
    import pglast.parser

    try:
        tokens = pglast.parser.scan(text) if "\x00" not in text else None
    except pglast.parser.ParseError:
        tokens = None
    if tokens is None:
        yield "r", text
        return
    previous_end = -2
    previous_colon = False
    for token in tokens:  # character offsets, end inclusive
        if token.name in _COMMENTS:
            continue
        word = text[token.start : token.end + 1]
        # psql's :name, :'name', :"name" variables keep their case: psql's names are exact
        variable = psql and previous_colon and token.start == previous_end + 1
        # a keyword or an unquoted identifier: the server folds its ASCII letters to lower
        # case (as in a UTF-8 database); quoted identifiers and constants stay exact
        unquoted = token.kind != "NO_KEYWORD" or token.name == "IDENT" and word[0] != '"'
        if unquoted and not variable:
            word = word.translate(_ASCII_LOWER)
        previous_colon = word == ":"
        previous_end = token.end
        yield "t", word


def statement_checksum(text: str) -> str:
    """One statement's token checksum: kept for each statement of a non-transactional patch
    that ran, so a resume can tell that a done statement was edited."""
    return token_checksum(text)
