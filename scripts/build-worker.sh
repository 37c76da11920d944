#!/usr/bin/env bash
# Builds the Worker into edge-worker/build: worker-build --release (offline: the wasm-bindgen,
# esbuild and wasm-opt installed by `make tools`, found through npm's own bin links on any platform), then wasm-opt -O3 from npm binaryen 132 on the
# wasm (worker-build 0.8 runs none itself; cached by input hash, it takes minutes). -O3, not -Oz:
# the same gzip size within 0.3% here (2,804,511 vs 2,795,936 bytes), and the Worker runs the large model.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hiedge/target}
cd "$(dirname "$0")/.."
root=$PWD

(cd edge-worker && WASM_BINDGEN_BIN=$(command -v wasm-bindgen) \
  ESBUILD_BIN=$root/node_modules/.bin/esbuild \
  WASM_OPT_BIN=$root/node_modules/.bin/wasm-opt worker-build --release)

raw=edge-worker/build/index_bg.wasm
# workerd's V8 runs wasm exception handling, which wasm-bindgen's catch wrappers use.
scripts/wasm-opt-cached.sh "$raw" worker -O3 --strip-debug --strip-producers \
  --enable-simd --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-exception-handling
echo "worker: $(wc -c < "$raw" | tr -d " ") bytes wasm, $(gzip -9c "$raw" | wc -c) gzip"
