// A gate in front of the Worker for the npm tests: it forwards every request to the Worker, holds
// POSTs until told (so a test, not the network, decides when answers come), counts them, and can be
// pointed at another Worker (one started after the first was stopped) while the page keeps its URL.
import { createServer } from "node:http";
import { listenLocal } from "./browser.mjs";

/**
 * A gate in front of `target` (a Worker's URL). POSTs are held while `holding` (the default) until
 * `release()`. A request forwarded to a Worker that has stopped drops its connection, as a dead
 * host's would.
 * @param {string} target
 * @param {{ holding?: boolean }} [options]
 */
export async function gate(target, { holding = true } = {}) {
  let held = [];
  let posts = 0;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const forward = async () => {
        try {
          /** @type {Record<string, string>} */
          const headers = {};
          for (const [k, v] of Object.entries(req.headers)) if (k !== "host" && v !== undefined) headers[k] = String(v);
          const r = await fetch(target + req.url, {
            method: req.method, headers, body: ["GET", "HEAD"].includes(req.method) ? undefined : Buffer.concat(chunks),
          });
          const body = Buffer.from(await r.arrayBuffer());
          /** @type {Record<string, string>} */
          const out = {};
          r.headers.forEach((v, k) => { if (!["content-encoding", "content-length", "transfer-encoding", "connection"].includes(k)) out[k] = v; });
          res.writeHead(r.status, out).end(body);
        } catch {
          res.destroy();
        }
      };
      if (req.method === "POST") posts += 1;
      if (req.method === "POST" && holding) held.push(forward);
      else forward();
    });
  });
  return {
    url: await listenLocal(server),
    held: () => held.length,
    /** POST requests that reached the gate so far. */
    posts: () => posts,
    hold: () => { holding = true; },
    /** Lets the held requests, and later ones until `hold()`, through. */
    release: () => { holding = false; const go = held; held = []; go.forEach((f) => f()); },
    /** Forwards later requests to another Worker. @param {string} url */
    retarget: (url) => { target = url; },
    close: () => { server.closeAllConnections(); return new Promise((ok) => server.close(ok)); },
  };
}
