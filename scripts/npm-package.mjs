// Turns wasm-pack's generated package.json into the `hiedge` package's and adds its README.
// Usage: node scripts/npm-package.mjs wasm-client/pkg
import { readFileSync, writeFileSync, copyFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.argv[2];
const generated = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
const pkg = {
  name: "hiedge",
  version: generated.version,
  description:
    "Hierarchical Inference in the browser: a tiny ONNX model in WebAssembly decides locally and offloads unsure samples to a larger model in a Cloudflare Worker.",
  type: "module",
  main: "hiedge.js",
  module: "hiedge.js",
  types: "hiedge.d.ts",
  exports: {
    ".": { types: "./hiedge.d.ts", default: "./hiedge.js" },
    "./hiedge_bg.wasm": "./hiedge_bg.wasm",
  },
  files: ["hiedge_bg.wasm", "hiedge.js", "hiedge.d.ts", "hiedge_bg.wasm.d.ts", "README.md"],
  sideEffects: ["./snippets/*"],
  keywords: ["hierarchical-inference", "edge-ai", "webassembly", "onnx", "tract", "cloudflare-workers", "offloading"],
  license: generated.license ?? "MIT OR Apache-2.0",
  repository: { type: "git", url: "https://github.com/hiedge/hiedge" },
};
writeFileSync(join(dir, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
copyFileSync("wasm-client/README.md", join(dir, "README.md"));
