#!/usr/bin/env bash
# Builds the demo page into www/dist with Vite: the `hiedge` package from wasm-client/pkg (`make
# wasm`) plus, for every model set under models/ (a directory with a manifest.json), its device-side
# files (manifest, tiny model, early-exit stages) and, when it has a fixture, its 1,000 committed
# test images in www/public/data/<set>/, listed in www/public/data/sets.json for the page's
# model-set selector. A set without test images (one you imported) still gets upload and camera.
# scripts/www-data.mjs checks every file a manifest names before copying it (no `..`, no absolute
# path, no symbolic link).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f wasm-client/pkg/hiedge.js ] || { echo "wasm-client/pkg is missing: run make wasm" >&2; exit 1; }
rm -rf www/public/data
mkdir -p www/public/data
node scripts/www-data.mjs models www/public/data
node_modules/.bin/vite build www --logLevel warn
echo "built www/dist"
