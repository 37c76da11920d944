//! The third tier: where a set's largest model runs beyond the Worker, on a server that speaks the
//! Open Inference Protocol (KServe v2: Triton, KServe, MLServer, Seldon). The manifest names the
//! model, its tensors and when the Worker sends a sample on; the server's address and credentials
//! are Worker settings (a variable and a secret the manifest names), so the manifest browsers
//! download never holds them.

use serde::{Deserialize, Serialize};

use super::OutputKind;
use crate::error::{Error, Result};

fn default_timeout_ms() -> u32 {
    5_000
}

fn default_url_var() -> String {
    "OIP_URL".into()
}

fn default_worker_model() -> String {
    "large".into()
}

fn default_max_request_bytes() -> usize {
    DEFAULT_OIP_REQUEST_BYTES
}

/// The largest inference request a Worker sends by default (`oip.max_request_bytes`): 8 MiB, far
/// above a 224x224 RGB sample in any encoding (FP32 JSON: about 3.8 MB).
pub const DEFAULT_OIP_REQUEST_BYTES: usize = 8 << 20;

/// The most `oip.max_request_bytes` may be: Cloudflare's request body limit on the Free and Pro
/// plans, 100 MB (<https://developers.cloudflare.com/workers/platform/limits/#request-limits>).
pub const MAX_OIP_REQUEST_BYTES: usize = 100_000_000;

/// Room for an inference request's JSON around its data (id, names, shape, parameters).
const REQUEST_ENVELOPE_BYTES: usize = 4096;

/// The longest upstream call a manifest may ask for: Workers on the paid plan may wait on a
/// subrequest far longer, but a browser waiting for its offload should not.
pub const MAX_OIP_TIMEOUT_MS: u32 = 30_000;

/// The set's largest model on an Open Inference Protocol server (the manifest's `oip`): the Worker
/// runs its own large model on every offloaded sample and sends the sample on when `escalate`
/// says so (device -> Worker -> server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OipTier {
    /// The model's name on the server (`/v2/models/{model}`).
    pub model: String,
    /// The model version (`/v2/models/{model}/versions/{version}`); absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The input tensor's name.
    pub input_name: String,
    /// The output tensor's name: one value per class.
    pub output_name: String,
    /// What the input tensor holds: the sample's pixels (`UINT8`), or the values after the
    /// manifest's normalisation (`FP32`); either in the manifest's input shape and layout.
    pub datatype: OipDatatype,
    /// What the output holds: `logits` (the Worker applies softmax) or `probabilities`.
    pub output: OutputKind,
    /// Send the input and ask for the output as raw bytes after the JSON header (the binary
    /// tensor data extension), instead of JSON number arrays.
    #[serde(default)]
    pub binary: bool,
    /// When the Worker sends a sample on, judged on its own large model's probabilities.
    pub escalate: Escalate,
    /// How long the Worker waits for the server's answer (1..=30,000 ms; default 5,000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// What answers when the server is down, slow or wrong (default `worker`).
    #[serde(default)]
    pub on_failure: OipFallback,
    /// The Worker variable holding the server's base URL (default `OIP_URL`).
    #[serde(default = "default_url_var")]
    pub url_var: String,
    /// The Worker secret holding the server's bearer token; absent: no `Authorization` is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// The manifest's model the Worker runs as the tier below the server (default `large`). Three
    /// tiers name a smaller one (`mid`): `models.large` is then the server's model, kept in the
    /// manifest for `hiedge eval` and `hiedge calibrate`, and the Worker never loads it.
    #[serde(default = "default_worker_model")]
    pub worker_model: String,
    /// The largest inference request the Worker sends (default 8 MiB; at most 100 MB). A set whose
    /// samples could need more, in its datatype and encoding, is refused when it is read.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

/// The Open Inference Protocol datatype of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OipDatatype {
    /// The pixels as they arrived (0..=255).
    #[serde(rename = "UINT8")]
    Uint8,
    /// The normalised values the Worker's own model takes.
    #[serde(rename = "FP32")]
    Fp32,
}

impl OipDatatype {
    /// The protocol's name (`"UINT8"`, `"FP32"`).
    pub fn name(self) -> &'static str {
        match self {
            OipDatatype::Uint8 => "UINT8",
            OipDatatype::Fp32 => "FP32",
        }
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            OipDatatype::Uint8 => 1,
            OipDatatype::Fp32 => 4,
        }
    }
}

/// When the Worker sends a sample on to the server: a threshold on a confidence score of its own
/// model's probabilities (sent when the score is `<= threshold`, the rule the device's policies
/// use), or every sample. Serialises as `{"kind": "max_prob", "threshold": 0.8}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Escalate {
    /// Send when the top probability is `<= threshold`.
    MaxProb {
        /// In 0..=1.
        threshold: f32,
    },
    /// Send when top-1 minus top-2 is `<= threshold`.
    Margin {
        /// In 0..=1.
        threshold: f32,
    },
    /// Send when `1 - H/ln K` is `<= threshold`.
    Entropy {
        /// In 0..=1.
        threshold: f32,
    },
    /// Send every sample (the Worker's model answers only when the server cannot).
    Always,
}

impl Escalate {
    /// The same rule at `threshold`; `always` has no threshold and stays as it is.
    pub fn with_threshold(self, threshold: f32) -> Escalate {
        match self {
            Escalate::MaxProb { .. } => Escalate::MaxProb { threshold },
            Escalate::Margin { .. } => Escalate::Margin { threshold },
            Escalate::Entropy { .. } => Escalate::Entropy { threshold },
            Escalate::Always => Escalate::Always,
        }
    }
}

/// What answers a sample the server should have answered but could not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OipFallback {
    /// The Worker's own large model (fail cheap: the sample is answered, by the second tier).
    #[default]
    Worker,
    /// A `503`/`502` JSON error (fail expensive: the client keeps its device answer).
    Error,
}

/// A name the Workers platform accepts for a variable or secret: letters, digits and `_`, not
/// starting with a digit, at most 64 characters (hiedge's own bound).
fn is_binding_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A model name or version that is one URL path segment as is: letters, digits, `.`, `_`, `-`.
fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::ManifestInvalid { field: format!("oip.{field}"), reason: reason.into() }
}

impl OipTier {
    /// The most bytes an inference request for a sample of `input_len` values can take in this
    /// tier's datatype and encoding: the data (binary: the values' bytes; JSON: each value's longest
    /// text and a comma, `255,` or an `f32` widened to `f64` as serde_json writes it) and its envelope.
    pub fn request_bound(&self, input_len: usize) -> usize {
        let per_value = match (self.binary, self.datatype) {
            (true, datatype) => datatype.size(),
            (false, OipDatatype::Uint8) => 4,
            (false, OipDatatype::Fp32) => 26,
        };
        input_len.saturating_mul(per_value).saturating_add(REQUEST_ENVELOPE_BYTES)
    }

    /// Checks every field; the error names it (`oip.timeout_ms`).
    pub fn validate(&self) -> Result<()> {
        if !is_path_segment(&self.model) {
            return Err(invalid("model", "must be 1-128 letters, digits, `.`, `_` or `-`"));
        }
        if self.version.as_deref().is_some_and(|v| !is_path_segment(v)) {
            return Err(invalid("version", "must be 1-128 letters, digits, `.`, `_` or `-`"));
        }
        for (field, name) in [("input_name", &self.input_name), ("output_name", &self.output_name)] {
            if name.trim().is_empty() || name.len() > 256 {
                return Err(invalid(field, "must be a tensor name of 1-256 characters"));
            }
        }
        if let Escalate::MaxProb { threshold } | Escalate::Margin { threshold } | Escalate::Entropy { threshold } =
            self.escalate
        {
            if !(threshold.is_finite() && (0.0..=1.0).contains(&threshold)) {
                return Err(invalid("escalate.threshold", format!("{threshold} is not in 0..=1")));
            }
        }
        if !(1..=MAX_OIP_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(invalid("timeout_ms", format!("{} is not in 1..={MAX_OIP_TIMEOUT_MS}", self.timeout_ms)));
        }
        if !is_binding_name(&self.url_var) {
            return Err(invalid("url_var", "must name a Worker variable (letters, digits, `_`)"));
        }
        if self.token_secret.as_deref().is_some_and(|s| !is_binding_name(s)) {
            return Err(invalid("token_secret", "must name a Worker secret (letters, digits, `_`)"));
        }
        if !(1..=MAX_OIP_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return Err(invalid(
                "max_request_bytes",
                format!(
                    "{} is not in 1..={MAX_OIP_REQUEST_BYTES} (Cloudflare's request body limit)",
                    self.max_request_bytes
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::edit;
    use super::*;
    use crate::manifest::Manifest;

    /// The test manifest with a large model and `oip` set to `oip`.
    fn with_oip(oip: serde_json::Value) -> String {
        edit(|v| {
            v["models"]["large"] = v["models"]["tiny"].clone();
            v["oip"] = oip;
        })
    }

    fn oip() -> serde_json::Value {
        serde_json::json!({
            "model": "fashion-large", "version": "3", "input_name": "image", "output_name": "logits",
            "datatype": "FP32", "output": "logits", "binary": true,
            "escalate": {"kind": "max_prob", "threshold": 0.8}, "token_secret": "OIP_TOKEN"
        })
    }

    /// The field `oip_tier` names for a manifest that reads but whose `oip` is not valid.
    fn oip_field_of(json: &str) -> String {
        match Manifest::from_json(json).unwrap().oip_tier() {
            Err(Error::ManifestInvalid { field, .. }) => field,
            other => panic!("expected ManifestInvalid, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_tier_with_its_defaults_and_round_trips() {
        let m = Manifest::from_json(&with_oip(oip())).unwrap();
        let t = m.oip_tier().unwrap().unwrap();
        let t = &t;
        assert_eq!((t.model.as_str(), t.version.as_deref()), ("fashion-large", Some("3")));
        assert_eq!((t.datatype, t.output, t.binary), (OipDatatype::Fp32, OutputKind::Logits, true));
        assert_eq!(t.escalate, Escalate::MaxProb { threshold: 0.8 });
        assert_eq!((t.timeout_ms, t.on_failure, t.url_var.as_str()), (5_000, OipFallback::Worker, "OIP_URL"));
        assert_eq!(Manifest::from_json(&m.to_json_pretty().unwrap()).unwrap(), m);
        let always = serde_json::json!({"kind": "always"});
        let m = Manifest::from_json(&with_oip(serde_json::json!({
            "model": "m", "input_name": "x", "output_name": "y", "datatype": "UINT8", "output": "probabilities",
            "escalate": always, "on_failure": "error", "timeout_ms": 250, "url_var": "TIER3_URL"
        })))
        .unwrap();
        let t = m.oip_tier().unwrap().unwrap();
        assert_eq!(
            (t.escalate, t.on_failure, t.timeout_ms, t.binary),
            (Escalate::Always, OipFallback::Error, 250, false)
        );
        assert_eq!((t.datatype.name(), t.datatype.size()), ("UINT8", 1));
    }

    #[test]
    fn three_tiers_name_the_workers_model() {
        let json = edit(|v| {
            v["models"]["large"] = v["models"]["tiny"].clone();
            v["models"]["mid"] = v["models"]["tiny"].clone();
            let mut o = oip();
            o["worker_model"] = "mid".into();
            v["oip"] = o;
        });
        let t = Manifest::from_json(&json).unwrap().oip_tier().unwrap().unwrap();
        assert_eq!(t.worker_model, "mid");
        // Absent, the Worker runs `large`, as a two-tier set does.
        let t = Manifest::from_json(&with_oip(oip())).unwrap().oip_tier().unwrap().unwrap();
        assert_eq!((t.worker_model.as_str(), t.max_request_bytes), ("large", DEFAULT_OIP_REQUEST_BYTES));
    }

    #[test]
    fn a_rule_keeps_its_kind_at_a_new_threshold() {
        assert_eq!(Escalate::MaxProb { threshold: 0.5 }.with_threshold(0.7), Escalate::MaxProb { threshold: 0.7 });
        assert_eq!(Escalate::Margin { threshold: 0.5 }.with_threshold(0.2), Escalate::Margin { threshold: 0.2 });
        assert_eq!(Escalate::Entropy { threshold: 0.5 }.with_threshold(0.3), Escalate::Entropy { threshold: 0.3 });
        assert_eq!(Escalate::Always.with_threshold(0.3), Escalate::Always);
    }

    #[test]
    fn refuses_a_set_whose_requests_could_pass_the_cap() {
        // 28x28 (784 values): FP32 binary 3,136 bytes of data, FP32 JSON up to 26 per value.
        let with_cap = |binary: bool, cap: usize| {
            let mut o = oip();
            o["binary"] = binary.into();
            o["max_request_bytes"] = cap.into();
            Manifest::from_json(&with_oip(o)).unwrap().oip_tier()
        };
        assert!(with_cap(true, 784 * 4 + REQUEST_ENVELOPE_BYTES).is_ok());
        match with_cap(true, 784 * 4 + REQUEST_ENVELOPE_BYTES - 1) {
            Err(Error::ManifestInvalid { field, reason }) => {
                assert_eq!(field, "oip.max_request_bytes");
                assert!(reason.contains("784 values as FP32 binary"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(with_cap(false, 784 * 26 + REQUEST_ENVELOPE_BYTES).is_ok());
        assert!(with_cap(false, 784 * 26 + REQUEST_ENVELOPE_BYTES - 1).is_err());
    }

    /// The bound holds for the longest text serde_json writes for an `f32` sample value.
    #[test]
    fn the_json_bound_covers_the_longest_values() {
        let t: OipTier = serde_json::from_value(serde_json::json!({
            "model": "m", "input_name": "x", "output_name": "y", "datatype": "FP32", "output": "logits",
            "escalate": {"kind": "always"}
        }))
        .unwrap();
        let values: Vec<f32> =
            vec![-1.1754942e-38, -3.4028235e38, -0.1, -1.0 / 3.0, -f32::from_bits(5), -f32::MIN_POSITIVE];
        let json = serde_json::json!({ "id": "x".repeat(64), "inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP32", "data": values}],
            "outputs": [{"name": "y"}] })
        .to_string();
        assert!(json.len() <= t.request_bound(values.len()), "{} > {}", json.len(), t.request_bound(values.len()));
        for v in &values {
            let text = serde_json::Value::from(*v).to_string();
            assert!(text.len() < 26, "{v}: {text}");
        }
    }

    #[test]
    fn names_the_invalid_field() {
        let bad = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut o = oip();
            f(&mut o);
            oip_field_of(&with_oip(o))
        };
        assert_eq!(bad(&|o| o["model"] = "../admin".into()), "oip.model");
        assert_eq!(bad(&|o| o["model"] = "".into()), "oip.model");
        assert_eq!(bad(&|o| o["version"] = "1/infer".into()), "oip.version");
        assert_eq!(bad(&|o| o["input_name"] = " ".into()), "oip.input_name");
        assert_eq!(bad(&|o| o["output_name"] = "x".repeat(300).into()), "oip.output_name");
        assert_eq!(bad(&|o| o["escalate"]["threshold"] = 1.5.into()), "oip.escalate.threshold");
        assert_eq!(bad(&|o| o["timeout_ms"] = 0.into()), "oip.timeout_ms");
        assert_eq!(bad(&|o| o["timeout_ms"] = 30_001.into()), "oip.timeout_ms");
        assert_eq!(bad(&|o| o["url_var"] = "OIP-URL".into()), "oip.url_var");
        assert_eq!(bad(&|o| o["token_secret"] = "1TOKEN".into()), "oip.token_secret");
        assert_eq!(bad(&|o| o["max_request_bytes"] = 0.into()), "oip.max_request_bytes");
        assert_eq!(bad(&|o| o["max_request_bytes"] = 100_000_001.into()), "oip.max_request_bytes");
        // The server is the tier above the Worker's model: a set without it is refused, and the
        // device's model is not a Worker tier.
        assert_eq!(oip_field_of(&edit(|v| v["oip"] = oip())), "oip.worker_model");
        assert_eq!(bad(&|o| o["worker_model"] = "mid".into()), "oip.worker_model");
        assert_eq!(bad(&|o| o["worker_model"] = "tiny".into()), "oip.worker_model");
        // Unknown keys and datatypes are errors, not ignored.
        let unknown = with_oip(serde_json::json!({"url": "http://x"}));
        assert_eq!(oip_field_of(&unknown), "oip");
        let mut o = oip();
        o["datatype"] = "FP16".into();
        assert_eq!(oip_field_of(&with_oip(o)), "oip");
        assert!(Manifest::from_json(&edit(|_| {})).unwrap().oip_tier().unwrap().is_none());
    }
}
