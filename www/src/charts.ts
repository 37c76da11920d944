// The three live charts: the last samples' latency breakdown, the latency histogram by decision,
// and the accuracy / offloading trade-off (computed by the client's thresholdSweep).
import { thresholdSweep, type ClassifyResult } from "hiedge";
import { Chart, registerables } from "chart.js";
import { $, state, type Row } from "./state";

Chart.register(...registerables);

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

type Timings = ClassifyResult["timings"];
const HIST_EDGES = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, Infinity];

export function renderCharts(rows: Row[]): void {
  const n = rows.length;
  const last = rows.slice(-60);
  charts.timeline.data.labels = last.map((r) => `#${r.index}`);
  const parts = [
    (t: Timings) => t.preprocessMs, (t: Timings) => t.localMs, (t: Timings) => t.decisionMs,
    (t: Timings) => t.roundTripMs - (t.remoteMs ?? 0), (t: Timings) => t.remoteMs ?? 0,
  ];
  parts.forEach((f, k) => (charts.timeline.data.datasets[k].data = last.map((r) => f(r.result.timings))));
  charts.timeline.update();

  const edges = HIST_EDGES;
  charts.hist.data.labels = edges.map((e, i) => (i === 0 ? `< ${e}` : e === Infinity ? `>= ${edges[i - 1]}` : `${edges[i - 1]}-${e}`));
  ["local", "offloaded", "fallback"].forEach((d, k) => {
    const counts = edges.map(() => 0);
    for (const r of rows) if (r.result.decision === d) counts[edges.findIndex((e) => r.result.timings.totalMs < e)]++;
    charts.hist.data.datasets[k].data = counts;
  });
  charts.hist.update();

  // Trade-off: offload the samples whose score is at or below each threshold, answered by the
  // large model's label for them (computed by hiedge-core through the client).
  const samples = rows.map((r) => ({
    score: r.result.score,
    localRight: r.result.localLabel === r.truth,
    remoteRight: state.largeLabels[r.index] === r.truth,
  }));
  charts.curve.data.datasets[0].data = thresholdSweep(samples, 100).map((p) => ({ x: 100 * p.offloaded, y: 100 * p.accuracy }));
  const wanted = rows.filter((r) => r.result.offloadWanted).length;
  const correct = rows.filter((r) => r.result.label === r.truth).length;
  charts.curve.data.datasets[1].data = n ? [{ x: (100 * wanted) / n, y: (100 * correct) / n }] : [];
  charts.curve.update();
}
