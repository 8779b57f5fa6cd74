"""A patch file as statements: where each starts, what it is, whether it may run in a transaction.

Pure: text in, values out. PostgreSQL's own parser (through pglast) decides what a statement
is, so a semicolon inside a string, a comment or a function body never splits one. The file
is parsed once; the raw parse tree of each statement rides along for the linter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from postgresqlpatches.errors import SqlSyntaxError

EXPLICIT_TRANSACTION_CONTROL = "explicit transaction control"
"""The reason given for BEGIN/COMMIT/ROLLBACK/...: the caller decides what to do with those."""


@dataclass(frozen=True)
class Statement:
    """One statement of a file, located by the line and character offset where its SQL starts."""

    text: str
    line: int
    start: int
    kind: str
    non_transactional: str | None = None
    tree: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The statement's raw parse tree (pglast JSON form), so nothing parses twice."""


@dataclass(frozen=True)
class MetaCommand:
    """A psql backslash command: only psql can run it, so it is refused outside baselines."""

    line: int
    command: str


@dataclass(frozen=True)
class ParsedSql:
    statements: tuple[Statement, ...]
    meta_commands: tuple[MetaCommand, ...]

    @property
    def non_transactional(self) -> tuple[Statement, ...]:
        """Statements PostgreSQL refuses inside a transaction block (not BEGIN/COMMIT/...)."""
        return tuple(
            s
            for s in self.statements
            if s.non_transactional and s.non_transactional != EXPLICIT_TRANSACTION_CONTROL
        )

    @property
    def transaction_control(self) -> tuple[Statement, ...]:
        """BEGIN, COMMIT, ROLLBACK, ... written in the file: they fight the runner's transaction."""
        return tuple(
            s for s in self.statements if s.non_transactional == EXPLICIT_TRANSACTION_CONTROL
        )


def line_of(text: str, offset: int) -> int:
    """The 1-based line of a character offset (a server error position maps through this)."""
    return text.count("\n", 0, max(offset, 0)) + 1


def parse_sql(text: str) -> ParsedSql:
    """Split and classify a file's statements, after looking for psql meta-commands.

    A file with meta-commands is meant for psql: they are returned, and the statements are a
    best effort (the meta-command lines blanked out; empty if the rest still does not parse).
    Otherwise a syntax error raises `SqlSyntaxError` with the line it is on.
    """
    found, data = _scan_psql(text)
    meta = tuple(MetaCommand(line, command) for _, _, line, command in found)
    if meta or data:
        blanked = _blank(text, sorted([(start, end) for start, end, _, _ in found] + data))
        try:
            statements = _parse_statements(blanked)
        except SqlSyntaxError:
            if not meta:
                raise
            statements = ()
        # Offsets and lines are unchanged by blanking; the text is the file's own.
        statements = tuple(_with_text_from(s, text) for s in statements)
        return ParsedSql(statements, meta)
    return ParsedSql(_parse_statements(text), ())


def find_meta_commands(text: str) -> tuple[MetaCommand, ...]:
    """psql meta-commands: a backslash outside strings, quoted identifiers and comments."""
    found, _ = _scan_psql(text)
    return tuple(MetaCommand(line, command) for _, _, line, command in found)


def meta_command_spans(text: str) -> list[tuple[int, int, int, str]]:
    """Each meta-command as (start, end of its line, line, command), for running a script
    as psql reads it (core/own_patches.py)."""
    return _scan_psql(text)[0]


# --- what a bootstrap script may do outside its own statements --------------------------------

_INCLUDES = frozenset({"\\i", "\\ir", "\\include", "\\include_relative", "\\!"})
_MAY_PIPE = frozenset({"\\o", "\\out", "\\w", "\\write", "\\g", "\\gx", "\\copy"})


def connect_budget(text: str) -> int | None:
    """How many sessions psql may open while running ``text``, beyond its first one: one per
    \\connect; None when it may run more than the file shows (an include or a shell command).

    A bootstrap's marks keep this, so the next run can tell the sessions its interrupted
    baseline opened from someone else's (docs/safety.md)."""
    count = 0
    for start, end, _, name in _scan_psql(text)[0]:
        line = text[start:end]
        if name in _INCLUDES or (name in _MAY_PIPE and ("|" in line
                                                        or "program" in line.lower())):
            return None
        if name in ("\\c", "\\connect"):
            count += 1
    return count


_NAME_KEYWORDS = ("UNRESERVED_KEYWORD", "COL_NAME_KEYWORD", "TYPE_FUNC_NAME_KEYWORD")


def created_role_names(text: str) -> frozenset[str]:
    """The roles a script creates by name (CREATE ROLE/USER/GROUP name), as PostgreSQL folds
    them; a role whose name is computed (a psql variable, EXECUTE format(...)) is not among
    them. A failed bootstrap drops only roles that are both new and named here."""
    import pglast.parser

    meta, data = _scan_psql(text)  # rows after COPY ... FROM STDIN are no SQL either
    blanked = _blank(text, sorted([(start, end) for start, end, _, _ in meta] + data))
    try:
        tokens = pglast.parser.scan(blanked)
    except pglast.parser.ParseError:
        return frozenset()
    words = [t for t in tokens if t.name not in ("SQL_COMMENT", "C_COMMENT")]
    names = set()
    for i, first in enumerate(words[:-2]):
        what, name = words[i + 1], words[i + 2]
        if first.name != "CREATE" or what.name not in ("ROLE", "USER", "GROUP_P"):
            continue
        if what.name == "USER" and name.name == "MAPPING" and i + 3 < len(words) \
                and words[i + 3].name in ("FOR", "IF_P"):
            continue  # CREATE USER MAPPING
        word = blanked[name.start:name.end + 1]
        if name.name == "IDENT" and word.startswith('"'):
            names.add(word[1:-1].replace('""', '"'))
        elif name.name == "IDENT" or name.kind in _NAME_KEYWORDS:
            names.add(word.lower())
    return frozenset(names)


# --- statements ---------------------------------------------------------------------------


def _parse_statements(text: str) -> tuple[Statement, ...]:
    import pglast.parser

    if "\x00" in text:
        # libpg_query reads a C string: everything after a NUL would silently vanish.
        raise SqlSyntaxError(
            "the file contains a NUL character", line=line_of(text, text.index("\x00"))
        )
    try:
        raw = pglast.parser.parse_sql_json(text)
    except pglast.parser.ParseError as e:
        # pglast reports the error position as a 0-based character index (not bytes).
        index = e.args[1] if len(e.args) > 1 else None
        line = line_of(text, index) if index is not None else None
        raise SqlSyntaxError(e.args[0], line=line) from e
    stmts = json.loads(raw).get("stmts", [])
    return tuple(_located(text, stmts))


def _located(text: str, stmts: list[dict[str, Any]]) -> Iterator[Statement]:
    """Turn libpg_query's byte offsets into character offsets and lines, in one pass."""
    ascii_only = text.isascii()
    utf8 = b"" if ascii_only else text.encode("utf-8")
    byte_pos = char_pos = 0  # a known pair of equal positions, moving forward
    line_pos, line = 0, 1
    for raw in stmts:
        begin = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0)
        if ascii_only:
            char_begin = begin
            char_end = begin + length if length else len(text)
        else:
            char_begin = char_pos + len(utf8[byte_pos:begin].decode("utf-8"))
            if length:
                char_end = char_begin + len(utf8[begin : begin + length].decode("utf-8"))
            else:
                char_end = len(text)
            byte_pos, char_pos = begin, char_begin
        start = _skip_space_and_comments(text, char_begin, char_end)
        line += text.count("\n", line_pos, start)
        line_pos = start
        ((kind, node),) = raw["stmt"].items()
        yield Statement(
            text=text[start:char_end].rstrip(),
            line=line,
            start=start,
            kind=kind,
            non_transactional=_non_transactional_reason(kind, node),
            tree=node,
        )


_SPACE_OR_LINE_COMMENT = re.compile(r"(?:\s+|--[^\n]*)*")


def _skip_space_and_comments(text: str, pos: int, end: int) -> int:
    """The first position at or after `pos` that is neither whitespace nor a comment."""
    while True:
        pos = _SPACE_OR_LINE_COMMENT.match(text, pos, end).end()
        if not text.startswith("/*", pos):
            return pos
        pos = _end_of_block_comment(text, pos)
        if pos >= end:
            return end


def _end_of_block_comment(text: str, pos: int) -> int:
    """Where a /* comment */ starting at `pos` ends; PostgreSQL's block comments nest."""
    depth = 0
    for m in _BLOCK_COMMENT_MARK.finditer(text, pos):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return len(text)


_BLOCK_COMMENT_MARK = re.compile(r"/\*|\*/")


def _with_text_from(statement: Statement, text: str) -> Statement:
    end = statement.start + len(statement.text)
    return Statement(
        text[statement.start : end],
        statement.line,
        statement.start,
        statement.kind,
        statement.non_transactional,
        statement.tree,
    )


# --- what cannot run inside a transaction block --------------------------------------------

_TRANSACTION_CONTROL = frozenset(
    {
        "TRANS_STMT_BEGIN",
        "TRANS_STMT_START",
        "TRANS_STMT_COMMIT",
        "TRANS_STMT_ROLLBACK",
        "TRANS_STMT_PREPARE",
    }
)
_ALWAYS_OUTSIDE = {
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    # Only when the subscription has a replication slot, which the file alone cannot tell.
    "DropSubscriptionStmt": "DROP SUBSCRIPTION (with a replication slot)",
}
_FALSE_WORDS = frozenset({"false", "off", "no", "0"})


def _option(options: list[dict[str, Any]] | None, name: str, default: bool) -> bool:
    """A boolean option from a list of DefElem nodes, read the way PostgreSQL reads it."""
    for item in options or ():
        elem = item.get("DefElem", {})
        if elem.get("defname") != name:
            continue
        arg = elem.get("arg")
        if arg is None:
            return True
        if "Boolean" in arg:
            return bool(arg["Boolean"].get("boolval", False))
        if "Integer" in arg:
            return bool(arg["Integer"].get("ival", 0))
        if "String" in arg:
            return arg["String"].get("sval", "").lower() not in _FALSE_WORDS
        if "TypeName" in arg:  # a bare word that is not a keyword, e.g. `off`
            names = arg["TypeName"].get("names") or [{}]
            return names[-1].get("String", {}).get("sval", "").lower() not in _FALSE_WORDS
        return True
    return default


def _non_transactional_reason(kind: str, node: Mapping[str, Any]) -> str | None:
    """Why PostgreSQL would refuse this statement inside a transaction block, if it would.

    Mirrors the server's PreventInTransactionBlock() calls. ALTER TYPE ... ADD VALUE is
    transactional since PostgreSQL 12, the oldest server we care about, so it is not here.
    """
    if kind in _ALWAYS_OUTSIDE:
        return _ALWAYS_OUTSIDE[kind]
    if kind == "TransactionStmt":
        tx = node.get("kind")
        if tx in _TRANSACTION_CONTROL:
            return EXPLICIT_TRANSACTION_CONTROL
        if tx == "TRANS_STMT_COMMIT_PREPARED":
            return "COMMIT PREPARED"
        if tx == "TRANS_STMT_ROLLBACK_PREPARED":
            return "ROLLBACK PREPARED"
        return None  # SAVEPOINT, RELEASE, ROLLBACK TO work inside the runner's transaction
    if kind == "IndexStmt" and node.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and node.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt":
        if _option(node.get("params"), "concurrently", False):
            return "REINDEX CONCURRENTLY"
        what = node.get("kind", "")
        if what in ("REINDEX_OBJECT_SCHEMA", "REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
            return "REINDEX " + what.removeprefix("REINDEX_OBJECT_")
        return None
    if kind == "VacuumStmt":
        return "VACUUM" if node.get("is_vacuumcmd") else None  # ANALYZE alone is fine
    if kind == "ClusterStmt":
        return None if node.get("relation") else "CLUSTER without a table name"
    if kind == "CreateSubscriptionStmt":
        options = node.get("options")
        if _option(options, "connect", True) and _option(options, "create_slot", True):
            return "CREATE SUBSCRIPTION (creates a replication slot)"
        return None
    if kind == "AlterSubscriptionStmt":
        what = node.get("kind", "")
        if what == "ALTER_SUBSCRIPTION_REFRESH":
            return "ALTER SUBSCRIPTION ... REFRESH PUBLICATION"
        if what.endswith("_PUBLICATION") and _option(node.get("options"), "refresh", True):
            return "ALTER SUBSCRIPTION ... PUBLICATION with refresh"
        return None
    if kind == "AlterDatabaseStmt":
        names = {o.get("DefElem", {}).get("defname") for o in node.get("options") or ()}
        return "ALTER DATABASE SET TABLESPACE" if "tablespace" in names else None
    if kind == "DiscardStmt":
        return "DISCARD ALL" if node.get("target") == "DISCARD_ALL" else None
    if kind == "AlterTableStmt":
        for cmd in node.get("cmds") or ():
            at = cmd.get("AlterTableCmd", {})
            if at.get("subtype") == "AT_DetachPartition" and at.get("def", {}).get(
                "PartitionCmd", {}
            ).get("concurrent"):
                return "DETACH PARTITION CONCURRENTLY"
        return None
    return None


# --- what only a new session undoes ---------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    """Why the next patch needs a new connection: DISCARD ALL, which pgpatch sends after every
    patch, gives back every setting, role, temp table, prepared statement, cursor, LISTEN and
    session lock, but not what the server reads only at login."""

    reason: str
    every_connection: bool
    """Role or database defaults changed: every session kept for the run, not only this one."""


# Role and database DDL: session defaults (ALTER ROLE/DATABASE ... SET), role attributes and
# memberships, names. A login reads them; a session that is already open keeps what it read.
_LOGIN_STATE = {
    "AlterRoleSetStmt": "ALTER ROLE ... SET",
    "AlterDatabaseSetStmt": "ALTER DATABASE ... SET",
    "AlterRoleStmt": "ALTER ROLE",
    "CreateRoleStmt": "CREATE ROLE",
    "DropRoleStmt": "DROP ROLE",
    "GrantRoleStmt": "GRANT/REVOKE of a role",
    "AlterDatabaseStmt": "ALTER DATABASE",
}
_RENAMED_AT_LOGIN = frozenset({"OBJECT_ROLE", "OBJECT_DATABASE"})
# In a DO block's text (dynamic SQL included, when it is written out there).
_DO_LOGIN_STATE = re.compile(r"\b(?:role|user|database)\b", re.IGNORECASE)
# LOAD, SET of a custom setting, set_config() of one (or of a name that is not a constant)
_DO_THIS_SESSION = re.compile(
    r"\bload\b|\bset\s+(?:session\s+|local\s+)?\"?[a-z_][\w$]*\"?\s*\."
    r"|\bset_config\s*\((?!\s*'[^'.]*'\s*,)", re.IGNORECASE)


_TEMP_RELATION = {
    "CreateStmt": ("relation",), "CreateTableAsStmt": ("into", "rel"), "ViewStmt": ("view",),
    "CreateSeqStmt": ("sequence",), "SelectStmt": ("intoClause", "rel"),
}
DISCARD_TEMP = Statement("DISCARD TEMP", 0, 0, "DiscardStmt")
"""Sent as the last statement of a patch that makes temp objects: they go with the patch's
own commit, so the DISCARD ALL behind it has nothing to drop (dropping them there would be a
commit of its own, a WAL flush per such patch)."""


def creates_temp_objects(statements: Sequence[Statement]) -> bool:
    """A CREATE TEMP TABLE / VIEW / SEQUENCE, CREATE TEMP TABLE AS or SELECT INTO TEMP."""
    for s in statements:
        path = _TEMP_RELATION.get(s.kind)
        if path is None:
            continue
        node: Any = s.tree
        for key in path:
            node = node.get(key) or {} if isinstance(node, Mapping) else {}
        if isinstance(node, Mapping) and node.get("relpersistence") == "t":
            return True
    return False


def new_session_needed(statements: Sequence[Statement]) -> NewSession | None:
    """Whether these statements may leave what DISCARD ALL does not reset (None: it does).

    Read from the statements and the text of DO blocks: what a function, procedure or trigger
    runs out of sight is not seen (docs/safety.md says so). Cheap enough to run per patch:
    a set lookup per statement, a text search only where one can matter.
    """
    found: NewSession | None = None
    for s in statements:
        kind, tree = s.kind, s.tree
        if kind in _LOGIN_STATE:
            return NewSession(_LOGIN_STATE[kind], every_connection=True)
        if kind == "RenameStmt" and tree.get("renameType") in _RENAMED_AT_LOGIN:
            return NewSession("a role or database renamed", every_connection=True)
        if kind == "DoStmt":
            body = " ".join(str(_string(a)) for a in tree.get("args") or ())
            if _DO_LOGIN_STATE.search(body):
                return NewSession("a DO block that names a role, user or database",
                                  every_connection=True)
            if _DO_THIS_SESSION.search(body):
                found = found or NewSession("a DO block that may set a custom setting or "
                                            "load a library", every_connection=False)
        elif kind == "LoadStmt":
            found = found or NewSession("LOAD", every_connection=False)
        elif kind == "VariableSetStmt" and "." in (tree.get("name") or ""):
            # a custom setting (app.tenant) once set stays known: RESET leaves it '', a new
            # session does not know it (current_setting(name, true) is NULL)
            found = found or NewSession(f"custom setting {tree['name']}",
                                        every_connection=False)
        elif "set_config" in s.text.lower() and _sets_custom_setting(tree):
            found = found or NewSession("set_config() of a custom setting",
                                        every_connection=False)
    return found


def _string(node: Mapping[str, Any]) -> str:
    """The text of a DefElem's String argument (a DO block's body or language)."""
    arg = node.get("DefElem", {}).get("arg") or {}
    return arg.get("String", {}).get("sval", "")


def _sets_custom_setting(node: Any) -> bool:
    """A set_config() call whose name has a dot, or is not a constant (so it might)."""
    if isinstance(node, list):
        return any(_sets_custom_setting(n) for n in node)
    if not isinstance(node, dict):
        return False
    call = node.get("FuncCall")
    if call is not None:
        names = call.get("funcname") or [{}]
        if names[-1].get("String", {}).get("sval") == "set_config":
            args = call.get("args") or [{}]
            name = args[0].get("A_Const", {}).get("sval", {}).get("sval")
            if name is None or "." in name:
                return True
    return any(_sets_custom_setting(v) for v in node.values() if isinstance(v, (dict, list)))
# --- transaction modes written in a file ------------------------------------------------------

TRANSACTION_MODES = frozenset({
    "ISOLATION LEVEL SERIALIZABLE", "ISOLATION LEVEL REPEATABLE READ",
    "ISOLATION LEVEL READ COMMITTED", "ISOLATION LEVEL READ UNCOMMITTED",
    "READ ONLY", "READ WRITE", "DEFERRABLE", "NOT DEFERRABLE",
})
"""Every transaction mode PostgreSQL has, as SQL: the only words pgpatch puts into a BEGIN."""

_MODE_WORDS = {
    "transaction_read_only": ("READ WRITE", "READ ONLY"),
    "transaction_deferrable": ("NOT DEFERRABLE", "DEFERRABLE"),
}


def transaction_modes(statement: Statement) -> tuple[tuple[str, str], ...] | None:
    """The modes a BEGIN / START TRANSACTION or a SET TRANSACTION sets, as (setting, mode)
    pairs with each mode from TRANSACTION_MODES; None for any other statement.

    Read from the parse tree, so ``begin isolation level serializable, read only`` and
    ``SET TRANSACTION READ ONLY ISOLATION LEVEL SERIALIZABLE`` give the same modes.
    """
    node = statement.tree
    if statement.kind == "TransactionStmt" and node.get("kind") in (
            "TRANS_STMT_BEGIN", "TRANS_STMT_START"):
        options = node.get("options") or ()
    elif statement.kind == "VariableSetStmt" and node.get("kind") == "VAR_SET_MULTI" \
            and node.get("name") == "TRANSACTION":
        options = node.get("args") or ()
    else:
        return None
    modes = []
    for item in options:
        elem = item.get("DefElem", {})
        name = elem.get("defname", "")
        const = elem.get("arg", {}).get("A_Const", {})
        if name == "transaction_isolation":
            mode = "ISOLATION LEVEL " + const.get("sval", {}).get("sval", "").upper()
        elif name in _MODE_WORDS:
            mode = _MODE_WORDS[name][bool(const.get("ival", {}).get("ival", 0))]
        else:
            mode = ""
        if mode not in TRANSACTION_MODES:  # the grammar allows no other: never guess
            raise SqlSyntaxError(f"unknown transaction mode {name}", line=statement.line)
        modes.append((name, mode))
    return tuple(modes)


# --- psql meta-commands ---------------------------------------------------------------------

# What can start something a backslash inside must not be mistaken in: the same lexical rules
# as psql's own scanner (standard_conforming_strings on, as it is by default).
_OPENER = re.compile(
    r"""
      (?P<line_comment>--)
    | (?P<block_comment>/\*)
    | (?P<escape_string>(?<![\w$])[eE]')
    | (?P<string>')
    | (?P<identifier>")
    | (?P<dollar>(?<![\w$])\$(?:[^\W\d]\w*)?\$)
    | (?P<backslash>\\)
    | (?P<semicolon>;)
    """,
    re.VERBOSE,
)
_CLOSER = {
    "string": re.compile(r"(?:[^']|'')*'"),
    "escape_string": re.compile(r"(?:[^'\\]|\\.|'')*'", re.DOTALL),
    "identifier": re.compile(r'(?:[^"]|"")*"'),
}
_COMMAND_NAME = re.compile(r"\\(?:[A-Za-z][\w]*\+?|[^\s\w])?")


_COPY_FROM_STDIN = re.compile(r"copy\b.*\bfrom\s+stdin\b", re.IGNORECASE | re.DOTALL)
_END_OF_COPY_DATA = re.compile(r"^\\\.[ \t\r]*$", re.MULTILINE)
_META_COPY_FROM_STDIN = re.compile(r"\\copy\b.*\bfrom\s+stdin\b", re.IGNORECASE)


def _scan_psql(text: str) -> tuple[list[tuple[int, int, int, str]], list[tuple[int, int]]]:
    """psql's view of a file: its meta-commands as (start, end of line, line, command), and
    the spans of rows given inline after a ``COPY ... FROM STDIN`` (up to a ``\\.`` line or
    the end of the file), which are data, neither SQL nor meta-commands."""
    meta: list[tuple[int, int, int, str]] = []
    data: list[tuple[int, int]] = []
    if "\\" not in text and "stdin" not in text.lower():  # the common case: C-speed searches
        return meta, data
    pos, line_pos, line, statement_start = 0, 0, 1, 0
    while (m := _OPENER.search(text, pos)) is not None:
        what = m.lastgroup
        if what == "semicolon":
            pos = m.end()
            start = _skip_space_and_comments(text, statement_start, m.start())
            statement_start = pos
            if not _COPY_FROM_STDIN.match(text, start, m.start()):
                continue
            # psql sends the COPY, then reads its rows from the lines after it
            newline = text.find("\n", pos)
            if newline < 0:
                continue
            end = _END_OF_COPY_DATA.search(text, newline + 1)
            stop = end.end() if end else len(text)
            data.append((newline + 1, stop))
            pos = statement_start = stop
        elif what == "backslash":
            start = m.start()
            line += text.count("\n", line_pos, start)
            line_pos = start
            name = _COMMAND_NAME.match(text, start).group()
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            meta.append((start, end, line, name))
            pos = end  # psql reads the rest of the line as the command's arguments
            statement_start = end
            copy_in = name == "\\copy" and _META_COPY_FROM_STDIN.match(text, start, end)
            if copy_in and end < len(text):
                stop = _END_OF_COPY_DATA.search(text, end + 1)
                stop_at = stop.end() if stop else len(text)
                data.append((end + 1, stop_at))
                pos = statement_start = stop_at
        elif what == "line_comment":
            end = text.find("\n", m.end())
            pos = len(text) if end < 0 else end
        elif what == "block_comment":
            pos = _end_of_block_comment(text, m.start())
        elif what == "dollar":
            end = text.find(m.group(), m.end())
            pos = len(text) if end < 0 else end + len(m.group())
        else:
            closed = _CLOSER[what].match(text, m.end())
            pos = closed.end() if closed else len(text)
    return meta, data


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each span by spaces, keeping every offset and line of the rest."""
    parts, pos = [], 0
    for start, end in spans:
        parts += [text[pos:start], re.sub(r"[^\n]", " ", text[start:end])]
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


# --- a psql script, as psql reads it ---------------------------------------------------------


def psql_script_parts(text: str) -> Iterator[tuple[str, str]]:
    """A script for psql as ("sql", text), ("meta", line) and ("data", rows) parts, in order.

    A meta-command runs from its backslash to the end of the line; after a `COPY ... FROM
    STDIN;` (or `\\copy ... from stdin`) psql reads the lines that follow as rows, up to a
    line `\\.`. Backslashes in strings, quoted identifiers, comments and rows do not count.
    """
    meta, data = _scan_psql(text)
    spans = sorted([(start, end, "meta") for start, end, _, _ in meta]
                   + [(start, end, "data") for start, end in data])
    pos = 0
    for start, end, kind in spans:
        if pos < start:
            yield "sql", text[pos:start]
        yield kind, text[start:end]
        pos = end
    if pos < len(text):
        yield "sql", text[pos:]
