#!/bin/sh
# postgresql-drop-databases: drop the example's databases and the roles they made, so that
# run.sh builds them from nothing. Connects as postgres to the maintenance database postgres;
# server from PGHOST/PGPORT; password from POSTGRESQL_POSTGRES_PASSWORD (the user name when
# unset, pgpatch's rule), handed to psql in its environment only.
#   sh verify/drop.sh            # hundbidrag and patches
#   PGPATCH_VERIFY_DROP="hundbidrag patches other" sh verify/drop.sh
set -eu
names=${PGPATCH_VERIFY_DROP:-hundbidrag patches}

for name in $names; do
    case $name in
        postgres | template0 | template1)
            echo "error: drop.sh never drops $name" >&2
            exit 2
            ;;
    esac
    if ! printf '%s\n' "$name" | grep -Eq '^[a-z_][a-z0-9_]{0,62}$'; then
        echo "error: drop.sh: $name is not a plain PostgreSQL name" >&2
        exit 2
    fi
done

if [ -n "${POSTGRESQL_POSTGRES_PASSWORD:-}" ]; then
    PGPASSWORD=$POSTGRESQL_POSTGRES_PASSWORD
else
    echo "warning: POSTGRESQL_POSTGRES_PASSWORD is not set: using the user name as password" >&2
    PGPASSWORD=postgres
fi
export PGPASSWORD

for name in $names; do
    echo "dropping database and role $name"
    # Identifiers go in as psql variables quoted with :"name", never pasted into SQL.
    psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -v name="$name" <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS :"name" WITH (FORCE);
SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') AS role_exists \gset
\if :role_exists
DROP OWNED BY :"name";
DROP ROLE :"name";
\endif
SQL
done
