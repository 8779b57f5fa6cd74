"""The command line: the click group and its commands, rendering, the demo and ``new``.

``main`` (the click group) and ``run`` (the console script) live in ``commands``.
"""

from postgresqlpatches.cli.commands import main, run

__all__ = ["main", "run"]
