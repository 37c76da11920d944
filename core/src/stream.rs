//! Split inference on a stream (MDI-Exit on the web): the device runs the split trunk on every
//! admitted sample and the [`SplitPlanner`] picks exit, features to the Worker's tail, raw input to
//! the Worker's large model, or the device's own model. Samples that wait too long for the device
//! are skipped by the planner's admission rule and reported as [`StreamDecision::Skipped`] with the
//! reason; a failed request falls back to the device's answer. Nothing is lost: every sample taken
//! ends as exactly one [`StreamResult`], and the [`StreamStats`] count them all.
//!
//! I/O-free like [`HiSession`](crate::session::HiSession): the caller (the npm package) keeps the
//! queue, sends the request the [`Step`] asks for and hands back a
//! [`RemoteOutcome`](crate::session::RemoteOutcome); clocks are passed in.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::policy::planner::{Costs, PlannerConfig, SplitAction, SplitPlanner};
use crate::prob::{argmax, softmax, top2};
use crate::protocol;
use crate::runtime::split::QuantizedFeatures;
use crate::runtime::{Model, Stage1};
use crate::session::RemoteOutcome;

/// How one stream sample was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "snake_case")]
pub enum StreamDecision {
    /// The trunk's exit head.
    Exit,
    /// The Worker's tail, on the trunk's features.
    Features,
    /// The Worker's large model, on the raw input.
    Raw,
    /// The device's own model, by plan (network out or too slow).
    Device,
    /// The device's own model after a failed request (`reason` says why).
    Fallback,
    /// Not processed: it waited too long for the device (`reason` says how long).
    Skipped,
}

/// Per-sample timings of the stream, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct StreamTimings {
    /// From arrival until the device took it.
    pub wait_ms: f64,
    /// The trunk (conversion included).
    pub trunk_ms: f64,
    /// The device's own model, when it finished the sample.
    pub device_ms: f64,
    /// The request, when one was sent.
    pub round_trip_ms: f64,
    /// From arrival to answer.
    pub total_ms: f64,
}

/// One stream sample's answer (`StreamResult` in TypeScript).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[serde(rename_all = "camelCase")]
pub struct StreamResult {
    /// Arrival order, from 0.
    pub index: u64,
    /// How it was answered.
    pub decision: StreamDecision,
    /// The label; `None` when skipped.
    pub label: Option<usize>,
    /// The label's class name.
    pub class_name: Option<String>,
    /// The label's probability.
    pub confidence: Option<f32>,
    /// The exit head's top probability (what the planner saw); `None` when skipped.
    pub exit_p1: Option<f32>,
    /// What the planner chose (`None` when skipped).
    pub action: Option<SplitAction>,
    /// Why it was skipped or fell back.
    pub reason: Option<String>,
    /// The remote model that answered (`split_tail@...` or `large@...`).
    pub remote_model: Option<String>,
    /// Request body bytes sent for it.
    pub bytes_sent: usize,
    /// Timings.
    pub timings: StreamTimings,
}

/// Running counts of a stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct StreamStats {
    /// Samples taken (every one ends as one of the counts below once answered).
    pub arrived: u64,
    /// Answered (not skipped).
    pub processed: u64,
    /// Skipped by admission.
    pub skipped: u64,
    /// Answered by the exit head.
    pub exited: u64,
    /// Answered by the Worker's tail.
    pub features: u64,
    /// Answered by the Worker's large model.
    pub raw: u64,
    /// Finished on the device by plan.
    pub device: u64,
    /// Finished on the device after a failed request.
    pub fallback: u64,
    /// Request bytes sent.
    pub bytes_sent: u64,
    /// Clock at the first arrival and at the last answer (for rates).
    pub first_arrival_ms: Option<f64>,
    /// Clock at the last answer.
    pub last_answer_ms: Option<f64>,
    /// Mean arrival-to-answer ms of processed samples.
    pub mean_total_ms: f64,
    /// Measured costs the planner uses.
    pub costs: Costs,
}

impl StreamStats {
    /// Processed samples per second between the first arrival and the last answer.
    pub fn processed_per_s(&self) -> f64 {
        match (self.first_arrival_ms, self.last_answer_ms) {
            (Some(a), Some(b)) if b > a => self.processed as f64 * 1000.0 / (b - a),
            _ => 0.0,
        }
    }
}

/// What to do after the device's part: answered already, or send this request.
#[derive(Debug)]
pub enum Step {
    /// Answered on the device (exit, device model) or skipped.
    Done(StreamResult),
    /// Send `body` to `path` (relative to the Worker's base URL), then call
    /// [`StreamSession::finish`] with the outcome.
    Send(Pending),
}

/// A sample waiting for the Worker.
#[derive(Debug)]
pub struct Pending {
    /// `/v1/models/<set>/split/<trunk>` or `/v1/models/<set>/classify`.
    pub path: String,
    /// The request body (quantised features or raw input).
    pub body: Vec<u8>,
    index: u64,
    action: SplitAction,
    pixels: Vec<u8>,
    exit_logits: Vec<f32>,
    timings: StreamTimings,
    arrived_ms: f64,
}

/// The device side of split inference on a stream.
#[derive(Debug)]
pub struct StreamSession {
    manifest: Manifest,
    set: String,
    trunk: Stage1,
    trunk_sha256: String,
    device: Option<Model>,
    planner: SplitPlanner,
    stats: StreamStats,
    next_index: u64,
}

impl StreamSession {
    /// A stream for model set `set` (its Worker routes) with the manifest's split `trunk`, the
    /// device model that finishes samples when the network is out (`None`: the exit head does),
    /// and the planner's settings (default [`PlannerConfig::default`]; an `exit` left out is the
    /// manifest's calibrated `decision.split.exit`).
    pub fn new(
        manifest: Manifest,
        set: &str,
        trunk: Stage1,
        device: Option<Model>,
        config: Option<PlannerConfig>,
    ) -> Result<Self> {
        let entry = manifest.split.as_ref().ok_or_else(|| Error::UnknownModel {
            name: "split".into(),
            available: manifest.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        if !protocol::is_set_name(set) {
            return Err(Error::InvalidPolicy(format!("`{set}` is not a model-set name")));
        }
        let mut config = config.unwrap_or_default();
        if config.exit.is_none() {
            let calibrated = manifest.decision.as_ref().and_then(|d| d.split).map(|s| s.exit);
            config.exit = Some(calibrated.ok_or_else(|| {
                Error::InvalidPolicy(
                    "the manifest has no calibrated split exit (run `hiedge calibrate`); give the planner an `exit`"
                        .into(),
                )
            })?);
        }
        let exit = config.exit.unwrap_or(crate::policy::planner::DEFAULT_EXIT);
        if !(exit.is_finite() && (0.0..=1.0).contains(&exit)) {
            return Err(Error::InvalidPolicy(format!("the split exit threshold {exit} is not in 0..=1")));
        }
        if !(config.smoothing > 0.0 && config.smoothing <= 1.0) {
            return Err(Error::InvalidPolicy(format!("smoothing {} is not in (0, 1]", config.smoothing)));
        }
        let feature_bytes = protocol::FEATURES_HEADER_LEN + trunk.feature_len();
        let planner = SplitPlanner::new(config, feature_bytes, trunk.input_len());
        Ok(StreamSession {
            trunk_sha256: entry.trunk.sha256.clone(),
            set: set.to_string(),
            manifest,
            trunk,
            device,
            planner,
            stats: StreamStats::default(),
            next_index: 0,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Raw bytes one sample must have.
    pub fn input_len(&self) -> usize {
        self.trunk.input_len()
    }

    /// The running counts.
    pub fn stats(&self) -> StreamStats {
        StreamStats { costs: *self.planner.costs(), ..self.stats }
    }

    /// The planner's settings.
    pub fn config(&self) -> &PlannerConfig {
        self.planner.config()
    }

    /// Counts a sample as arrived at `arrived_ms` and gives it its index (call in arrival order,
    /// before it waits for the device).
    pub fn arrive(&mut self, arrived_ms: f64) -> u64 {
        self.stats.arrived += 1;
        self.stats.first_arrival_ms.get_or_insert(arrived_ms);
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    fn result(&self, index: u64, decision: StreamDecision, probs: Option<&[f32]>) -> StreamResult {
        let label = probs.map(argmax);
        StreamResult {
            index,
            decision,
            label,
            class_name: label.and_then(|l| self.manifest.classes.get(l).cloned()),
            confidence: probs.zip(label).map(|(p, l)| p[l]),
            exit_p1: None,
            action: None,
            reason: None,
            remote_model: None,
            bytes_sent: 0,
            timings: StreamTimings::default(),
        }
    }

    fn record(&mut self, r: &StreamResult, now_ms: f64) {
        match r.decision {
            StreamDecision::Skipped => self.stats.skipped += 1,
            d => {
                let n = self.stats.processed as f64;
                self.stats.mean_total_ms = (self.stats.mean_total_ms * n + r.timings.total_ms) / (n + 1.0);
                self.stats.processed += 1;
                self.stats.last_answer_ms = Some(now_ms);
                match d {
                    StreamDecision::Exit => self.stats.exited += 1,
                    StreamDecision::Features => self.stats.features += 1,
                    StreamDecision::Raw => self.stats.raw += 1,
                    StreamDecision::Device => self.stats.device += 1,
                    StreamDecision::Fallback => self.stats.fallback += 1,
                    StreamDecision::Skipped => {}
                }
            }
        }
        self.stats.bytes_sent += r.bytes_sent as u64;
    }

    /// The device's own answer: the device model when there is one, else the exit head.
    fn device_answer(&self, pixels: &[u8], exit_logits: &[f32]) -> Result<Vec<f32>> {
        match &self.device {
            Some(model) => Ok(model.predict(pixels, self.manifest.temperature())?.probs),
            None => Ok(softmax(exit_logits, 1.0)),
        }
    }

    /// The device takes sample `index` (arrived at `arrived_ms`) now: admission, the trunk, the
    /// plan, and the device model when the plan says so. `clock` reads milliseconds.
    pub fn take(&mut self, index: u64, pixels: Vec<u8>, arrived_ms: f64, clock: &dyn Fn() -> f64) -> Result<Step> {
        let start = clock();
        let wait_ms = (start - arrived_ms).max(0.0);
        if let Err(reason) = self.planner.admit(arrived_ms, start) {
            let mut r = self.result(index, StreamDecision::Skipped, None);
            r.reason = Some(reason);
            r.timings = StreamTimings { wait_ms, total_ms: wait_ms, ..Default::default() };
            self.record(&r, start);
            return Ok(Step::Done(r));
        }
        let (exit_logits, features) = self.trunk.run(&pixels)?;
        let after_trunk = clock();
        let exit_probs = softmax(&exit_logits, 1.0);
        let p1 = top2(&exit_probs).0;
        let action = self.planner.plan(p1);
        let mut timings = StreamTimings { wait_ms, trunk_ms: after_trunk - start, ..Default::default() };
        let finish_here = |session: &mut Self, decision: StreamDecision, probs: &[f32], timings: StreamTimings| {
            let now = clock();
            let mut r = session.result(index, decision, Some(probs));
            r.exit_p1 = Some(p1);
            r.action = Some(action);
            r.timings = StreamTimings { total_ms: now - arrived_ms, ..timings };
            session.planner.observe_device(now - start);
            session.record(&r, now);
            r
        };
        match action {
            SplitAction::Exit => Ok(Step::Done(finish_here(self, StreamDecision::Exit, &exit_probs, timings))),
            SplitAction::FinishOnDevice => {
                let probs = self.device_answer(&pixels, &exit_logits)?;
                timings.device_ms = clock() - after_trunk;
                Ok(Step::Done(finish_here(self, StreamDecision::Device, &probs, timings)))
            }
            SplitAction::SendFeatures | SplitAction::SendRaw => {
                self.planner.observe_device(clock() - start);
                let (path, body) = if action == SplitAction::SendFeatures {
                    let path = protocol::set_split_path(&self.set, &self.trunk_sha256);
                    (path, QuantizedFeatures::quantize(&features).to_bytes())
                } else {
                    (protocol::set_classify_path(&self.set), pixels.clone())
                };
                Ok(Step::Send(Pending { path, body, index, action, pixels, exit_logits, timings, arrived_ms }))
            }
        }
    }

    /// A sent sample's outcome: the Worker's answer, or on failure the device's (`Fallback`, with
    /// the reason). `now_ms` is the clock when the outcome arrived.
    pub fn finish(&mut self, pending: Pending, outcome: RemoteOutcome, now_ms: f64) -> Result<StreamResult> {
        let exit_probs = softmax(&pending.exit_logits, 1.0);
        let p1 = top2(&exit_probs).0;
        let bytes_sent = pending.body.len();
        let mut timings = pending.timings;
        let mut r = match outcome {
            RemoteOutcome::Answered { response, round_trip_ms } => {
                self.planner.observe_remote(pending.action, Some(round_trip_ms));
                timings.round_trip_ms = round_trip_ms;
                let decision = match pending.action {
                    SplitAction::SendFeatures => StreamDecision::Features,
                    _ => StreamDecision::Raw,
                };
                let mut r = self.result(pending.index, decision, Some(&response.probs));
                r.remote_model = Some(response.model);
                r
            }
            RemoteOutcome::Failed { reason, round_trip_ms } => {
                self.planner.observe_remote(pending.action, None);
                timings.round_trip_ms = round_trip_ms;
                let probs = self.device_answer(&pending.pixels, &pending.exit_logits)?;
                let mut r = self.result(pending.index, StreamDecision::Fallback, Some(&probs));
                r.reason = Some(reason);
                r
            }
            RemoteOutcome::NotAsked | RemoteOutcome::LocalOnly => {
                let probs = self.device_answer(&pending.pixels, &pending.exit_logits)?;
                let mut r = self.result(pending.index, StreamDecision::Device, Some(&probs));
                r.reason = Some("not sent".into());
                r
            }
        };
        r.exit_p1 = Some(p1);
        r.action = Some(pending.action);
        r.bytes_sent = bytes_sent;
        r.timings = StreamTimings { total_ms: now_ms - pending.arrived_ms, ..timings };
        self.record(&r, now_ms);
        Ok(r)
    }
}
