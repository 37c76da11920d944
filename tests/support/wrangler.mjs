// The one way hiedge starts the Worker: `wrangler dev` (workerd) with the Worker built by
// `make worker`, on a loopback port wrangler itself binds (`--port 0`, read back from its
// "Ready on" line: no port is chosen by one process and bound by another), offline (the only place the offline settings are written),
// in its own process group so that stop() ends wrangler and workerd together.
//
// Imported by the JS tests, the demo and the benchmark (`startWorker`); run as a program by the
// Rust tests and `hiedge bench-worker` (cli/src/wrangler.rs):
//   node tests/support/wrangler.mjs [--port N] [--var KEY:VALUE]... [--assets DIR]
// prints one JSON line `{"url": "http://127.0.0.1:PORT"}` once /v1/health answers, copies
// wrangler's output to stderr, and stops the Worker on SIGTERM/SIGINT or when stdin closes.
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { indexModelSets } from "../../edge-worker/index-models.mjs";
import { readArgs } from "../../scripts/args.mjs";

const repo = resolve(import.meta.dirname, "../..");

export const OFFLINE_ENV = {
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_HIDE_BANNER: "true",
};

/**
 * What wrangler dev's own proxy answers (503, plain text) when its connection to the Worker is lost
 * under a request with a body; it sends GETs again itself, never POSTs. The Worker's answers are JSON
 * and a deployed Worker has no such proxy: a pooled connection closed by its 5 s keep-alive timeout
 * as a request is sent on it (cloudflare/workers-sdk#14641). Tests send such a request again where
 * its body can be (cli/src/wrangler.rs has the same rule and what was seen).
 */
export const DEV_PROXY_DROPPED =
  "Your worker restarted mid-request. Please try sending the request again. Only GET or HEAD requests are retried automatically.";

/** Whether a response (status, text) is {@link DEV_PROXY_DROPPED}: not the Worker's answer. */
export const droppedByDevProxy = (status, text) => status === 503 && text.trim() === DEV_PROXY_DROPPED;

/**
 * The Worker's per-client rate limit in tests, the demo and benchmarks: all their requests come from
 * one client (this machine), so wrangler.toml's limit, meant for the public internet, would turn a
 * calibration run or a benchmark into 429s. tests/hostile sets a small one to test the limit itself.
 */
export const LOCAL_RATE_LIMIT = 1_000_000;

/**
 * wrangler.toml as the Worker is started here: the same file with the rate limit set to `limit`,
 * the paths made absolute, and no `[build]` step (the assets are indexed by `startWorker`). Written
 * into `dir`; returns its path.
 */
export function localConfig(dir, limit) {
  let text = readFileSync(join(repo, "wrangler.toml"), "utf8");
  const limitRule = /simple = \{ limit = \d+, period = (\d+) \}/;
  if (!limitRule.test(text)) throw new Error("wrangler.toml has no [[ratelimits]] simple limit to set");
  text = text
    .replace(/^main = "([^"]+)"/m, (_, main) => `main = ${JSON.stringify(join(repo, main))}`)
    .replace(/^directory = "([^"]+)"/m, (_, d) => `directory = ${JSON.stringify(join(repo, d))}`)
    .replace(/^\[build\][^[]*/m, "")
    .replace(limitRule, `simple = { limit = ${limit}, period = $1 }`);
  const path = join(dir, "wrangler.toml");
  writeFileSync(path, text);
  return path;
}

/**
 * The Worker serving one model set, `setDir` (its ONNX sources left out, as models/.assetsignore
 * does), as its default set: from a copy in a temporary assets directory, so the Worker's index is
 * never written into the set. `stop()` also removes the copy.
 * @param {string} setDir
 * @param {{ vars?: Record<string, string>, onLog?: (text: string) => void, rateLimit?: number }} [options]
 * @returns {Promise<{ url: string, name: string, stop: () => Promise<void>, log: () => string }>}
 */
export async function startWorkerForSet(setDir, options = {}) {
  const name = JSON.parse(readFileSync(join(setDir, "manifest.json"), "utf8")).name;
  const assets = mkdtempSync(join(tmpdir(), "hiedge-set-"));
  const remove = () => rmSync(assets, { recursive: true, force: true });
  try {
    cpSync(setDir, join(assets, name), { recursive: true, filter: (p) => !p.endsWith(".onnx") });
    const worker = await startWorker({ ...options, assets, vars: { DEFAULT_MODEL_SET: name, ...options.vars } });
    return { ...worker, name, stop: async () => { await worker.stop(); remove(); } };
  } catch (e) {
    remove();
    throw e;
  }
}

/**
 * Starts the Worker; resolves when GET /v1/health answers (with any status: a Worker whose settings
 * are broken answers 500, and that is an answer). `vars`: extra Worker variables; `assets`: a
 * directory of model sets to serve instead of models/ (indexed here first); `rateLimit`: the
 * per-client limit on inference requests per minute (default `LOCAL_RATE_LIMIT`); `port`: where
 * to listen (default 0: wrangler picks a free port and says which); `onLog`: hears wrangler's
 * output as it comes. Returns { url, stop(), log() }.
 * @param {{ vars?: Record<string, string>, port?: number, onLog?: (text: string) => void,
 *   assets?: string, rateLimit?: number }} [options]
 * @returns {Promise<{ url: string, stop: () => Promise<void>, log: () => string }>}
 */
export async function startWorker({ vars = {}, port, onLog, assets, rateLimit = LOCAL_RATE_LIMIT } = {}) {
  if (!existsSync(join(repo, "edge-worker/build/index.js"))) throw new Error("the Worker is not built: run `make worker`");
  const state = mkdtempSync(join(tmpdir(), "hiedge-wrangler-"));
  // Port 0: wrangler binds a free port itself and says which in its "Ready on" line (log level info).
  // Level "log" (wrangler's order: error, warn, info, log, debug) also prints the Worker's
  // console.log lines: its per-request JSON log (core/src/server/log.rs), which tests read.
  const args = ["dev", "--ip", "127.0.0.1", "--port", String(port ?? 0), "--inspector-ip", "127.0.0.1",
    "--inspector-port", "0", "--show-interactive-dev-session=false", "--log-level", "log",
    "--persist-to", join(state, "state")];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  args.push("--config", localConfig(state, rateLimit));
  indexModelSets(resolve(assets ?? join(repo, "models")));
  if (assets) args.push("--assets", resolve(assets));
  const child = spawn(join(repo, "node_modules/.bin/wrangler"), args, {
    cwd: repo, env: { ...process.env, ...OFFLINE_ENV }, detached: true, stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  let ready = null;
  // Everything but the per-request lines ("[wrangler:info] GET /v1/health 200 OK"), which info level adds.
  const append = (d) => {
    const text = String(d).split("\n").filter((l) => !/\[wrangler:info\] (GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH) /.test(l)).join("\n");
    log += text;
    ready ??= /Ready on (http:\/\/127\.0\.0\.1:\d+)/.exec(log)?.[1] ?? null;
    if (text.trim()) onLog?.(text);
  };
  child.stdout.on("data", append);
  child.stderr.on("data", append);
  let exited = null;
  child.on("exit", (code) => (exited = code));
  const stop = async () => {
    if (exited === null) {
      try { process.kill(-child.pid, "SIGTERM"); } catch {}
      for (let i = 0; i < 100 && exited === null; i++) await new Promise((r) => setTimeout(r, 50));
      try { process.kill(-child.pid, "SIGKILL"); } catch {}
    }
    rmSync(state, { recursive: true, force: true });
  };
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (exited !== null) { await stop(); throw new Error(`wrangler dev exited (${exited}):\n${log}`); }
    if (!ready) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    const url = ready;
    try {
      const r = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(2000) });
      await r.arrayBuffer();
      return { url, stop, log: () => log };
    } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  throw new Error(`wrangler dev did not answer /v1/health in 90 s:\n${log}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { values } = readArgs({
    usage: "node tests/support/wrangler.mjs [--port N] [--var KEY:VALUE]... [--assets DIR]",
    flags: { port: null, assets: null, var: [] },
  });
  const port = values.port === undefined ? undefined : Number(values.port);
  const assets = /** @type {string | undefined} */ (values.assets);
  /** @type {Record<string, string>} */
  const vars = {};
  for (const pair of /** @type {string[]} */ (values.var)) {
    const [key, ...rest] = pair.split(":");
    vars[key] = rest.join(":");
  }
  try {
    const worker = await startWorker({ vars, port, assets, onLog: (d) => process.stderr.write(d) });
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      await worker.stop();
      process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    process.stdin.on("end", stop);
    process.stdin.on("close", stop);
    process.stdin.resume();
    process.stdout.write(JSON.stringify({ url: worker.url }) + "\n");
  } catch (e) {
    console.error(String(e && e.message || e));
    process.exit(1);
  }
}
