# Source this in a developer's shell to try the automation on your own clone and branch:
#   . autobuild/environment.sh
# It builds the branch you are on, from this clone, and ships to a package index on this
# machine (start one: autobuild/README.md, "Try it on your machine"). Values you already
# exported are kept. Secrets are not set here: export them yourself.
_pgpatch_repo=$(git rev-parse --show-toplevel)
: "${PYTHON_POSTGRESQL_PATCHES_BRANCHES:=$(git -C "$_pgpatch_repo" branch --show-current)}"
: "${PYTHON_POSTGRESQL_PATCHES_GIT_URL:=$_pgpatch_repo}"
: "${PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL:=http://127.0.0.1:8080/}"
: "${PYTHON_POSTGRESQL_PATCHES_WWW_USERNAME:=$(id -un)}"
export PYTHON_POSTGRESQL_PATCHES_BRANCHES PYTHON_POSTGRESQL_PATCHES_GIT_URL
export PYTHON_POSTGRESQL_PATCHES_REPOSITORY_BASE_URL PYTHON_POSTGRESQL_PATCHES_WWW_USERNAME
if [ -z "${PYTHON_POSTGRESQL_PATCHES_WWW_PASSWORD:-}" ]; then
    echo "export PYTHON_POSTGRESQL_PATCHES_WWW_PASSWORD too (the web UI login)" >&2
fi
unset _pgpatch_repo
