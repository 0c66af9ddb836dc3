#!/usr/bin/env bash
# Write benchmark: pgbench upsert against a sqlkeeper node and against PostgreSQL, in the
# same run, on this machine, plus the machine's fsync latency.
#   bench/run.sh [seconds-per-run]
# Needs a release build (it builds one) and the PostgreSQL server package (pgbench,
# pg_test_fsync; scripts/test.sh installs it). Prints a table; raw output goes to
# bench/results/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
out=bench/results/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"   # the postgres OS user must reach its data directory inside
trap 'kill $(cat "$work/sk.pid" 2>/dev/null) 2>/dev/null || true; scripts/pg-tmp.sh stop "$work/pg" || true; rm -rf "$work"' EXIT

cargo build --release -j 2 -q

sk_port=55433; pg_port=55434
target/release/sqlkeeper --data-dir "$work/sk" --pg-addr 127.0.0.1:$sk_port >"$out/sqlkeeper.log" 2>&1 &
echo $! >"$work/sk.pid"
# PostgreSQL with durable commits (fsync on, synchronous_commit on): the speed bar for writes.
scripts/pg-tmp.sh start "$work/pg" $pg_port fsync=on synchronous_commit=on
for i in $(seq 50); do psql -X -q -h 127.0.0.1 -p $sk_port -U postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 0.1; done

. bench/lib.sh

"$bin/pg_test_fsync" -s 2 -f "$work/fsync.test" >"$out/pg_test_fsync.txt" 2>&1 || true
{
  setup_kv $sk_port; pgb sqlkeeper $sk_port 1 bench/upsert.sql
  setup_kv $pg_port; pgb postgres $pg_port 1 bench/upsert.sql
  setup_kv $sk_port; pgb sqlkeeper $sk_port 32 bench/upsert.sql
  setup_kv $pg_port; pgb postgres $pg_port 32 bench/upsert.sql
} | tee "$out/summary.txt"

echo
echo "fsync latency on this machine (pg_test_fsync, one 8 kB write + fdatasync):"
grep -m1 -E '^[[:space:]]+fdatasync' "$out/pg_test_fsync.txt" || true
awk '
  { tps[$1" "$2]=$3; lat[$1" "$2]=$4 }
  END {
    printf "\n%-28s %12s %12s %8s\n", "upsert (pgbench)", "sqlkeeper", "postgres", "ratio"
    printf "%-28s %12.3f %12.3f %8.2f\n", "1 client: latency ms", lat["sqlkeeper 1"], lat["postgres 1"], lat["sqlkeeper 1"]/lat["postgres 1"]
    printf "%-28s %12.0f %12.0f %8.2f\n", "32 clients: tps", tps["sqlkeeper 32"], tps["postgres 32"], tps["sqlkeeper 32"]/tps["postgres 32"]
  }' "$out/summary.txt" | tee -a "$out/summary.txt"
