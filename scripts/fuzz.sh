#!/usr/bin/env bash
# Fuzzes every decoder of bytes from clients, peers and disk with libFuzzer (cargo-fuzz):
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Default: 600 s (10 minutes) for each of the targets in fuzz/fuzz_targets/. A crash stops the
# run and leaves the input in fuzz/regressions/<target>/; keep it there (it is committed and
# replayed by `cargo test`) and fix the decoder. The corpus grows in fuzz/corpus/ (not
# committed). The short runs under `cargo test` are the tests named
# `*_survive_arbitrary_bytes`, `*random*` and the regression replays; see docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pg_startup pg_messages pg_params sql_text raft_frame log_record)
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz instruments with -Z flags (sanitizer coverage); the stable toolchain accepts them
# with RUSTC_BOOTSTRAP. No nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t"
  echo "fuzz.sh: $t for ${seconds}s"
  # Seed the corpus with the regressions of every target (valid shapes to mutate from).
  cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 \
    -artifact_prefix="fuzz/regressions/$t/" -print_final_stats=1
done
