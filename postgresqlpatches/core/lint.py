"""Warn about DDL that locks or rewrites a busy table, before it runs on a live database.

Pure: parsed statements in, findings out. Each rule is a value (id, why, lock, the safer way,
bad and good SQL) with a predicate over the statement's raw parse tree; docs/lint.md is
rendered from the same values, so the docs and the checks cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from postgresqlpatches.core.statements import ParsedSql, Statement

Node = Mapping[str, Any]


@dataclass
class _FileContext:
    """What earlier statements of the same file established (mutable while linting one file)."""

    created: set[tuple[str | None, str]] = field(default_factory=set)
    # constraint name -> (table, column) of CHECK (column IS NOT NULL); validated ones apart
    not_null_checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    validated_not_null: set[tuple[str, str]] = field(default_factory=set)
    # tables with a constraint from an earlier patch validated here: content unknown, trusted
    validated_elsewhere_added: set[str] = field(default_factory=set)
    # (table, constraint) added NOT VALID in this file, to spot a VALIDATE in the same transaction
    added_not_valid: set[tuple[str, str]] = field(default_factory=set)
    one_transaction: bool = True

    def was_created(self, relation: Node | None) -> bool:
        """True for a relation made earlier in this file: it has no rows and no readers yet."""
        if not relation:
            return False
        schema, name = relation.get("schemaname"), relation.get("relname", "")
        if schema is not None:
            return (schema, name) in self.created or (None, name) in self.created
        return any(created_name == name for _, created_name in self.created)


Check = Callable[[str, Node, _FileContext], bool]


@dataclass(frozen=True)
class Rule:
    """One kind of dangerous statement, with what it costs and how to do it instead."""

    id: str
    title: str
    why: str
    lock: str
    safer: str
    bad: str
    good: str
    check: Check = field(compare=False, repr=False)


@dataclass(frozen=True)
class Finding:
    rule: Rule
    line: int
    excerpt: str


# --- tree helpers ---------------------------------------------------------------------------


def _cmds(kind: str, node: Node, subtype: str) -> Iterator[Node]:
    """The ALTER TABLE sub-commands of one type (ALTER TABLE may carry several, comma-separated)."""
    if kind != "AlterTableStmt" or node.get("objtype") not in (None, "OBJECT_TABLE"):
        return
    for cmd in node.get("cmds") or ():
        at = cmd.get("AlterTableCmd", {})
        if at.get("subtype") == subtype:
            yield at


def _added_constraints(kind: str, node: Node, contype: str) -> Iterator[Node]:
    for at in _cmds(kind, node, "AT_AddConstraint"):
        constraint = at.get("def", {}).get("Constraint", {})
        if constraint.get("contype") == contype:
            yield constraint


def _column_constraints(column: Node) -> Iterator[Node]:
    for item in column.get("constraints") or ():
        yield item.get("Constraint", {})


def _function_names(tree: Any) -> Iterator[str]:
    """Every function called anywhere in an expression tree (last part of the name)."""
    if isinstance(tree, dict):
        call = tree.get("FuncCall")
        if call is not None:
            names = call.get("funcname") or [{}]
            yield names[-1].get("String", {}).get("sval", "")
        for value in tree.values():
            yield from _function_names(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _function_names(value)


def _target(kind: str, node: Node) -> list[Node]:
    """The relations a statement acts on, as RangeVar-like dicts (for the created-here check)."""
    if kind in ("AlterTableStmt", "IndexStmt", "ClusterStmt", "ReindexStmt", "RenameStmt"):
        return [node["relation"]] if node.get("relation") else []
    if kind in ("LockStmt", "TruncateStmt"):
        return [r.get("RangeVar", {}) for r in node.get("relations") or ()]
    if kind == "VacuumStmt":
        return [r.get("VacuumRelation", {}).get("relation") or {} for r in node.get("rels") or ()]
    if kind == "DropStmt":
        targets = []
        for obj in node.get("objects") or ():
            parts = [i.get("String", {}).get("sval") for i in obj.get("List", {}).get("items", [])]
            if parts and all(parts):
                targets.append(
                    {"schemaname": parts[-2] if len(parts) > 1 else None, "relname": parts[-1]}
                )
        return targets
    return []


# --- the checks -----------------------------------------------------------------------------

_VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "nextval",
        "txid_current",
        "pg_current_xact_id",
    }
)
_SERIAL_TYPES = frozenset({"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"})


def _is_serial(column: Node) -> bool:
    names = column.get("typeName", {}).get("names") or [{}]
    return names[-1].get("String", {}).get("sval") in _SERIAL_TYPES


def _rewrites_on_add_column(column: Node) -> bool:
    """ADD COLUMN rewrites the table when each row needs its own computed value."""
    if _is_serial(column):
        return True  # serial means DEFAULT nextval(...)
    for constraint in _column_constraints(column):
        contype = constraint.get("contype")
        if contype == "CONSTR_IDENTITY":
            return True
        if contype == "CONSTR_GENERATED" and constraint.get("generated_kind", "s") == "s":
            return True
        if contype == "CONSTR_DEFAULT" and any(
            name in _VOLATILE_FUNCTIONS for name in _function_names(constraint.get("raw_expr"))
        ):
            return True
    return False


def _check_create_index(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "IndexStmt" and not node.get("concurrent")


def _check_add_column_volatile_default(kind: str, node: Node, ctx: _FileContext) -> bool:
    return any(
        _rewrites_on_add_column(at.get("def", {}).get("ColumnDef", {}))
        for at in _cmds(kind, node, "AT_AddColumn")
    )


def _not_null_without_value(column: Node) -> bool:
    """NOT NULL with nothing to fill the existing rows: no default, identity or generation."""
    contypes = {c.get("contype") for c in _column_constraints(column)}
    if _is_serial(column):
        return False  # serial brings DEFAULT nextval(...)
    return ("CONSTR_NOTNULL" in contypes or "CONSTR_PRIMARY" in contypes) and not contypes & {
        "CONSTR_DEFAULT", "CONSTR_IDENTITY", "CONSTR_GENERATED"}


def _check_add_column_not_null(kind: str, node: Node, ctx: _FileContext) -> bool:
    return any(
        _not_null_without_value(at.get("def", {}).get("ColumnDef", {}))
        for at in _cmds(kind, node, "AT_AddColumn")
    )


def _check_alter_column_type(kind: str, node: Node, ctx: _FileContext) -> bool:
    return any(True for _ in _cmds(kind, node, "AT_AlterColumnType"))


def _check_set_not_null(kind: str, node: Node, ctx: _FileContext) -> bool:
    table = node.get("relation", {}).get("relname", "")
    if table in ctx.validated_elsewhere_added:
        return False
    return any(
        (table, at.get("name", "")) not in ctx.validated_not_null
        for at in _cmds(kind, node, "AT_SetNotNull")
    )


def _check_validate_in_same_transaction(kind: str, node: Node, ctx: _FileContext) -> bool:
    table = node.get("relation", {}).get("relname", "")
    return ctx.one_transaction and any(
        (table, at.get("name", "")) in ctx.added_not_valid
        for at in _cmds(kind, node, "AT_ValidateConstraint")
    )


def _check_add_foreign_key(kind: str, node: Node, ctx: _FileContext) -> bool:
    if any(not c.get("skip_validation") for c in _added_constraints(kind, node, "CONSTR_FOREIGN")):
        return True
    return any(
        c.get("contype") == "CONSTR_FOREIGN"
        for at in _cmds(kind, node, "AT_AddColumn")
        for c in _column_constraints(at.get("def", {}).get("ColumnDef", {}))
    )


def _check_add_check(kind: str, node: Node, ctx: _FileContext) -> bool:
    return any(not c.get("skip_validation") for c in _added_constraints(kind, node, "CONSTR_CHECK"))


def _check_add_unique(kind: str, node: Node, ctx: _FileContext) -> bool:
    return any(
        not c.get("indexname")
        for contype in ("CONSTR_UNIQUE", "CONSTR_PRIMARY", "CONSTR_EXCLUSION")
        for c in _added_constraints(kind, node, contype)
    )


def _check_drop_index(kind: str, node: Node, ctx: _FileContext) -> bool:
    return (
        kind == "DropStmt"
        and node.get("removeType") == "OBJECT_INDEX"
        and not node.get("concurrent")
    )


def _check_drop_column(kind: str, node: Node, ctx: _FileContext) -> bool:
    return any(True for _ in _cmds(kind, node, "AT_DropColumn"))


def _check_drop_table(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "DropStmt" and node.get("removeType") == "OBJECT_TABLE"


def _check_rename(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "RenameStmt"


_SHARE_LOCK = 5  # LockStmt.mode: 5 SHARE ... 8 ACCESS EXCLUSIVE; from SHARE up, writes wait


def _check_lock_table(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "LockStmt" and node.get("mode", 8) >= _SHARE_LOCK


def _check_truncate(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "TruncateStmt"


def _has_option(node: Node, key: str, name: str) -> bool:
    return any(o.get("DefElem", {}).get("defname") == name for o in node.get(key) or ())


def _check_vacuum_full(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "VacuumStmt" and _has_option(node, "options", "full")


def _check_cluster(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "ClusterStmt"


def _check_reindex(kind: str, node: Node, ctx: _FileContext) -> bool:
    return kind == "ReindexStmt" and not _has_option(node, "params", "concurrently")


# --- the rules ------------------------------------------------------------------------------

NEXT_PATCH = "-- in a later patch file:\n"
"""Splits an example that needs two transactions; tests lint each part as its own file."""

RULES: tuple[Rule, ...] = (
    Rule(
        id="create-index-non-concurrently",
        title="CREATE INDEX without CONCURRENTLY",
        why="Building the index blocks every INSERT, UPDATE and DELETE on the table until it is "
        "done, which on a large table can be minutes.",
        lock="SHARE (writes wait; reads go on)",
        safer="CREATE INDEX CONCURRENTLY, in a patch of its own (pgpatch runs it outside a "
        "transaction). If it fails with an error, pgpatch drops the INVALID index it left; fix "
        "the cause and run again.",
        bad="CREATE INDEX orders_customer_id ON orders (customer_id);",
        good="CREATE INDEX CONCURRENTLY orders_customer_id ON orders (customer_id);",
        check=_check_create_index,
    ),
    Rule(
        id="add-column-volatile-default",
        title="ADD COLUMN that rewrites the table",
        why="Since PostgreSQL 11 a constant (or stable, like now()) default is stored once and "
        "costs nothing. A volatile default (random(), clock_timestamp(), gen_random_uuid(), "
        "nextval() and so serial), an identity or a stored generated column needs a value per "
        "row: the whole table and its indexes are rewritten under the lock.",
        lock="ACCESS EXCLUSIVE (reads and writes wait) for the whole rewrite",
        safer="Add the column without a default (or with a constant one), set the default in a "
        "second statement so only new rows get it, then backfill old rows in batches.",
        bad="ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        good="ALTER TABLE orders ADD COLUMN token uuid;\n"
        "ALTER TABLE orders ALTER COLUMN token SET DEFAULT gen_random_uuid();\n"
        "-- then backfill: UPDATE orders SET token = gen_random_uuid()\n"
        "--   WHERE id BETWEEN ... AND ... AND token IS NULL;",
        check=_check_add_column_volatile_default,
    ),
    Rule(
        id="add-column-not-null-without-default",
        title="ADD COLUMN ... NOT NULL without a default",
        why="The existing rows get NULL in the new column, so the statement fails with "
        "\"column contains null values\" on any table that has rows: it passes on an empty "
        "development database and fails in production.",
        lock="ACCESS EXCLUSIVE (reads and writes wait) until it fails",
        safer="Give the column a constant default (stored once since PostgreSQL 11, no "
        "rewrite), or add it nullable, backfill it in batches, then add a validated "
        "CHECK (column IS NOT NULL) and SET NOT NULL (see set-not-null).",
        bad="ALTER TABLE orders ADD COLUMN currency text NOT NULL;",
        good="ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'EUR';",
        check=_check_add_column_not_null,
    ),
    Rule(
        id="alter-column-type",
        title="ALTER COLUMN ... TYPE",
        why="Changing a column's type rewrites the table and rebuilds its indexes, unless the "
        "new type is binary-compatible (varchar(n) to text or a wider varchar).",
        lock="ACCESS EXCLUSIVE (reads and writes wait) for the whole rewrite",
        safer="Add a new column of the new type, fill it in batches (and keep it in step with a "
        "trigger), then switch readers over and drop the old column.",
        bad="ALTER TABLE orders ALTER COLUMN id TYPE bigint;",
        good="ALTER TABLE orders ADD COLUMN id_new bigint;\n"
        "-- backfill in batches, keep in step with a trigger, then swap",
        check=_check_alter_column_type,
    ),
    Rule(
        id="set-not-null",
        title="SET NOT NULL without a validated CHECK",
        why="SET NOT NULL scans the whole table to prove there is no NULL, holding the lock "
        "throughout. Since PostgreSQL 12 the scan is skipped when a validated "
        "CHECK (column IS NOT NULL) constraint already proves it. The rule is quiet when such "
        "a CHECK was added or validated earlier in the file, or when the file validates a "
        "constraint of the table that an earlier patch added (the linter sees one file and "
        "trusts that constraint to be the CHECK).",
        lock="ACCESS EXCLUSIVE (reads and writes wait) during the scan",
        safer="Add CHECK (column IS NOT NULL) NOT VALID; in a later patch VALIDATE it (which "
        "only takes SHARE UPDATE EXCLUSIVE), then SET NOT NULL and drop the CHECK.",
        bad="ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;",
        good="ALTER TABLE orders ADD CONSTRAINT orders_customer_id_nn\n"
        "    CHECK (customer_id IS NOT NULL) NOT VALID;\n"
        + NEXT_PATCH
        + "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_nn;\n"
        "ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;\n"
        "ALTER TABLE orders DROP CONSTRAINT orders_customer_id_nn;",
        check=_check_set_not_null,
    ),
    Rule(
        id="add-foreign-key-without-not-valid",
        title="Foreign key added without NOT VALID",
        why="Adding a foreign key checks every existing row against the referenced table, "
        "and blocks writes to both tables while it does.",
        lock="SHARE ROW EXCLUSIVE on both tables (writes wait) during the check",
        safer="Add the constraint NOT VALID (new rows are checked at once), then VALIDATE "
        "CONSTRAINT in a later patch: it takes only SHARE UPDATE EXCLUSIVE.",
        bad="ALTER TABLE orders ADD CONSTRAINT orders_customer_fk\n"
        "    FOREIGN KEY (customer_id) REFERENCES customers (id);",
        good="ALTER TABLE orders ADD CONSTRAINT orders_customer_fk\n"
        "    FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;\n"
        + NEXT_PATCH
        + "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk;",
        check=_check_add_foreign_key,
    ),
    Rule(
        id="add-check-without-not-valid",
        title="CHECK constraint added without NOT VALID",
        why="Adding a CHECK constraint scans the whole table to test every row, holding the "
        "lock throughout.",
        lock="ACCESS EXCLUSIVE (reads and writes wait) during the scan",
        safer="Add it NOT VALID, then VALIDATE CONSTRAINT in a later patch (SHARE UPDATE "
        "EXCLUSIVE: reads and writes go on).",
        bad="ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0);",
        good="ALTER TABLE orders ADD CONSTRAINT orders_amount_positive\n"
        "    CHECK (amount > 0) NOT VALID;\n"
        + NEXT_PATCH
        + "ALTER TABLE orders VALIDATE CONSTRAINT orders_amount_positive;",
        check=_check_add_check,
    ),
    Rule(
        id="validate-in-same-transaction",
        title="VALIDATE CONSTRAINT in the transaction that added it NOT VALID",
        why="pgpatch runs a file in one transaction, and a lock is held until the transaction "
        "ends. The ADD CONSTRAINT's lock (ACCESS EXCLUSIVE for a CHECK, SHARE ROW EXCLUSIVE "
        "for a foreign key) is still held while VALIDATE scans the table, so NOT VALID gained "
        "nothing. (A file that also holds a statement that cannot run in a transaction runs "
        "statement by statement, and then this is fine.)",
        lock="the lock of the earlier ADD CONSTRAINT, for the whole validating scan",
        safer="Put the VALIDATE CONSTRAINT in a later patch file.",
        bad="ALTER TABLE orders ADD CONSTRAINT orders_amount_positive\n"
        "    CHECK (amount > 0) NOT VALID;\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_amount_positive;",
        good="ALTER TABLE orders ADD CONSTRAINT orders_amount_positive\n"
        "    CHECK (amount > 0) NOT VALID;\n"
        + NEXT_PATCH
        + "ALTER TABLE orders VALIDATE CONSTRAINT orders_amount_positive;",
        check=_check_validate_in_same_transaction,
    ),
    Rule(
        id="add-unique-without-index",
        title="UNIQUE or PRIMARY KEY constraint that builds its own index",
        why="ADD CONSTRAINT ... UNIQUE / PRIMARY KEY builds the index while holding the lock.",
        lock="ACCESS EXCLUSIVE (reads and writes wait) for the index build",
        safer="CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... USING INDEX.",
        bad="ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE (number);",
        good="CREATE UNIQUE INDEX CONCURRENTLY orders_number_key ON orders (number);\n"
        "ALTER TABLE orders ADD CONSTRAINT orders_number_key UNIQUE USING INDEX orders_number_key;",
        check=_check_add_unique,
    ),
    Rule(
        id="drop-index-non-concurrently",
        title="DROP INDEX without CONCURRENTLY",
        why="Dropping an index locks its table against reads and writes; the drop is quick, "
        "but it waits behind every running query on the table and everything queues behind it.",
        lock="ACCESS EXCLUSIVE on the table (brief, but it queues)",
        safer="DROP INDEX CONCURRENTLY, in a patch of its own (it runs outside a transaction).",
        bad="DROP INDEX orders_customer_id;",
        good="DROP INDEX CONCURRENTLY orders_customer_id;",
        check=_check_drop_index,
    ),
    Rule(
        id="drop-column",
        title="DROP COLUMN",
        why="The drop itself is quick, but the application still running the old code reads "
        "and writes that column, and fails the moment it is gone; the data is lost.",
        lock="ACCESS EXCLUSIVE (brief, but it queues behind every running query on the table)",
        safer="Stop using the column in the application and deploy that first; drop it in a "
        "later patch (and set a lock_timeout so the drop does not queue everyone).",
        bad="ALTER TABLE orders DROP COLUMN legacy_code;",
        good="SET lock_timeout = '2s';\n"
        "-- pgpatch: allow drop-column  (no deployed code uses it since release 4.2)\n"
        "ALTER TABLE orders DROP COLUMN legacy_code;",
        check=_check_drop_column,
    ),
    Rule(
        id="drop-table",
        title="DROP TABLE",
        why="Irreversible, and the running application may still use the table.",
        lock="ACCESS EXCLUSIVE",
        safer="Make sure nothing uses the table (rename it away first, or revoke access, and "
        "wait), then drop it in a later patch.",
        bad="DROP TABLE order_archive;",
        good="-- pgpatch: allow drop-table  (unused since release 4.2, backed up)\n"
        "DROP TABLE order_archive;",
        check=_check_drop_table,
    ),
    Rule(
        id="rename",
        title="RENAME of a table, column or other object",
        why="Code that still uses the old name fails as soon as the rename commits.",
        lock="ACCESS EXCLUSIVE (brief, but it queues behind every running query on the table)",
        safer="Expand and contract: add the new name (a new column kept in step, or a view "
        "with the old name), move the application over, then remove the old name.",
        bad="ALTER TABLE orders RENAME COLUMN amount TO total;",
        good="ALTER TABLE orders ADD COLUMN total numeric;\n"
        "-- keep amount and total in step until no code reads amount",
        check=_check_rename,
    ),
    Rule(
        id="lock-table",
        title="LOCK TABLE in a mode that blocks writes",
        why="An explicit lock is held until the patch's transaction ends, blocking everything "
        "the mode conflicts with for the whole patch.",
        lock="the mode asked for; ACCESS EXCLUSIVE when none is given",
        safer="Let each statement take the lock it needs; if a lock is really needed, use the "
        "weakest mode and a lock_timeout.",
        bad="LOCK TABLE orders;",
        good="SET lock_timeout = '2s';\nLOCK TABLE orders IN SHARE UPDATE EXCLUSIVE MODE;",
        check=_check_lock_table,
    ),
    Rule(
        id="truncate",
        title="TRUNCATE",
        why="Removes every row at once, irreversibly once committed, and blocks even reads.",
        lock="ACCESS EXCLUSIVE",
        safer="DELETE in batches when readers must go on, or silence the rule where emptying "
        "the table is the point.",
        bad="TRUNCATE sessions;",
        good="DELETE FROM sessions WHERE expires_at < now();",
        check=_check_truncate,
    ),
    Rule(
        id="vacuum-full",
        title="VACUUM FULL",
        why="Rewrites the whole table and its indexes, blocking reads and writes throughout.",
        lock="ACCESS EXCLUSIVE for the whole rewrite",
        safer="Plain VACUUM (no lock against reads and writes), or pg_repack / pg_squeeze to "
        "shrink a table online.",
        bad="VACUUM FULL orders;",
        good="VACUUM (ANALYZE) orders;",
        check=_check_vacuum_full,
    ),
    Rule(
        id="cluster",
        title="CLUSTER",
        why="Rewrites the whole table in index order, blocking reads and writes throughout.",
        lock="ACCESS EXCLUSIVE for the whole rewrite",
        safer="pg_repack --order-by to reorder a table online, or do without.",
        bad="CLUSTER orders USING orders_created_at;",
        good="-- pg_repack --table=orders --order-by=created_at",
        check=_check_cluster,
    ),
    Rule(
        id="reindex-non-concurrently",
        title="REINDEX without CONCURRENTLY",
        why="Blocks writes to the table, and reads that would use the index, until the "
        "rebuild is done.",
        lock="SHARE on the table (writes wait), ACCESS EXCLUSIVE on the index",
        safer="REINDEX ... CONCURRENTLY (PostgreSQL 12+), in a patch of its own (it runs "
        "outside a transaction).",
        bad="REINDEX INDEX orders_customer_id;",
        good="REINDEX INDEX CONCURRENTLY orders_customer_id;",
        check=_check_reindex,
    ),
)
RULES_BY_ID: Mapping[str, Rule] = {rule.id: rule for rule in RULES}


# --- linting a file -------------------------------------------------------------------------

_DIRECTIVE = re.compile(
    r"pgpatch:\s*(?P<scope>allow-file|allow)\s+(?P<ids>[a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)"
)


@dataclass(frozen=True)
class _Directive:
    line: int
    start: int
    file_wide: bool
    rule_ids: frozenset[str]


def _directives(text: str) -> list[_Directive]:
    """`-- pgpatch: allow ...` comments, found by PostgreSQL's own scanner (not in strings)."""
    if "pgpatch:" not in text:
        return []
    import pglast.parser

    try:
        tokens = pglast.parser.scan(text)
    except pglast.parser.ParseError:
        return []
    found = []
    for token in tokens:  # scan() gives character offsets, end inclusive
        if token.name not in ("SQL_COMMENT", "C_COMMENT"):
            continue
        for m in _DIRECTIVE.finditer(text, token.start, token.end + 1):
            ids = frozenset(i.strip() for i in m.group("ids").split(","))
            line = text.count("\n", 0, token.start) + 1
            found.append(_Directive(line, token.start, m.group("scope") == "allow-file", ids))
    return found


def _allowed(statements: tuple[Statement, ...], text: str) -> tuple[frozenset[str], list[set[str]]]:
    """Rule ids silenced for the whole file, and for each statement."""
    file_wide: set[str] = set()
    per_statement: list[set[str]] = [set() for _ in statements]
    for d in _directives(text):
        if d.file_wide:
            file_wide |= d.rule_ids
            continue
        # A statement on the directive's line (before or after it) takes it; else the next one.
        on_line = [
            i for i, s in enumerate(statements) if s.line <= d.line <= s.line + s.text.count("\n")
        ]
        following = [i for i, s in enumerate(statements) if s.start > d.start][:1]
        for i in on_line or following:
            per_statement[i] |= d.rule_ids
    return frozenset(file_wide), per_statement


def _excerpt(statement: Statement, width: int = 100) -> str:
    """The statement on one line, shortened, with any password in it masked (it is printed)."""
    from postgresqlpatches.core.redact import redact

    flat = redact(" ".join(statement.text.split()))
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def lint(parsed: ParsedSql, text: str) -> tuple[Finding, ...]:
    """Findings for the statements of one file, in file order, minus what the file allows."""
    file_wide, per_statement = _allowed(parsed.statements, text)
    # A file with a statement that cannot run in a transaction runs statement by statement;
    # any other file is one transaction, and every lock taken is held until its end.
    ctx = _FileContext(one_transaction=not parsed.non_transactional)
    findings = []
    for statement, allowed in zip(parsed.statements, per_statement, strict=True):
        kind, node = statement.kind, statement.tree
        targets = _target(kind, node)
        fresh = bool(targets) and all(ctx.was_created(t) for t in targets)
        if not fresh:
            for rule in RULES:
                if rule.id in file_wide or rule.id in allowed:
                    continue
                if rule.check(kind, node, ctx):
                    findings.append(Finding(rule, statement.line, _excerpt(statement)))
        _learn(kind, node, ctx)
    return tuple(findings)


def _learn(kind: str, node: Node, ctx: _FileContext) -> None:
    """Remember what this statement made, for the statements after it."""
    relation: Node | None = None
    if kind == "CreateStmt":
        relation = node.get("relation")
    elif kind == "CreateTableAsStmt":
        relation = node.get("into", {}).get("rel")
    elif kind == "IndexStmt" and node.get("idxname"):
        relation = {
            "schemaname": node.get("relation", {}).get("schemaname"),
            "relname": node["idxname"],
        }
    if relation:
        ctx.created.add((relation.get("schemaname"), relation.get("relname", "")))
    table = node.get("relation", {}).get("relname", "") if kind == "AlterTableStmt" else ""
    for contype in ("CONSTR_CHECK", "CONSTR_FOREIGN"):
        for constraint in _added_constraints(kind, node, contype):
            if constraint.get("skip_validation") and constraint.get("conname"):
                ctx.added_not_valid.add((table, constraint["conname"]))
    for constraint in _added_constraints(kind, node, "CONSTR_CHECK"):
        test = constraint.get("raw_expr", {}).get("NullTest", {})
        fields = test.get("arg", {}).get("ColumnRef", {}).get("fields") or []
        if test.get("nulltesttype") == "IS_NOT_NULL" and len(fields) == 1:
            column = fields[0].get("String", {}).get("sval", "")
            ctx.not_null_checks[constraint.get("conname", "")] = (table, column)
            if not constraint.get("skip_validation"):
                ctx.validated_not_null.add((table, column))
    for at in _cmds(kind, node, "AT_ValidateConstraint"):
        checked = ctx.not_null_checks.get(at.get("name", ""))
        if checked and checked[0] == table:
            ctx.validated_not_null.add(checked)
        elif (table, at.get("name", "")) not in ctx.added_not_valid:
            ctx.validated_elsewhere_added.add(table)


# --- docs -----------------------------------------------------------------------------------


def render_rules_markdown() -> str:
    """docs/lint.md, generated from RULES so the page cannot drift from the checks."""
    out = [
        "# Lint rules",
        "",
        "<!-- Generated by postgresqlpatches.core.lint.render_rules_markdown(); do not edit. -->",
        "",
        "pgpatch warns about statements that lock or rewrite a table that a live application "
        "is using. A rule does not apply to a table created earlier in the same file: it has "
        "no rows and no readers yet.",
        "",
        "Silence a rule for one statement with a comment on the line before it (or at the end of "
        "its last line), and for a whole file with `allow-file`:",
        "",
        "```sql",
        "-- pgpatch: allow drop-column, rename",
        "ALTER TABLE orders DROP COLUMN legacy_code;",
        "",
        "TRUNCATE import_staging;  -- pgpatch: allow truncate",
        "",
        "-- pgpatch: allow-file create-index-non-concurrently",
        "```",
        "",
        "| Rule | Lock taken |",
        "| --- | --- |",
    ]
    out += [f"| [`{r.id}`](#{r.id}) | {r.lock} |" for r in RULES]
    for r in RULES:
        out += [
            "",
            f"## {r.id}",
            "",
            f"**{r.title}.** {r.why}",
            "",
            f"**Lock:** {r.lock}.",
            "",
            f"**Safer:** {r.safer}",
            "",
            "Bad:",
            "",
            "```sql",
            r.bad,
            "```",
            "",
            "Good:",
            "",
            "```sql",
            r.good,
            "```",
        ]
    return "\n".join(out) + "\n"
