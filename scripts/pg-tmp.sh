#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL server on loopback, for differential tests and
# benchmarks. PostgreSQL refuses to run as root, so as root it runs as the `postgres` OS user
# that the Debian package creates.
#   scripts/pg-tmp.sh start DIR PORT [extra postgres -c options...]
#   scripts/pg-tmp.sh standby DIR PORT PRIMARY_PORT NAME [extra postgres -c options...]
#   scripts/pg-tmp.sh stop DIR
# `standby` copies a running primary (pg_basebackup) and starts it as a streaming standby
# that reports itself as NAME (its application_name, for synchronous_standby_names).
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
    # TimeZone UTC, as sqlkeeper's sessions: timestamps print alike on any machine.
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c timezone=UTC"
    for o in "$@"; do opts="$opts -c $o"; done
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -o "$opts" -w start >/dev/null
    ;;
  standby)
    port=${3:?port}; primary=${4:?primary port}; name=${5:?standby name}; shift 5
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    chmod 700 "$dir"
    # (It warns about the primary's socket file in the data directory: skipped, as it should be.)
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$dir" -X stream -R >/dev/null 2> >(grep -v 'skipping special file' >&2)
    echo "primary_conninfo = 'host=127.0.0.1 port=$primary user=postgres application_name=$name'" \
      | as_pg tee -a "$dir/postgresql.auto.conf" >/dev/null
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
    for o in "$@"; do opts="$opts -c $o"; done
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -o "$opts" -w start >/dev/null
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: $0 start DIR PORT | standby DIR PORT PRIMARY_PORT NAME | stop DIR" >&2; exit 2 ;;
esac
