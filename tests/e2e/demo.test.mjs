// End-to-end: the built demo page (www/dist) in headless Debian Chromium against the real Worker
// under `wrangler dev`, both on free loopback ports. Run by `make test-e2e` (after `make worker www`).
// Screenshots go to test-results/. Every process started here is stopped here.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { launchChromium, serveStatic } from "../support/browser.mjs";
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
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((ok) => server.close(ok)) };
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
  await page.goto(`${server.url}/?worker=${encodeURIComponent(worker.url)}`);
  await page.waitForFunction(() => window.hiedgeDemo?.ready === true, null, { timeout: 60_000 });
  assert.ok(await page.isHidden("[data-testid=loading]"), "the loading state must go once ready");
  step("page loaded, client ready");

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

  // The Worker is stopped before a run: every sample the policy offloads falls back, none is lost,
  // the banner says so.
  await page.selectOption("[data-testid=policy]", "logistic_top2");
  await worker.stop();
  step("Worker stopped");
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
