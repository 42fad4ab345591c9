#!/usr/bin/env bash
# Every test of triesync, from a fresh machine: installs what is missing, then runs the
# native tests, the core under wasm, the reference peer's integration tests, the browser
# tests in headless Chromium with real IndexedDB, and the end-to-end page tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==== %s ====\n' "$*"; }

step "setup"
scripts/setup.sh

step "native tests (core, peer)"
cargo test -p triesync-core -p triesync-peer

step "core under wasm (wasm-bindgen-test on Node)"
wasm-pack test --node core

if [ -x scripts/browser-tests.sh ]; then
  step "browser tests (headless Chromium, IndexedDB, real peers)"
  scripts/browser-tests.sh
fi

if [ -x scripts/e2e.sh ]; then
  step "package and end-to-end page tests"
  scripts/e2e.sh
fi

step "all tests passed"
