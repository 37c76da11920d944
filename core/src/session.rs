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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::policy::tradeoff::{fit_threshold, CalibrationTarget, ScoredSample, TradeoffPoint};
use crate::policy::{Action, Decision, DecisionPolicy, Feedback, PolicyConfig, ScoreRule};
use crate::protocol::ClassifyResponse;
use crate::runtime::{EarlyExitModel, Model, Prediction};

/// How a sample was finally answered.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The decision module kept the tiny model's answer.
    Local,
    /// Offloaded; the answer is the remote model's.
    Offloaded,
    /// Offloaded, but the remote model could not be used (down, slow, 5xx, bad JSON): the tiny
    /// model's answer, flagged.
    Fallback,
}

/// Which local computation produced the local answer.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalStage {
    /// The whole tiny model (HI).
    Full,
    /// EE-HI: the exit head after stage 1 was sure enough.
    Exit,
    /// EE-HI: the exit head was so unsure that the sample was offloaded without stage 2.
    EarlyOffload,
    /// EE-HI: both stages ran.
    Stage2,
}

/// Where a client answers samples (`HiClient`'s `mode`). Every mode runs the device model first,
/// so a failed request is answered on the device (except `only_remote`, which rejects instead).
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Hierarchical inference: the decision module keeps confident answers and sends the rest to
    /// the Worker.
    #[default]
    Cascade,
    /// The device answers whenever its model can; the Worker only for samples the device model
    /// cannot take. With the device model loaded that is none: like `only_local`, but named for
    /// what it promises.
    PreferLocal,
    /// Never a request: the device answers every sample (`offloadWanted` still says what the
    /// decision module would have done).
    OnlyLocal,
    /// Every sample goes to the Worker; the device's answer when the request fails (`fallback`).
    PreferRemote,
    /// Every sample goes to the Worker; a failed request rejects (code `RemoteUnavailable`).
    OnlyRemote,
}

/// Why a sample was answered where it was.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// `cascade`: the decision module was sure of the device's answer.
    Confident,
    /// `cascade`: the decision module was not sure, so the sample went to the Worker.
    Unsure,
    /// The mode decided (`prefer_local` / `only_local` keep, `prefer_remote` / `only_remote` send).
    Mode,
    /// The decision module wanted the Worker but the `allowOffload` hook said no (or threw).
    Refused,
    /// The decision module wanted the Worker but `maxOffloadsPerMinute` was reached.
    OffloadCap,
    /// `classifyLocal`: the caller asked for the device's answer.
    LocalCall,
    /// The device model was still loading, so the Worker answered (the package's `HiClient` with
    /// `answerWhileLoading`; `localLabel` is -1 and `localProbs` empty).
    Loading,
}

/// Which side gave a sample's final answer.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The model on the device.
    Device,
    /// The Worker's model.
    Worker,
}

/// Whether a sample goes to the Worker, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Make the request.
    pub send: bool,
    /// Why.
    pub why: Why,
}

impl Mode {
    /// The route for a sample the decision module judged `decision`.
    pub fn route(self, decision: &Decision) -> Route {
        match self {
            Mode::Cascade if decision.is_offload() => Route { send: true, why: Why::Unsure },
            Mode::Cascade => Route { send: false, why: Why::Confident },
            Mode::PreferLocal | Mode::OnlyLocal => Route { send: false, why: Why::Mode },
            Mode::PreferRemote | Mode::OnlyRemote => Route { send: true, why: Why::Mode },
        }
    }
}

/// At most `per_minute` requests in any 60 s window (clock readings in ms).
#[derive(Debug, Clone)]
struct OffloadCap {
    per_minute: u32,
    sent_ms: std::collections::VecDeque<f64>,
}

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

/// The local half of a sample: tiny-model prediction, decision and their timings (ms).
#[derive(Debug, Clone)]
pub struct LocalStep {
    /// The tiny model's prediction.
    pub prediction: Prediction,
    /// The decision module's verdict.
    pub decision: Decision,
    /// Clock reading when the sample arrived.
    pub started_ms: f64,
    /// Time turning pixels into the model input.
    pub preprocess_ms: f64,
    /// Time running the tiny model.
    pub local_ms: f64,
    /// Time in the decision module.
    pub decision_ms: f64,
    /// Bytes the offload request will carry (the raw pixels).
    pub payload_bytes: usize,
    /// Which local computation ran.
    pub stage: LocalStage,
    /// Whether the sample goes to the Worker (mode and decision), and why; the caller may
    /// [`withhold`](LocalStep::withhold) it.
    pub route: Route,
}

impl LocalStep {
    /// Keeps a sample the route would send on the device, for `why` (the `allowOffload` hook said
    /// no, or the offload cap was reached).
    pub fn withhold(&mut self, why: Why) {
        self.route = Route { send: false, why };
    }
}

/// What happened to the offload request.
#[derive(Debug, Clone)]
pub enum RemoteOutcome {
    /// The route was to keep: no request was made.
    NotAsked,
    /// The caller asked for a local-only answer (no network), whatever the route was.
    LocalOnly,
    /// The Worker answered with a valid classify response.
    Answered {
        /// Its response.
        response: ClassifyResponse,
        /// Time from sending the request to having the parsed response (including any emulated delay).
        round_trip_ms: f64,
    },
    /// The request failed; the local answer is used.
    Failed {
        /// Why, for a person (`timeout after 2000 ms`, `HTTP 503: ...`, `network error: ...`).
        reason: String,
        /// Time spent before giving up.
        round_trip_ms: f64,
    },
}

/// Per-sample timings in milliseconds.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Pixels to model input.
    pub preprocess_ms: f64,
    /// Tiny-model inference.
    pub local_ms: f64,
    /// Decision module.
    pub decision_ms: f64,
    /// Offload round trip (0 when not offloaded).
    pub round_trip_ms: f64,
    /// The Worker's own inference time when its runtime can measure it; `None` otherwise (workerd
    /// freezes the clock during CPU work), never an estimate.
    pub remote_ms: Option<f64>,
    /// Whole `classify` call.
    pub total_ms: f64,
}

/// The answer for one sample, as the client returns it (`ClassifyResult` in TypeScript).
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[cfg_attr(feature = "ts", tsify(rename = "ClassifyResult", missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HiResult {
    /// Final label.
    pub label: usize,
    /// Final label's class name.
    pub class_name: String,
    /// Final probabilities (the remote model's when offloaded and answered).
    pub probs: Vec<f32>,
    /// Probability of the final label.
    pub confidence: f32,
    /// Local, offloaded or fallback.
    pub decision: Outcome,
    /// The decision module's confidence score for the tiny model's answer.
    pub score: f32,
    /// The threshold the policy applied, if it has one.
    pub threshold: Option<f32>,
    /// Whether the decision module asked for the remote model (also true for `fallback`, and for a
    /// local-only call it would have offloaded).
    pub offload_wanted: bool,
    /// True when an online policy offloaded only to explore.
    pub explored: bool,
    /// The tiny model's label.
    pub local_label: usize,
    /// The tiny model's probabilities.
    pub local_probs: Vec<f32>,
    /// The remote model's label, when it answered.
    pub remote_label: Option<usize>,
    /// Remote model id (`large@...`), when it answered.
    pub remote_model: Option<String>,
    /// Why the offload failed, for `fallback`.
    pub fallback_reason: Option<String>,
    /// Timings.
    pub timings: Timings,
    /// Bytes sent over the network for this sample (request body; 0 when kept).
    pub bytes_sent: usize,
    /// Which local computation ran (`full` for HI; `exit`, `early_offload` or `stage2` for EE-HI).
    pub local_stage: LocalStage,
    /// Which side gave `label`.
    pub answered_by: Side,
    /// Why the sample was answered there (a `fallback` keeps the reason it was sent; see
    /// `fallbackReason` for why the request failed).
    pub why: Why,
}

/// Running statistics over a session's samples (`ClientStats` in TypeScript).
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[cfg_attr(feature = "ts", tsify(rename = "ClientStats", missing_as_null))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStats {
    /// Samples classified.
    pub samples: u64,
    /// Kept locally.
    pub local: u64,
    /// Offloaded and answered remotely.
    pub offloaded: u64,
    /// Offloaded but answered locally because the remote failed.
    pub fallback: u64,
    /// `(offloaded + fallback) / samples`: how often the decision module asked for the remote model.
    pub offload_fraction: f64,
    /// Mean whole-call latency.
    pub mean_total_ms: f64,
    /// Mean tiny-model inference time.
    pub mean_local_ms: f64,
    /// Mean round trip over samples that made a request (0 when none).
    pub mean_round_trip_ms: f64,
    /// Total request bytes sent.
    pub bytes_sent: u64,
    /// Samples the decision module (or the mode) would have sent but that stayed on the device
    /// because the `allowOffload` hook said no or the offload cap was reached.
    pub withheld: u64,
    /// The offload share the policy was calibrated for (`HiClient.calibrate`, or the manifest's
    /// EE-HI calibration), to read next to `offloadFraction`; `None` when unknown.
    pub calibrated_offload_fraction: Option<f64>,
    #[serde(skip)]
    sum_total_ms: f64,
    #[serde(skip)]
    sum_local_ms: f64,
    #[serde(skip)]
    sum_round_trip_ms: f64,
}

impl SessionStats {
    fn record(&mut self, r: &HiResult) {
        self.samples += 1;
        match r.decision {
            Outcome::Local => self.local += 1,
            Outcome::Offloaded => self.offloaded += 1,
            Outcome::Fallback => self.fallback += 1,
        }
        let requests = self.offloaded + self.fallback;
        self.sum_total_ms += r.timings.total_ms;
        self.sum_local_ms += r.timings.local_ms;
        if r.decision != Outcome::Local {
            self.sum_round_trip_ms += r.timings.round_trip_ms;
        }
        self.bytes_sent += r.bytes_sent as u64;
        self.withheld += matches!(r.why, Why::Refused | Why::OffloadCap) as u64;
        let n = self.samples as f64;
        self.offload_fraction = requests as f64 / n;
        self.mean_total_ms = self.sum_total_ms / n;
        self.mean_local_ms = self.sum_local_ms / n;
        self.mean_round_trip_ms = if requests > 0 { self.sum_round_trip_ms / requests as f64 } else { 0.0 };
    }
}

/// The tiny model, the manifest, the decision module and the running statistics of one client.
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
}

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
        self.policy = built;
        self.policy_config = policy;
        self.stats.calibrated_offload_fraction = self.manifest_offload_fraction();
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
        if self.offload_cap.as_mut().is_some_and(|cap| !cap.admit(now_ms)) {
            local.withhold(Why::OffloadCap);
            return false;
        }
        true
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

    /// Clears the running statistics (the calibrated offload share stays).
    pub fn reset_stats(&mut self) {
        self.stats =
            SessionStats { calibrated_offload_fraction: self.stats.calibrated_offload_fraction, ..Default::default() };
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
        let decision = self.policy.decide(&prediction.probs)?;
        let t3 = clock();
        Ok(self.local_step(prediction, decision, pixels.len(), stage, [t0, t1, t2, t3]))
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
        }
    }

    /// Builds the result for a sample from its local step and what happened to its offload, at
    /// clock reading `now_ms`; feeds a remote label back to the policy and records the statistics.
    /// A failed request never loses the sample: it is answered on the device and flagged
    /// `Fallback`, except in [`Mode::OnlyRemote`], where it is [`Error::RemoteUnavailable`].
    pub fn finish(&mut self, local: LocalStep, remote: RemoteOutcome, now_ms: f64) -> Result<HiResult> {
        let LocalStep { prediction, decision, route, .. } = &local;
        let threshold = self.policy.threshold();
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
            local_label: prediction.label,
            local_probs: prediction.probs.clone(),
            remote_label: None,
            remote_model: None,
            fallback_reason: reason,
            timings: Timings { round_trip_ms, ..timings },
            bytes_sent: if outcome == Outcome::Local { 0 } else { local.payload_bytes },
            local_stage: local.stage,
            answered_by: Side::Device,
            why,
        };
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
                        self.policy.observe(&Feedback {
                            probs: &prediction.probs,
                            local_label: prediction.label,
                            remote_label,
                            explored: decision.explored,
                        })?;
                    }
                    timings.remote_ms = response.infer_ms;
                    HiResult {
                        label: remote_label,
                        class_name: class_name(remote_label),
                        confidence: response.probs.get(remote_label).copied().unwrap_or(0.0),
                        probs: response.probs,
                        remote_label: Some(remote_label),
                        remote_model: Some(response.model),
                        answered_by: Side::Worker,
                        ..local_only(Outcome::Offloaded, route.why, None, round_trip_ms, timings)
                    }
                }
            }
        };
        self.stats.record(&result);
        Ok(result)
    }
}
