"""Generated JSON Schemas: docs/COMMAND.schema.json of apply, status, baseline, forget and
rehearse, and
docs/error.schema.json of a usage error, from docs/plan.schema.json (the hand-written one,
whose definitions of a patch, a problem and an error they all share) and the shapes below.
plan's, apply's, status's and rehearse's also hold the -t/--target shape
(``{"version", "ok", "targets": [...]}``), each target entry the members TARGET gives every
command's and the command's own; in docs/plan.schema.json those parts alone are generated
(``oneOf``, ``properties.targets``, ``$defs.targets`` and ``$defs.target``), the rest is kept.

``python tools/schemas.py`` rewrites them; ``--check`` exits 1 when one differs (a unit test
runs it), so a change to the plan's schema reaches every command's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1] / "docs"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
VERSIONING = ("Version 1. The schema is strict so that pgpatch's own tests catch any drift; a "
              "consumer should ignore members it does not know: new members may come without "
              "a new version.")


def _null_or(ref: str) -> dict[str, Any]:
    return {"anyOf": [{"type": "null"}, {"$ref": ref}]}


def _strict(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": properties}


def _document(title: str, description: str, properties: dict[str, Any],
              plan: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A command's document: version, ok, error and ``properties``, all required."""
    members = {
        "version": {"const": 1, "description": "The version of this format."},
        "ok": {"type": "boolean", "description": "True exactly when the exit status is 0."},
        **properties,
        "error": {"$ref": "#/$defs/error",
                  "description": "Null when the command succeeded; else what stopped it."},
    }
    return {"$schema": DRAFT, "title": title, "description": f"{description} {VERSIONING}",
            **_strict(list(members), members),
            "$defs": {**plan["$defs"], **(defs or {})}}


def _patch_and(plan: dict[str, Any], extra: dict[str, Any],
               description: str) -> dict[str, Any]:
    """The plan's patch with more members (still strict: no member beyond them)."""
    patch = plan["$defs"]["patch"]
    return {**patch, "description": description,
            "required": [*patch["required"], *extra],
            "properties": {**patch["properties"], **extra}}


SECONDS = {"type": "number", "minimum": 0}
NULLABLE_STRING = {"type": ["string", "null"]}
LINE = {"type": ["integer", "null"], "minimum": 1}

TARGET = {
    "name": {"type": "string"}, "host": NULLABLE_STRING,
    "port": {"type": ["integer", "null"]}, "ok": {"type": "boolean"},
    "error": {"type": ["string", "null"],
              "description": "The target's one error line (it could not be reached, it was "
                             "stopped, ...); null when none, also when a patch failed (its "
                             "row says so)."},
    "hint": NULLABLE_STRING,
    "started": {"type": "boolean",
                "description": "False: --fail-fast or Ctrl-C kept it from starting."},
    "seconds": SECONDS, "databases": {"type": "integer", "minimum": 0}}
"""What every command's -t/--target entry says of its target (render._target_json)."""

GENERATED_IN_PLAN = ("targets", "target")
"""docs/plan.schema.json's generated $defs (beside its oneOf and properties.targets)."""


def _target_defs(command: str, own: dict[str, Any],
                 optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The $defs ``targets`` (the -t document) and ``target`` (one entry: TARGET and the
    command's ``own`` members; ``optional`` ones only sometimes)."""
    members = {**TARGET, **own}
    target = _strict([k for k in members if k not in optional], members)
    target["description"] = f"One target of `pgpatch {command} -t NAME --format json`."
    targets = {"version": {"const": 1},
               "ok": {"type": "boolean",
                      "description": "True exactly when every target is ok (exit status 0)."},
               "targets": {"type": "array", "items": {"$ref": "#/$defs/target"},
                           "description": "One entry per target, in the order asked for."}}
    return {"targets": _strict(list(targets), targets), "target": target}


def _with_targets(doc: dict[str, Any], name: str, command: str, own: dict[str, Any],
                  optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A generated document's schema made ``oneOf`` its one-server shape (``$defs[name]``)
    and its -t/--target shape."""
    single = {k: v for k, v in doc.items()
              if k not in ("$schema", "title", "description", "$defs")}
    return {"$schema": DRAFT, "title": doc["title"],
            "description": doc["description"].replace(
                f" {VERSIONING}", f" With -t/--target: one entry per target. {VERSIONING}"),
            "oneOf": [{"$ref": f"#/$defs/{name}"}, {"$ref": "#/$defs/targets"}],
            "$defs": {**doc["$defs"], name: single, **_target_defs(command, own, optional)}}


def hand_written_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """docs/plan.schema.json without its generated parts: the one-server document, its
    members all required (the generated file keeps them in ``oneOf[0]``)."""
    base = {k: v for k, v in plan.items() if k != "oneOf"}
    required = plan["required"] if "required" in plan else plan["oneOf"][0]["required"]
    base = {**{k: v for k, v in base.items() if k in ("$schema", "title", "description",
                                                      "type")},
            "required": required,
            **{k: v for k, v in base.items() if k not in ("$schema", "title", "description",
                                                          "type", "required")}}
    base["properties"] = {k: v for k, v in base["properties"].items() if k != "targets"}
    base["$defs"] = {k: v for k, v in base["$defs"].items() if k not in GENERATED_IN_PLAN}
    return base


def plan_schema(plan: dict[str, Any]) -> dict[str, Any]:
    """The hand-written plan document, and the -t/--target one beside it: the top level's
    members may be either's, ``oneOf`` says which are required (and that they are not
    mixed)."""
    out = {k: v for k, v in plan.items() if k not in ("required", "$defs")}
    out["properties"] = {**plan["properties"], "targets": {
        "type": "array", "items": {"$ref": "#/$defs/target"},
        "description": "With -t/--target (and then with version and ok only): one entry "
                       "per target."}}
    out["oneOf"] = [{"required": plan["required"], "not": {"required": ["targets"]}},
                    {"$ref": "#/$defs/targets"}]
    out["$defs"] = {**plan["$defs"], **_target_defs(
        "plan", {"patches": {"type": "array", "items": {"$ref": "#/$defs/patch"}},
                 "problems": {"type": "array", "items": {"$ref": "#/$defs/problem"}},
                 "summary": {**plan["properties"]["summary"],
                             "description": "The target's plan's counts; absent when it "
                                            "made no plan."}},
        optional=("summary",))}
    return out


def apply_schema(plan: dict[str, Any]) -> dict[str, Any]:
    timed = _patch_and(plan, {"seconds": SECONDS}, "A patch this run applied and recorded.")
    failed = _patch_and(
        plan, {"seconds": SECONDS, "line": {"type": ["integer", "null"], "minimum": 1},
               "sqlstate": {"type": ["string", "null"]}, "message": {"type": "string"},
               "hint": {"type": ["string", "null"]}},
        "The patch the run stopped in: it failed (rolled back; a non-transactional one keeps "
        "the statements its message names), or was interrupted before it committed.")
    doc = _document(
        "pgpatch apply --format json",
        "The output of `pgpatch apply --format json`, also when the run stops.",
        {"applied": {"type": "array", "items": {"$ref": "#/$defs/timed_patch"},
                     "description": "What this run applied and recorded, in order, with "
                                    "the seconds each took."},
         "failed": _null_or("#/$defs/failed_patch"),
         "pending": {"anyOf": [{"type": "null"},
                               {"type": "array", "items": {"$ref": "#/$defs/patch"}}],
                     "description": "What is left for the next run; null when the run "
                                    "stopped before it had a plan."},
         "seconds": {"type": "number", "minimum": 0},
         "summary": {"anyOf": [{"type": "null"}, plan["properties"]["summary"]],
                     "description": "The plan's counts; null without a plan."},
         "problems": {"type": "array", "items": {"$ref": "#/$defs/problem"},
                      "description": "The plan's problems, when they refused the run."}},
        plan, {"timed_patch": timed, "failed_patch": failed})
    outcome = _patch_and(
        plan, {"result": {"enum": ["applied", "failed", "not run", None],
                          "description": "applied (by this run), failed, not run, or null: "
                                         "nothing to do."},
               "seconds": {"type": ["number", "null"], "minimum": 0}},
        "A step of the target's plan and what this run made of it.")
    doc["$defs"]["target_patch"] = outcome
    return _with_targets(
        doc, "apply", "apply",
        {"patches": {"type": "array", "items": {"$ref": "#/$defs/target_patch"}},
         "problems": {"type": "array", "items": {"$ref": "#/$defs/problem"}},
         "applied": {"type": "integer", "minimum": 0},
         "failed": {"type": "integer", "minimum": 0,
                    "description": "The pending steps left undone because the target "
                                   "failed."}})


def status_schema(plan: dict[str, Any]) -> dict[str, Any]:
    record = _strict(
        ["database", "major", "minor", "version", "name", "user", "installed", "duration_ms",
         "checksum", "checksum_version", "state", "path", "run_by", "pgpatch_version", "run"],
        {"database": {"type": "string"},
         "major": {"type": "string", "pattern": "^[0-9]{8}$"},
         "minor": {"type": "string", "pattern": "^[0-9]{4}$"},
         "version": {"type": "string", "pattern": "^[0-9]{8}\\.[0-9]{4}$"},
         "name": {"type": "string", "description": "The file name."},
         "user": {"type": ["string", "null"]},
         "installed": {"type": ["string", "null"], "format": "date-time"},
         "duration_ms": {"type": ["number", "null"]},
         "checksum": {"type": ["string", "null"]},
         "checksum_version": {"type": ["integer", "null"]},
         "state": {"enum": ["applied", "applied (no checksum)", "unsettled", "incomplete"]},
         "path": {"type": ["string", "null"]},
         "run_by": {"type": ["string", "null"],
                    "description": "The operating system user who ran pgpatch."},
         "pgpatch_version": {"type": ["string", "null"]},
         "run": {"type": ["integer", "null"], "minimum": 1,
                 "description": "A repeatable patch's (major 99999999) run number; null "
                                "for the others."}})
    the_plan = {k: v for k, v in plan.items()
                if k not in ("$schema", "title", "description", "$defs")}
    doc = _document(
        "pgpatch status --format json",
        "The output of `pgpatch status [GLOB]... --format json`, also when it fails.",
        {"state_database": {"type": ["boolean", "null"],
                            "description": "Whether the state database exists; null when "
                                           "the server could not be asked."},
         "records": {"type": "array", "items": {"$ref": "#/$defs/record"}},
         "problems": {"type": "array", "items": {"$ref": "#/$defs/problem"},
                      "description": "Without GLOBs: records whose outcome the server "
                                     "cannot tell (with GLOBs they are the plan's)."},
         "plan": {"$ref": "#/$defs/plan", "description": "With GLOBs: the plan."}},
        plan, {"record": record, "plan": the_plan})
    doc["required"] = [k for k in doc["required"] if k not in ("problems", "plan")]
    return _with_targets(
        doc, "status", "status",
        {"state_database": {"type": ["boolean", "null"]},
         "patches": {"type": "array", "items": {"$ref": "#/$defs/record"},
                     "description": "The records of the target's state database."},
         "problems": {"type": "array", "items": {"$ref": "#/$defs/problem"}},
         "plan": {"$ref": "#/$defs/plan", "description": "With GLOBs: the target's plan."}},
        optional=("plan",))


def baseline_schema(plan: dict[str, Any]) -> dict[str, Any]:
    return _document(
        "pgpatch baseline --format json",
        "The output of `pgpatch baseline DATABASE --format json`, also when it fails (then "
        "nothing was recorded and no baseline file is left).",
        {"database": {"type": "string"},
         "path": {"type": ["string", "null"], "description": "The file written."},
         "size": {"type": ["integer", "null"], "minimum": 0, "description": "In bytes."},
         "rows_of": {"type": ["array", "null"], "items": {"type": "string"},
                     "description": "The tables whose rows the file holds ([] with "
                                    "--schema-only); null: every table's (or on error)."},
         "recorded": {"type": "boolean",
                      "description": "The file is recorded as applied in the state database."}},
        plan)


def forget_schema(plan: dict[str, Any]) -> dict[str, Any]:
    return _document(
        "pgpatch forget --format json",
        "The output of `pgpatch forget DATABASE --format json`, also when it fails.",
        {"database": {"type": "string"},
         "forgotten": {"type": ["integer", "null"], "minimum": 0,
                       "description": "How many records were deleted; null on error."}},
        plan)


def rehearse_schema(plan: dict[str, Any]) -> dict[str, Any]:
    """One rehearsal's document, or with -t/--target one entry per target holding the
    members every command's target has and one rehearsal's members (docs/rehearse.md)."""
    lock = _strict(["relation", "mode", "blocks_reads", "blocks_writes"],
                   {"relation": {"type": "string"},
                    "mode": {"type": "string",
                             "description": "As pg_locks names it, in words: ACCESS SHARE, ..."},
                    "blocks_reads": {"type": "boolean"}, "blocks_writes": {"type": "boolean"}})
    statement = _strict(["line", "locks", "rewritten"],
                        {"line": {"type": "integer", "minimum": 1},
                         "locks": {"type": "array", "items": {"$ref": "#/$defs/lock_taken"}},
                         "rewritten": {"type": "array", "items": {"type": "string"}}})
    patch = _strict(
        ["path", "database", "version", "user", "action", "outcome", "seconds", "error",
         "statements", "lock_conflicts"],
        {"path": {"type": "string"}, "database": {"type": "string"},
         "version": plan["$defs"]["patch"]["properties"]["version"],
         "user": {"type": "string"},
         "action": {"enum": ["bootstrap", "apply", "apply (changed)"]},
         "outcome": {"enum": ["ran", "failed", "not run"]},
         "seconds": {"type": ["number", "null"], "minimum": 0,
                     "description": "Its time on the copy; null when it did not run."},
         "error": {"anyOf": [{"type": "null"}, _strict(
             ["line", "sqlstate", "message"],
             {"line": LINE, "sqlstate": NULLABLE_STRING, "message": {"type": "string"}})],
             "description": "Null unless the outcome is failed."},
         "statements": {"type": "array", "items": {"$ref": "#/$defs/statement_locks"}},
         "lock_conflicts": {"type": "array", "items": {"$ref": "#/$defs/lock_conflict"},
                            "description": "As plan's: live sessions that conflict now."}})
    own = {
        "offline": {"type": "boolean"},
        "major": {"type": ["integer", "null"],
                  "description": "The copy's PostgreSQL major; null when no copy was made."},
        "copied": {"type": "array", "items": _strict(
            ["database", "rows"], {"database": {"type": "string"}, "rows": {"type": "boolean"}})},
        "too_large": {"type": "array", "items": {"type": "string"}},
        "patches": {"type": "array", "items": {"$ref": "#/$defs/rehearsed_patch"}},
        "problems": {"type": "array", "items": {"$ref": "#/$defs/problem"}},
    }
    one = {"version": {"const": 1}, "ok": {"type": "boolean"}, **own,
           "seconds": SECONDS,
           "error": {"anyOf": [{"type": "null"}, _strict(
               ["path", "line", "sqlstate", "message", "hint"],
               {"path": NULLABLE_STRING, "line": LINE, "sqlstate": NULLABLE_STRING,
                "message": {"type": "string"}, "hint": NULLABLE_STRING})],
               "description": "A failure that belongs to no patch (the copy could not be "
                              "made, say); null otherwise."}}
    return {"$schema": DRAFT, "title": "pgpatch rehearse --format json",
            "description": "The output of `pgpatch rehearse --format json`: one rehearsal, or "
                           f"with -t/--target one entry per target. {VERSIONING}",
            "oneOf": [{"$ref": "#/$defs/rehearsal"}, {"$ref": "#/$defs/targets"}],
            "$defs": {"rehearsal": _strict(list(one), one),
                      **_target_defs("rehearse", own),
                      "rehearsed_patch": patch, "statement_locks": statement,
                      "lock_taken": lock,
                      **{k: plan["$defs"][k] for k in ("problem", "lock_conflict", "session",
                                                       "identifier")}}}


def error_schema(plan: dict[str, Any]) -> dict[str, Any]:
    members = {
        "version": {"const": 1},
        "ok": {"const": False},
        "command": {"type": ["string", "null"],
                    "description": "The command the line named, if it got that far."},
        "error": {"$ref": "#/$defs/error"},
    }
    return {"$schema": DRAFT, "title": "pgpatch usage error with --format json",
            "description": "What any command prints on stdout with --format json when the "
                           f"command line is wrong (exit status 2): no command ran. {VERSIONING}",
            **_strict(list(members), members),
            "$defs": {"error": plan["$defs"]["error"]}}


SCHEMAS = {"plan": plan_schema, "apply": apply_schema, "status": status_schema,
           "baseline": baseline_schema, "forget": forget_schema, "error": error_schema,
           "rehearse": rehearse_schema}


def render_schemas() -> dict[Path, str]:
    plan = hand_written_plan(json.loads((DOCS / "plan.schema.json").read_text(
        encoding="utf-8")))
    return {DOCS / f"{name}.schema.json": json.dumps(make(plan), indent=2,
                                                     ensure_ascii=False) + "\n"
            for name, make in SCHEMAS.items()}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in render_schemas().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if "--check" in argv:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}: run python tools/schemas.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
