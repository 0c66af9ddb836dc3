# Shared by the benchmark scripts (sourced). Needs $bin (PostgreSQL's bin directory), $out
# (the results directory), $work (a scratch directory) and $secs (seconds per run) to be set.

# start_demo PG_BASE RAFT_BASE: a 3-node cluster (sqlkeeper demo) from the release build in
# $work/demo, its pid in $work/demo.pid, its output in $out/demo.log.
start_demo() {
  target/release/sqlkeeper demo --nodes 3 --data-dir "$work/demo" --pg-port "$1" --raft-port "$2" \
    >"$out/demo.log" 2>&1 &
  echo $! >"$work/demo.pid"
}

# demo_leader PG_BASE: waits for the demo cluster to elect a leader and prints its node id.
demo_leader() {
  local leader=""
  for _ in $(seq 100); do
    leader=$(psql -X -qtA -h 127.0.0.1 -p "$1" -U postgres -c 'SELECT leader_id FROM sqlkeeper.status' 2>/dev/null || true)
    [ -n "$leader" ] && break; sleep 0.2
  done
  [ -n "$leader" ] || { echo "cluster did not elect a leader" >&2; return 1; }
  echo "$leader"
}

# setup_kv PORT: a fresh kv table on the server at PORT.
setup_kv() {
  psql -X -q -h 127.0.0.1 -p "$1" -U postgres \
    -c 'DROP TABLE IF EXISTS kv' -c 'CREATE TABLE kv (k bigint PRIMARY KEY, v text)' >/dev/null
}

# pgb NAME PORT CLIENTS SCRIPT [pgbench options...]: one pgbench run; prints
# "NAME CLIENTS TPS LATENCY_MS" and keeps pgbench's output in $out/NAME-cCLIENTS.txt.
pgb() {
  local name=$1 port=$2 clients=$3 script=$4
  shift 4
  "$bin/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -f "$script" -c "$clients" \
    -j "$((clients < 2 ? 1 : 2))" -T "$secs" "$@" postgres >"$out/$name-c$clients.txt" 2>&1
  echo "$name $clients $(awk '/^tps = /{print $3}' "$out/$name-c$clients.txt") $(awk '/^latency average = /{print $4}' "$out/$name-c$clients.txt")"
}
