// The demo page's data: for every model set under a models directory (a sub-directory with a
// manifest.json), its device-side files (manifest, tiny model, early-exit stages) and, when it has a
// fixture, its committed test images, into <out>/<set>/, listed in <out>/sets.json for the page's
// model-set selector. Every file a manifest names is checked first (scripts/model-files.mjs): a
// manifest cannot make this copy a file from outside its set's directory.
//
//   node scripts/www-data.mjs MODELS_DIR OUT_DIR
import { existsSync, copyFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { readArgs } from "./args.mjs";
import { setFilePath } from "./model-files.mjs";

const SAMPLES = ["images.u8", "labels.u8", "large_logits.f32"];

/**
 * Writes the page's data for every set of `modelsDir` into `outDir`; returns the sets' entries.
 * Throws, before copying anything of a set, when one of its files fails the check.
 * @param {string} modelsDir
 * @param {string} outDir
 */
export function writeWwwData(modelsDir, outDir) {
  const sets = [];
  for (const name of readdirSync(modelsDir).sort()) {
    const dir = join(modelsDir, name);
    if (!lstatSync(dir).isDirectory() || !existsSync(join(dir, "manifest.json"))) continue;
    const manifestPath = setFilePath(dir, "manifest.json", "manifest.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    const files = [manifestPath, setFilePath(dir, manifest?.models?.tiny?.file, "models.tiny.file")];
    const ee = manifest.early_exit;
    if (ee) {
      files.push(setFilePath(dir, ee.stage1?.file, "early_exit.stage1.file"));
      files.push(setFilePath(dir, ee.stage2?.file, "early_exit.stage2.file"));
    }
    const hasSamples = SAMPLES.every((f) => existsSync(join(dir, "fixture", f)));
    if (hasSamples) for (const f of SAMPLES) files.push(setFilePath(dir, `fixture/${f}`, `fixture/${f}`));
    else console.log(`www-data: ${name} has no fixture with test images: upload and camera only`);
    const out = join(outDir, name);
    mkdirSync(out, { recursive: true });
    for (const f of files) copyFileSync(f, join(out, basename(f)));
    sets.push({
      name,
      samples: hasSamples,
      tiny: basename(manifest.models.tiny.file),
      earlyExit: ee ? { stage1: basename(ee.stage1.file), stage2: basename(ee.stage2.file) } : null,
      calibrated: Boolean(manifest.decision),
      monitoring: Boolean(manifest.decision?.monitoring),
    });
  }
  writeFileSync(join(outDir, "sets.json"), JSON.stringify({ sets }, null, 2) + "\n");
  return sets;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const { positionals } = readArgs({ usage: "node scripts/www-data.mjs MODELS_DIR OUT_DIR", positionals: [2, 2] });
  try {
    const sets = writeWwwData(positionals[0], positionals[1]);
    console.log(`www-data: model sets ${sets.map((s) => s.name).join(", ")}`);
  } catch (e) {
    console.error(`www-data: ${e.message}`);
    process.exit(1);
  }
}
