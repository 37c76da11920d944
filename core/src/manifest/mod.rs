//! The model-set manifest (`models/<set>/manifest.json`): what the models expect and what they
//! measured. The schema layer: plain data types (the EE-HI ones included; the input contract in
//! `input.rs`, the offload codec in `offload.rs`) and their validation (`validate.rs`), with errors
//! that name the field. It depends on [`crate::error`] and the protocol's sample encodings (its own
//! layer); policies and the runtime read it.
//!
//! ```
//! let json = r#"{
//!   "schema_version": 1, "name": "demo",
//!   "input": {"shape": [1, 1, 2, 2], "layout": "NCHW", "dtype": "u8",
//!             "normalize": {"scale": 0.00392156862745098, "mean": 0.5, "std": 0.25}},
//!   "classes": ["no", "yes"],
//!   "models": {"tiny": {"file": "tiny.onnx", "sha256": "00000000000000000000000000000000000000000000000000000000000000aa",
//!                       "input_name": "image", "output": "logits", "test_accuracy": 0.9}}
//! }"#;
//! let manifest = hiedge_core::Manifest::from_json(json).unwrap();
//! assert_eq!(manifest.input_len(), 4);
//! assert_eq!(manifest.temperature(), 1.0);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod input;
mod offload;
mod oip;
mod validate;
mod weights;

pub use input::{Color, Dtype, InputSpec, Layout, Normalize, PerChannel, Resize};
pub use offload::{OffloadCodec, DEFAULT_JPEG_QUALITY, DEFAULT_WEBP_QUALITY};
pub use oip::{Escalate, OipDatatype, OipFallback, OipTier, MAX_OIP_TIMEOUT_MS};
pub use weights::{StoredWeights, WeightGate, WeightStorage};

/// The manifest schema this crate writes. Version 2 adds `input.color`, `input.resize` and
/// per-channel `normalize.mean` / `normalize.std`; version 1 manifests still read.
pub const SCHEMA_VERSION: u32 = 2;

/// A model set: the input contract shared by its models, its classes, the models, and the
/// calibrated decision module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// 1 or 2 ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Name of the model set, e.g. `fashion-mnist`.
    pub name: String,
    /// Input contract.
    pub input: InputSpec,
    /// Class names, index = label.
    pub classes: Vec<String>,
    /// Models by role (`tiny`, `large`, ...).
    pub models: BTreeMap<String, ModelEntry>,
    /// Decision-module parameters written by `hiedge calibrate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionParams>,
    /// An early-exit local model (two model files), for EE-HI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_exit: Option<EarlyExitEntry>,
    /// A network split across device and edge (MDI-Exit): the device runs the trunk (image to exit
    /// head and features), the Worker the tail (features to logits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitEntry>,
    /// How the client encodes the samples it offloads unless its options say otherwise
    /// (`"jpeg:85"`, `"webp:80"`, `"png"`, `"raw"`; absent: raw). Chosen with
    /// `hiedge eval --offload-codec`, which measures the large model's accuracy on such samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload_codec: Option<OffloadCodec>,
    /// A third tier: the set's largest model on an Open Inference Protocol server, asked by the
    /// Worker when its own large model is unsure (device -> Worker -> server). Kept as JSON here
    /// and read by [`Manifest::oip_tier`] where it is used (the Worker, the CLI), so the browser
    /// client, which never uses it, does not carry its reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oip: Option<serde_json::Value>,
}

/// A split model: `trunk` (on the device) maps the image to exit-head logits and the features it
/// sends; `tail` (at the edge, never downloadable) maps the features to the final logits. The
/// features travel quantised to u8 with an affine per-tensor scale (see `runtime::split`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    /// Image -> (`exit_logits`, `features`).
    pub trunk: StageEntry,
    /// `features` -> `logits`.
    pub tail: StageEntry,
    /// Shape of the features tensor between trunk and tail.
    pub feature_shape: Vec<usize>,
    /// Test accuracy of the trunk's exit head alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_test_accuracy: Option<f64>,
    /// Test accuracy of trunk + tail on float features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Test accuracy of trunk + tail on u8-quantised features, as training measured it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy_u8: Option<f64>,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Training details, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<serde_json::Value>,
}

/// The ONNX file a model file was compiled from by `hiedge compile` (kept for provenance, for
/// onnxruntime and for compiling again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// File name, relative to the manifest.
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
}

/// One model file of an early-exit or split model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageEntry {
    /// File name, relative to the manifest: the NNEF archive the runtime loads.
    pub file: String,
    /// Hex sha256 of the file.
    pub sha256: String,
    /// The ONNX file `file` was compiled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceFile>,
    /// Parameter count, informational.
    #[serde(default)]
    pub params: Option<u64>,
}

/// An early-exit model: stage 1 maps the image to exit-head logits and intermediate features,
/// stage 2 maps the features to the final logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyExitEntry {
    /// Image -> (`exit_logits`, `features`).
    pub stage1: StageEntry,
    /// `features` -> `logits`.
    pub stage2: StageEntry,
    /// Shape of the features tensor between the stages.
    pub feature_shape: Vec<usize>,
    /// Test accuracy of the exit head alone.
    pub exit_test_accuracy: f64,
    /// Test accuracy of the final head.
    pub test_accuracy: f64,
    /// Human description.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Training details, informational.
    #[serde(default)]
    pub trained: Option<serde_json::Value>,
}

/// What a model outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalised scores; hiedge applies softmax (with the calibrated temperature).
    Logits,
    /// Already a probability distribution.
    Probabilities,
}

impl OutputKind {
    /// A model's raw outputs as probabilities: softmax at `temperature` for logits, unchanged for
    /// a model that already outputs probabilities (a temperature cannot be applied to those). The
    /// runtime, the sweeps and calibration all go through this.
    pub fn probabilities(self, outputs: &[f32], temperature: f32) -> Vec<f32> {
        match self {
            OutputKind::Logits => crate::prob::softmax(outputs, temperature),
            OutputKind::Probabilities => outputs.to_vec(),
        }
    }
}

/// One model file of the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// File name relative to the manifest: the NNEF archive the runtime loads (`hiedge compile`
    /// writes it from the ONNX file; native tools also load ONNX here).
    pub file: String,
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// The ONNX file `file` was compiled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceFile>,
    /// Where `file` is stored in parts (a file over Cloudflare's 25 MiB static-asset limit, written
    /// by `hiedge import` as `<file>.part-0`, `<file>.part-1`, ...): their concatenation, in order,
    /// is `file`, whose sha256 is `sha256`. Absent: `file` itself is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<SourceFile>>,
    /// Name of the ONNX input.
    pub input_name: String,
    /// What the single output holds.
    pub output: OutputKind,
    /// Number of weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<u64>,
    /// Bytes of fp32 weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_bytes: Option<u64>,
    /// Test-set accuracy measured on the exported file (0..=1); absent until measured (a set
    /// written by `hiedge import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// One-line description of the architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Training provenance (epochs, seed, library versions), free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<serde_json::Value>,
    /// How `file` stores its weights when not as f32 (`hiedge quantize`), with the accuracy gate
    /// it passed. `hiedge compile` stores them the same way again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<StoredWeights>,
}

impl ModelEntry {
    /// The files that store this model: its parts, in order, or `file` itself.
    pub fn stored_files(&self) -> Vec<&str> {
        match &self.parts {
            Some(parts) => parts.iter().map(|p| p.file.as_str()).collect(),
            None => vec![self.file.as_str()],
        }
    }

    /// `"<name>@<first 12 hex digits of sha256>"`, the model id used on the wire.
    pub fn id(&self, name: &str) -> String {
        format!("{name}@{}", &self.sha256[..12.min(self.sha256.len())])
    }
}

/// Decision-module parameters fitted on the calibration set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionParams {
    /// Softmax temperature for the tiny model's logits (1 = none).
    pub temperature: f32,
    /// The calibrated `LogisticTop2` ("LRA") decision module.
    pub logistic_top2: LogisticParams,
    /// Per-policy thresholds that reach `target_accuracy` on the calibration set with the least
    /// offloading (keys: `max_prob`, `margin`, `entropy`, `logistic_top2`).
    #[serde(default)]
    pub thresholds: BTreeMap<String, f32>,
    /// Accuracy the thresholds aim for on the calibration set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_accuracy: Option<f64>,
    /// Where the parameters were fitted (e.g. `train[55000..60000]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_set: Option<String>,
    /// EE-HI thresholds fitted on the calibration set (when the model set has an early-exit model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_exit: Option<EeHiCalibrated>,
    /// The split model's exit threshold fitted on the calibration set (when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitCalibrated>,
    /// What a deployment is watched against: the calibration set's offload fractions and the tiny
    /// model's confidence distribution (see [`crate::monitor`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringBaseline>,
}

/// The calibration set as a deployment's monitor expects to see it again: each calibrated
/// policy's offload fraction, and the tiny model's top probability `p1` (after the manifest's
/// temperature) as a histogram. The bins are the calibration set's quantiles (`p1_edges`,
/// ascending; ties merged), so every bin holds a comparable share and a drift test has enough
/// expected samples in each; `p1_fractions[i]` is the share of calibration samples in bin `i`,
/// where bin `i` holds `p1` with `p1_edges[i-1] < p1 <= p1_edges[i]` (the first bin everything up
/// to `p1_edges[0]`, the last everything above the last edge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringBaseline {
    /// Calibration samples the baseline was measured on.
    pub samples: u64,
    /// Share of calibration samples each calibrated policy offloads (keys as `thresholds`).
    pub offload_fractions: BTreeMap<String, f32>,
    /// Bin edges of `p1`, strictly ascending, inside `(0, 1)`.
    pub p1_edges: Vec<f32>,
    /// Share of calibration samples per bin (`p1_edges.len() + 1` values summing to 1).
    pub p1_fractions: Vec<f32>,
}

/// The split model's calibrated exit: answer with the trunk's exit head when its top probability
/// `p1 > exit`, else finish the sample past the trunk (tail at the edge or on the device, or the
/// large model).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitCalibrated {
    /// Exit threshold on the exit head's `p1`.
    pub exit: f32,
    /// Accuracy the threshold aims for on the calibration set (with u8 features).
    pub target_accuracy: f64,
    /// Share of calibration samples that exited at the trunk.
    pub exited: f64,
    /// Accuracy reached on the calibration set.
    pub accuracy: f64,
}

/// `P(tiny is right) = sigmoid(bias + w1 * p1 + w2 * p2)` over the top two probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogisticParams {
    /// Intercept.
    pub bias: f32,
    /// Weight of the top probability.
    pub w1: f32,
    /// Weight of the second probability.
    pub w2: f32,
}

/// EE-HI thresholds, all on the top probability `p1` of a head's softmax: after stage 1, answer
/// locally when the exit head is sure (`p1 > exit`), offload at once when it is very unsure
/// (`p1 <= offload`), else run stage 2 and offload when `p1 <= hi` (MaxProb HI). The rules that
/// apply them are [`EeHiPolicy`](crate::policy::EeHiPolicy)'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EeHiThresholds {
    /// Exit early with the exit head's answer when its `p1 > exit`.
    pub exit: f32,
    /// Offload without running stage 2 when the exit head's `p1 <= offload` (`offload <= exit`).
    pub offload: f32,
    /// After stage 2: offload when the final head's `p1 <= hi`.
    pub hi: f32,
}

/// Relative costs EE-HI thresholds are fitted for (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EeCost {
    /// Stage 1 on the device.
    pub stage1_ms: f64,
    /// Stage 2 on the device.
    pub stage2_ms: f64,
    /// One offload round trip.
    pub offload_ms: f64,
}

/// EE-HI over a labelled set: what happened, as fractions of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EeOutcome {
    /// Final answers that were right.
    pub accuracy: f64,
    /// Samples offloaded (early or after stage 2).
    pub offloaded: f64,
    /// Samples answered by the exit head.
    pub exited: f64,
    /// Samples that ran stage 2.
    pub stage2: f64,
}

/// EE-HI as `hiedge calibrate` fitted it: thresholds, the costs they were fitted for, and what they
/// gave on the calibration set. Stored in the manifest's `decision.early_exit`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EeHiCalibrated {
    /// The thresholds.
    pub thresholds: EeHiThresholds,
    /// Costs minimised (stage times measured natively, offload round trip assumed).
    pub fitted_for: EeCost,
    /// Outcome on the calibration set.
    pub calibration: EeOutcome,
}

impl Manifest {
    /// Parses and validates a manifest.
    pub fn from_json(json: &str) -> Result<Self> {
        let manifest: Manifest = serde_json::from_str(json)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Pretty JSON, as committed in the repository.
    pub fn to_json_pretty(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Number of raw values (bytes for `u8`) one sample has (saturating: a validated manifest
    /// has at most 16 Mi).
    pub fn input_len(&self) -> usize {
        self.input.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// `(channels, height, width)` of one sample.
    pub fn chw(&self) -> (usize, usize, usize) {
        self.input.chw()
    }

    /// The entry for model `name`.
    pub fn model(&self, name: &str) -> Result<&ModelEntry> {
        self.models.get(name).ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            available: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Calibrated softmax temperature, 1 when the manifest has not been calibrated.
    pub fn temperature(&self) -> f32 {
        self.decision.as_ref().map_or(1.0, |d| d.temperature)
    }

    /// The server tier ([`OipTier`]) from `oip`, checked: `None` when there is none; an error
    /// naming the field (`oip.timeout_ms`) when it is not a valid one, when the set has no model
    /// `oip.worker_model` (the Worker's tier below the server), or when a sample's request could be
    /// larger than `oip.max_request_bytes`.
    pub fn oip_tier(&self) -> Result<Option<OipTier>> {
        let Some(value) = &self.oip else { return Ok(None) };
        let tier: OipTier = serde_json::from_value(value.clone())
            .map_err(|e| Error::ManifestInvalid { field: "oip".into(), reason: e.to_string() })?;
        tier.validate()?;
        if tier.worker_model == "tiny" || !self.models.contains_key(&tier.worker_model) {
            return Err(Error::ManifestInvalid {
                field: "oip.worker_model".into(),
                reason: format!(
                    "`{}` must name a model of the set other than the device's `tiny`: the Worker's tier below the server",
                    tier.worker_model.escape_debug()
                ),
            });
        }
        let bound = tier.request_bound(self.input_len());
        if bound > tier.max_request_bytes {
            return Err(Error::ManifestInvalid {
                field: "oip.max_request_bytes".into(),
                reason: format!(
                    "a sample of {} values as {} {} may take {bound} bytes, over the {} allowed: raise it, or send binary",
                    self.input_len(),
                    tier.datatype.name(),
                    if tier.binary { "binary" } else { "JSON" },
                    tier.max_request_bytes
                ),
            });
        }
        Ok(Some(tier))
    }

    /// The model the Worker runs: `oip.worker_model` when the set has a server tier (three tiers
    /// name their middle model there), else `large`. An error names the field of an invalid `oip`.
    pub fn worker_model(&self) -> Result<String> {
        Ok(self.oip_tier()?.map_or_else(|| "large".to_string(), |t| t.worker_model))
    }

    /// Calibrated threshold for a policy key (`max_prob`, `margin`, `entropy`, `logistic_top2`).
    pub fn threshold(&self, key: &str) -> Option<f32> {
        self.decision.as_ref().and_then(|d| d.thresholds.get(key).copied())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const VALID: &str = r#"{
      "schema_version": 1, "name": "fm",
      "input": {"shape": [1, 1, 28, 28], "layout": "NCHW", "dtype": "u8",
                "normalize": {"scale": 0.00392156862745098, "mean": 0.286, "std": 0.353}},
      "classes": ["a", "b", "c"],
      "models": {"tiny": {"file": "tiny.onnx",
                          "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                          "input_name": "image", "output": "logits", "test_accuracy": 0.9}},
      "decision": {"temperature": 1.5, "logistic_top2": {"bias": -3, "w1": 8, "w2": -2},
                   "thresholds": {"max_prob": 0.9}}
    }"#;

    pub(super) fn edit(f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(VALID).unwrap();
        f(&mut v);
        v.to_string()
    }

    pub(super) fn field_of(json: &str) -> String {
        match Manifest::from_json(json) {
            Err(Error::ManifestInvalid { field, .. }) => field,
            other => panic!("expected ManifestInvalid, got {other:?}"),
        }
    }

    #[test]
    fn parses_valid_manifest_and_round_trips() {
        let m = Manifest::from_json(VALID).unwrap();
        assert_eq!(m.input_len(), 784);
        assert_eq!(m.chw(), (1, 28, 28));
        assert_eq!(m.temperature(), 1.5);
        assert_eq!(m.threshold("max_prob"), Some(0.9));
        assert_eq!(m.threshold("margin"), None);
        assert_eq!(m.model("tiny").unwrap().id("tiny"), "tiny@0123456789ab");
        let again = Manifest::from_json(&m.to_json_pretty().unwrap()).unwrap();
        assert_eq!(again, m);
    }

    /// An RGB NHWC model with per-channel normalisation, colour and centre-crop: schema 2 only.
    #[test]
    fn schema_2_reads_colour_per_channel_normalisation_and_resize() {
        let rgb = |version: u32| {
            edit(|v| {
                v["schema_version"] = version.into();
                v["input"] = serde_json::json!({"shape": [1, 32, 32, 3], "layout": "NHWC", "dtype": "u8",
                    "normalize": {"scale": 0.00392156862745098, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                    "color": "rgb", "resize": "center_crop"});
            })
        };
        let m = Manifest::from_json(&rgb(2)).unwrap();
        assert_eq!((m.input.color(), m.input.resize(), m.input.channels()), (Some(Color::Rgb), Resize::CenterCrop, 3));
        assert_eq!(m.input.height_width(), (32, 32));
        assert!((m.input.normalize.apply(255.0, 2) - (1.0 - 0.406) / 0.225).abs() < 1e-5);
        assert_eq!(Manifest::from_json(&m.to_json_pretty().unwrap()).unwrap(), m);
        // The same in a schema 1 manifest names the first schema 2 field.
        assert_eq!(field_of(&rgb(1)), "input.color");
        // A version 1 manifest without them still reads, and means what it meant.
        let v1 = Manifest::from_json(VALID).unwrap();
        assert_eq!((v1.input.color(), v1.input.resize()), (Some(Color::Gray), Resize::Stretch));
        // Contradictions name the field.
        let bad = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(&rgb(2)).unwrap();
            f(&mut v);
            field_of(&v.to_string())
        };
        assert_eq!(bad(&|v| v["input"]["color"] = "gray".into()), "input.color");
        assert_eq!(bad(&|v| v["input"]["normalize"]["mean"] = serde_json::json!([0.5, 0.5])), "input.normalize.mean");
        assert_eq!(
            bad(&|v| v["input"]["normalize"]["std"] = serde_json::json!([0.2, 0.0, 0.2])),
            "input.normalize.std"
        );
        assert!(matches!(Manifest::from_json(&rgb(2).replace("center_crop", "squash")), Err(Error::ManifestParse(_))));
    }

    #[test]
    fn rejects_bad_json_and_unknown_fields() {
        assert!(matches!(Manifest::from_json("{"), Err(Error::ManifestParse(_))));
        let extra = edit(|v| v["surprise"] = 1.into());
        let err = Manifest::from_json(&extra).unwrap_err().to_string();
        assert!(err.contains("surprise"), "{err}");
        let missing = edit(|v| {
            v.as_object_mut().unwrap().remove("classes");
        });
        let err = Manifest::from_json(&missing).unwrap_err().to_string();
        assert!(err.contains("classes"), "{err}");
    }

    #[test]
    fn unknown_model_lists_available() {
        let m = Manifest::from_json(VALID).unwrap();
        let err = m.model("huge").unwrap_err().to_string();
        assert!(err.contains("huge") && err.contains("tiny"), "{err}");
    }
}
