// The installed package's HiStream (split inference on a stream, MDI-Exit) against the real
// Worker (wrangler dev) stopped mid-stream, with every event in an order the test chooses: the
// stream runs on a clock the test owns (HiStream's `clock` option), and its requests pass through a
// gate started here that holds them until told. No assertion waits on a timer, the machine's
// speed or a race with the network:
//   1. samples that waited past the admission limit on the test's clock are skipped (reported);
//   2. the admitted ones that the exit head is unsure of are held at the gate, then released: the
//      Worker's tail answers them, their round trips measured on the test's clock;
//   3. the Worker is stopped while a batch is held; released, every one falls back to the device;
//   4. after those failures the planner finishes samples on the device (one in `exploreEvery`
//      still tries the network, and falls back).
// Every pushed sample resolves exactly once. Called by pack-install.mjs, last (it stops the Worker).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gate } from "../support/gate.mjs";

const PAGE = `<!doctype html><meta charset="utf-8"><title>hiedge stream</title><script type="module">
import init, { HiStream } from "./node_modules/hiedge/index.js";
window.hiedge = { init, HiStream };
</script>`;

/** Polls `condition` (sync or async) every 20 ms until it holds; fails with `what` after `ms`. */
async function until(condition, what, ms = 120_000) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs the stream checks; stops `worker` (the last check of the npm test). */
export async function checkStream({ app, browser, server, worker }) {
  writeFileSync(join(app, "stream.html"), PAGE);
  const g = await gate(worker.url);
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  page.on("pageerror", (e) => logs.push(String(e)));
  try {
    await page.goto(`${server.url}/stream.html`);
    await page.waitForFunction(() => window.hiedge !== undefined, null, { timeout: 60_000 });
    const setup = await page.evaluate(async (endpoint) => {
      const { init, HiStream } = window.hiedge;
      await init();
      window.images = new Uint8Array(await (await fetch("./images.u8")).arrayBuffer());
      window.now = 0;
      window.results = [];
      window.failures = [];
      // Timeout in real time, far past anything here: the gate, not a timer, decides when answers come.
      window.stream = await HiStream.create({ endpoint, modelSet: "fashion-mnist", timeoutMs: 600_000, clock: () => window.now });
      window.push = (from, to) => {
        for (let i = from; i < to; i++) {
          window.stream.push(window.images.slice(i * 784, (i + 1) * 784)).then((r) => window.results.push(r), (e) => window.failures.push(String(e)));
        }
      };
      const wrongClocks = [];
      for (const clock of [42, () => NaN]) {
        try { await HiStream.create({ endpoint, modelSet: "fashion-mnist", clock }); wrongClocks.push("accepted"); } catch (e) { wrongClocks.push(`${e.code}: ${e.message}`); }
      }
      return { planner: window.stream.planner(), wrongClocks };
    }, g.url);
    assert.match(setup.wrongClocks[0], /^InvalidOptions: `clock` must be a function/);
    assert.match(setup.wrongClocks[1], /^InvalidOptions: the clock must return a finite number/);
    const { exploreEvery, failuresToStop } = setup.planner;
    const snapshot = () => page.evaluate(() => ({ results: window.results, failures: window.failures, waiting: window.stream.waiting }));
    // Results settle when the pump takes a sample (skip, exit, device) or when its answer arrives.
    const settled = async (n) => (await snapshot()).results.length >= n;
    const byIndex = (rs, from, to) => rs.filter((r) => r.index >= from && r.index < to);
    const count = (rs, d) => rs.filter((r) => r.decision === d).length;

    // 1 + 2. Ten samples arrive at t=0 and thirty at t=1000, before the device takes any (one page
    // task): the first ten waited 1000 ms, past the 50 ms admission limit, and are skipped.
    await page.evaluate(() => { window.push(0, 10); window.now = 1000; window.push(10, 40); });
    await until(async () => (await snapshot()).waiting === 0, "the device to take 40 samples");
    let s = await snapshot();
    const skipped = byIndex(s.results, 0, 10);
    assert.equal(skipped.length, 10, "the ten stale samples settle when taken");
    assert.ok(skipped.every((r) => r.decision === "skipped" && /wait/.test(r.reason) && r.timings.waitMs === 1000), JSON.stringify(skipped[0]));
    const exits = byIndex(s.results, 10, 40);
    assert.ok(exits.every((r) => r.decision === "exit" && r.timings.waitMs === 0), JSON.stringify(exits));
    const sent = 30 - exits.length;
    assert.ok(exits.length > 0 && sent >= 2, `of 30 admitted samples ${exits.length} exited, ${sent} sent`);
    // The browser opens a few connections per host (six in Chromium): the rest of the requests wait
    // in the browser, the gate holds the ones that reached it; none can be answered yet.
    await until(() => g.held() >= 1, "a request at the gate");
    assert.equal((await snapshot()).results.length, 10 + exits.length, "nothing answered while the gate holds");
    await page.evaluate(() => { window.now = 1100; });
    g.release();
    await until(() => settled(40), "the Worker's answers");
    s = await snapshot();
    const remote = byIndex(s.results, 10, 40).filter((r) => r.decision !== "exit");
    assert.equal(remote.length, sent);
    assert.ok(remote.every((r) => ["features", "raw"].includes(r.decision) && /^(large|split_tail)@/.test(r.remoteModel)), JSON.stringify(remote[0]));
    assert.ok(remote.every((r) => r.timings.roundTripMs === 100 && r.timings.totalMs === 100), "timed on the test's clock");
    assert.ok(count(remote, "features") > 0, "features first");

    // 3. Thirty more at t=2000; the ones sent are held (at the gate or in the browser), the Worker
    // is stopped, then they go on.
    g.hold();
    await page.evaluate(() => { window.now = 2000; window.push(40, 70); });
    await until(async () => (await snapshot()).waiting === 0, "the device to take 30 more");
    s = await snapshot();
    const sentAfter = 30 - byIndex(s.results, 40, 70).length;
    await until(() => g.held() >= 1, "a request at the gate");
    assert.equal((await snapshot()).results.length, 40 + 30 - sentAfter, "nothing answered while the gate holds");
    await worker.stop();
    await page.evaluate(() => { window.now = 2100; });
    g.release();
    await until(() => settled(70), "the fallbacks");
    s = await snapshot();
    const stopped = byIndex(s.results, 40, 70).filter((r) => r.decision !== "exit");
    assert.ok(sentAfter >= failuresToStop, `${sentAfter} sent while the Worker stopped (${failuresToStop} failures stop the network)`);
    assert.equal(stopped.length, sentAfter);
    assert.ok(stopped.every((r) => r.decision === "fallback" && r.reason && r.label !== null), JSON.stringify(stopped[0]));

    // 4. Thirty more at t=3000: the network is out, the device finishes the unsure ones; the one
    // in `exploreEvery` that still tries the network falls back.
    await page.evaluate(() => { window.now = 3000; window.push(70, 100); });
    await until(() => settled(100), "the last 30 samples");
    s = await snapshot();
    const after = byIndex(s.results, 70, 100);
    assert.equal(count(after, "features") + count(after, "raw"), 0, "no answer from a stopped Worker");
    assert.ok(count(after, "device") > 0, "the device finishes the unsure samples");
    assert.ok(count(after, "fallback") <= Math.ceil(30 / exploreEvery), `${count(after, "fallback")} probes of the network`);

    // Every pushed sample exactly once; the counts add up.
    assert.deepEqual(s.failures, []);
    assert.deepEqual(s.results.map((r) => r.index).sort((a, b) => a - b), [...Array(100).keys()]);
    const stats = await page.evaluate(() => window.stream.stats());
    assert.equal(stats.arrived, 100);
    assert.equal(stats.skipped, 10);
    assert.equal(stats.processed, 90);
    for (const d of ["exit", "features", "raw", "device", "fallback"]) {
      const key = { exit: "exited" }[d] ?? d;
      assert.equal(stats[key], count(s.results, d), `${d} counted in the stats`);
    }
    console.log(`HiStream on the test's clock, through a gate, Worker stopped mid-stream: 100 arrived, 10 skipped (waited 1000 ms), ` +
      `${stats.exited} exited, ${stats.features} features + ${stats.raw} raw answered by the Worker (round trip 100 ms on the test's clock), ` +
      `${stats.fallback} fell back after the stop, ${stats.device} finished on the device`);
  } catch (e) {
    e.message += `\npage log:\n${logs.join("\n")}`;
    throw e;
  } finally {
    await page.close();
    await g.close();
  }
}
