// Loading: the model sets the page was built with (data/sets.json), the wasm client for one of them
// (tiny model, early-exit model, decision module; offloads to that set's large model in the
// Worker), the Worker's address and health, and the set's committed test samples. Class names and
// sizes come from the client.
import init, { HiClient } from "hiedge";
import { $, demo, state, type ModelSetEntry } from "./state";

// For the end-to-end tests and the curious: the client class, to try other options from the console.
(demo as unknown as { HiClient: typeof HiClient }).HiClient = HiClient;

/** The Worker the site itself names: config.json (written by `make demo`), or the local default. */
async function configuredWorkerUrl(): Promise<string> {
  try {
    const cfg = await (await fetch("./config.json", { cache: "no-store" })).json();
    if (typeof cfg.workerUrl === "string" && cfg.workerUrl) return cfg.workerUrl;
  } catch {}
  return "http://127.0.0.1:8787";
}

/**
 * Where offloads go: `?worker=` in the page URL (shown on the page as such), config.json, or the
 * local default. Anyone can send a link with `?worker=`: when it names an origin other than the
 * page's and the configured Worker's, the user is asked first, before any upload or camera frame
 * could go there; refused (or not a URL), the configured Worker is used.
 */
async function workerUrl(): Promise<string> {
  const configured = await configuredWorkerUrl();
  const fromQuery = new URLSearchParams(location.search).get("worker");
  if (!fromQuery) return configured;
  const notice = $("worker-from-url");
  notice.classList.remove("hidden");
  let origin: string;
  try {
    origin = new URL(fromQuery, location.href).origin;
  } catch {
    notice.textContent = `?worker= in this page's address is not a URL (${fromQuery}): offloads go to ${configured}.`;
    return configured;
  }
  const known = [location.origin, new URL(configured, location.href).origin];
  const asked = `This page's address asks to send the samples you offload (uploads and camera frames) to another server:\n\n${origin}\n\nSend them there?`;
  if (!known.includes(origin) && !window.confirm(asked)) {
    notice.textContent = `Not using ${fromQuery} (set by ?worker= in this page's address, refused): offloads go to ${configured}.`;
    return configured;
  }
  notice.textContent = `Offloads go to ${fromQuery}, set by ?worker= in this page's address. Samples you offload are sent there.`;
  return fromQuery;
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

/** The wasm module, the Worker's address and the list of model sets; `say` reports progress. */
export async function loadPage(say: (message: string) => void): Promise<void> {
  say("Loading the WebAssembly client (hiedge_bg.wasm)...");
  await init();
  state.workerUrl = await workerUrl();
  $("worker-url").textContent = state.workerUrl;
  const r = await fetch("./data/sets.json");
  if (!r.ok) throw new Error(`data/sets.json: HTTP ${r.status}`);
  const { sets } = (await r.json()) as { sets: ModelSetEntry[] };
  if (!sets.length) throw new Error("the page was built without any model set");
  state.sets = sets;
  const select = $("model-set") as HTMLSelectElement;
  select.replaceChildren(...sets.map((s) => new Option(s.name, s.name)));
}

/** Loads model set `name` (its client and its samples) in place of the current one. */
export async function loadSet(name: string, say: (message: string) => void): Promise<void> {
  const entry = state.sets.find((s) => s.name === name);
  if (!entry) throw new Error(`no model set named ${name}`);
  const base = `./data/${encodeURIComponent(entry.name)}`;
  const client = await HiClient.create({
    model: `${base}/${entry.tiny}`,
    manifest: `${base}/manifest.json`,
    modelSet: entry.name,
    endpoint: state.workerUrl,
    earlyExit: entry.earlyExit ? { stage1: `${base}/${entry.earlyExit.stage1}`, stage2: `${base}/${entry.earlyExit.stage2}` } : undefined,
    timeoutMs: 3000,
    // A set without calibrated parameters starts on the policy that learns them online.
    policy: entry.calibrated ? undefined : "online_hedge",
    // Watched against its calibration set when `hiedge calibrate` stored one (the monitoring panel).
    monitor: entry.monitoring,
    onProgress: (p) => say(`Loading ${entry.name}: ${p.message}...`),
  });
  let images: Uint8Array = new Uint8Array(0);
  let labels: Uint8Array = new Uint8Array(0);
  let logits = new Float32Array(0);
  if (entry.samples) {
    say(`Loading the test images of ${entry.name}...`);
    images = await bytes(`${base}/images.u8`);
    labels = await bytes(`${base}/labels.u8`);
    logits = new Float32Array((await bytes(`${base}/large_logits.f32`)).slice().buffer);
  }
  state.client?.close();
  state.client = client;
  state.set = entry;
  state.classes = client.classes;
  state.sampleLength = client.inputLength;
  state.shape = client.imageShape;
  state.images = images;
  state.labels = labels;
  const k = state.classes.length;
  state.largeLabels = Array.from({ length: labels.length }, (_, i) => argmax(logits.subarray(i * k, (i + 1) * k)));
  ($("model-set") as HTMLSelectElement).value = entry.name;
  $("models").textContent = `${client.modelId} in the browser, large in the Worker (${entry.name})`;
  const n = labels.length;
  $("dataset").textContent = entry.samples
    ? `${n} test images of ${entry.name} (0-${n - 1})`
    : `no test images ship with ${entry.name}: classify your own image or the camera`;
  const limit = $("limit") as HTMLInputElement;
  limit.max = limit.value = String(n);
  // Policies that read calibrated parameters are offered only for sets that have them.
  for (const option of ($("policy") as HTMLSelectElement).options) {
    const needsCalibration = ["logistic_top2", "max_prob", "margin", "entropy", "ee_hi"].includes(option.value);
    option.disabled = (needsCalibration && !entry.calibrated) || (option.value === "ee_hi" && !entry.earlyExit);
  }
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
