//! Running HI metrics: accuracy, offload fraction, tiny accuracy on kept samples, cost.

use serde::{Deserialize, Serialize};

/// Counts over classified samples.
///
/// ```
/// let mut m = hiedge_eval::Metrics::default();
/// m.record(3, 3, 3, false); // kept, right
/// m.record(1, 2, 1, true);  // offloaded: tiny said 2, the large model said 1 (right)
/// assert_eq!(m.hi_accuracy(), 1.0);
/// assert_eq!(m.offload_fraction(), 0.5);
/// assert_eq!(m.cost_per_image(0.3), 0.15);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Samples seen.
    pub n: u64,
    /// Samples offloaded.
    pub offloaded: u64,
    /// Samples whose final (HI) label was right.
    pub correct: u64,
    /// Samples kept locally.
    pub kept: u64,
    /// Kept samples the tiny model got right.
    pub kept_correct: u64,
}

impl Metrics {
    /// Records one sample: its true label, the tiny model's label, the final label the system
    /// answered with (the remote one when offloaded and answered), and whether it was offloaded.
    pub fn record(&mut self, truth: usize, local_label: usize, final_label: usize, offloaded: bool) {
        self.n += 1;
        if offloaded {
            self.offloaded += 1;
        } else {
            self.kept += 1;
            self.kept_correct += (local_label == truth) as u64;
        }
        self.correct += (final_label == truth) as u64;
    }

    /// Fraction of samples whose final label was right (0 when empty).
    pub fn hi_accuracy(&self) -> f64 {
        ratio(self.correct, self.n)
    }

    /// Fraction of samples offloaded (0 when empty).
    pub fn offload_fraction(&self) -> f64 {
        ratio(self.offloaded, self.n)
    }

    /// Tiny accuracy on the samples it kept; `None` when none were kept.
    pub fn kept_accuracy(&self) -> Option<f64> {
        (self.kept > 0).then(|| ratio(self.kept_correct, self.kept))
    }

    /// `(beta * offloaded + misclassified) / n`: the HI cost with one offload costing `beta`
    /// misclassifications (0 when empty).
    pub fn cost_per_image(&self, beta: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        (beta * self.offloaded as f64 + (self.n - self.correct) as f64) / self.n as f64
    }
}

/// The `q` quantile (0..=1) of `values` by nearest rank on the sorted values (the same rule as the
/// JavaScript side's `bench/stats.mjs`); NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_metrics_are_zero_not_nan() {
        let m = Metrics::default();
        assert_eq!(m.hi_accuracy(), 0.0);
        assert_eq!(m.offload_fraction(), 0.0);
        assert_eq!(m.kept_accuracy(), None);
        assert_eq!(m.cost_per_image(0.5), 0.0);
    }

    #[test]
    fn counts_kept_and_offloaded_separately() {
        let mut m = Metrics::default();
        m.record(0, 0, 0, false); // kept right
        m.record(1, 0, 0, false); // kept wrong
        m.record(2, 0, 2, true); // offloaded, remote right
        m.record(3, 0, 1, true); // offloaded, remote wrong
        assert_eq!(m.hi_accuracy(), 0.5);
        assert_eq!(m.offload_fraction(), 0.5);
        assert_eq!(m.kept_accuracy(), Some(0.5));
        // (0.1 * 2 + 2 wrong) / 4
        assert!((m.cost_per_image(0.1) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!((quantile(&v, 0.0), quantile(&v, 0.5), quantile(&v, 1.0)), (1.0, 3.0, 5.0));
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.95), 4.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
