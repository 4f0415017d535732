#!/bin/sh
# Initialise the cluster on first start (password auth for TCP clients, the superuser's
# password from POSTGRES_PASSWORD), then exec postgres as the postgres user, so it is PID 1
# and `docker stop` (SIGINT, fast shutdown) reaches it directly.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
PGBIN=/usr/lib/postgresql/15/bin
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8
    rm -f "$pwfile"
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
        >>"$PGDATA/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/postgres" -D "$PGDATA" \
    -c listen_addresses="${STACK_BIND:-*}" -p "${POSTGRES_PORT:-5432}" \
    -c max_connections="${POSTGRES_MAX_CONNECTIONS:-200}" \
    -c unix_socket_directories=/var/run/postgresql
