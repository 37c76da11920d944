// `make bench-zoo`: the real-size set's models (models/zoo-rgb: a MobileNetV3-style device model
// and a ViT-style large model, 224x224 RGB) in headless Chromium, hiedge (tract wasm) against
// onnxruntime-web (wasm, one thread) in one page on its main thread, at each CPU throttling rate
// (`Emulation.setCPUThrottlingRate`). Design, fixed before the run: per rate and model, BLOCKS
// blocks; each block runs both runtimes (in a seeded random order) for PER_BLOCK calls on the same
// sample and keeps each runtime's median; the reported ratio is the median over blocks of
// hiedge / onnxruntime-web with a 95% bootstrap interval (blocks resampled). Writes bench/zoo.md.
// Usage: node scripts/bench-zoo.mjs [--blocks 15] [--per-block 5] [--rates 1,4]
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { bootstrapInterval, medianInterval, quantile, seededRandom, shuffled } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";

const repo = resolve(import.meta.dirname, "..");
const { values } = readArgs({
  usage: "node scripts/bench-zoo.mjs [--blocks N] [--per-block N] [--rates 1,4] [--out FILE]",
  flags: { blocks: "15", "per-block": "5", rates: "1,4", out: join(repo, "bench/zoo.md") },
});
const blocks = Number(values.blocks);
const perBlock = Number(values["per-block"]);
const rates = String(values.rates).split(",").map(Number);
const out = resolve(String(values.out));
if (!(blocks >= 10) || !(perBlock >= 1) || rates.some((r) => !(r >= 1))) {
  throw new Error("--blocks >= 10 (the bootstrap needs ten), --per-block >= 1, --rates >= 1");
}
const models = { tiny: "MobileNetV3-style (device model)", large: "ViT-style (large model)" };
const runtimes = ["hiedge", "onnxruntime-web"];
const median = (v) => quantile(v, 0.5);

const server = await serveStatic(repo);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/bench/zoo.html`);
  const cdp = await page.context().newCDPSession(page);
  const info = await page.evaluate((a) => window.setup(a), { modelsUrl: "/models/zoo-rgb", models: Object.keys(models) });
  for (const [m, d] of Object.entries(info.agreement)) {
    if (!(d <= 1e-3)) throw new Error(`${m}: hiedge and onnxruntime-web disagree (max |prob diff| ${d}); nothing timed`);
  }
  const random = seededRandom(7);
  const rows = [];
  for (const rate of rates) {
    await cdp.send("Emulation.setCPUThrottlingRate", { rate });
    for (const model of Object.keys(models)) {
      /** @type {Record<string, number[]>} per runtime, one median per block */
      const medians = { hiedge: [], "onnxruntime-web": [] };
      for (let b = 0; b < blocks; b++) {
        for (const runtime of shuffled(runtimes, random)) {
          medians[runtime].push(median(await page.evaluate((a) => window.block(a), { runtime, model, n: perBlock })));
        }
      }
      const ratio = (h, o) => median(h.map((x, i) => x / o[i]));
      rows.push({
        rate, model,
        hiedge: { median: median(medians.hiedge), ci: medianInterval(medians.hiedge) },
        ort: { median: median(medians["onnxruntime-web"]), ci: medianInterval(medians["onnxruntime-web"]) },
        ratio: ratio(medians.hiedge, medians["onnxruntime-web"]),
        interval: bootstrapInterval([medians.hiedge, medians["onnxruntime-web"]], ratio),
      });
      console.log(`${rate}x ${model}: ratio ${rows.at(-1).ratio.toFixed(2)}`);
    }
  }
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
  const f = (x, d = 1) => x.toFixed(d);
  const cpu = cpus();
  let md = `# Real-size models in the browser: hiedge vs onnxruntime-web (\`make bench-zoo\`)\n\n`;
  md += `Machine: ${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} logical cores (shared), `;
  md += `${info.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? "Chromium"} headless, onnxruntime-web ${info.ortVersion}, `;
  md += `cross-origin isolated: ${info.crossOriginIsolated}. Models: \`models/zoo-rgb\` (224x224 RGB, random weights; `;
  md += `hiedge runs the NNEF archive, onnxruntime-web the ONNX file it was compiled from; their probabilities agreed `;
  md += `within ${Object.entries(info.agreement).map(([m, d]) => `${d.toExponential(1)} (${m})`).join(", ")} before timing). `;
  md += `Both on the page's main thread, one thread each, pixels to output (normalisation included).\n\n`;
  md += `Method, fixed before the run: at each CPU throttling rate (DevTools \`Emulation.setCPUThrottlingRate\`) and model, `;
  md += `${blocks} blocks; in each, both runtimes in a seeded random order, ${perBlock} calls each on one sample, `;
  md += `each runtime's median kept. Times: median of the block medians with a 95% interval (order statistics). `;
  md += `Ratio: median over blocks of hiedge / onnxruntime-web, 95% bootstrap interval (2,000 resamples of blocks); `;
  md += `below 1 means hiedge is faster.\n\n`;
  md += `| CPU | model | hiedge ms | onnxruntime-web ms | hiedge / ort (95% CI) |\n|---|---|---:|---:|---:|\n`;
  for (const r of rows) {
    md += `| ${r.rate}x | ${models[r.model]} | ${f(r.hiedge.median, 2)} [${f(r.hiedge.ci[0], 2)}, ${f(r.hiedge.ci[1], 2)}] | `;
    md += `${f(r.ort.median, 2)} [${f(r.ort.ci[0], 2)}, ${f(r.ort.ci[1], 2)}] | ${f(r.ratio, 2)} [${f(r.interval[0], 2)}, ${f(r.interval[1], 2)}] |\n`;
  }
  md += `\nOnly these two width-reduced architectures are committed (\`models/train/zoo_fixtures.py\`); the full-size `;
  md += `torchvision list (MobileNetV2/V3, EfficientNet-B0, ResNet, RegNetY, ConvNeXt, SqueezeNet, ShuffleNetV2, DeiT) is not `;
  md += `in this table: it needs PyTorch to export, and no test or benchmark here may need it.\n`;
  writeFileSync(out, md);
  console.log(md);
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.close();
}
