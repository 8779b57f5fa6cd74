"""Run ``jake iq`` on a requirements file with the Nexus IQ credentials from the environment.

jake takes its password only as ``-p PASSWORD``, which every user of the machine can read in
the process list. Here jake runs inside this process: its argument vector is built in memory,
and the command line shows only ``jake_iq.py REQUIREMENTS``. Never add jake's ``-X``: its debug
output prints the parsed arguments, password included.

    NEXUS_IQ_URL=https://iq.example NEXUS_IQ_APPLICATION=pgpatch \
    NEXUS_IQ_USERNAME=... NEXUS_IQ_PASSWORD=... python jake_iq.py requirements.txt

``NEXUS_IQ_STAGE`` (default ``build``) is the stage of the report.
"""

from __future__ import annotations

import os
import sys

REQUIRED = ("NEXUS_IQ_URL", "NEXUS_IQ_APPLICATION", "NEXUS_IQ_USERNAME", "NEXUS_IQ_PASSWORD")


def jake_arguments(requirements: str, environ: dict[str, str]) -> list[str]:
    """jake's argv for an IQ scan of ``requirements``; raises SystemExit naming what is unset."""
    missing = [name for name in REQUIRED if not environ.get(name)]
    if missing:
        raise SystemExit(f"error: set {', '.join(missing)} for a Nexus IQ scan")
    return [
        "jake",
        "iq",
        "--server-url", environ["NEXUS_IQ_URL"],
        "--application-id", environ["NEXUS_IQ_APPLICATION"],
        "--username", environ["NEXUS_IQ_USERNAME"],
        "--password", environ["NEXUS_IQ_PASSWORD"],
        "--stage", environ.get("NEXUS_IQ_STAGE", "build"),
        "--input-type", "PIP",
        "--input-file", requirements,
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: jake_iq.py REQUIREMENTS", file=sys.stderr)
        return 2
    sys.argv = jake_arguments(argv[0], dict(os.environ))
    from jake.app import main as jake_main  # imported late: only the IQ scan needs jake

    result = jake_main()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
