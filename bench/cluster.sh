#!/usr/bin/env bash
# Cluster benchmark: a 3-node sqlkeeper cluster on this machine (sqlkeeper demo), pgbench
# upsert against the leader (1 and 32 clients) and point reads on a follower (8 clients,
# -M prepared); PostgreSQL with durable commits measured in the same run for the ratio.
#   bench/cluster.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
out=bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"   # the postgres OS user must reach its data directory inside
trap 'kill -INT $(cat "$work/demo.pid" 2>/dev/null) 2>/dev/null || true; sleep 1; scripts/pg-tmp.sh stop "$work/pg" || true; rm -rf "$work"' EXIT

cargo build --release -j 2 -q
pg_base=56433; raft_base=57433; pg_port=56500
. bench/lib.sh
start_demo $pg_base $raft_base
scripts/pg-tmp.sh start "$work/pg" $pg_port fsync=on synchronous_commit=on
leader=$(demo_leader $pg_base)
leader_port=$((pg_base + leader - 1))
follower=$(( leader == 1 ? 2 : 1 )); follower_port=$((pg_base + follower - 1))
echo "leader: node $leader (port $leader_port); follower for reads: node $follower (port $follower_port)"

{
  setup_kv $leader_port; pgb cluster-upsert $leader_port 1 bench/upsert.sql
  setup_kv $pg_port;     pgb postgres-upsert $pg_port 1 bench/upsert.sql
  setup_kv $leader_port; pgb cluster-upsert $leader_port 32 bench/upsert.sql
  setup_kv $pg_port;     pgb postgres-upsert $pg_port 32 bench/upsert.sql
  pgb follower-select $follower_port 8 bench/select.sql -M prepared
  pgb postgres-select $pg_port 8 bench/select.sql -M prepared
} | tee "$out/summary.txt"
awk '
  { tps[$1" "$2]=$3; lat[$1" "$2]=$4 }
  END {
    printf "\n%-34s %12s %12s %8s\n", "3-node cluster (pgbench)", "sqlkeeper", "postgres", "ratio"
    printf "%-34s %12.3f %12.3f %8.2f\n", "upsert, 1 client: latency ms", lat["cluster-upsert 1"], lat["postgres-upsert 1"], lat["cluster-upsert 1"]/lat["postgres-upsert 1"]
    printf "%-34s %12.0f %12.0f %8.2f\n", "upsert, 32 clients: tps", tps["cluster-upsert 32"], tps["postgres-upsert 32"], tps["cluster-upsert 32"]/tps["postgres-upsert 32"]
    printf "%-34s %12.0f %12.0f %8.2f\n", "point read on follower, 8 clients: tps", tps["follower-select 8"], tps["postgres-select 8"], tps["follower-select 8"]/tps["postgres-select 8"]
  }' "$out/summary.txt" | tee -a "$out/summary.txt"
