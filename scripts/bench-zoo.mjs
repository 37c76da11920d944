// `make bench-zoo`: the real-size set's models (models/zoo-rgb: a MobileNetV3-style device model
// and a ViT-style large model, 224x224 RGB) in headless Chromium, hiedge (tract wasm) against
// onnxruntime-web (wasm, one thread) in one page on its main thread, at each CPU throttling rate
// (`Emulation.setCPUThrottlingRate`). Design, fixed before the run: per rate and model, BLOCKS
// blocks; each block runs both runtimes (in a seeded random order) for PER_BLOCK calls on the same
// sample and keeps each runtime's median; the reported ratio is the median over blocks of
// hiedge / onnxruntime-web with a 95% bootstrap interval (blocks resampled). Writes bench/zoo.md.
// Usage: node scripts/bench-zoo.mjs [--blocks 15] [--per-block 5] [--rates 1,4] [--models models/zoo-rgb]
//   [--out bench/zoo.md] (--models: any NCHW RGB set inside the repository, e.g. the full-size pair
//   `make bench-zoo-full` writes)
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { readFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { bootstrapInterval, medianInterval, quantile, seededRandom, shuffled } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";

const repo = resolve(import.meta.dirname, "..");
const { values } = readArgs({
  usage: "node scripts/bench-zoo.mjs [--blocks N] [--per-block N] [--rates 1,4] [--models DIR] [--out FILE]",
  flags: { blocks: "15", "per-block": "5", rates: "1,4", models: join(repo, "models/zoo-rgb"), out: join(repo, "bench/zoo.md") },
});
const blocks = Number(values.blocks);
const perBlock = Number(values["per-block"]);
const rates = String(values.rates).split(",").map(Number);
const out = resolve(String(values.out));
if (!(blocks >= 10) || !(perBlock >= 1) || rates.some((r) => !(r >= 1))) {
  throw new Error("--blocks >= 10 (the bootstrap needs ten), --per-block >= 1, --rates >= 1");
}
const setDir = resolve(String(values.models));
if (!setDir.startsWith(`${repo}/`)) throw new Error("--models must be inside the repository (the page is served from it)");
const committed = relative(repo, setDir) === "models/zoo-rgb";
const manifest = JSON.parse(readFileSync(join(setDir, "manifest.json"), "utf8"));
const describe = (name) => manifest.models[name].architecture ?? basename(manifest.models[name].source?.file ?? manifest.models[name].file, ".onnx");
const models = committed
  ? { tiny: "MobileNetV3-style (device model)", large: "ViT-style (large model)" }
  : { tiny: `${describe("tiny")} (device model)`, large: `${describe("large")} (large model)` };
/** What each timed runtime is: its page (ort thread count) and the runner on it. */
const THREADED = "onnxruntime-web (2 threads)";
const median = (v) => quantile(v, 0.5);
/** Runs of each model in its per-operation profile. */
const PROFILE_RUNS = 30;
/** Operation kinds listed per model in the profile table (the rest summed in one row). */
const PROFILE_KINDS = 8;

const server = await serveStatic(repo);
const browser = await launchChromium();
try {
  const open = async (threads) => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/bench/zoo.html?threads=${threads}`);
    const cdp = await page.context().newCDPSession(page);
    const info = await page.evaluate((a) => window.setup(a), { modelsUrl: `/${relative(repo, setDir)}`, models: Object.keys(models) });
    for (const [m, d] of Object.entries(info.agreement)) {
      if (!(d <= 1e-3)) throw new Error(`${m}: hiedge and onnxruntime-web disagree (max |prob diff| ${d}); nothing timed`);
    }
    return { page, cdp, info };
  };
  // One page runs hiedge and single-threaded onnxruntime-web; a second, cross-origin isolated
  // like the first, runs onnxruntime-web with 2 threads (a Web Worker pool). Chromium throttles
  // a page's main thread, not its Workers, so the threaded rows are at 1x only.
  const single = await open(1);
  const threaded = single.info.crossOriginIsolated && single.info.hardwareConcurrency > 1 ? await open(2) : null;
  const info = single.info;
  const random = seededRandom(7);
  const rows = [];
  for (const rate of rates) {
    await single.cdp.send("Emulation.setCPUThrottlingRate", { rate });
    /** @type {[string, import("playwright-core").Page, string][]} name, page, runner */
    const runtimes = [["hiedge", single.page, "hiedge"], ["onnxruntime-web", single.page, "onnxruntime-web"]];
    if (threaded && rate === 1) runtimes.push([THREADED, threaded.page, "onnxruntime-web"]);
    for (const model of Object.keys(models)) {
      /** @type {Record<string, number[]>} per runtime, one median per block */
      const medians = Object.fromEntries(runtimes.map(([name]) => [name, []]));
      for (let b = 0; b < blocks; b++) {
        for (const [name, page, runtime] of shuffled(runtimes, random)) {
          medians[name].push(median(await page.evaluate((a) => window.block(a), { runtime, model, n: perBlock })));
        }
      }
      const ratio = (h, o) => median(h.map((x, i) => x / o[i]));
      rows.push({
        rate, model,
        hiedge: { median: median(medians.hiedge), ci: medianInterval(medians.hiedge) },
        ort: { median: median(medians["onnxruntime-web"]), ci: medianInterval(medians["onnxruntime-web"]) },
        ratio: ratio(medians.hiedge, medians["onnxruntime-web"]),
        interval: bootstrapInterval([medians.hiedge, medians["onnxruntime-web"]], ratio),
        threaded: medians[THREADED] && {
          median: median(medians[THREADED]), ci: medianInterval(medians[THREADED]),
          ratio: ratio(medians.hiedge, medians[THREADED]),
          interval: bootstrapInterval([medians.hiedge, medians[THREADED]], ratio),
        },
      });
      console.log(`${rate}x ${model}: ratio ${rows.at(-1).ratio.toFixed(2)}`);
    }
  }
  await single.cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
  // Where hiedge's time goes, at 1x after the timing: HiClient.profile per model (every
  // operation timed with performance.now(), so the timer's own cost is in it), summed by the
  // operation's kind.
  const profiles = {};
  for (const model of Object.keys(models)) {
    const { ops, preprocessMs } = await single.page.evaluate((a) => window.profile(a), { model, runs: PROFILE_RUNS });
    const kinds = new Map();
    for (const { op, ms } of ops) {
      const kind = kinds.get(op) ?? { op, ms: 0, nodes: 0 };
      kind.ms += ms;
      kind.nodes += 1;
      kinds.set(op, kind);
    }
    profiles[model] = { kinds: [...kinds.values()].sort((a, b) => b.ms - a.ms), total: ops.reduce((a, o) => a + o.ms, 0), preprocessMs };
  }
  const f = (x, d = 1) => x.toFixed(d);
  const cpu = cpus();
  let md = `# Real-size models in the browser: hiedge vs onnxruntime-web (\`make bench-zoo\`)\n\n`;
  md += `Machine: ${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} logical cores (shared), `;
  md += `${info.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? "Chromium"} headless, onnxruntime-web ${info.ortVersion}, `;
  md += `cross-origin isolated: ${info.crossOriginIsolated}. Models: \`${relative(repo, setDir)}\` (224x224 RGB, random weights; `;
  md += `hiedge runs the NNEF archive, onnxruntime-web the ONNX file it was compiled from; their probabilities agreed `;
  md += `within ${Object.entries(info.agreement).map(([m, d]) => `${d.toExponential(1)} (${m})`).join(", ")} before timing). `;
  md += `Both on the page's main thread, one thread each, pixels to output (normalisation included).\n\n`;
  md += `Method, fixed before the run: at each CPU throttling rate (DevTools \`Emulation.setCPUThrottlingRate\`) and model, `;
  md += `${blocks} blocks; in each, both runtimes in a seeded random order, ${perBlock} calls each on one sample, `;
  md += `each runtime's median kept. Times: median of the block medians with a 95% interval (order statistics). `;
  md += `Ratio: median over blocks of hiedge / onnxruntime-web, 95% bootstrap interval (2,000 resamples of blocks); `;
  md += `below 1 means hiedge is faster.\n\n`;
  const cell = (s) => `${f(s.median, 2)} [${f(s.ci[0], 2)}, ${f(s.ci[1], 2)}]`;
  const ratioCell = (x, i) => `${f(x, 2)} [${f(i[0], 2)}, ${f(i[1], 2)}]`;
  md += `| CPU | model | hiedge ms (1 thread) | onnxruntime-web ms (1 thread) | hiedge / ort 1 thread (95% CI) | `;
  md += `onnxruntime-web ms (2 threads) | hiedge / ort 2 threads (95% CI) |\n|---|---|---:|---:|---:|---:|---:|\n`;
  for (const r of rows) {
    md += `| ${r.rate}x | ${models[r.model]} | ${cell(r.hiedge)} | ${cell(r.ort)} | ${ratioCell(r.ratio, r.interval)} | `;
    md += r.threaded ? `${cell(r.threaded)} | ${ratioCell(r.threaded.ratio, r.threaded.interval)} |\n` : `- | - |\n`;
  }
  md += `\nThe 2-thread column: a second page, cross-origin isolated like the first, with onnxruntime-web's `;
  md += `\`numThreads = 2\` (its thread pool runs in Web Workers); timed at 1x only, because Chromium's CPU throttling `;
  md += `slows a page's main thread and not its Workers. hiedge runs one thread (its threaded build is issue 31).`;
  md += threaded ? `\n` : ` This run had no second page: the page was not cross-origin isolated or the browser reported one core.\n`;
  md += `\n## Where hiedge's time goes (1x)\n\n`;
  md += `\`HiClient.profile\` on the same sample after the timing, ${PROFILE_RUNS} runs per model: every operation of the `;
  md += `optimised plan timed with performance.now() (the timer's own cost included), summed by tract's name for the `;
  md += `operation after optimisation (\`Hiedge*\`: hiedge's own kernels); preprocessing (pixels to the normalised input) `;
  md += `timed apart, by \`classifyLocal\`.\n\n`;
  md += `| model | operation | nodes | ms per run | share of the plan |\n|---|---|---:|---:|---:|\n`;
  for (const [model, p] of Object.entries(profiles)) {
    const shown = p.kinds.slice(0, PROFILE_KINDS);
    const rest = p.kinds.slice(PROFILE_KINDS);
    const pct = (ms) => `${f((100 * ms) / p.total, 1)}%`;
    for (const k of shown) md += `| ${models[model]} | ${k.op} | ${k.nodes} | ${f(k.ms, 3)} | ${pct(k.ms)} |\n`;
    if (rest.length) {
      const ms = rest.reduce((a, k) => a + k.ms, 0);
      md += `| ${models[model]} | (${rest.length} other kinds) | ${rest.reduce((a, k) => a + k.nodes, 0)} | ${f(ms, 3)} | ${pct(ms)} |\n`;
    }
    md += `| ${models[model]} | **the plan** | ${p.kinds.reduce((a, k) => a + k.nodes, 0)} | ${f(p.total, 3)} | 100% |\n`;
    md += `| ${models[model]} | preprocessing (not in the plan) | | ${f(p.preprocessMs, 3)} | |\n`;
  }
  md += committed
    ? `\nOnly these two width-reduced architectures are committed (\`models/train/zoo_fixtures.py\`); the full-size pair `
      + `(torchvision's MobileNetV3-small and EfficientNet-B0, exported with PyTorch) is timed by \`make bench-zoo-full\` into `
      + `[zoo-full.md](zoo-full.md), and the whole torchvision list is checked natively in `
      + `[models/architectures.md](../models/architectures.md).\n`
    : `\nThe full-size pair: torchvision's architectures with seeded random weights, exported by `
      + `\`models/train/zoo_architectures.py --pair\` (\`make bench-zoo-full\`; needs PyTorch, which no test does).\n`;
  writeFileSync(out, md);
  console.log(md);
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.close();
}
