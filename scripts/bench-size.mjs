// The size-lever table: every build made by scripts/size-levers.sh (sizes from its sizes.tsv) timed
// side by side in one headless Chromium page (bench/size.html), tiny and large model, as a ratio to
// the shipped build. Writes <out>/size.md and <out>/size.json.
// Usage: node scripts/bench-size.mjs [--baseline release-oz] [--rounds 400] [--reps 10] [--out bench]
//   [--models models/zoo-rgb --name size-zoo-rgb] (another set's tiny and large models, on seeded
//   pixels of its input size, written to <out>/<name>.md and .json)
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { readArgs } from "./args.mjs";

const repo = resolve(import.meta.dirname, "..");
const { values: args } = readArgs({
  usage: "node scripts/bench-size.mjs [--baseline release-oz] [--rounds 400] [--reps 10] [--warmup 300] [--levers a,b] [--out bench] [--models DIR --name NAME]",
  flags: { baseline: "release-oz", rounds: "400", reps: "10", warmup: "300", levers: null, out: "bench", models: null, name: "size" },
});
/** A flag's value, or null for an absent flag without a default. */
const arg = (k) => (args[k] === undefined ? null : String(args[k]));
const baseline = arg("baseline");
const rounds = Number(arg("rounds"));
// Classifications per build and image, timed as their mean (bench/size.html: the clock's 5 us step).
const reps = Number(arg("reps"));
const out = resolve(repo, arg("out"));
// Another set than Fashion-MNIST: its manifest's models, timed on seeded pixels.
const setDir = arg("models") === null ? null : resolve(repo, arg("models"));
if (setDir !== null && !setDir.startsWith(`${repo}/`)) throw new Error("--models must be inside the repository (the page is served from it)");
const setUrl = setDir === null ? null : `/${setDir.slice(repo.length + 1)}`;
const name = arg("name");
const cache = join(process.env.HIEDGE_CACHE ?? join(homedir(), ".cache/hiedge"), "levers");

// The last line per lever of sizes.tsv (a lever rebuilt later replaces its earlier line).
const sizes = new Map();
for (const line of readFileSync(join(cache, "sizes.tsv"), "utf8").split("\n").filter(Boolean)) {
  const [lever, cargo, wasmOpt, raw, gzip, brotli, buildS, optS] = line.split("\t");
  if (existsSync(join(cache, lever, "hiedge.js"))) {
    sizes.set(lever, { lever, cargo, wasmOpt, raw: +raw, gzip: +gzip, brotli: +brotli, buildS: +buildS, optS: +optS });
  }
}
if (!sizes.has(baseline)) throw new Error(`no build of the baseline lever ${baseline}: run scripts/size-levers.sh ${baseline}`);
// `--levers a,b`: time only these (and the baseline), e.g. to compare a new lever in a short run.
const only = arg("levers")?.split(",");
const levers = [...sizes.keys()].filter((l) => !only || l === baseline || only.includes(l));
// 300: with 30, some of eight builds in one page still ran the large model in V8's baseline tier (2.5x
// slower, a different set each run).
const warmup = Number(arg("warmup"));

rmSync(join(repo, "test-results/levers"), { recursive: true, force: true });
for (const l of levers) cpSync(join(cache, l), join(repo, "test-results/levers", l), { recursive: true });
const dataDir = process.env.FASHION_MNIST_DIR ?? "/usr/share/datasets/fashion-mnist";
mkdirSync(join(repo, "test-results/bench-data"), { recursive: true });
writeFileSync(join(repo, "test-results/bench-data/size-images.u8"),
  gunzipSync(readFileSync(join(dataDir, "t10k-images-idx3-ubyte.gz"))).subarray(16, 16 + 200 * 784));

const server = await serveStatic(repo);
// Every build's code compiled by V8's optimising tier (TurboFan) from the start: with V8's default
// tiering, a build could still run part of its code in the baseline tier (Liftoff) after the warm-up
// (the large model 3x slower for one build in an otherwise normal page), which measures V8, not the
// build. A user's page reaches TurboFan for the hot code the same way, only later.
const browser = await launchChromium(["--js-flags=--no-liftoff"]);
let result;
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/bench/size.html?levers=${levers.join(",")}&baseline=${baseline}&rounds=${rounds}&reps=${reps}&warmup=${warmup}` +
    (setUrl === null ? "&images=/test-results/bench-data/size-images.u8" : `&models=${encodeURIComponent(setUrl)}`));
  await page.waitForFunction(() => window.__bench !== undefined, null, { timeout: 3600_000 });
  result = await page.evaluate(() => window.__bench);
} finally {
  await browser.close();
  await server.close();
}
if (result.error) throw new Error(result.error);

const mb = (b) => (b / 1e6).toFixed(2);
const ratio = (r) => `${r.ratio.toFixed(3)} (${r.ratioCI[0].toFixed(3)}-${r.ratioCI[1].toFixed(3)})`;
let md = `# Client wasm size levers\n\nWritten by \`node scripts/bench-size.mjs\` from the builds of \`scripts/size-levers.sh\` ` +
  `(cargo profile \`lever\` = release + the settings shown, or Cargo.toml's \`client\`; simd128 always on; V8 flag \`--no-liftoff\`). Sizes are of \`hiedge_bg.wasm\` in MB ` +
  `(10^6 bytes): raw, \`gzip -9\`, brotli quality 11. Speed: ${result.rounds} ${setUrl === null ? "Fashion-MNIST test images" : `samples of seeded pixels for \`${setUrl.slice(1)}\`'s models`}, each classified ` +
  `by every build in turn in one page (order rotating), ${result.reps} times in a row, the mean of \`classifyLocal\`'s ` +
  `model time (the page's clock steps by ${(result.clockTickMs * 1000).toFixed(1)} us); the ratio is the median of ` +
  `per-image time ratios to \`${baseline}\`${baseline === "release-oz" ? " (the release profile: what \`make wasm\` built before the profile \`client\`)" : ""}, with a 95% interval for that ` +
  `median. Below 1 is faster. ${result.userAgent}.\n\n`;
md += "| lever | cargo profile | wasm-opt | raw MB | gzip MB | brotli MB | cargo s | wasm-opt s | tiny ms | tiny ratio (95% CI) | large ms | large ratio (95% CI) | same labels |\n";
md += "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|\n";
for (const l of levers) {
  const s = sizes.get(l);
  const t = result.models.tiny.find((r) => r.lever === l);
  const g = result.models.large.find((r) => r.lever === l);
  md += `| ${l} | ${s.cargo} | ${s.wasmOpt} | ${mb(s.raw)} | ${mb(s.gzip)} | ${mb(s.brotli)} | ${s.buildS} | ${s.optS} | ` +
    `${t.medianMs.toFixed(3)} | ${ratio(t)} | ${g.medianMs.toFixed(3)} | ${ratio(g)} | ${t.sameLabels && g.sameLabels ? "yes" : "NO"} |\n`;
}
mkdirSync(out, { recursive: true });
writeFileSync(join(out, `${name}.md`), md);
writeFileSync(join(out, `${name}.json`), JSON.stringify({ sizes: Object.fromEntries(sizes), ...result }, null, 2));
console.log(md);
