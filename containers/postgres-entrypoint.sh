#!/bin/sh
# Like the official image's entrypoint, as far as this project uses it: POSTGRES_DB is created on first
# start (on a server listening on no address and on a socket of its own, so that neither a client nor
# pg_isready in a health check sees it before the real server is up), then the server runs in the
# foreground with the container's arguments (`postgres -c fsync=off ...`). "database system is ready to
# accept connections" on stderr therefore means the real server: the tests wait for it.
set -eu
# Options alone (`-c fsync=off`) are options of postgres.
if [ "${1#-}" != "${1:-}" ]; then set -- postgres "$@"; fi
if [ "${1:-}" = postgres ]; then
  db="${POSTGRES_DB:-postgres}"
  if [ "$db" != postgres ]; then
    mkdir -p /tmp/init-socket
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/tmp/init-socket" \
      -l /tmp/init.log start >/dev/null
    if [ "$(psql -h /tmp/init-socket -U postgres -d postgres -qAtc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
      psql -h /tmp/init-socket -U postgres -d postgres -qc "CREATE DATABASE \"$db\"" >/dev/null
    fi
    pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
  fi
fi
exec "$@"
