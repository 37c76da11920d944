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
// markdown table to --out.
// Usage: node scripts/bench-zoo-hi.mjs [--models models/zoo-rgb] [--devices 1,4] [--networks loopback,4g,3g]
//   [--rounds 10] [--block 3] [--n 30] [--fractions 0.1,0.2,0.3] [--codec manifest|webp:80] [--seed 20261207]
//   [--out bench/zoo-hi.md]
import { readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { basename, join, relative, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { DEVICES, emulateDevice, emulateNetwork, NETWORK_NAMES } from "../tests/support/conditions.mjs";
import { startWorkerForSet } from "../tests/support/wrangler.mjs";
import { bootstrapInterval, mean, medianInterval, quantile, seededRandom, shuffled } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";

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
  const order = shuffled([...Array(n).keys()], random);
  let next = 0;
  const take = (k) => Array.from({ length: k }, () => order[next++ % n]);
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

const f = (x, d = 0) => x.toFixed(d);
const cpu = cpus();
const describe = (name) => manifest.models[name].architecture ?? `${basename(manifest.models[name].source?.file ?? manifest.models[name].file)}`;
let md = `# HI at real size: 224x224 RGB, device x network (\`make bench-zoo-hi\`)\n\n`;
md += `Machine: ${cpu[0]?.model ?? "unknown CPU"}, ${cpu.length} logical cores (shared), `;
md += `${info.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? "Chromium"} headless, the Worker under \`wrangler dev\` (workerd) on loopback. `;
md += `Set: \`${relative(repo, setDir)}\` (${manifest.models.tiny.params ?? "?"} device-model weights: ${describe("tiny")}; `;
md += `${manifest.models.large.params ?? "?"} large-model weights: ${describe("large")}). `;
md += `**Random weights: there is no accuracy to claim**, so HI is run at fixed offload fractions chosen before the run `;
md += `(max_prob thresholds ${Object.entries(info.thresholds).map(([k, t]) => `${Math.round(100 * Number(k))}%: ${t.toFixed(4)}`).join(", ")}, `;
md += `fitted on the ${info.samples} bench samples: seeded 224x224 views of the three committed photos). `;
md += `Compressed offloads use \`${codec}\`, encoded by Chromium (\`OffscreenCanvas.convertToBlob\`).\n\n`;
md += `Method, fixed before the run: in each cell, ${rounds} rounds; each runs every method on the same ${blockSize} samples, `;
md += `methods in a seeded random order (${rounds * blockSize} samples per method and cell${rounds * blockSize === n ? ": every bench sample once, so HI offloads exactly its fraction" : ""}), `;
md += `through the npm package on the page's main thread. ms: time from the call to the `;
md += `answer (pixels in; the device model, the decision, the offload's encoding and round trip): per sample, the mean `;
md += `with a 95% bootstrap interval (what HI lowers on average) and the median with a 95% interval (order statistics). `;
md += `vs large-on-device: ratio of mean times, 95% bootstrap interval over samples, paired (below 1 is faster). `;
md += `Devices: DevTools CPU throttling; networks: DevTools network emulation (${networks.map((n) => NETWORK_NAMES[n] ?? n).join("; ")}).\n\n`;
for (const c of cells) {
  md += `### ${DEVICES[c.rate] ?? `${c.rate}x`}, ${NETWORK_NAMES[c.network] ?? c.network} (${c.samples} samples per method)\n\n`;
  md += `| method | mean ms (95% CI) | median ms (95% CI) | offloaded | bytes per offload | vs large-on-device, mean (95% CI) |\n`;
  md += `|---|---:|---:|---:|---:|---:|\n`;
  for (const [m, r] of Object.entries(c.methods)) {
    md += `| ${m} | ${f(r.mean)} [${f(r.meanCi[0])}, ${f(r.meanCi[1])}] | ${f(r.median)} [${f(r.ci[0])}, ${f(r.ci[1])}] | `;
    md += `${f(100 * r.offload)}% | ${r.offload ? f(r.bytes) : "-"} | `;
    md += `${r.ratio.toFixed(2)} [${r.interval[0].toFixed(2)}, ${r.interval[1].toFixed(2)}] |\n`;
  }
  md += `\n`;
}
md += `### Cold start: bytes downloaded before the first answer (gzip)\n\n| way of answering | total | of which the model |\n|---|---:|---:|\n`;
for (const [what, total, model] of cold) md += `| ${what} | ${total.toLocaleString("en")} | ${model.toLocaleString("en")} |\n`;
md += `\nThe client (wasm + JS) is ${client.toLocaleString("en")} bytes gzip, the manifest ${man.toLocaleString("en")}.\n`;
writeFileSync(out, md);
console.log(md);
console.log(`wrote ${out}`);
