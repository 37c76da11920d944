// The one quantile the JavaScript side uses (the benchmark pages, their runners and the demo page);
// the Rust side's is `hiedge_eval::metrics::quantile`. Nearest rank on the sorted values.

/**
 * The `q` quantile (0..=1) of `values` by nearest rank; NaN when empty.
 * @param {number[]} values
 * @param {number} q
 * @returns {number}
 */
export function quantile(values, q) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.round((sorted.length - 1) * q)];
}

/**
 * Mean; NaN when empty.
 * @param {number[]} values
 * @returns {number}
 */
export function mean(values) {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

/**
 * Median, 95th percentile and mean.
 * @param {number[]} values
 * @returns {{ median: number, p95: number, mean: number }}
 */
export function summarise(values) {
  return { median: quantile(values, 0.5), p95: quantile(values, 0.95), mean: mean(values) };
}

/**
 * A distribution-free confidence interval for the median: the order statistics whose ranks are
 * n/2 -/+ z * sqrt(n) / 2 (the binomial's normal approximation; z = 1.96 for 95%). [NaN, NaN] below
 * 10 values.
 * @param {number[]} values
 * @param {number} [z]
 * @returns {[number, number]}
 */
export function medianInterval(values, z = 1.96) {
  const n = values.length;
  if (n < 10) return [NaN, NaN];
  const sorted = [...values].sort((a, b) => a - b);
  const half = (z * Math.sqrt(n)) / 2;
  const lo = Math.max(0, Math.floor(n / 2 - half) - 1);
  const hi = Math.min(n - 1, Math.ceil(n / 2 + half) - 1);
  return [sorted[lo], sorted[hi]];
}

/**
 * A seeded pseudo-random generator (mulberry32): the same seed gives the same sequence on every
 * machine, so a run's schedule and resamples can be repeated.
 * @param {number} seed
 * @returns {() => number} uniform in [0, 1)
 */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The benchmarks' sample schedule: the indices 0..count-1 in one order shuffled by `random`, handed
 * out `n` at a time and round again after the last, so every index is used once before any twice.
 * @param {number} count
 * @param {() => number} random
 * @returns {(n: number) => number[]}
 */
export function sampleSchedule(count, random) {
  const order = shuffled([...Array(count).keys()], random);
  let next = 0;
  return (n) => Array.from({ length: n }, () => order[next++ % count]);
}

/**
 * A shuffled copy of `items` (Fisher-Yates with `random`).
 * @template T
 * @param {T[]} items
 * @param {() => number} random
 * @returns {T[]}
 */
export function shuffled(items, random) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * A 95% percentile-bootstrap interval of `statistic` over paired samples: `series` are arrays of
 * the same length whose i-th values belong together (the same image), resampled together.
 * `statistic(...resampledSeries)` returns a number. [NaN, NaN] below 10 pairs.
 * @param {number[][]} series
 * @param {(...s: number[][]) => number} statistic
 * @param {{ resamples?: number, seed?: number }} [options]
 * @returns {[number, number]}
 */
export function bootstrapInterval(series, statistic, { resamples = 2000, seed = 1 } = {}) {
  const n = series[0]?.length ?? 0;
  if (n < 10 || series.some((s) => s.length !== n)) return [NaN, NaN];
  const random = seededRandom(seed);
  const values = [];
  const picked = series.map(() => new Array(n));
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) {
      const k = Math.floor(random() * n);
      for (let s = 0; s < series.length; s++) picked[s][i] = series[s][k];
    }
    values.push(statistic(...picked));
  }
  return [quantile(values, 0.025), quantile(values, 0.975)];
}

/**
 * The 95% Wilson interval of a proportion of `k` successes in `n`.
 * @param {number} k
 * @param {number} n
 * @returns {[number, number]}
 */
export function wilsonInterval(k, n) {
  if (!n) return [NaN, NaN];
  const z = 1.96, p = k / n, d = 1 + (z * z) / n;
  const c = (p + (z * z) / (2 * n)) / d;
  const h = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [c - h, c + h];
}
