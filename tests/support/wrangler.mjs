// The one way hiedge starts the Worker: `wrangler dev` (workerd) with the Worker built by
// `make worker`, on a free loopback port, offline (the only place the offline settings are written),
// in its own process group so that stop() ends wrangler and workerd together.
//
// Imported by the JS tests, the demo and the benchmark (`startWorker`); run as a program by the
// Rust tests and `hiedge bench-worker` (cli/src/wrangler.rs):
//   node tests/support/wrangler.mjs [--port N] [--var KEY:VALUE]... [--assets DIR]
// prints one JSON line `{"url": "http://127.0.0.1:PORT"}` once /v1/health answers, copies
// wrangler's output to stderr, and stops the Worker on SIGTERM/SIGINT or when stdin closes.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { indexModelSets } from "../../edge-worker/index-models.mjs";

const repo = resolve(import.meta.dirname, "../..");

export const OFFLINE_ENV = {
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  WRANGLER_HIDE_BANNER: "true",
};

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * Starts the Worker; resolves when GET /v1/health answers (with any status: a Worker whose settings
 * are broken answers 500, and that is an answer). `vars`: extra Worker variables; `assets`: a
 * directory of model sets to serve instead of models/ (indexed here first); `config`: a wrangler
 * configuration file to use instead of wrangler.toml. Returns { url, stop(), log() }.
 */
export async function startWorker({ vars = {}, port, onLog, assets, config } = {}) {
  if (!existsSync(join(repo, "edge-worker/build/index.js"))) throw new Error("the Worker is not built: run `make worker`");
  port ??= await freePort();
  const inspector = await freePort();
  const state = mkdtempSync(join(tmpdir(), "hiedge-wrangler-"));
  const args = ["dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-ip", "127.0.0.1",
    "--inspector-port", String(inspector), "--show-interactive-dev-session=false", "--log-level", "warn",
    "--persist-to", join(state, "state")];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  if (config) args.push("--config", resolve(config));
  if (assets) {
    indexModelSets(resolve(assets));
    args.push("--assets", resolve(assets));
  }
  const child = spawn(join(repo, "node_modules/.bin/wrangler"), args, {
    cwd: repo, env: { ...process.env, ...OFFLINE_ENV }, detached: true, stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const append = (d) => { log += d; onLog?.(d); };
  child.stdout.on("data", append);
  child.stderr.on("data", append);
  let exited = null;
  child.on("exit", (code) => (exited = code));
  const url = `http://127.0.0.1:${port}`;
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
  const vars = {};
  let port, assets;
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--port") port = Number(args[++i]);
    else if (args[i] === "--assets") assets = args[++i];
    else if (args[i] === "--var") {
      const [key, ...rest] = String(args[++i]).split(":");
      vars[key] = rest.join(":");
    } else {
      console.error(`unknown argument ${args[i]}; usage: wrangler.mjs [--port N] [--var KEY:VALUE]... [--assets DIR]`);
      process.exit(2);
    }
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
