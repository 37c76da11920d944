#!/usr/bin/env bash
# Installs what hiedge's build and tests need, idempotently, without downloads from GitHub:
#   rust target wasm32, wasm-bindgen-cli at the exact Cargo.lock version, wasm-pack, worker-build,
#   the npm dev tools (wrangler/workerd, binaryen's wasm-opt, playwright-core), Debian chromium +
#   chromium-driver. Usage: scripts/install-tools.sh [rust|npm|chromium|all]...
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

want_wasm_bindgen() {
  # The exact version in Cargo.lock: wasm-pack and worker-build only use a CLI that matches it.
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

rust_tools() {
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  local v; v=$(want_wasm_bindgen)
  [ -n "$v" ] || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$v" ]; then
    echo "installing wasm-bindgen-cli $v (~5-9 min)"
    # No --locked: its lock file names a webpki-roots version the registry mirror lacks (the other
    # cargo installs here, and cargo-fuzz in scripts/fuzz.sh, are --locked).
    cargo install -q wasm-bindgen-cli --version "=$v" --force
  fi
  command -v wasm-pack >/dev/null || { echo "installing wasm-pack"; cargo install -q wasm-pack --locked; }
  if ! worker-build --version 2>/dev/null | grep -q '^0\.8\.'; then
    echo "installing worker-build 0.8 (~10-16 min)"
    cargo install -q worker-build --version "^0.8" --locked
  fi
}

npm_tools() {
  # package-lock.json pins wrangler 4.86.0 (Node 20), binaryen 132, playwright-core, Vite, Chart.js.
  # `npm ci`: exactly the lock, or an error (the lock lists every platform's optional rollup and
  # esbuild packages, which npm 11's `ci` needs). Run again only when the lock changed.
  if [ ! -x node_modules/.bin/vite ] || ! cmp -s package-lock.json node_modules/.hiedge-lock; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.hiedge-lock
  fi
  node_modules/.bin/wrangler --version >/dev/null
  # workerd through its package's bin link: npm installed the binary for this platform.
  node_modules/.bin/workerd --version >/dev/null
}

chromium() {
  # A browser and its driver of the same version: $CHROMIUM / $CHROMEDRIVER when set, else from PATH.
  local browser driver
  browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
  driver=${CHROMEDRIVER:-$(command -v chromedriver || true)}
  if [ -n "$browser" ] && [ -n "$driver" ]; then return; fi
  if command -v apt-get >/dev/null; then
    echo "installing Debian chromium + chromium-driver"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    # Not Debian: the package manager differs (README: "Other systems").
    echo "no chromium and chromedriver found: install both (macOS: brew install --cask chromium chromedriver)" >&2
    echo "or set CHROMIUM and CHROMEDRIVER to their paths" >&2
    exit 1
  fi
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case $what in
    rust) rust_tools ;;
    npm) npm_tools ;;
    chromium) chromium ;;
    all) rust_tools; npm_tools; chromium ;;
    *) echo "unknown: $what (rust|npm|chromium|all)" >&2; exit 2 ;;
  esac
done
