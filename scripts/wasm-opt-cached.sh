#!/usr/bin/env bash
# Runs wasm-opt (npm binaryen 132) on FILE in place with FLAGS, cached under
# $HIEDGE_CACHE/wasm-opt/NAME-<hash of FILE, FLAGS and wasm-opt's version>.wasm: it takes minutes
# on a large module, and another binaryen may optimise differently.
# Used by scripts/build-wasm.sh (the client) and scripts/build-worker.sh (the Worker).
#
#   scripts/wasm-opt-cached.sh FILE NAME FLAG...
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${HIEDGE_CACHE:-$HOME/.cache/hiedge}
file=$1 name=$2
shift 2
version=$(node_modules/.bin/wasm-opt --version)
key=$({ cat "$file"; printf '%s\n' "$@" "$version"; } | sha256sum | cut -c1-16)
opt=$CACHE/wasm-opt/$name-$key.wasm
if [ ! -f "$opt" ]; then
  echo "wasm-opt $1 on $(du -h "$file" | cut -f1) (a few minutes; cached afterwards)"
  mkdir -p "$CACHE/wasm-opt"
  node_modules/.bin/wasm-opt "$file" "$@" -o "$opt.tmp"
  mv "$opt.tmp" "$opt"
fi
cp "$opt" "$file"
