#!/bin/sh
# install-wheel: a fresh virtual environment holding the wheel and what it depends on, nothing
# else, so that run.sh tests the built package and verify.sh scans only what the wheel brings.
#   sh verify/install.sh dist/postgresqlpatches-X.Y.Z-py3-none-any.whl
# pip takes its index from its own configuration (PIP_INDEX_URL, pip.conf, PIP_FIND_LINKS ...).
set -eu
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: install.sh WHEEL (an existing .whl file)" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
wheel=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
venv=${PGPATCH_VERIFY_VENV:-$here/venv}
python=${PGPATCH_VERIFY_PYTHON:-python3}

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
# Outside any checkout, so that the installed package answers, not a source tree.
installed=$(cd "$venv" && "$venv/bin/pgpatch" --version)
echo "installed: $installed"
if [ -n "${PGPATCH_EXPECTED_VERSION:-}" ] && [ "$installed" != "pgpatch $PGPATCH_EXPECTED_VERSION" ]; then
    echo "error: expected pgpatch $PGPATCH_EXPECTED_VERSION" >&2
    exit 1
fi
