// The installed `hiedge` package as it loads, in headless Chromium against the real Worker
// (wrangler dev): Web Worker vs main thread, the Cache API across page loads, offline, a changed
// manifest, and answers before the wasm has downloaded under the browser's own 3G emulation.
// Called by pack-install.mjs with the user's app directory (the tarball installed in it).
import assert from "node:assert/strict";
import { copyFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { serveStatic } from "../support/browser.mjs";
import { emulateNetwork, NETWORKS, NETWORK_NAMES } from "../support/conditions.mjs";

const PAGE = `<!doctype html><meta charset="utf-8"><title>hiedge loading</title><script type="module">
import init, { HiClient } from "./node_modules/hiedge/index.js";
window.hiedge = { init, HiClient };
window.__imported = performance.now();
</script>`;

/**
 * Runs every loading check; `repo` is the checkout, `app` the user's project with the package
 * installed, `browser` Chromium, `workerUrl` the Worker under wrangler dev.
 */
export async function checkLoading({ repo, app, browser, workerUrl }) {
  writeFileSync(join(app, "loading.html"), PAGE);
  // Page and package files may be kept in the HTTP cache (as a deployed app's would be); the
  // wasm and the model files must come from the Cache API, which the request log tells apart.
  const server = await serveStatic(app, 0, { cacheControl: "max-age=600" });
  try {
    await sameAnswers(browser, server.url, workerUrl);
    await cachedAndOffline(browser, server.url, workerUrl);
    await changedManifest(repo, app, browser, server.url);
    await answersBeforeTheWasm(repo, app, browser, server, workerUrl);
  } finally {
    await server.close();
  }
}

async function open(context, url) {
  const page = await context.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  page.on("pageerror", (e) => logs.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => window.hiedge !== undefined, null, { timeout: 60_000 }).catch((e) => {
    throw new Error(`${e.message}\n${logs.join("\n")}`);
  });
  return page;
}

/** Web Worker mode and main-thread mode give the same answers (bytes, ImageData and a canvas). */
async function sameAnswers(browser, base, workerUrl) {
  const context = await browser.newContext();
  const page = await open(context, `${base}/loading.html`);
  const out = await page.evaluate(async (endpoint) => {
    const { HiClient } = window.hiedge;
    const images = new Uint8Array(await (await fetch("./images.u8")).arrayBuffer());
    const make = (worker) => HiClient.create({ model: "./tiny.nnef.tar", manifest: "./manifest.json", endpoint, worker, cache: false });
    const [inWorker, onMain] = [await make(true), await make(false)];
    const samples = [];
    for (let i = 0; i < 40; i++) samples.push(images.slice(i * 784, (i + 1) * 784));
    // Image sources: ImageData and a canvas (which the worker facade turns into an ImageBitmap).
    const rgba = new Uint8ClampedArray(784 * 4);
    for (let p = 0; p < 784; p++) rgba.fill(samples[0][p], 4 * p, 4 * p + 3), (rgba[4 * p + 3] = 255);
    const data = new ImageData(rgba, 28, 28);
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 28;
    canvas.getContext("2d").putImageData(data, 0, 0);
    const run = async (client) => {
      const answers = await Promise.all([...samples, data, canvas].map((s) => client.classify(s)));
      return answers.map((r) => ({ label: r.label, decision: r.decision, localLabel: r.localLabel, localProbs: r.localProbs }));
    };
    // The page's longest gap between timer ticks while 200 samples run one after another.
    const longestGap = async (client) => {
      let last = performance.now(), gap = 0, on = true;
      const tick = () => { const now = performance.now(); gap = Math.max(gap, now - last); last = now; if (on) setTimeout(tick, 0); };
      setTimeout(tick, 0);
      for (let i = 0; i < 200; i++) await client.classify(samples[i % 40]);
      on = false;
      return gap;
    };
    return { worker: await run(inWorker), main: await run(onMain), runsIn: [inWorker.runsIn, onMain.runsIn],
             gapWorker: await longestGap(inWorker), gapMain: await longestGap(onMain) };
  }, workerUrl);
  await context.close();
  assert.deepEqual(out.runsIn, ["worker", "main"]);
  assert.equal(out.worker.length, 42);
  // Same wasm, same inputs: the same labels and decisions; probabilities within 1e-6.
  for (const [i, w] of out.worker.entries()) {
    const m = out.main[i];
    assert.deepEqual([w.label, w.decision, w.localLabel], [m.label, m.decision, m.localLabel], `sample ${i}`);
    for (const [k, p] of w.localProbs.entries()) assert.ok(Math.abs(p - m.localProbs[k]) <= 1e-6, `sample ${i} class ${k}`);
  }
  assert.equal(out.worker[40].localLabel, out.worker[0].localLabel, "ImageData of sample 0");
  assert.equal(out.worker[41].localLabel, out.worker[0].localLabel, "canvas of sample 0");
  console.log(
    `Web Worker vs main thread: 42 samples (40 byte arrays, an ImageData, a canvas), same labels and decisions, ` +
      `probabilities within 1e-6; longest page timer gap over 200 samples: ${out.gapWorker.toFixed(1)} ms in a worker, ` +
      `${out.gapMain.toFixed(1)} ms on the main thread`,
  );
}

/** Loads the client from the Worker alone; returns what it saw. */
const loadFromWorker = (page, options) =>
  page.evaluate(async (options) => {
    const { HiClient } = window.hiedge;
    const sample = new Uint8Array(await (await fetch("./sample.bin")).arrayBuffer());
    const cachedBefore = await HiClient.isCached(options);
    const last = new Map(); // each file's last download report, in the order files began
    const client = await HiClient.create({ ...options, onProgress: (p) => p.stage === "download" && last.set(p.file, p) });
    const r = await client.classify(sample);
    return { cachedBefore, cachedAfter: await HiClient.isCached(options), runsIn: client.runsIn,
             downloads: [...last.values()],
             result: { label: r.label, decision: r.decision, answeredBy: r.answeredBy, fallbackReason: r.fallbackReason } };
  }, options);

/** A second page load takes the wasm and model files from the Cache API (no requests), and loads offline. */
async function cachedAndOffline(browser, base, workerUrl) {
  const context = await browser.newContext();
  const requests = [];
  context.on("request", (r) => requests.push(r.url()));
  const options = { endpoint: workerUrl, modelSet: "fashion-mnist", earlyExit: true };
  const modelRequests = () => requests.filter((u) => u.endsWith("hiedge_bg.wasm") || u.includes("/files/"));

  let page = await open(context, `${base}/loading.html`);
  const first = await loadFromWorker(page, options);
  const firstRequests = modelRequests();
  await page.close();
  requests.length = 0;
  page = await open(context, `${base}/loading.html`);
  const second = await loadFromWorker(page, options);
  const secondRequests = modelRequests();
  const manifestRequests = requests.filter((u) => u.endsWith("/v1/models/fashion-mnist")).length;
  await page.close();

  // No network at all: the page and package from the HTTP cache, everything else from the Cache API.
  await context.setOffline(true);
  requests.length = 0;
  page = await open(context, `${base}/loading.html`);
  const offline = await loadFromWorker(page, { ...options, policy: "always_offload" });
  const cleared = await page.evaluate(async (options) => {
    const { HiClient } = window.hiedge;
    return { deleted: await HiClient.clearCache(), cachedAfterClear: await HiClient.isCached(options) };
  }, options);
  await context.close();

  assert.equal(first.cachedBefore, false);
  assert.equal(first.cachedAfter, true);
  assert.equal(first.runsIn, "worker");
  assert.equal(firstRequests.length, 4, `first load: the wasm and three model files over the network: ${firstRequests}`);
  assert.deepEqual(first.downloads.map((d) => d.fromCache), [false, false, false, false]);
  assert.equal(second.cachedBefore, true);
  assert.deepEqual(secondRequests, [], "second load: no wasm or model bytes over the network");
  assert.deepEqual(second.downloads.map((d) => [d.file, d.fromCache]),
    [["wasm", true], ["model", true], ["earlyExit.stage1", true], ["earlyExit.stage2", true]]);
  assert.equal(manifestRequests, 1, "the manifest is asked for once per load (network first)");
  assert.equal(second.result.label, first.result.label);
  assert.equal(offline.runsIn, "worker");
  assert.equal(offline.result.decision, "fallback", JSON.stringify(offline.result));
  assert.equal(offline.result.answeredBy, "device");
  assert.match(offline.result.fallbackReason, /network error/);
  assert.equal(offline.result.label, first.result.label);
  assert.deepEqual(offline.downloads.map((d) => [d.file, d.fromCache]),
    [["wasm", true], ["manifest", true], ["model", true], ["earlyExit.stage1", true], ["earlyExit.stage2", true]]);
  assert.deepEqual(cleared, { deleted: true, cachedAfterClear: false });
  const bytes = first.downloads.reduce((n, d) => n + d.loaded, 0);
  console.log(
    `cache: first load fetched the wasm and 3 model files (${bytes} bytes); second load: 0 requests for them, ` +
      `${manifestRequests} manifest request, all from the Cache API; offline: loaded from the cache in a worker and ` +
      `answered ${offline.result.label} on the device, marked fallback ("${offline.result.fallbackReason}"); clearCache -> isCached false`,
  );
}

/** A changed manifest at the same URL fetches the files it names; an unchanged one does not. */
async function changedManifest(repo, app, browser, base) {
  const context = await browser.newContext();
  const requests = [];
  context.on("request", (r) => requests.push(new URL(r.url()).pathname));
  const load = async () => {
    // max-age pages come from the HTTP cache; this manifest and model must not.
    const page = await open(context, `${base}/loading.html`);
    const out = await page.evaluate(async () => {
      const client = await window.hiedge.HiClient.create({ model: "./v/tiny.nnef.tar", manifest: "./v/manifest.json?" + Date.now(), endpoint: null, worker: false });
      return { classes: client.classes.length, modelId: client.modelId };
    });
    await page.close();
    return out;
  };
  const dir = join(app, "v");
  const { mkdirSync } = await import("node:fs");
  mkdirSync(dir, { recursive: true });
  const use = (set) => {
    copyFileSync(join(repo, `models/${set}/manifest.json`), join(dir, "manifest.json"));
    copyFileSync(join(repo, `models/${set}/tiny.nnef.tar`), join(dir, "tiny.nnef.tar"));
  };
  use("fashion-mnist");
  const before = await load();
  const fetchedBefore = requests.filter((p) => p.endsWith("/v/tiny.nnef.tar")).length;
  requests.length = 0;
  const again = await load();
  const fetchedAgain = requests.filter((p) => p.endsWith("/v/tiny.nnef.tar")).length;
  use("mnist");
  requests.length = 0;
  const after = await load();
  const fetchedAfter = requests.filter((p) => p.endsWith("/v/tiny.nnef.tar")).length;
  await context.close();
  // A changed model at the same URL: the stale HTTP-cached copy (max-age) fails its sha256, so the
  // client asks the server once more past the HTTP cache.
  assert.deepEqual([fetchedBefore, fetchedAgain], [1, 0], "model fetched: first load, unchanged manifest");
  assert.ok(fetchedAfter >= 1, "changed manifest: the new model is fetched");
  assert.equal(again.modelId, before.modelId);
  assert.notEqual(after.modelId, before.modelId);
  const sha = (set) => JSON.parse(readFileSync(join(repo, `models/${set}/manifest.json`), "utf8")).models.tiny.sha256.slice(0, 12);
  assert.equal(after.modelId, `tiny@${sha("mnist")}`);
  console.log(
    `changed manifest: ${before.modelId} fetched once, not again; the new manifest's ${after.modelId} fetched ` +
      `(${fetchedAfter} requests: the HTTP-cached old file, then past the HTTP cache)`,
  );
}

/**
 * Under DevTools' "3G" preset, a cold page's first answer (from the Worker) comes before the wasm has
 * downloaded. The order is the test's, not the network's: the server holds the wasm until the first
 * answer has come (and an image sample has been seen waiting), then lets it through.
 */
async function answersBeforeTheWasm(repo, app, browser, server, workerUrl) {
  const base = server.url;
  server.hold("hiedge_bg.wasm");
  const context = await browser.newContext();
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await emulateNetwork(cdp, "3g");
  let wasmFinished = null;
  const wasmIds = new Set();
  cdp.on("Network.requestWillBeSent", (e) => e.request.url.endsWith("hiedge_bg.wasm") && wasmIds.add(e.requestId));
  cdp.on("Network.loadingFinished", (e) => wasmIds.has(e.requestId) && (wasmFinished = e.timestamp));
  const navigated = Date.now();
  await page.goto(`${base}/loading.html`);
  await page.waitForFunction(() => window.hiedge !== undefined, null, { timeout: 120_000 });
  const out = await page.evaluate(async (endpoint) => {
    const { HiClient } = window.hiedge;
    const sample = new Uint8Array(await (await fetch("./sample.bin")).arrayBuffer());
    let wasm = { loaded: 0, total: null };
    const client = await HiClient.create({
      endpoint, modelSet: "fashion-mnist", answerWhileLoading: true,
      onProgress: (p) => p.file === "wasm" && (wasm = { loaded: p.loaded, total: p.total }),
    });
    const created = performance.now();
    const r = await client.classify(sample);
    const answered = performance.now();
    const waiting = client.classify(new ImageData(28, 28)).then(() => "answered after loading", (e) => e.code);
    return { created, answered, loaded: client.loaded, wasmAtAnswer: { ...wasm },
             result: { label: r.label, answeredBy: r.answeredBy, why: r.why, decision: r.decision, className: r.className,
                       localLabel: r.localLabel, roundTripMs: r.timings.roundTripMs },
             imageWaits: await Promise.race([waiting, new Promise((ok) => setTimeout(() => ok("waiting"), 200))]) };
  }, workerUrl);
  const elapsed = Date.now() - navigated;
  server.release("hiedge_bg.wasm");
  await context.close();
  assert.equal(wasmFinished, null, "the wasm had finished downloading before the first answer");
  assert.equal(out.loaded, false);
  assert.deepEqual([out.result.answeredBy, out.result.why, out.result.decision, out.result.localLabel], ["worker", "loading", "offloaded", -1]);
  // The class name comes from the set's manifest the client asked the Worker for (in parallel).
  const classes = JSON.parse(readFileSync(join(repo, "models/fashion-mnist/manifest.json"), "utf8")).classes;
  assert.equal(out.result.className, classes[out.result.label], "the answer names its class");
  // The wasm's response headers may not have arrived yet at the first answer (then no download
  // report has come, and `total` is unknown): compare with the file's size, and any reported total with it.
  const wasmBytes = statSync(join(app, "node_modules/hiedge/hiedge_bg.wasm")).size;
  assert.ok(out.wasmAtAnswer.total === null || out.wasmAtAnswer.total === wasmBytes, JSON.stringify(out.wasmAtAnswer));
  assert.ok(out.wasmAtAnswer.loaded < wasmBytes, JSON.stringify(out.wasmAtAnswer));
  assert.equal(out.imageWaits, "waiting", "an image sample waits for the device model");
  const share = (100 * out.wasmAtAnswer.loaded) / wasmBytes;
  console.log(
    `${NETWORK_NAMES["3g"]}, ${NETWORKS["3g"].downloadThroughput} bytes/s down: cold page, ` +
      `client created at ${out.created.toFixed(0)} ms, first answer "${out.result.className}" from the Worker at ` +
      `${out.answered.toFixed(0)} ms after navigation (round trip ${out.result.roundTripMs.toFixed(0)} ms) with ` +
      `${share.toFixed(1)}% of the wasm (${out.wasmAtAnswer.loaded} of ${wasmBytes} bytes) downloaded; ` +
      `test left after ${elapsed} ms`,
  );
}
