// The controls: policy, threshold, emulated network delay, and the sample stream (start, pause,
// reset), each sample classified by the client and rendered as it is answered.
import type { PolicyChoice, PolicyConfig } from "hiedge";
import { $, client, demo, sample, state } from "./state";
import { setWorkerDown } from "./client";
import { addThumb } from "./detail";
import { resetMonitor, shifted } from "./monitor";

/** Called after each answered sample and each control change (batched by the caller). */
let onChange: () => void = () => {};

/** Puts the threshold slider at the policy's threshold, or disables it for policies without one. */
export function syncThreshold(): void {
  const policy: PolicyConfig = client().policy();
  const slider = $("threshold") as HTMLInputElement;
  const threshold = "threshold" in policy ? policy.threshold : undefined;
  slider.disabled = threshold === undefined;
  if (threshold !== undefined) slider.value = String(threshold);
  $("threshold-value").textContent = threshold === undefined ? "n/a" : Number(threshold).toFixed(3);
}

/** Bumped when the run is reset or the set changes: answers of an older run are dropped. */
let generation = 0;

async function classifySample(index: number) {
  const gen = generation;
  const t0 = performance.now();
  const result = await client().classify(shifted(sample(index)));
  if (gen !== generation) return;
  const row = { index, truth: state.labels[index], result, wall: performance.now() - t0 };
  state.rows.push(row);
  demo.finished = state.rows.length;
  if (result.decision === "fallback") setWorkerDown(result.fallbackReason);
  else if (result.decision === "offloaded" && state.workerDown) setWorkerDown(null);
  addThumb(row);
  onChange();
}

async function run() {
  const button = $("run") as HTMLButtonElement;
  if (state.running) {
    state.running = false;
    return;
  }
  state.running = true;
  button.textContent = "Pause";
  const available = state.labels.length;
  const limit = Math.min(available, Math.max(1, Number(($("limit") as HTMLInputElement).value) || available));
  const gen = generation;
  while (state.running && state.next < limit && gen === generation) {
    const rate = Number(($("rate") as HTMLSelectElement).value);
    const start = performance.now();
    await classifySample(state.next++);
    const wait = rate > 0 ? 1000 / rate - (performance.now() - start) : 0;
    await new Promise((r) => setTimeout(r, Math.max(0, wait)));
  }
  state.running = false;
  button.textContent = state.next >= limit ? "Done" : "Start";
}

/** Stops and clears the run (the samples, totals, thumbnails and the client's statistics). */
export function resetRun(): void {
  generation++;
  state.running = false;
  state.rows.length = 0;
  state.next = 0;
  void state.client?.resetStats();
  $("grid").replaceChildren();
  $("detail").textContent = "Click a thumbnail.";
  ($("run") as HTMLButtonElement).textContent = "Start";
  demo.finished = 0;
  resetMonitor();
  onChange();
}

/** Applies the policy selected on the page to the (new) client; a policy the set cannot run (EE-HI
 * without an early-exit model, a calibrated one without calibration) falls back to the calibrated
 * LogisticTop2, or to OnlineHedge for an uncalibrated set. */
export async function syncPolicy(): Promise<void> {
  const select = $("policy") as HTMLSelectElement;
  if (select.selectedOptions[0]?.disabled) select.value = state.set?.calibrated === false ? "online_hedge" : "logistic_top2";
  await client().setPolicy(select.value as PolicyChoice);
  syncThreshold();
}

/** Wires the controls; `changed` re-renders the totals and charts. */
export function setUpControls(changed: () => void): void {
  onChange = changed;
  $("policy").addEventListener("change", async () => {
    await client().setPolicy(($("policy") as HTMLSelectElement).value as PolicyChoice);
    syncThreshold();
    onChange();
  });
  $("threshold").addEventListener("input", () => {
    const t = Number(($("threshold") as HTMLInputElement).value);
    const current = client().policy();
    if ("threshold" in current) void client().setPolicy({ ...current, threshold: t });
    $("threshold-value").textContent = t.toFixed(3);
    onChange();
  });
  $("delay").addEventListener("input", () => {
    const d = Number(($("delay") as HTMLInputElement).value);
    void client().setNetworkDelay(d);
    $("delay-value").textContent = `${d} ms`;
  });
  $("run").addEventListener("click", run);
  $("reset").addEventListener("click", resetRun);
  syncThreshold();
}
