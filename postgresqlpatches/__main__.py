"""``python -m postgresqlpatches``: the seed's entry point."""

from postgresqlpatches.cli import run

if __name__ == "__main__":
    run()
