#!/usr/bin/env bash
# Package and end-to-end page tests (tests/e2e, node's test runner + headless Chromium):
#   - builds the npm package into pkg/ (wasm-pack, size profile, wasm-opt) and the demo
#     page into dist/ (webpack), and the reference peer;
#   - tests/e2e/demo.test.mjs: the demo page against real peers on 127.0.0.1: a full sync
#     over HTTP + WebSocket, the root verified, lookups with the peer stopped, a reload
#     mid-sync that resumes, pause + reload + resume, errors, the stats, the peers of the
#     server's demo-config.json;
#   - tests/e2e/demo-script.test.mjs: scripts/demo.sh itself on free ports (the URLs it
#     prints, what it serves, its cleanup on SIGTERM);
#   - tests/e2e/package.test.mjs: `npm pack` installed into a fresh project outside the
#     repository, type-checked, bundled with webpack 5 and with Vite, and loaded from a
#     plain <script type="module">, each running a sync in Chromium; the root README's
#     wallet example run as written against local peers;
#   - tests/e2e/crash.test.mjs: Chromium SIGKILLed at 20 moments of a sync (a write
#     transaction open, a commit under way, just after a commit, random), one profile
#     reused: the store stays sound (StateDb.checkStore, verify, meta counters) and the sync
#     resumes, fetching only what is missing;
#   - tests/e2e/quota.test.mjs: the origin's quota made small over the DevTools protocol:
#     QUOTA_EXCEEDED, a consistent store, and a resume once it is lifted;
#   - tests/e2e/tabs.test.mjs: two tabs on one database: lockTimeoutMs waits for the
#     writer, LOCKED otherwise, batches never interleave.
# Screenshots go to tests/artifacts/. Extra arguments go to `node --test` (for example
# `--test-name-pattern reload`). TRIESYNC_SKIP_BUILD=1 reuses pkg/, dist/ and the peer.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n---- %s\n' "$*"; }

if [ "${TRIESYNC_SKIP_SETUP:-}" != 1 ]; then
  scripts/setup.sh
fi

if [ "${TRIESYNC_SKIP_BUILD:-}" != 1 ]; then
  step "reference peer"
  cargo build -q -p triesync-peer
  step "npm package (pkg/)"
  node scripts/build-pkg.mjs
  step "demo page (dist/)"
  node_modules/.bin/webpack --mode production
fi

export TRIESYNC_PEER_BIN=${TRIESYNC_PEER_BIN:-$PWD/target/debug/triesync-peer}
mkdir -p tests/artifacts
step "end-to-end tests"
node --test --test-concurrency=1 --test-timeout=600000 "$@" tests/e2e/
