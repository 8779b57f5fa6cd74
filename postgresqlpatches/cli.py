"""Command line: parse options, call one runner function, render. No SQL here."""

import click

from postgresqlpatches import __version__


@click.group()
@click.version_option(__version__, prog_name="pgpatch")
def main() -> None:
    """Run PostgreSQL patch files exactly once, in name order."""
