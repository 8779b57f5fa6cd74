"""Command line: parse options, call one runner function, render. No SQL here."""

import click


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the installed build's version, looked up only when asked."""
    if not value or ctx.resilient_parsing:
        return
    from postgresqlpatches import installed_version

    click.echo(f"pgpatch {installed_version()}")
    ctx.exit()


@click.group()
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version of this build and exit.",
)
def main() -> None:
    """Run PostgreSQL patch files exactly once, in name order."""
