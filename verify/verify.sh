#!/bin/sh
# scan: check what the wheel brought into the verify venv (install.sh) for known
# vulnerabilities. Scanning the build environment instead would report the build tools.
#   sh verify/verify.sh
# With NEXUS_IQ_USERNAME and NEXUS_IQ_PASSWORD set (and NEXUS_IQ_URL, NEXUS_IQ_APPLICATION):
# jake against Nexus IQ, credentials from the environment, never on a command line. Otherwise
# pip-audit (PIP_AUDIT_VULNERABILITY_SERVICE / PIP_AUDIT_OSV_URL choose its database).
# The scanners run from $PGPATCH_TOOLS_PYTHON (the build server's venv), not from the verify venv.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${PGPATCH_VERIFY_VENV:-$here/venv}
python=${PGPATCH_TOOLS_PYTHON:-python3}
reports=${PGPATCH_VERIFY_REPORTS:-$here/reports}

mkdir -p "$reports"
requirements=$reports/requirements.txt
# The wheel's own package is left out: it is on no public index under this version.
"$venv/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable \
    | grep -Eiv '^postgresqlpatches( |=|@)' >"$requirements" || true
echo "scanning $(wc -l <"$requirements") packages (listed in $requirements)"

if [ -n "${NEXUS_IQ_USERNAME:-}" ] && [ -n "${NEXUS_IQ_PASSWORD:-}" ]; then
    echo "scanner: jake, Nexus IQ at ${NEXUS_IQ_URL:-?}"
    exec "$python" "$here/jake_iq.py" "$requirements"
fi
echo "scanner: pip-audit (no Nexus IQ credentials set)"
exec "$python" -m pip_audit --requirement "$requirements" --no-deps --disable-pip \
    --progress-spinner off --desc on
