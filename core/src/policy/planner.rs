//! The split-inference planner (MDI-Exit on the web): for each sample of a stream, after the device
//! has run the split trunk, pick **exit** (the exit head answers), **send features** (the Worker runs
//! the tail), **send raw** (the Worker's large model, as HI) or **finish on device** (the device's
//! own model answers), from costs measured as the stream runs; and **admit** samples by a stated
//! rule when they arrive faster than the device serves them.
//!
//! Rules, in order:
//! 1. *Admission* ([`SplitPlanner::admit`]): when the device takes the next waiting sample, it is
//!    skipped (reported, never dropped silently) if it has already waited longer than `max_wait_ms`
//!    (by default two sample periods of the device's own measured work, at least 50 ms): under
//!    overload the device keeps up with the newest samples instead of building a backlog.
//! 2. *Exit* when the exit head's `p1 > exit` (the calibrated threshold that meets the accuracy
//!    target on the calibration set).
//! 3. Otherwise, while the Worker answers, the network path with the lower expected latency:
//!    **send features** (expected `features_rtt_ms`) or **send raw** (`raw_rtt_ms`), each a moving
//!    average of the measured round trips; until a path has been measured, its expected latency is
//!    its bytes over the measured throughput of the other (or features first). Every
//!    `explore_every`-th remote sample takes the other path, so neither estimate goes stale.
//! 4. **Finish on device** when the network is out: the last `failures_to_stop` remote attempts
//!    failed, or the cheaper expected round trip is over `latency_budget_ms`; one sample in
//!    `explore_every` still tries the network so that a recovered Worker is noticed.
//!
//! ```
//! use hiedge_core::policy::planner::{PlannerConfig, SplitAction, SplitPlanner};
//! let mut p = SplitPlanner::new(PlannerConfig { exit: Some(0.9), ..PlannerConfig::default() }, 792, 784);
//! assert_eq!(p.plan(0.95), SplitAction::Exit);
//! assert_eq!(p.plan(0.5), SplitAction::SendFeatures);
//! p.observe_remote(SplitAction::SendFeatures, Some(40.0));
//! p.observe_remote(SplitAction::SendRaw, Some(10.0));
//! assert_eq!(p.plan(0.5), SplitAction::SendRaw);
//! ```

use serde::{Deserialize, Serialize};

/// What happens to one sample after the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum SplitAction {
    /// The trunk's exit head answers.
    Exit,
    /// The trunk's features go to the Worker's tail.
    SendFeatures,
    /// The raw input goes to the Worker's large model (HI).
    SendRaw,
    /// The device's own model answers (the network is out or too slow).
    FinishOnDevice,
}

/// The exit threshold of a planner given none.
pub const DEFAULT_EXIT: f32 = 0.9;

/// The planner's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase", default)]
pub struct PlannerConfig {
    /// Exit when the exit head's `p1 > exit`; `None`: the manifest's calibrated threshold (the
    /// stream session fills it in), or 0.9 for a planner built alone.
    pub exit: Option<f32>,
    /// Skip a sample that waited longer than this before the device took it; `None`: two sample
    /// periods of the measured device work, at least 50 ms.
    pub max_wait_ms: Option<f64>,
    /// Finish on the device when the cheaper expected round trip is over this.
    pub latency_budget_ms: f64,
    /// Weight of a new measurement in the moving averages (0..1].
    pub smoothing: f64,
    /// Every n-th remote sample takes the other network path (0: never).
    pub explore_every: u32,
    /// Consecutive remote failures after which the device finishes samples itself.
    pub failures_to_stop: u32,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            exit: None,
            max_wait_ms: None,
            latency_budget_ms: 1000.0,
            smoothing: 0.2,
            explore_every: 20,
            failures_to_stop: 3,
        }
    }
}

/// A moving average that starts at its first measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct Ewma {
    /// The average; `None` before any measurement.
    pub value: Option<f64>,
    /// Measurements seen.
    pub count: u64,
}

impl Ewma {
    fn add(&mut self, x: f64, weight: f64) {
        if !x.is_finite() {
            return;
        }
        self.value = Some(match self.value {
            None => x,
            Some(v) => v + weight * (x - v),
        });
        self.count += 1;
    }
}

/// What the planner has measured so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct Costs {
    /// Device ms per sample (conversion, trunk, and the device model when it finishes).
    pub device_ms: Ewma,
    /// Round trip of a features request.
    pub features_rtt_ms: Ewma,
    /// Round trip of a raw request.
    pub raw_rtt_ms: Ewma,
}

/// The planner: admission, then one [`SplitAction`] per admitted sample.
#[derive(Debug, Clone)]
pub struct SplitPlanner {
    config: PlannerConfig,
    costs: Costs,
    feature_bytes: usize,
    raw_bytes: usize,
    remote_count: u32,
    failures: u32,
    device_count: u32,
}

impl SplitPlanner {
    /// A planner for features of `feature_bytes` and raw samples of `raw_bytes` on the wire.
    pub fn new(config: PlannerConfig, feature_bytes: usize, raw_bytes: usize) -> Self {
        SplitPlanner {
            config,
            costs: Costs::default(),
            feature_bytes,
            raw_bytes,
            remote_count: 0,
            failures: 0,
            device_count: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// What has been measured.
    pub fn costs(&self) -> &Costs {
        &self.costs
    }

    /// The waiting budget in effect (ms).
    pub fn max_wait_ms(&self) -> f64 {
        self.config.max_wait_ms.unwrap_or_else(|| (2.0 * self.costs.device_ms.value.unwrap_or(0.0)).max(50.0))
    }

    /// Rule 1: whether a sample that arrived at `arrived_ms` is taken at `now_ms`; `Err` holds the
    /// reason it is skipped.
    pub fn admit(&self, arrived_ms: f64, now_ms: f64) -> Result<(), String> {
        let waited = now_ms - arrived_ms;
        let budget = self.max_wait_ms();
        if waited > budget {
            return Err(format!(
                "waited {waited:.1} ms for the device (budget {budget:.1} ms): samples arrive faster than the device \
                 serves them"
            ));
        }
        Ok(())
    }

    fn expected_rtt(&self, action: SplitAction) -> Option<f64> {
        let (own, own_bytes, other, other_bytes) = match action {
            SplitAction::SendFeatures => {
                (self.costs.features_rtt_ms, self.feature_bytes, self.costs.raw_rtt_ms, self.raw_bytes)
            }
            _ => (self.costs.raw_rtt_ms, self.raw_bytes, self.costs.features_rtt_ms, self.feature_bytes),
        };
        own.value.or_else(|| other.value.map(|v| v * own_bytes as f64 / other_bytes.max(1) as f64))
    }

    /// Rules 2-4 for a sample whose exit head's top probability is `p1`.
    pub fn plan(&mut self, p1: f32) -> SplitAction {
        if p1 > self.config.exit.unwrap_or(DEFAULT_EXIT) {
            return SplitAction::Exit;
        }
        let explore = |n: u32| self.config.explore_every > 0 && n > 0 && n.is_multiple_of(self.config.explore_every);
        let (f, r) = (self.expected_rtt(SplitAction::SendFeatures), self.expected_rtt(SplitAction::SendRaw));
        let cheaper = match (f, r) {
            (Some(f), Some(r)) if r < f => (SplitAction::SendRaw, r),
            (Some(f), _) => (SplitAction::SendFeatures, f),
            (None, Some(r)) => (SplitAction::SendRaw, r),
            (None, None) => (SplitAction::SendFeatures, 0.0),
        };
        let network_out =
            self.failures >= self.config.failures_to_stop.max(1) || cheaper.1 > self.config.latency_budget_ms;
        if network_out {
            self.device_count += 1;
            if !explore(self.device_count) {
                return SplitAction::FinishOnDevice;
            }
        }
        self.remote_count += 1;
        if explore(self.remote_count) {
            return match cheaper.0 {
                SplitAction::SendRaw => SplitAction::SendFeatures,
                _ => SplitAction::SendRaw,
            };
        }
        cheaper.0
    }

    /// A remote attempt's round trip (`None`: it failed).
    pub fn observe_remote(&mut self, action: SplitAction, rtt_ms: Option<f64>) {
        let w = self.config.smoothing;
        match rtt_ms {
            Some(ms) => {
                self.failures = 0;
                match action {
                    SplitAction::SendFeatures => self.costs.features_rtt_ms.add(ms, w),
                    SplitAction::SendRaw => self.costs.raw_rtt_ms.add(ms, w),
                    _ => {}
                }
            }
            None => self.failures = self.failures.saturating_add(1),
        }
    }

    /// Device time spent on one sample.
    pub fn observe_device(&mut self, ms: f64) {
        self.costs.device_ms.add(ms, self.config.smoothing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner() -> SplitPlanner {
        SplitPlanner::new(PlannerConfig { exit: Some(0.8), explore_every: 5, ..PlannerConfig::default() }, 792, 784)
    }

    #[test]
    fn exits_when_sure_and_sends_features_first() {
        let mut p = planner();
        assert_eq!(p.plan(0.81), SplitAction::Exit);
        assert_eq!(p.plan(0.8), SplitAction::SendFeatures, "p1 == exit does not exit");
    }

    #[test]
    fn picks_the_cheaper_measured_path_and_explores_the_other() {
        let mut p = planner();
        // Scripted costs: features 30 ms, raw 12 ms.
        p.observe_remote(SplitAction::SendFeatures, Some(30.0));
        p.observe_remote(SplitAction::SendRaw, Some(12.0));
        let actions: Vec<SplitAction> = (0..10).map(|_| p.plan(0.1)).collect();
        let raw = actions.iter().filter(|a| **a == SplitAction::SendRaw).count();
        assert_eq!(raw, 8, "{actions:?}");
        assert_eq!(actions[4], SplitAction::SendFeatures, "every 5th remote sample explores");
        // Features become cheaper: the average follows and the choice flips.
        for _ in 0..30 {
            p.observe_remote(SplitAction::SendFeatures, Some(5.0));
        }
        assert_eq!(p.plan(0.1), SplitAction::SendFeatures);
        assert!((p.costs().features_rtt_ms.value.unwrap() - 5.0).abs() < 0.1);
    }

    #[test]
    fn an_unmeasured_path_is_estimated_from_the_other_by_bytes() {
        let mut p = SplitPlanner::new(PlannerConfig { explore_every: 0, ..PlannerConfig::default() }, 8000, 800);
        p.observe_remote(SplitAction::SendFeatures, Some(100.0));
        // Raw is 10x smaller: expected 10 ms, so raw wins before it was ever measured.
        assert_eq!(p.plan(0.1), SplitAction::SendRaw);
    }

    #[test]
    fn finishes_on_device_when_the_network_is_out_and_probes_it() {
        let mut p = planner();
        for _ in 0..3 {
            p.observe_remote(SplitAction::SendFeatures, None);
        }
        let actions: Vec<SplitAction> = (0..10).map(|_| p.plan(0.1)).collect();
        let device = actions.iter().filter(|a| **a == SplitAction::FinishOnDevice).count();
        assert_eq!(device, 8, "one in 5 still probes the network: {actions:?}");
        // One success brings the network back (raw, 784 bytes, is estimated from the features'
        // 792-byte round trip as slightly cheaper).
        p.observe_remote(SplitAction::SendFeatures, Some(20.0));
        assert_eq!(p.plan(0.1), SplitAction::SendRaw);
        // A round trip over the budget counts as out too.
        let mut slow =
            SplitPlanner::new(PlannerConfig { latency_budget_ms: 50.0, explore_every: 0, ..Default::default() }, 1, 1);
        slow.observe_remote(SplitAction::SendFeatures, Some(80.0));
        slow.observe_remote(SplitAction::SendRaw, Some(90.0));
        assert_eq!(slow.plan(0.1), SplitAction::FinishOnDevice);
    }

    #[test]
    fn admission_skips_samples_that_waited_too_long() {
        let mut p = planner();
        assert!(p.admit(0.0, 49.0).is_ok(), "50 ms floor before anything is measured");
        assert!(p.admit(0.0, 51.0).is_err());
        for _ in 0..20 {
            p.observe_device(40.0);
        }
        assert!((p.max_wait_ms() - 80.0).abs() < 1e-6);
        assert!(p.admit(0.0, 79.0).is_ok());
        let reason = p.admit(0.0, 81.0).unwrap_err();
        assert!(reason.contains("81.0 ms") && reason.contains("80.0 ms"), "{reason}");
        let fixed = SplitPlanner::new(PlannerConfig { max_wait_ms: Some(5.0), ..Default::default() }, 1, 1);
        assert!(fixed.admit(10.0, 16.0).is_err());
    }

    #[test]
    fn non_finite_measurements_are_ignored() {
        let mut p = planner();
        p.observe_device(f64::NAN);
        p.observe_remote(SplitAction::SendRaw, Some(f64::INFINITY));
        assert_eq!(p.costs().device_ms.count, 0);
        assert_eq!(p.costs().raw_rtt_ms.value, None);
    }
}
