// The hiedge demo: the committed test images of a model set through HiClient (tiny model in wasm,
// decision module, fetch offload to that set's large model in the Worker), each sample's decision
// and latency shown as it happens.
// Modules: state (shared state), client (loading), controls (policy, stream), detail (thumbnails),
// stats (totals), charts (Chart.js), monitor (the monitoring panel and the input shift), upload
// (your own image), camera (getUserMedia frames).
import { $, demo, state } from "./state";
import { checkWorker, loadPage, loadSet } from "./client";
import { resetRun, setUpControls, syncPolicy } from "./controls";
import { setUpCamera } from "./camera";
import { setUpSplit, syncSplit } from "./split";
import { renderStats } from "./stats";
import { renderCharts } from "./charts";
import { setUpUpload } from "./upload";
import { renderMonitor, setUpMonitor } from "./monitor";

let pending = false;
/** Renders the totals and charts at most every 200 ms. */
function scheduleRender() {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    renderStats(state.rows);
    renderCharts(state.rows);
    void renderMonitor().then(() => {
      demo.monitored = state.rows.length;
    });
    demo.rendered = state.rows.length;
    demo.renders++;
  }, 200);
}

const CONTROLS = ["run", "reset", "upload", "camera", "model-set"];

/** Switches the page to another model set: the run stops and resets, the client is replaced. */
async function switchSet(name: string) {
  const loading = $("loading");
  demo.ready = false;
  loading.classList.remove("done", "error");
  for (const id of CONTROLS) ($(id) as HTMLButtonElement).disabled = true;
  resetRun();
  try {
    await loadSet(name, (message) => (loading.textContent = message));
    await syncPolicy();
    setUpUpload();
    const url = new URL(location.href);
    url.searchParams.set("set", name);
    history.replaceState(null, "", url);
    loading.classList.add("done");
  } catch (e) {
    loading.textContent = `Could not load ${name}: ${e}`;
    loading.classList.add("error");
  }
  enableControls();
  scheduleRender();
  demo.ready = true;
}

/** Enables the controls; the sample stream only for a set with test images. */
function enableControls() {
  for (const id of CONTROLS) ($(id) as HTMLButtonElement).disabled = false;
  for (const id of ["run", "reset", "limit"]) ($(id) as HTMLButtonElement).disabled = !state.set?.samples;
  syncSplit(Boolean((state.client?.manifest() as { split?: unknown } | undefined)?.split));
}

async function start() {
  const loading = $("loading");
  await loadPage((message) => (loading.textContent = message));
  const wanted = new URLSearchParams(location.search).get("set");
  const first = state.sets.find((s) => s.name === wanted) ?? state.sets[0];
  await loadSet(first.name, (message) => (loading.textContent = message));
  setUpControls(scheduleRender);
  setUpUpload();
  setUpCamera();
  setUpSplit();
  setUpMonitor(scheduleRender);
  $("model-set").addEventListener("change", () => void switchSet(($("model-set") as HTMLSelectElement).value));
  loading.classList.add("done");
  enableControls();
  demo.ready = true;
  checkWorker();
}

start().catch((e) => {
  $("loading").textContent = `Could not start: ${e}`;
  $("loading").classList.add("error");
});
