//! Has the tiny model's confidence distribution moved away from the calibration set's?

use serde::Serialize;

use crate::manifest::MonitoringBaseline;

/// A goodness-of-fit test of the tiny model's top probability `p1` against the calibration set's
/// histogram ([`MonitoringBaseline`]), on consecutive non-overlapping blocks of `window` samples.
///
/// Per block: Pearson's chi-square statistic over the baseline's bins, divided by `1 + window /
/// calibration samples` (the baseline's own shares are estimates too), against the chi-square
/// quantile for `bins - 1` degrees of freedom at `1 - alpha` (Wilson-Hilferty): a block alarms with
/// probability about `alpha` when nothing changed, so over `n` samples about `alpha * n / window`
/// false alarms are expected. Also reported: the population stability index (PSI) of the block, the
/// drift score teams already read (above 0.25 is usually called a large shift).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfidenceDrift {
    edges: Vec<f32>,
    expected: Vec<f64>,
    window: usize,
    inflation: f64,
    critical: f64,
    counts: Vec<u64>,
    filled: usize,
    last: Option<BlockTest>,
    blocks: u64,
    alarms: u64,
}

/// One block's test.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockTest {
    /// The (deflated) chi-square statistic.
    pub chi2: f64,
    /// Population stability index of the block against the baseline.
    pub psi: f64,
    /// `chi2 > critical`.
    pub alarm: bool,
}

/// The drift test's state, for reports.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftState {
    /// Samples per block.
    pub window: usize,
    /// The alarm level of the chi-square statistic.
    pub critical: f64,
    /// The last complete block's test (none before the first block is full).
    pub last: Option<BlockTest>,
    /// Samples in the block being filled.
    pub filled: usize,
    /// Complete blocks so far.
    pub blocks: u64,
    /// Blocks that alarmed.
    pub alarms: u64,
}

impl ConfidenceDrift {
    /// A test against `baseline` on blocks of `window` samples at level `alpha`.
    pub fn new(baseline: &MonitoringBaseline, window: usize, alpha: f64) -> Self {
        // A bin the calibration set never filled still gets a small share: a block that fills it
        // is evidence of drift, not a division by zero.
        let floor = 0.5 / baseline.samples.max(1) as f64;
        let raw: Vec<f64> = baseline.p1_fractions.iter().map(|f| f64::from(*f).max(floor)).collect();
        let total: f64 = raw.iter().sum();
        let expected = raw.iter().map(|f| f / total).collect::<Vec<_>>();
        let window = window.max(1);
        let dof = (expected.len().max(2) - 1) as f64;
        Self {
            edges: baseline.p1_edges.clone(),
            counts: vec![0; expected.len()],
            expected,
            window,
            inflation: 1.0 + window as f64 / baseline.samples.max(1) as f64,
            critical: chi2_quantile(dof, alpha),
            filled: 0,
            last: None,
            blocks: 0,
            alarms: 0,
        }
    }

    /// The bin of `p1` ([`bin_of`] on the baseline's edges).
    pub fn bin(&self, p1: f32) -> usize {
        bin_of(&self.edges, p1)
    }

    /// One sample's top probability. Returns the block's test when this sample completed one.
    pub fn push(&mut self, p1: f32) -> Option<BlockTest> {
        let b = self.bin(p1);
        self.counts[b] += 1;
        self.filled += 1;
        if self.filled < self.window {
            return None;
        }
        let n = self.filled as f64;
        let k = self.counts.len() as f64;
        let (mut chi2, mut psi) = (0.0, 0.0);
        for (o, e) in self.counts.iter().zip(&self.expected) {
            let o = *o as f64;
            chi2 += (o - n * e).powi(2) / (n * e);
            let a = (o + 0.5) / (n + 0.5 * k);
            psi += (a - e) * (a / e).ln();
        }
        let chi2 = chi2 / self.inflation;
        let test = BlockTest { chi2, psi, alarm: chi2 > self.critical };
        self.blocks += 1;
        self.alarms += u64::from(test.alarm);
        self.last = Some(test);
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.filled = 0;
        Some(test)
    }

    /// Whether the last complete block alarmed.
    pub fn last_alarmed(&self) -> bool {
        self.last.is_some_and(|t| t.alarm)
    }

    /// Where it stands.
    pub fn state(&self) -> DriftState {
        DriftState {
            window: self.window,
            critical: self.critical,
            last: self.last,
            filled: self.filled,
            blocks: self.blocks,
            alarms: self.alarms,
        }
    }
}

/// The bin of `p1` under ascending `edges`: how many edges it is above (bin `i` holds
/// `edges[i-1] < p1 <= edges[i]`). The one rule the calibration's histogram and the drift test share.
pub fn bin_of(edges: &[f32], p1: f32) -> usize {
    edges.partition_point(|e| *e < p1)
}

/// The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The chi-square quantile with `dof` degrees of freedom exceeded with probability `alpha`
/// (Wilson-Hilferty's cube-root normal approximation).
pub fn chi2_quantile(dof: f64, alpha: f64) -> f64 {
    let z = normal_quantile(1.0 - alpha);
    let c = 2.0 / (9.0 * dof);
    dof * (1.0 - c + z * c.sqrt()).powi(3).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::test_rng::Rng;
    use std::collections::BTreeMap;

    fn baseline(edges: Vec<f32>, fractions: Vec<f32>, samples: u64) -> MonitoringBaseline {
        MonitoringBaseline { samples, offload_fractions: BTreeMap::new(), p1_edges: edges, p1_fractions: fractions }
    }

    #[test]
    fn quantiles_match_the_tables() {
        // Normal: 0.975 -> 1.959964, 0.9999 -> 3.719016; chi-square tables: 9 dof at 0.05 -> 16.919,
        // at 0.001 -> 27.877; 4 dof at 0.05 -> 9.488 (Wilson-Hilferty is within 1% there; it is
        // worst at 1 dof, 4% high: 3.99 for 3.841).
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-5);
        assert!((normal_quantile(0.9999) - 3.719016).abs() < 1e-5);
        assert!((normal_quantile(0.025) + 1.959964).abs() < 1e-5);
        assert!((chi2_quantile(9.0, 0.05) - 16.919).abs() / 16.919 < 0.01);
        assert!((chi2_quantile(9.0, 0.001) - 27.877).abs() / 27.877 < 0.01);
        assert!((chi2_quantile(4.0, 0.05) - 9.488).abs() / 9.488 < 0.01);
        assert!((chi2_quantile(1.0, 0.05) - 3.841).abs() / 3.841 < 0.05);
    }

    #[test]
    fn bins_follow_the_edges() {
        let d = ConfidenceDrift::new(&baseline(vec![0.5, 0.9], vec![0.3, 0.3, 0.4], 100), 10, 0.01);
        assert_eq!([d.bin(0.1), d.bin(0.5), d.bin(0.51), d.bin(0.9), d.bin(0.95), d.bin(1.0)], [0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn false_alarms_at_about_alpha_and_a_shift_is_caught_in_one_block() {
        // The baseline: deciles of a uniform p1 (10 equal bins). 400 blocks of 250 in-control
        // samples (100,000) at alpha = 0.01: about 4 false alarms expected; a binomial(400, 0.01)
        // exceeds 12 with probability below 1e-4 (and this seeded stream is the same every run).
        let edges: Vec<f32> = (1..10).map(|i| i as f32 / 10.0).collect();
        let b = baseline(edges, vec![0.1; 10], 1_000_000);
        let mut d = ConfidenceDrift::new(&b, 250, 0.01);
        let mut rng = Rng(11);
        for _ in 0..100_000 {
            d.push(rng.next_f64() as f32);
        }
        let s = d.state();
        assert_eq!(s.blocks, 400);
        assert!(s.alarms <= 12, "{} false alarms in 400 blocks at alpha 0.01", s.alarms);
        // Then p1 shifts down (the model is less sure: 30% of the samples move below 0.2, which
        // doubles those two bins): the next complete block alarms, with a PSI far above the
        // in-control blocks'.
        let quiet_psi = s.last.unwrap().psi;
        let test = (0..250).find_map(|_| {
            let u = rng.next_f64();
            d.push(if rng.next_f64() < 0.3 { (u * 0.2) as f32 } else { u as f32 })
        });
        let test = test.unwrap();
        assert!(test.alarm && test.psi > 5.0 * quiet_psi, "{test:?} after in-control PSI {quiet_psi}");
    }
}
