// The monitoring panel: what the client's monitor (hiedge-core's Monitor, `client.monitor()`) says
// about the run against the set's calibration: the offload rate over the sliding window against the
// calibrated rate, the confidence-drift test of each block, per-class offloads, the large model's
// agreement with the device on offloaded samples beside the label-free estimate, and alarms. The
// shift control changes every streamed sample (darker, inverted, rotated) so the alarms can be seen
// firing.
import type { MonitorState } from "hiedge";
import { Chart, registerables } from "chart.js";
import { $, state, type Shift } from "./state";

// This module is evaluated before charts.ts (controls.ts imports it): register Chart.js's parts here
// too (registering twice changes nothing).
Chart.register(...registerables);

const chart = {
  rate: new Chart<"line", (number | null)[], string>($("chart-monitor-rate") as HTMLCanvasElement, {
    type: "line",
    data: { labels: [], datasets: [
      { label: "offload rate (window)", data: [], borderColor: "#1565c0", pointRadius: 0 },
      { label: "calibrated rate", data: [], borderColor: "#9e9e9e", borderDash: [6, 4], pointRadius: 0 },
      { label: "estimated accuracy on kept (window)", data: [], borderColor: "#2e7d32", pointRadius: 0 },
    ] },
    options: { animation: false, scales: { x: { title: { display: true, text: "sample" } },
      y: { min: 0, max: 100, title: { display: true, text: "%" } } } },
  }),
  classes: new Chart<"bar", number[], string>($("chart-monitor-classes") as HTMLCanvasElement, {
    type: "bar",
    data: { labels: [], datasets: [{ label: "offloaded % by predicted class", data: [], backgroundColor: "#1565c0" }] },
    options: { animation: false, scales: { y: { min: 0, max: 100 } } },
  }),
};

/** Monitor readings, one per render, for the chart: cleared with the run. */
const history: { sample: number; rate: number; target: number; kept: number | null }[] = [];

/** Applies the page's shift to one sample (a copy; the committed images are unchanged). */
export function shifted(pixels: Uint8Array): Uint8Array {
  const shift: Shift = state.shift;
  if (shift === "none") return pixels;
  const out = new Uint8Array(pixels.length);
  if (shift === "darken") for (let i = 0; i < out.length; i++) out[i] = pixels[i] * 0.4;
  else if (shift === "invert") for (let i = 0; i < out.length; i++) out[i] = 255 - pixels[i];
  else {
    // A quarter turn, per channel (interleaved rows of height x width x channels).
    const { height: h, width: w, channels: c } = state.shape;
    if (h !== w) return pixels;
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++)
        for (let k = 0; k < c; k++) out[(x * w + (w - 1 - y)) * c + k] = pixels[(y * w + x) * c + k];
  }
  return out;
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? "-" : `${(100 * x).toFixed(1)}%`);

/** Shows the monitor's state (or why there is none). */
export async function renderMonitor(): Promise<void> {
  const c = state.client;
  const status = $("monitor-status");
  if (!c) return;
  let m: MonitorState | null = null;
  try {
    m = await c.monitor();
  } catch (e) {
    status.textContent = `monitor: ${e}`;
    return;
  }
  if (!m) {
    status.textContent = state.set?.monitoring
      ? "No monitor for this policy: it compares the offload rate with a threshold policy's calibrated rate."
      : "This model set has no calibration to watch against (run `hiedge calibrate` on it).";
    return;
  }
  const last = history[history.length - 1];
  if (m.samples === 0) history.length = 0;
  else if (!last || last.sample !== m.samples) {
    history.push({ sample: m.samples, rate: m.offload.windowRate, target: m.offload.target, kept: m.accuracy.keptWindow });
  }
  chart.rate.data.labels = history.map((h) => String(h.sample));
  chart.rate.data.datasets[0].data = history.map((h) => 100 * h.rate);
  chart.rate.data.datasets[1].data = history.map((h) => 100 * h.target);
  chart.rate.data.datasets[2].data = history.map((h) => (h.kept === null ? null : 100 * h.kept));
  chart.rate.update();
  chart.classes.data.labels = state.classes.slice(0, m.classes.length);
  chart.classes.data.datasets[0].data = m.classes.map((k) => (k.predicted ? (100 * k.offloaded) / k.predicted : 0));
  chart.classes.update();

  status.textContent = `${m.samples} samples, window ${m.window}`;
  $("monitor-rate").textContent = `${pct(m.offload.windowRate)} (window), ${pct(m.offload.overallRate)} overall; calibrated ${pct(m.offload.target)}`;
  const block = m.drift.last;
  $("monitor-drift").textContent = block
    ? `last block: chi-square ${block.chi2.toFixed(1)} against ${m.drift.critical.toFixed(1)}, PSI ${block.psi.toFixed(3)}${block.alarm ? " (drift)" : ""}`
    : `first block after ${m.window} samples`;
  $("monitor-accuracy").textContent = `estimated on kept: ${pct(m.accuracy.keptWindow)} (window), ${pct(m.accuracy.keptOverall)} overall; ` +
    `offloaded: large model agreed ${pct(m.accuracy.offloadedAgreement)} vs estimate ${pct(m.accuracy.offloadedEstimate)} (${m.accuracy.offloadedAnswered} answered)`;
  const alarms = $("monitor-alarms");
  const items = m.alarms.map((a) => {
    const li = document.createElement("li");
    li.textContent = `${a.kind === "offload_rate" ? "offload rate" : "confidence drift"} at sample ${a.sample}`;
    return li;
  });
  alarms.replaceChildren(...items);
  $("monitor-panel").classList.toggle("alarmed", m.offload.cusum.alarm || Boolean(block?.alarm));
}

/** Clears the chart history (a new run or a new set). */
export function resetMonitor(): void {
  history.length = 0;
}

/** Wires the shift control. */
export function setUpMonitor(changed: () => void): void {
  const select = $("shift") as HTMLSelectElement;
  select.addEventListener("change", () => {
    state.shift = select.value as Shift;
    changed();
  });
}
