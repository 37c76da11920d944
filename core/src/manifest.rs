//! The model-set manifest (`models/<set>/manifest.json`): what the models expect and what they
//! measured. The schema layer: plain data types (the EE-HI ones included) and their validation, with
//! errors that name the field. It depends only on [`crate::error`]; policies and the runtime read it.
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

/// What a model's input looks like and how raw pixels become it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tensor shape including the batch dimension, which must be 1.
    pub shape: Vec<usize>,
    /// Axis order of `shape`.
    pub layout: Layout,
    /// Type of the raw input values a caller sends (only `u8` pixels are supported).
    pub dtype: Dtype,
    /// `x = (raw * scale - mean[c]) / std[c]` for a value of channel `c`.
    pub normalize: Normalize,
    /// Colour of the model's input (schema 2): `gray` (1 channel) or `rgb` (3). Without it, one
    /// channel means gray and three mean rgb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    /// How an image of another size or aspect ratio is fitted to the input (schema 2; default
    /// `stretch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
}

/// Colour of a model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// One channel: luma.
    Gray,
    /// Three channels: red, green, blue.
    Rgb,
}

impl Color {
    /// Channels of this colour.
    pub fn channels(self) -> usize {
        match self {
            Color::Gray => 1,
            Color::Rgb => 3,
        }
    }
}

/// How an image of another size is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Scale each axis to the input size (the aspect ratio may change).
    #[default]
    Stretch,
    /// Crop the largest centred region with the input's aspect ratio, then scale it.
    CenterCrop,
}

/// One value for every channel, or one per channel (schema 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerChannel {
    /// The same value for every channel.
    All(f32),
    /// A value per channel, in channel order.
    Each(Vec<f32>),
}

impl PerChannel {
    /// The value for `channel` (NaN past the end of a per-channel list; validation prevents that).
    pub fn get(&self, channel: usize) -> f32 {
        match self {
            PerChannel::All(v) => *v,
            PerChannel::Each(v) => v.get(channel).copied().unwrap_or(f32::NAN),
        }
    }

    /// The values as written.
    pub fn values(&self) -> &[f32] {
        match self {
            PerChannel::All(v) => std::slice::from_ref(v),
            PerChannel::Each(v) => v,
        }
    }
}

impl InputSpec {
    /// Channels, height and width of the input tensor (zeros for a shape that is not 4-D).
    pub fn chw(&self) -> (usize, usize, usize) {
        self.layout.chw(&self.shape)
    }

    /// Channels of the input tensor (0 for a shape that is not 4-D).
    pub fn channels(&self) -> usize {
        self.chw().0
    }

    /// Height and width of the input tensor (0, 0 for a shape that is not 4-D).
    pub fn height_width(&self) -> (usize, usize) {
        let (_, h, w) = self.chw();
        (h, w)
    }

    /// The input's colour: `color`, or gray for one channel and rgb for three; `None` for another
    /// channel count without a `color` (such a model takes raw values, not images).
    pub fn color(&self) -> Option<Color> {
        self.color.or(match self.channels() {
            1 => Some(Color::Gray),
            3 => Some(Color::Rgb),
            _ => None,
        })
    }

    /// How images are fitted (`stretch` unless the manifest says otherwise).
    pub fn resize(&self) -> Resize {
        self.resize.unwrap_or_default()
    }
}

/// Axis order of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Batch, channels, height, width.
    #[serde(rename = "NCHW")]
    Nchw,
    /// Batch, height, width, channels.
    #[serde(rename = "NHWC")]
    Nhwc,
}

impl Layout {
    /// Channels, height and width of a 4-D `shape` in this layout (zeros for another rank).
    pub fn chw(self, shape: &[usize]) -> (usize, usize, usize) {
        match (self, shape) {
            (Layout::Nchw, [_, c, h, w]) | (Layout::Nhwc, [_, h, w, c]) => (*c, *h, *w),
            _ => (0, 0, 0),
        }
    }
}

/// Raw input value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// Unsigned bytes (pixels 0..=255).
    U8,
}

/// Affine normalisation applied to every raw value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Multiplier applied first (1/255 maps pixels to 0..1).
    pub scale: f32,
    /// Subtracted after scaling: one value, or one per channel (schema 2).
    pub mean: PerChannel,
    /// Divides the centred value; every value must be > 0.
    pub std: PerChannel,
}

impl Normalize {
    /// `(value * scale - mean[channel]) / std[channel]`: the one formula both validation and
    /// preprocessing use.
    pub fn apply(&self, value: f32, channel: usize) -> f32 {
        (value * self.scale - self.mean.get(channel)) / self.std.get(channel)
    }
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
}

impl ModelEntry {
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

impl EeHiThresholds {
    /// Checks `0 <= offload <= exit <= 1` and `0 <= hi <= 1`; the reason when not.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let ok = |t: f32| t.is_finite() && (0.0..=1.0).contains(&t);
        if !(ok(self.exit) && ok(self.offload) && ok(self.hi)) {
            return Err(format!("ee_hi thresholds must be in 0..=1, are {self:?}"));
        }
        if self.offload > self.exit {
            return Err(format!(
                "ee_hi offload threshold {} must not exceed the exit threshold {}",
                self.offload, self.exit
            ));
        }
        Ok(())
    }
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

impl EeOutcome {
    /// Expected latency per sample under `cost`: stage 1 always, stage 2 when run, the round trip when offloaded.
    pub fn expected_ms(&self, cost: &EeCost) -> f64 {
        cost.stage1_ms + self.stage2 * cost.stage2_ms + self.offloaded * cost.offload_ms
    }
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

/// A `source` entry, when there is one, is a file entry too.
fn check_source(prefix: &str, source: Option<&SourceFile>) -> Result<()> {
    source.map_or(Ok(()), |s| check_file(&format!("{prefix}.source"), &s.file, &s.sha256))
}

/// A model file entry: a plain relative file name and a lower-case hex sha256.
fn check_file(prefix: &str, file: &str, sha256: &str) -> Result<()> {
    if file.trim().is_empty() || file.contains("..") || file.starts_with('/') {
        return Err(invalid(format!("{prefix}.file"), format!("`{file}` is not a plain relative file name")));
    }
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return Err(invalid(format!("{prefix}.sha256"), "must be 64 lower-case hex digits"));
    }
    Ok(())
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::ManifestInvalid { field: field.into(), reason: reason.into() }
}

/// Most values an input or feature tensor may have (16 Mi).
const MAX_VALUES: usize = 16 * 1024 * 1024;

/// The number of values of a shape, `None` on overflow.
fn checked_len(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
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

    /// Checks every field that later code relies on; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=SCHEMA_VERSION).contains(&self.schema_version) {
            return Err(invalid(
                "schema_version",
                format!("is {}, this version of hiedge reads 1 to {SCHEMA_VERSION}", self.schema_version),
            ));
        }
        if self.schema_version < 2 {
            let per_channel = |p: &PerChannel| matches!(p, PerChannel::Each(_));
            let v2 = [
                ("input.color", self.input.color.is_some()),
                ("input.resize", self.input.resize.is_some()),
                ("input.normalize.mean", per_channel(&self.input.normalize.mean)),
                ("input.normalize.std", per_channel(&self.input.normalize.std)),
            ];
            if let Some((field, _)) = v2.iter().find(|(_, used)| *used) {
                return Err(invalid(
                    *field,
                    "is a schema_version 2 field (per-channel values too): set schema_version to 2",
                ));
            }
        }
        if self.name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        self.validate_input()?;
        if self.classes.len() < 2 {
            return Err(invalid("classes", format!("needs at least 2 classes, has {}", self.classes.len())));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.trim().is_empty() {
                return Err(invalid(format!("classes[{i}]"), "must not be empty"));
            }
            if self.classes[..i].contains(c) {
                return Err(invalid(format!("classes[{i}]"), format!("`{c}` appears twice")));
            }
        }
        if self.models.is_empty() {
            return Err(invalid("models", "must list at least one model"));
        }
        for (name, m) in &self.models {
            let f = |k: &str| format!("models.{name}.{k}");
            check_file(&format!("models.{name}"), &m.file, &m.sha256)?;
            check_source(&format!("models.{name}"), m.source.as_ref())?;
            if m.input_name.is_empty() {
                return Err(invalid(f("input_name"), "must not be empty"));
            }
            if let Some(a) = m.test_accuracy.filter(|a| !(0.0..=1.0).contains(a)) {
                return Err(invalid(f("test_accuracy"), format!("{a} is not in 0..=1")));
            }
        }
        if let Some(ee) = &self.early_exit {
            for (k, st) in [("stage1", &ee.stage1), ("stage2", &ee.stage2)] {
                check_file(&format!("early_exit.{k}"), &st.file, &st.sha256)?;
                check_source(&format!("early_exit.{k}"), st.source.as_ref())?;
            }
            if ee.feature_shape.is_empty() || ee.feature_shape.contains(&0) {
                return Err(invalid("early_exit.feature_shape", "must be a non-empty shape without zeros"));
            }
            if checked_len(&ee.feature_shape).is_none_or(|n| n > MAX_VALUES) {
                return Err(invalid("early_exit.feature_shape", "has more values than hiedge accepts (16 Mi)"));
            }
        }
        if let Some(sp) = &self.split {
            for (k, st) in [("trunk", &sp.trunk), ("tail", &sp.tail)] {
                check_file(&format!("split.{k}"), &st.file, &st.sha256)?;
                check_source(&format!("split.{k}"), st.source.as_ref())?;
            }
            if sp.feature_shape.is_empty() || sp.feature_shape.contains(&0) {
                return Err(invalid("split.feature_shape", "must be a non-empty shape without zeros"));
            }
            if checked_len(&sp.feature_shape).is_none_or(|n| n > MAX_VALUES) {
                return Err(invalid("split.feature_shape", "has more values than hiedge accepts (16 Mi)"));
            }
        }
        if let Some(d) = &self.decision {
            if let Some(sp) = &d.split {
                if !(sp.exit.is_finite() && (0.0..=1.0).contains(&sp.exit)) {
                    return Err(invalid("decision.split.exit", format!("{} is not in 0..=1", sp.exit)));
                }
            }
            if !(d.temperature.is_finite() && d.temperature > 0.0) {
                return Err(invalid("decision.temperature", format!("{} is not a positive number", d.temperature)));
            }
            let l = d.logistic_top2;
            if ![l.bias, l.w1, l.w2].iter().all(|v| v.is_finite()) {
                return Err(invalid("decision.logistic_top2", "weights must be finite numbers"));
            }
            if let Some(ee) = &d.early_exit {
                ee.thresholds.validate().map_err(|reason| invalid("decision.early_exit.thresholds", reason))?;
            }
            for (k, t) in &d.thresholds {
                if !t.is_finite() {
                    return Err(invalid(format!("decision.thresholds.{k}"), "must be a finite number"));
                }
            }
        }
        Ok(())
    }

    fn validate_input(&self) -> Result<()> {
        let s = &self.input.shape;
        if s.len() != 4 {
            return Err(invalid(
                "input.shape",
                format!("must have 4 dimensions (N, C, H, W or N, H, W, C), has {}", s.len()),
            ));
        }
        if s[0] != 1 {
            return Err(invalid("input.shape", format!("batch dimension must be 1, is {}", s[0])));
        }
        if s.contains(&0) {
            return Err(invalid("input.shape", "no dimension may be 0"));
        }
        match checked_len(s) {
            Some(n) if n <= MAX_VALUES => {}
            _ => return Err(invalid("input.shape", format!("{s:?} has more values than hiedge accepts (16 Mi)"))),
        }
        let channels = self.input.channels();
        if let Some(color) = self.input.color {
            if color.channels() != channels {
                return Err(invalid(
                    "input.color",
                    format!("{color:?} needs {} channel(s) but input.shape has {channels}", color.channels()),
                ));
            }
        }
        let norm = &self.input.normalize;
        for (field, values) in [("input.normalize.mean", &norm.mean), ("input.normalize.std", &norm.std)] {
            if let PerChannel::Each(v) = values {
                if v.len() != channels {
                    return Err(invalid(
                        field,
                        format!("has {} values but the input has {channels} channels", v.len()),
                    ));
                }
            }
        }
        if let Some(std) = norm.std.values().iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(invalid("input.normalize.std", format!("{std} is not a positive number")));
        }
        if !norm.scale.is_finite() || norm.scale == 0.0 {
            return Err(invalid("input.normalize.scale", format!("{} is not a non-zero number", norm.scale)));
        }
        if !norm.mean.values().iter().all(|m| m.is_finite()) {
            return Err(invalid("input.normalize.mean", "must be finite numbers"));
        }
        for channel in 0..channels {
            for pixel in [0.0f32, 255.0] {
                let value = norm.apply(pixel, channel);
                if !value.is_finite() {
                    return Err(invalid(
                        "input.normalize",
                        format!("pixel value {pixel} normalises to {value}: scale, mean and std overflow f32"),
                    ));
                }
            }
        }
        Ok(())
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

    /// Calibrated threshold for a policy key (`max_prob`, `margin`, `entropy`, `logistic_top2`).
    pub fn threshold(&self, key: &str) -> Option<f32> {
        self.decision.as_ref().and_then(|d| d.thresholds.get(key).copied())
    }
}

#[cfg(test)]
mod tests {
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

    fn edit(f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(VALID).unwrap();
        f(&mut v);
        v.to_string()
    }

    fn field_of(json: &str) -> String {
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
    fn names_the_invalid_field() {
        assert_eq!(field_of(&edit(|v| v["schema_version"] = 3.into())), "schema_version");
        assert_eq!(field_of(&edit(|v| v["schema_version"] = 0.into())), "schema_version");
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = serde_json::json!([2, 1, 28, 28]))), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = serde_json::json!([1, 28, 28]))), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = serde_json::json!([1, 0, 28, 28]))), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["normalize"]["std"] = 0.into())), "input.normalize.std");
        // Seeds of the manifest fuzz target: a shape whose product overflows usize, and a normalisation
        // that overflows f32.
        let huge = serde_json::json!([1, u64::MAX / 2, 4, 4]);
        assert_eq!(field_of(&edit(|v| v["input"]["shape"] = huge.clone())), "input.shape");
        assert_eq!(field_of(&edit(|v| v["input"]["normalize"]["std"] = 1e-40.into())), "input.normalize");
        assert_eq!(field_of(&edit(|v| v["classes"] = serde_json::json!(["a"]))), "classes");
        assert_eq!(field_of(&edit(|v| v["classes"] = serde_json::json!(["a", "b", "a"]))), "classes[2]");
        assert_eq!(field_of(&edit(|v| v["models"] = serde_json::json!({}))), "models");
        assert_eq!(field_of(&edit(|v| v["models"]["tiny"]["sha256"] = "abc".into())), "models.tiny.sha256");
        assert_eq!(field_of(&edit(|v| v["models"]["tiny"]["file"] = "../x.onnx".into())), "models.tiny.file");
        assert_eq!(field_of(&edit(|v| v["models"]["tiny"]["test_accuracy"] = 1.5.into())), "models.tiny.test_accuracy");
        assert_eq!(field_of(&edit(|v| v["decision"]["temperature"] = (-1).into())), "decision.temperature");
    }

    #[test]
    fn unknown_model_lists_available() {
        let m = Manifest::from_json(VALID).unwrap();
        let err = m.model("huge").unwrap_err().to_string();
        assert!(err.contains("huge") && err.contains("tiny"), "{err}");
    }
}
