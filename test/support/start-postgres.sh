#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on a loopback port and prints "URL DIR" on stdout.
# Used by .ci/run and, when ARMOR_TEST_DATABASE_URL is not set, by the tests that need it.
# Usage: start-postgres.sh [PORT]     Stop: start-postgres.sh --stop DIR
set -euo pipefail
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
bin=""
for candidate in /usr/lib/postgresql/*/bin; do [ -x "$candidate/initdb" ] && bin="$candidate"; done
if [ -z "$bin" ]; then echo "start-postgres: no PostgreSQL server (apt-get install postgresql)" >&2; exit 3; fi
if [ "${1:-}" = "--stop" ]; then
  as_owner "$bin/pg_ctl" -D "$2/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$2"
  exit 0
fi
port="${1:-55432}"
dir=$(mktemp -d /tmp/armor-pg-XXXXXX)
# PostgreSQL refuses to run as root: the cluster belongs to the postgres user when we are root.
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
  || { cat "$dir/server.log" >&2; exit 1; }
echo "postgres://postgres@127.0.0.1:$port/postgres $dir"
