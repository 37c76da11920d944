#!/usr/bin/env bash
# The client's wasm-bindgen tests in headless Debian Chromium via chromedriver (no downloads).
# Fails when no test ran: "running 0 tests" means nothing was checked.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hiedge/target}
cd "$(dirname "$0")/../wasm-client"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
WASM_BINDGEN_USE_BROWSER=1 WASM_BINDGEN_TEST_TIMEOUT=120 \
  wasm-pack --log-level warn test --release --headless --chrome --chromedriver /usr/bin/chromedriver --mode no-install 2>&1 | tee "$log"
grep -Eq "running [1-9][0-9]* tests?" "$log" || { echo "test-browser: no browser test ran" >&2; exit 1; }
grep -q "test result: ok" "$log" || { echo "test-browser: failed" >&2; exit 1; }
