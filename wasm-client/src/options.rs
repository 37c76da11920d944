//! `HiClient.create`'s options, read with serde-wasm-bindgen; their TypeScript declarations are
//! derived (tsify), as are those of the core types they mention.

use hiedge_core::policy::{PolicyConfig, PolicyKind};
use hiedge_core::session::breaker::BreakerConfig;
use hiedge_core::session::candidate::RolloutUnit;
use hiedge_core::session::{Mode, Why};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use tsify::Tsify;
use wasm_bindgen::JsValue;

/// The options of `HiClient.create`.
#[derive(Tsify, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HiClientOptions {
    /// The tiny ONNX model: its bytes, or a URL to fetch. Leave it out to fetch it from the Worker
    /// (`endpoint`) by its sha256, with `modelSet`.
    #[tsify(optional, type = "Uint8Array | ArrayBuffer | string")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub model: JsValue,
    /// The model-set manifest: an object, its JSON text, or a URL to fetch. Leave it out to fetch
    /// it from the Worker (`endpoint`), with `modelSet`.
    #[tsify(optional, type = "object | string")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub manifest: JsValue,
    /// Which model set of the Worker to use (a directory name such as "fashion-mnist"): offloads
    /// go to its large model (`POST /v1/models/<set>/classify`), and a left-out `manifest`,
    /// `model` or `earlyExit: true` is fetched from the Worker. Without it, offloads go to the
    /// Worker's default set (`POST /v1/classify`).
    #[tsify(optional)]
    pub model_set: Option<String>,
    /// Which model of the manifest runs locally (default "tiny").
    #[tsify(optional)]
    pub model_name: Option<String>,
    /// The manifest's early-exit model, needed for the "ee_hi" policy: its two stages, or `true`
    /// to fetch them from the Worker (with `modelSet`).
    #[tsify(optional, type = "EarlyExitSources | boolean")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub early_exit: JsValue,
    /// Base URL of the hiedge Worker, e.g. "https://hiedge.example.workers.dev". Without it every
    /// offload falls back.
    #[tsify(optional, type = "string | null")]
    pub endpoint: Option<String>,
    /// Decision policy (default: the manifest's calibrated logistic_top2).
    #[tsify(optional, type = "PolicyChoice")]
    pub policy: Option<PolicyChoice>,
    /// Offload timeout in ms (default 3000). On timeout the local answer is used, flagged "fallback".
    #[tsify(optional)]
    pub timeout_ms: Option<f64>,
    /// Bearer token when the Worker has an API_TOKEN. It is sent to the `endpoint`'s origin only:
    /// `setEndpoint` to another origin drops it.
    #[tsify(optional)]
    pub token: Option<String>,
    /// Time allowed for the wasm, the manifest and each model file to download, in ms (default
    /// 120000). Downloads are also capped in size (64 MiB per model file, 1 MiB per manifest).
    #[tsify(optional)]
    pub load_timeout_ms: Option<f64>,
    /// How offloaded samples travel: `"raw"` (the model's input bytes), `"png"` (lossless),
    /// `"jpeg:85"` or `"webp:80"` (lossy, quality 1-100), encoded in the browser. Default: the
    /// manifest's `offload_codec`, else raw. An encoded sample that is not smaller than the raw one,
    /// or a type the browser cannot write, is sent raw; each result's `bytesSent` says what went.
    #[tsify(optional)]
    pub offload_codec: Option<String>,
    /// Extra delay added before each offload request, to emulate a slow link (default 0).
    #[tsify(optional)]
    pub network_delay_ms: Option<f64>,
    /// Called as loading proceeds.
    #[tsify(optional, type = "(progress: LoadProgress) => void")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub on_progress: JsValue,
    /// Where samples are answered (default "cascade": the decision module decides).
    #[tsify(optional)]
    pub mode: Option<Mode>,
    /// Asked before each request to the Worker (consent, privacy, budget): the sample is sent only
    /// when it returns `true` (or a Promise of `true`); otherwise, and when it throws, the device
    /// answers it (`why: "refused"`).
    #[tsify(optional, type = "((request: OffloadRequest) => boolean | Promise<boolean>) | null")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub allow_offload: JsValue,
    /// At most this many requests to the Worker in any 60 s; the rest are answered on the device
    /// (`why: "offload_cap"`). Default: no cap.
    #[tsify(optional, type = "number | null")]
    pub max_offloads_per_minute: Option<u32>,
    /// Keep the manifest and model files in the browser's Cache API, keyed by their sha256, so a
    /// later load needs no download and works offline (default true; needs a secure origin).
    #[tsify(optional)]
    pub cache: Option<bool>,
    /// Watch the decisions against the manifest's calibration (`client.monitor()`): `true` for the
    /// default settings, or the settings. Needs a manifest calibrated by `hiedge calibrate`
    /// (`decision.monitoring`) and a threshold policy.
    #[tsify(optional, type = "boolean | MonitorConfig")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub monitor: JsValue,
    /// A circuit breaker on offloads (`client.breaker()`): after `failures` failed requests in a
    /// row, or a p95 round trip over `p95BudgetMs`, no request for `cooldownMs`, then one probe.
    /// Default: none.
    #[tsify(optional)]
    pub breaker: Option<BreakerConfig>,
    /// Shadow mode: a candidate policy decides beside the active one on every sample, and nothing
    /// it decides is acted on (`client.shadowReport()`).
    #[tsify(optional, type = "PolicyChoice")]
    pub shadow: Option<PolicyChoice>,
    /// A rollout: a candidate policy decides for a stable fraction of users or samples
    /// (`client.rolloutReport()`; each result's `arm`).
    #[tsify(optional)]
    pub rollout: Option<RolloutOptions>,
    /// The clock the client reads, in ms (default `performance.now`): the breaker's cooldown, the
    /// offload cap's minute, the monitor's times and the results' timings are all on it. Give your
    /// own to step time in a test. It must return a finite number and never go back. Only on the
    /// calling thread (`worker: false`): a function cannot be sent to a Web Worker. (`timeoutMs`
    /// and round trips stay in real time.)
    #[tsify(optional, type = "(() => number) | null")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub clock: JsValue,
}

/// A rollout of a candidate policy (`rollout` in `HiClient`'s options).
#[derive(Tsify, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutOptions {
    /// The candidate.
    #[tsify(type = "PolicyChoice")]
    pub policy: PolicyChoice,
    /// The fraction (0..=1) of users or samples it decides for.
    pub fraction: f64,
    /// What is hashed to choose: `"user"` (default; needs `userId`) or `"sample"` (its bytes).
    #[tsify(optional)]
    pub unit: Option<RolloutUnit>,
    /// The user's stable id (an account id, a random id kept in localStorage): the same id is in
    /// the same arm on every device and in every session.
    #[tsify(optional)]
    pub user_id: Option<String>,
}

impl HiClientOptions {
    /// Reads `HiClient.create`'s options from JavaScript.
    pub fn from_js(value: JsValue) -> Result<Self, JsValue> {
        serde_wasm_bindgen::from_value(value)
            .map_err(|e| crate::js::coded_error(crate::js::INVALID_OPTIONS, &format!("invalid HiClient options: {e}")))
    }
}

/// What the `allowOffload` hook is told about a sample about to be sent to the Worker.
#[derive(Tsify, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OffloadRequest {
    /// The device model's label (-1 while the device model is still loading: `why` is "loading").
    pub local_label: i64,
    /// The device model's probability for it.
    pub confidence: f32,
    /// The decision module's score.
    pub score: f32,
    /// Why the sample would be sent ("unsure", "mode", or "loading" before the device model has loaded).
    pub why: Why,
    /// Bytes the request would carry.
    pub bytes: usize,
}

/// What `HiClient.calibrate` fits for: give exactly one.
#[derive(Tsify, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalibrateOptions {
    /// The least offloading whose accuracy on the samples is at least this (0..1).
    #[tsify(optional)]
    pub target_accuracy: Option<f64>,
    /// The most offloading whose share of the samples is at most this (0..1).
    #[tsify(optional)]
    pub target_offload: Option<f64>,
}

/// What `HiClient.calibrate` fitted, and what it gives on the samples it was fitted on.
#[derive(Tsify, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Calibration {
    /// The policy in use from now on (the same rule at the fitted threshold).
    pub policy: PolicyConfig,
    /// The fitted threshold: offload when `score <= threshold`.
    pub threshold: f32,
    /// Share of the samples it offloads.
    pub offloaded: f64,
    /// Accuracy on the samples (the Worker's answers for offloaded ones).
    pub accuracy: f64,
    /// Samples fitted on.
    pub samples: usize,
    /// Accuracy of the device model alone on them.
    pub local_accuracy: f64,
    /// Accuracy of the Worker's model alone on them.
    pub remote_accuracy: f64,
}

/// The two ONNX stages of the manifest's early-exit model.
#[derive(Tsify, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyExitSources {
    /// Stage 1 (image to exit head and features): bytes or a URL.
    #[tsify(type = "Uint8Array | ArrayBuffer | string")]
    #[serde(with = "serde_wasm_bindgen::preserve")]
    pub stage1: JsValue,
    /// Stage 2 (features to final head): bytes or a URL.
    #[tsify(type = "Uint8Array | ArrayBuffer | string")]
    #[serde(with = "serde_wasm_bindgen::preserve")]
    pub stage2: JsValue,
}

/// One sample's size as an image (from the manifest's input shape and layout).
#[derive(Tsify, Serialize)]
pub struct ImageShape {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// 1 (gray) or 3 (RGB) for image models.
    pub channels: usize,
}

/// Loading progress reported by `HiClient.create` (and the package's `init` for the wasm).
#[derive(Tsify, Serialize)]
#[serde(rename_all = "camelCase")]
#[tsify(missing_as_null)]
pub struct LoadProgress {
    /// What is being loaded.
    pub stage: LoadStage,
    /// For a person.
    pub message: String,
    /// `download`: which file ("wasm", "manifest", "model", "earlyExit.stage1", ...).
    pub file: Option<String>,
    /// `download`: bytes of it so far.
    pub loaded: Option<f64>,
    /// `download`: its size when known (the `Content-Length` of an uncompressed response).
    pub total: Option<f64>,
    /// `download`: true when it came from the Cache API, with no bytes over the network.
    pub from_cache: Option<bool>,
}

/// The steps of `HiClient.create`.
#[derive(Tsify, Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum LoadStage {
    /// Fetching or parsing the manifest.
    Manifest,
    /// Fetching a model.
    Model,
    /// Bytes of a file arriving (`file`, `loaded`, `total`, `fromCache`).
    Download,
    /// Parsing and optimising the model.
    Compile,
    /// Done.
    Ready,
}

/// A decision policy: a kind name (its calibrated parameters are taken from the manifest) or a full
/// configuration. Read by hand (a string or an object) so each form keeps its own error message.
#[derive(Tsify, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum PolicyChoice {
    /// This kind at the manifest's calibrated parameters.
    Kind(PolicyKind),
    /// A full configuration.
    Config(PolicyConfig),
}

impl<'de> Deserialize<'de> for PolicyChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ChoiceVisitor;
        impl<'de> Visitor<'de> for ChoiceVisitor {
            type Value = PolicyChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a policy kind name or a policy configuration object")
            }
            fn visit_str<E: de::Error>(self, kind: &str) -> Result<PolicyChoice, E> {
                let kind = PolicyKind::deserialize(de::value::StrDeserializer::<E>::new(kind))
                    .map_err(|_| E::custom(format!("unknown policy kind `{kind}`")))?;
                Ok(PolicyChoice::Kind(kind))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PolicyChoice, A::Error> {
                PolicyConfig::deserialize(de::value::MapAccessDeserializer::new(map)).map(PolicyChoice::Config)
            }
        }
        deserializer.deserialize_any(ChoiceVisitor)
    }
}

/// A non-negative finite number of milliseconds, or `default` when left out.
pub fn millis(value: Option<f64>, name: &str, default: f64) -> Result<f64, JsValue> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Some(_) => Err(crate::js::coded_error(crate::js::INVALID_OPTIONS, &format!("`{name}` must be a number >= 0"))),
    }
}
