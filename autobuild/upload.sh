#!/bin/sh
# twine-upload: ship the wheel to the package repository of its branch (repositories.py:
# master -> production, release -> releases, develop -> develop, else snapshots) under
# $PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL.
#   sh autobuild/upload.sh dist/postgresqlpatches-X.Y.Z-py3-none-any.whl [BRANCH]
# BRANCH defaults to $PGPATCH_BUILD_BRANCH, then git's current branch. twine reads
# TWINE_USERNAME and TWINE_PASSWORD from the environment; they never go on its command line.
set -eu
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ ! -f "$1" ]; then
    echo "usage: upload.sh WHEEL [BRANCH]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
python=${PGPATCH_TOOLS_PYTHON:-python3}
wheel=$1
branch=${2:-${PGPATCH_BUILD_BRANCH:-$(git -C "$here" rev-parse --abbrev-ref HEAD)}}
if [ "$branch" = HEAD ]; then
    echo "error: detached HEAD: name the branch (argument or PGPATCH_BUILD_BRANCH)" >&2
    exit 2
fi

url=$("$python" "$here/repositories.py" url "$branch")
echo "uploading $(basename "$wheel") from branch $branch to $url"
"$python" -m twine upload --non-interactive --disable-progress-bar --repository-url "$url" "$wheel"
