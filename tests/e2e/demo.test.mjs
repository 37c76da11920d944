// End-to-end: the built demo page (www/dist) in headless Debian Chromium against the real Worker
// under `wrangler dev`, both on free loopback ports. Run by `make test-e2e` (after `make worker www`).
// Screenshots go to test-results/. Every process started here is stopped here.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { launchChromium, serveStatic } from "../support/browser.mjs";
import { startWorker } from "../support/wrangler.mjs";

const repo = resolve(import.meta.dirname, "../..");
const artifacts = join(repo, "test-results");
mkdirSync(artifacts, { recursive: true });

let worker, server, browser;
const step = (m) => console.log(`e2e: ${m}`);

async function rows(page) {
  return page.evaluate(() => window.hiedgeDemo.rows.map((r) => ({
    index: r.index, truth: r.truth, decision: r.result.decision, label: r.result.label,
    remoteLabel: r.result.remoteLabel, offloadWanted: r.result.offloadWanted,
  })));
}

async function runSamples(page, { limit, rate, until = limit }) {
  await page.click("[data-testid=reset]");
  await page.fill("[data-testid=limit]", String(limit));
  await page.selectOption("[data-testid=rate]", String(rate));
  await page.click("[data-testid=run]");
  await page.waitForFunction((n) => window.hiedgeDemo.finished >= n, until, { timeout: 180_000 });
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
  await page.waitForTimeout(400); // the totals re-render at most every 200 ms
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

  // The Worker stops mid-run: the remaining offloads fall back, nothing is lost, the banner shows.
  await page.selectOption("[data-testid=policy]", "logistic_top2");
  await runSamples(page, { limit: 200, rate: 50, until: 40 });
  await worker.stop();
  step("Worker stopped mid-run");
  await page.waitForFunction(() => window.hiedgeDemo.finished >= 200, null, { timeout: 180_000 });
  await page.waitForTimeout(400);
  r = await rows(page);
  assert.equal(r.length, 200, "no sample lost");
  assert.deepEqual(r.map((x) => x.index).sort((a, b) => a - b), [...Array(200).keys()]);
  const firstFallback = r.findIndex((x) => x.decision === "fallback");
  assert.ok(firstFallback >= 0, "offloads after the stop must fall back");
  const after = r.slice(firstFallback).filter((x) => x.offloadWanted);
  assert.ok(after.every((x) => x.decision === "fallback"), "every offload after the stop is a fallback");
  assert.ok(await page.isVisible("[data-testid=banner]"), "the banner shows");
  assert.match(await page.textContent("[data-testid=banner]"), /Worker unreachable/);
  assert.equal(await page.textContent("[data-testid=count]"), "200");
  await page.screenshot({ path: join(artifacts, "demo-worker-stopped.png"), fullPage: true });
  step(`${after.length} offloads after the stop fell back; banner shown; 200 of 200 answered`);
  assert.deepEqual(errors, [], "no uncaught page errors");
  console.log("e2e: all passed");
} finally {
  await browser?.close();
  await server?.close();
  await worker?.stop();
}
