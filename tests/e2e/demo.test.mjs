// End-to-end: the built demo page (www/dist) in headless Debian Chromium against the real Worker
// under `wrangler dev`, both on free loopback ports. Run by `make test-e2e` (after `make worker www`).
// Screenshots go to test-results/. Every process started here is stopped here.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { launchChromium, listenLocal, serveStatic } from "../support/browser.mjs";
import { startWorker } from "../support/wrangler.mjs";
import { createServer } from "node:http";

const repo = resolve(import.meta.dirname, "../..");
const artifacts = join(repo, "test-results");
mkdirSync(artifacts, { recursive: true });

let worker, server, browser, hostile;
const step = (m) => console.log(`e2e: ${m}`);

async function rows(page) {
  return page.evaluate(() => window.hiedgeDemo.rows.map((r) => ({
    index: r.index, truth: r.truth, decision: r.result.decision, label: r.result.label,
    remoteLabel: r.result.remoteLabel, offloadWanted: r.result.offloadWanted,
  })));
}

/** Runs `limit` samples and waits until all are answered and the totals show all of them. */
async function runSamples(page, { limit, rate }) {
  await page.click("[data-testid=reset]");
  await page.fill("[data-testid=limit]", String(limit));
  await page.selectOption("[data-testid=rate]", String(rate));
  await page.click("[data-testid=run]");
  await page.waitForFunction((n) => window.hiedgeDemo.finished >= n && window.hiedgeDemo.rendered === window.hiedgeDemo.finished,
    limit, { timeout: 180_000 });
}

/**
 * A hostile offload endpoint: every request gets a 503 whose body is HTML with script in it. The
 * client quotes non-JSON error bodies in `fallbackReason`, so this text reaches the page.
 */
const XSS_BODY = `<img src=x onerror="window.__xss=(window.__xss||0)+1"><script>window.__xss=1</script>`;
async function hostileEndpoint() {
  const server = createServer((req, res) => {
    req.resume();
    const cors = { "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Content-Type, Authorization" };
    if (req.method === "OPTIONS") return res.writeHead(204, cors).end();
    res.writeHead(503, { ...cors, "Content-Type": "text/html" });
    res.end(XSS_BODY);
  });
  return { url: await listenLocal(server), close: () => new Promise((ok) => server.close(ok)) };
}

/**
 * A Y4M video for Chromium's fake camera: MNIST test image `index` (from the committed fixture)
 * scaled 10x to 280x280, as limited-range BT.601 luma (what Chromium's I420 reader expects), with
 * neutral chroma. Returns { path, label }.
 */
function digitVideo(index) {
  const fixture = join(repo, "models/mnist/fixture");
  const image = readFileSync(join(fixture, "images.u8")).subarray(index * 784, (index + 1) * 784);
  const label = readFileSync(join(fixture, "labels.u8"))[index];
  const side = 280;
  const y = Buffer.alloc(side * side);
  for (let r = 0; r < side; r++) {
    for (let c = 0; c < side; c++) y[r * side + c] = 16 + Math.round((image[Math.floor(r / 10) * 28 + Math.floor(c / 10)] * 219) / 255);
  }
  const chroma = Buffer.alloc((side / 2) * (side / 2) * 2, 128);
  const frame = Buffer.concat([Buffer.from("FRAME\n"), y, chroma]);
  const path = join(artifacts, `fake-camera-mnist-${index}.y4m`);
  writeFileSync(path, Buffer.concat([Buffer.from(`YUV4MPEG2 W${side} H${side} F10:1 Ip A1:1 C420jpeg\n`), ...Array(10).fill(frame)]));
  return { path, label };
}

async function setThreshold(page, value) {
  await page.$eval("[data-testid=threshold]", (el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }, value);
}

try {
  worker = await startWorker();
  server = await serveStatic(join(repo, "www/dist"));
  browser = await launchChromium();
  const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // ?worker= on another origin than the page's: the user is asked first (accepted here).
  const asked = [];
  page.on("dialog", (d) => { asked.push(d.message()); d.accept(); });
  await page.goto(`${server.url}/?worker=${encodeURIComponent(worker.url)}`);
  await page.waitForFunction(() => window.hiedgeDemo?.ready === true, null, { timeout: 60_000 });
  assert.ok(await page.isHidden("[data-testid=loading]"), "the loading state must go once ready");
  assert.equal(asked.length, 1, "asked once before using the ?worker= endpoint");
  assert.ok(asked[0].includes(new URL(worker.url).origin), asked[0]);
  step("page loaded, client ready (the ?worker= endpoint confirmed by the user)");

  // Refused: the page never uses the ?worker= endpoint; offloads go to the configured Worker.
  const refusing = await browser.newPage();
  refusing.on("pageerror", (e) => errors.push(String(e)));
  refusing.on("dialog", (d) => d.dismiss());
  await refusing.goto(`${server.url}/?worker=${encodeURIComponent("http://127.0.0.2:9/")}`);
  await refusing.waitForFunction(() => window.hiedgeDemo?.ready === true, null, { timeout: 60_000 });
  assert.notEqual(await refusing.evaluate(() => window.hiedgeDemo.state.workerUrl), "http://127.0.0.2:9/");
  assert.match(await refusing.textContent("[data-testid=worker-from-url]"), /refused/);
  await refusing.close();
  step("?worker= on another origin refused by the user: not used");

  // 200 samples with the default (calibrated LogisticTop2) policy, Worker up.
  await runSamples(page, { limit: 200, rate: 0 });
  let r = await rows(page);
  assert.equal(r.length, 200);
  assert.equal(await page.locator("[data-testid=grid] .thumb").count(), 200, "200 thumbnails shown");
  assert.deepEqual(r.map((x) => x.index).sort((a, b) => a - b), [...Array(200).keys()]);
  const offloaded = r.filter((x) => x.decision === "offloaded");
  assert.ok(offloaded.length > 0 && offloaded.length < 200, `offloaded ${offloaded.length} of 200`);
  assert.equal(r.filter((x) => x.decision === "fallback").length, 0, "no fallback while the Worker is up");
  for (const x of offloaded) assert.equal(typeof x.remoteLabel, "number", `sample ${x.index} offloaded without a remote label`);
  const accuracy = r.filter((x) => x.label === x.truth).length / r.length;
  assert.equal(await page.textContent("[data-testid=accuracy]"), `${(100 * accuracy).toFixed(2)}%`);
  assert.equal(await page.textContent("[data-testid=count]"), "200");
  assert.ok(await page.isHidden("[data-testid=banner]"));
  await page.locator("[data-testid=grid] .thumb").nth(3).click();
  assert.match(await page.textContent("[data-testid=detail]"), /tiny model probabilities/);
  // Your own image: a PNG (here a screenshot of the first thumbnail), resized to 28x28 gray and classified.
  const png = await page.locator("[data-testid=grid] .thumb canvas").first().screenshot();
  await page.setInputFiles("[data-testid=upload]", { name: "photo.png", mimeType: "image/png", buffer: png });
  await page.waitForFunction(() => /\(\d+\.\d%\), (local|offloaded|fallback)/.test(document.querySelector("[data-testid=upload-result]").textContent), null, { timeout: 30_000 });
  step(`upload: ${await page.textContent("[data-testid=upload-result]")}`);
  await page.screenshot({ path: join(artifacts, "demo.png"), fullPage: true });
  step(`200 samples: ${offloaded.length} offloaded, accuracy ${(100 * accuracy).toFixed(2)}% (shown the same)`);

  // Threshold at its maximum: every sample offloaded.
  await page.selectOption("[data-testid=policy]", "max_prob");
  await setThreshold(page, 1);
  await runSamples(page, { limit: 40, rate: 0 });
  r = await rows(page);
  assert.equal(r.length, 40);
  assert.ok(r.every((x) => x.decision === "offloaded" && typeof x.remoteLabel === "number"), "threshold 1 must offload all");
  step("threshold 1: 40 of 40 offloaded");

  // EE-HI: the early-exit model in the page, some samples answered by the exit head, none lost.
  await page.selectOption("[data-testid=policy]", "ee_hi");
  await runSamples(page, { limit: 60, rate: 0 });
  const ee = await page.evaluate(() => window.hiedgeDemo.rows.map((r) => r.result.localStage));
  assert.equal(ee.length, 60);
  assert.ok(ee.includes("exit") && ee.includes("stage2") && !ee.includes("full"), `EE-HI stages: ${ee.join(",")}`);
  step(`EE-HI: ${ee.filter((s) => s === "exit").length} of 60 answered by the exit head`);

  // Another model set: the selector replaces the client (the mnist set's tiny model, offloads to
  // its large model in the same Worker); its samples, classes and accuracy are its own.
  await page.selectOption("[data-testid=model-set]", "mnist");
  await page.waitForFunction(() => window.hiedgeDemo.ready === true && window.hiedgeDemo.state.set?.name === "mnist", null, { timeout: 60_000 });
  assert.deepEqual(await page.evaluate(() => window.hiedgeDemo.state.classes), ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
  assert.equal(await page.locator("[data-testid=grid] .thumb").count(), 0, "switching sets clears the run");
  assert.match(page.url(), /[?&]set=mnist/);
  await page.selectOption("[data-testid=policy]", "max_prob");
  await setThreshold(page, 0.99);
  await runSamples(page, { limit: 100, rate: 0 });
  r = await rows(page);
  const mnistOffloaded = r.filter((x) => x.decision === "offloaded");
  const mnistAccuracy = r.filter((x) => x.label === x.truth).length / r.length;
  assert.equal(r.length, 100);
  assert.ok(mnistOffloaded.length > 0 && mnistOffloaded.every((x) => typeof x.remoteLabel === "number"), `mnist offloaded ${mnistOffloaded.length}`);
  assert.ok(mnistAccuracy >= 0.95, `mnist HI accuracy ${mnistAccuracy}`);
  assert.equal(await page.textContent("[data-testid=accuracy]"), `${(100 * mnistAccuracy).toFixed(2)}%`);
  await page.screenshot({ path: join(artifacts, "demo-mnist.png"), fullPage: true });
  step(`set switched to mnist: 100 samples, ${mnistOffloaded.length} offloaded to its large model, accuracy ${(100 * mnistAccuracy).toFixed(2)}%`);

  // One Worker deployment is the whole HI deployment: a client built from the Worker alone
  // (manifest, tiny model and early-exit stages fetched by sha256), offloading to the set's large model.
  const fromWorker = await page.evaluate(async (endpoint) => {
    const { HiClient, state } = window.hiedgeDemo;
    const c = await HiClient.create({ endpoint, modelSet: "mnist", earlyExit: true, policy: "always_offload" });
    const pixels = state.images.subarray(0, 784);
    const res = await c.classify(pixels);
    await c.setPolicy("ee_hi");
    const ee = await c.classifyLocal(pixels);
    const out = { modelId: c.modelId, label: res.label, decision: res.decision, remoteModel: res.remoteModel, truth: state.labels[0],
                  eeStage: ee.localStage, runsIn: c.runsIn };
    c.close();
    return out;
  }, worker.url);
  assert.equal(fromWorker.decision, "offloaded", JSON.stringify(fromWorker));
  assert.equal(fromWorker.label, fromWorker.truth, JSON.stringify(fromWorker));
  assert.ok(["exit", "stage2"].includes(fromWorker.eeStage), JSON.stringify(fromWorker));
  assert.equal(fromWorker.runsIn, "worker");
  step(`client from the Worker alone (in a Web Worker): ${fromWorker.modelId}, offloaded to ${fromWorker.remoteModel}, label ${fromWorker.label} (truth ${fromWorker.truth})`);

  // The real-size set (224x224 RGB, random weights, uncalibrated: the page starts it on OnlineHedge):
  // a committed photo uploaded, converted by the manifest's centre crop, offloaded as the manifest's
  // WebP and answered by the Worker's ViT-style model.
  await page.selectOption("[data-testid=model-set]", "zoo-rgb");
  await page.waitForFunction(() => window.hiedgeDemo.ready === true && window.hiedgeDemo.state.set?.name === "zoo-rgb", null, { timeout: 60_000 });
  assert.equal(await page.inputValue("[data-testid=policy]"), "online_hedge");
  const disabled = await page.evaluate(() => [...document.querySelectorAll("[data-testid=policy] option")].map((o) => /** @type {HTMLOptionElement} */ (o)).filter((o) => o.disabled).map((o) => o.value));
  assert.deepEqual(disabled, ["logistic_top2", "max_prob", "margin", "entropy", "ee_hi"], "policies that need calibration are not offered");
  await page.selectOption("[data-testid=policy]", "always_offload");
  // The page applies a policy asynchronously: wait until the client has it before the upload.
  await page.waitForFunction(() => window.hiedgeDemo.state.client.policy().kind === "always_offload");
  await page.evaluate(() => { window.hiedgeDemo.lastUpload = null; }); // the Fashion-MNIST upload's
  await page.setInputFiles("[data-testid=upload]", join(repo, "cli/tests/fixtures/photos/chelsea.jpg"));
  await page.waitForFunction(() => window.hiedgeDemo.lastUpload !== null, null, { timeout: 60_000 });
  const zoo = await page.evaluate(() => window.hiedgeDemo.lastUpload);
  assert.equal(zoo.decision, "offloaded", `zoo-rgb upload: ${zoo.fallbackReason}`);
  assert.equal(typeof zoo.remoteLabel, "number");
  assert.ok(zoo.bytesSent > 0 && zoo.bytesSent < 224 * 224 * 3 / 4, `zoo-rgb upload sent ${zoo.bytesSent} bytes`);
  await page.screenshot({ path: join(artifacts, "demo-zoo-rgb.png"), fullPage: true });
  step(`real-size set zoo-rgb: a photo offloaded as WebP (${zoo.bytesSent} of 150528 bytes), answered by ${zoo.remoteModel}`);

  // Back to Fashion-MNIST for the rest.
  await page.selectOption("[data-testid=model-set]", "fashion-mnist");
  await page.waitForFunction(() => window.hiedgeDemo.ready === true && window.hiedgeDemo.state.set?.name === "fashion-mnist", null, { timeout: 60_000 });
  assert.equal((await page.evaluate(() => window.hiedgeDemo.state.classes))[0], "T-shirt/top");

  // The monitoring panel: 200 unshifted samples against the calibration, then 500 darkened ones
  // (x 0.4, the page's shift): the offload-rate alarm fires (hiedge monitor on the same models:
  // after about 110 darkened samples; cli/tests/monitor.rs bounds it at 1,000). The alarm is read
  // from the panel once it shows every sample, never timed.
  const monitored = (n) => page.waitForFunction((n) => window.hiedgeDemo.monitored >= n &&
    new RegExp(`^${n} samples`).test(document.querySelector("[data-testid=monitor-status]").textContent), n, { timeout: 60_000 });
  await page.selectOption("[data-testid=policy]", "logistic_top2");
  await page.waitForFunction(() => window.hiedgeDemo.state.client.policy().kind === "logistic_top2");
  await runSamples(page, { limit: 200, rate: 0 });
  await monitored(200);
  assert.match(await page.textContent("[data-testid=monitor-rate]"), /calibrated 20\.9%/);
  assert.equal(await page.locator("[data-testid=monitor-alarms] li").count(), 0, "no alarm on 200 unshifted samples");
  await page.selectOption("[data-testid=shift]", "darken");
  await runSamples(page, { limit: 500, rate: 0 });
  await monitored(500);
  const alarms = await page.locator("[data-testid=monitor-alarms] li").allTextContents();
  assert.ok(alarms.some((a) => /^offload rate at sample \d+$/.test(a)), `alarms after darkening: ${JSON.stringify(alarms)}`);
  assert.match(await page.getAttribute("[data-testid=monitor-panel]", "class"), /alarmed/);
  await page.locator("[data-testid=monitor-panel]").screenshot({ path: join(artifacts, "demo-monitoring.png") });
  await page.selectOption("[data-testid=shift]", "none");
  step(`monitoring panel: no alarm over 200 samples; darkened x0.4: ${alarms.join(", ")}`);

  // The camera source on Chromium's fake capture device, fed an MNIST digit: frames go through the
  // same conversion (280x280 video frame -> 28x28 gray) and come back as that digit.
  const video = digitVideo(0);
  const camBrowser = await launchChromium(["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${video.path}`]);
  try {
    const cam = await camBrowser.newPage({ viewport: { width: 1400, height: 1300 } });
    cam.on("pageerror", (e) => errors.push(String(e)));
    cam.on("dialog", (d) => d.accept());
    await cam.goto(`${server.url}/?set=mnist&worker=${encodeURIComponent(worker.url)}`);
    await cam.waitForFunction(() => window.hiedgeDemo?.ready === true && window.hiedgeDemo.state.set?.name === "mnist", null, { timeout: 60_000 });
    await cam.click("[data-testid=camera]");
    await cam.waitForFunction(() => window.hiedgeDemo.camera.frames >= 3 || window.hiedgeDemo.camera.error, null, { timeout: 60_000 });
    const seen = await cam.evaluate(() => ({ ...window.hiedgeDemo.camera, last: window.hiedgeDemo.camera.last && { label: window.hiedgeDemo.camera.last.label, decision: window.hiedgeDemo.camera.last.decision } }));
    assert.equal(seen.error, null, `camera error: ${seen.error}`);
    assert.equal(seen.last.label, video.label, `camera frames classified as ${seen.last.label}, the digit is ${video.label}`);
    assert.match(await cam.textContent("[data-testid=camera-result]"), /280x280 frame -> 28x28/);
    await cam.screenshot({ path: join(artifacts, "demo-camera.png"), fullPage: true });
    await cam.click("[data-testid=camera]");
    step(`camera (fake capture of digit ${video.label}): ${seen.frames} frames, answered ${seen.last.label} (${seen.last.decision})`);
  } finally {
    await camBrowser.close();
  }

  // The split stream (MDI-Exit) on a device made 30x slower by the browser's own CPU throttling
  // (DevTools protocol), samples arriving faster than it serves them: every pushed sample is
  // answered or reported skipped, each once, and the page's counts add up. Which samples are
  // skipped, exit or go to the Worker depends on the machine's speed, so none of that is asserted
  // here: tests/npm/stream.mjs steps a HiStream through skips, answers and a Worker stopped
  // mid-stream on a clock it owns.
  // On a fresh visit: after the steps above the throttled page served the stream several times
  // slower (200 samples did not finish in 600 s; on a fresh page 30 took 28 s here).
  await page.goto(`${server.url}/?worker=${encodeURIComponent(worker.url)}`);
  await page.waitForFunction(() => window.hiedgeDemo?.ready === true && window.hiedgeDemo.state.set?.name === "fashion-mnist",
    null, { timeout: 60_000 });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 30 });
  await page.selectOption("[data-testid=split-rate]", "2000");
  // 100 samples: at 30x about one sample a second arrives and is served here.
  const SPLIT_N = 100;
  await page.fill("[data-testid=split-limit]", String(SPLIT_N));
  await page.click("[data-testid=split-run]");
  await page.waitForFunction(() => window.hiedgeDemo.split.running || window.hiedgeDemo.split.error, null, { timeout: 60_000 });
  // About one sample a second at 30x on this 2-core machine: a wait, not a claim.
  await page.waitForFunction(() => !window.hiedgeDemo.split.running, null, { timeout: 600_000 });
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
  const sp = await page.evaluate(() => ({
    error: window.hiedgeDemo.split.error, pushed: window.hiedgeDemo.split.pushed,
    decisions: window.hiedgeDemo.split.rows.map((r) => r.result.decision),
    indices: window.hiedgeDemo.split.rows.map((r) => r.result.index),
    stats: window.hiedgeDemo.split.stream.stats(),
  }));
  assert.equal(sp.error, null, `split stream error: ${sp.error}`);
  assert.equal(sp.pushed, SPLIT_N);
  assert.equal(sp.decisions.length, SPLIT_N, "every pushed sample answered or reported");
  assert.deepEqual([...sp.indices].sort((a, b) => a - b), [...Array(SPLIT_N).keys()], "each sample exactly once");
  const nOf = (d) => sp.decisions.filter((x) => x === d).length;
  assert.equal(sp.stats.arrived, SPLIT_N);
  assert.equal(sp.stats.processed + sp.stats.skipped, SPLIT_N);
  assert.equal(sp.stats.skipped, nOf("skipped"), "skips counted in the stats");
  for (const [d, key] of [["exit", "exited"], ["features", "features"], ["raw", "raw"], ["device", "device"], ["fallback", "fallback"]]) {
    assert.equal(sp.stats[key], nOf(d), `${d} counted in the stats`);
  }
  // The counts line is redrawn at most every 200 ms (of a 30x-throttled CPU when the run ended).
  await page.waitForFunction((n) => new RegExp(`${n} arrived`).test(document.querySelector("[data-testid=split-counts]").textContent),
    SPLIT_N, { timeout: 30_000 }).catch(() => {});
  assert.match(await page.textContent("[data-testid=split-counts]"), new RegExp(`${SPLIT_N} arrived`));
  await page.screenshot({ path: join(artifacts, "demo-split.png"), fullPage: true });
  step(`split stream, CPU throttled 30x: ${SPLIT_N} arrived, ${sp.stats.processed} processed ` +
    `(exit ${nOf("exit")}, features ${nOf("features")}, raw ${nOf("raw")}, device ${nOf("device")}, fallback ${nOf("fallback")}), ` +
    `${sp.stats.skipped} skipped; ${sp.stats.processedPerS.toFixed(1)} processed/s`);
  await worker.stop();

  // The Worker is down before a run: every sample the policy offloads falls back, none is lost,
  // the banner says so.
  await page.selectOption("[data-testid=policy]", "logistic_top2");
  await runSamples(page, { limit: 200, rate: 0 });
  r = await rows(page);
  assert.equal(r.length, 200, "no sample lost");
  assert.deepEqual(r.map((x) => x.index).sort((a, b) => a - b), [...Array(200).keys()]);
  const wanted = r.filter((x) => x.offloadWanted);
  assert.ok(wanted.length > 0, "the policy wanted to offload some samples");
  assert.ok(wanted.every((x) => x.decision === "fallback" && x.remoteLabel === null), "every offload fell back");
  assert.ok(r.filter((x) => !x.offloadWanted).every((x) => x.decision === "local"), "kept samples stay local");
  assert.ok(await page.isVisible("[data-testid=banner]"), "the banner shows");
  assert.match(await page.textContent("[data-testid=banner]"), /Worker unreachable/);
  assert.equal(await page.textContent("[data-testid=count]"), "200");
  assert.equal(await page.textContent("#n-fallback"), String(wanted.length));
  await page.screenshot({ path: join(artifacts, "demo-worker-stopped.png"), fullPage: true });
  step(`Worker down: ${wanted.length} offloads fell back; banner shown; 200 of 200 answered`);
  assert.deepEqual(errors, [], "no uncaught page errors");

  // Untrusted text stays text: an endpoint (set through ?worker=, itself carrying markup) answers
  // with HTML and script; the page shows it literally and runs none of it.
  hostile = await hostileEndpoint();
  const hostileUrl = `${hostile.url}/?<img src=y onerror="window.__xss=1">`;
  const evil = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  evil.on("pageerror", (e) => errors.push(String(e)));
  evil.on("dialog", (d) => d.accept());
  await evil.goto(`${server.url}/?worker=${encodeURIComponent(hostileUrl)}`);
  await evil.waitForFunction(() => window.hiedgeDemo?.ready === true, null, { timeout: 60_000 });
  assert.ok(await evil.isVisible("[data-testid=worker-from-url]"), "the ?worker= endpoint is shown on the page");
  assert.ok((await evil.textContent("[data-testid=worker-from-url]")).includes(hostileUrl), "shown literally");
  await evil.selectOption("[data-testid=policy]", "always_offload");
  await runSamples(evil, { limit: 5, rate: 0 });
  await evil.locator("[data-testid=grid] .thumb").nth(0).click();
  const detail = await evil.textContent("[data-testid=detail]");
  assert.ok(detail.includes(`HTTP 503: ${XSS_BODY}`), `the hostile body must show as text: ${detail}`);
  assert.equal(await evil.locator("[data-testid=detail] img, [data-testid=detail] script").count(), 0, "no element made from the body");
  assert.ok((await evil.textContent("[data-testid=banner]")).includes(XSS_BODY), "the banner quotes it as text");
  assert.equal(await evil.evaluate(() => window.__xss), undefined, "no hostile script ran");
  await evil.screenshot({ path: join(artifacts, "demo-hostile-endpoint.png"), fullPage: true });
  step("hostile endpoint: its HTML shown as text, no script ran");
  assert.deepEqual(errors, [], "no uncaught page errors");
  console.log("e2e: all passed");
} finally {
  await browser?.close();
  await server?.close();
  await hostile?.close();
  await worker?.stop();
}
