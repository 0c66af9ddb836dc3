#!/usr/bin/env bash
# The comparison harness (issue 14): a 3-node sqlkeeper cluster (three `sqlkeeper start`
# processes) against PostgreSQL with two synchronous standbys in quorum (ANY 1), both on this
# machine, both loaded with `pgbench -i -s 10`, then workloads W1-W5 run alternately on both for
# several rounds (median of each), with the CPU seconds and peak RSS of every sqlkeeper node.
# Writes its tables into docs/benchmarks.md (between the compare.sh markers) and keeps raw
# pgbench output in bench/results/.
#   bench/compare.sh [seconds-per-run] [rounds]
#
#   W1 point reads, -S -M prepared, 8 clients, on a follower / on a standby
#   W2 upserts (bench/upsert.sql), 32 clients, on the leader / on the primary
#   W3 upsert latency, 1 client, on the leader / on the primary
#   W4 TPC-B-like (pgbench's built-in script), -M simple, 8 clients, leader / primary
#   W5 point reads, -S -M simple, 8 clients, on a follower / on a standby
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
rounds=${2:-3}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/compare-$stamp
mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"   # the postgres OS user must reach its data directories inside
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in s2 s1 pg; do scripts/pg-tmp.sh stop "$work/$d" >/dev/null 2>&1 || true; done
  sleep 1; rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL's server, pgbench and psql, on a fresh machine (Debian packages, as the test
# command installs them).
need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
cargo build --release -j 2 -q
pg_base=56833; raft_base=57833; pg_port=56900

# sqlkeeper: three processes, one per node, so that each node's CPU and memory can be read.
members="1=127.0.0.1:$raft_base,2=127.0.0.1:$((raft_base + 1)),3=127.0.0.1:$((raft_base + 2))"
for i in 1 2 3; do
  target/release/sqlkeeper start --node-id $i --data-dir "$work/n$i" \
    --pg-addr 127.0.0.1:$((pg_base + i - 1)) --raft-addr 127.0.0.1:$((raft_base + i - 1)) \
    --initial-cluster "$members" >"$out/node$i.log" 2>&1 &
  pids+=($!)
done

# PostgreSQL: a primary whose commits wait for one of two synchronous standbys to flush.
scripts/pg-tmp.sh start "$work/pg" $pg_port fsync=on synchronous_commit=on \
  "synchronous_standby_names='ANY 1 (s1, s2)'" >/dev/null
scripts/pg-tmp.sh standby "$work/s1" $((pg_port + 1)) $pg_port s1 >/dev/null
scripts/pg-tmp.sh standby "$work/s2" $((pg_port + 2)) $pg_port s2 >/dev/null
q() { psql -X -qtA -h 127.0.0.1 -p "$1" -U postgres -c "$2" 2>/dev/null; }
for _ in $(seq 150); do
  [ "$(q $pg_port "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'")" = 2 ] && break
  sleep 0.2
done
[ "$(q $pg_port "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'")" = 2 ] \
  || { echo "PostgreSQL standbys are not synchronous" >&2; exit 1; }

leader=""
for _ in $(seq 150); do
  leader=$(q $pg_base 'SELECT leader_id FROM sqlkeeper.status' || true)
  [ -n "$leader" ] && [ "$(q $pg_base 'SELECT count(*) FROM sqlkeeper.nodes')" = 3 ] && break
  sleep 0.2
done
[ -n "$leader" ] || { echo "the cluster did not elect a leader" >&2; exit 1; }
leader_port=$((pg_base + leader - 1))
follower=$(( leader == 1 ? 2 : 1 ))
follower_port=$((pg_base + follower - 1))
leader_pid=${pids[$((leader - 1))]}
echo "sqlkeeper: leader node $leader (port $leader_port), reads on node $follower (port $follower_port)"

# Load both the same way, as a user would.
load() {
  local t0 t1
  t0=$(date +%s.%N)
  "$bin/pgbench" -i -s 10 -h 127.0.0.1 -p "$1" -U postgres postgres >"$out/init-$2.txt" 2>&1
  t1=$(date +%s.%N)
  psql -X -q -h 127.0.0.1 -p "$1" -U postgres -c 'SET client_min_messages = warning' \
    -c 'DROP TABLE IF EXISTS kv' -c 'CREATE TABLE kv (k bigint PRIMARY KEY, v text)' >/dev/null
  echo "$2 $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" >>"$out/init.txt"
}
load $leader_port sqlkeeper
load $pg_port postgres
# Reads go to a follower and a standby: wait until they have everything.
target=$(q $leader_port 'SELECT applied_index FROM sqlkeeper.status')
for _ in $(seq 300); do
  [ "$(q $follower_port 'SELECT applied_index FROM sqlkeeper.status')" -ge "$target" ] && break
  sleep 0.2
done
for _ in $(seq 300); do
  [ "$(q $((pg_port + 1)) 'SELECT count(*) FROM pgbench_accounts' || echo 0)" = 1000000 ] \
    && [ "$(q $((pg_port + 1)) "SELECT count(*) FROM pg_class WHERE relname = 'kv'" || echo 0)" = 1 ] && break
  sleep 0.2
done

# cpu PID: user + system CPU seconds of a process so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# run W SYSTEM ROUND: one pgbench run of workload W on SYSTEM; appends
# "W SYSTEM ROUND TPS LATENCY_MS FAILED LEADER_CPU_S" to $out/runs.txt.
run() {
  local w=$1 sys=$2 round=$3 port args
  local reads=$follower_port writes=$leader_port
  if [ "$sys" = postgres ]; then reads=$((pg_port + 1)); writes=$pg_port; fi
  case $w in
    W1) port=$reads;  args=(-S -M prepared -c 8 -j 2) ;;
    W2) port=$writes; args=(-f bench/upsert.sql -c 32 -j 2) ;;
    W3) port=$writes; args=(-f bench/upsert.sql -c 1 -j 1) ;;
    W4) port=$writes; args=(-b tpcb-like -M simple -c 8 -j 2) ;;
    W5) port=$reads;  args=(-S -M simple -c 8 -j 2) ;;
  esac
  local before after file="$out/$w-$sys-r$round.txt"
  before=$(cpu "$leader_pid")
  "$bin/pgbench" -n -h 127.0.0.1 -p "$port" -U postgres -T "$secs" "${args[@]}" postgres >"$file" 2>&1 || true
  after=$(cpu "$leader_pid")
  echo "$w $sys $round $(awk '/^tps = /{print $3}' "$file") $(awk '/^latency average = /{print $4}' "$file") $(awk '/^number of failed transactions/{print $5}' "$file") $(awk -v a="$before" -v b="$after" 'BEGIN { printf "%.2f", b - a }')" \
    | tee -a "$out/runs.txt"
}

declare -A cpu0
for i in 1 2 3; do cpu0[$i]=$(cpu "${pids[$((i - 1))]}"); done
for round in $(seq "$rounds"); do
  for w in W1 W2 W3 W4 W5; do
    # Alternate which system goes first, so that drift of the machine favours neither.
    if [ $((round % 2)) = 1 ]; then run $w sqlkeeper "$round"; run $w postgres "$round"
    else run $w postgres "$round"; run $w sqlkeeper "$round"; fi
  done
done
nodes=""
for i in 1 2 3; do
  p=${pids[$((i - 1))]}
  role=follower; [ "$i" = "$leader" ] && role=leader
  nodes+="| node $i ($role) | $(awk -v a="${cpu0[$i]}" -v b="$(cpu "$p")" 'BEGIN { printf "%.1f", b - a }') | $(awk '/^VmHWM/{printf "%.0f", $2 / 1024}' "/proc/$p/status") |"$'\n'
done
# (the whole output is read: awk stopping early would end pg_test_fsync with SIGPIPE)
fsync=$("$bin/pg_test_fsync" -s 1 -f "$work/fsync.test" 2>/dev/null | awk '/^ +fdatasync / && !f {print $(NF-1); f = 1}')
# Median round trip of a small message over loopback TCP, as between two nodes here.
rtt=$(python3 - <<'PY'
import socket, statistics, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def echo():
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (b := c.recv(64)):
        c.sendall(b)
threading.Thread(target=echo, daemon=True).start()
s = socket.create_connection(srv.getsockname()); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for _ in range(2000):
    t = time.perf_counter(); s.sendall(b"x" * 32); s.recv(64); times.append(time.perf_counter() - t)
print(round(statistics.median(times) * 1e6))
PY
)

# The tables: medians per workload and system, and their ratios (higher is better; for W3 the
# ratio of latencies is PostgreSQL's over sqlkeeper's).
table=$(awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { tps[$1" "$2] = tps[$1" "$2] " " $4; lat[$1" "$2] = lat[$1" "$2] " " $5
    failed[$1" "$2] += $6; if ($2 == "sqlkeeper") lcpu[$1] = lcpu[$1] " " $7 }
  END {
    split("W1 W2 W3 W4 W5", ws, " ")
    name["W1"] = "W1 point reads `-S -M prepared -c 8`, follower vs standby"
    name["W2"] = "W2 upserts, 32 clients, leader vs primary"
    name["W3"] = "W3 upsert, 1 client, latency"
    name["W4"] = "W4 TPC-B-like `-M simple -c 8`, leader vs primary"
    name["W5"] = "W5 point reads `-S -M simple -c 8`, follower vs standby"
    target["W1"] = "1.5"; target["W2"] = "2.0"; target["W3"] = "1.2"; target["W4"] = "1.0"; target["W5"] = "1.5"
    print "| workload | PostgreSQL | sqlkeeper | ratio | target | failed (pg / sk) | leader CPU s per run |"
    print "| --- | --- | --- | --- | --- | --- | --- |"
    for (k = 1; k <= 5; k++) {
      w = ws[k]
      if (w == "W3") {
        p = median(lat[w" postgres"]); s = median(lat[w" sqlkeeper"])
        printf "| %s | %.3f ms | %.3f ms | %.2f× | ≥ %s× | %d / %d | %.1f |\n", name[w], p, s, p / s, target[w], failed[w" postgres"], failed[w" sqlkeeper"], median(lcpu[w])
      } else {
        p = median(tps[w" postgres"]); s = median(tps[w" sqlkeeper"])
        printf "| %s | %.0f tps | %.0f tps | %.2f× | ≥ %s× | %d / %d | %.1f |\n", name[w], p, s, s / p, target[w], failed[w" postgres"], failed[w" sqlkeeper"], median(lcpu[w])
      }
    }
  }' "$out/runs.txt")
runs=$(awk '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$out/runs.txt")
init_sk=$(awk '$1 == "sqlkeeper" { print $2 }' "$out/init.txt")
init_pg=$(awk '$1 == "postgres" { print $2 }' "$out/init.txt")

section=$(cat <<EOF
Generated by \`bench/compare.sh $secs $rounds\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs/benchmarks.md' || echo ' (with uncommitted changes)'):
$(nproc) cores ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.0f GiB", $2 / 1048576}' /proc/meminfo),
$(uname -sr); PostgreSQL $("$bin/postgres" --version | awk '{print $3}'). fdatasync of an 8 KiB write (\`pg_test_fsync\`):
${fsync:-?} µs; loopback TCP round trip of a small message: ${rtt:-?} µs. $rounds rounds of $secs s per workload and system,
the two systems alternating (the first one changes each round); medians. Ratio: sqlkeeper over
PostgreSQL for throughput, PostgreSQL over sqlkeeper for W3's latency (higher is better).
Loading with \`pgbench -i -s 10\`: sqlkeeper $(printf '%.1f' "$init_sk") s, PostgreSQL $(printf '%.1f' "$init_pg") s.

$table

CPU seconds over all runs and peak RSS (\`VmHWM\`) of each sqlkeeper node:

| node | CPU s | peak RSS, MiB |
| --- | --- | --- |
$nodes
Every run (workload, system, round, tps, latency ms, failed transactions):

| W | system | round | tps | latency ms | failed |
| --- | --- | --- | --- | --- | --- |
$runs
EOF
)
echo "$section" >"$out/section.md"
echo "$table"
# Replace what is between the markers in docs/benchmarks.md.
python3 - "$out/section.md" <<'PY'
import sys
doc = "docs/benchmarks.md"
text = open(doc).read()
begin, end = "<!-- bench/compare.sh: begin -->", "<!-- bench/compare.sh: end -->"
section = open(sys.argv[1]).read().strip()
i, j = text.index(begin) + len(begin), text.index(end)
open(doc, "w").write(text[:i] + "\n" + section + "\n" + text[j:])
PY
echo "docs/benchmarks.md updated; raw output in $out"
