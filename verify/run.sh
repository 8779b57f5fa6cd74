#!/bin/sh
# run-postgresqlpatches: run the installed pgpatch on the example, twice. The first run builds
# the hundbidrag and patches databases; the second must find every patch applied.
#   sh verify/run.sh
# Server from PGHOST/PGPORT, passwords from POSTGRESQL_<USER>_PASSWORD, as pgpatch reads them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
venv=${PGPATCH_VERIFY_VENV:-$here/venv}
# A glob for pgpatch to expand, not the shell: it stays quoted below.
patches=${PGPATCH_VERIFY_PATCHES:-$repo/examples/hundbidrag/*.sql}

# Run where no source tree is, so python imports the installed wheel.
cd "$venv"
echo "== the seed's form: python -m postgresqlpatches -l debug GLOB"
"$venv/bin/python" -m postgresqlpatches -l debug "$patches"
echo "== again: nothing may run twice"
"$venv/bin/pgpatch" plan --format json "$patches" >"$venv/plan.json"
"$venv/bin/python" - "$venv/plan.json" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))
pending = [p["path"] for p in plan["patches"] if p["action"] != "applied"]
if plan["problems"] or pending or not plan["patches"]:
    sys.exit(f"error: after apply the plan is not all applied: {pending} {plan['problems']}")
print(f"all {len(plan['patches'])} patches recorded as applied")
PY
"$venv/bin/pgpatch" status
