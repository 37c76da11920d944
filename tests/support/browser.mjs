// Shared by the Node-driven browser tests: the system's Chromium through playwright-core (never a
// downloaded browser) and a static file server (Vite's preview server) on a free loopback port.
import { readFile, stat } from "node:fs/promises";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, extname, join, normalize, resolve, sep } from "node:path";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";
import { preview } from "vite";

export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
  "--disable-domain-reliability", "--no-pings", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
];

/**
 * Binds `server` to 127.0.0.1 on `port` (0: a free port chosen by the system, read back) and
 * resolves to its base URL.
 * @param {import("node:http").Server} server
 * @param {number} [port]
 * @returns {Promise<string>}
 */
export async function listenLocal(server, port = 0) {
  await new Promise((bound) => server.listen(port, "127.0.0.1", () => bound(undefined)));
  const address = /** @type {import("node:net").AddressInfo} */ (server.address());
  return `http://127.0.0.1:${address.port}`;
}

/** Where a system Chromium may be: names on PATH, then macOS's application bundles. */
const CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
const CHROMIUM_BUNDLES = [
  "/Applications/Chromium.app/Contents/MacOS/Chromium", "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
];

/**
 * The system Chromium (never a downloaded one): `$CHROMIUM`, else the first of `CHROMIUM_NAMES`
 * on PATH (Debian's /usr/bin/chromium here), else a macOS application bundle.
 * @returns {string}
 */
export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const name of CHROMIUM_NAMES) {
    for (const dir of dirs) if (isExecutable(join(dir, name))) return join(dir, name);
  }
  const bundle = CHROMIUM_BUNDLES.find(isExecutable);
  if (bundle) return bundle;
  throw new Error("no Chromium found: install it (scripts/install-tools.sh chromium) or set CHROMIUM to its path");
}

/** @param {string} path */
function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Headless system Chromium (`chromiumPath()`) with the flags that keep it off the network, and `extraArgs`. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({ executablePath: chromiumPath(), args: [...CHROMIUM_ARGS, ...extraArgs] });
}

/** The headers every served file gets besides `Cache-Control`: cross-origin isolation. */
const ISOLATION = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };

/**
 * Serves `root` on 127.0.0.1 (port 0 = any free one, chosen by the system) with Vite's preview
 * server (the same one `vite preview` runs) and cross-origin isolation headers (so performance.now()
 * has 5 us resolution). `cacheControl` is sent with every file (default "no-store": nothing in the
 * HTTP cache). `compress`: gzip (level 9) every file to a client that accepts it, as a static host
 * or CDN does (Vite's preview server serves files as they are). `hold(suffix)` / `release(suffix)`
 * hold requests for matching paths until the test lets them through: a test orders a download after
 * an event of its own choosing instead of racing the network.
 * @param {string} root
 * @param {number} [port]
 * @param {{ cacheControl?: string, compress?: boolean }} [options]
 * @returns {Promise<{ url: string, close: () => Promise<void>, hold: (suffix: string) => void,
 *   release: (suffix: string) => void }>}
 */
export async function serveStatic(root, port = 0, { cacheControl = "no-store", compress = false } = {}) {
  const base = resolve(root);
  /** @type {Map<string, (() => void)[]>} */
  const holds = new Map();
  /** @type {Map<string, Buffer>} */
  const gzipped = new Map();
  /** @type {import("vite").Plugin} */
  const plugin = {
    name: "hiedge-test-server",
    configurePreviewServer(server) {
      server.middlewares.use(async (req, res, next) => {
        const path = new URL(req.url ?? "/", "http://x").pathname;
        const held = [...holds.keys()].find((suffix) => path.endsWith(suffix));
        if (held) await new Promise((go) => holds.get(held)?.push(() => go(undefined)));
        if (!compress || !/\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""))) return next();
        // The gzip a static host would send; Vite's own server answers everything else.
        let file = normalize(join(base, decodeURIComponent(path)));
        try {
          if (!file.startsWith(base + sep)) throw new Error("outside the root");
          if ((await stat(file)).isDirectory()) file = join(file, "index.html");
          const body = await readFile(file);
          const key = `${file}:${body.length}`;
          if (!gzipped.has(key)) gzipped.set(key, gzipSync(body, { level: 9 }));
          const type = mime(file);
          if (!type) return next();
          res.writeHead(200, {
            "Content-Type": type, "Content-Encoding": "gzip", Vary: "Accept-Encoding", ...ISOLATION,
            "Cache-Control": cacheControl, "Content-Length": gzipped.get(key)?.length,
          });
          res.end(gzipped.get(key));
        } catch {
          next();
        }
      });
    },
  };
  const server = await preview({
    root: base, configFile: false, logLevel: "silent", appType: "mpa", plugins: [plugin],
    build: { outDir: base },
    preview: { host: "127.0.0.1", port, strictPort: true, headers: { ...ISOLATION, "Cache-Control": cacheControl } },
  });
  const address = /** @type {import("node:net").AddressInfo} */ (server.httpServer.address());
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () => {
      const http = /** @type {import("node:http").Server} */ (server.httpServer);
      http.closeAllConnections();
      return server.close();
    },
    /** Holds every later request for a path ending with `suffix`. */
    hold: (suffix) => void holds.set(suffix, holds.get(suffix) ?? []),
    /** Lets the held requests for `suffix` (and later ones) through. */
    release: (suffix) => { const waiting = holds.get(suffix) ?? []; holds.delete(suffix); waiting.forEach((go) => go()); },
  };
}

/** The content type the compressed path sends, for the files the pages load (else Vite's server answers). */
function mime(file) {
  const types = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".json": "application/json", ".wasm": "application/wasm", ".tar": "application/x-tar",
    ".onnx": "application/octet-stream", ".bin": "application/octet-stream",
  };
  return types[extname(file)] ?? null;
}
