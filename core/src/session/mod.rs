//! One HI client session: everything the browser client does with a sample except the network call.
//!
//! The `hiedge` npm package (wasm-client) and any native client share this: run the tiny model,
//! ask the decision module, and, once the offload is answered (or failed), build the result, feed the
//! remote label back to the policy and update the running statistics. The caller does only the I/O:
//!
//! ```no_run
//! use hiedge_core::session::{HiSession, RemoteOutcome};
//! use hiedge_core::{Manifest, Model, PolicyConfig};
//! # fn main() -> Result<(), hiedge_core::Error> {
//! let manifest = Manifest::from_json(&std::fs::read_to_string("models/fashion-mnist/manifest.json")?)?;
//! let tiny = Model::load(&manifest, "tiny", &std::fs::read("models/fashion-mnist/tiny.nnef.tar")?)?;
//! let mut session = HiSession::new(manifest.clone(), tiny, PolicyConfig::calibrated(&manifest)?)?;
//! let start = std::time::Instant::now();
//! let clock = move || start.elapsed().as_secs_f64() * 1e3;
//!
//! let local = session.run_local(&[0u8; 784], &clock)?;
//! let remote = if local.decision.is_offload() {
//!     // POST the 784 bytes to /v1/classify here; on failure: RemoteOutcome::Failed { .. }
//!     RemoteOutcome::Failed { reason: "no network in this example".into(), round_trip_ms: 0.0 }
//! } else {
//!     RemoteOutcome::NotAsked
//! };
//! let result = session.finish(local, remote, clock())?;
//! println!("{} ({:?})", result.label, result.decision);
//! # Ok(())
//! # }
//! ```

// The session runs models: it is built with the `runtime` feature (tract); without it this module
// is only the result types in `result.rs`.
#[cfg(feature = "runtime")]
use crate::{
    error::{Error, Result},
    manifest::Manifest,
    monitor::{Monitor, MonitorConfig, MonitorState, Observation},
    policy::tradeoff::{fit_threshold, CalibrationTarget, ScoredSample, TradeoffPoint},
    policy::{Action, Decision, DecisionPolicy, Feedback, PolicyConfig, ScoreRule},
    runtime::{EarlyExitModel, Model, Prediction},
};

pub mod breaker;
pub mod candidate;
mod result;

#[cfg(feature = "runtime")]
use breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker, FailMode};
#[cfg(feature = "runtime")]
use candidate::{Arm, Rollout, RolloutReport, Shadow, ShadowReport};

#[cfg(feature = "runtime")]
pub use result::LocalStep;
pub use result::{HiResult, LocalStage, Mode, Outcome, RemoteOutcome, Route, SessionStats, Side, Timings, Why};

/// At most `per_minute` requests in any 60 s window (clock readings in ms).
#[cfg(feature = "runtime")]
#[derive(Debug, Clone)]
struct OffloadCap {
    per_minute: u32,
    sent_ms: std::collections::VecDeque<f64>,
}

#[cfg(feature = "runtime")]
impl OffloadCap {
    fn admit(&mut self, now_ms: f64) -> bool {
        while self.sent_ms.front().is_some_and(|&t| now_ms - t >= 60_000.0) {
            self.sent_ms.pop_front();
        }
        let ok = self.sent_ms.len() < self.per_minute as usize;
        if ok {
            self.sent_ms.push_back(now_ms);
        }
        ok
    }
}

/// The tiny model, the manifest, the decision module and the running statistics of one client.
#[cfg(feature = "runtime")]
#[derive(Debug)]
pub struct HiSession {
    manifest: Manifest,
    model: Model,
    early_exit: Option<EarlyExitModel>,
    policy_config: PolicyConfig,
    policy: Box<dyn DecisionPolicy>,
    stats: SessionStats,
    mode: Mode,
    offload_cap: Option<OffloadCap>,
    /// The monitor asked for (`set_monitor`), kept while a policy without a calibrated rate is in
    /// use, so switching back brings the monitor back.
    monitor_config: Option<MonitorConfig>,
    monitor: Option<Monitor>,
    breaker: Option<CircuitBreaker>,
    shadow: Option<Shadow>,
    rollout: Option<Rollout>,
}

/// The policy that decides a sample of `arm`: the rollout's candidate for its arm, else the policy
/// in use (fields, not the session, so a caller may hold other fields meanwhile).
#[cfg(feature = "runtime")]
fn policy_for<'a>(
    policy: &'a mut Box<dyn DecisionPolicy>,
    rollout: &'a mut Option<Rollout>,
    arm: Option<Arm>,
) -> &'a mut dyn DecisionPolicy {
    match (arm, rollout.as_mut()) {
        (Some(Arm::Candidate), Some(rollout)) => rollout.policy_mut(),
        _ => policy.as_mut(),
    }
}

/// What a sample refused by an open breaker in `fail_mode: wait` does now.
#[cfg(feature = "runtime")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakerWait {
    /// Go on to [`HiSession::admit_request`] (the breaker is closed or ready to probe).
    Go,
    /// Ask again at this clock reading (the cooldown's end, or now while a probe is out).
    Until(f64),
    /// A probe made since the sample arrived failed: answer it on the device.
    GiveUp,
}

#[cfg(feature = "runtime")]
impl HiSession {
    /// A session classifying with `model` (the tiny model of `manifest`) and deciding with `policy`.
    pub fn new(manifest: Manifest, model: Model, policy: PolicyConfig) -> Result<Self> {
        Self::with_early_exit(manifest, model, None, policy)
    }

    /// A session that can also run EE-HI ([`PolicyConfig::EeHi`]) with the early-exit model.
    pub fn with_early_exit(
        manifest: Manifest,
        model: Model,
        early_exit: Option<EarlyExitModel>,
        policy: PolicyConfig,
    ) -> Result<Self> {
        let built = policy.build()?;
        let mut session = HiSession {
            manifest,
            model,
            early_exit,
            policy_config: policy,
            policy: built,
            stats: SessionStats::default(),
            mode: Mode::default(),
            offload_cap: None,
            monitor_config: None,
            monitor: None,
            breaker: None,
            shadow: None,
            rollout: None,
        };
        session.check_policy(session.policy.as_ref())?;
        session.stats.calibrated_offload_fraction = session.manifest_offload_fraction();
        Ok(session)
    }

    /// A policy that decides on the exit head needs the early-exit model.
    fn check_policy(&self, policy: &dyn DecisionPolicy) -> Result<()> {
        if policy.uses_exit_head() && self.early_exit.is_none() {
            return Err(Error::InvalidPolicy(format!(
                "{} needs the early-exit model: give the session its two stages (HiClient: `earlyExit`)",
                policy.name()
            )));
        }
        Ok(())
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The tiny model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The policy configuration in use.
    pub fn policy(&self) -> &PolicyConfig {
        &self.policy_config
    }

    /// Replaces the decision module (an online policy starts learning afresh).
    pub fn set_policy(&mut self, policy: PolicyConfig) -> Result<()> {
        let built = policy.build()?;
        self.check_policy(built.as_ref())?;
        if built.uses_exit_head() && (self.shadow.is_some() || self.rollout.is_some()) {
            return Err(Error::InvalidPolicy(format!(
                "{} decides on the exit head; stop the shadow or rollout first (they compare policies on the final head)",
                built.name()
            )));
        }
        self.policy = built;
        self.policy_config = policy;
        self.stats.calibrated_offload_fraction = self.manifest_offload_fraction();
        self.restart_monitor();
        Ok(())
    }

    /// The offload share the manifest records for the policy in use (EE-HI at its calibrated
    /// thresholds; the threshold policies' shares are not in the manifest).
    fn manifest_offload_fraction(&self) -> Option<f64> {
        let e = self.manifest.decision.as_ref()?.early_exit?;
        let t = e.thresholds;
        (self.policy_config == PolicyConfig::EeHi { exit: t.exit, offload: t.offload, hi: t.hi })
            .then_some(e.calibration.offloaded)
    }

    /// Where samples are answered.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sets where samples are answered (from the next sample on).
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Caps requests to the Worker at `per_minute` in any 60 s (`None`: no cap). A sample over the
    /// cap is answered on the device, `why: offload_cap`.
    pub fn set_offload_cap(&mut self, per_minute: Option<u32>) {
        self.offload_cap = per_minute.map(|per_minute| OffloadCap { per_minute, sent_ms: Default::default() });
    }

    /// Call right before sending a routed sample: counts it against the offload cap, or, over the
    /// cap, withholds it (`why: offload_cap`) and returns false.
    pub fn admit_request(&mut self, local: &mut LocalStep, now_ms: f64) -> bool {
        if !local.route.send {
            return false;
        }
        if let Some(breaker) = self.breaker.as_mut() {
            if let Admission::Refuse { .. } = breaker.admit(now_ms) {
                local.withhold(Why::CircuitOpen);
                return false;
            }
        }
        if self.offload_cap.as_mut().is_some_and(|cap| !cap.admit(now_ms)) {
            local.withhold(Why::OffloadCap);
            return false;
        }
        true
    }

    /// Watches the session's decisions with a [`Monitor`] against the manifest's calibration
    /// (`decision.monitoring`) for the policy in use (`None`: stop). Fails when the manifest has no
    /// baseline for that policy.
    pub fn set_monitor(&mut self, config: Option<MonitorConfig>) -> Result<()> {
        self.monitor = config.map(|c| self.build_monitor(c)).transpose()?;
        self.monitor_config = config;
        Ok(())
    }

    /// The monitor asked for, from scratch, against the policy in use's calibrated rate; paused
    /// (`monitor_state` is `None`) while the manifest has none for that policy.
    fn restart_monitor(&mut self) {
        self.monitor = self.monitor_config.and_then(|config| self.build_monitor(config).ok());
    }

    fn build_monitor(&self, config: MonitorConfig) -> Result<Monitor> {
        let key = self.policy_config.threshold_policy().map(|p| p.rule.key()).ok_or_else(|| {
            Error::Monitor(format!(
                "the monitor compares the offload rate with the calibrated one of a threshold policy; {} has none",
                self.policy.name()
            ))
        })?;
        Monitor::from_manifest(&self.manifest, Some(key), config)
    }

    /// The monitor's state, when [`set_monitor`](Self::set_monitor) started one.
    pub fn monitor_state(&self) -> Option<MonitorState> {
        self.monitor.as_ref().map(Monitor::state)
    }

    /// Guards offloads with a [`CircuitBreaker`] (`None`: none).
    pub fn set_breaker(&mut self, config: Option<BreakerConfig>) -> Result<()> {
        self.breaker = config.map(CircuitBreaker::new).transpose()?;
        Ok(())
    }

    /// The breaker's state, when there is one.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.breaker.as_ref().map(CircuitBreaker::state)
    }

    /// A ticket for a sample about to wait on the breaker (`fail_mode: wait`); give it to
    /// [`breaker_wait`](Self::breaker_wait).
    pub fn breaker_ticket(&self) -> u64 {
        self.breaker.as_ref().map_or(0, CircuitBreaker::probes_done)
    }

    /// For a routed sample in `fail_mode: wait`: whether it can go on to
    /// [`admit_request`](Self::admit_request) now, must wait, or must give up (withheld
    /// `circuit_open`). In `fail_mode: local`, or without a breaker, always `Go`.
    pub fn breaker_wait(&mut self, local: &mut LocalStep, ticket: u64, now_ms: f64) -> BreakerWait {
        let Some(breaker) = self.breaker.as_ref().filter(|b| b.config().fail_mode == FailMode::Wait) else {
            return BreakerWait::Go;
        };
        if !local.route.send {
            return BreakerWait::Go;
        }
        if breaker.probes_done() > ticket && breaker.wait_until(now_ms).is_some() {
            local.withhold(Why::CircuitOpen);
            return BreakerWait::GiveUp;
        }
        breaker.wait_until(now_ms).map_or(BreakerWait::Go, BreakerWait::Until)
    }

    /// Runs `policy` beside the active one without acting on it (`None`: stop); see
    /// [`ShadowReport`].
    pub fn set_shadow(&mut self, policy: Option<PolicyConfig>) -> Result<()> {
        if policy.is_some() && self.policy.uses_exit_head() {
            return Err(self.final_head_only("shadow"));
        }
        self.shadow = policy.map(|p| Shadow::new(p, &self.manifest)).transpose()?;
        Ok(())
    }

    /// What the shadow policy would have done, when there is one.
    pub fn shadow_report(&self) -> Option<ShadowReport> {
        self.shadow.as_ref().map(Shadow::report)
    }

    /// Lets `rollout`'s candidate decide for its fraction of users or samples (`None`: stop).
    pub fn set_rollout(&mut self, rollout: Option<Rollout>) -> Result<()> {
        if rollout.is_some() && self.policy.uses_exit_head() {
            return Err(self.final_head_only("rollout"));
        }
        self.rollout = rollout;
        Ok(())
    }

    /// The rollout's counts, when there is one.
    pub fn rollout_report(&self) -> Option<RolloutReport> {
        self.rollout.as_ref().map(Rollout::report)
    }

    fn final_head_only(&self, what: &str) -> Error {
        Error::InvalidPolicy(format!(
            "a {what} compares policies on the final head; the policy in use ({}) decides on the exit head",
            self.policy.name()
        ))
    }

    /// Fits the threshold of the policy in use on labelled samples already scored by it (see
    /// [`fit_threshold`]), switches the policy to it, and records the fitted offload share for
    /// [`SessionStats::calibrated_offload_fraction`]. Fails for policies without a threshold, and
    /// when no threshold meets the target.
    pub fn calibrate(&mut self, samples: &[ScoredSample], target: CalibrationTarget) -> Result<TradeoffPoint> {
        self.calibration_rule()?;
        let point = fit_threshold(samples, target).ok_or_else(|| {
            Error::InvalidPolicy(format!("no threshold meets {target:?} on these {} samples", samples.len()))
        })?;
        let config = self.policy_config.with_threshold(point.threshold).ok_or_else(|| self.no_threshold())?;
        self.set_policy(config)?;
        self.stats.calibrated_offload_fraction = Some(point.offloaded);
        Ok(point)
    }

    /// The score rule [`calibrate`](HiSession::calibrate) fits a threshold for: the policy in use's,
    /// when it is a threshold policy; otherwise the error calibrate would give.
    pub fn calibration_rule(&self) -> Result<ScoreRule> {
        self.policy_config.threshold_policy().map(|p| p.rule).ok_or_else(|| self.no_threshold())
    }

    fn no_threshold(&self) -> Error {
        Error::InvalidPolicy(format!(
            "calibrate fits a threshold: the policy in use ({}) has none; use max_prob, margin, entropy or logistic_top2",
            self.policy.name()
        ))
    }

    /// Running statistics.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Clears the running statistics (the calibrated offload share stays), and starts the
    /// monitor, the shadow report and the rollout's counts afresh (same settings); the breaker
    /// keeps its state.
    pub fn reset_stats(&mut self) -> Result<()> {
        self.stats = self.stats.cleared();
        self.restart_monitor();
        if let Some(policy) = self.shadow.as_ref().map(|s| s.report().policy) {
            self.set_shadow(Some(policy))?;
        }
        if let Some(rollout) = self.rollout.as_mut() {
            rollout.reset();
        }
        Ok(())
    }

    /// Fails with [`Error::InputLength`] (naming both lengths) unless `len` is the model's input size.
    pub fn check_input(&self, len: usize) -> Result<()> {
        self.model.preprocessor().check_len(len)
    }

    /// Runs the local model and the decision module on `pixels`, timing each step with `clock`
    /// (milliseconds from any origin). One path for every policy: when the policy
    /// [uses the exit head](DecisionPolicy::uses_exit_head), the local model is the early-exit model
    /// and the policy may stop after stage 1; otherwise it is the tiny model.
    pub fn run_local(&mut self, pixels: &[u8], clock: &dyn Fn() -> f64) -> Result<LocalStep> {
        let staged = self.early_exit.as_ref().filter(|_| self.policy.uses_exit_head());
        let t0 = clock();
        let input = match staged {
            Some(ee) => ee.preprocessor().run(pixels)?,
            None => self.model.preprocessor().run(pixels)?,
        };
        let t1 = clock();
        let (prediction, stage) = match staged {
            None => {
                let logits = self.model.run(&input)?;
                (self.model.prediction_from_outputs(logits, self.manifest.temperature()), LocalStage::Full)
            }
            Some(ee) => {
                let (exit_logits, features) = ee.stage1_values(&input)?;
                let exit = Prediction::from_logits(exit_logits, 1.0);
                if let Some(decision) = self.policy.decide_at_exit_head(&exit.probs)? {
                    let t = clock();
                    let stage = match decision.action {
                        Action::Keep => LocalStage::Exit,
                        Action::Offload => LocalStage::EarlyOffload,
                    };
                    return Ok(self.local_step(exit, decision, pixels.len(), stage, [t0, t1, t, t]));
                }
                (Prediction::from_logits(ee.stage2(&features)?, 1.0), LocalStage::Stage2)
            }
        };
        let t2 = clock();
        let arm = self.rollout.as_ref().map(|r| r.arm(pixels));
        let decision = policy_for(&mut self.policy, &mut self.rollout, arm).decide(&prediction.probs)?;
        let t3 = clock();
        let shadow_offload = self.shadow.as_mut().map(|s| s.decide(&prediction.probs)).transpose()?;
        let mut step = self.local_step(prediction, decision, pixels.len(), stage, [t0, t1, t2, t3]);
        (step.arm, step.shadow_offload) = (arm, shadow_offload);
        Ok(step)
    }

    /// A local step from clock readings at the start, after preprocessing, after inference and
    /// after the decision.
    fn local_step(
        &self,
        prediction: Prediction,
        decision: Decision,
        payload_bytes: usize,
        stage: LocalStage,
        [t0, t1, t2, t3]: [f64; 4],
    ) -> LocalStep {
        LocalStep {
            route: self.mode.route(&decision),
            prediction,
            decision,
            started_ms: t0,
            preprocess_ms: t1 - t0,
            local_ms: t2 - t1,
            decision_ms: t3 - t2,
            payload_bytes,
            stage,
            arm: None,
            shadow_offload: None,
        }
    }

    /// Builds the result for a sample from its local step and what happened to its offload, at
    /// clock reading `now_ms`; feeds a remote label back to the policy and records the statistics.
    /// A failed request never loses the sample: it is answered on the device and flagged
    /// `Fallback`, except in [`Mode::OnlyRemote`], where it is [`Error::RemoteUnavailable`].
    pub fn finish(&mut self, local: LocalStep, remote: RemoteOutcome, now_ms: f64) -> Result<HiResult> {
        let threshold = policy_for(&mut self.policy, &mut self.rollout, local.arm).threshold();
        let LocalStep { prediction, decision, route, arm, shadow_offload, .. } = &local;
        let class_name = |label: usize| self.manifest.classes.get(label).cloned().unwrap_or_default();
        let mut timings = Timings {
            preprocess_ms: local.preprocess_ms,
            local_ms: local.local_ms,
            decision_ms: local.decision_ms,
            round_trip_ms: 0.0,
            remote_ms: None,
            total_ms: (now_ms - local.started_ms).max(0.0),
        };
        let local_only = |outcome, why, reason, round_trip_ms, timings: Timings| HiResult {
            label: prediction.label,
            class_name: class_name(prediction.label),
            probs: prediction.probs.clone(),
            confidence: prediction.probs.get(prediction.label).copied().unwrap_or(0.0),
            decision: outcome,
            score: decision.score,
            threshold,
            offload_wanted: decision.is_offload(),
            explored: decision.explored,
            local_label: prediction.label as i64,
            local_probs: prediction.probs.clone(),
            remote_label: None,
            remote_model: None,
            remote_why: None,
            fallback_reason: reason,
            timings: Timings { round_trip_ms, ..timings },
            bytes_sent: if outcome == Outcome::Local { 0 } else { local.payload_bytes },
            local_stage: local.stage,
            answered_by: Side::Device,
            why,
            arm: *arm,
            shadow_offload: *shadow_offload,
        };
        // The breaker learns of every request it let through, including one that ends in an error.
        // An answer with a label out of range is a failure, as the result below treats it.
        let request = match &remote {
            RemoteOutcome::Answered { response, round_trip_ms } => {
                Some(((response.label as usize) < self.manifest.classes.len(), *round_trip_ms))
            }
            RemoteOutcome::Failed { round_trip_ms, .. } => Some((false, *round_trip_ms)),
            RemoteOutcome::NotAsked | RemoteOutcome::LocalOnly => None,
        };
        if let (Some(breaker), Some((ok, round_trip_ms)), true) = (self.breaker.as_mut(), request, route.send) {
            breaker.record(ok, round_trip_ms, now_ms);
        }
        let result = match remote {
            RemoteOutcome::LocalOnly => local_only(Outcome::Local, Why::LocalCall, None, 0.0, timings),
            RemoteOutcome::NotAsked if route.send => {
                return Err(Error::InvalidPolicy("the sample was routed to the Worker but no request was made".into()))
            }
            RemoteOutcome::NotAsked => local_only(Outcome::Local, route.why, None, 0.0, timings),
            RemoteOutcome::Answered { .. } | RemoteOutcome::Failed { .. } if !route.send => {
                return Err(Error::InvalidPolicy("a request was made for a sample routed to the device".into()))
            }
            RemoteOutcome::Failed { reason, .. } if self.mode == Mode::OnlyRemote => {
                return Err(Error::RemoteUnavailable(reason))
            }
            RemoteOutcome::Failed { reason, round_trip_ms } => {
                local_only(Outcome::Fallback, route.why, Some(reason), round_trip_ms, timings)
            }
            RemoteOutcome::Answered { response, round_trip_ms } => {
                let remote_label = response.label as usize;
                if remote_label >= self.manifest.classes.len() {
                    let reason = format!("remote label {remote_label} is out of range");
                    if self.mode == Mode::OnlyRemote {
                        return Err(Error::RemoteUnavailable(reason));
                    }
                    local_only(Outcome::Fallback, route.why, Some(reason), round_trip_ms, timings)
                } else {
                    // Only what the decision module itself sent teaches it (a mode that sends
                    // every sample would bias an online policy).
                    if decision.is_offload() {
                        let feedback = Feedback {
                            probs: &prediction.probs,
                            local_label: prediction.label,
                            remote_label,
                            explored: decision.explored,
                        };
                        policy_for(&mut self.policy, &mut self.rollout, *arm).observe(&feedback)?;
                    }
                    timings.remote_ms = response.infer_ms;
                    HiResult {
                        label: remote_label,
                        class_name: class_name(remote_label),
                        confidence: response.probs.get(remote_label).copied().unwrap_or(0.0),
                        probs: response.probs,
                        remote_label: Some(remote_label),
                        remote_model: Some(response.model),
                        remote_why: response.why,
                        answered_by: Side::of_remote(response.tier),
                        ..local_only(Outcome::Offloaded, route.why, None, round_trip_ms, timings)
                    }
                }
            }
        };
        self.stats.record(&result);
        self.watch(&result, now_ms)?;
        Ok(result)
    }

    /// Feeds a finished sample to the monitor, the shadow and the rollout.
    fn watch(&mut self, result: &HiResult, now_ms: f64) -> Result<()> {
        let remote = result.remote_label;
        if let Some(monitor) = self.monitor.as_mut().filter(|_| result.local_label >= 0) {
            monitor.observe(&Observation {
                probs: &result.local_probs,
                offloaded: result.offload_wanted,
                remote_label: remote,
                at_ms: now_ms,
            })?;
        }
        if let (Some(shadow), Some(offload)) = (self.shadow.as_mut(), result.shadow_offload) {
            shadow.record(offload, result.offload_wanted, &result.local_probs, remote)?;
        }
        if let (Some(rollout), Some(arm)) = (self.rollout.as_mut(), result.arm) {
            let agreeing = remote.map(|r| r as i64 == result.local_label);
            rollout.record(arm, result.offload_wanted, agreeing.filter(|_| result.offload_wanted));
        }
        Ok(())
    }
}
