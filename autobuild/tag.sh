#!/bin/sh
# git-tag: after a successful upload, tag the built commit with the version it shipped as, and
# push the tag. Each version names one commit (off master it carries the commit time), so a
# tag that already names this commit is fine and one that names another commit is an error.
#   sh autobuild/tag.sh VERSION
# PGPATCH_TAG_REMOTE (default origin) is where the tag goes; PGPATCH_TAG_PUSH=0 keeps it local.
set -eu
if [ $# -ne 1 ] || ! printf '%s\n' "$1" | grep -Eq '^[0-9]+(\.[0-9]+)*([a-z0-9.]*)(\+[0-9A-Za-z.]+)?$'; then
    echo "usage: tag.sh VERSION (a PEP 440 version such as 1.2.3 or 1.2.3+20250101120000)" >&2
    exit 2
fi
version=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
remote=${PGPATCH_TAG_REMOTE:-origin}
cd "$repo"

head=$(git rev-parse HEAD)
if tagged=$(git rev-parse -q --verify "refs/tags/$version^{commit}"); then
    if [ "$tagged" != "$head" ]; then
        echo "error: tag $version already names commit $tagged, not $head: raise __version__" >&2
        exit 1
    fi
    echo "tag $version already names $head"
else
    git -c user.name="${PGPATCH_TAG_USER:-pgpatch autobuild}" \
        -c user.email="${PGPATCH_TAG_EMAIL:-autobuild@localhost}" \
        tag -a "$version" -m "postgresqlpatches $version" "$head"
    echo "tagged $head as $version"
fi
if [ "${PGPATCH_TAG_PUSH:-1}" != 0 ]; then
    git push "$remote" "refs/tags/$version"
fi
