//! The accuracy / offloading trade-off of a threshold rule over samples already seen: what
//! "offload when `score <= threshold`" would have given at each threshold. The demo page draws it
//! live from its results; the offline sweeps over whole datasets are in `hiedge-eval`.

use serde::{Deserialize, Serialize};

/// One answered sample: its decision score and whether each model's answer was right.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoredSample {
    /// The decision module's confidence score for the local answer.
    pub score: f32,
    /// The local model's answer was right.
    pub local_right: bool,
    /// The remote model's answer was (or would have been) right.
    pub remote_right: bool,
}

/// The outcome of one threshold over the samples.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TradeoffPoint {
    /// Offload when `score <= threshold`.
    pub threshold: f32,
    /// Fraction of the samples offloaded.
    pub offloaded: f64,
    /// Fraction answered right (the remote answer for offloaded samples, the local one otherwise).
    pub accuracy: f64,
}

/// The trade-off at `steps + 1` thresholds evenly spaced over `0..=1`; empty for no samples.
///
/// ```
/// use hiedge_core::policy::tradeoff::{threshold_sweep, ScoredSample};
/// let s = |score, local_right| ScoredSample { score, local_right, remote_right: true };
/// let points = threshold_sweep(&[s(0.9, true), s(0.4, false)], 2);
/// assert_eq!(points.iter().map(|p| (p.offloaded, p.accuracy)).collect::<Vec<_>>(),
///            [(0.0, 0.5), (1.0 / 2.0, 1.0), (1.0, 1.0)]);
/// ```
pub fn threshold_sweep(samples: &[ScoredSample], steps: u32) -> Vec<TradeoffPoint> {
    if samples.is_empty() || steps == 0 {
        return Vec::new();
    }
    let n = samples.len() as f64;
    (0..=steps)
        .map(|k| {
            let threshold = k as f32 / steps as f32;
            let (mut offloaded, mut right) = (0usize, 0usize);
            for s in samples {
                let offload = s.score <= threshold;
                offloaded += offload as usize;
                right += (if offload { s.remote_right } else { s.local_right }) as usize;
            }
            TradeoffPoint { threshold, offloaded: offloaded as f64 / n, accuracy: right as f64 / n }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ends_are_local_only_and_offload_all() {
        let samples: Vec<ScoredSample> = (0..10)
            .map(|i| ScoredSample { score: 0.05 + i as f32 / 10.0, local_right: i >= 3, remote_right: i != 9 })
            .collect();
        let points = threshold_sweep(&samples, 100);
        assert_eq!(points.len(), 101);
        // threshold 0: nothing offloaded, local accuracy 7/10; threshold 1: all offloaded, 9/10.
        assert_eq!((points[0].offloaded, points[0].accuracy), (0.0, 0.7));
        assert_eq!((points[100].offloaded, points[100].accuracy), (1.0, 0.9));
        // Offloading the three unsure wrong samples (scores 0.05..0.25) gives 10/10.
        assert_eq!(points[30].accuracy, 1.0);
        assert!(points.windows(2).all(|w| w[0].offloaded <= w[1].offloaded));
        assert!(threshold_sweep(&[], 10).is_empty());
    }
}
