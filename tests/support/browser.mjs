// Shared by the Node-driven browser tests: Debian Chromium through playwright-core (never a
// downloaded browser) and a small static file server on a free loopback port.
import { createServer } from "node:http";
import { readFile, stat } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";

export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
  "--disable-domain-reliability", "--no-pings", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];

/** Headless Debian Chromium (/usr/bin/chromium) with the flags that keep it off the network, and `extraArgs`. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: [...CHROMIUM_ARGS, ...extraArgs] });
}

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".json": "application/json", ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".tar": "application/x-tar",
  ".bin": "application/octet-stream", ".png": "image/png", ".svg": "image/svg+xml", ".ts": "text/javascript",
};

/**
 * Serves `root` on 127.0.0.1 (port 0 = any free one) with cross-origin isolation headers (so
 * performance.now() has 5 us resolution). Resolves to { url, close }. `cacheControl` is sent with
 * every file (default "no-store": nothing in the HTTP cache). `compress`: gzip (level 9) every
 * file to a client that accepts it, as a static host or CDN does. `hold(suffix)` / `release(suffix)`
 * hold requests for matching paths until the test lets them through.
 */
export async function serveStatic(root, port = 0, { cacheControl = "no-store", compress = false } = {}) {
  const base = resolve(root);
  const gzipped = new Map();
  // Requests whose path ends with a held suffix wait until `release(suffix)`: a test orders a
  // download after an event of its own choosing instead of racing the network.
  const holds = new Map();
  const server = createServer(async (req, res) => {
    const held = [...holds.keys()].find((suffix) => new URL(req.url, "http://x").pathname.endsWith(suffix));
    if (held) await new Promise((go) => holds.get(held).push(go));
    try {
      const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
      let file = normalize(join(base, path));
      if (!file.startsWith(base)) throw new Error("outside root");
      if ((await stat(file)).isDirectory()) file = join(file, "index.html");
      let body = await readFile(file);
      const gzip = compress && /\bgzip\b/.test(req.headers["accept-encoding"] ?? "");
      if (gzip) {
        const key = `${file}:${body.length}`;
        if (!gzipped.has(key)) gzipped.set(key, gzipSync(body, { level: 9 }));
        body = gzipped.get(key);
      }
      res.writeHead(200, {
        "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
        "Content-Length": body.length,
        ...(gzip ? { "Content-Encoding": "gzip", Vary: "Accept-Encoding" } : {}),
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Embedder-Policy": "require-corp",
        "Cache-Control": cacheControl,
      });
      res.end(body);
    } catch {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found");
    }
  });
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    close: () => { server.closeAllConnections(); return new Promise((ok) => server.close(ok)); },
    /** Holds every later request for a path ending with `suffix`. */
    hold: (suffix) => holds.set(suffix, holds.get(suffix) ?? []),
    /** Lets the held requests for `suffix` (and later ones) through. */
    release: (suffix) => { const waiting = holds.get(suffix) ?? []; holds.delete(suffix); waiting.forEach((go) => go()); },
  };
}
