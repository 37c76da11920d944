// The split-inference stream (MDI-Exit): samples arrive at the chosen rate whether or not the
// device is done with the last one; HiStream admits them (or skips the ones that waited too long),
// runs the split trunk, and its planner sends features to the Worker's tail, the raw sample to the
// large model, answers with the exit head, or finishes on the device. Shown: every sample's stages,
// the skipped ones, and the processed rate against the arrival rate.
import { HiStream, type StreamResult } from "hiedge";
import { Chart, registerables } from "chart.js";
import { $, demo, ms, pct, sample, state } from "./state";
import { el } from "./detail";

export type SplitRow = { truth: number; result: StreamResult };

/** For the end-to-end tests: the split stream's results and state. */
export const split = {
  rows: [] as SplitRow[],
  running: false,
  pushed: 0,
  error: null as string | null,
  stream: null as HiStream | null,
};
(demo as unknown as { split: typeof split }).split = split;

const COLORS: Record<string, string> = {
  exit: "#2e7d32", features: "#1565c0", raw: "#6a1b9a", device: "#00838f", fallback: "#ef6c00", skipped: "#9e9e9e",
};

Chart.register(...registerables);
const chart = new Chart<"bar", number[], string>($("chart-split") as HTMLCanvasElement, {
  type: "bar",
  data: { labels: [], datasets: [
    { label: "waiting for the device", data: [], backgroundColor: "#bdbdbd" },
    { label: "trunk (device)", data: [], backgroundColor: "#2e7d32" },
    { label: "device model", data: [], backgroundColor: "#00838f" },
    { label: "features / raw sent, tail or large in the Worker", data: [], backgroundColor: "#1565c0" },
  ] },
  options: { animation: false, indexAxis: "y", scales: { x: { stacked: true, title: { display: true, text: "ms" } }, y: { stacked: true } } },
});

const rtt = (v: number | null | undefined) => (v == null ? "-" : ms(v));

let pending = false;
function render(): void {
  if (pending) return;
  pending = true;
  setTimeout(() => {
    pending = false;
    const s = split.stream?.stats();
    if (s) {
      const elapsed = s.firstArrivalMs == null ? 0 : (performance.now() - s.firstArrivalMs) / 1000;
      const arrivalRate = elapsed > 0 ? s.arrived / elapsed : 0;
      const answered = split.rows.filter((r) => r.result.label !== null);
      const right = answered.filter((r) => r.result.label === r.truth).length;
      $("split-counts").textContent =
        `${s.arrived} arrived, ${s.processed} processed, ${s.skipped} skipped; exit ${s.exited}, features ${s.features}, ` +
        `raw ${s.raw}, device ${s.device}, fallback ${s.fallback}; ${s.bytesSent} bytes sent`;
      $("split-rates").textContent =
        `arrivals ${arrivalRate.toFixed(1)}/s, processed ${s.processedPerS.toFixed(1)}/s; accuracy on processed ` +
        `${answered.length ? pct(right / answered.length) : "-"}; mean arrival-to-answer ${ms(s.meanTotalMs)} ms; ` +
        `round trip features ${rtt(s.costs.featuresRttMs.value)} ms, raw ${rtt(s.costs.rawRttMs.value)} ms`;
    }
    const last = split.rows.slice(-25);
    chart.data.labels = last.map((r) => `#${r.result.index} ${r.result.decision}`);
    const t = (f: (r: StreamResult) => number) => last.map((r) => f(r.result));
    chart.data.datasets[0].data = t((r) => r.timings.waitMs);
    chart.data.datasets[1].data = t((r) => r.timings.trunkMs);
    chart.data.datasets[2].data = t((r) => r.timings.deviceMs);
    chart.data.datasets[3].data = t((r) => r.timings.roundTripMs);
    chart.update();
  }, 200);
}

function addRow(row: SplitRow): void {
  split.rows.push(row);
  const r = row.result;
  const item = el("li", [
    `#${r.index} `,
    el("b", [r.decision], { style: `color: ${COLORS[r.decision] ?? "inherit"}` }),
    r.label === null ? "" : ` ${r.className} (${(100 * (r.confidence ?? 0)).toFixed(1)}%)${r.label === row.truth ? "" : " wrong"}`,
    ` ${ms(r.timings.totalMs)} ms`,
    r.reason ? ` (${r.reason})` : "",
  ]);
  const log = $("split-log");
  log.prepend(item);
  while (log.childElementCount > 40) log.lastElementChild?.remove();
  render();
}

async function run(): Promise<void> {
  const button = $("split-run") as HTMLButtonElement;
  if (split.running) {
    split.running = false;
    return;
  }
  split.error = null;
  $("split-status").textContent = "Loading the split trunk from the Worker...";
  try {
    split.stream?.free();
    split.stream = await HiStream.create({ endpoint: state.workerUrl, modelSet: state.set!.name, timeoutMs: 2000 });
  } catch (e) {
    split.error = String(e);
    $("split-status").textContent = `Could not start the split stream: ${e}`;
    return;
  }
  const stream = split.stream;
  $("split-status").textContent = `Planner: exit when p1 > ${(stream.planner().exit ?? 0).toFixed(2)}; a sample that waits more than ` +
    `two device periods (at least 50 ms) is skipped.`;
  split.rows.length = 0;
  split.pushed = 0;
  $("split-log").replaceChildren();
  split.running = true;
  button.textContent = "Stop";
  const rate = Number(($("split-rate") as HTMLSelectElement).value);
  const limit = Math.min(state.labels.length, Number(($("split-limit") as HTMLInputElement).value) || state.labels.length);
  const start = performance.now();
  const answers: Promise<void>[] = [];
  // Arrivals on a fixed schedule: sample k arrives at start + k / rate, whether or not the device
  // is done with the earlier ones.
  while (split.running && split.pushed < limit) {
    const k = split.pushed++;
    const truth = state.labels[k];
    answers.push(stream.push(sample(k)).then((result) => addRow({ truth, result }), (e) => {
      split.error = String(e);
    }));
    const due = start + ((k + 1) * 1000) / rate;
    await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
  }
  await Promise.all(answers);
  split.running = false;
  button.textContent = "Start split stream";
  render();
}

/** Wires the panel; it is enabled for sets with a split model. */
export function setUpSplit(): void {
  $("split-run").addEventListener("click", () => void run());
}

/** Enables or disables the panel for the current set. */
export function syncSplit(hasSplit: boolean): void {
  ($("split-run") as HTMLButtonElement).disabled = !hasSplit || !state.set?.samples;
  $("split-status").textContent = hasSplit
    ? "Push the test images at the chosen rate through the split model: trunk in the browser, tail in the Worker."
    : `${state.set?.name ?? "This set"} has no split model.`;
}
