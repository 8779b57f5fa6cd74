"""Command line: parse options, call one runner function, render. No SQL here.

Heavy modules (psycopg, rich, pglast) are imported inside the commands, so that
``pgpatch --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click

from postgresqlpatches import DEFAULT_PREFIX

LOG_LEVELS = ["trace", "debug", "info", "warning", "error"]
"""trace: debug, and the driver's (psycopg's) own log lines too."""
log = logging.getLogger("pgpatch")


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the installed build's version, looked up only when asked."""
    if not value or ctx.resilient_parsing:
        return
    from postgresqlpatches import installed_version

    click.echo(f"pgpatch {installed_version()}")
    ctx.exit()


class PatchGroup(click.Group):
    """The seed's form ``python -m postgresqlpatches [-l LEVEL] GLOB...`` means ``apply``;
    common options given before the command name are moved after it."""

    VALUE_OPTIONS = {"-l", "--log-level", "-p", "--prefix", "--host", "--port", "--state-db",
                     "--admin-user", "--config"}
    FLAG_OPTIONS = {"--strict-passwords"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _read_config(ctx, args, self.commands)
        leading: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in ("--help", "-h", "--version"):
                return super().parse_args(ctx, args)
            if arg in self.VALUE_OPTIONS and i + 1 < len(args):
                leading += args[i:i + 2]
                i += 2
            elif arg in self.FLAG_OPTIONS:
                leading.append(arg)
                i += 1
            elif arg.startswith("-") and arg.split("=", 1)[0] in self.VALUE_OPTIONS:
                leading.append(arg)
                i += 1
            elif arg.startswith("-") and len(arg) > 2 and arg[:2] in ("-l", "-p"):
                leading.append(arg)
                i += 1
            else:
                break
        rest = args[i:]
        if not rest:
            return super().parse_args(ctx, args)
        first = rest[0]
        if first in self.commands:
            command = self.commands[first]
            return super().parse_args(ctx, [first, *_fit_leading(command, first, leading,
                                                                 ctx.resilient_parsing),
                                            *rest[1:]])
        # shell completion (resilient parsing) never raises: a half-typed line is no error
        if first.startswith("-"):
            later = next((a for a in rest[1:] if a in self.commands), None)
            if later is not None and not ctx.resilient_parsing:
                raise click.UsageError(
                    f"{first} goes after the command: pgpatch {later} {first} ...", ctx)
        elif not _looks_like_a_glob(first):
            if ctx.resilient_parsing:
                return super().parse_args(ctx, args)
            import difflib

            close = difflib.get_close_matches(first, list(self.commands), n=1)
            raise click.UsageError(
                f"no such command {first!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                 " (a GLOB of patch files means apply: "
                                                 "quote it, e.g. 'db/**/*.sql')"), ctx)
        return super().parse_args(ctx, ["apply", *leading, *rest])

    # -- usage errors as JSON: with --format json a CI gate reads a document on stdout, exit 2

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except click.UsageError as e:
            _usage_json(e, args, None)
            raise
        ctx.meta[JSON_ARGS] = list(args)
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            args = ctx.meta.get(JSON_ARGS, [])
            _usage_json(e, args, ctx.invoked_subcommand)
            raise


JSON_ARGS = "pgpatch.args"
"""ctx.meta: the command line as given, for _usage_json."""


def _wants_json(args: list[str]) -> bool:
    """--format json (or --format=json) anywhere on the line, before a bare ``--``."""
    args = args[:args.index("--")] if "--" in args else args
    return "--format=json" in args or any(
        a == "--format" and b == "json" for a, b in zip(args, args[1:], strict=False))


def _usage_json(e: click.UsageError, args: list[str], command: str | None) -> None:
    """A usage error's document on stdout (the error itself goes to stderr, as click's)."""
    if not _wants_json(args) or (e.ctx is not None and e.ctx.resilient_parsing):
        return
    from postgresqlpatches.cli import render

    render.dump_json(render.usage_error_json(e, command))


def _fit_leading(command: click.Command, name: str, leading: list[str],
                 completing: bool = False) -> list[str]:
    """The common options given before the command name, for a command that takes them
    (while completing a line, the others are left out instead of refused)."""
    takes = {opt for param in command.params for opt in getattr(param, "opts", ())}
    fitting: list[str] = []
    i = 0
    while i < len(leading):
        arg = leading[i]
        # "--host db" came as two items, "--host=db" and "-ldebug" as one
        size = 2 if arg in PatchGroup.VALUE_OPTIONS else 1
        option = arg.split("=", 1)[0]
        option = option[:2] if option[:2] in ("-l", "-p") else option
        if option.startswith("-") and option not in takes:
            if not completing:
                raise click.UsageError(f"{option} does not apply to pgpatch {name}")
        else:
            fitting += leading[i:i + size]
        i += size
    return fitting


def _looks_like_a_glob(arg: str) -> bool:
    """The seed's form names files: a path, a pattern, or a .sql file; a bare word is a
    mistyped command (``pgpatch aply ...``), never taken for a glob."""
    import os

    return (any(c in arg for c in "/*?[" + os.sep) or arg.lower().endswith(".sql")
            or os.path.exists(arg))


# --- the config file (cli/configfile.py finds it, core/config.py checks it)

CONFIG_KEY = "pgpatch.config"
"""ctx.meta's key for the Config in use (None: no file)."""

CONFIG = click.option(
    "--config", "config_file", metavar="FILE", expose_value=False,
    help="The config file (docs/config.md); replaces the search for pgpatch.toml or "
         "[tool.pgpatch] in pyproject.toml from the working directory up.")
"""Read before the command's options (PatchGroup.parse_args), so only declared here."""


def _given_config(args: list[str]) -> str | None:
    """The value of --config anywhere on the line (before or after the command's name)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _read_config(ctx: click.Context, args: list[str], commands: Any) -> None:
    """Check the whole config file whatever the command, and make its options the
    commands' defaults (click: command line > environment > default_map > default). A bad
    file is one ``error:`` line and exit 2; ``--help`` and completion never stop on it."""
    if any(a in ("--help", "-h", "--version") for a in args):
        return  # help shows the built-in defaults, and works whatever the file holds
    from postgresqlpatches.cli.configfile import load_config, option_defaults
    from postgresqlpatches.errors import PgpatchError

    try:
        config = load_config(_given_config(args))
    except PgpatchError as e:
        if ctx.resilient_parsing:
            return
        from postgresqlpatches.core.redact import redact

        if _wants_json(args):  # a usage error's document, as for a bad option
            from postgresqlpatches.cli import render

            render.dump_json(render.usage_error_json(
                e, next((a for a in args if a in commands), None)))
        click.echo(redact(f"error: {e}"), err=True)
        if e.hint:
            click.echo(redact(f"hint: {e.hint}"), err=True)
        ctx.exit(e.exit_code)
    ctx.meta[CONFIG_KEY] = config
    if config is not None:
        defaults = option_defaults(config, os.environ)
        ctx.default_map = {name: dict(defaults) for name in commands}


def _configured(globs: tuple[str, ...]) -> tuple[str, ...]:
    """The globs given, else the config file's ``patches``."""
    from postgresqlpatches.cli.configfile import patch_globs

    config = click.get_current_context().meta.get(CONFIG_KEY)
    return globs or (patch_globs(config) if config is not None else ())


def _groups() -> dict[str, tuple[str, ...]]:
    """The config file's database groups (``@NAME`` patches), none without a file."""
    config = click.get_current_context().meta.get(CONFIG_KEY)
    return dict(config.groups) if config is not None else {}


# --- targets: -t/--target, --jobs, --fail-fast (fleet.py runs them, render.py shows them)

JOBS_HELP = "With targets: up to N targets at once (default 4)."
APPLY_JOBS_HELP = ("Up to N databases of a group at once on the server (default 1: one after "
                   "another), each through its pending patches in order; with targets: up to "
                   "N targets at once (default 4), a group's databases one at a time in each.")


def target_options(func: Callable[..., Any], jobs_help: str = JOBS_HELP) -> Callable[..., Any]:
    """-t/--target and --jobs: plan, apply, status and rehearse on the
    config file's [targets.NAME]."""
    options = [
        click.option("-t", "--target", "target_names", multiple=True, metavar="NAME",
                     help="Run on this target of the config file ([targets.NAME]; repeatable; "
                          "all: every target, in the file's order), each with its own lock, "
                          "plan and result (default: the file's `target` key, else the "
                          "server of --host/--port and the environment)."),
        click.option("--jobs", type=click.IntRange(1), default=None, metavar="N",
                     help=jobs_help),
    ]
    for option in reversed(options):
        func = option(func)
    return func


TARGET_FAIL_FAST = click.option(
    "--fail-fast", is_flag=True,
    help="With targets: start nothing new after the first target fails.")
"""plan's, status's and rehearse's --fail-fast; apply's is FAIL_FAST (groups and targets
alike)."""


def _targets(kw: dict[str, Any], options: Any, *, offline: bool = False,
             members: bool = False) -> tuple[list[Any], int, bool] | None:
    """The targets this command runs on (fleet.Target, each with ``options`` and its own
    server), --jobs and --fail-fast; or None to run on the one server as without targets.
    Mistakes are usage errors: a name the config file does not define, --host/--port
    beside targets, --jobs or --fail-fast without them (``members``: apply's --jobs, a
    group's databases at once, goes without targets)."""
    ctx = click.get_current_context()
    names = kw.pop("target_names")
    # apply's --fail-fast (FAIL_FAST) is in options and means something without targets too
    own_fail_fast = "fail_fast" in kw
    jobs, fail_fast = kw.pop("jobs"), kw.pop("fail_fast", options.fail_fast)
    config = ctx.meta.get(CONFIG_KEY)
    if not names and config is not None:
        names = config.default_targets
    given = {p: ctx.get_parameter_source(p) is click.core.ParameterSource.COMMANDLINE
             for p in ("host", "port", "jobs", "fail_fast")}
    if not names:
        for param, option in (("jobs", "--jobs"), ("fail_fast", "--fail-fast")):
            if given[param] and (param == "jobs" and not members or own_fail_fast):
                raise click.UsageError(f"{option} goes with -t/--target")
        return None
    from postgresqlpatches import fleet  # its threads are a fleet's only

    jobs = fleet.DEFAULT_JOBS if jobs is None else jobs
    if offline:
        raise click.UsageError("-t/--target does not go with --offline (no server is asked)")
    for param in ("host", "port"):
        if given[param]:
            raise click.UsageError(f"--{param} does not go with -t/--target: each target has "
                                   f"its own {param} in {config.path if config else 'the config'}")
    if config is None:
        raise click.UsageError("-t/--target: there is no config file to define targets "
                               "(pgpatch.toml, [tool.pgpatch] in pyproject.toml, or --config)")
    try:
        chosen = fleet.select_targets(list(config.targets), names, config.path)
    except fleet.UnknownTarget as e:
        raise click.UsageError(e.message) from None
    return [fleet.make_target(config.targets[name], options) for name in chosen], jobs, fail_fast


def _fleet_exit(results: list[Any], pending_exit: bool = False) -> NoReturn:
    """1 when any target failed; with plan --exit-code 3 when all are valid and any has
    patches to run."""
    if not all(r.ok for r in results):
        sys.exit(EXIT_PROBLEMS)
    pending = any(r.plan is not None and r.plan.pending for r in results)
    sys.exit(EXIT_PENDING if pending_exit and pending else EXIT_OK)


def _run_on_targets(command: str, run: tuple[list[Any], int, bool], fmt: str,
                    detailed_exit_code: bool = False, **rehearsal: Any) -> NoReturn:
    """The command on each target, then one grouped result, its summary and the exit code.

    ``rehearsal``: rehearse's own options (data, data_limit_mb)."""
    from postgresqlpatches import fleet
    from postgresqlpatches.cli import render

    targets, jobs, fail_fast = run
    how: dict[str, Any] = {"jobs": jobs, "fail_fast": fail_fast}
    if command == "apply":
        progress = render.FleetProgress(quiet=fmt == "json")
        results = fleet.apply(targets, reporter_for=progress.reporter, **how)
        if fmt == "json":
            render.dump_json(render.fleet_apply_json(results))
        else:
            render.print_fleet_apply(results)
    elif command == "rehearse":
        results = fleet.rehearse(targets, **how, **rehearsal)
        if fmt == "json":
            render.dump_json(render.fleet_rehearsal_json(results))
        else:
            render.print_fleet_rehearsal(results)
    elif command == "plan":
        results = fleet.plan(targets, **how)
        if fmt == "json":
            render.dump_json(render.fleet_plan_json(results))
        else:
            render.print_fleet_plan(results)
    else:
        results = fleet.status(targets, **how)
        if fmt == "json":
            render.dump_json(render.fleet_status_json(results))
        else:
            render.print_fleet_status(results)
    _fleet_exit(results, detailed_exit_code)


LOG_LEVEL = click.option("-l", "--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
                         default="warning", show_default=True, help="How much to log on stderr.")


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes after its name; PGHOST/PGPORT etc. work as in libpq."""
    options = [
        LOG_LEVEL,
        CONFIG,
        click.option("-p", "--prefix", default=DEFAULT_PREFIX, show_default=True,
                     metavar="PREFIX",
                     help="Passwords come from {PREFIX}{USER}_PASSWORD (a missing _ is added)."),
        click.option("--host", metavar="HOST", callback=_checked_host,
                     help="Server host name, IP address or socket folder (default: PGHOST, "
                          "libpq's); not a connection URI."),
        click.option("--port", type=click.IntRange(1, 65535), metavar="PORT",
                     help="Server port (default: PGPORT, libpq's)."),
        click.option("--state-db", default="patches", show_default=True, metavar="NAME",
                     callback=_identifier("state database"),
                     help="The database that records what ran."),
        click.option("--strict-passwords", is_flag=True,
                     help="A role without its {PREFIX}{ROLE}_PASSWORD is a problem that stops "
                          "the run before anything runs (default: a warning, and the role's "
                          "name is its password)."),
        ADMIN_USER,
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        _setup_logging(kwargs["log_level"])
        try:
            return func(**kwargs)
        except KeyboardInterrupt as e:  # Ctrl-C outside apply's patches (_json_failure)
            _fail(_interrupted(e), kwargs["log_level"])
        except Exception as e:  # the one place that turns errors into a line and an exit code
            _fail(e, kwargs["log_level"])

    return wrapper


def _checked_host(_ctx: click.Context, _param: click.Parameter,
                  value: str | None) -> str | None:
    """A URI given as --host would reach error lines with its password: refused, unechoed."""
    from postgresqlpatches.pg.server import host_problem

    reason = host_problem(value) if value is not None else None
    if reason:
        raise click.BadParameter(f"expected {reason}")
    return value


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LevelFormatter())
    log.handlers[:] = [handler]
    trace = level.lower() == "trace"
    log.setLevel("DEBUG" if trace else level.upper())
    log.propagate = False
    # psycopg's own notes (e.g. a pipeline it could not close on a lost connection) repeat
    # what our error line says, and its debug lines are connection chatter: its warnings
    # with -l debug, everything with -l trace, else nothing
    driver = logging.getLogger("psycopg")
    driver.handlers[:] = [handler]
    driver.setLevel(logging.DEBUG if trace else logging.WARNING if level.lower() == "debug"
                    else logging.CRITICAL + 1)
    driver.propagate = False


class _LevelFormatter(logging.Formatter):
    """Every log line, at every level, without a password (psql and the server quote
    statements back)."""

    def format(self, record: logging.LogRecord) -> str:
        from postgresqlpatches.core.redact import redact

        source = "" if record.name.startswith("pgpatch") else f"{record.name}: "
        return f"{record.levelname.lower()}: {source}{redact(record.getMessage())}"


def _fail(e: Exception, level: str) -> None:
    """The one place errors become an ``error:`` line, an optional ``hint:`` and the exit code.

    pg/ turns every driver error into a PgpatchError (a ``ServerError`` when no step made a
    more specific one), so the CLI knows the project's errors only. The one fallback is for
    an exception nobody foresaw (a bug): one line naming its type, then the traceback with
    ``-l debug``, else a hint to run so; exit 1."""
    from postgresqlpatches.core.redact import redact
    from postgresqlpatches.errors import PgpatchError, ServerError

    if isinstance(e, click.exceptions.Exit | click.ClickException | click.Abort):
        raise e
    if isinstance(e, PgpatchError) and not isinstance(e, ServerError):
        click.echo(redact(f"error: {e}"), err=True)
        if e.hint:
            click.echo(redact(f"hint: {e.hint}"), err=True)
        if level in ("debug", "trace"):
            log.debug("traceback", exc_info=e)
        sys.exit(e.exit_code)
    if isinstance(e, ServerError):  # the server said no where no step expected it
        click.echo(redact(f"error: {e}"), err=True)
    else:  # the fallback: not the project's error, so pgpatch has a bug
        click.echo(redact(f"error: unexpected {type(e).__name__}: {e}"), err=True)
    if level in ("debug", "trace"):
        import traceback

        click.echo(redact("".join(traceback.format_exception(e))).rstrip("\n"), err=True)
    else:
        click.echo("hint: run with -l debug for the traceback", err=True)
    sys.exit(1)


def _options(kwargs: dict[str, Any], globs: tuple[str, ...] = (), **extra: Any) -> Any:
    from postgresqlpatches.runner import Options

    return Options(globs=globs, host=kwargs["host"], port=kwargs["port"],
                   prefix=kwargs["prefix"], state_db=kwargs["state_db"],
                   strict_passwords=kwargs["strict_passwords"],
                   admin_user=kwargs.get("admin_user") or "postgres", groups=_groups(),
                   **extra)


def _identifier(what: str) -> Callable[[click.Context, click.Parameter, str], str]:
    """A parameter that names a database: a bad name is a usage error (exit 2), as click's."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
        from postgresqlpatches.core.naming import check_identifier

        reason = check_identifier(value, what)
        if reason:
            raise click.BadParameter(reason)
        return value

    return check


ADMIN_USER = click.option(
    "--admin-user", "admin_user", default="postgres", show_default=True, metavar="ROLE",
    envvar="PGPATCH_ADMIN_USER", show_envvar=True,
    callback=_identifier("admin role"),
    help="The role of the maintenance connection (the lock, pg_database, creating and "
         "dropping databases, the state database's bootstrap); a managed service's admin "
         "needs no SUPERUSER (docs/managed.md). Patch files still run as the user in their "
         "names.")


class _FormatChoice(click.Choice):  # type: ignore[type-arg]
    """table|json on every command; ``text``, apply's old spelling of table, still works."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        return super().convert("table" if value == "text" else value, param, ctx)


FORMAT = click.option("--format", "fmt", type=_FormatChoice(["table", "json"]), default="table",
                      show_default=True,
                      help="table: rich on a terminal, plain text when piped (text: the same); "
                           "json: one JSON document on stdout, also when the command fails "
                           "(docs/json.md).")


@contextlib.contextmanager
def _json_failure(fmt: str, document: Callable[[BaseException], dict[str, Any]]
                  ) -> Iterator[None]:
    """With --format json, a command that fails still prints its one document (``document``
    of the error); the error line and exit code follow as without (common_options). Ctrl-C
    is an error of its own here (Interrupted), not click's bare "Aborted!"."""
    try:
        yield
    except click.ClickException:
        raise  # a usage error: its document is PatchGroup's
    except (Exception, KeyboardInterrupt) as e:
        error = _interrupted(e) if isinstance(e, KeyboardInterrupt) else e
        if fmt == "json":
            from postgresqlpatches.cli import render

            render.dump_json(document(error))
        if error is e:
            raise
        raise error from e


def _interrupted(e: BaseException) -> Exception:
    """Ctrl-C outside an apply's patches (those say what became of them: stopped.stopped_error)."""
    from postgresqlpatches.errors import Interrupted

    return Interrupted("interrupted (Ctrl-C)", hint="run the command again")
# a Path type only for shell completion: the shell offers files and folders; pgpatch expands
GLOBS = click.argument("globs", nargs=-1, metavar="GLOB...", type=click.Path())
ADOPT = click.option(
    "--adopt", is_flag=True,
    help="Take a database that holds objects but has no record in the state database as it "
         "is: its pending patches run, recorded from then on. Without it that is a problem "
         "(unrecorded-database): a lost or mistyped state database would run everything "
         "again.")


@click.group(cls=PatchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version of this build and exit.",
)
def main() -> None:
    """Run PostgreSQL patch files exactly once, in name order, as the user in their name.

    Files are named DATABASE.YYYYMMDD.NNNN.USER.DESCRIPTION.sql; the record of what ran is
    kept in the state database (default: patches). Connection settings follow libpq
    (PGHOST, PGPORT, PGSSLMODE, ...); passwords come from POSTGRESQL_<USER>_PASSWORD.

    `pgpatch GLOB...` (the original tool's form) means `pgpatch apply GLOB...`.
    """


def run() -> None:
    """The console entry point (``pgpatch``, ``python -m postgresqlpatches``): main()
    without the cycle collector, the process's last act. pgpatch's objects are freed by
    reference counting (about 500 cyclic ones in a run of 1000 patches); the collector
    would walk the plan's parse trees again and again while they pile up, and every object
    of the run once more at exit (gc.freeze keeps them out of that last walk): 0.03-0.07 s
    of planning 1000 files, 25-50 ms of a 0.2 s no-op over 1000 files (30 alternating
    runs). main() itself, as tests and other in-process callers use it, leaves the
    collector alone."""
    gc.disable()
    restore = _guard_std_streams()
    try:
        main()
    finally:
        restore()
        gc.freeze()


class _DroppingFile(io.FileIO):
    """fd 1 or 2 for a reader that may go away (``pgpatch apply | head -1``): the first write
    that finds the pipe closed points the fd at /dev/null, so the run goes on to its own end
    and exit code, and what cannot be written is dropped."""

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except BrokenPipeError:
            _point_at_devnull(self.fileno())
            return memoryview(data).nbytes


def _point_at_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    if devnull != fd:
        os.dup2(devnull, fd)
        os.close(devnull)


def _guard_std_streams() -> Callable[[], None]:
    """stdout and stderr of the process, made safe from a closed reader; returns the undo.

    A closed fd 1 or 2 (``>&-``) gets /dev/null first: else the next connection's socket
    would take its number, and whatever is written "to stdout" would go to the server. Streams
    a caller has replaced (a test's capture) are left alone.
    """
    saved: list[tuple[str, Any, io.TextIOWrapper]] = []
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        if old is not getattr(sys, f"__{name}__"):
            continue
        try:
            os.fstat(fd)
        except OSError:
            _point_at_devnull(fd)
        raw = _DroppingFile(fd, "w", closefd=False)
        buffered = old is None or isinstance(getattr(old, "buffer", None), io.BufferedWriter)
        new = io.TextIOWrapper(
            io.BufferedWriter(raw) if buffered else raw,  # type: ignore[arg-type]
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors=getattr(old, "errors", None) or "backslashreplace",
            line_buffering=getattr(old, "line_buffering", False),
            write_through=getattr(old, "write_through", False))
        setattr(sys, name, new)
        saved.append((name, old, new))

    def restore() -> None:
        for name, old, new in saved:
            new.flush()  # a closed reader costs nothing here either
            setattr(sys, name, old)

    return restore


EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_PENDING = 3
"""plan --exit-code: the plan is valid and has patches to run (click keeps 2 for usage errors)."""

LINT_MODES = ("error", "warn", "off")  # planner.LINT_MODES, spelled here to keep --help fast
# core/locks.py's defaults, spelled here to keep --help fast (a unit test compares them)
LOCK_TIMEOUT_MS = 1000
LOCK_RETRIES = 5
CONCURRENT_LOCK_TIMEOUT_MS = 600_000


# --- database groups: a failing database stops only itself, unless --fail-fast

FAIL_FAST = click.option(
    "--fail-fast", is_flag=True,
    help="Stop the whole run at the first failed patch, also on a database of a group "
         "(default: a group's failing database stops only its own later patches, the "
         "others go on; exit 1 either way). With targets: no target starts after the first "
         "one fails, and running targets stop before their next patch.")


def lint_option(what: str) -> Callable[..., Any]:
    return click.option(
        "--lint", type=click.Choice(LINT_MODES), default="warn", show_default=True,
        help=f"Dangerous DDL in pending patches (docs/lint.md). warn: show it and {what}; "
             "error: each finding is a problem (exit 1, nothing runs); off: do not lint.")


@main.command()
@GLOBS
@FORMAT
@click.option("--offline", is_flag=True,
              help="No server: check the files alone (names, duplicates, SQL, meta-commands, "
                   "lint) and show the order they would run in on an empty server.")
@lint_option("exit 0")
@click.option("--exit-code", "detailed_exit_code", is_flag=True,
              help=f"Exit {EXIT_PENDING} when the plan is valid and has patches to run, "
                   f"{EXIT_OK} only when there is nothing to do.")
@click.option("--allow-out-of-order", is_flag=True,
              help="Plan patches older than the newest applied one instead of refusing them.")
@ADOPT
@click.option("--sql", "show_sql", is_flag=True,
              help="Print the SQL apply would send, in order: for each pending patch a "
                   "comment header (database, user, one transaction or statement by "
                   "statement, psql) and its statements. Not with --format json.")
@target_options
@TARGET_FAIL_FAST
@common_options
def plan(globs: tuple[str, ...], fmt: str, offline: bool, lint: str, detailed_exit_code: bool,
         allow_out_of_order: bool, adopt: bool, show_sql: bool = False, **kw: Any) -> None:
    """Show what apply would do, in order. Read-only: creates nothing, not even the state database.

    With --offline no server is needed: a database with a 0000 baseline in the tree is taken
    as new (built from its scripts), any other as existing with nothing applied, so every file
    is parsed and checked. Applied-patch checks (changed, out-of-order) need the server.

    \b
    Exit status:
      0  the plan is valid (with --exit-code: valid, nothing to do)
      1  the plan has problems, or the server cannot be reached
      2  usage error (a bad option)
      3  with --exit-code: the plan is valid and has patches to run
    """
    from postgresqlpatches import runner
    from postgresqlpatches.cli import render

    globs = _configured(globs)
    _require_globs(globs)
    if show_sql and fmt == "json":
        raise click.UsageError("--sql prints SQL text: it does not combine with --format json")
    options = _options(kw, globs, allow_out_of_order=allow_out_of_order, lint=lint,
                       adopt=adopt)
    fleet_run = _targets(kw, options, offline=offline)
    if fleet_run is not None:
        _run_on_targets("plan", fleet_run, fmt, detailed_exit_code)
    with _json_failure(fmt, lambda e: render.plan_failure_json(e, offline=offline, lint=lint)):
        the_plan = runner.plan_offline(options) if offline else runner.plan(options)
    if show_sql:
        render.print_plan_sql(the_plan, options.state_db)
    elif fmt == "json":
        render.dump_json(dict(render.plan_json(the_plan, offline=offline), error=None))
    else:
        render.print_plan(the_plan)
    if not the_plan.ok:
        sys.exit(EXIT_PROBLEMS)
    sys.exit(EXIT_PENDING if detailed_exit_code and the_plan.pending else EXIT_OK)


@main.command()
@GLOBS
@click.option("--allow-out-of-order", is_flag=True,
              help="Apply patches older than the newest applied one of their database.")
@click.option("--lock-wait", type=click.FloatRange(0), default=600, show_default=True,
              metavar="SECONDS", help="How long to wait for another run's lock.")
@click.option("--lock-timeout", type=click.IntRange(0), metavar="MS", default=LOCK_TIMEOUT_MS,
              show_default=True,
              help="lock_timeout for patch sessions: the longest a patch waiting for a lock "
                   "holds up the queries queued behind it, per try; 0: no limit.")
@click.option("--lock-retries", type=click.IntRange(0), metavar="N", default=LOCK_RETRIES,
              show_default=True,
              help="New tries of a patch that hit lock_timeout (rolled back, then run again "
                   "after a backoff with jitter); 0: fail at once.")
@click.option("--concurrent-lock-timeout", type=click.IntRange(0), metavar="MS",
              default=CONCURRENT_LOCK_TIMEOUT_MS, show_default=True,
              help="lock_timeout for CREATE INDEX CONCURRENTLY and the other CONCURRENTLY "
                   "statements, which wait for older transactions without holding up "
                   "others; they are not retried; 0: no limit.")
@click.option("--statement-timeout", type=click.IntRange(0), metavar="MS",
              help="statement_timeout for patch sessions (default: off, the server's).")
@FORMAT
@lint_option("apply anyway")
@ADOPT
@FAIL_FAST
@functools.partial(target_options, jobs_help=APPLY_JOBS_HELP)
@common_options
def apply(globs: tuple[str, ...], allow_out_of_order: bool, lock_wait: float,
          lock_timeout: int, lock_retries: int, concurrent_lock_timeout: int,
          statement_timeout: int | None, fmt: str, lint: str, adopt: bool, fail_fast: bool,
          **kw: Any) -> None:
    """Apply every pending patch, each exactly once, in name order.

    Lint findings are printed on stderr before anything runs. Every run ends with what it
    applied; one that stops also with what failed and what is left pending.
    """
    from postgresqlpatches import runner
    from postgresqlpatches.cli import render

    globs = _configured(globs)
    _require_globs(globs)
    options = _options(kw, globs, allow_out_of_order=allow_out_of_order, lock_wait=lock_wait,
                       lock_timeout_ms=lock_timeout, statement_timeout_ms=statement_timeout,
                       lint=lint, adopt=adopt, lock_retries=lock_retries,
                       concurrent_lock_timeout_ms=concurrent_lock_timeout, fail_fast=fail_fast)
    jobs = kw["jobs"]
    fleet_run = _targets(kw, options, members=True)
    if fleet_run is not None:
        _run_on_targets("apply", fleet_run, fmt)
    if jobs is not None:  # no targets: a group's databases at once (members.py)
        options = dataclasses.replace(options, jobs=jobs)
    reporter = render.ConsoleReporter(quiet=fmt == "json")
    try:
        with _json_failure(fmt, lambda e: render.apply_json_of(_partial(e), e)):
            try:
                result = runner.apply(options, reporter)
            finally:
                reporter.close()
    except (Exception, KeyboardInterrupt) as e:
        if fmt != "json" and not isinstance(e, click.ClickException):
            click.echo(render.apply_stopped_summary(_partial(e)))
        raise
    if fmt == "json":
        render.dump_json(render.apply_json(result))
    else:
        click.echo(render.apply_summary(result))


def _partial(e: BaseException) -> Any:
    """What an apply that stopped with ``e`` ran (stopped.stopped_error), or None before a plan."""
    result = getattr(e, "result", None)
    if result is None and getattr(e, "plan", None) is not None:  # refused before the lock
        from postgresqlpatches.runner import ApplyResult

        result = ApplyResult(e.plan)  # type: ignore[attr-defined]
    return result


@main.command()
@click.argument("globs", nargs=-1, metavar="[GLOB]...", type=click.Path())
@FORMAT
@target_options
@TARGET_FAIL_FAST
@common_options
def status(globs: tuple[str, ...], fmt: str, **kw: Any) -> None:
    """What the state database says ran: when, as whom, how long, run by whom, which pgpatch.

    With GLOBs also what is pending or changed (exit 1 when the plan has problems).
    """
    from postgresqlpatches import runner
    from postgresqlpatches.cli import render

    options = _options(kw, _configured(globs))
    fleet_run = _targets(kw, options)
    if fleet_run is not None:
        _run_on_targets("status", fleet_run, fmt)
    with _json_failure(fmt, render.status_failure_json):
        st = runner.status(options)
    if fmt == "json":
        render.dump_json(render.status_json(st))
    else:
        render.print_status(st)
    sys.exit(0 if st.plan is None or st.plan.ok else 1)


@main.command()
@click.argument("database", callback=_identifier("database"))
@click.option("--output-dir", required=True, type=click.Path(file_okay=False),
              help="Where to write DATABASE.00000000.0000.postgres.baseline.sql.")
@click.option("--schema-only", is_flag=True, help="The schema without any rows.")
@click.option("--data-for", "data_for", multiple=True, metavar="PATTERN",
              help="The schema, and the rows of the tables PATTERN matches only (a pattern as "
                   "pg_dump's --table; repeatable).")
@FORMAT
@common_options
def baseline(database: str, output_dir: str, schema_only: bool, data_for: tuple[str, ...],
             fmt: str, **kw: Any) -> None:
    """Write a baseline of a live database from pg_dump and record it as applied.

    Empty servers are then built from the file; this server goes on from here. By default
    the file holds every row (pg_dump --create); a production database's rows and personal
    data rarely belong in a repository: use --schema-only or --data-for. The roles the
    database refers to come first, each created only where missing, with their attributes,
    memberships and settings; passwords are read from the environment when the file runs.
    """
    from postgresqlpatches import baseline as baseline_module
    from postgresqlpatches.cli import render

    if schema_only and data_for:
        raise click.UsageError("--schema-only and --data-for exclude each other")
    with _json_failure(fmt, lambda e: render.baseline_json(database, error=e)):
        written = baseline_module.write_baseline(_options(kw), database, output_dir,
                                                 schema_only=schema_only, data_for=data_for)
    if fmt == "json":
        render.dump_json(render.baseline_json(database, written))
    else:
        click.echo(written.summary())


@main.command()
@click.argument("database")
@click.argument("user")
@click.argument("description")
@click.option("--dir", "directory", default=".", show_default=True,
              type=click.Path(file_okay=False), help="The folder to write the file in.")
@click.option("--repeatable", is_flag=True,
              help="A repeatable patch (major 99999999): it runs after the database's "
                   "versioned patches whenever it is new or changed (views, functions, grants).")
@LOG_LEVEL
@CONFIG
def new(database: str, user: str, description: str, directory: str, log_level: str,
        repeatable: bool = False) -> None:
    """Create the next correctly named patch file and print its path.

    The name is DATABASE.<today>.<next free minor>.USER.DESCRIPTION.sql. Today is the
    local date; the minor is one above the highest used for DATABASE and today by files in
    --dir and its subfolders (hidden folders skipped). Never overwrites a file.
    """
    from postgresqlpatches.cli.scaffold import create_patch
    from postgresqlpatches.errors import PgpatchError

    _setup_logging(log_level)
    try:
        click.echo(create_patch(database, user, description, directory,
                                repeatable=repeatable))
    except PgpatchError as e:
        _fail(e, log_level)


@main.command()
@click.argument("database", callback=_identifier("database"))
@click.option("--lock-wait", type=click.FloatRange(0), default=600, show_default=True,
              metavar="SECONDS", help="How long to wait for another run's lock.")
@FORMAT
@common_options
def forget(database: str, lock_wait: float, fmt: str, **kw: Any) -> None:
    """Forget the records of a database that was dropped, so that it is built anew.

    Refused while the database exists.
    """
    from postgresqlpatches import runner
    from postgresqlpatches.cli import render

    with _json_failure(fmt, lambda e: render.forget_json(database, None, e)):
        n = runner.forget(_options(kw, lock_wait=lock_wait), database)
    if fmt == "json":
        render.dump_json(render.forget_json(database, n))
    else:
        click.echo(f"forgot {n} record{'s' * (n != 1)} of {database}")


@main.command()
@click.option("--keep", is_flag=True, help="Leave the server running and print how to reach it.")
@LOG_LEVEL
def demo(keep: bool, log_level: str) -> None:
    """Run the example end to end on a throwaway server: plan, apply, status, stop.

    The server is the demo's own, so it takes no connection options.
    """
    from postgresqlpatches.cli import demo as demo_module

    _setup_logging(log_level)
    try:
        demo_module.run(keep=keep)
    except Exception as e:
        _fail(e, log_level)


@main.command()
@GLOBS
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: the rehearsal as one JSON document on stdout.")
@click.option("--offline", is_flag=True,
              help="No live server: build every database from the tree (bootstraps, then "
                   "every patch) on a throwaway server: the CI gate that the whole tree "
                   "builds.")
@click.option("--major", type=click.IntRange(10), metavar="N",
              help="With --offline: the PostgreSQL major to build on (default: the newest "
                   "one installed).")
@click.option("--data", is_flag=True,
              help="Copy the rows too, of each database up to --data-limit, to catch what "
                   "depends on data (NOT NULL over nulls, a unique index over duplicates).")
@click.option("--data-limit", type=click.IntRange(0), default=100, show_default=True,
              metavar="MB", help="With --data: a larger database is copied as its schema.")
@lint_option("rehearse anyway")
@click.option("--allow-out-of-order", is_flag=True,
              help="Rehearse patches older than the newest applied one of their database.")
@ADOPT
@target_options
@TARGET_FAIL_FAST
@common_options
def rehearse(globs: tuple[str, ...], fmt: str, offline: bool, major: int | None, data: bool,
             data_limit: int, lint: str, allow_out_of_order: bool, adopt: bool,
             **kw: Any) -> None:
    """Run the pending patches on a throwaway copy of the live schema first.

    Reads the live server and never writes to it (its sessions are read-only); copies the
    roles (without passwords) and the schema of each database with pending patches into a
    throwaway server of the same major, with the state database's records; runs the
    pending patches there as apply would; reports per patch ran or failed, its time, and
    per statement the locks it took and the tables it rewrote. The throwaway server lives
    under TMPDIR and is always removed. With -t each target is rehearsed on a copy of its
    own. See docs/rehearse.md.

    \b
    Exit status:
      0  every pending patch ran on the copy (with -t: on every target's copy)
      1  a patch failed, the plan has problems, the copy could not be made, or
         (with -t) a target failed
      2  usage error (a bad option)
    """
    from postgresqlpatches import rehearse as rehearse_module
    from postgresqlpatches.cli import render

    globs = _configured(globs)
    _require_globs(globs)
    if major is not None and not offline:
        raise click.UsageError("--major goes with --offline: a rehearsal of a live server "
                               "runs on that server's major")
    if data and offline:
        raise click.UsageError("--data copies a live server's rows: not with --offline")
    options = _options(kw, globs, allow_out_of_order=allow_out_of_order, lint=lint,
                       adopt=adopt)
    fleet_run = _targets(kw, options, offline=offline)
    if fleet_run is not None:
        _run_on_targets("rehearse", fleet_run, fmt, data=data, data_limit_mb=data_limit)
    # SIGTERM as Ctrl-C from here on: a cancelled CI job still gets its document
    with rehearse_module.interruptible(), _json_failure(
            fmt, lambda e: render.rehearsal_failure_json(e, offline=offline)):
        result = rehearse_module.rehearse(options, offline=offline, data=data, major=major,
                                          data_limit_mb=data_limit)
    if fmt == "json":
        render.dump_json(render.rehearsal_json(result))
    else:
        render.print_rehearsal(result)
    sys.exit(EXIT_OK if result.ok else EXIT_PROBLEMS)


def _require_globs(globs: tuple[str, ...]) -> None:
    if not globs:
        raise click.UsageError("give at least one GLOB of patch files, e.g. 'patches/**/*.sql' "
                               "(or `patches` in the config file)")


if __name__ == "__main__":
    main()
