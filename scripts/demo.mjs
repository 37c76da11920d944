// `make demo`: the Worker under `wrangler dev` and the built page, both on 127.0.0.1; prints the URL
// and runs until Ctrl-C, then stops both. Ports: HIEDGE_WORKER_PORT (8787), HIEDGE_PAGE_PORT (5173).
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { serveStatic } from "../tests/support/browser.mjs";
import { startWorker } from "../tests/support/wrangler.mjs";
import { readArgs } from "./args.mjs";

readArgs({ usage: "node scripts/demo.mjs (ports from HIEDGE_WORKER_PORT, default 8787, and HIEDGE_PAGE_PORT, default 5173)" });

const repo = resolve(import.meta.dirname, "..");
const dist = join(repo, "www/dist");
const workerPort = Number(process.env.HIEDGE_WORKER_PORT ?? 8787);
const pagePort = Number(process.env.HIEDGE_PAGE_PORT ?? 5173);

console.log(`starting the Worker (wrangler dev, workerd) on 127.0.0.1:${workerPort}...`);
const worker = await startWorker({ port: workerPort });
writeFileSync(join(dist, "config.json"), JSON.stringify({ workerUrl: worker.url }) + "\n");
const page = await serveStatic(dist, pagePort);
console.log(`\nWorker: ${worker.url}  (try ${worker.url}/v1/health)`);
console.log(`hiedge demo: ${page.url}/\n`);
console.log("Ctrl-C stops the page and the Worker.");
const stop = async () => {
  await page.close();
  await worker.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
