#!/usr/bin/env bash
# Builds the `hiedge` npm package into wasm-client/pkg: wasm-pack (release, simd128, --target web,
# no downloads), then wasm-opt -Oz from npm binaryen 132 (cached by input hash, it takes minutes),
# then the package.json and README the package ships with.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hiedge/target}
cd "$(dirname "$0")/.."
CACHE=${HIEDGE_CACHE:-$HOME/.cache/hiedge}
PKG=wasm-client/pkg

wasm-pack --log-level warn build wasm-client --release --target web --out-dir pkg --out-name hiedge --mode no-install

raw=$PKG/hiedge_bg.wasm
key=$(cat "$raw" scripts/build-wasm.sh | sha256sum | cut -c1-16)
opt=$CACHE/wasm-opt/client-$key.wasm
if [ ! -f "$opt" ]; then
  echo "wasm-opt -Oz on $(du -h "$raw" | cut -f1) (a few minutes; cached afterwards)"
  mkdir -p "$CACHE/wasm-opt"
  node_modules/.bin/wasm-opt "$raw" -Oz --strip-debug --strip-producers \
    --enable-simd --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals --enable-reference-types --enable-multivalue -o "$opt.tmp"
  mv "$opt.tmp" "$opt"
fi
cp "$opt" "$raw"
node scripts/npm-package.mjs "$PKG"
echo "built $PKG: $(stat -c %s "$raw") bytes raw, $(gzip -9c "$raw" | wc -c) bytes gzip"
