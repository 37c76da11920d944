// `make bench-streams`: split inference (MDI-Exit) when the device is the bottleneck. One headless
// Chromium run of bench/streams.html against the local Worker (wrangler dev): arrivals at fixed
// rates on a page whose CPU is throttled by the DevTools protocol, for device-only, HI, EE-HI,
// split without exit and split + exit + planner. Writes <out>/streams.json and <out>/streams.md.
// (`make bench`, scripts/bench.mjs, is the per-sample grid of devices x networks x methods.)
// Usage: node scripts/bench-streams.mjs [--n 1000] [--stream-rates 50,200,800] [--stream-n 300]
//        [--throttle 10] [--models models/fashion-mnist] [--data DIR] [--out bench]
// Any model set: its manifest gives the files, the input length and the set's Worker route; EE-HI
// runs when it has an early-exit model, the split rows when it has a split model.
import { mkdirSync, writeFileSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { startWorker } from "../tests/support/wrangler.mjs";
import { wilsonInterval } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";

const repo = resolve(import.meta.dirname, "..");
const { values: args } = readArgs({
  usage: "node scripts/bench-streams.mjs [--n 1000] [--stream-rates 50,200,800] [--stream-n 300] [--throttle 10] " +
    "[--models models/fashion-mnist] [--data DIR] [--out bench]",
  flags: {
    n: "1000", "stream-rates": "50,200,800", "stream-n": "300", throttle: "10", out: "bench", models: "models/fashion-mnist",
    data: process.env.FASHION_MNIST_DIR ?? "/usr/share/datasets/fashion-mnist",
  },
});
/** A flag's value (every flag has a default). */
const arg = (k) => String(args[k]);
const n = Number(arg("n"));
const streamRates = arg("stream-rates");
const streamN = Number(arg("stream-n"));
const throttle = Number(arg("throttle"));
const out = resolve(repo, arg("out"));
const modelsDir = resolve(repo, arg("models"));
if (!(n >= 1 && n <= 10000)) throw new Error("--n must be 1..10000");

// The first n test images of an IDX set whose items are the model's input (default: Debian's
// dataset-fashion-mnist).
const manifest = JSON.parse(readFileSync(join(modelsDir, "manifest.json"), "utf8"));
const inputLength = manifest.input.shape.reduce((a, b) => a * b, 1);
const dataDir = arg("data");
const idx = (f) => gunzipSync(readFileSync(join(dataDir, f)));
const images = idx("t10k-images-idx3-ubyte.gz").subarray(16);
if (images.length % inputLength !== 0 || images.length < n * inputLength) {
  throw new Error(`${dataDir}: fewer than ${n} test images of ${inputLength} bytes (the manifest's input)`);
}
const data = join(repo, "test-results/bench-data");
mkdirSync(data, { recursive: true });
writeFileSync(join(data, "images.u8"), images.subarray(0, n * inputLength));
writeFileSync(join(data, "labels.u8"), idx("t10k-labels-idx1-ubyte.gz").subarray(8, 8 + n));

// The Worker serves the set's folder with this set as its default.
const worker = await startWorker({ assets: dirname(modelsDir), vars: { DEFAULT_MODEL_SET: manifest.name } });
const server = await serveStatic(repo);
const browser = await launchChromium();
let result;
try {
  const page = await browser.newPage();
  // The page asks for CPU throttling around its stream phase: the browser's own emulation (CDP).
  const cdp = await page.context().newCDPSession(page);
  await page.exposeFunction("hiedgeThrottle", (rate) => cdp.send("Emulation.setCPUThrottlingRate", { rate }));
  const url = `${server.url}/bench/streams.html?n=${n}&worker=${encodeURIComponent(worker.url)}` +
    `&streamRates=${streamRates}&streamN=${streamN}&throttle=${throttle}` +
    `&models=${encodeURIComponent(`/${relative(repo, modelsDir)}`)}` +
    `&images=/test-results/bench-data/images.u8&labels=/test-results/bench-data/labels.u8`;
  await page.goto(url);
  const timer = setInterval(async () => {
    try { process.stderr.write(`\r${await page.textContent("#progress")}        `); } catch {}
  }, 5000);
  await page.waitForFunction(() => window.__bench !== undefined, null, { timeout: 3 * 3600_000 });
  clearInterval(timer);
  result = await page.evaluate(() => window.__bench);
} finally {
  await browser.close();
  await server.close();
  await worker.stop();
}
if (result.error) throw new Error(result.error);
process.stderr.write("\n");

const summary = {};
const machine = `${cpus()[0]?.model ?? "unknown CPU"} (${cpus().length} logical CPUs, shared)`;
// Streams: processed samples/s at a fixed accuracy (large-on-device - 0.5 points, on processed
// samples), and accuracy at the middle arrival rate (skipped samples count as not answered).
const streamTarget = result.largeAccuracy - 0.005;
const streamNames = [...new Set(result.streams.map((s) => s.name))];
const middleRate = result.streamRates[Math.floor(result.streamRates.length / 2)];
summary.streams = streamNames.map((name) => {
  const mine = result.streams.filter((s) => s.name === name);
  // A rate counts when at least a third of its arrivals were processed (fewer say little about accuracy).
  const ok = mine.filter((s) => s.accuracyProcessed >= streamTarget && 3 * s.processed >= s.arrived)
    .sort((a, b) => b.processedPerS - a.processedPerS)[0];
  const mid = mine.find((s) => s.rate === middleRate);
  return { name, target: streamTarget, bestProcessedPerSAtTarget: ok?.processedPerS ?? null, atRate: ok?.rate ?? null,
    middleRate, accuracyArrivedAtMiddleRate: mid?.accuracyArrived ?? null, accuracyProcessedAtMiddleRate: mid?.accuracyProcessed ?? null,
    processedPerSAtMiddleRate: mid?.processedPerS ?? null };
});
const json = { command: `node scripts/bench-streams.mjs --n ${n} --stream-rates ${streamRates} --stream-n ${streamN} --throttle ${throttle} --models ${relative(repo, modelsDir)}`,
  machine, date: new Date().toISOString(), modelSet: manifest.name, ...result, summary };
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "streams.json"), JSON.stringify(json, null, 2) + "\n");

const pct = (x) => (100 * x).toFixed(2);
const f = (x, d = 3) => (x === null || x === undefined ? "-" : x.toFixed(d));
let md = `# hiedge benchmark: streams (\`make bench-streams\`)\n\n`;
md += `Command: \`${json.command}\`, ${json.date}. Machine: ${machine}; headless Debian Chromium `;
md += `(${result.userAgent.match(/Chrome\/[\d.]+/)?.[0]}), cross-origin isolated: ${result.crossOriginIsolated}; the Worker under `;
md += `\`wrangler dev\` (workerd) on 127.0.0.1 of the same machine. Model set ${manifest.name}; the first ${n} test images of ${dataDir}. `;
md += `The per-sample comparison across devices and networks is \`make bench\` ([results.md](results.md)).\n`;
md += `\n## Split inference (MDI-Exit) when the device is the bottleneck\n\n`;
md += `${result.streamN} samples per run arrive at a fixed rate (${result.streamRates.join(", ")} per second) `;
md += `whether or not the device is done, with the page's CPU throttled ${result.throttle}x by the DevTools protocol `;
md += `(\`Emulation.setCPUThrottlingRate\`). Same admission rule for every method, chosen before the run: a sample that waited more than `;
md += `${result.maxWaitMs} ms for the device is skipped. Device-only runs the large model in the page; HI and EE-HI are HiClient at their `;
md += `calibrated settings (offloads not awaited before the next sample); the split rows are HiStream (trunk in the page, tail in `;
md += `the Worker; "no exit" sends every sample's features; "+ exit + planner" uses the calibrated exit and the planner). `;
md += `Accuracy is on processed samples (95% Wilson interval) and, in the next column, on all arrivals (a skipped sample counts as not answered).\n\n`;
md += `| method | arrivals/s | arrived | processed | skipped | processed/s | accuracy on processed % | 95% CI | accuracy on arrivals % | mean ms | p95 ms | bytes/processed |\n`;
md += `|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n`;
for (const s of result.streams) {
  const [lo, hi] = s.processed ? wilsonInterval(Math.round(s.accuracyProcessed * s.processed), s.processed) : [0, 0];
  md += `| ${s.name} | ${s.rate} | ${s.arrived} | ${s.processed} | ${s.skipped} | ${f(s.processedPerS, 1)} | ${pct(s.accuracyProcessed)} | ${pct(lo)}-${pct(hi)} | ${pct(s.accuracyArrived)} | ${f(s.meanMs, 1)} | ${f(s.p95Ms, 1)} | ${f(s.bytesPerProcessed, 0)} |\n`;
}
md += `\nSummary: processed samples/s at a fixed accuracy (large-on-device ${pct(result.largeAccuracy)}% - 0.5 points = ${pct(streamTarget)}% on processed samples; the best over the arrival rates where at least a third of the arrivals were processed), and accuracy at ${middleRate} arrivals/s:\n\n`;
md += `| method | processed/s at >= ${pct(streamTarget)}% | at arrivals/s | accuracy on arrivals at ${middleRate}/s % | processed/s at ${middleRate}/s |\n|---|---:|---:|---:|---:|\n`;
for (const s of summary.streams) {
  md += `| ${s.name} | ${s.bestProcessedPerSAtTarget === null ? "never reached" : f(s.bestProcessedPerSAtTarget, 1)} | ${s.atRate ?? "-"} | ${s.accuracyArrivedAtMiddleRate === null ? "-" : pct(s.accuracyArrivedAtMiddleRate)} | ${s.processedPerSAtMiddleRate === null ? "-" : f(s.processedPerSAtMiddleRate, 1)} |\n`;
}
writeFileSync(join(out, "streams.md"), md);
console.log(md);
console.log(`wrote ${join(out, "streams.md")} and streams.json`);
