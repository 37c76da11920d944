// The hiedge demo: 1,000 Fashion-MNIST test images through HiClient (tiny model in wasm, decision
// module, fetch offload to the Worker), each sample's decision and latency shown as it happens.
import init, { HiClient, type ClassifyResult, type PolicyConfig } from "hiedge";
import { Chart, registerables } from "chart.js";

Chart.register(...registerables);

type Row = { index: number; truth: number; result: ClassifyResult; wall: number };
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const state = {
  client: null as HiClient | null,
  images: new Uint8Array(0) as Uint8Array,
  labels: new Uint8Array(0) as Uint8Array,
  largeLabels: [] as number[],
  classes: [] as string[],
  rows: [] as Row[],
  next: 0,
  running: false,
  workerUrl: "",
  workerDown: false,
};
// For the end-to-end tests and the curious: every result, as the page has it.
// `rendered` is the number of samples the totals and charts last showed (`renders` counts renders),
// so tests wait on them instead of sleeping.
(window as any).hiedgeDemo = { state, rows: state.rows, ready: false, finished: 0, rendered: 0, renders: 0 };

const SAMPLE = 784;
const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
const ms = (x: number) => x.toFixed(2);

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
    if (cfg.workerUrl) return cfg.workerUrl;
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

async function load() {
  const loading = $("loading");
  const say = (m: string) => (loading.textContent = m);
  say("Loading the WebAssembly client (hiedge_bg.wasm)...");
  await init();
  state.workerUrl = await workerUrl();
  $("worker-url").textContent = state.workerUrl;
  state.client = await HiClient.create({
    model: "./data/tiny.onnx",
    manifest: "./data/manifest.json",
    endpoint: state.workerUrl,
    earlyExit: { stage1: "./data/ee_stage1.onnx", stage2: "./data/ee_stage2.onnx" },
    timeoutMs: 3000,
    onProgress: (p) => say(`Loading: ${p.message}...`),
  });
  say("Loading the 1,000 test images...");
  state.images = await bytes("./data/images.u8");
  state.labels = await bytes("./data/labels.u8");
  const logits = new Float32Array((await bytes("./data/large_logits.f32")).slice().buffer);
  state.largeLabels = Array.from({ length: state.labels.length }, (_, i) => argmax(logits.subarray(i * 10, i * 10 + 10)));
  state.classes = state.client.classes;
  $("models").textContent = `${state.client.modelId} in the browser, large in the Worker`;
  syncThreshold();
  loading.classList.add("done");
  for (const id of ["run", "reset", "upload"]) ($(id) as HTMLButtonElement).disabled = false;
  (window as any).hiedgeDemo.ready = true;
  checkWorker();
}

async function checkWorker() {
  try {
    const r = await fetch(`${state.workerUrl}/v1/health`, { signal: AbortSignal.timeout(2000) });
    setWorkerDown(r.ok ? null : `health answered HTTP ${r.status}`);
  } catch (e) {
    setWorkerDown(String(e));
  }
}

function setWorkerDown(reason: string | null) {
  state.workerDown = reason !== null;
  const b = $("banner");
  b.classList.toggle("hidden", reason === null);
  if (reason) b.textContent = `Worker unreachable at ${state.workerUrl} (${reason}): samples keep flowing, answered locally as "fallback".`;
}

// ---- policy controls ------------------------------------------------------------------------

function syncThreshold() {
  const policy = state.client!.policy() as any;
  const slider = $("threshold") as HTMLInputElement;
  const has = typeof policy.threshold === "number";
  slider.disabled = !has;
  if (has) slider.value = String(policy.threshold);
  $("threshold-value").textContent = has ? Number(policy.threshold).toFixed(3) : "n/a";
}

$("policy").addEventListener("change", () => {
  state.client!.setPolicy(($("policy") as HTMLSelectElement).value as PolicyConfig);
  syncThreshold();
  scheduleRender();
});

$("threshold").addEventListener("input", () => {
  const t = Number(($("threshold") as HTMLInputElement).value);
  const current = state.client!.policy() as any;
  state.client!.setPolicy({ ...current, threshold: t });
  $("threshold-value").textContent = t.toFixed(3);
  scheduleRender();
});

$("delay").addEventListener("input", () => {
  const d = Number(($("delay") as HTMLInputElement).value);
  state.client!.setNetworkDelay(d);
  $("delay-value").textContent = `${d} ms`;
});

// ---- the sample stream ----------------------------------------------------------------------

async function classifySample(index: number) {
  const pixels = state.images.subarray(index * SAMPLE, (index + 1) * SAMPLE);
  const t0 = performance.now();
  const result = await state.client!.classify(pixels);
  const row = { index, truth: state.labels[index], result, wall: performance.now() - t0 };
  state.rows.push(row);
  (window as any).hiedgeDemo.finished = state.rows.length;
  if (result.decision === "fallback") setWorkerDown(result.fallbackReason);
  else if (result.decision === "offloaded" && state.workerDown) setWorkerDown(null);
  addThumb(row);
  scheduleRender();
}

async function run() {
  const button = $("run") as HTMLButtonElement;
  if (state.running) {
    state.running = false;
    return;
  }
  state.running = true;
  button.textContent = "Pause";
  const limit = Math.min(1000, Math.max(1, Number(($("limit") as HTMLInputElement).value) || 1000));
  while (state.running && state.next < limit) {
    const rate = Number(($("rate") as HTMLSelectElement).value);
    const start = performance.now();
    await classifySample(state.next++);
    const wait = rate > 0 ? 1000 / rate - (performance.now() - start) : 0;
    await new Promise((r) => setTimeout(r, Math.max(0, wait)));
  }
  state.running = false;
  button.textContent = state.next >= limit ? "Done" : "Start";
}

$("run").addEventListener("click", run);
$("reset").addEventListener("click", () => {
  state.running = false;
  state.rows.length = 0;
  state.next = 0;
  state.client!.resetStats();
  $("grid").replaceChildren();
  $("detail").textContent = "Click a thumbnail.";
  ($("run") as HTMLButtonElement).textContent = "Start";
  (window as any).hiedgeDemo.finished = 0;
  scheduleRender();
});

// ---- thumbnails and details -------------------------------------------------------------------

function drawGray(canvas: HTMLCanvasElement, pixels: Uint8Array) {
  const ctx = canvas.getContext("2d")!;
  const img = ctx.createImageData(28, 28);
  for (let i = 0; i < SAMPLE; i++) {
    img.data.set([pixels[i], pixels[i], pixels[i], 255], i * 4);
  }
  ctx.putImageData(img, 0, 0);
}

function addThumb(row: Row) {
  const div = document.createElement("div");
  const wrong = row.result.label !== row.truth;
  div.className = `thumb ${row.result.decision}${wrong ? " wrong" : ""}`;
  div.dataset.decision = row.result.decision;
  div.dataset.correct = String(!wrong);
  div.title = `#${row.index}: ${row.result.className} (${row.result.decision}), truth ${state.classes[row.truth]}, ${ms(row.result.timings.totalMs)} ms`;
  const c = document.createElement("canvas");
  c.width = c.height = 28;
  drawGray(c, state.images.subarray(row.index * SAMPLE, (row.index + 1) * SAMPLE));
  div.append(c);
  div.addEventListener("click", () => showDetail(row));
  $("grid").append(div);
}

/** An element with text children only: untrusted strings (network, URL, files) never become HTML. */
function el(tag: string, children: (string | Node)[] = [], props: { className?: string; style?: string } = {}): HTMLElement {
  const e = document.createElement(tag);
  if (props.className) e.className = props.className;
  if (props.style) e.setAttribute("style", props.style);
  e.append(...children);
  return e;
}

function probsTable(title: string, probs: number[]): HTMLElement {
  const rows = probs.map((v, i) =>
    el("tr", [el("td", [state.classes[i] ?? `class ${i}`]), el("td", [v.toFixed(3)]),
      el("td", [el("span", [], { className: "bar", style: `width:${Math.round(Math.max(0, Math.min(1, v)) * 120)}px` })])]));
  const head = el("th", [title]);
  head.setAttribute("colspan", "3");
  return el("table", [el("tr", [head]), ...rows]);
}

function showDetail(row: Row) {
  const r = row.result;
  const t = r.timings;
  const name = (label: number | null) => (label === null ? "not asked" : state.classes[label] ?? `class ${label}`);
  const lines: (string | Node)[][] = [
    [el("b", [`#${row.index}`]), ": answered ", el("b", [r.className]), ` (${r.decision}${r.explored ? ", exploring" : ""}), truth `,
      el("b", [name(row.truth)]), r.label === row.truth ? " ✔" : " ✘"],
    [`tiny: ${name(r.localLabel)}; large: ${name(r.remoteLabel)}`],
    // The fallback reason can quote the offload endpoint's response body: text only.
    ...(r.fallbackReason ? [[el("span", [`fallback: ${r.fallbackReason}`], { className: "fallback-reason" })]] : []),
    [`local stage: ${r.localStage}${r.localStage === "full" ? "" : " (EE-HI)"}; score ${r.score.toFixed(3)} vs threshold ${r.threshold === null ? "n/a" : r.threshold.toFixed(3)}`],
    [`preprocess ${ms(t.preprocessMs)} ms, tiny ${ms(t.localMs)} ms, decision ${ms(t.decisionMs)} ms, round trip ${ms(t.roundTripMs)} ms ` +
      `(Worker inference ${t.remoteMs === null ? "not measurable there" : ms(t.remoteMs) + " ms"}), total ${ms(t.totalMs)} ms, ${r.bytesSent} bytes sent`],
  ];
  const detail = $("detail");
  detail.replaceChildren(...lines.map((parts) => el("div", parts)), probsTable("tiny model probabilities", r.localProbs));
  if (r.remoteLabel !== null) detail.append(probsTable("large model probabilities", r.probs));
}

// ---- totals and charts ------------------------------------------------------------------------

let pending = false;
function scheduleRender() {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    render();
  }, 200);
}

function quantile(v: number[], q: number) {
  if (!v.length) return NaN;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * q)];
}
const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

const charts = {
  timeline: new Chart<"bar", number[], string>($("chart-timeline") as HTMLCanvasElement, {
    type: "bar",
    data: { labels: [], datasets: [
      { label: "preprocess", data: [], backgroundColor: "#9e9e9e" },
      { label: "tiny model", data: [], backgroundColor: "#2e7d32" },
      { label: "decision", data: [], backgroundColor: "#fdd835" },
      { label: "network + proxy", data: [], backgroundColor: "#1565c0" },
      { label: "Worker inference", data: [], backgroundColor: "#6a1b9a" },
    ] },
    options: { animation: false, scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "ms" } } } },
  }),
  hist: new Chart<"bar", number[], string>($("chart-hist") as HTMLCanvasElement, {
    type: "bar",
    data: { labels: [], datasets: [
      { label: "local", data: [], backgroundColor: "#2e7d32" },
      { label: "offloaded", data: [], backgroundColor: "#1565c0" },
      { label: "fallback", data: [], backgroundColor: "#ef6c00" },
    ] },
    options: { animation: false, scales: { y: { title: { display: true, text: "samples" } } } },
  }),
  curve: new Chart<"scatter", { x: number; y: number }[]>($("chart-curve") as HTMLCanvasElement, {
    type: "scatter",
    data: { datasets: [
      { label: "threshold sweep", data: [], showLine: true, borderColor: "#1565c0", pointRadius: 0 },
      { label: "current", data: [], backgroundColor: "#c62828", pointRadius: 6 },
    ] },
    options: { animation: false, scales: {
      x: { min: 0, max: 100, title: { display: true, text: "offloaded %" } },
      y: { title: { display: true, text: "accuracy %" } } } },
  }),
};

function render() {
  const rows = state.rows;
  const n = rows.length;
  const by = (d: string) => rows.filter((r) => r.result.decision === d).length;
  const correct = rows.filter((r) => r.result.label === r.truth).length;
  const wanted = rows.filter((r) => r.result.offloadWanted).length;
  const totals = rows.map((r) => r.result.timings.totalMs);
  const localTimes = rows.map((r) => r.result.timings.preprocessMs + r.result.timings.localMs + r.result.timings.decisionMs);
  const trips = rows.filter((r) => r.result.decision === "offloaded").map((r) => r.result.timings.roundTripMs);
  $("count").textContent = String(n);
  $("n-local").textContent = String(by("local"));
  $("n-offloaded").textContent = String(by("offloaded"));
  $("n-fallback").textContent = String(by("fallback"));
  $("acc").textContent = n ? pct(correct / n) : "-";
  $("off").textContent = n ? pct(wanted / n) : "-";
  $("mean").textContent = n ? ms(mean(totals)) : "-";
  $("p95").textContent = n ? ms(quantile(totals, 0.95)) : "-";
  $("bytes").textContent = String(rows.reduce((a, r) => a + r.result.bytesSent, 0));
  $("acc-tiny").textContent = n ? pct(rows.filter((r) => r.result.localLabel === r.truth).length / n) : "-";
  $("mean-tiny").textContent = n ? ms(mean(localTimes)) : "-";
  $("acc-large").textContent = n ? pct(rows.filter((r) => state.largeLabels[r.index] === r.truth).length / n) : "-";
  $("mean-large").textContent = trips.length ? ms(mean(localTimes) + mean(trips)) : "-";
  $("bytes-large").textContent = String(n * SAMPLE);

  const last = rows.slice(-60);
  charts.timeline.data.labels = last.map((r) => `#${r.index}`);
  type Timings = ClassifyResult["timings"];
  const parts = [
    (t: Timings) => t.preprocessMs, (t: Timings) => t.localMs, (t: Timings) => t.decisionMs,
    (t: Timings) => t.roundTripMs - (t.remoteMs ?? 0), (t: Timings) => t.remoteMs ?? 0,
  ];
  parts.forEach((f, k) => (charts.timeline.data.datasets[k].data = last.map((r) => f(r.result.timings))));
  charts.timeline.update();

  const edges = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, Infinity];
  charts.hist.data.labels = edges.map((e, i) => (i === 0 ? `< ${e}` : e === Infinity ? `>= ${edges[i - 1]}` : `${edges[i - 1]}-${e}`));
  ["local", "offloaded", "fallback"].forEach((d, k) => {
    const counts = edges.map(() => 0);
    for (const r of rows) if (r.result.decision === d) counts[edges.findIndex((e) => r.result.timings.totalMs < e)]++;
    charts.hist.data.datasets[k].data = counts;
  });
  charts.hist.update();

  // Trade-off: offload the samples whose score is at or below t, use the large model's label for them.
  const sweep = [];
  for (let k = 0; k <= 100 && n; k++) {
    const t = k / 100;
    let off = 0, ok = 0;
    for (const r of rows) {
      const offload = r.result.score <= t;
      off += +offload;
      ok += +((offload ? state.largeLabels[r.index] : r.result.localLabel) === r.truth);
    }
    sweep.push({ x: (100 * off) / n, y: (100 * ok) / n });
  }
  charts.curve.data.datasets[0].data = sweep;
  charts.curve.data.datasets[1].data = n ? [{ x: (100 * wanted) / n, y: (100 * correct) / n }] : [];
  charts.curve.update();
  (window as any).hiedgeDemo.rendered = n;
  (window as any).hiedgeDemo.renders++;
}

// ---- your own image -------------------------------------------------------------------------------

$("upload").addEventListener("change", async () => {
  const file = ($("upload") as HTMLInputElement).files?.[0];
  if (!file) return;
  const out = $("upload-result");
  try {
    const bitmap = await createImageBitmap(file);
    const c = document.createElement("canvas");
    c.width = c.height = 28;
    const ctx = c.getContext("2d")!;
    ctx.drawImage(bitmap, 0, 0, 28, 28);
    const rgba = ctx.getImageData(0, 0, 28, 28).data;
    const gray = new Uint8Array(SAMPLE);
    for (let i = 0; i < SAMPLE; i++) gray[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
    // Fashion-MNIST is a light object on black: invert photos with a light background (judged by the border).
    let border = 0;
    for (let i = 0; i < 28; i++) border += gray[i] + gray[27 * 28 + i] + gray[i * 28] + gray[i * 28 + 27];
    if (border / 112 > 127) for (let i = 0; i < SAMPLE; i++) gray[i] = 255 - gray[i];
    const preview = $("upload-preview") as HTMLCanvasElement;
    const small = document.createElement("canvas");
    small.width = small.height = 28;
    drawGray(small, gray);
    const pctx = preview.getContext("2d")!;
    pctx.imageSmoothingEnabled = false;
    pctx.drawImage(small, 0, 0, 112, 112);
    const r = await state.client!.classify(gray);
    out.textContent = `${r.className} (${(100 * r.confidence).toFixed(1)}%), ${r.decision}` +
      `${r.fallbackReason ? ` (${r.fallbackReason})` : ""}; tiny said ${state.classes[r.localLabel]}; ${ms(r.timings.totalMs)} ms`;
  } catch (e) {
    out.textContent = `Could not classify this file: ${e}`;
  }
});

load().catch((e) => {
  $("loading").textContent = `Could not start: ${e}`;
  $("loading").classList.add("error");
});
