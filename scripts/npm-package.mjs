// Turns wasm-pack's generated package.json into the `hiedge` package's and adds its README.
// Usage: node scripts/npm-package.mjs wasm-client/pkg
import { readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { readArgs } from "./args.mjs";

const [dir] = readArgs({ usage: "node scripts/npm-package.mjs PKG_DIR", positionals: [1, 1] }).positionals;
const generated = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
const pkg = {
  name: "hiedge",
  version: generated.version,
  description:
    "Hierarchical Inference in the browser: a tiny ONNX model in WebAssembly decides locally and offloads unsure samples to a larger model in a Cloudflare Worker.",
  type: "module",
  main: "index.js",
  module: "index.js",
  types: "index.d.ts",
  exports: {
    ".": { types: "./index.d.ts", default: "./index.js" },
    "./wasm": { types: "./hiedge.d.ts", default: "./hiedge.js" },
    "./hiedge_bg.wasm": "./hiedge_bg.wasm",
    "./hiedge_loader_bg.wasm": "./hiedge_loader_bg.wasm",
  },
  files: [
    "index.js", "index.d.ts", "host.js", "worker.js", "hiedge_bg.wasm", "hiedge.js", "hiedge.d.ts",
    "hiedge_bg.wasm.d.ts", "hiedge_loader_bg.wasm", "hiedge_loader.js", "hiedge_loader.d.ts",
    "hiedge_loader_bg.wasm.d.ts", "README.md",
  ],
  sideEffects: ["./snippets/*"],
  keywords: ["hierarchical-inference", "edge-ai", "webassembly", "onnx", "tract", "cloudflare-workers", "offloading"],
  license: generated.license ?? "MIT OR Apache-2.0",
  repository: { type: "git", url: "https://github.com/hiedge/hiedge" },
};
writeFileSync(join(dir, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
copyFileSync("wasm-client/README.md", join(dir, "README.md"));
// The entry (messages between the page, the loader build and the device build) hands the loader
// this hash: the Cache API key of the device build's wasm, and the check of a cached copy.
const wasmSha256 = createHash("sha256").update(readFileSync(join(dir, "hiedge_bg.wasm"))).digest("hex");
const filled = { __HIEDGE_WASM_SHA256__: wasmSha256 };
let entry = readFileSync("wasm-client/js/index.js", "utf8");
for (const [placeholder, value] of Object.entries(filled)) {
  if (typeof value !== "string" || !entry.includes(placeholder)) throw new Error(`index.js: cannot fill ${placeholder}`);
  // Written as the inside of the JS string literal the placeholder stands in.
  entry = entry.replaceAll(placeholder, () => JSON.stringify(value).slice(1, -1));
}
writeFileSync(join(dir, "index.js"), entry);
for (const f of ["index.d.ts", "host.js", "worker.js"]) copyFileSync(join("wasm-client/js", f), join(dir, f));
