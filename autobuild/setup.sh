#!/bin/sh
# Set up the build server of this repository: its own virtual environment (autobuild/venv)
# with the tools of pyproject's "autobuild" extra, and a buildbot master in
# autobuild/master_root/my_master whose master.cfg is a link to autobuild/master.cfg.
#   cd autobuild && ./setup.sh
# Run it again after a reset (README.md). It needs the PYTHON_POSTGRESQL_PATCHES_* variables
# only for its final check; it never prints their values.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
python=${PYTHON:-python3}
venv=$here/venv
master=$here/master_root/my_master

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# One list of tools, in pyproject.toml's [project.optional-dependencies].autobuild.
"$venv/bin/python" - "$repo/pyproject.toml" >"$venv/autobuild-requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["autobuild"]))
PY
echo "== installing the build tools"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$venv/autobuild-requirements.txt"
# jake talks to Nexus IQ; the scan falls back to pip-audit where it cannot be installed.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check jake \
    || echo "warning: jake did not install: scans will use pip-audit" >&2

if [ ! -f "$master/buildbot.tac" ]; then
    echo "== creating the buildbot master in $master"
    mkdir -p "$master"
    "$venv/bin/buildbot" create-master --relocatable "$master" >/dev/null
fi
rm -f "$master/master.cfg" "$master/master.cfg.sample"
ln -s "$here/master.cfg" "$master/master.cfg"

echo "== checking the configuration"
if (cd "$master" && "$venv/bin/buildbot" checkconfig .); then
    ok=yes
else
    ok=no
fi
cat <<EOT

Done. Next:
  1. Set the environment (autobuild/README.md, "Environment"): PYTHON_POSTGRESQL_PATCHES_BRANCHES,
     PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL, PYTHON_POSTGRESQL_PATCHES_WWW_USERNAME and
     _WWW_PASSWORD, TWINE_USERNAME/TWINE_PASSWORD, POSTGRESQL_*_PASSWORD, PGHOST/PGPORT,
     and NEXUS_IQ_* for jake.
  2. Check it:   $venv/bin/buildbot checkconfig $master
  3. Start it:   $venv/bin/buildbot start $master
     Stop it:    $venv/bin/buildbot stop $master
  4. Web UI:     http://localhost:\${PYTHON_POSTGRESQL_PATCHES_WWW_PORT:-8010}/ (log in first)
EOT
if [ "$ok" = no ]; then
    echo "The configuration check failed (above): fix the environment, then step 2." >&2
    exit 1
fi
