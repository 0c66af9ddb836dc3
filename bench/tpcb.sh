#!/usr/bin/env bash
# TPC-B-like benchmark (issue 10): pgbench's tpcb-like transaction (bench/tpcb.sql: BEGIN,
# three UPDATEs, a SELECT, an INSERT, END), simple protocol, against the leader of a 3-node
# sqlkeeper cluster and against PostgreSQL with two synchronous standbys (ANY 1), both on
# this machine, in the same run; 1 and 8 clients. Serialization failures are retried
# (pgbench --max-tries) and counted. Ends by checking that the money adds up on sqlkeeper,
# then measures whether an idle transaction block delays other sessions' writes: 1-client
# UPDATEs of other rows (bench/update-account.sql) without and with a block left open after a
# write (issue 10, acceptance 3).
#   bench/tpcb.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
out=bench/results/tpcb-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"   # the postgres OS user must reach its data directories inside
cleanup() {
  kill -INT "$(cat "$work/demo.pid" 2>/dev/null)" 2>/dev/null || true
  for d in s2 s1 pg; do scripts/pg-tmp.sh stop "$work/$d" || true; done
  sleep 1; rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -j 2 -q
pg_base=56633; raft_base=57633; pg_port=56700
. bench/lib.sh
start_demo $pg_base $raft_base

# PostgreSQL: a primary whose commits wait for one of two synchronous standbys to flush.
scripts/pg-tmp.sh start "$work/pg" $pg_port fsync=on synchronous_commit=on \
  "synchronous_standby_names='ANY 1 (s1, s2)'"
scripts/pg-tmp.sh standby "$work/s1" $((pg_port + 1)) $pg_port s1
scripts/pg-tmp.sh standby "$work/s2" $((pg_port + 2)) $pg_port s2
psql_pg() { psql -X -qtA -h 127.0.0.1 -p $pg_port -U postgres "$@"; }
for i in $(seq 100); do
  [ "$(psql_pg -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'")" = 2 ] && break
  sleep 0.2
done
psql_pg -c "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1" | tee "$out/pg-replication.txt"
[ "$(psql_pg -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'")" = 2 ] \
  || { echo "PostgreSQL standbys are not synchronous" >&2; exit 1; }

leader=$(demo_leader $pg_base)
leader_port=$((pg_base + leader - 1))
echo "sqlkeeper leader: node $leader (port $leader_port)"

init() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -f bench/tpcb-init.sql >/dev/null; }
failed() { awk '/^number of failed transactions/{print $5}' "$out/$1-c$2.txt"; }
{
  init $leader_port; pgb sqlkeeper $leader_port 1 bench/tpcb.sql --max-tries=100
  init $pg_port;     pgb postgres $pg_port 1 bench/tpcb.sql --max-tries=100
  init $leader_port; pgb sqlkeeper $leader_port 8 bench/tpcb.sql --max-tries=100
  init $pg_port;     pgb postgres $pg_port 8 bench/tpcb.sql --max-tries=100
} | tee "$out/summary.txt"

echo "retried serialization failures (sqlkeeper, 8 clients): $(awk '/^number of transactions retried/{print $5, $6}' "$out/sqlkeeper-c8.txt")"
echo "failed transactions: sqlkeeper $(failed sqlkeeper 1)/$(failed sqlkeeper 8), postgres $(failed postgres 1)/$(failed postgres 8) (1/8 clients)"
sums=$(psql -X -qtA -h 127.0.0.1 -p $leader_port -U postgres -c \
  "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || (SELECT coalesce(sum(delta), 0) FROM pgbench_history)")
echo "sqlkeeper sums (accounts tellers branches history): $sums"
read -r a t b h <<<"$sums"
[ "$a" = "$h" ] && [ "$t" = "$h" ] && [ "$b" = "$h" ] || { echo "money does not add up" >&2; exit 1; }
awk '
  { tps[$1" "$2]=$3; lat[$1" "$2]=$4 }
  END {
    printf "\n%-34s %12s %12s %8s\n", "TPC-B-like (pgbench, simple)", "sqlkeeper", "postgres", "ratio"
    printf "%-34s %12.3f %12.3f %8.2f\n", "1 client: latency ms", lat["sqlkeeper 1"], lat["postgres 1"], lat["sqlkeeper 1"]/lat["postgres 1"]
    printf "%-34s %12.0f %12.0f %8.2f\n", "8 clients: tps", tps["sqlkeeper 8"], tps["postgres 8"], tps["sqlkeeper 8"]/tps["postgres 8"]
  }' "$out/summary.txt" | tee -a "$out/summary.txt"

# An idle block: BEGIN and a write to a teller, then nothing until the measurement is over.
idle_block() {
  { echo "BEGIN; UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1;"; sleep $((secs + 5)); echo "ROLLBACK;"; } \
    | psql -X -q -h 127.0.0.1 -p "$1" -U postgres >/dev/null &
  echo $!
}
{
  pgb sk-without-idle $leader_port 1 bench/update-account.sql
  held=$(idle_block $leader_port); sleep 1
  pgb sk-with-idle $leader_port 1 bench/update-account.sql
  kill "$held" 2>/dev/null || true; wait "$held" 2>/dev/null || true
  pgb pg-without-idle $pg_port 1 bench/update-account.sql
  held=$(idle_block $pg_port); sleep 1
  pgb pg-with-idle $pg_port 1 bench/update-account.sql
  kill "$held" 2>/dev/null || true; wait "$held" 2>/dev/null || true
} | tee "$out/idle.txt"
awk '
  { lat[$1]=$4 }
  END {
    printf "\n%-34s %12s %12s\n", "UPDATE of other rows, 1 client", "sqlkeeper", "postgres"
    printf "%-34s %12.3f %12.3f\n", "latency ms, no idle block", lat["sk-without-idle"], lat["pg-without-idle"]
    printf "%-34s %12.3f %12.3f\n", "latency ms, an idle block open", lat["sk-with-idle"], lat["pg-with-idle"]
  }' "$out/idle.txt" | tee -a "$out/summary.txt"
