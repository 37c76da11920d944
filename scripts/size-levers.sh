#!/usr/bin/env bash
# Builds the client wasm (`hiedge` npm package) once per size lever, each into
# $CACHE/levers/<lever>/ (hiedge.js + hiedge_bg.wasm, loadable side by side in one page), and
# appends one line per lever to $CACHE/levers/sizes.tsv: lever, cargo settings, wasm-opt, raw,
# gzip -9, brotli -q 11 bytes, cargo build seconds, wasm-opt seconds.
# `node scripts/bench-size.mjs` then times every built lever in one browser run (bench/size.md).
#
#   scripts/size-levers.sh [lever ...]     (default: all of them; each is a full tract build)
set -euo pipefail
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hiedge/target}
cd "$(dirname "$0")/.."
CACHE=${HIEDGE_CACHE:-$HOME/.cache/hiedge}
OUT=$CACHE/levers
mkdir -p "$OUT"

# lever name -> cargo --config settings for the profile `lever` and wasm-opt flags. `lever`
# inherits release but not its per-package levels: every dependency, tract-core and tract-linalg
# start at the lever's own opt-level (3 unless it sets one), then take the lever's package
# settings (so a lever means the same build if Cargo.toml's release profile gains per-package
# levels).
declare -A CFG OPT RUSTFLAGS_OF
CFG[release]="" ; OPT[release]="none"
CFG[release-oz]="" ; OPT[release-oz]="-Oz"
CFG[release-o3]="" ; OPT[release-o3]="-O3"
CFG[s]="opt-level='s'" ; OPT[s]="-Oz"
CFG[z]="opt-level='z'" ; OPT[z]="-Oz"
CFG[lto]="lto='fat' codegen-units=1" ; OPT[lto]="-Oz"
CFG[s-lto]="opt-level='s' lto='fat' codegen-units=1" ; OPT[s-lto]="-Oz"
CFG[s-lto-o3]="opt-level='s' lto='fat' codegen-units=1" ; OPT[s-lto-o3]="-O3"
CFG[s-lto-linalg3]="opt-level='s' lto='fat' codegen-units=1 package.tract-linalg.opt-level=3" ; OPT[s-lto-linalg3]="-Oz"
# relaxed: the default build with relaxed SIMD on too (tract-linalg then uses f32x4.relaxed_madd,
# a fused multiply-add, in its wide matmul kernels); it needs a browser with relaxed SIMD.
CFG[relaxed]="" ; OPT[relaxed]="-Oz" ; RUSTFLAGS_OF[relaxed]="-C target-feature=+simd128,+relaxed-simd"
CFG[s-lto-tract3]="opt-level='s' lto='fat' codegen-units=1 package.tract-linalg.opt-level=3 package.tract-core.opt-level=3" ; OPT[s-lto-tract3]="-Oz"
# Per-crate opt-level: size-optimised everywhere but the crates whose code the models' time goes
# through (tract-linalg's kernels, hiedge-core's max pool; then tract-core's ops as well). Generic
# code is compiled in the crate that instantiates it, so tract-core's level also covers the
# ndarray and smallvec code its ops use.
CFG[z-kernels3]="opt-level='z' package.tract-linalg.opt-level=3 package.hiedge-core.opt-level=3" ; OPT[z-kernels3]="-Oz"
CFG[z-tract3]="opt-level='z' package.tract-linalg.opt-level=3 package.hiedge-core.opt-level=3 package.tract-core.opt-level=3" ; OPT[z-tract3]="-Oz"
# z-core-s: z-kernels3 with tract-core at 's' (size, but with more inlining than 'z').
CFG[z-core-s]="opt-level='z' package.tract-linalg.opt-level=3 package.hiedge-core.opt-level=3 package.tract-core.opt-level='s'" ; OPT[z-core-s]="-Oz"
# z-core-s-hz: z-core-s with hiedge-core at 'z' (its serde code for manifests and results is
# most of what level 3 adds there).
CFG[z-core-s-hz]="opt-level='z' package.tract-linalg.opt-level=3 package.tract-core.opt-level='s'" ; OPT[z-core-s-hz]="-Oz"
# z-linalg3-msf: z-linalg3 with binaryen's merge-similar-functions pass before -Oz (it merges
# functions that differ only in constants, such as one generic's copies per element type).
CFG[z-linalg3-msf]="opt-level='z' package.tract-linalg.opt-level=3" ; OPT[z-linalg3-msf]="--merge-similar-functions -Oz"
# *-cgu1: the same with one codegen unit per crate (no LTO): each crate optimised as a whole, so
# LLVM can share and inline across what 16 units would split.
CFG[z-kernels3-cgu1]="opt-level='z' package.tract-linalg.opt-level=3 package.hiedge-core.opt-level=3 codegen-units=1" ; OPT[z-kernels3-cgu1]="-Oz"
CFG[release-cgu1]="codegen-units=1" ; OPT[release-cgu1]="-Oz"
CFG[z-linalg3-cgu1]="opt-level='z' package.tract-linalg.opt-level=3 codegen-units=1" ; OPT[z-linalg3-cgu1]="-Oz"
# z-linalg3: only tract-linalg's kernels at level 3; hiedge-core too at 'z' (its own kernels, and
# the serde code for manifests and results that it instantiates).
CFG[z-linalg3]="opt-level='z' package.tract-linalg.opt-level=3" ; OPT[z-linalg3]="-Oz"
# deps-z: z-tract3 as Cargo.toml's release profile could say it for every build: the workspace's
# own crates at level 3, every dependency at 'z' but tract-core and tract-linalg. Not shipped:
# 2-5% slower than release-oz in a run of those two alone (bench/size.md).
CFG[deps-z]="package.\"*\".opt-level='z' package.tract-linalg.opt-level=3 package.tract-core.opt-level=3" ; OPT[deps-z]="-Oz"
# z-linalg3-data3: z-linalg3 with tract-data (tensors, shapes) at level 3 too.
CFG[z-linalg3-data3]="opt-level='z' package.tract-linalg.opt-level=3 package.tract-data.opt-level=3" ; OPT[z-linalg3-data3]="-Oz"
# z-linalg3-wo3: z-linalg3 with binaryen's -O3 (its inliner may take in what LLVM left out at z).
CFG[z-linalg3-wo3]="opt-level='z' package.tract-linalg.opt-level=3" ; OPT[z-linalg3-wo3]="-O3"
# client: Cargo.toml's own profile `client`, the one `make wasm` ships (as z-kernels3-cgu1 says it).
CFG[client]="profile client (Cargo.toml)" ; OPT[client]="-Oz"
# client-*: the profile `client` with these package settings on top (every other setting as it is).
# client-core-z: hiedge-core at 'z' rather than 's'; client-core-3: at 3, as before the kernels
# had their own crate (hiedge-kernels).
CFG[client-core-z]="package.hiedge-core.opt-level='z'" ; OPT[client-core-z]="-Oz"
CFG[client-core-3]="package.hiedge-core.opt-level=3" ; OPT[client-core-3]="-Oz"
# client-relaxed: the profile `client` with relaxed SIMD on too (tract-linalg's wide matmul kernels
# then use f32x4.relaxed_madd, a fused multiply-add where the CPU has one).
CFG[client-relaxed]="" ; OPT[client-relaxed]="-Oz" ; RUSTFLAGS_OF[client-relaxed]="-C target-feature=+simd128,+relaxed-simd"
# client-tract-convs: the profile `client` with every convolution left to tract (no direct
# convolution, hiedge-kernels' `--cfg hiedge_tract_convs`): what the direct convolution is timed against.
CFG[client-tract-convs]="" ; OPT[client-tract-convs]="-Oz" ; RUSTFLAGS_OF[client-tract-convs]="-C target-feature=+simd128 --cfg hiedge_tract_convs"
ALL=(client client-core-z client-core-3 client-relaxed client-tract-convs release release-oz release-o3 relaxed s z z-kernels3 z-linalg3 z-linalg3-data3 z-linalg3-wo3 z-linalg3-msf z-core-s z-core-s-hz z-kernels3-cgu1 z-linalg3-cgu1 release-cgu1 z-tract3 deps-z lto s-lto s-lto-o3 s-lto-linalg3 s-lto-tract3)
LEVERS=("${@:-${ALL[@]}}")

WASM_OPT_FEATURES="--enable-relaxed-simd --enable-simd --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals --enable-reference-types --enable-multivalue"

for lever in "${LEVERS[@]}"; do
  [ -n "${OPT[$lever]+x}" ] || { echo "unknown lever $lever (known: ${ALL[*]})" >&2; exit 2; }
  if [ "$lever" = client ]; then
    profile=client; args=()   # Cargo.toml's profile as it is, no --config
  elif [[ $lever == client-* ]]; then
    profile=client; args=()   # Cargo.toml's profile with the lever's settings on top
    for kv in ${CFG[$lever]}; do args+=(--config "profile.client.${kv%%=*}=${kv#*=}"); done
  else
    profile=lever
    args=(--config 'profile.lever.inherits="release"')
    level=3
    for kv in ${CFG[$lever]}; do [[ $kv == opt-level=* ]] && level=${kv#opt-level=}; done
    declare -A settings=([package.\"*\".opt-level]=$level [package.tract-core.opt-level]=$level [package.tract-linalg.opt-level]=$level)
    for kv in ${CFG[$lever]}; do settings[${kv%%=*}]=${kv#*=}; done
    for k in "${!settings[@]}"; do args+=(--config "profile.lever.$k=${settings[$k]}"); done
    unset settings
  fi
  echo "== $lever: ${CFG[$lever]:-release defaults}, wasm-opt ${OPT[$lever]}"
  t0=$(date +%s)
  # A lever's own RUSTFLAGS replace .cargo/config.toml's (simd128) for this build only.
  # Such a build has its own target dir: cargo keeps one copy of each crate per target dir whatever
  # its flags, so sharing one would rebuild all of tract at every switch.
  flags=() target=$CARGO_TARGET_DIR
  if [ -n "${RUSTFLAGS_OF[$lever]:-}" ]; then
    target=$CARGO_TARGET_DIR/flags-$lever
    flags=("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS=${RUSTFLAGS_OF[$lever]}")
  fi
  env "${flags[@]}" CARGO_TARGET_DIR="$target" \
    cargo build -q -p hiedge-wasm --lib --target wasm32-unknown-unknown --profile "$profile" "${args[@]}"
  t1=$(date +%s)
  dir=$OUT/$lever
  rm -rf "$dir" && mkdir -p "$dir"
  wasm-bindgen --target web --out-dir "$dir" --out-name hiedge \
    "$target/wasm32-unknown-unknown/$profile/hiedge_wasm.wasm"
  wasm=$dir/hiedge_bg.wasm
  if [ "${OPT[$lever]}" != none ]; then
    # shellcheck disable=SC2086
    node_modules/.bin/wasm-opt "$wasm" ${OPT[$lever]} --strip-debug --strip-producers $WASM_OPT_FEATURES -o "$wasm.tmp"
    mv "$wasm.tmp" "$wasm"
  fi
  t2=$(date +%s)
  raw=$(wc -c < "$wasm" | tr -d " "); gz=$(gzip -9c "$wasm" | wc -c); br=$(node -e 'const z=require("zlib");const b=require("fs").readFileSync(process.argv[1]);console.log(z.brotliCompressSync(b,{params:{[z.constants.BROTLI_PARAM_QUALITY]:11}}).length)' "$wasm")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$lever" "${CFG[$lever]:-release}" "${OPT[$lever]}" "$raw" "$gz" "$br" \
    $((t1 - t0)) $((t2 - t1)) | tee -a "$OUT/sizes.tsv"
done
