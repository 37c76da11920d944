// Operating HI with the installed package against the real Worker (wrangler dev), every event in
// an order the test chooses: the client runs on the calling thread with a clock the test owns
// (`worker: false`, `clock`), and its requests pass through a gate (tests/support/gate.mjs) that
// counts them and can be pointed at another Worker. No assertion waits on a timer or the network:
//   1. shadow mode: 200 Fashion-MNIST test images in `prefer_remote` mode (the large model answers
//      every one) with a shadow max_prob 0.9 beside the active max_prob 0.7; the shadow report
//      equals `hiedge eval --truth large --limit 200`'s max_prob 0.900 row (offload fraction, HI
//      agreement, kept agreement), natively computed on the same images. `onDecision` saw every
//      result; `monitor()` counted every sample.
//      A rollout by sample hash: the candidate decides its (stable) share, each result names its arm.
//   2. the circuit breaker (failures 3, cooldown 10 s on the test's clock): the Worker is stopped;
//      three requests fail (fallback), then offloads stop (the gate sees no request, every sample
//      is answered on the device, `why: circuit_open`); a new Worker is started and the gate
//      pointed at it; before the cooldown ends on the test's clock still no request; after it, one
//      probe, answered, and offloads resume. Every sample is answered once. With `failMode: "wait"`
//      a sample refused by the open breaker waits (no request, unanswered) until the cooldown ends on
//      the test's clock, then goes as the probe and the Worker answers it.
// Called by pack-install.mjs with the app folder (the installed package) and its static server.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { gate } from "../support/gate.mjs";
import { startWorker } from "../support/wrangler.mjs";

const N = 200;
const PAGE = `<!doctype html><meta charset="utf-8"><title>hiedge operations</title><script type="module">
import init, { HiClient } from "./node_modules/hiedge/index.js";
window.hiedge = { init, HiClient };
</script>`;

/** The first `n` images of Fashion-MNIST's test set (Debian's IDX files), as `hiedge eval` reads them. */
function testImages(dir, n) {
  const idx = gunzipSync(readFileSync(join(dir, "t10k-images-idx3-ubyte.gz")));
  assert.equal(idx.readUInt32BE(0), 2051, "IDX images magic");
  return idx.subarray(16, 16 + n * 784);
}

/** Runs the checks; starts and stops its own Workers. */
export async function checkOperations({ repo, app, browser, server, hiedge, fashionMnist }) {
  writeFileSync(join(app, "operations.html"), PAGE);
  writeFileSync(join(app, "t10k-200.u8"), testImages(fashionMnist, N));
  let worker = await startWorker();
  const g = await gate(worker.url, { holding: false });
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  page.on("pageerror", (e) => logs.push(String(e)));
  try {
    await page.goto(`${server.url}/operations.html`);
    await page.waitForFunction(() => window.hiedge !== undefined, null, { timeout: 60_000 });
    const shadow = await page.evaluate(async ({ endpoint, n }) => {
      const { init, HiClient } = window.hiedge;
      await init();
      const images = new Uint8Array(await (await fetch("./t10k-200.u8")).arrayBuffer());
      window.img = (i) => images.slice((i % n) * 784, (i % n + 1) * 784);
      window.now = 0;
      window.decisions = [];
      const refused = [];
      for (const bad of [{ clock: () => 0, worker: true }, { onDecision: 7 }, { breaker: { failures: 0 } }, { rollout: { policy: "max_prob", fraction: 0.5 } }]) {
        try { await HiClient.create({ endpoint, modelSet: "fashion-mnist", worker: false, ...bad }); refused.push("accepted"); }
        catch (e) { refused.push(`${e.code}: ${e.message}`); }
      }
      window.client = await HiClient.create({
        endpoint, modelSet: "fashion-mnist", worker: false, clock: () => window.now,
        // Far past anything here: the gate, not a timer, decides when answers come.
        timeoutMs: 600_000,
        policy: { kind: "max_prob", threshold: 0.7 }, mode: "prefer_remote",
        shadow: { kind: "max_prob", threshold: 0.9 }, monitor: true,
        breaker: { failures: 3, cooldownMs: 10_000 },
        onDecision: (r) => window.decisions.push(r),
      });
      const results = [];
      for (let i = 0; i < n; i++) results.push(await window.client.classify(window.img(i)));
      return {
        refused, runsIn: window.client.runsIn, report: await window.client.shadowReport(), monitor: await window.client.monitor(),
        decisions: window.decisions.length, sameAsResults: JSON.stringify(window.decisions) === JSON.stringify(results),
        offloaded: results.filter((r) => r.decision === "offloaded").length,
        shadowFlags: results.filter((r) => r.shadowOffload === true).length,
      };
    }, { endpoint: g.url, n: N });
    assert.match(shadow.refused[0], /^InvalidOptions: a `clock` function cannot be sent to a Web Worker/);
    assert.match(shadow.refused[1], /^InvalidOptions: `onDecision` must be a function/);
    assert.match(shadow.refused[2], /^InvalidOptions: breaker: needs failures >= 1/);
    assert.match(shadow.refused[3], /^InvalidOptions: rollout: `unit: user` needs a non-empty `userId`/);
    assert.equal(shadow.runsIn, "main");
    assert.equal(shadow.offloaded, N, "prefer_remote: the large model answered every image");
    assert.equal(shadow.decisions, N, "onDecision saw every result");
    assert.ok(shadow.sameAsResults, "onDecision saw the results classify resolved with");
    assert.equal(shadow.monitor.samples, N);

    // The same 200 images through `hiedge eval`, scored against the large model's answers.
    const evalJson = JSON.parse(execFileSync(hiedge, ["eval", "--models", join(repo, "models/fashion-mnist"),
      "--data", fashionMnist, "--limit", String(N), "--truth", "large", "--json"], { encoding: "utf8", maxBuffer: 1 << 26 }));
    const row = evalJson.rows.find((r) => r.policy === "max_prob" && r.param === "0.900");
    assert.ok(row, "hiedge eval has a max_prob 0.900 row");
    const r = shadow.report;
    assert.equal(r.samples, N);
    assert.equal(r.checked, N);
    assert.equal(r.offloads, shadow.shadowFlags, "each result's shadowOffload adds up to the report");
    // The same decisions on the same images in tract wasm and native tract: a sample whose top
    // probability lies within float rounding of 0.9 could go either way on another CPU, so one
    // sample of the 200 (0.005) is the stated tolerance on each fraction.
    const tol = 1 / N + 1e-9;
    assert.ok(Math.abs(r.offloadFraction - row.offload_fraction) <= tol, `offload ${r.offloadFraction} vs eval ${row.offload_fraction}`);
    assert.ok(Math.abs(r.agreement - row.hi_accuracy) <= tol, `agreement ${r.agreement} vs eval ${row.hi_accuracy}`);
    assert.ok(Math.abs(r.keptAgreement - row.kept_accuracy) <= tol * N / Math.max(1, r.keptChecked), `kept ${r.keptAgreement} vs eval ${row.kept_accuracy}`);
    assert.ok(r.expectedKeptAccuracy > 0.8 && r.expectedKeptAccuracy <= 1, `expected kept accuracy ${r.expectedKeptAccuracy}`);

    // A rollout by sample: the candidate (always offload) decides the samples its hash picks, every
    // result says which arm decided, and the report counts them.
    const rollout = await page.evaluate(async (endpoint) => {
      const c = await window.hiedge.HiClient.create({
        endpoint, modelSet: "fashion-mnist", worker: false, policy: { kind: "max_prob", threshold: 0.5 },
        rollout: { policy: "always_offload", fraction: 0.5, unit: "sample" },
      });
      const rs = [];
      for (let i = 0; i < 40; i++) rs.push(await c.classify(window.img(i)));
      const again = await c.classify(window.img(7));
      return { arms: rs.map((r) => [r.arm, r.offloadWanted]), again: again.arm, seven: rs[7].arm, report: await c.rolloutReport() };
    }, g.url);
    const candidates = rollout.arms.filter(([arm]) => arm === "candidate");
    assert.ok(candidates.length > 5 && candidates.length < 35, JSON.stringify(rollout.arms));
    assert.ok(candidates.every(([, wanted]) => wanted), "the candidate (always_offload) decided its samples");
    assert.equal(rollout.again, rollout.seven, "the same sample gets the same arm");
    assert.equal(rollout.report.candidate.samples, candidates.length + (rollout.again === "candidate" ? 1 : 0));
    assert.equal(rollout.report.control.samples + rollout.report.candidate.samples, 41);

    // 2. The breaker. The Worker stops; requests reach the gate and die there.
    const calls = (k) => page.evaluate(async (k) => {
      const out = [];
      for (let j = 0; j < k; j++) out.push(await window.client.classify(window.img(j)));
      return { results: out.map((r) => ({ decision: r.decision, why: r.why, answeredBy: r.answeredBy })), breaker: await window.client.breaker() };
    }, k);
    await worker.stop();
    const postsBefore = g.posts();
    const failing = await calls(3);
    assert.deepEqual(failing.results.map((x) => x.decision), ["fallback", "fallback", "fallback"]);
    // Three requests tried: the gate may see one more POST, since Chromium itself resends a request
    // that failed on a reused keep-alive connection; what counts is that none come after this.
    const tried = g.posts() - postsBefore;
    assert.ok(tried >= 3 && tried <= 6, `requests at the gate while the Worker was down: ${tried}`);
    assert.equal(failing.breaker.phase, "open");
    assert.equal(failing.breaker.openUntilMs, 10_000, "open for the cooldown from the third failure (t = 0)");
    const open = await calls(5);
    assert.ok(open.results.every((x) => x.decision === "local" && x.why === "circuit_open" && x.answeredBy === "device"), JSON.stringify(open.results));
    assert.equal(g.posts() - postsBefore, tried, "no request while the breaker is open");

    // The Worker is back (a new wrangler dev), but the cooldown has not ended on the test's clock.
    worker = await startWorker();
    g.retarget(worker.url);
    await page.evaluate(() => { window.now = 9_999; });
    const early = await calls(1);
    assert.equal(early.results[0].why, "circuit_open");
    assert.equal(g.posts() - postsBefore, tried, "no probe before the cooldown ends");
    await page.evaluate(() => { window.now = 10_000; });
    const resumed = await calls(3);
    assert.deepEqual(resumed.results.map((x) => x.answeredBy), ["worker", "worker", "worker"], JSON.stringify(resumed.results));
    assert.equal(resumed.breaker.phase, "closed");
    assert.equal(resumed.breaker.opened, 1);
    assert.equal(resumed.breaker.refused, 6);
    assert.equal(g.posts() - postsBefore, tried + 3, "the probe and two more");
    const total = await page.evaluate(() => ({ decisions: window.decisions.length, stats: window.client.stats() }));
    assert.equal(total.decisions, N + 3 + 5 + 1 + 3, "every sample answered once");
    assert.equal(total.stats.samples, total.decisions);

    // failMode "wait": after one failure the next sample waits for the probe instead of being
    // answered on the device; it is answered by the Worker once one is back and the cooldown ends.
    await page.evaluate(async (endpoint) => {
      window.now = 0;
      window.waiter = await window.hiedge.HiClient.create({
        endpoint, modelSet: "fashion-mnist", worker: false, clock: () => window.now, timeoutMs: 600_000,
        mode: "prefer_remote", breaker: { failures: 1, cooldownMs: 1_000, failMode: "wait" },
      });
    }, g.url);
    await worker.stop();
    const first = await page.evaluate(async () => (await window.waiter.classify(window.img(0))).decision);
    assert.equal(first, "fallback");
    await page.evaluate(() => {
      window.waited = null;
      window.waiter.classify(window.img(1)).then((r) => (window.waited = r));
    });
    const postsWaiting = g.posts();
    worker = await startWorker();
    g.retarget(worker.url);
    // The Worker is up again, but the test's clock is still in the cooldown: the sample waits.
    assert.equal(await page.evaluate(() => window.waited), null, "the sample waits for the probe");
    assert.equal((await page.evaluate(() => window.waiter.breaker())).phase, "open");
    assert.equal(g.posts(), postsWaiting, "no request while it waits");
    await page.evaluate(() => { window.now = 1_000; });
    await page.waitForFunction(() => window.waited !== null, null, { timeout: 60_000 });
    const waited = await page.evaluate(async () => ({ r: window.waited, b: await window.waiter.breaker() }));
    assert.equal(waited.r.answeredBy, "worker", JSON.stringify(waited.r));
    assert.equal(waited.b.phase, "closed");
    console.log(
      `operations: shadow max_prob 0.9 over ${N} test images: offload ${r.offloadFraction.toFixed(3)} (eval ${row.offload_fraction.toFixed(3)}), ` +
        `agreement ${r.agreement.toFixed(3)} (eval ${row.hi_accuracy.toFixed(3)}), kept agreement ${r.keptAgreement.toFixed(3)} ` +
        `(eval ${row.kept_accuracy.toFixed(3)}), expected kept accuracy ${r.expectedKeptAccuracy.toFixed(3)}; breaker: Worker stopped -> ` +
        `3 fallbacks, then 6 samples on the device with no request, probe after the 10 s cooldown on the test's clock -> offloads resumed; ` +
        `failMode wait: the sample after a failure waited (no request) until the cooldown ended, then the Worker answered it`,
    );
  } catch (e) {
    console.error(logs.join("\n"));
    throw e;
  } finally {
    await page.close();
    await g.close();
    await worker.stop();
  }
}
