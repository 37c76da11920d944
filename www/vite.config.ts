import { defineConfig } from "vite";
import { resolve } from "node:path";

// The page imports the `hiedge` package as built by `make wasm` (wasm-client/pkg) and the model set
// copied into public/data by `make www`. Everything is served locally; no CDN.
export default defineConfig({
  root: __dirname,
  base: "./",
  publicDir: "public",
  resolve: { alias: { hiedge: resolve(__dirname, "../wasm-client/pkg/index.js") } },
  server: { host: "127.0.0.1", fs: { allow: [resolve(__dirname, "..")] } },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 4096 },
});
