#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then runs
# every test. This is the command the README gives and the one CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

# --- what the tests need beyond Rust -------------------------------------------------------
# psql (client tests), PostgreSQL server binaries (differential tests, benchmarks).
need=()
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the tests -------------------------------------------------------------------------------
# Two cores: two build jobs, and test threads as cargo decides.
cargo test --workspace --all-targets -j 2
