#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL server on loopback, for differential tests and
# benchmarks. PostgreSQL refuses to run as root, so as root it runs as the `postgres` OS user
# that the Debian package creates.
#   scripts/pg-tmp.sh start DIR PORT [extra postgres -c options...]
#   scripts/pg-tmp.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?data directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/pg_ctl" ] || { echo "pg-tmp: PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start)
    port=${3:?port}; shift 3
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
    for o in "$@"; do opts="$opts -c $o"; done
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -o "$opts" -w start >/dev/null
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
