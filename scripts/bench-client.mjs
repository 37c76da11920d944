// `make bench-client`: the tiny model in the `hiedge` package (wasm-client/pkg) in headless
// Chromium: per-sample timings over 1,000 fixture images, and the package's size. Writes
// bench/client.md. Usage: node scripts/bench-client.mjs [n]
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { gzipSync, brotliCompressSync, constants } from "node:zlib";
import { launchChromium, serveStatic } from "../tests/support/browser.mjs";
import { summarise } from "../bench/stats.mjs";
import { readArgs } from "./args.mjs";

const repo = resolve(import.meta.dirname, "..");
const { positionals } = readArgs({ usage: "node scripts/bench-client.mjs [N]", positionals: [0, 1] });
const n = Number(positionals[0] ?? 1000);
if (!Number.isInteger(n) || n < 1) throw new Error(`N must be a whole number of samples, not ${positionals[0]}`);
const server = await serveStatic(repo);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`${server.url}/bench/client-bench.html?n=${n}`);
  await page.waitForFunction(() => window.__bench !== undefined, null, { timeout: 300_000 });
  const out = await page.evaluate(() => window.__bench);
  if (out.error) throw new Error(out.error);
  const stat = (key) => summarise(out.rows.map((r) => r[key]));
  const wasm = readFileSync(join(repo, "wasm-client/pkg/hiedge_bg.wasm"));
  const gz = gzipSync(wasm, { level: 9 }).length;
  const br = brotliCompressSync(wasm, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
  const model = readFileSync(join(repo, "models/fashion-mnist/tiny.nnef.tar")).length;
  let md = `# Client benchmark (\`make bench-client\`)\n\n`;
  md += `The \`hiedge\` npm package (wasm-client/pkg: cargo profile \`client\`, simd128, wasm-opt -Oz) in headless Debian Chromium `;
  md += `(${out.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? "Chromium"}), cross-origin isolated: ${out.isolated} `;
  md += `(5 us timer resolution when true). \`classifyLocal\` on ${n} Fashion-MNIST test images (the committed fixture) `;
  md += `after 50 warm-up calls, one at a time, on this shared 2-core machine.\n\n`;
  md += `| step | median ms | p95 ms | mean ms |\n|---|---:|---:|---:|\n`;
  for (const [name, key] of [["preprocess", "preprocessMs"], ["tiny model (localMs)", "localMs"], ["decision", "decisionMs"], ["whole call", "totalMs"]]) {
    const s = stat(key);
    md += `| ${name} | ${s.median.toFixed(3)} | ${s.p95.toFixed(3)} | ${s.mean.toFixed(3)} |\n`;
  }
  md += `\n| artifact | bytes |\n|---|---:|\n| hiedge_bg.wasm raw | ${wasm.length} |\n| hiedge_bg.wasm gzip level 9 (Node zlib; GNU \`gzip -9\` differs by under 1%) | ${gz} |\n`;
  md += `| hiedge_bg.wasm brotli 11 | ${br} |\n| tiny.nnef.tar (loaded separately) | ${model} |\n`;
  console.log(md);
  writeFileSync(join(repo, "bench/client.md"), md);
  console.log("wrote bench/client.md");
} finally {
  await browser.close();
  await server.close();
}
