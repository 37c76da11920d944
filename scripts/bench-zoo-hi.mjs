// `make bench-zoo-hi`: Hierarchical Inference at real size (224x224 RGB) in headless Chromium against
// the real Worker (wrangler dev): the device model alone, the large model on the device, always
// offloading (raw pixels, and the manifest's compressed codec), and HI offloading a fixed share of
// samples (10, 20, 30%) raw and compressed, on emulated devices (CPU throttling) x networks (the
// browser's own emulation), through the npm package on the page's main thread.
//
// Design, fixed before the run: the set's weights are random, so there is no accuracy to trade;
// HI runs max_prob with thresholds chosen in setup so that each fraction of the bench samples
// offloads (`--fractions`). Samples: `--n` seeded 224x224 views of the three committed photos.
// In each cell (device x network), `--rounds` rounds; each round runs every method on the same
// `--block` samples, methods in a seeded random order; rounds x block = n by default, so every
// cell sees every sample once per method and HI offloads exactly its fraction. Per method: mean ms
// per sample (95% bootstrap interval) and median (95% interval, order statistics), offload share
// and bytes per offload; against large-on-device, the ratio of mean times with a 95% bootstrap
// interval over samples (paired: both ran the same samples).
// Cold-start bytes: what each way of answering downloads before its first answer. Writes the
// markdown tables to --out and the same numbers as data beside it (--out with .json for .md).
// Usage: node scripts/bench-zoo-hi.mjs [--models models/zoo-rgb] [--devices 1,4] [--networks loopback,4g,3g]
//   [--rounds 10] [--block 3] [--n 30] [--fractions 0.1,0.2,0.3] [--codec manifest|webp:80] [--seed 20261207]
//   [--out bench/zoo-hi.md]
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { basename, join, relative, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { emulateDevice, emulateNetwork, NETWORK_NAMES } from "../tests/support/conditions.mjs";
import { startWorkerForSet } from "../tests/support/wrangler.mjs";
import { bootstrapInterval, mean, medianInterval, quantile, sampleSchedule, seededRandom, shuffled } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";
import { renderZooHi } from "./bench-report.mjs";

const repo = resolve(import.meta.dirname, "..");
const { values } = readArgs({
  usage: "node scripts/bench-zoo-hi.mjs [--models DIR] [--devices 1,4] [--networks LIST] [--rounds N] [--block N] " +
    "[--n N] [--fractions LIST] [--codec manifest|CODEC] [--seed N] [--out FILE]",
  flags: { models: join(repo, "models/zoo-rgb"), devices: "1,4", networks: "loopback,4g,3g", rounds: "10", block: "3",
    n: "30", fractions: "0.1,0.2,0.3", codec: "manifest", seed: "20261207", out: join(repo, "bench/zoo-hi.md") },
});
const setDir = resolve(String(values.models));
const devices = String(values.devices).split(",").map(Number);
const networks = String(values.networks).split(",");
const rounds = Number(values.rounds);
const blockSize = Number(values.block);
const n = Number(values.n);
const fractions = String(values.fractions).split(",").map(Number);
const out = resolve(String(values.out));
if (!setDir.startsWith(`${repo}/`)) throw new Error("--models must be inside the repository (the page is served from it)");
if (!(rounds >= 3) || !(blockSize >= 1) || !(n >= blockSize) || fractions.some((f) => !(f > 0 && f < 1))) {
  throw new Error("--rounds >= 3, --block >= 1, --n >= --block, --fractions in (0, 1)");
}
const manifest = JSON.parse(readFileSync(join(setDir, "manifest.json"), "utf8"));
const codec = values.codec === "manifest" ? manifest.offload_codec ?? "webp:80" : String(values.codec);
const median = (v) => quantile(v, 0.5);

const worker = await startWorkerForSet(setDir);
const server = await serveStatic(repo, 0, { cacheControl: "max-age=3600", compress: true });
const browser = await launchChromium();
const cells = [];
let info;
try {
  const page = await browser.newPage();
  const cdp = await page.context().newCDPSession(page);
  await page.goto(`${server.url}/bench/zoo-hi.html`);
  const photoUrls = ["chelsea", "coffee", "astronaut"].map((p) => `/cli/tests/fixtures/photos/${p}.jpg`);
  info = await page.evaluate((a) => window.setup(a), {
    modelsUrl: `/${relative(repo, setDir)}`, endpoint: worker.url, modelSet: manifest.name, photoUrls, n, fractions, codec,
  });
  console.log(`thresholds (offloading ${JSON.stringify(info.offloadedAtThreshold)} of ${info.samples}): ${JSON.stringify(info.thresholds)}`);
  const random = seededRandom(Number(values.seed));
  const take = sampleSchedule(n, random);
  for (const rate of devices) {
    await emulateDevice(cdp, rate);
    for (const network of networks) {
      await emulateNetwork(cdp, network);
      // Every method runs the same samples in the same order: record i of each is sample i.
      const recs = Object.fromEntries(info.methods.map((m) => [m, []]));
      for (let r = 0; r < rounds; r++) {
        const indices = take(blockSize);
        for (const m of shuffled(info.methods, random)) recs[m].push(...(await page.evaluate(([m, ix]) => window.block(m, ix), [m, indices])));
      }
      const ref = recs["large-on-device"].map((g) => g.ms);
      const ratio = (a, b) => mean(a) / mean(b);
      const methods = {};
      for (const m of info.methods) {
        const ms = recs[m].map((g) => g.ms);
        methods[m] = {
          median: median(ms), ci: medianInterval(ms), mean: mean(ms), meanCi: bootstrapInterval([ms], mean),
          offload: recs[m].filter((g) => g.offloaded).length / recs[m].length,
          bytes: recs[m].reduce((s, g) => s + g.bytes, 0) / Math.max(1, recs[m].filter((g) => g.offloaded).length),
          ratio: ratio(ms, ref), interval: bootstrapInterval([ms, ref], ratio),
        };
      }
      cells.push({ rate, network, methods, samples: rounds * blockSize });
      console.log(`${rate}x ${network}: ${info.methods.map((m) => `${m} ${methods[m].median.toFixed(0)} ms`).join(", ")}`);
    }
  }
  await page.close();
} finally {
  await browser.close();
  await server.close();
  await worker.stop();
}

// Cold start: what each way of answering downloads before its first answer (gzip, as a static
// host sends it): the client's wasm and JS glue, the manifest, and the model it runs on the device.
const gz = (file) => gzipSync(readFileSync(file), { level: 9 }).length;
const pkg = join(repo, "wasm-client/pkg");
const client = gz(join(pkg, "hiedge_bg.wasm")) + gz(join(pkg, "hiedge.js"));
const man = gz(join(setDir, "manifest.json"));
const modelBytes = (name) => gz(join(setDir, manifest.models[name].file));
const cold = [
  ["tiny-only, always-offload and HI", client + man + modelBytes("tiny"), modelBytes("tiny")],
  ["large-on-device", client + man + modelBytes("large"), modelBytes("large")],
];

const cpu = cpus();
const describe = (name) => manifest.models[name].architecture ?? `${basename(manifest.models[name].source?.file ?? manifest.models[name].file)}`;
// Everything the report needs, kept as data: `make bench` embeds it in bench/results.json and
// scripts/bench-report.mjs draws the real-size rows of the grid from it.
const record = {
  command: `node ${process.argv.slice(1).map((a) => (a.startsWith(`${repo}/`) ? relative(repo, a) : a)).join(" ")}`,
  date: new Date().toISOString(),
  machine: `${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} logical cores (shared)`,
  chromium: `${info.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? "Chromium"} headless`,
  set: relative(repo, setDir),
  input: manifest.input?.shape ?? null,
  models: { tiny: { params: manifest.models.tiny.params ?? null, what: describe("tiny") }, large: { params: manifest.models.large.params ?? null, what: describe("large") } },
  codec, fractions, thresholds: info.thresholds, samples: info.samples,
  plan: { devices, networks, rounds, block: blockSize, n, seed: Number(values.seed), networkNames: Object.fromEntries(networks.map((x) => [x, NETWORK_NAMES[x] ?? x])) },
  cells, cold: cold.map(([what, total, model]) => ({ what, total, model })), clientBytes: client, manifestBytes: man,
};
const json = out.replace(/\.md$/, "") + ".json";
writeFileSync(json, JSON.stringify(record) + "\n");
const md = renderZooHi(record);
writeFileSync(out, md);
console.log(md);
console.log(`wrote ${out}, ${json}`);
