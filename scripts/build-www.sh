#!/usr/bin/env bash
# Builds the demo page into www/dist with Vite: the `hiedge` package from wasm-client/pkg (`make
# wasm`) plus the model set and the 1,000 committed test images in www/public/data.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f wasm-client/pkg/hiedge.js ] || { echo "wasm-client/pkg is missing: run make wasm" >&2; exit 1; }
data=www/public/data
mkdir -p "$data"
cp models/fashion-mnist/{tiny.onnx,ee_stage1.onnx,ee_stage2.onnx,manifest.json} "$data/"
cp models/fashion-mnist/fixture/{images.u8,labels.u8,large_logits.f32} "$data/"
node_modules/.bin/vite build www --logLevel warn
echo "built www/dist"
