// The browser package against hostile servers, in headless Chromium: stub servers started here
// (their ports chosen by the process that binds them) answer with wrong, huge, slow or redirected
// responses, and hold the wasm download until the test releases it, so that the order of events is
// the test's, never a race. Each case is named; the run ends with "N passed, M failed".
//
//   node tests/hostile/client.test.mjs        (make test-hostile; needs `make wasm`)
//
// Cases, by the hardening issue's numbers:
//    9 every answer is checked the same strict way on the main thread, in the Web Worker and while
//      loading (a label past the classes, a probability of 1e9, a redirect: never accepted)
//   10 no allocation sized by Content-Length; manifest and model fetches are capped and time out;
//      a failed create leaves the module usable
//   11 offloads refuse redirects; the token goes to the endpoint's origin only
//   13 an image is size-checked from its dimensions before its pixels are read
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { existsSync, readFileSync } from "node:fs";
import { extname, join, normalize, resolve } from "node:path";
import { launchChromium, listenLocal } from "../support/browser.mjs";
import { check, finish } from "../support/cases.mjs";

const repo = resolve(import.meta.dirname, "../..");
const pkg = join(repo, "wasm-client/pkg");
if (!existsSync(join(pkg, "index.js"))) throw new Error("wasm-client/pkg is missing: run `make wasm`");
const FM = join(repo, "models/fashion-mnist");
const manifestText = readFileSync(join(FM, "manifest.json"), "utf8");
const CLASSES = JSON.parse(manifestText).classes.length;

// ---------------------------------------------------------------------------------------------
// The stub servers.

const PAGE = `<!doctype html><meta charset="utf-8"><title>hiedge hostile</title><script type="module">
import init, { HiClient } from "/pkg/index.js";
window.hiedge = { init, HiClient };
</script>`;

const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".ts": "text/plain" };
const probs = (label) => Array.from({ length: CLASSES }, (_, i) => (i === label ? 1 : 0));
/** What a hostile Worker answers to POST /w/<mode>/v1/classify. */
const ANSWERS = {
  good: { label: 3, probs: probs(3), model: "large@stub", infer_ms: null },
  label11: { label: 11, probs: Array(CLASSES).fill(1 / CLASSES), model: "large@stub", infer_ms: null },
  huge: { label: 0, probs: [1e9], model: "large@stub", infer_ms: null },
  notargmax: { label: 0, probs: probs(5), model: "large@stub", infer_ms: null },
  extra: { ...{ label: 3, probs: probs(3), model: "large@stub", infer_ms: null }, script: "<img onerror=alert(1)>" },
};

/**
 * One origin: the page, the package (its device wasm held while `hold.wasm` is set, until `release()`),
 * the fashion-mnist files, hostile classify routes, and manifests that are too big or never come.
 * `seen` records every classify request's path and Authorization header.
 */
async function stubServer() {
  const seen = [];
  const held = [];
  const hold = { wasm: false };
  const cors = { "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Cross-Origin-Resource-Policy": "cross-origin" };
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const send = (status, body, headers = {}) => {
      res.writeHead(status, { ...cors, "Cache-Control": "no-store", ...headers });
      res.end(body);
    };
    if (req.method === "OPTIONS") return send(204, "", { "Access-Control-Allow-Methods": "POST, GET, OPTIONS" });
    if (path === "/page.html") return send(200, PAGE, { "Content-Type": "text/html" });
    if (path.startsWith("/pkg/")) {
      const file = normalize(join(pkg, path.slice(5)));
      if (!file.startsWith(pkg) || !existsSync(file)) return send(404, "no");
      const body = readFileSync(file);
      const answer = () => send(200, body, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
      if (path.endsWith("/hiedge_bg.wasm") && hold.wasm) return held.push(answer);
      return answer();
    }
    if (path === "/set/manifest.json") return send(200, manifestText, { "Content-Type": "application/json" });
    if (path === "/set/tiny.nnef.tar") return send(200, readFileSync(join(FM, "tiny.nnef.tar")));
    if (path === "/m/huge-manifest.json") {
      // Announces 2 GB and sends a few bytes, then nothing: a client that sized a buffer by the
      // header, or waited for the rest, would not come back.
      res.writeHead(200, { ...cors, "Content-Type": "application/json", "Content-Length": "2000000000" });
      res.write("{");
      return;
    }
    if (path === "/m/endless-manifest.json") {
      // No length announced, and more than any manifest: refused once past the cap.
      res.writeHead(200, { ...cors, "Content-Type": "application/json" });
      res.write("[" + "0,".repeat(700_000));
      return;
    }
    if (path === "/m/silent-manifest.json") return; // never answers
    const m = /^\/w\/([a-z0-9]+)\/v1\/classify$/.exec(path);
    if (m && req.method === "POST") {
      seen.push({ mode: m[1], authorization: req.headers.authorization ?? null });
      req.resume();
      if (m[1] === "redirect") return send(307, "", { Location: "/w/good/v1/classify" });
      if (m[1] === "bigbody") {
        res.writeHead(200, { ...cors, "Content-Type": "application/json", "Content-Length": "5000000000" });
        res.write("{");
        return;
      }
      const answer = ANSWERS[m[1]];
      return answer ? send(200, JSON.stringify(answer), { "Content-Type": "application/json" }) : send(404, "no");
    }
    send(404, "not found");
  });
  return {
    url: await listenLocal(server), seen, hold,
    release: () => held.splice(0).forEach((answer) => answer()),
    close: () => { server.closeAllConnections(); return new Promise((done) => server.close(done)); },
  };
}

// ---------------------------------------------------------------------------------------------

const stub = await stubServer();
const other = await stubServer(); // another origin, for the token
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${stub.url}/page.html`);
  await page.waitForFunction(() => window.hiedge !== undefined, null, { timeout: 60_000 });
  await page.evaluate(() => window.hiedge.init());

  /** Classifies one sample with `always_offload` against `/w/<mode>` on the main thread or in a Web Worker. */
  const offloadOnce = (mode, worker) => page.evaluate(async ({ mode, worker }) => {
    const { HiClient } = window.hiedge;
    const client = await HiClient.create({ model: "/set/tiny.nnef.tar", manifest: "/set/manifest.json",
      endpoint: `/w/${mode}`, policy: "always_offload", worker, cache: false });
    try {
      const r = await client.classify(new Uint8Array(784).fill(90));
      return { answeredBy: r.answeredBy, decision: r.decision, label: r.label, fallbackReason: r.fallbackReason, runsIn: client.runsIn };
    } finally {
      client.close();
    }
  }, { mode, worker });

  for (const worker of [false, true]) {
    const where = worker ? "in the Web Worker" : "on the main thread";
    await check(`9 ${where}: hostile answers fall back to the device, each with its reason`, async () => {
      const want = { label11: /bad response.*(argmax|probabilities)/, huge: /bad response.*probabilities/,
        notargmax: /bad response.*argmax/, extra: /bad response.*unknown field/, redirect: /network error/ };
      for (const [mode, reason] of Object.entries(want)) {
        const r = await offloadOnce(mode, worker);
        assert.equal(r.runsIn, worker ? "worker" : "main");
        assert.equal(r.answeredBy, "device", `${mode}: ${JSON.stringify(r)}`);
        assert.equal(r.decision, "fallback", `${mode}: ${JSON.stringify(r)}`);
        assert.match(r.fallbackReason ?? "", reason, `${mode}: ${JSON.stringify(r)}`);
      }
      const good = await offloadOnce("good", worker);
      assert.deepEqual([good.answeredBy, good.label], ["worker", 3], JSON.stringify(good));
    });
  }

  await check("11 a redirected offload is refused: the redirect's target is never asked", async () => {
    const before = stub.seen.filter((s) => s.mode === "good").length;
    await offloadOnce("redirect", false);
    await offloadOnce("redirect", true);
    assert.equal(stub.seen.filter((s) => s.mode === "good").length, before, "the redirect was followed");
  });

  await check("10 a huge answer (Content-Length 5 GB) falls back at once, nothing sized by it", async () => {
    for (const worker of [false, true]) {
      const r = await offloadOnce("bigbody", worker);
      assert.equal(r.decision, "fallback", JSON.stringify(r));
      assert.match(r.fallbackReason, /more than the 1048576 bytes/, JSON.stringify(r));
    }
  });

  await check("9 while loading: the same hostile answers are refused before the wasm has loaded", async () => {
    // A fresh page whose wasm download the stub holds: the early route is the only one there is.
    stub.hold.wasm = true;
    const early = await browser.newPage();
    early.on("pageerror", (e) => errors.push(String(e)));
    await early.goto(`${stub.url}/page.html`);
    await early.waitForFunction(() => window.hiedge !== undefined, null, { timeout: 60_000 });
    const out = await early.evaluate(async (manifest) => {
      const { HiClient } = window.hiedge;
      const outcomes = {};
      for (const mode of ["label11", "huge", "notargmax", "extra", "redirect", "good"]) {
        const client = await HiClient.create({ model: "/set/tiny.nnef.tar", manifest, endpoint: `/w/${mode}`,
          answerWhileLoading: true, cache: false });
        outcomes[mode] = await client.classify(new Uint8Array(784).fill(90)).then(
          (r) => ({ answered: r.label, loaded: client.loaded, why: r.why }),
          (e) => ({ code: e.code, message: e.message, loaded: client.loaded }));
      }
      // The manifest given by URL: its classes are fetched to check the answers against.
      for (const mode of ["label11", "good"]) {
        const client = await HiClient.create({ model: "/set/tiny.nnef.tar", manifest: "/set/manifest.json",
          endpoint: `/w/${mode}`, answerWhileLoading: true, cache: false });
        outcomes[`${mode} (manifest URL)`] = await client.classify(new Uint8Array(784).fill(90)).then(
          (r) => ({ answered: r.label, loaded: client.loaded, why: r.why }),
          (e) => ({ code: e.code, message: e.message, loaded: client.loaded }));
      }
      return outcomes;
    }, manifestText);
    stub.hold.wasm = false;
    stub.release();
    await early.close();
    for (const mode of ["label11", "huge", "notargmax", "extra"]) {
      assert.equal(out[mode].code, "NotReady", `${mode}: ${JSON.stringify(out[mode])}`);
      assert.match(out[mode].message, /bad response/, `${mode}: ${JSON.stringify(out[mode])}`);
      assert.equal(out[mode].loaded, false);
    }
    assert.equal(out.redirect.code, "NotReady", JSON.stringify(out.redirect));
    assert.deepEqual(out.good, { answered: 3, loaded: false, why: "loading" });
    assert.deepEqual(out["good (manifest URL)"], { answered: 3, loaded: false, why: "loading" });
    assert.match(out["label11 (manifest URL)"].message ?? "", /bad response/, JSON.stringify(out["label11 (manifest URL)"]));
  });

  /** `HiClient.create` with this manifest URL; resolves to how it ended. */
  const createWith = (manifest, extra = {}) => page.evaluate(async ({ manifest, extra }) => {
    const { HiClient } = window.hiedge;
    const started = performance.now();
    try {
      const c = await HiClient.create({ model: "/set/tiny.nnef.tar", manifest, endpoint: null, worker: false, cache: false, ...extra });
      const r = await c.classify(new Uint8Array(784).fill(90));
      c.close();
      return { ok: true, label: r.label };
    } catch (e) {
      return { ok: false, code: e.code, message: e.message, ms: performance.now() - started };
    }
  }, { manifest, extra });

  await check("10 a manifest announcing 2 GB is refused at once; one with no length past 1 MiB too", async () => {
    const huge = await createWith("/m/huge-manifest.json");
    assert.deepEqual([huge.ok, huge.code], [false, "FetchFailed"], JSON.stringify(huge));
    assert.match(huge.message, /more than the 1048576 bytes/);
    const endless = await createWith("/m/endless-manifest.json");
    assert.deepEqual([endless.ok, endless.code], [false, "FetchFailed"], JSON.stringify(endless));
    assert.match(endless.message, /more than the 1048576 bytes/);
  });

  await check("10 a manifest that never comes times out (loadTimeoutMs)", async () => {
    const silent = await createWith("/m/silent-manifest.json", { loadTimeoutMs: 300 });
    assert.deepEqual([silent.ok, silent.code], [false, "FetchFailed"], JSON.stringify(silent));
    assert.match(silent.message, /no answer in 300 ms/);
  });

  await check("10 after failed creates the module is usable: the next create classifies", async () => {
    const good = await createWith("/set/manifest.json");
    assert.equal(good.ok, true, JSON.stringify(good));
  });

  await check("11 the token goes to the endpoint's origin only: setEndpoint to another origin drops it", async () => {
    for (const worker of [false, true]) {
      const n = [stub.seen.length, other.seen.length];
      await page.evaluate(async ({ otherUrl, worker, origin }) => {
        const { HiClient } = window.hiedge;
        const c = await HiClient.create({ model: "/set/tiny.nnef.tar", manifest: "/set/manifest.json",
          endpoint: `${origin}/w/good`, token: "s3cret", policy: "always_offload", worker, cache: false });
        await c.classify(new Uint8Array(784).fill(90));
        await c.setEndpoint(`${origin}/w/good/`); // the same origin: the token stays
        await c.classify(new Uint8Array(784).fill(90));
        await c.setEndpoint(`${otherUrl}/w/good`);
        await c.classify(new Uint8Array(784).fill(90));
        c.close();
      }, { otherUrl: other.url, worker, origin: stub.url });
      assert.deepEqual(stub.seen.slice(n[0]).map((s) => s.authorization), ["Bearer s3cret", "Bearer s3cret"]);
      assert.deepEqual(other.seen.slice(n[1]).map((s) => s.authorization), [null], "the token went to another origin");
    }
  });

  await check("13 an image is size-checked from its dimensions before its pixels are read", async () => {
    const out = await page.evaluate(async () => {
      const { HiClient } = window.hiedge;
      // An SVG image of 20000 x 20000 CSS pixels: its size is known without rasterising it.
      const img = new Image();
      img.src = "data:image/svg+xml," + encodeURIComponent(
        '<svg xmlns="http://www.w3.org/2000/svg" width="20000" height="20000"><rect width="1" height="1"/></svg>');
      await img.decode();
      const outcome = {};
      for (const worker of [false, true]) {
        const c = await HiClient.create({ model: "/set/tiny.nnef.tar", manifest: "/set/manifest.json", endpoint: null, worker, cache: false });
        outcome[worker ? "worker" : "main"] = await c.classify(img).then(() => "classified", (e) => `${e.code}: ${e.message}`);
        c.close();
      }
      return outcome;
    });
    for (const where of ["main", "worker"]) {
      assert.match(out[where], /^InvalidInput: .*20000x20000 image is empty or larger than 67108864 pixels/, `${where}: ${out[where]}`);
    }
  });

  await check("no uncaught page errors", () => assert.deepEqual(errors, []));
} finally {
  await browser.close();
  await stub.close();
  await other.close();
}

finish("hostile client");
