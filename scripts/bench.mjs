// `make bench`: the paper's table for the web. One headless Chromium run against the local Worker
// (wrangler dev) of every method on emulated devices (CPU throttling) x networks (the browser's
// network emulation, applied to the real fetch to the Worker), both through the DevTools protocol
// (tests/support/conditions.mjs says which presets and why), plus cold starts. Writes
// <out>/results.json; scripts/bench-report.mjs turns it into <out>/results.md, the README's grid
// and the chart in docs/.
//
// Chosen before the run (and written into results.json): the methods and their operating points
// (the manifest's calibrated logistic_top2 for HI, its calibrated EE-HI thresholds, its calibrated
// split exit), "equal accuracy" (HI within 0.5 percentage points of large-on-device on the whole
// test set), the schedule (per cell: rounds of one block per method in a seeded random order, the
// same images for every method in a round), the statistics (mean, median, p95 with 95% intervals;
// reductions as 1 - mean ratio with a paired bootstrap interval) and the seed.
//
// Accuracy and offload share: every method in the browser on the whole test set (or the first
// --check-n images), unthrottled on loopback; its counts must match `hiedge eval` on the same images
// within the stated tolerance (the split planner's raw-or-features choice depends on measured round
// trips, so only its exits compare), and the onnxruntime-web rows must give the tract rows' labels.
//
// Usage: node scripts/bench.mjs [--devices 1,4,6] [--networks loopback,broadband,4g,slow-4g,3g]
//   [--samples 200,slow-4g=120,3g=60] [--block 20] [--check-n all] [--cold-devices 1,6]
//   [--cold-networks loopback,broadband,4g,slow-4g,3g] [--cold-reps 2,3g=1] [--models models/fashion-mnist]
//   [--data $FASHION_MNIST_DIR] [--hiedge target/release/hiedge] [--seed 20261124] [--out bench]
//   [--readme README.md|none] [--chart docs/bench-tradeoff.png|none] [--real-size bench/zoo-full-hi.json|none]
//   [--tiers bench/tiers.json|none]
// --real-size: a record written by scripts/bench-zoo-hi.mjs (HI at 224x224 RGB against the Worker),
// embedded in results.json as the grid's real-size rows (`make bench` runs that benchmark first).
// --tiers: a record written by scripts/bench-tiers.mjs (three tiers against two), embedded the same
// way as the grid's three-tier rows.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { DEVICES, emulateDevice, emulateNetwork, NETWORKS } from "../tests/support/conditions.mjs";
import { startWorker } from "../tests/support/wrangler.mjs";
import { bootstrapInterval, mean, medianInterval, quantile, sampleSchedule, seededRandom, shuffled } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";
import { writeReport } from "./bench-report.mjs";

const repo = resolve(import.meta.dirname, "..");
const { values: args } = readArgs({
  usage: "node scripts/bench.mjs [--devices 1,4,6] [--networks LIST] [--samples SPEC] [--block N] [--check-n all|N] " +
    "[--cold-devices LIST] [--cold-networks LIST] [--cold-reps SPEC] [--models DIR] [--data DIR] [--hiedge BIN] " +
    "[--seed N] [--out DIR] [--readme FILE|none] [--chart FILE|none] [--real-size FILE|none] [--tiers FILE|none]",
  flags: {
    devices: "1,4,6", networks: "loopback,broadband,4g,slow-4g,3g", samples: "200,slow-4g=120,3g=60", block: "20",
    "check-n": "all", "cold-devices": "1,6", "cold-networks": "loopback,broadband,4g,slow-4g,3g", "cold-reps": "2,3g=1",
    models: "models/fashion-mnist", data: process.env.FASHION_MNIST_DIR ?? "/usr/share/datasets/fashion-mnist",
    hiedge: join(process.env.CARGO_TARGET_DIR ?? join(process.env.HOME ?? homedir(), ".cache/hiedge/target"), "release/hiedge"),
    seed: "20261124", out: "bench", readme: "README.md", chart: "docs/bench-tradeoff.png", "real-size": "none", tiers: "none",
  },
});
/** A flag's value (every flag has a default). */
const arg = (k) => String(args[k]);
/** "200,slow-4g=120,3g=60": a default and per-network values. */
const perNetwork = (spec) => {
  const out = { default: NaN };
  for (const part of spec.split(",")) {
    const [k, v] = part.includes("=") ? part.split("=") : ["default", part];
    out[k] = Number(v);
  }
  return (network) => out[network] ?? out.default;
};
const list = (s) => s.split(",").filter(Boolean);
const devices = list(arg("devices")).map(Number);
const networks = list(arg("networks"));
const samplesSpec = arg("samples");
const samples = perNetwork(samplesSpec);
const blockSize = Number(arg("block"));
const checkNArg = arg("check-n");
const coldDevices = list(arg("cold-devices")).map(Number);
const coldNetworks = list(arg("cold-networks"));
const coldRepsSpec = arg("cold-reps");
const coldReps = perNetwork(coldRepsSpec);
const modelsDir = resolve(repo, arg("models"));
const dataDir = arg("data");
const hiedge = arg("hiedge");
const seed = Number(arg("seed"));
const out = resolve(repo, arg("out"));
const readme = arg("readme");
const chart = arg("chart");
const realSizeFile = arg("real-size");
// Read before the run: a missing or broken record fails now, not after the grid's 40 minutes.
const realSize = realSizeFile === "none" ? undefined : JSON.parse(readFileSync(resolve(repo, realSizeFile), "utf8"));
const tiers = arg("tiers") === "none" ? undefined : JSON.parse(readFileSync(resolve(repo, arg("tiers")), "utf8"));
for (const n of [...networks, ...coldNetworks]) if (!(n in NETWORKS)) throw new Error(`unknown network ${n}: use ${Object.keys(NETWORKS).join(", ")}`);
for (const d of [...devices, ...coldDevices]) if (!(d >= 1)) throw new Error(`--devices: CPU throttling rates >= 1, not ${d}`);
if (!(blockSize >= 1)) throw new Error("--block must be >= 1");
const EQUAL_ACCURACY_POINTS = 0.5;
const log = (s) => process.stderr.write(`${s}\n`);

// The test set, as the model's input bytes (an IDX set whose items are the model's input).
const manifest = JSON.parse(readFileSync(join(modelsDir, "manifest.json"), "utf8"));
const inputLength = manifest.input.shape.reduce((a, b) => a * b, 1);
const idx = (f, header) => gunzipSync(readFileSync(join(dataDir, f))).subarray(header);
const images = idx("t10k-images-idx3-ubyte.gz", 16);
const labels = idx("t10k-labels-idx1-ubyte.gz", 8);
const count = Math.min(labels.length, Math.floor(images.length / inputLength));
if (images.length !== count * inputLength) throw new Error(`${dataDir}: test images are not ${inputLength} bytes each (the manifest's input)`);
const checkN = checkNArg === "all" ? count : Number(checkNArg);
if (!(checkN >= 1 && checkN <= count)) throw new Error(`--check-n: 1..${count} test images or "all", not ${checkNArg}`);
const data = join(repo, "test-results/bench-data");
mkdirSync(data, { recursive: true });
writeFileSync(join(data, "images.u8"), images);
writeFileSync(join(data, "labels.u8"), labels.subarray(0, count));

// `hiedge eval` on the same images: the reference the browser's counts are checked against (tract
// natively, the same decision code).
const evalRows = (e) => {
  const hi = e.rows.find((r) => r.policy === "logistic_top2" && String(r.param).startsWith("calibrated"));
  if (!hi) throw new Error("hiedge eval has no calibrated logistic_top2 row: calibrate the model set first");
  const rows = {
    "tiny-only": { accuracy: e.rows.find((r) => r.policy === "tiny-only").hi_accuracy, offload: 0, exited: 0 },
    "large-on-device": { accuracy: e.large_only_accuracy, offload: 0, exited: 0 },
    "always-offload": { accuracy: e.large_only_accuracy, offload: 1, exited: 0 },
    HI: { accuracy: hi.hi_accuracy, offload: hi.offload_fraction, exited: 0 },
  };
  if (e.ee_hi) rows["EE-HI"] = { accuracy: e.ee_hi.outcome.accuracy, offload: e.ee_hi.outcome.offloaded, exited: e.ee_hi.outcome.exited };
  // The split planner sends raw or features by the round trips it measures, which `hiedge eval`
  // does not simulate: only the exits (the calibrated threshold on the trunk's exit head) compare.
  if (e.split) rows["split (MDI-Exit)"] = { exited: e.split.calibrated.exited, offload: 1 - e.split.calibrated.exited, only: ["exited", "offloaded"] };
  return rows;
};
log(`hiedge eval on the first ${checkN} of ${count} test images`);
const evalCheck = evalRows(JSON.parse(execFileSync(hiedge, ["eval", "--json", "--models", modelsDir, "--data", dataDir, "--limit", String(checkN)],
  { encoding: "utf8", maxBuffer: 1 << 26 })));
// The onnxruntime-web rows run the same ONNX files: their labels must be the tract rows'.
const ORT_OF = { "tiny-only (onnxruntime-web)": "tiny-only", "large-on-device (onnxruntime-web)": "large-on-device" };
const accuracy = {};

// The Worker serves the model sets beside the one benchmarked, that set as its default (its health
// check loads the default set; offloads go to the set's own route).
const worker = await startWorker({ assets: dirname(modelsDir), vars: { DEFAULT_MODEL_SET: manifest.name } });
const server = await serveStatic(repo, 0, { cacheControl: "max-age=3600", compress: true });
const browser = await launchChromium();
const modelsUrl = `/${relative(repo, modelsDir)}`;
const results = { checks: [], cells: [], cold: [] };
let info;
try {
  // ---- Per-sample latency: one page, conditions changed between blocks. ----
  const page = await browser.newPage();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  await page.goto(`${server.url}/bench/grid.html`);
  await page.waitForFunction(() => window.loaded === true, null, { timeout: 60_000 });
  info = await page.evaluate((p) => window.setup(p), {
    modelsUrl, worker: worker.url, imagesUrl: "/test-results/bench-data/images.u8", labelsUrl: "/test-results/bench-data/labels.u8",
  });
  const methods = info.methods;
  const block = (method, indices) => page.evaluate(([m, ix]) => window.block(m, ix), [method, indices]);
  const taskSeconds = async () => (await cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === "TaskDuration").value;
  // Warm-up at 1x, loopback: JIT, and the Worker's lazy model loads (every offloading method offloads here).
  for (const m of methods) await block(m, [...Array(30).keys()].map((i) => i % count));

  // Accuracy: the first checkN images (by default all) through every method, unthrottled on
  // loopback, checked against `hiedge eval --limit checkN`.
  const tolerance = Math.max(1, Math.ceil(0.002 * checkN));
  const checked = {};
  for (const m of methods) {
    const recs = [];
    for (let s = 0; s < checkN; s += 250) recs.push(...(await block(m, [...Array(Math.min(250, checkN - s)).keys()].map((k) => s + k))));
    checked[m] = recs;
    log(`accuracy pass: ${m} on ${checkN} images`);
  }
  const problems = [];
  for (const m of methods) {
    const recs = checked[m];
    const got = { correct: recs.filter((r) => r.label === r.truth).length, offloaded: recs.filter((r) => r.offloaded).length,
      exited: recs.filter((r) => r.exited).length, fallback: recs.filter((r) => r.fallback || r.skipped).length };
    const ref = evalCheck[m];
    const want = ref ? { correct: ref.accuracy === undefined ? null : Math.round(ref.accuracy * checkN),
      offloaded: Math.round(ref.offload * checkN), exited: Math.round(ref.exited * checkN) } : null;
    const agree = ORT_OF[m] ? recs.filter((r, k) => r.label === checked[ORT_OF[m]][k].label).length : null;
    results.checks.push({ method: m, images: checkN, tolerance, browser: got, hiedgeEval: want, labelsAgreeWithTract: agree });
    accuracy[m] = { accuracy: got.correct / checkN, offload: got.offloaded / checkN, exited: got.exited / checkN, images: checkN };
    if (got.fallback) problems.push(`${m}: ${got.fallback} fallbacks or skips with the Worker up`);
    for (const k of ref?.only ?? ["correct", "offloaded", "exited"]) {
      if (want && Math.abs(got[k] - want[k]) > tolerance) problems.push(`${m}: ${k} ${got[k]} in the browser, ${want[k]} by hiedge eval`);
    }
    if (agree !== null && checkN - agree > tolerance) problems.push(`${m}: labels agree with tract on ${agree} of ${checkN}`);
    if (!ref && !ORT_OF[m]) problems.push(`${m}: no hiedge eval row to check against`);
  }
  log(`check on the first ${checkN} images: ${problems.length ? problems.join("; ") : "every method matches hiedge eval"}`);
  if (problems.length) throw new Error(`the browser's decisions differ from hiedge eval (tolerance ${tolerance} images): ${problems.join("; ")}`);

  // Where tract's time goes on the tiny model, unthrottled.
  results.profile = await page.evaluate(() => window.profileTiny(300));

  // The grid: every device class x network; in each cell, rounds of one block per method in a
  // seeded random order, the same images for every method within a round.
  const random = seededRandom(seed);
  const take = sampleSchedule(count, random);
  for (const rate of devices) {
    await emulateDevice(cdp, rate);
    for (const network of networks) {
      await emulateNetwork(cdp, network);
      await page.evaluate(() => window.resetSplit());
      for (const m of methods) await block(m, take(3)); // warm-up in these conditions, one offload included
      const rounds = Math.ceil(samples(network) / blockSize);
      const cell = { device: rate, network, rounds, blockSize, methods: {} };
      for (const m of methods) cell.methods[m] = { records: [], taskMs: 0, order: [] };
      for (let r = 0; r < rounds; r++) {
        const indices = take(blockSize);
        for (const m of shuffled(methods, random)) {
          const t0 = await taskSeconds();
          const recs = await block(m, indices);
          cell.methods[m].taskMs += (await taskSeconds() - t0) * 1000;
          cell.methods[m].records.push(...recs);
          cell.methods[m].order.push(r);
        }
        log(`${DEVICES[rate] ?? `${rate}x`}, ${network}: round ${r + 1} of ${rounds}`);
      }
      results.cells.push(summariseCell(cell, methods));
    }
  }
  await emulateDevice(cdp, 1);
  await emulateNetwork(cdp, "loopback");
  await page.close();

  // ---- Cold start: navigation to the first answer, with and without a warm cache. ----
  const sample = Buffer.from(images.subarray(0, inputLength)).toString("base64");
  const coldMethods = ["HI", "large-on-device", "always-offload"];
  for (const rate of coldDevices) {
    for (const network of coldNetworks) {
      const runs = [];
      for (let rep = 0; rep < coldReps(network); rep++) {
        for (const method of shuffled(coldMethods, random)) {
          const context = await browser.newContext();
          const p = await context.newPage();
          const c = await context.newCDPSession(p);
          await emulateDevice(c, rate);
          await emulateNetwork(c, network);
          const url = `${server.url}/bench/cold.html?` + new URLSearchParams({ method, models: modelsUrl, worker: worker.url, set: manifest.name,
            tiny: manifest.models.tiny.file, large: manifest.models.large.file, sample });
          const load = async () => {
            await p.goto(url, { timeout: 600_000 });
            await p.waitForFunction(() => window.__cold !== undefined, null, { timeout: 600_000 });
            const r = await p.evaluate(() => window.__cold);
            if (r.error) throw new Error(`cold start ${method}: ${r.error}`);
            return r;
          };
          const cold = await load();
          const warm = await load(); // the same context: HTTP cache and the client's Cache API are warm
          await context.close();
          runs.push({ method, rep, cold, warm });
          log(`cold start ${DEVICES[rate] ?? `${rate}x`}, ${network}, ${method}: ${cold.firstAnswerMs.toFixed(0)} ms, warm ${warm.firstAnswerMs.toFixed(0)} ms`);
        }
      }
      results.cold.push(summariseCold(rate, network, runs, coldMethods));
    }
  }
} finally {
  await browser.close();
  await server.close();
  await worker.stop();
}

/** Statistics of one cell, and its comparisons (paired by image: every method ran the same images in a round). */
function summariseCell(cell, methods) {
  const stats = {};
  for (const m of methods) {
    const { records, taskMs } = cell.methods[m];
    const total = records.map((r) => r.totalMs);
    const n = records.length;
    stats[m] = {
      n, meanMs: mean(total), meanCi: bootstrapInterval([total], mean, { seed }), medianMs: quantile(total, 0.5),
      medianCi: medianInterval(total), p95Ms: quantile(total, 0.95), p95Ci: bootstrapInterval([total], (v) => quantile(v, 0.95), { seed }),
      deviceMs: mean(records.map((r) => r.deviceMs)), taskMsPerSample: taskMs / n,
      offload: records.filter((r) => r.offloaded).length / n, exited: records.filter((r) => r.exited).length / n,
      accuracyHere: records.filter((r) => r.label === r.truth).length / n, fallbacks: records.filter((r) => r.fallback).length,
      bytesPerSample: mean(records.map((r) => r.bytes)), totalMs: total.map((x) => Math.round(x * 1000) / 1000),
      images: records.map((r) => r.i),
    };
  }
  const paired = (a, b) => {
    if (!stats[a] || !stats[b]) return null;
    const [x, y] = [cell.methods[a].records, cell.methods[b].records];
    if (x.some((r, k) => r.i !== y[k].i)) throw new Error(`${a} and ${b} did not run the same images`);
    const [tx, ty] = [stats[a].totalMs, stats[b].totalMs];
    const reduction = (u, v) => 1 - mean(u) / mean(v);
    return { method: a, baseline: b, reduction: reduction(tx, ty), ci: bootstrapInterval([tx, ty], reduction, { seed }) };
  };
  const larges = ["large-on-device", "large-on-device (onnxruntime-web)"].filter((m) => stats[m]);
  const fastestLarge = larges.sort((a, b) => stats[a].meanMs - stats[b].meanMs)[0];
  const comparisons = {
    hiVsLarge: paired("HI", fastestLarge), hiVsLargeTract: paired("HI", "large-on-device"), eeVsHi: paired("EE-HI", "HI"),
    hiVsOffload: paired("HI", "always-offload"), eeVsLarge: paired("EE-HI", fastestLarge), splitVsHi: paired("split (MDI-Exit)", "HI"),
  };
  return { device: cell.device, network: cell.network, rounds: cell.rounds, blockSize: cell.blockSize, methods: stats, comparisons };
}

/** Cold-start medians per method and cache state, and HI's ratio to large-on-device. */
function summariseCold(rate, network, runs, coldMethods) {
  const byMethod = {};
  for (const m of coldMethods) {
    const mine = runs.filter((r) => r.method === m);
    const cold = mine.map((r) => r.cold.firstAnswerMs), warm = mine.map((r) => r.warm.firstAnswerMs);
    byMethod[m] = { reps: mine.length, coldMs: cold, warmMs: warm, coldMedianMs: quantile(cold, 0.5), warmMedianMs: quantile(warm, 0.5),
      coldBytes: quantile(mine.map((r) => r.cold.transferred), 0.5), warmBytes: quantile(mine.map((r) => r.warm.transferred), 0.5),
      answeredBy: [...new Set(mine.map((r) => r.cold.answeredBy))] };
  }
  const ratio = (a, b, k) => byMethod[a][k] / byMethod[b][k];
  return { device: rate, network, methods: byMethod,
    hiOverLargeCold: ratio("HI", "large-on-device", "coldMedianMs"), hiOverLargeWarm: ratio("HI", "large-on-device", "warmMedianMs"),
    offloadOverHiCold: ratio("always-offload", "HI", "coldMedianMs") };
}

const chromium = info.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? info.userAgent;
const json = {
  command: `node ${process.argv.slice(1).map((a) => (a.startsWith(`${repo}/`) ? relative(repo, a) : a)).join(" ")}`,
  machine: `${cpus()[0]?.model ?? "unknown CPU"} (${cpus().length} logical CPUs, shared)`,
  chromium: `headless Debian Chromium ${chromium}`, crossOriginIsolated: info.crossOriginIsolated, date: new Date().toISOString(),
  modelSet: info.set, testImages: count, onnxruntimeWeb: info.ortVersion,
  plan: {
    devices: Object.fromEntries(devices.map((d) => [d, DEVICES[d] ?? `${d}x CPU throttling`])),
    networks: Object.fromEntries(networks.map((n) => [n, NETWORKS[n]])), samples: samplesSpec, blockSize,
    coldDevices, coldNetworks, coldReps: coldRepsSpec, seed, equalAccuracyPoints: EQUAL_ACCURACY_POINTS, methods: info.methods,
    operatingPoints: info.policies, checkImages: checkN,
  },
  accuracy, accuracyImages: checkN, checks: results.checks, profile: results.profile, cells: results.cells, cold: results.cold,
  realSize, tiers,
};
mkdirSync(out, { recursive: true });
writeFileSync(join(out, "results.json"), JSON.stringify(json) + "\n");
log(`wrote ${join(out, "results.json")}`);
await writeReport(json, { out, readme: readme === "none" ? null : resolve(repo, readme), chart: chart === "none" ? null : resolve(repo, chart) });
