// `hiedge predict`, in headless Chromium and through the Worker: one model of a set on image files,
// run by the npm package on a page (tests/support/predict.html), and, with --worker, the same
// images offloaded raw to the Worker under `wrangler dev` serving that set (its large model
// answers). Prints one JSON line: {"browser": [[probs...]...], "worker": [[probs...]...]} ("browser" is
// null for a model stored in parts: browsers only load device models, which are whole).
// models/train/zoo_architectures.py --browser compares these with `hiedge predict`.
// Usage: node scripts/browser-predict.mjs --models DIR [--model large] [--worker] IMAGE...
import { readFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { startWorkerForSet } from "../tests/support/wrangler.mjs";
import { readArgs } from "./args.mjs";

const repo = resolve(import.meta.dirname, "..");
const { values, positionals } = readArgs({
  usage: "node scripts/browser-predict.mjs --models DIR [--model large] [--worker] IMAGE...",
  flags: { models: null, model: "large", worker: false },
  positionals: [1, 1000],
});
if (!values.models) throw new Error("--models DIR is required");
const setDir = resolve(String(values.models));
const images = positionals.map((p) => resolve(p));
for (const p of [setDir, ...images]) {
  if (!p.startsWith(`${repo}/`)) throw new Error(`${p}: the set and the images must be inside the repository (the page is served from it)`);
}
if (!images.length) throw new Error("no image files given");
const manifest = JSON.parse(readFileSync(join(setDir, "manifest.json"), "utf8"));
const worker = values.worker ? await startWorkerForSet(setDir) : null;
const server = await serveStatic(repo);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/tests/support/predict.html`);
  const url = (p) => `/${relative(repo, p).split("/").map(encodeURIComponent).join("/")}`;
  const out = await page.evaluate((a) => window.run(a), {
    modelsUrl: url(setDir), model: String(values.model), imageUrls: images.map(url), endpoint: worker?.url ?? null, modelSet: manifest.name,
  });
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
  await server.close();
  await worker?.stop();
}
