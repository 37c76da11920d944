#!/usr/bin/env bash
# Builds the `hiedge` npm package into wasm-client/pkg: the crate's two wasm modules with wasm-pack
# (cargo profile `client`, for size where that costs no speed, see Cargo.toml; simd128, --target web,
# no downloads): the device build (`hiedge_bg.wasm`: tract, HiClient, HiStream) and the loader build
# (`hiedge_loader_bg.wasm`, --no-default-features: the network layer alone, see wasm-client/src/lib.rs);
# then wasm-opt -Oz from npm binaryen 132 on each (cached by input hash, it takes minutes), then the
# package.json and README the package ships with.
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hiedge/target}
cd "$(dirname "$0")/.."
PKG=wasm-client/pkg

# The loader first, into its own folder (wasm-pack empties the folder it writes), then moved in.
wasm-pack --log-level warn build wasm-client --profile client --target web --out-dir pkg-loader \
  --out-name hiedge_loader --mode no-install -- --no-default-features
wasm-pack --log-level warn build wasm-client --profile client --target web --out-dir pkg --out-name hiedge --mode no-install
mv wasm-client/pkg-loader/hiedge_loader* "$PKG/"
rm -rf wasm-client/pkg-loader

for name in hiedge hiedge_loader; do
  scripts/wasm-opt-cached.sh "$PKG/${name}_bg.wasm" "client-$name" -Oz --strip-debug --strip-producers \
    --enable-simd --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals --enable-reference-types --enable-multivalue
done
node scripts/npm-package.mjs "$PKG"
for name in hiedge hiedge_loader; do
  raw=$PKG/${name}_bg.wasm
  echo "built $raw: $(wc -c < "$raw" | tr -d " ") bytes raw, $(gzip -9c "$raw" | wc -c) bytes gzip"
done
