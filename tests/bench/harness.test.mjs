// The benchmark harness (scripts/bench.mjs + bench/bench.html) runs end to end on a handful of
// samples and writes well-formed results. It measures nothing worth reporting at this size.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const repo = resolve(import.meta.dirname, "../..");
const out = join(repo, "test-results/bench-smoke");
execFileSync("node", ["scripts/bench.mjs", "--n", "12", "--rtts", "0,20", "--ort-n", "5", "--stream-rates", "50,400", "--stream-n", "24",
  "--throttle", "4", "--out", out], { cwd: repo, stdio: "inherit" });
const r = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
const names = r.rows.map((x) => `${x.name}@${x.rttMs}`);
for (const want of ["tiny-only@null", "large-on-device@null", "always-offload@0", "always-offload@20", "HI logistic_top2@20", "EE-HI@0", "EE-HI@20"]) {
  assert.ok(names.includes(want), `missing row ${want} in ${names.join(", ")}`);
}
for (const row of r.rows) {
  assert.equal(row.n, 12);
  assert.equal(row.fallback, 0, `${row.name}: the Worker was up, no fallback expected`);
  assert.ok(row.accuracy >= 0 && row.accuracy <= 1 && row.meanMs > 0 && row.p95Ms >= 0, JSON.stringify(row));
}
const row = (name, rtt) => r.rows.find((x) => x.name === name && x.rttMs === rtt);
assert.equal(row("tiny-only", null).offload, 0);
assert.equal(row("tiny-only", null).bytesPerSample, 0);
assert.equal(row("always-offload", 20).offload, 1);
assert.equal(row("always-offload", 20).bytesPerSample, 784);
assert.ok(row("always-offload", 20).meanMs >= 20, "the emulated 20 ms must show in the latency");
for (const m of ["tiny", "large"]) {
  assert.ok(r.runtimes[m].tractMedianMs > 0 && r.runtimes[m].ortMedianMs > 0, JSON.stringify(r.runtimes[m]));
  assert.equal(r.runtimes[m].argmaxAgreement, 1, `${m}: tract and onnxruntime-web disagree`);
}
assert.match(readFileSync(join(out, "results.md"), "utf8"), /tract-wasm vs onnxruntime-web/);
assert.ok(r.profile.length >= 3 && r.profile.every((o) => o.op && o.ms >= 0), "per-operation profile of the tiny model");
// Streams: every method at every rate; every arrival processed or skipped; split rows report the
// stream's own counts.
assert.equal(r.streams.length, 5 * 2);
for (const s of r.streams) {
  assert.equal(s.arrived, 24, JSON.stringify(s));
  assert.equal(s.processed + s.skipped, 24, JSON.stringify(s));
  assert.ok(s.accuracyProcessed >= 0 && s.accuracyProcessed <= 1 && s.processedPerS >= 0, JSON.stringify(s));
  if (s.splitStats) assert.equal(s.splitStats.processed + s.splitStats.skipped, 24, JSON.stringify(s.splitStats));
}
assert.ok(r.streams.some((s) => s.name === "split, no exit" && (s.decisions.features ?? 0) + (s.decisions.raw ?? 0) > 0), "split without exit sends");
assert.match(readFileSync(join(out, "results.md"), "utf8"), /Streams: split inference/);
console.log("bench harness: all rows present and consistent");
