#!/usr/bin/env bash
# The client's wasm-bindgen tests in headless Chromium via chromedriver (no downloads).
# Fails when no test ran: "running 0 tests" means nothing was checked.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hiedge/target}
cd "$(dirname "$0")/../wasm-client"
# The driver from $CHROMEDRIVER or PATH (Debian's chromium-driver, Homebrew's chromedriver, ...).
driver=${CHROMEDRIVER:-$(command -v chromedriver || true)}
[ -n "$driver" ] || { echo "test-browser: no chromedriver: run scripts/install-tools.sh chromium, or set CHROMEDRIVER" >&2; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
WASM_BINDGEN_USE_BROWSER=1 WASM_BINDGEN_TEST_TIMEOUT=120 \
  wasm-pack --log-level warn test --release --headless --chrome --chromedriver "$driver" --mode no-install 2>&1 | tee "$log"
grep -Eq "running [1-9][0-9]* tests?" "$log" || { echo "test-browser: no browser test ran" >&2; exit 1; }
grep -q "test result: ok" "$log" || { echo "test-browser: failed" >&2; exit 1; }
