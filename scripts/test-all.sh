#!/usr/bin/env bash
# Every test of triesync, from a fresh machine: installs what is missing, then runs the
# native tests, the core under wasm, the reference peer's integration tests, the browser
# tests in headless Chromium with real IndexedDB, and the end-to-end page tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==== %s ====\n' "$*"; }

# The native tests read the fixtures at run time, the wasm build compiles them in from
# ../shared/fixtures: without them everything below fails far from the cause.
fixtures="${TRIESYNC_FIXTURES:-../shared/fixtures}"
for dir in "$fixtures" ../shared/fixtures; do
  if [ ! -d "$dir/states" ] || [ ! -d "$dir/trietests" ]; then
    echo "error: no fixtures at $dir (want states/ and trietests/; see TRIESYNC_FIXTURES," \
      "and the wasm build always reads ../shared/fixtures)" >&2
    exit 1
  fi
done

step "setup"
bash scripts/setup.sh

step "native tests (core, peer)"
cargo test -p triesync-core -p triesync-peer

# The peer's scale promise: 1,000,000 synthetic accounts built and served within 60 s.
step "reference peer at 1,000,000 accounts (release build)"
bash scripts/check-peer-scale.sh

# The core's unit and integration tests, built for wasm32.
step "core under wasm (wasm-bindgen-test on Node)"
wasm-pack test --node core

# Through bash, so that a lost exec bit fails the run instead of skipping the step.
step "browser tests (headless Chromium, IndexedDB, real peers)"
bash scripts/browser-tests.sh

step "package and end-to-end page tests"
bash scripts/e2e.sh

step "all tests passed"
