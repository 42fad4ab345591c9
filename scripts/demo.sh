#!/usr/bin/env bash
# `npm run demo`: from a fresh machine, installs what is missing (scripts/setup.sh), builds
# the wasm package and the demo page, starts the reference peer serving the mainnet
# genesis state (fixtures/mainnet-genesis.json) and serves the demo page. Prints the URL to
# open; Ctrl-C stops everything.
#
# Environment: PEER_PORT (default 8547; a free port is taken if busy; 0: any free port),
# DEMO_PORT (default 8080; the next free port is taken if busy; 0: any free port),
# DEMO_HOST (default 127.0.0.1), TRIESYNC_SKIP_BUILD=1 (reuse pkg/, dist/ and the peer),
# TRIESYNC_PEER_BIN (default target/release/triesync-peer).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

PEER_PORT=${PEER_PORT:-8547}
DEMO_PORT=${DEMO_PORT:-8080}
DEMO_HOST=${DEMO_HOST:-127.0.0.1}
STATE=fixtures/mainnet-genesis.json
PEER_BIN=${TRIESYNC_PEER_BIN:-target/release/triesync-peer}

step() { printf '\n==== %s ====\n' "$*"; }

if [ "${TRIESYNC_SKIP_BUILD:-}" != 1 ]; then
  step "setup"
  scripts/setup.sh
  step "reference peer (cargo build --release -p triesync-peer)"
  cargo build --release -p triesync-peer
  step "npm package triesync (pkg/)"
  node scripts/build-pkg.mjs
  step "demo page (dist/)"
  node_modules/.bin/webpack --mode production
fi

tmp=$(mktemp -d)
peer_pid=""
serve_pid=""
cleanup() {
  trap - EXIT INT TERM
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  [ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null || true
  [ -n "$serve_pid" ] && wait "$serve_pid" 2>/dev/null || true
  [ -n "$peer_pid" ] && wait "$peer_pid" 2>/dev/null || true
  rm -rf "$tmp"
  echo
  echo "demo stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_peer PORT ATTEMPT: sets peer_pid and peer_line (its `listening ...` line). The peer's stdin
# is a FIFO this script holds open, so with --exit-on-stdin-close it also stops if this
# script is killed outright. (Not to be called in a $(...) subshell: the FIFO would close.)
peer_line=""
start_peer() {
  local port=$1 fifo="$tmp/peer-$2.in" out="$tmp/peer-$2.out"
  mkfifo "$fifo"
  "$PEER_BIN" --state "$STATE" --host 127.0.0.1 --port "$port" \
    --exit-on-stdin-close <"$fifo" >"$out" 2>"$tmp/peer.err" &
  peer_pid=$!
  exec {fd}>"$fifo"
  for _ in $(seq 1 300); do
    if [ -s "$out" ] && head -1 "$out" | grep -q '^listening '; then
      peer_line=$(head -1 "$out")
      return 0
    fi
    kill -0 "$peer_pid" 2>/dev/null || break
    sleep 0.1
  done
  wait "$peer_pid" 2>/dev/null || true
  peer_pid=""
  return 1
}

step "starting the reference peer"
[ -x "$PEER_BIN" ] || { echo "$PEER_BIN is missing: run without TRIESYNC_SKIP_BUILD=1" >&2; exit 1; }
if ! start_peer "$PEER_PORT" 1; then
  [ "$PEER_PORT" != 0 ] || { cat "$tmp/peer.err" >&2; exit 1; }
  echo "port $PEER_PORT is busy or the peer failed ($(tail -1 "$tmp/peer.err")); trying a free port"
  start_peer 0 2 || { cat "$tmp/peer.err" >&2; exit 1; }
fi
peer_url=$(awk '{ print $2 }' <<<"$peer_line")
root=$(awk '{ print $4 }' <<<"$peer_line")
ws_url=${peer_url/http:/ws:}

node scripts/serve.mjs --dir dist --host "$DEMO_HOST" --port "$DEMO_PORT" \
  --peer "$peer_url" --peer "$ws_url" --peer "jsonrpc+$peer_url" >"$tmp/serve.out" 2>&1 &
serve_pid=$!
page_url=""
for _ in $(seq 1 100); do
  page_url=$(awk '$1 == "serving" { print $2 }' "$tmp/serve.out")
  [ -n "$page_url" ] && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$tmp/serve.out" >&2; exit 1; }
  sleep 0.1
done
[ -n "$page_url" ] || { echo "the demo page server did not start" >&2; exit 1; }

cat <<MSG

  triesync demo is running.

    open      $page_url
    peer      $peer_url  (binary HTTP, WebSocket and JSON-RPC)
              serving the Ethereum mainnet genesis state, root
              $root

  The page prefills the peers and the root; press "Start sync". Ctrl-C stops the demo.

MSG

# Wait for either child to end; Ctrl-C interrupts the wait and runs the cleanup.
stopping=""
trap 'stopping=1; exit 130' INT TERM
wait -n "$peer_pid" "$serve_pid" || true
sleep 0.3
[ -n "$stopping" ] && exit 130
echo "a demo process ended unexpectedly:" >&2
tail -n 5 "$tmp/peer.err" "$tmp/serve.out" >&2 || true
exit 1
