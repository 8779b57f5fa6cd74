"""pgpatch: run PostgreSQL patch files exactly once, in name order."""

__version__ = "0.1.0"
