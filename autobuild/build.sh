#!/bin/sh
# python-build: the wheel and sdist of this checkout, in dist/ (emptied first).
#   sh autobuild/build.sh
# The version comes from hatch_build.py: the branch is $PGPATCH_BUILD_BRANCH (buildbot sets it:
# its checkout is a detached HEAD) or else git's current branch. Prints VERSION and the wheel.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PGPATCH_TOOLS_PYTHON:-python3}
out=${PGPATCH_DIST_DIR:-$repo/dist}

rm -rf "$out"
cd "$repo"
# No isolation, as in the seed: the build server's venv has hatchling, and a build needs no index.
"$python" -m build --no-isolation --outdir "$out" "$repo"
echo "version: $(cat "$repo/VERSION")"
for wheel in "$out"/*.whl; do
    echo "wheel: $wheel"
done
