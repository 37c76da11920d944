//! Watching a deployment: is HI still doing what it was calibrated to do?
//!
//! A [`Monitor`] is fed every decision (the tiny model's probabilities, whether the sample was
//! offloaded, and the large model's label when it answered) and keeps, without labels:
//! - the **offload rate** over a sliding window and overall, against the calibration set's, with a
//!   two-sided Bernoulli CUSUM alarm ([`BernoulliCusum`]: a false alarm at most once per
//!   `false_alarm_run` samples on average while nothing changed);
//! - **confidence drift**: the tiny model's top probability against the calibration set's
//!   histogram, a chi-square test per block of `window` samples at level `alpha`, with its PSI
//!   ([`ConfidenceDrift`]);
//! - **per predicted class**: samples, offloads and, on offloaded samples, how often the large
//!   model agreed (free labels);
//! - a **label-free accuracy estimate** of the tiny model on the samples it kept: the mean of the
//!   calibrated `P(tiny is right)` (the manifest's logistic_top2, fitted for exactly that), over the
//!   window and overall; on offloaded samples the same estimate stands beside the observed agreement
//!   with the large model, its check.
//!
//! Pure and I/O-free like the rest of core: the caller passes the time of each observation (its
//! own clock), and the same code runs in the browser client, the Worker and `hiedge monitor`.
//!
//! ```
//! use hiedge_core::manifest::MonitoringBaseline;
//! use hiedge_core::monitor::{Monitor, MonitorConfig, Observation};
//! let baseline = MonitoringBaseline {
//!     samples: 5000, offload_fractions: [("max_prob".to_string(), 0.2)].into(),
//!     p1_edges: vec![0.6, 0.9], p1_fractions: vec![0.2, 0.3, 0.5],
//! };
//! let mut m = Monitor::new(&baseline, "max_prob", (0.0, 1.0, 0.0), 2, MonitorConfig::default()).unwrap();
//! m.observe(&Observation { probs: &[0.95, 0.05], offloaded: false, remote_label: None, at_ms: 0.0 }).unwrap();
//! m.observe(&Observation { probs: &[0.55, 0.45], offloaded: true, remote_label: Some(1), at_ms: 1.0 }).unwrap();
//! let s = m.state();
//! assert_eq!((s.samples, s.classes[0].predicted, s.classes[0].offloaded, s.classes[0].agreed), (2, 2, 1, 0));
//! assert_eq!(s.offload.window_rate, 0.5);
//! ```

mod cusum;
mod drift;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{Manifest, MonitoringBaseline};
use crate::prob::{argmax, sigmoid, top2};

pub use cusum::{BernoulliCusum, CusumState};
pub use drift::{bin_of, chi2_quantile, normal_quantile, BlockTest, ConfidenceDrift, DriftState};

/// How a [`Monitor`] watches (all optional on the wire; the defaults are the documented design).
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Samples in the sliding window (rates, estimates) and in each drift-test block. Default 500.
    pub window: usize,
    /// The offload-rate alarm raises a false alarm at most once per this many samples on average
    /// while nothing changed. Default 1,000,000.
    pub false_alarm_run: f64,
    /// Level of each block's drift test. Default 0.001.
    pub drift_alpha: f64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self { window: 500, false_alarm_run: 1e6, drift_alpha: 1e-3 }
    }
}

/// One decision, as the monitor sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// The tiny model's probabilities (after the manifest's temperature: what the policy saw).
    pub probs: &'a [f32],
    /// Whether the sample was offloaded.
    pub offloaded: bool,
    /// The large model's label, when an offload was answered.
    pub remote_label: Option<usize>,
    /// When it happened, on the caller's clock (milliseconds).
    pub at_ms: f64,
}

/// An alarm as it was raised.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// `offload_rate` or `confidence_drift`.
    pub kind: AlarmKind,
    /// The sample (1-based count) that raised it.
    pub sample: u64,
    /// Its time on the caller's clock.
    pub at_ms: f64,
}

/// What alarmed.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// The offload rate left the calibrated one (CUSUM).
    OffloadRate,
    /// The tiny model's confidence distribution left the calibration set's (chi-square).
    ConfidenceDrift,
}

/// The offload rate against the calibrated one.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadState {
    /// The calibration set's offload fraction for the active policy.
    pub target: f64,
    /// Over the last `window` samples.
    pub window_rate: f64,
    /// Over every sample.
    pub overall_rate: f64,
    /// The CUSUM alarm.
    pub cusum: CusumState,
}

/// The label-free accuracy estimate and its check.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccuracyEstimate {
    /// Estimated accuracy of the tiny model on the samples it kept in the window (None: none kept).
    pub kept_window: Option<f64>,
    /// The same over every kept sample.
    pub kept_overall: Option<f64>,
    /// Over offloaded samples the large model answered: the estimate of the tiny model's accuracy...
    pub offloaded_estimate: Option<f64>,
    /// ...and how often the large model gave the tiny model's label (its check: agreement, not
    /// accuracy, since the large model errs too).
    pub offloaded_agreement: Option<f64>,
    /// Offloaded samples with the large model's label.
    pub offloaded_answered: u64,
}

/// One predicted class.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassState {
    /// Samples the tiny model gave this label.
    pub predicted: u64,
    /// Of which offloaded.
    pub offloaded: u64,
    /// Of which the large model answered.
    pub answered: u64,
    /// Of which the large model gave the same label.
    pub agreed: u64,
}

/// Everything a [`Monitor`] knows, for a dashboard or a log line.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonitorState {
    /// Samples observed.
    pub samples: u64,
    /// The window's length.
    pub window: usize,
    /// Offload rate and its alarm.
    pub offload: OffloadState,
    /// Confidence drift and its alarm.
    pub drift: DriftState,
    /// The label-free accuracy estimate.
    pub accuracy: AccuracyEstimate,
    /// Per predicted class (index = label).
    pub classes: Vec<ClassState>,
    /// Every alarm episode's start, in order (an offload-rate episode lasts until its CUSUM is
    /// back at 0; a drift episode while consecutive blocks alarm).
    pub alarms: Vec<Alarm>,
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    offloaded: bool,
    p_correct: f64,
}

/// Watches one deployment's decisions (see the module docs).
#[derive(Debug, Clone)]
pub struct Monitor {
    config: MonitorConfig,
    logistic: (f32, f32, f32),
    target: f64,
    cusum: BernoulliCusum,
    drift: ConfidenceDrift,
    recent: VecDeque<Recent>,
    samples: u64,
    offloaded: u64,
    kept_p_sum: f64,
    kept: u64,
    answered_p_sum: f64,
    answered: u64,
    agreed: u64,
    classes: Vec<ClassState>,
    alarms: Vec<Alarm>,
}

impl Monitor {
    /// A monitor against `baseline` for the calibrated policy `policy` (a key of
    /// `baseline.offload_fractions`), estimating `P(tiny is right)` as `sigmoid(bias + w1 p1 + w2 p2)`
    /// with `logistic = (bias, w1, w2)`, over `classes` labels.
    pub fn new(
        baseline: &MonitoringBaseline,
        policy: &str,
        logistic: (f32, f32, f32),
        classes: usize,
        config: MonitorConfig,
    ) -> Result<Self> {
        baseline.validate()?;
        let target =
            baseline.offload_fractions.get(policy).copied().map(f64::from).ok_or_else(|| Error::ManifestInvalid {
                field: "decision.monitoring.offload_fractions".into(),
                reason: format!(
                    "has no offload fraction for the policy `{policy}` (calibrate it with `hiedge calibrate`)"
                ),
            })?;
        if !(config.window >= 1
            && config.false_alarm_run >= 1.0
            && config.drift_alpha > 0.0
            && config.drift_alpha < 1.0)
        {
            return Err(Error::Monitor(format!(
                "config: needs window >= 1, falseAlarmRun >= 1 and 0 < driftAlpha < 1; got {}, {} and {}",
                config.window, config.false_alarm_run, config.drift_alpha
            )));
        }
        let cusum = BernoulliCusum::for_false_alarm_run(target, config.false_alarm_run)
            .ok_or_else(|| Error::Monitor(format!("no offload-rate alarm for a target rate of {target}")))?;
        Ok(Self {
            config,
            logistic,
            target,
            cusum,
            drift: ConfidenceDrift::new(baseline, config.window, config.drift_alpha),
            recent: VecDeque::with_capacity(config.window),
            samples: 0,
            offloaded: 0,
            kept_p_sum: 0.0,
            kept: 0,
            answered_p_sum: 0.0,
            answered: 0,
            agreed: 0,
            classes: vec![ClassState::default(); classes],
            alarms: Vec::new(),
        })
    }

    /// The monitor a manifest calibrated (`decision.monitoring`) for its policy `policy`
    /// (`logistic_top2` when `None`, the manifest's default).
    pub fn from_manifest(manifest: &Manifest, policy: Option<&str>, config: MonitorConfig) -> Result<Self> {
        let missing = || Error::ManifestInvalid {
            field: "decision.monitoring".into(),
            reason: "is missing: run `hiedge calibrate` on this set to measure what a deployment is watched against"
                .into(),
        };
        let d = manifest.decision.as_ref().ok_or_else(missing)?;
        let baseline = d.monitoring.as_ref().ok_or_else(missing)?;
        let l = d.logistic_top2;
        Self::new(baseline, policy.unwrap_or("logistic_top2"), (l.bias, l.w1, l.w2), manifest.classes.len(), config)
    }

    /// The settings it watches with.
    pub fn config(&self) -> MonitorConfig {
        self.config
    }

    /// The calibrated `P(tiny is right)` for these probabilities.
    pub fn p_correct(&self, probs: &[f32]) -> f64 {
        p_correct(self.logistic, probs)
    }

    /// [`p_correct`](Self::p_correct) from the top two probabilities.
    fn p_correct_top2(&self, p1: f32, p2: f32) -> f64 {
        p_correct_top2(self.logistic, p1, p2)
    }

    /// One decision. Fails (and records nothing) when the probabilities are not a finite
    /// distribution over the set's classes or the remote label is out of range.
    pub fn observe(&mut self, o: &Observation) -> Result<()> {
        let k = self.classes.len();
        if o.probs.len() != k || !o.probs.iter().all(|p| p.is_finite() && (0.0..=1.0).contains(p)) {
            return Err(Error::Monitor(format!("expected {k} probabilities in 0..=1, got {} values", o.probs.len())));
        }
        if o.remote_label.is_some_and(|r| r >= k) {
            return Err(Error::Monitor(format!("remote label {:?} is not one of {k} classes", o.remote_label)));
        }
        let label = argmax(o.probs);
        let (p1, p2) = top2(o.probs);
        let p_correct = self.p_correct_top2(p1, p2);
        self.samples += 1;
        let class = &mut self.classes[label];
        class.predicted += 1;
        if o.offloaded {
            self.offloaded += 1;
            class.offloaded += 1;
            if let Some(r) = o.remote_label {
                class.answered += 1;
                self.answered += 1;
                self.answered_p_sum += p_correct;
                if r == label {
                    class.agreed += 1;
                    self.agreed += 1;
                }
            }
        } else {
            self.kept += 1;
            self.kept_p_sum += p_correct;
        }
        if self.recent.len() == self.config.window {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent { offloaded: o.offloaded, p_correct });
        if self.cusum.push(o.offloaded) {
            self.alarms.push(Alarm { kind: AlarmKind::OffloadRate, sample: self.samples, at_ms: o.at_ms });
        }
        // A drift episode starts with an alarming block after a quiet one (or the first block).
        let quiet_before = !self.drift.last_alarmed();
        if self.drift.push(p1).is_some_and(|t| t.alarm) && quiet_before {
            self.alarms.push(Alarm { kind: AlarmKind::ConfidenceDrift, sample: self.samples, at_ms: o.at_ms });
        }
        Ok(())
    }

    /// Where the deployment stands.
    pub fn state(&self) -> MonitorState {
        let ratio = |a: f64, n: u64| (n > 0).then(|| a / n as f64);
        let n = self.recent.len();
        let window_off = self.recent.iter().filter(|r| r.offloaded).count();
        let (kept_sum, kept_n) =
            self.recent.iter().filter(|r| !r.offloaded).fold((0.0, 0u64), |(s, c), r| (s + r.p_correct, c + 1));
        MonitorState {
            samples: self.samples,
            window: self.config.window,
            offload: OffloadState {
                target: self.target,
                window_rate: if n == 0 { 0.0 } else { window_off as f64 / n as f64 },
                overall_rate: ratio(self.offloaded as f64, self.samples).unwrap_or(0.0),
                cusum: self.cusum.state(),
            },
            drift: self.drift.state(),
            accuracy: AccuracyEstimate {
                kept_window: ratio(kept_sum, kept_n),
                kept_overall: ratio(self.kept_p_sum, self.kept),
                offloaded_estimate: ratio(self.answered_p_sum, self.answered),
                offloaded_agreement: ratio(self.agreed as f64, self.answered),
                offloaded_answered: self.answered,
            },
            classes: self.classes.clone(),
            alarms: self.alarms.clone(),
        }
    }
}

/// The calibrated `P(tiny is right)` for these probabilities: `sigmoid(bias + w1 p1 + w2 p2)` with
/// `logistic = (bias, w1, w2)` (the manifest's logistic_top2) and `p1 >= p2` the top two.
pub fn p_correct(logistic: (f32, f32, f32), probs: &[f32]) -> f64 {
    let (p1, p2) = top2(probs);
    p_correct_top2(logistic, p1, p2)
}

fn p_correct_top2((b, w1, w2): (f32, f32, f32), p1: f32, p2: f32) -> f64 {
    f64::from(sigmoid(b + w1 * p1 + w2 * p2))
}

/// The baseline `hiedge calibrate` stores: `p1` of every calibration sample (after the
/// manifest's temperature), cut into `bins` quantile bins (ties merged, so saturated confidences
/// share one bin), and each policy's offload fraction there.
pub fn baseline_from_calibration(
    p1: &[f32],
    offload_fractions: std::collections::BTreeMap<String, f32>,
    bins: usize,
) -> Result<MonitoringBaseline> {
    if p1.is_empty() || !p1.iter().all(|p| p.is_finite()) {
        return Err(Error::Monitor("monitoring baseline: no calibration samples, or a non-finite probability".into()));
    }
    let mut sorted = p1.to_vec();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    let mut edges: Vec<f32> = Vec::new();
    for i in 1..bins.max(1) {
        let e = sorted[(i * n / bins).min(n - 1)];
        if e > 0.0 && e < 1.0 && edges.last().is_none_or(|l| e > *l) && e < sorted[n - 1] {
            edges.push(e);
        }
    }
    let mut counts = vec![0u64; edges.len() + 1];
    for p in &sorted {
        counts[bin_of(&edges, *p)] += 1;
    }
    let baseline = MonitoringBaseline {
        samples: n as u64,
        offload_fractions,
        p1_fractions: counts.iter().map(|c| (*c as f64 / n as f64) as f32).collect(),
        p1_edges: edges,
    };
    baseline.validate()?;
    Ok(baseline)
}

#[cfg(test)]
pub(crate) mod test_rng {
    /// SplitMix64: a seeded stream for tests (the same numbers on every machine).
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [0, 1).
        pub fn next_f64(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_rng::Rng;
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn baseline_bins_are_the_calibration_quantiles_with_ties_merged() {
        // 40% saturated at 1.0, the rest spread over [0.3, 0.9): edges at the deciles 0.4 ... 0.8;
        // the deciles at 1.0 are one edge-less top bin, holding the saturated 40% and the spread's
        // last tenth.
        let mut p1: Vec<f32> = (0..600).map(|i| 0.3 + 0.6 * i as f32 / 600.0).collect();
        p1.extend(std::iter::repeat_n(1.0, 400));
        let b = baseline_from_calibration(&p1, BTreeMap::from([("max_prob".into(), 0.2)]), 10).unwrap();
        assert_eq!(b.p1_edges.len(), 5, "{:?}", b.p1_edges);
        assert!((b.p1_edges[0] - 0.4).abs() < 1e-6 && (b.p1_edges[4] - 0.8).abs() < 1e-6, "{:?}", b.p1_edges);
        assert!((b.p1_fractions.last().unwrap() - 0.499).abs() < 1e-6, "{:?}", b.p1_fractions);
        assert!(b.p1_fractions[..5].iter().all(|f| (f - 0.1).abs() < 0.0011), "{:?}", b.p1_fractions);
        assert!(baseline_from_calibration(&[], BTreeMap::new(), 10).is_err());
        assert!(baseline_from_calibration(&[f32::NAN], BTreeMap::new(), 10).is_err());
    }

    /// The calibrated P(tiny is right) of these tests: sigmoid(-4 + 6 p1).
    const LOGISTIC: (f32, f32, f32) = (-4.0, 6.0, 0.0);

    /// A two-class stream whose tiny model predicts label 0 with top probability `p1` and is right
    /// with probability sigmoid(-4 + 6 p1) (so [`LOGISTIC`] is calibrated for it), offloading when
    /// `p1 <= threshold`; the large model always right.
    fn stream(m: &mut Monitor, rng: &mut Rng, n: usize, p1_range: (f64, f64), threshold: f64) -> (u64, u64) {
        let (mut kept, mut kept_right) = (0, 0);
        for i in 0..n {
            let p1 = p1_range.0 + (p1_range.1 - p1_range.0) * rng.next_f64();
            let right = 1.0 / (1.0 + (4.0 - 6.0 * p1).exp());
            let truth = usize::from(rng.next_f64() >= right);
            let offloaded = p1 <= threshold;
            let probs = [p1 as f32, (1.0 - p1) as f32];
            m.observe(&Observation {
                probs: &probs,
                offloaded,
                remote_label: offloaded.then_some(truth),
                at_ms: i as f64,
            })
            .unwrap();
            if !offloaded {
                kept += 1;
                kept_right += u64::from(truth == 0);
            }
        }
        (kept, kept_right)
    }

    #[test]
    fn quiet_when_nothing_changes_then_both_alarms_and_the_estimate_follow_a_shift() {
        // Calibration: p1 uniform in [0.5, 1), offload below 0.6 (20%).
        let mut rng = Rng(3);
        let cal: Vec<f32> = (0..20_000).map(|_| (0.5 + 0.5 * rng.next_f64()) as f32).collect();
        let baseline = baseline_from_calibration(&cal, BTreeMap::from([("max_prob".into(), 0.2)]), 10).unwrap();
        let mut m = Monitor::new(&baseline, "max_prob", LOGISTIC, 2, MonitorConfig::default()).unwrap();
        // 20,000 unshifted samples: no offload-rate alarm (designed for one per 10^6), drift at
        // alpha 0.001 over 40 blocks (expected 0.04 false alarms).
        let (kept, right) = stream(&mut m, &mut rng, 20_000, (0.5, 1.0), 0.6);
        let s = m.state();
        assert!(s.alarms.is_empty(), "{:?}", s.alarms);
        // The label-free estimate of the kept samples' accuracy (their mean calibrated P(right)):
        // within 1.5 points of what was right.
        let truth = right as f64 / kept as f64;
        assert!((s.accuracy.kept_overall.unwrap() - truth).abs() < 0.015, "{:?} vs {truth}", s.accuracy);
        // On offloaded samples the estimate and the (here perfect) large model's agreement match.
        let (e, a) = (s.accuracy.offloaded_estimate.unwrap(), s.accuracy.offloaded_agreement.unwrap());
        assert!((e - a).abs() < 0.03, "estimate {e}, agreement {a}");
        // The shift: the model becomes less sure (p1 in [0.5, 0.8)): offloads go to a third, and
        // both alarms fire within 500 samples.
        let start = m.state().samples;
        let (kept, right) = stream(&mut m, &mut rng, 3000, (0.5, 0.8), 0.6);
        let s = m.state();
        let first = |k: AlarmKind| s.alarms.iter().find(|a| a.kind == k).map(|a| a.sample - start);
        let rate_delay = first(AlarmKind::OffloadRate).expect("offload-rate alarm");
        let drift_delay = first(AlarmKind::ConfidenceDrift).expect("drift alarm");
        assert!(rate_delay <= 500 && drift_delay <= 500, "alarms after {rate_delay} and {drift_delay} samples");
        // The window's estimate follows the new accuracy of what is kept (p1 in (0.6, 0.8)), within
        // 3 points (a window of 500 samples, about 330 of them kept).
        let truth = right as f64 / kept as f64;
        assert!((s.accuracy.kept_window.unwrap() - truth).abs() < 0.03, "{:?} vs {truth}", s.accuracy);
        assert!(s.offload.window_rate > 0.25, "{}", s.offload.window_rate);
        assert_eq!(s.classes.iter().map(|c| c.predicted).sum::<u64>(), 23_000);
    }

    #[test]
    fn bad_observations_are_refused_and_change_nothing() {
        let b = baseline_from_calibration(&[0.6, 0.7, 0.9], BTreeMap::from([("max_prob".into(), 0.3)]), 3).unwrap();
        let mut m = Monitor::new(&b, "max_prob", (0.0, 1.0, 0.0), 2, MonitorConfig::default()).unwrap();
        let bad = [[f32::NAN, 0.5].as_slice(), &[0.5, 0.2, 0.3], &[1.5, -0.5]];
        for probs in bad {
            assert!(m.observe(&Observation { probs, offloaded: false, remote_label: None, at_ms: 0.0 }).is_err());
        }
        assert!(m
            .observe(&Observation { probs: &[0.5, 0.5], offloaded: true, remote_label: Some(2), at_ms: 0.0 })
            .is_err());
        assert_eq!(m.state().samples, 0);
        assert!(Monitor::new(&b, "entropy", (0.0, 1.0, 0.0), 2, MonitorConfig::default()).is_err());
        let config = MonitorConfig { window: 0, ..MonitorConfig::default() };
        assert!(Monitor::new(&b, "max_prob", (0.0, 1.0, 0.0), 2, config).is_err());
    }
}
