//! The accuracy / offloading trade-off of a threshold rule over samples already seen: what
//! "offload when `score <= threshold`" would have given at each threshold. The demo page draws it
//! live from its results; the offline sweeps over whole datasets are in `hiedge-eval`.
//! [`fit_threshold`] finds the threshold for a target accuracy or offload share: `hiedge calibrate`
//! and the browser's `HiClient.calibrate` both use it.

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

/// What a threshold is fitted for.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CalibrationTarget {
    /// The least offloading whose accuracy (remote answers for offloaded samples, local ones for
    /// kept samples) is at least this (0..=1).
    Accuracy(f64),
    /// The most offloading whose offloaded share is at most this (0..=1): a budget of remote calls.
    Offload(f64),
}

/// The threshold of "offload when `score <= threshold`" that meets `target` on `samples`, found
/// exactly by scanning the samples in score order (a cut falls only between distinct scores), with
/// what it gives on them. `None` when no threshold in `0..=1` meets it (or there are no samples,
/// or the target is not in `0..=1`).
///
/// ```
/// use hiedge_core::policy::tradeoff::{fit_threshold, CalibrationTarget, ScoredSample};
/// let s = |score, local_right| ScoredSample { score, local_right, remote_right: true };
/// let samples = [s(0.9, true), s(0.8, true), s(0.4, false), s(0.2, false)];
/// let p = fit_threshold(&samples, CalibrationTarget::Accuracy(1.0)).unwrap();
/// assert_eq!((p.threshold, p.offloaded, p.accuracy), (0.4, 0.5, 1.0));
/// let p = fit_threshold(&samples, CalibrationTarget::Offload(0.25)).unwrap();
/// assert_eq!((p.threshold, p.offloaded, p.accuracy), (0.2, 0.25, 0.75));
/// ```
pub fn fit_threshold(samples: &[ScoredSample], target: CalibrationTarget) -> Option<TradeoffPoint> {
    let goal = match target {
        CalibrationTarget::Accuracy(a) | CalibrationTarget::Offload(a) => a,
    };
    if samples.is_empty() || !(0.0..=1.0).contains(&goal) {
        return None;
    }
    let mut order: Vec<&ScoredSample> = samples.iter().collect();
    order.sort_by(|a, b| a.score.total_cmp(&b.score));
    let n = samples.len();
    let mut right = samples.iter().filter(|s| s.local_right).count() as i64;
    let need = (goal * n as f64 - 1e-9).ceil() as i64;
    let max_offloaded = (goal * n as f64 + 1e-9).floor() as usize;
    let point = |k: usize, right: i64| {
        // k offloaded: the k lowest scores; k = 0 needs a threshold below every score.
        let threshold = if k == 0 { 0.0 } else { order[k - 1].score };
        let valid = if k == 0 { order[0].score > 0.0 } else { (0.0..=1.0).contains(&threshold) };
        valid.then_some(TradeoffPoint { threshold, offloaded: k as f64 / n as f64, accuracy: right as f64 / n as f64 })
    };
    let mut best = None;
    for k in 0..=n {
        if k > 0 {
            let s = order[k - 1];
            right += s.remote_right as i64 - s.local_right as i64;
        }
        let boundary = k == 0 || k == n || order[k - 1].score < order[k].score;
        if !boundary {
            continue;
        }
        match target {
            CalibrationTarget::Accuracy(_) if right >= need => return point(k, right),
            CalibrationTarget::Offload(_) if k <= max_offloaded => best = point(k, right).or(best),
            _ => {}
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_meets_the_target_with_the_least_or_most_offloading_it_allows() {
        // Scores 0.05..0.95; local wrong on the three lowest, remote wrong on the highest.
        let samples: Vec<ScoredSample> = (0..10)
            .map(|i| ScoredSample { score: 0.05 + i as f32 / 10.0, local_right: i >= 3, remote_right: i != 9 })
            .collect();
        let p = fit_threshold(&samples, CalibrationTarget::Accuracy(1.0)).unwrap();
        assert_eq!((p.offloaded, p.accuracy), (0.3, 1.0));
        assert!((p.threshold - 0.25).abs() < 1e-6, "{p:?}");
        let p = fit_threshold(&samples, CalibrationTarget::Accuracy(0.7)).unwrap();
        assert_eq!((p.threshold, p.offloaded), (0.0, 0.0), "already met with nothing offloaded");
        let p = fit_threshold(&samples, CalibrationTarget::Offload(0.55)).unwrap();
        assert_eq!((p.offloaded, p.accuracy), (0.5, 1.0));
        // Offloading everything loses the sample only the local model got right.
        let p = fit_threshold(&samples, CalibrationTarget::Offload(1.0)).unwrap();
        assert_eq!((p.offloaded, p.accuracy), (1.0, 0.9));
        // The fitted threshold gives what it says under "offload when score <= threshold".
        for target in [CalibrationTarget::Accuracy(0.95), CalibrationTarget::Offload(0.2)] {
            let p = fit_threshold(&samples, target).unwrap();
            let off = samples.iter().filter(|s| s.score <= p.threshold).count() as f64 / 10.0;
            assert_eq!(off, p.offloaded, "{target:?}");
        }
        // Ties: two samples at one score are offloaded together or not at all.
        let tied = [
            ScoredSample { score: 0.5, local_right: false, remote_right: true },
            ScoredSample { score: 0.5, local_right: false, remote_right: true },
            ScoredSample { score: 0.9, local_right: true, remote_right: true },
        ];
        let p = fit_threshold(&tied, CalibrationTarget::Offload(0.5)).unwrap();
        assert_eq!(p.offloaded, 0.0);
        assert_eq!(fit_threshold(&tied, CalibrationTarget::Accuracy(0.5)).unwrap().offloaded, 2.0 / 3.0);
        // Unreachable or meaningless targets.
        let all_wrong = [ScoredSample { score: 0.3, local_right: false, remote_right: false }];
        assert_eq!(fit_threshold(&all_wrong, CalibrationTarget::Accuracy(0.5)), None);
        assert_eq!(fit_threshold(&[], CalibrationTarget::Offload(0.5)), None);
        assert_eq!(fit_threshold(&samples, CalibrationTarget::Offload(1.5)), None);
        // A score of 0 cannot be kept: threshold 0 offloads it.
        let zero = [ScoredSample { score: 0.0, local_right: true, remote_right: false }];
        assert_eq!(fit_threshold(&zero, CalibrationTarget::Offload(0.0)), None);
    }

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
