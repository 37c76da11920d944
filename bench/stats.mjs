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
