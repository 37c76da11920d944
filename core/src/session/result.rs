//! What a session gives back: each sample's result (decision, provenance, timings) and the running
//! statistics, plus the routing choices (mode, why) they are made of.

use serde::{Deserialize, Serialize};

use crate::policy::Decision;
use crate::protocol::ClassifyResponse;
#[cfg(feature = "runtime")]
use crate::runtime::Prediction;
use crate::session::candidate::Arm;

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
    /// The decision module wanted the Worker but the circuit breaker is open (the Worker failed
    /// or was slow lately; `breaker` in the options), so the device answered.
    CircuitOpen,
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
    /// The set's inference server behind the Worker (the third tier, the manifest's `oip`).
    Server,
}

impl Side {
    /// The side that gave a remote answer: the Worker's model or, through it, the set's server.
    pub fn of_remote(tier: crate::protocol::Tier) -> Self {
        match tier {
            crate::protocol::Tier::Worker => Side::Worker,
            crate::protocol::Tier::Server => Side::Server,
        }
    }
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

/// The local half of a sample: tiny-model prediction, decision and their timings (ms).
#[cfg(feature = "runtime")]
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
    /// Under a rollout, the arm whose policy decided.
    pub arm: Option<Arm>,
    /// In shadow mode, whether the shadow policy would offload.
    pub shadow_offload: Option<bool>,
}

#[cfg(feature = "runtime")]
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
    /// The tiny model's label; -1 when no device model ran (`why: "loading"`).
    pub local_label: i64,
    /// The tiny model's probabilities.
    pub local_probs: Vec<f32>,
    /// The remote model's label, when it answered.
    pub remote_label: Option<usize>,
    /// Remote model id (`large@...`, `oip:<model>` for the server tier), when it answered.
    pub remote_model: Option<String>,
    /// For a set with a server tier: why the Worker answered itself or sent the sample on.
    pub remote_why: Option<crate::protocol::TierWhy>,
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
    /// Under a rollout, which policy decided (`None` without one).
    pub arm: Option<Arm>,
    /// In shadow mode, whether the shadow policy would have offloaded (`None` without one).
    pub shadow_offload: Option<bool>,
}

impl HiResult {
    /// The result for a sample the Worker answered while the device model was still loading
    /// (`why: "loading"`): no device model ran, so `localLabel` is -1, `localProbs` empty and the
    /// whole call is the round trip. `response` was checked against `classes` by
    /// [`ClassifyResponse::from_json`].
    pub fn answered_while_loading(
        response: ClassifyResponse,
        classes: &[String],
        round_trip_ms: f64,
        bytes_sent: usize,
    ) -> HiResult {
        let label = response.label as usize;
        HiResult {
            label,
            class_name: classes.get(label).cloned().unwrap_or_else(|| label.to_string()),
            confidence: response.probs.get(label).copied().unwrap_or(0.0),
            probs: response.probs,
            decision: Outcome::Offloaded,
            score: 0.0,
            threshold: None,
            offload_wanted: true,
            explored: false,
            local_label: -1,
            local_probs: Vec::new(),
            remote_label: Some(label),
            remote_model: Some(response.model),
            fallback_reason: None,
            timings: Timings {
                preprocess_ms: 0.0,
                local_ms: 0.0,
                decision_ms: 0.0,
                round_trip_ms,
                remote_ms: response.infer_ms,
                total_ms: round_trip_ms,
            },
            bytes_sent,
            local_stage: LocalStage::Full,
            answered_by: Side::of_remote(response.tier),
            remote_why: response.why,
            why: Why::Loading,
            arm: None,
            shadow_offload: None,
        }
    }
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
    /// Of `offloaded`: answered by the set's inference server behind the Worker (third tier).
    pub server: u64,
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

#[cfg(feature = "runtime")]
impl SessionStats {
    /// No samples yet, the calibrated offload share kept.
    pub(super) fn cleared(&self) -> Self {
        SessionStats { calibrated_offload_fraction: self.calibrated_offload_fraction, ..Default::default() }
    }

    pub(super) fn record(&mut self, r: &HiResult) {
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
        self.server += (r.answered_by == Side::Server) as u64;
        self.withheld += matches!(r.why, Why::Refused | Why::OffloadCap) as u64;
        let n = self.samples as f64;
        self.offload_fraction = requests as f64 / n;
        self.mean_total_ms = self.sum_total_ms / n;
        self.mean_local_ms = self.sum_local_ms / n;
        self.mean_round_trip_ms = if requests > 0 { self.sum_round_trip_ms / requests as f64 } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_while_loading_is_the_workers_with_no_device_side() {
        let classes: Vec<String> = ["cat", "dog", "owl"].map(String::from).to_vec();
        let json = r#"{"label":2,"probs":[0.1,0.2,0.7],"model":"large@abc","infer_ms":null}"#;
        let response = ClassifyResponse::from_json(json, classes.len()).expect("a valid answer");
        let r = HiResult::answered_while_loading(response, &classes, 120.0, 784);
        assert_eq!((r.label, r.class_name.as_str(), r.confidence), (2, "owl", 0.7));
        assert_eq!((r.decision, r.answered_by, r.why), (Outcome::Offloaded, Side::Worker, Why::Loading));
        assert_eq!((r.local_label, r.local_probs.len(), r.remote_label), (-1, 0, Some(2)));
        assert_eq!((r.timings.round_trip_ms, r.timings.total_ms, r.timings.local_ms), (120.0, 120.0, 0.0));
        assert_eq!((r.bytes_sent, r.remote_model.as_deref()), (784, Some("large@abc")));
        let js = serde_json::to_value(&r).expect("serialises");
        assert_eq!((js["localLabel"].as_i64(), js["why"].as_str()), (Some(-1), Some("loading")));
    }
}
