// Writes `index.json` at the root of a model-set directory (the Worker's static assets): the names
// of its sub-directories that hold a `manifest.json`, which `GET /v1/models` lists. wrangler runs it
// as the build step of `wrangler dev` and `wrangler deploy` (wrangler.toml [build]), so adding a set
// is adding its directory and redeploying.
//
//   node edge-worker/index-models.mjs [DIR]   (default: models/ of this repository)
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { readArgs } from "../scripts/args.mjs";
import { refuseLinks } from "../scripts/model-files.mjs";

/** hiedge-core's constants (core/protocol-constants.json, generated and kept current by its tests). */
const CORE = JSON.parse(readFileSync(new URL("../core/protocol-constants.json", import.meta.url), "utf8"));
/** The set-name rule (`protocol::is_set_name`). */
const SET_NAME = new RegExp(CORE.setNamePattern);
/** Cloudflare's largest static asset (`protocol::MAX_STATIC_ASSET_BYTES`, 25 MiB). */
const MAX_ASSET = CORE.maxStaticAssetBytes;

/**
 * Throws when a file the upload would carry (all but the ONNX sources, which models/.assetsignore
 * leaves out) is over Cloudflare's static-asset limit: wrangler would refuse the whole upload, every
 * set with it. `hiedge import` refuses such a set first; this catches one that did not come from it.
 */
function checkAssetSizes(setDir) {
  for (const entry of readdirSync(setDir, { withFileTypes: true })) {
    if (!entry.isFile() || entry.name.endsWith(".onnx")) continue;
    const bytes = statSync(join(setDir, entry.name)).size;
    if (bytes > MAX_ASSET) {
      throw new Error(
        `${join(setDir, entry.name)} is ${bytes} bytes: Cloudflare serves static assets of at most ${MAX_ASSET} bytes ` +
          "(25 MiB) each (https://developers.cloudflare.com/workers/platform/limits/); remove the set or use a smaller model",
      );
    }
  }
}

/**
 * Indexes `dir`; returns the set names. Throws on a set directory whose name is not a set name,
 * that holds a symbolic link, or a file over the static-asset limit.
 */
export function indexModelSets(dir) {
  const sets = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || !existsSync(join(dir, entry.name, "manifest.json"))) continue;
    if (!SET_NAME.test(entry.name)) {
      throw new Error(`${join(dir, entry.name)}: a model set's directory name must be 1-64 of a-z, 0-9, - and _`);
    }
    // The assets directory is uploaded whole: a symbolic link would publish what it points at.
    refuseLinks(join(dir, entry.name));
    checkAssetSizes(join(dir, entry.name));
    sets.push(entry.name);
  }
  sets.sort();
  const path = join(dir, "index.json");
  const text = JSON.stringify({ sets }) + "\n";
  if (!existsSync(path) || readFileSync(path, "utf8") !== text) writeFileSync(path, text);
  return sets;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const { positionals } = readArgs({ usage: "node edge-worker/index-models.mjs [MODELS_DIR]", positionals: [0, 1] });
  const dir = resolve(positionals[0] ?? join(import.meta.dirname, "..", "models"));
  try {
    const sets = indexModelSets(dir);
    console.log(`index-models: ${sets.length} model set(s) in ${dir}: ${sets.join(", ")}`);
  } catch (e) {
    console.error(`index-models: ${e.message}`);
    process.exit(1);
  }
}
