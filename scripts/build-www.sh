#!/usr/bin/env bash
# Builds the demo page into www/dist with Vite: the `hiedge` package from wasm-client/pkg (`make
# wasm`) plus, for every model set under models/ (a directory with a manifest.json), its device-side
# files (manifest, tiny model, early-exit stages) and, when it has a fixture, its 1,000 committed
# test images in www/public/data/<set>/, listed in www/public/data/sets.json for the page's
# model-set selector. A set without test images (one you imported) still gets upload and camera.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f wasm-client/pkg/hiedge.js ] || { echo "wasm-client/pkg is missing: run make wasm" >&2; exit 1; }
rm -rf www/public/data
mkdir -p www/public/data
node - <<'JS'
const fs = require("node:fs");
const path = require("node:path");
const sets = [];
for (const name of fs.readdirSync("models").sort()) {
  const dir = path.join("models", name);
  if (!fs.existsSync(path.join(dir, "manifest.json"))) continue;
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  const fixture = path.join(dir, "fixture");
  const samples = ["images.u8", "labels.u8", "large_logits.f32"];
  const hasSamples = samples.every((f) => fs.existsSync(path.join(fixture, f)));
  if (!hasSamples) console.log(`build-www: ${name} has no fixture with test images: upload and camera only`);
  const out = path.join("www/public/data", name);
  fs.mkdirSync(out, { recursive: true });
  const files = ["manifest.json", manifest.models.tiny.file];
  if (manifest.early_exit) files.push(manifest.early_exit.stage1.file, manifest.early_exit.stage2.file);
  for (const f of files) fs.copyFileSync(path.join(dir, f), path.join(out, path.basename(f)));
  if (hasSamples) for (const f of samples) fs.copyFileSync(path.join(fixture, f), path.join(out, f));
  sets.push({
    name,
    samples: hasSamples,
    tiny: path.basename(manifest.models.tiny.file),
    earlyExit: manifest.early_exit
      ? { stage1: path.basename(manifest.early_exit.stage1.file), stage2: path.basename(manifest.early_exit.stage2.file) }
      : null,
  });
}
fs.writeFileSync("www/public/data/sets.json", JSON.stringify({ sets }, null, 2) + "\n");
console.log(`build-www: model sets ${sets.map((s) => s.name).join(", ")}`);
JS
node_modules/.bin/vite build www --logLevel warn
echo "built www/dist"
