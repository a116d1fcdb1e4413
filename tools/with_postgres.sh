#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL server on a loopback port, then stops it:
#
#   tools/with_postgres.sh cargo test ...
#
# The cluster lives in target/postgres (made afresh each run). The command sees
# VSR_TEST_POSTGRES=postgres://vsr@127.0.0.1:PORT/postgres (a superuser, trusted on loopback
# only). PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user.
set -euo pipefail

bin=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && bin="$d"; done
[ -n "$bin" ] || bin="$(dirname "$(command -v initdb)")"
[ -x "$bin/initdb" ] || { echo "with_postgres: initdb not found (apt-get install postgresql)"; exit 1; }

root="$(pwd)/target/postgres"
rm -rf "$root"
mkdir -p "$root"
as_server=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$root"
    as_server=(runuser -u postgres --)
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

echo "==> starting a throwaway PostgreSQL ($("$bin/postgres" --version)) on 127.0.0.1:$port"
"${as_server[@]}" "$bin/initdb" -D "$root/data" -U vsr -A trust --no-sync -E UTF8 >"$root/initdb.log"
"${as_server[@]}" "$bin/pg_ctl" -D "$root/data" -l "$root/server.log" -w \
    -o "-p $port -k $root -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
stop() {
    echo "==> stopping the throwaway PostgreSQL"
    "${as_server[@]}" "$bin/pg_ctl" -D "$root/data" -m immediate stop >/dev/null || true
}
trap stop EXIT

export VSR_TEST_POSTGRES="postgres://vsr@127.0.0.1:$port/postgres"
"$@"
