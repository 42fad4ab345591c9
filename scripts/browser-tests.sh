#!/usr/bin/env bash
# Browser tests of the triesync crate: builds the reference peer, starts one peer per
# configuration on 127.0.0.1 (good mainnet-genesis, good bt-block504980, hostile ones,
# flooding ones),
# passes their URLs to the wasm tests at build time (option_env!), runs
# `wasm-pack test --headless --chrome crate` against real IndexedDB, and stops the peers on
# exit however it exits.
#
# Extra arguments go to wasm-pack's cargo test (e.g. `-- --test sync` or a test name filter
# after `--`). TRIESYNC_PEER_ARGS adds flags to every peer (e.g. `--log debug`);
# TRIESYNC_PEER_LOGS=DIR keeps each peer's log there. Needs chromium and chromium-driver (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

fixtures=${TRIESYNC_FIXTURES:-../shared/fixtures}
states="$fixtures/states"
[ -f "$states/mainnet-genesis.json" ] || { echo "no fixtures at $states (set TRIESYNC_FIXTURES)" >&2; exit 1; }

echo "building the reference peer"
cargo build -q -p triesync-peer
peer_bin=target/debug/triesync-peer

tmp=$(mktemp -d)
pids=()
fds=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${TRIESYNC_PEER_LOGS:-}" ]; then
    mkdir -p "$TRIESYNC_PEER_LOGS" && cp "$tmp"/*.err "$TRIESYNC_PEER_LOGS"/ 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_peer NAME ARGS...: starts a peer, prints its http://127.0.0.1:PORT. Its stdin is a
# FIFO this script holds open, so with --exit-on-stdin-close it also dies with the script.
start_peer() {
  local name=$1
  shift
  local fifo="$tmp/$name.in" out="$tmp/$name.out" err="$tmp/$name.err"
  mkfifo "$fifo"
  # shellcheck disable=SC2086 # TRIESYNC_PEER_ARGS is a list of extra flags
  "$peer_bin" --port 0 --exit-on-stdin-close "$@" ${TRIESYNC_PEER_ARGS:-} <"$fifo" >"$out" 2>"$err" &
  pids+=($!)
  exec {fd}>"$fifo"
  fds+=("$fd")
  local url=""
  for _ in $(seq 1 600); do
    if [ -s "$out" ]; then
      url=$(awk 'NR == 1 && $1 == "listening" { print $2 }' "$out")
      [ -n "$url" ] && break
    fi
    sleep 0.1
  done
  if [ -z "$url" ]; then
    echo "peer $name did not start:" >&2
    cat "$err" >&2
    exit 1
  fi
  echo "  $name: $url $*" >&2
  started_url=$url
}

echo "starting peers"
start_peer genesis --state "$states/mainnet-genesis.json"
export TRIESYNC_PEER_GENESIS=$started_url
start_peer bt --state "$states/bt-block504980.json"
export TRIESYNC_PEER_BT=$started_url

# Good but slow (every answer 100 ms late): for tests that act in the middle of a sync.
start_peer slow --state "$states/mainnet-genesis.json" --delay-ms 100
export TRIESYNC_PEER_SLOW=$started_url

# Never answers 30% of WebSocket requests and answers the rest (up to 64 at once), so
# answers come back out of the order they were asked in: for matching answers by id.
start_peer unordered --state "$states/bt-block504980.json" --fault-seed 21 --stall 0.3 --ws-in-flight 64
export TRIESYNC_PEER_UNORDERED=$started_url

# Hostile peers serving the same state: each still delivers some good data.
hostile=()
start_peer corrupt --state "$states/mainnet-genesis.json" --fault-seed 1 --corrupt 0.2 --unrequested 0.5 --extra 2
hostile+=("$started_url")
start_peer flaky --state "$states/mainnet-genesis.json" --fault-seed 2 --omit 0.3 --error500 0.2 --html-error 0.2 --garbage 0.1
hostile+=("$started_url")
start_peer stalling --state "$states/mainnet-genesis.json" --fault-seed 3 --stall 0.2 --close 0.2 --delay-ms 50 --stall-max-ms 5000
hostile+=("$started_url")
export TRIESYNC_PEER_HOSTILE=$(IFS=,; echo "${hostile[*]}")

# Peers that never deliver a usable blob.
useless=()
start_peer allcorrupt --state "$states/mainnet-genesis.json" --fault-seed 4 --corrupt 1.0
useless+=("$started_url")
start_peer garbage --state "$states/mainnet-genesis.json" --fault-seed 5 --garbage 1.0
useless+=("$started_url")
start_peer silent --state "$states/mainnet-genesis.json" --fault-seed 6 --stall 1.0 --stall-max-ms 5000
useless+=("$started_url")
start_peer empty --state "$states/mainnet-genesis.json" --fault-seed 7 --omit 1.0
useless+=("$started_url")
export TRIESYNC_PEER_USELESS=$(IFS=,; echo "${useless[*]}")

# Flooding peers (each serving mainnet genesis): a 100 MB answer, an answer that never
# ends, one blob 1000 times, 1000 blobs nobody asked for, 1000 unsolicited WebSocket
# answers before each answer. Every request is flooded.
floods=()
start_peer flood100m --state "$states/mainnet-genesis.json" --fault-seed 11 --flood-bytes 100m
floods+=("bytes=$started_url")
start_peer endless --state "$states/mainnet-genesis.json" --fault-seed 12 --endless-body
floods+=("endless=$started_url")
start_peer repeat --state "$states/mainnet-genesis.json" --fault-seed 13 --repeat-blob 1000
floods+=("repeat=$started_url")
start_peer unasked --state "$states/mainnet-genesis.json" --fault-seed 14 --extra 1000
floods+=("unasked=$started_url")
start_peer wsflood --state "$states/mainnet-genesis.json" --fault-seed 15 --ws-flood 1000
floods+=("wsflood=$started_url")
export TRIESYNC_PEER_FLOODS=$(IFS=,; echo "${floods[*]}")

echo "running the browser tests (headless Chromium)"
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-600}
# The FIFOs' write ends stay with this script only, so that the peers go when it goes.
(
  for fd in "${fds[@]}"; do eval "exec $fd>&-"; done
  exec wasm-pack test --headless --chrome crate "$@"
)
