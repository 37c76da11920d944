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
//! let tiny = Model::load(&manifest, "tiny", &std::fs::read("models/fashion-mnist/tiny.onnx")?)?;
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
use crate::policy::{Action, Decision, DecisionPolicy, Feedback, PolicyConfig};
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
}

/// What happened to the offload request.
#[derive(Debug, Clone)]
pub enum RemoteOutcome {
    /// The decision was to keep: no request was made.
    NotAsked,
    /// The caller asked for a local-only answer (no network), whatever the decision was.
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
}

/// Running statistics over a session's samples (`ClientStats` in TypeScript).
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[cfg_attr(feature = "ts", tsify(rename = "ClientStats"))]
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
        let session = HiSession {
            manifest,
            model,
            early_exit,
            policy_config: policy,
            policy: built,
            stats: SessionStats::default(),
        };
        session.check_policy(session.policy.as_ref())?;
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
        Ok(())
    }

    /// Running statistics.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Clears the running statistics.
    pub fn reset_stats(&mut self) {
        self.stats = SessionStats::default();
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
    /// A failed offload never loses the sample: it is answered locally and flagged `Fallback`.
    pub fn finish(&mut self, local: LocalStep, remote: RemoteOutcome, now_ms: f64) -> Result<HiResult> {
        let LocalStep { prediction, decision, .. } = &local;
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
        let local_only = |outcome, reason, round_trip_ms, timings: Timings| HiResult {
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
        };
        let result = match remote {
            RemoteOutcome::NotAsked if decision.is_offload() => {
                return Err(Error::InvalidPolicy("the decision was to offload but no request was made".into()))
            }
            RemoteOutcome::NotAsked | RemoteOutcome::LocalOnly => local_only(Outcome::Local, None, 0.0, timings),
            RemoteOutcome::Failed { reason, round_trip_ms } => {
                local_only(Outcome::Fallback, Some(reason), round_trip_ms, timings)
            }
            RemoteOutcome::Answered { response, round_trip_ms } => {
                let remote_label = response.label as usize;
                if remote_label >= self.manifest.classes.len() {
                    local_only(
                        Outcome::Fallback,
                        Some(format!("remote label {remote_label} is out of range")),
                        round_trip_ms,
                        timings,
                    )
                } else {
                    self.policy.observe(&Feedback {
                        probs: &prediction.probs,
                        local_label: prediction.label,
                        remote_label,
                        explored: decision.explored,
                    })?;
                    timings.remote_ms = response.infer_ms;
                    HiResult {
                        label: remote_label,
                        class_name: class_name(remote_label),
                        confidence: response.probs.get(remote_label).copied().unwrap_or(0.0),
                        probs: response.probs,
                        offload_wanted: true,
                        remote_label: Some(remote_label),
                        remote_model: Some(response.model),
                        ..local_only(Outcome::Offloaded, None, round_trip_ms, timings)
                    }
                }
            }
        };
        self.stats.record(&result);
        Ok(result)
    }
}
