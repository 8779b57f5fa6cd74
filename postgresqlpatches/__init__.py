"""pgpatch: run PostgreSQL patch files exactly once, in name order."""

# The release version, in this one place. Builds off master add the commit time as a local
# label (hatch_build.py); the version of what is installed is installed_version().
__version__ = "0.1.0"

DEFAULT_PREFIX = "POSTGRESQL_"
"""Passwords come from ``{PREFIX}{USER}_PASSWORD``: the prefix's default, in this one place
(the CLI's option, the runner's Options and the throwaway server's environment)."""


def installed_version() -> str:
    """The built version (``0.1.0+20250101120000`` off master), from the installed metadata.

    Looked up only when asked, so that importing the package stays cheap; a source tree that
    was never installed falls back to the release version.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("postgresqlpatches")
    except PackageNotFoundError:
        return __version__
