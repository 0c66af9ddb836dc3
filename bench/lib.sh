# Shared by the benchmark scripts (sourced). Needs $bin (PostgreSQL's bin directory), $out
# (the results directory) and $secs (seconds per run) to be set.

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
