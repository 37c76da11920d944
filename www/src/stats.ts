// The totals under the stream: counts, accuracy, offloading, latency and bytes, for HI and for the
// tiny-only and large-only baselines on the same samples.
import { mean, quantile } from "../../bench/stats.mjs";
import { $, ms, pct, state, type Row } from "./state";


/** Device-side time of a result: preprocessing, local model(s) and decision. */
export const localTime = (r: Row) => r.result.timings.preprocessMs + r.result.timings.localMs + r.result.timings.decisionMs;

export function renderStats(rows: Row[]): void {
  const n = rows.length;
  const by = (d: string) => rows.filter((r) => r.result.decision === d).length;
  const correct = rows.filter((r) => r.result.label === r.truth).length;
  const wanted = rows.filter((r) => r.result.offloadWanted).length;
  const totals = rows.map((r) => r.result.timings.totalMs);
  const localTimes = rows.map(localTime);
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
  $("bytes-large").textContent = String(n * state.sampleLength);
}
