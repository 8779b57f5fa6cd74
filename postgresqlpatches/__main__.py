"""``python -m postgresqlpatches``: the seed's entry point."""

from postgresqlpatches.cli import main

if __name__ == "__main__":
    main()
