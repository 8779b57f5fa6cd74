#!/bin/sh
# Reset the automation: stop the master if it runs, delete it and its venv, set up again.
#   cd autobuild && ./reset.sh          # then ./setup.sh runs by itself
# Builds, the state database and the poller's clone go; the git repository is untouched.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
master=$here/master_root/my_master
if [ -f "$master/twistd.pid" ] && [ -x "$here/venv/bin/buildbot" ]; then
    "$here/venv/bin/buildbot" stop "$master" || true
fi
rm -rf "$here/master_root" "$here/venv"
exec "$here/setup.sh"
