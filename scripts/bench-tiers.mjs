// `make bench-tiers`: three tiers against two, in headless Chromium against the real Worker
// (wrangler dev) and a real Open Inference Protocol server (KServe's Python ModelServer running the
// set's large model with onnxruntime, tests/oip/kserve_onnx.py), on emulated devices (CPU
// throttling) x networks (the browser's own emulation of the page's fetches), both through the
// DevTools protocol.
//
// Methods, one sample at a time through the npm package on the page's main thread (bench/tiers.html):
//   large-on-device: the large model in the browser (the grid's baseline);
//   HI, two tiers:   the tiny model on the device at the manifest's calibrated max_prob, offloads
//                    answered by the Worker's large model (the set as committed);
//   HI, three tiers: the same device decisions; offloads go to the Worker's mid model, which sends
//                    what it is unsure of (oip.escalate) on to the large model on the server.
//
// Chosen before the run (and written into the record): the device's threshold (the manifest's),
// the Worker's escalate threshold (fitted by `hiedge calibrate --tiers tiny,mid,large` on the
// calibration images, or --escalate), the schedule (per cell, rounds of one block per method in a
// seeded random order, the same images for every method in a round), the statistics (mean and
// median with 95% intervals; changes as 1 - mean ratio with a paired bootstrap interval) and the seed.
//
// Accuracy and where samples were answered: both HI methods on the first --check-n test images,
// unthrottled on loopback, checked against `hiedge eval --tiers tiny,mid,large` on the same
// images (its two-tier row and the row at the manifest's oip.escalate) within the stated tolerance.
//
// The server runs on this machine, beside the Worker and the browser: its hop is a loopback call
// and its compute shares the same CPU cores. A GPU server across a network would answer faster
// per sample and take a network round trip more; the record says which this was.
//
// Usage: node scripts/bench-tiers.mjs [--devices 1,4] [--networks loopback,broadband,4g,3g] [--samples 100] [--block 10]
//   [--check-n 2000] [--escalate fit|THRESHOLD] [--models models/fashion-mnist] [--data DIR] [--hiedge BIN]
//   [--python PY] [--seed 20261207] [--out bench/tiers.md]
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, homedir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { emulateDevice, emulateNetwork, NETWORK_NAMES } from "../tests/support/conditions.mjs";
import { startWorker } from "../tests/support/wrangler.mjs";
import { bootstrapInterval, mean, medianInterval, quantile, sampleSchedule, seededRandom, shuffled } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";
import { renderTiers } from "./bench-report.mjs";

const repo = resolve(import.meta.dirname, "..");
const cache = join(process.env.HOME ?? homedir(), ".cache/hiedge");
const { values: args } = readArgs({
  usage: "node scripts/bench-tiers.mjs [--devices 1,4] [--networks LIST] [--samples N] [--block N] [--check-n N|all] " +
    "[--escalate fit|THRESHOLD] [--models DIR] [--data DIR] [--hiedge BIN] [--python PY] [--seed N] [--out FILE]",
  flags: {
    devices: "1,4", networks: "loopback,broadband,4g,3g", samples: "100", block: "10", "check-n": "2000", escalate: "fit",
    models: "models/fashion-mnist", data: process.env.FASHION_MNIST_DIR ?? "/usr/share/datasets/fashion-mnist",
    hiedge: join(process.env.CARGO_TARGET_DIR ?? join(cache, "target"), "release/hiedge"),
    python: process.env.HIEDGE_OIP_PYTHON ?? join(cache, "oip-venv/bin/python"), seed: "20261207", out: "bench/tiers.md",
  },
});
const arg = (k) => String(args[k]);
const list = (s) => s.split(",").filter(Boolean);
const devices = list(arg("devices")).map(Number);
const networks = list(arg("networks"));
const samples = Number(arg("samples"));
const blockSize = Number(arg("block"));
const seed = Number(arg("seed"));
const setDir = resolve(repo, arg("models"));
const hiedge = arg("hiedge");
const out = resolve(repo, arg("out"));
for (const n of networks) if (!(n in NETWORK_NAMES)) throw new Error(`unknown network ${n}: use ${Object.keys(NETWORK_NAMES).join(", ")}`);
if (devices.some((d) => !(d >= 1))) throw new Error("--devices: CPU throttling rates >= 1");
if (!(blockSize >= 1) || !(samples >= blockSize)) throw new Error("--block >= 1 and --samples >= --block");
if (!setDir.startsWith(`${repo}/`)) throw new Error("--models must be inside the repository (the page is served from it)");
const log = (s) => process.stderr.write(`${s}\n`);

const manifest = JSON.parse(readFileSync(join(setDir, "manifest.json"), "utf8"));
for (const role of ["tiny", "mid", "large"]) if (!manifest.models[role]) throw new Error(`${setDir}: three tiers need models.${role}`);
const inputLength = manifest.input.shape.reduce((a, b) => a * b, 1);
const idx = (f, header) => gunzipSync(readFileSync(join(arg("data"), f))).subarray(header);
const images = idx("t10k-images-idx3-ubyte.gz", 16);
const labels = idx("t10k-labels-idx1-ubyte.gz", 8);
const count = Math.min(labels.length, Math.floor(images.length / inputLength));
if (images.length !== count * inputLength) throw new Error(`${arg("data")}: test images are not ${inputLength} bytes each`);
const checkN = arg("check-n") === "all" ? count : Number(arg("check-n"));
if (!(checkN >= 1 && checkN <= count)) throw new Error(`--check-n: 1..${count} or all`);
const work = join(repo, "test-results/bench-tiers");
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
writeFileSync(join(work, "images.u8"), images);
writeFileSync(join(work, "labels.u8"), labels.subarray(0, count));

// The Worker's assets: the set as committed (two tiers) and beside it the same set with a server
// tier (three tiers: the Worker runs `mid`, the server `large`). The large model's input tensor is
// the manifest's; the server's output is named here.
const twoTierSet = manifest.name;
const threeTierSet = `${manifest.name}-tiers`;
const assets = join(work, "assets");
const copySet = (name) => {
  const dir = join(assets, name);
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(setDir)) if (statSync(join(setDir, f)).isFile()) cpSync(join(setDir, f), join(dir, f));
  return dir;
};
copySet(twoTierSet);
const tiersDir = copySet(threeTierSet);
cpSync(join(repo, "models/.assetsignore"), join(assets, ".assetsignore"));
const serverModel = "tier3-large";
const oip = (threshold) => ({
  model: serverModel, input_name: manifest.models.large.input_name, output_name: "logits", datatype: "FP32",
  output: manifest.models.large.output, binary: true, escalate: { kind: "max_prob", threshold }, timeout_ms: 30000,
  token_secret: "OIP_TOKEN", worker_model: "mid",
});
const writeTiers = (threshold) =>
  writeFileSync(join(tiersDir, "manifest.json"), JSON.stringify({ ...manifest, name: threeTierSet, oip: oip(threshold) }, null, 2));
let escalate;
if (arg("escalate") === "fit") {
  // Fitted on the calibration images by hiedge calibrate (dry run: only its oip.escalate is taken,
  // so the device's decisions stay the committed manifest's).
  writeTiers(0.5);
  const fitted = JSON.parse(execFileSync(hiedge, ["calibrate", "--dry-run", "--models", tiersDir, "--tiers", "tiny,mid,large"],
    { encoding: "utf8", maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "inherit"] }));
  escalate = fitted.oip?.escalate?.threshold;
  if (!(escalate > 0 && escalate < 1)) throw new Error(`hiedge calibrate --tiers did not fit oip.escalate: ${JSON.stringify(fitted.oip)}`);
} else {
  escalate = Number(arg("escalate"));
  if (!(escalate >= 0 && escalate <= 1)) throw new Error("--escalate: fit or a threshold in 0..1");
}
writeTiers(escalate);
log(`the Worker's mid model sends on at max_prob <= ${escalate.toFixed(4)}`);

// `hiedge eval` on the same images: the reference for where each method answers and how well.
const ev = JSON.parse(execFileSync(hiedge, ["eval", "--json", "--models", tiersDir, "--data", arg("data"), "--limit", String(checkN),
  "--tiers", "tiny,mid,large"], { encoding: "utf8", maxBuffer: 1 << 26 })).three_tier;
if (!ev?.deployed) throw new Error("hiedge eval --tiers gave no row at the manifest's oip.escalate");
const expected = {
  "HI, two tiers": { toWorker: ev.device_server.to_worker, toServer: 0, accuracy: ev.device_server.accuracy },
  "HI, three tiers": { toWorker: ev.deployed.outcome.to_worker, toServer: ev.deployed.outcome.to_server, accuracy: ev.deployed.outcome.accuracy },
  "large-on-device": { toWorker: 0, toServer: 0, accuracy: ev.alone[2] },
};

// The inference server: a port of its own choosing, announced on stdout once it is ready.
const token = randomBytes(16).toString("hex");
const { scale, mean: normMean, std } = manifest.input.normalize;
const perChannel = (v) => [v].flat().join(",");
const kserve = spawn(arg("python"), ["tests/oip/kserve_onnx.py", "--model-name", serverModel, "--onnx",
  join(setDir, manifest.models.large.source?.file ?? manifest.models.large.file), "--output-name", "logits", "--token", token,
  "--scale", String(scale), "--mean", perChannel(normMean), "--std", perChannel(std)],
{ cwd: repo, detached: true, stdio: ["ignore", "pipe", "ignore"] });
let serverRequests = 0;
const serverUrl = await new Promise((ok, fail) => {
  let buffered = "";
  const timer = setTimeout(() => fail(new Error("the KServe server did not report its URL in 180 s")), 180_000);
  kserve.on("exit", (code) => fail(new Error(`the KServe server exited (${code}): run \`make oip-server\`, or pass --python`)));
  kserve.stdout.on("data", (d) => {
    buffered += String(d);
    let nl;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      try {
        const v = JSON.parse(line);
        if (v.url) { clearTimeout(timer); ok(v.url); }
        if (v.event === "request") serverRequests++;
      } catch { /* KServe's own log lines */ }
    }
  });
});
const stopServer = () => { try { process.kill(-kserve.pid, "SIGKILL"); } catch {} };

let worker, server, browser, info;
const checks = [];
const cells = [];
try {
  worker = await startWorker({ assets, vars: { DEFAULT_MODEL_SET: twoTierSet, OIP_URL: serverUrl, OIP_TOKEN: token } });
  server = await serveStatic(repo, 0, { cacheControl: "max-age=3600", compress: true });
  browser = await launchChromium();
  const page = await browser.newPage();
  const cdp = await page.context().newCDPSession(page);
  await page.goto(`${server.url}/bench/tiers.html`);
  await page.waitForFunction(() => window.loaded === true, null, { timeout: 60_000 });
  info = await page.evaluate((p) => window.setup(p), {
    modelsUrl: `/${relative(repo, setDir)}`, worker: worker.url, twoTierSet, threeTierSet,
    imagesUrl: `/${relative(repo, join(work, "images.u8"))}`, labelsUrl: `/${relative(repo, join(work, "labels.u8"))}`,
  });
  const methods = info.methods;
  const block = (m, ix) => page.evaluate(([m, ix]) => window.block(m, ix), [m, ix]);
  // Warm-up: JIT, the Worker's lazy model loads, the server's first inference.
  for (const m of methods) await block(m, [...Array(20).keys()]);

  // Where each sample was answered, and how well: unthrottled, loopback, against hiedge eval.
  const tolerance = Math.max(1, Math.ceil(0.002 * checkN));
  const problems = [];
  for (const m of methods) {
    const recs = [];
    for (let s = 0; s < checkN; s += 250) recs.push(...(await block(m, [...Array(Math.min(250, checkN - s)).keys()].map((k) => s + k))));
    const got = { toWorker: recs.filter((r) => r.answeredBy !== "device").length, toServer: recs.filter((r) => r.answeredBy === "server").length,
      correct: recs.filter((r) => r.label === r.truth).length, fallbacks: recs.filter((r) => r.fallback || r.remoteWhy === "server_failed").length };
    const e = expected[m];
    const want = { toWorker: Math.round(e.toWorker * checkN), toServer: Math.round(e.toServer * checkN), correct: Math.round(e.accuracy * checkN) };
    checks.push({ method: m, images: checkN, tolerance, browser: got, hiedgeEval: want });
    for (const k of ["toWorker", "toServer", "correct"]) if (Math.abs(got[k] - want[k]) > tolerance) problems.push(`${m}: ${k} ${got[k]} in the browser, ${want[k]} by hiedge eval`);
    if (got.fallbacks) problems.push(`${m}: ${got.fallbacks} fallbacks with the Worker and the server up`);
    log(`check: ${m} on ${checkN} images: ${JSON.stringify(got)} (hiedge eval ${JSON.stringify(want)})`);
  }
  if (problems.length) throw new Error(`the browser's answers differ from hiedge eval (tolerance ${tolerance} images): ${problems.join("; ")}`);

  const random = seededRandom(seed);
  const take = sampleSchedule(count, random);
  for (const rate of devices) {
    await emulateDevice(cdp, rate);
    for (const network of networks) {
      await emulateNetwork(cdp, network);
      for (const m of methods) await block(m, take(3));
      const rounds = Math.ceil(samples / blockSize);
      const recs = Object.fromEntries(methods.map((m) => [m, []]));
      for (let r = 0; r < rounds; r++) {
        const indices = take(blockSize);
        for (const m of shuffled(methods, random)) recs[m].push(...(await block(m, indices)));
      }
      cells.push(summarise(rate, network, recs, methods));
      log(`${rate}x ${network}: ${methods.map((m) => `${m} ${mean(recs[m].map((r) => r.totalMs)).toFixed(1)} ms`).join(", ")}`);
    }
  }
  await emulateDevice(cdp, 1);
  await emulateNetwork(cdp, "loopback");
} finally {
  await browser?.close();
  await server?.close();
  await worker?.stop();
  stopServer();
}

/** One cell: per method its times and where samples were answered; paired changes in mean latency. */
function summarise(rate, network, recs, methods) {
  const stats = {};
  for (const m of methods) {
    const ms = recs[m].map((r) => r.totalMs);
    stats[m] = {
      n: ms.length, meanMs: mean(ms), meanCi: bootstrapInterval([ms], mean, { seed }), medianMs: quantile(ms, 0.5), medianCi: medianInterval(ms),
      p95Ms: quantile(ms, 0.95), toWorker: recs[m].filter((r) => r.answeredBy !== "device").length / ms.length,
      toServer: recs[m].filter((r) => r.answeredBy === "server").length / ms.length, fallbacks: recs[m].filter((r) => r.fallback).length,
    };
  }
  const paired = (a, b) => {
    if (recs[a].some((r, k) => r.i !== recs[b][k].i)) throw new Error(`${a} and ${b} did not run the same images`);
    const [x, y] = [recs[a].map((r) => r.totalMs), recs[b].map((r) => r.totalMs)];
    const reduction = (u, v) => 1 - mean(u) / mean(v);
    return { method: a, baseline: b, reduction: reduction(x, y), ci: bootstrapInterval([x, y], reduction, { seed }) };
  };
  return { device: rate, network, samples: recs[methods[0]].length, methods: stats, comparisons: {
    threeVsTwo: paired("HI, three tiers", "HI, two tiers"), threeVsLarge: paired("HI, three tiers", "large-on-device"),
    twoVsLarge: paired("HI, two tiers", "large-on-device") } };
}

const cpu = cpus();
const record = {
  command: `node ${process.argv.slice(1).map((a) => (a.startsWith(`${repo}/`) ? relative(repo, a) : a)).join(" ")}`,
  date: new Date().toISOString(), machine: `${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} logical cores (shared)`,
  chromium: `${info.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? "Chromium"} headless`, set: relative(repo, setDir),
  models: Object.fromEntries(["tiny", "mid", "large"].map((r) => [r, { params: manifest.models[r].params ?? null, accuracy: manifest.models[r].test_accuracy ?? null }])),
  devicePolicy: info.policy, escalate: { kind: "max_prob", threshold: escalate, fitted: arg("escalate") === "fit" },
  server: "KServe ModelServer (Python, onnxruntime on CPU) on this machine's loopback, binary tensor extension, FP32",
  serverRequests,
  plan: { devices, networks, samples, block: blockSize, seed, checkImages: checkN, networkNames: Object.fromEntries(networks.map((n) => [n, NETWORK_NAMES[n]])) },
  eval: { alone: ev.alone, twoTier: ev.device_server, threeTier: ev.deployed.outcome }, checks, cells,
};
const json = out.replace(/\.md$/, "") + ".json";
mkdirSync(dirname(out), { recursive: true });
writeFileSync(json, JSON.stringify(record) + "\n");
writeFileSync(out, renderTiers(record));
log(`wrote ${out}, ${json}`);
