#!/usr/bin/env bash
# Installs what building and testing triesync needs, skipping whatever is already there.
# Safe to run again and again; CI runs it on every build.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { ! command -v "$1" >/dev/null 2>&1; }

if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi

# wasm-pack would download wasm-bindgen and binaryen from the web; we install the
# matching wasm-bindgen CLI from crates.io instead and turn wasm-opt off (see crate/Cargo.toml).
if need wasm-pack; then
  cargo install wasm-pack
fi
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ -z "$wb_version" ]; then
  cargo generate-lockfile
  wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
fi
if [ -n "$wb_version" ] && ! wasm-bindgen --version 2>/dev/null | grep -q " $wb_version\$"; then
  cargo install wasm-bindgen-cli --version "$wb_version"
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi

if need node || need npm; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
fi

# The JavaScript tools (webpack, binaryen's wasm-opt, playwright-core driving Debian's
# Chromium; never a downloaded browser): installed again when package-lock.json is newer
# than the last install.
if [ -f package-lock.json ]; then
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
elif [ -f package.json ] && [ ! -d node_modules ]; then
  npm install --no-audit --no-fund
fi
