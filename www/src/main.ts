// The hiedge demo: the committed test images through HiClient (tiny model in wasm, decision module,
// fetch offload to the Worker), each sample's decision and latency shown as it happens.
// Modules: state (shared state), client (loading), controls (policy, stream), detail (thumbnails),
// stats (totals), charts (Chart.js), upload (your own image).
import { $, demo, state } from "./state";
import { checkWorker, load } from "./client";
import { setUpControls } from "./controls";
import { renderStats } from "./stats";
import { renderCharts } from "./charts";
import { setUpUpload } from "./upload";

let pending = false;
/** Renders the totals and charts at most every 200 ms. */
function scheduleRender() {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    renderStats(state.rows);
    renderCharts(state.rows);
    demo.rendered = state.rows.length;
    demo.renders++;
  }, 200);
}

async function start() {
  const loading = $("loading");
  await load((message) => (loading.textContent = message));
  setUpControls(scheduleRender);
  setUpUpload();
  loading.classList.add("done");
  for (const id of ["run", "reset", "upload"]) ($(id) as HTMLButtonElement).disabled = false;
  demo.ready = true;
  checkWorker();
}

start().catch((e) => {
  $("loading").textContent = `Could not start: ${e}`;
  $("loading").classList.add("error");
});
