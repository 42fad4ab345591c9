#!/usr/bin/env bash
# Runs fuzz targets one after another to a fixed number of executions, logging each run to
# logs/<target>.log (see ../FUZZING.md). Usage: ./run.sh [target...] (default: all).
# Env: RUNS (default 10000000), SAN (default none: core is safe Rust; `address` for ASan).
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
SAN=${SAN:-none}
export RUSTC_BOOTSTRAP=1 # cargo fuzz needs nightly flags; the machine has only stable
mkdir -p logs
[ -d corpus ] || cargo run --release --features seeding --bin seed_corpus
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(node account wire_request wire_blobs wire_ws_request wire_ws_response wire_rpc_batch scheduler scheduler_generated)
for t in "${targets[@]}"; do
  case $t in
    # Keccak dominates these; comparison tracing only slows it down (the operations are
    # small indices, not magic values), so they build without it, in their own target dir.
    scheduler) extra=(--no-trace-compares --target-dir target/ntc); max_len=160 ;;
    scheduler_generated) extra=(--no-trace-compares --target-dir target/ntc); max_len=384 ;;
    node|account) extra=(); max_len=4096 ;;
    *) extra=(); max_len=16384 ;;
  esac
  cmd=(cargo fuzz run -s "$SAN" "${extra[@]}" "$t" -- -runs="$RUNS" -max_len="$max_len" -print_final_stats=1)
  echo "== $t: ${cmd[*]}" | tee "logs/$t.log"
  start=$(date +%s)
  status=0
  "${cmd[@]}" >>"logs/$t.log" 2>&1 || status=$?
  end=$(date +%s)
  echo "== $t: exit $status, wall $((end - start)) s" | tee -a "logs/$t.log"
  grep -E "^stat::number_of_executed_units|^Done|SUMMARY" "logs/$t.log" | tee -a "logs/summary.txt" || true
done
