#!/usr/bin/env bash
# Builds the `hiedge` npm package into wasm-client/pkg: wasm-pack (cargo profile `client`, for size
# where that costs no speed, see Cargo.toml; simd128, --target web, no downloads), then wasm-opt -Oz
# from npm binaryen 132 (cached by input hash, it takes minutes), then the package.json and README
# the package ships with.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hiedge/target}
cd "$(dirname "$0")/.."
PKG=wasm-client/pkg

wasm-pack --log-level warn build wasm-client --profile client --target web --out-dir pkg --out-name hiedge --mode no-install

raw=$PKG/hiedge_bg.wasm
scripts/wasm-opt-cached.sh "$raw" client -Oz --strip-debug --strip-producers \
  --enable-simd --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-mutable-globals --enable-reference-types --enable-multivalue
node scripts/npm-package.mjs "$PKG"
echo "built $PKG: $(wc -c < "$raw" | tr -d " ") bytes raw, $(gzip -9c "$raw" | wc -c) bytes gzip"
