// Loading: the wasm client (tiny model, early-exit model, decision module), the Worker's address
// and health, and the committed test samples. Class names and sizes come from the client.
import init, { HiClient } from "hiedge";
import { $, state } from "./state";

/** Where offloads go: `?worker=` in the page URL (shown on the page as such), config.json, or the local default. */
async function workerUrl(): Promise<string> {
  const fromQuery = new URLSearchParams(location.search).get("worker");
  if (fromQuery) {
    const notice = $("worker-from-url");
    notice.textContent = `Offloads go to ${fromQuery}, set by ?worker= in this page's address. Samples you offload are sent there.`;
    notice.classList.remove("hidden");
    return fromQuery;
  }
  try {
    const cfg = await (await fetch("./config.json", { cache: "no-store" })).json();
    if (typeof cfg.workerUrl === "string" && cfg.workerUrl) return cfg.workerUrl;
  } catch {}
  return "http://127.0.0.1:8787";
}

async function bytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Loads the client and the samples; `say` reports progress. */
export async function load(say: (message: string) => void): Promise<void> {
  say("Loading the WebAssembly client (hiedge_bg.wasm)...");
  await init();
  state.workerUrl = await workerUrl();
  $("worker-url").textContent = state.workerUrl;
  const client = await HiClient.create({
    model: "./data/tiny.onnx",
    manifest: "./data/manifest.json",
    endpoint: state.workerUrl,
    earlyExit: { stage1: "./data/ee_stage1.onnx", stage2: "./data/ee_stage2.onnx" },
    timeoutMs: 3000,
    onProgress: (p) => say(`Loading: ${p.message}...`),
  });
  state.client = client;
  state.classes = client.classes;
  state.sampleLength = client.inputLength;
  state.shape = client.imageShape;
  say(`Loading the test images...`);
  state.images = await bytes("./data/images.u8");
  state.labels = await bytes("./data/labels.u8");
  const k = state.classes.length;
  const logits = new Float32Array((await bytes("./data/large_logits.f32")).slice().buffer);
  state.largeLabels = Array.from({ length: state.labels.length }, (_, i) => argmax(logits.subarray(i * k, (i + 1) * k)));
  $("models").textContent = `${client.modelId} in the browser, large in the Worker`;
  const n = state.labels.length;
  const name = (client.manifest() as { name: string }).name;
  $("dataset").textContent = `${n} test images of ${name} (0-${n - 1})`;
  const limit = $("limit") as HTMLInputElement;
  limit.max = limit.value = String(n);
}

/** Asks the Worker's /v1/health and shows a banner when it does not answer. */
export async function checkWorker(): Promise<void> {
  try {
    const r = await fetch(`${state.workerUrl}/v1/health`, { signal: AbortSignal.timeout(2000) });
    setWorkerDown(r.ok ? null : `health answered HTTP ${r.status}`);
  } catch (e) {
    setWorkerDown(String(e));
  }
}

/** Shows (reason) or hides (null) the "Worker unreachable" banner. */
export function setWorkerDown(reason: string | null): void {
  state.workerDown = reason !== null;
  const b = $("banner");
  b.classList.toggle("hidden", reason === null);
  if (reason) b.textContent = `Worker unreachable at ${state.workerUrl} (${reason}): samples keep flowing, answered locally as "fallback".`;
}
