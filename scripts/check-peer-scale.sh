#!/usr/bin/env bash
# Scale check of the reference peer: `--synthetic 1m` (1,000,000 accounts) must build and
# be listening within 60 s. Builds the release peer (reusing what is built), starts it on a
# free port, waits for its first stdout line, checks /v1/info's account count, prints the
# build time (the peer's own log line), the time to listen and the peak resident memory,
# then stops the peer. Exits nonzero on any failure; the peer and the temporary directory
# are removed however the script ends.
#
# Env: TRIESYNC_SCALE_SPEC (default 1m), TRIESYNC_SCALE_ACCOUNTS (default 1000000),
# TRIESYNC_SCALE_LIMIT_S (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

spec=${TRIESYNC_SCALE_SPEC:-1m}
want_accounts=${TRIESYNC_SCALE_ACCOUNTS:-1000000}
limit=${TRIESYNC_SCALE_LIMIT_S:-60}

echo "building the release peer"
cargo build -q --release -p triesync-peer
bin=target/release/triesync-peer

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "check-peer-scale: FAIL: $*" >&2
  if [ -s "$tmp/err" ]; then
    echo "--- peer stderr ---" >&2
    tail -n 20 "$tmp/err" >&2
  fi
  exit 1
}

mkfifo "$tmp/out"
start=$(date +%s.%N)
# stdin from /dev/null would end at once: --exit-on-stdin-close is not used; the trap stops it.
"$bin" --synthetic "$spec" --port 0 >"$tmp/out" 2>"$tmp/err" </dev/null &
pid=$!
exec 3<"$tmp/out"

line=""
rc=0
IFS= read -r -t "$limit" line <&3 || rc=$?
if [ "$rc" -gt 128 ]; then
  fail "no first line within ${limit} s"
elif [ "$rc" -ne 0 ]; then
  fail "the peer exited before listening"
fi
listen_s=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
case "$line" in
  "listening http://"*" root 0x"*) ;;
  *) fail "unexpected first line: $line" ;;
esac
base=$(echo "$line" | awk '{print $2}')

# Peak resident memory so far (the state is built; serving /v1/info adds nothing).
peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")

info=$(curl -sS --max-time 10 "$base/v1/info") || fail "GET /v1/info failed"
accounts=$(echo "$info" | sed -n 's/.*"accounts":\([0-9]*\).*/\1/p')
[ "$accounts" = "$want_accounts" ] ||
  fail "/v1/info reports accounts=${accounts:-none}, expected $want_accounts: $info"

built=$(grep -o 'built .* in [0-9.]*s' "$tmp/err" | head -n 1 || true)
printf 'check-peer-scale: OK: --synthetic %s: %s accounts\n' "$spec" "$accounts"
printf '  build (peer log): %s\n' "${built:-?}"
printf '  listening after:  %.2f s (limit %s s)\n' "$listen_s" "$limit"
printf '  peak RSS:         %d MB\n' "$((peak_kb / 1024))"
echo "  $info"
