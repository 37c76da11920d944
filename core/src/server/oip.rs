//! The third tier (device -> Worker -> server): a sample the Worker's own large model is unsure
//! of, sent on to the set's Open Inference Protocol server (KServe v2: Triton, KServe, MLServer,
//! Seldon) as the manifest's `oip` describes. I/O-free like the rest of the crate: this builds the
//! requests, reads and checks the answers, decides when to send a sample on, remembers readiness
//! on the caller's clock and chooses the fallback; the Worker only sends and waits.
//!
//! The server's address and token are the Worker's settings, never the manifest's, and neither
//! reaches a client: errors name the set's server, and the address stays in their `detail`, which
//! only the Worker's log sees.
//!
//! ```
//! use hiedge_core::server::oip::{ServerTier, Upstream};
//! # let json = r#"{"schema_version":1,"name":"d",
//! #   "input":{"shape":[1,1,1,2],"layout":"NCHW","dtype":"u8","normalize":{"scale":0.00392156862745098,"mean":0.5,"std":0.5}},
//! #   "classes":["a","b"],"models":{"large":{"file":"l.onnx","sha256":"0000000000000000000000000000000000000000000000000000000000000000",
//! #   "input_name":"x","output":"logits"}},
//! #   "oip":{"model":"big","input_name":"x","output_name":"y","datatype":"UINT8","output":"probabilities",
//! #          "escalate":{"kind":"max_prob","threshold":0.9}}}"#;
//! let manifest = hiedge_core::Manifest::from_json(json).unwrap();
//! let oip = manifest.oip_tier().unwrap().unwrap();
//! let tier = ServerTier::new(&manifest, oip, Some("http://10.0.0.7:8080"), None).unwrap();
//! let call = tier.infer_request(&[0, 255], "1").unwrap();
//! assert_eq!(call.url, "http://10.0.0.7:8080/v2/models/big/infer");
//! let answer = br#"{"model_name":"big","outputs":[{"name":"y","shape":[1,2],"datatype":"FP32","data":[0.25,0.75]}]}"#;
//! let r = tier.answer(&Upstream { status: 200, header_length: None, body: answer }, Some(3.0)).unwrap();
//! assert_eq!((r.label, r.model.as_str()), (1, "oip:big"));
//! ```

use serde::Deserialize;
use serde_json::Value;

use crate::manifest::{Manifest, OipDatatype, OipFallback, OipTier, OutputKind};
use crate::policy::{DecisionPolicy, ThresholdPolicy};
use crate::protocol::{ApiError, ClassifyResponse, ErrorCode, Tier, TierWhy};
use crate::runtime::Preprocessor;

/// How long a server found ready is taken to stay ready before it is asked again.
pub const READY_TTL_MS: f64 = 10_000.0;
/// How long a server found down (not ready, unreachable, too slow) is taken to stay down: the
/// samples meanwhile get the fallback at once instead of waiting for a timeout each.
pub const DOWN_TTL_MS: f64 = 2_000.0;
/// The largest answer read from the server (an answer holds one value per class).
pub const MAX_ANSWER_BYTES: usize = 1 << 20;
/// The header of the binary tensor data extension: the length of the JSON part of the body.
pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

/// One HTTP request to the server.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The full URL.
    pub url: String,
    /// Headers to send (and nothing of the client's).
    pub headers: Vec<(&'static str, String)>,
    /// The body (empty for `GET`).
    pub body: Vec<u8>,
}

/// What the server answered: status, the binary extension's header and the body, which the
/// caller has read only up to [`MAX_ANSWER_BYTES`] (a longer body is [`UpstreamError::TooLarge`]).
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// HTTP status.
    pub status: u16,
    /// `Inference-Header-Content-Length`, as sent.
    pub header_length: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// Why the server did not answer a sample usably. The text is for the Worker's log; clients see
/// only [`ErrorCode::UpstreamUnavailable`] or [`ErrorCode::UpstreamBadResponse`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    /// Not ready (`/v2/health/ready` or the model's `ready` not 200), now or within [`DOWN_TTL_MS`].
    #[error("the server is not ready: {0}")]
    NotReady(String),
    /// No answer: refused, reset, or nothing within the manifest's `timeout_ms`.
    #[error("no answer from the server: {0}")]
    Unreachable(String),
    /// An error status.
    #[error("the server answered HTTP {status}: {excerpt}")]
    Status {
        /// The status.
        status: u16,
        /// The first bytes of its body, escaped.
        excerpt: String,
    },
    /// More than [`MAX_ANSWER_BYTES`].
    #[error("the answer is over {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    /// Not an inference response for this set: the reason.
    #[error("not a valid answer: {0}")]
    Invalid(String),
}

impl UpstreamError {
    /// Whether the server is taken to be down (the readiness cache records it).
    pub fn is_down(&self) -> bool {
        matches!(self, UpstreamError::NotReady(_) | UpstreamError::Unreachable(_))
    }

    fn code(&self) -> ErrorCode {
        if self.is_down() || matches!(self, UpstreamError::Status { status: 503, .. }) {
            ErrorCode::UpstreamUnavailable
        } else {
            ErrorCode::UpstreamBadResponse
        }
    }
}

/// Readiness remembered between requests of an isolate, on the caller's clock (milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readiness {
    ready_until: f64,
    down_until: f64,
}

/// What is known of the server's readiness now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyState {
    /// Found ready within [`READY_TTL_MS`]: send at once.
    Ready,
    /// Found down within [`DOWN_TTL_MS`]: do not wait on it.
    Down,
    /// Not known: ask ([`ServerTier::ready_requests`]) first.
    Unknown,
}

impl Readiness {
    /// The state at `now_ms`.
    pub fn state(&self, now_ms: f64) -> ReadyState {
        if now_ms < self.down_until {
            ReadyState::Down
        } else if now_ms < self.ready_until {
            ReadyState::Ready
        } else {
            ReadyState::Unknown
        }
    }

    /// Records what was found at `now_ms`: ready (an answer or both ready checks), or down.
    pub fn record(&mut self, ready: bool, now_ms: f64) {
        if ready {
            *self = Readiness { ready_until: now_ms + READY_TTL_MS, down_until: 0.0 };
        } else {
            *self = Readiness { ready_until: 0.0, down_until: now_ms + DOWN_TTL_MS };
        }
    }
}

/// A set's server tier, ready to build requests: the manifest's `oip`, the server's base URL and
/// token from the Worker's settings.
#[derive(Debug, Clone)]
pub struct ServerTier {
    tier: OipTier,
    shape: Vec<usize>,
    classes: usize,
    pre: Preprocessor,
    base: String,
    token: Option<String>,
}

/// A `500` for a Worker whose settings do not fit its set: `detail` (which setting) is logged only.
fn misconfigured(detail: impl std::fmt::Display) -> ApiError {
    ApiError::internal("this set's inference server is misconfigured on this Worker", detail)
}

/// The base URL from the variable's value: `http(s)://host[:port][/path]`, no query, fragment or
/// credentials; a trailing `/` is dropped.
fn base_url(raw: &str, var: &str) -> Result<String, ApiError> {
    let url = raw.trim().trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split('/').next().unwrap_or_default());
    let ok = host.is_some_and(|h| !h.is_empty() && !h.contains('@'))
        && !url.contains(['?', '#'])
        && url.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(url.to_string())
    } else {
        Err(misconfigured(format!("the Worker variable {var} is not an http(s) URL without query or credentials")))
    }
}

impl ServerTier {
    /// The server tier `tier` (the manifest's `oip`, read once by [`Manifest::oip_tier`], as
    /// [`ModelSet::oip`](super::ModelSet::oip) keeps it), with the value of the variable its
    /// `url_var` names and of the secret its `token_secret` names. A missing or bad setting is a
    /// `500` whose detail names the setting, never its value.
    pub fn new(manifest: &Manifest, tier: OipTier, url: Option<&str>, token: Option<&str>) -> Result<Self, ApiError> {
        let url = url.ok_or_else(|| misconfigured(format!("the Worker variable {} is not set", tier.url_var)))?;
        let base = base_url(url, &tier.url_var)?;
        let token = match (&tier.token_secret, token.map(str::trim)) {
            (None, _) => None,
            (Some(name), None | Some("")) => return Err(misconfigured(format!("the Worker secret {name} is not set"))),
            (Some(name), Some(t)) if !t.chars().all(|c| c.is_ascii_graphic()) => {
                return Err(misconfigured(format!("the Worker secret {name} is not a bearer token")))
            }
            (Some(_), Some(t)) => Some(t.to_string()),
        };
        Ok(ServerTier {
            shape: manifest.input.shape.clone(),
            classes: manifest.classes.len(),
            pre: Preprocessor::new(manifest),
            tier,
            base,
            token,
        })
    }

    /// The manifest's `oip`.
    pub fn config(&self) -> &OipTier {
        &self.tier
    }

    /// `model` or `model@version`, the answering model's id after `oip:`.
    pub fn model_id(&self) -> String {
        match &self.tier.version {
            Some(v) => format!("oip:{}@{v}", self.tier.model),
            None => format!("oip:{}", self.tier.model),
        }
    }

    fn model_path(&self) -> String {
        match &self.tier.version {
            Some(v) => format!("{}/v2/models/{}/versions/{v}", self.base, self.tier.model),
            None => format!("{}/v2/models/{}", self.base, self.tier.model),
        }
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        self.token.iter().map(|t| ("Authorization", format!("Bearer {t}"))).collect()
    }

    /// Whether the Worker's answer goes on to the server: the manifest's `escalate` rule on its
    /// probabilities (the device policies' rule: sent when the score is `<= threshold`).
    pub fn escalates(&self, worker: &ClassifyResponse) -> Result<bool, ApiError> {
        let Some(mut policy) = ThresholdPolicy::escalation(&self.tier.escalate) else { return Ok(true) };
        let decision = policy
            .decide(&worker.probs)
            .map_err(|e| ApiError::internal("the Worker's model gave an invalid answer", e))?;
        Ok(decision.is_offload())
    }

    /// The readiness checks, in order: the server's `/v2/health/ready`, then the model's `ready`.
    pub fn ready_requests(&self) -> [UpstreamRequest; 2] {
        let get = |url: String| UpstreamRequest { method: "GET", url, headers: self.auth(), body: Vec::new() };
        [get(format!("{}/v2/health/ready", self.base)), get(format!("{}/ready", self.model_path()))]
    }

    /// The inference request for one sample (pixels in the manifest's interleaved order), with
    /// the request id `id`: JSON, or a JSON header and the tensor's bytes (binary extension).
    pub fn infer_request(&self, pixels: &[u8], id: &str) -> Result<UpstreamRequest, ApiError> {
        let bad_sample = |e: crate::error::Error| ApiError::new(ErrorCode::WrongInputLength, e.to_string());
        let (datatype, binary) = (self.tier.datatype, self.tier.binary);
        let bytes: Vec<u8>;
        let data: Value = match datatype {
            OipDatatype::Uint8 => {
                let values = self.pre.pixels_in_layout(pixels).map_err(bad_sample)?;
                if binary {
                    bytes = values;
                    Value::Null
                } else {
                    bytes = Vec::new();
                    values.into()
                }
            }
            OipDatatype::Fp32 => {
                let values = self.pre.run(pixels).map_err(bad_sample)?;
                if binary {
                    bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    Value::Null
                } else {
                    bytes = Vec::new();
                    values.into()
                }
            }
        };
        let mut input =
            serde_json::json!({ "name": self.tier.input_name, "shape": self.shape, "datatype": datatype.name() });
        let mut output = serde_json::json!({ "name": self.tier.output_name });
        if binary {
            input["parameters"] = serde_json::json!({ "binary_data_size": bytes.len() });
            output["parameters"] = serde_json::json!({ "binary_data": true });
        } else {
            input["data"] = data;
        }
        let header = serde_json::json!({ "id": id, "inputs": [input], "outputs": [output] }).to_string();
        let mut headers = self.auth();
        let body = if binary {
            headers.push(("Content-Type", "application/octet-stream".into()));
            headers.push((HEADER_LENGTH, header.len().to_string()));
            let mut body = header.into_bytes();
            body.extend_from_slice(&bytes);
            body
        } else {
            headers.push(("Content-Type", "application/json".into()));
            header.into_bytes()
        };
        // The manifest's bound keeps every sample within the cap; this holds the line if it did not.
        if body.len() > self.tier.max_request_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the request to the server is {} bytes, over oip.max_request_bytes {}",
                    body.len(),
                    self.tier.max_request_bytes
                ),
            ));
        }
        Ok(UpstreamRequest { method: "POST", url: format!("{}/infer", self.model_path()), headers, body })
    }

    /// The server's answer as this set's classify response (tier `server`), after the checks the
    /// Worker applies to its own model: status 200, the named output with one finite value per
    /// class in `FP32` or `FP64`, and probabilities that are a distribution. `infer_ms` is the
    /// round trip as the caller measured it.
    pub fn answer(&self, upstream: &Upstream<'_>, infer_ms: Option<f64>) -> Result<ClassifyResponse, UpstreamError> {
        if upstream.status != 200 {
            let excerpt = String::from_utf8_lossy(&upstream.body[..upstream.body.len().min(200)]);
            return Err(UpstreamError::Status { status: upstream.status, excerpt: excerpt.escape_debug().to_string() });
        }
        if upstream.body.len() > MAX_ANSWER_BYTES {
            return Err(UpstreamError::TooLarge);
        }
        let outputs = read_output(upstream, &self.tier.output_name, self.classes)?;
        let probs = match self.tier.output {
            OutputKind::Logits => crate::prob::softmax(&outputs, 1.0),
            OutputKind::Probabilities => outputs,
        };
        crate::prob::validate_probs(&probs).map_err(|e| UpstreamError::Invalid(format!("probabilities: {e}")))?;
        Ok(ClassifyResponse {
            label: crate::prob::argmax(&probs) as u32,
            probs,
            model: self.model_id(),
            infer_ms,
            tier: Tier::Server,
            why: Some(TierWhy::Escalated),
        })
    }

    /// The Worker's answer kept: its model was sure enough.
    pub fn kept(&self, worker: ClassifyResponse) -> ClassifyResponse {
        ClassifyResponse { tier: Tier::Worker, why: Some(TierWhy::Confident), ..worker }
    }

    /// The sample the server should have answered: the Worker's answer (`on_failure: worker`) or
    /// the error (`on_failure: error`: `503 upstream_unavailable` for a server that is down, slow
    /// or says 503, else `502 upstream_bad_response`), with the cause in its log-only detail.
    pub fn failed(&self, worker: ClassifyResponse, cause: &UpstreamError) -> Result<ClassifyResponse, ApiError> {
        match self.tier.on_failure {
            OipFallback::Worker => {
                Ok(ClassifyResponse { tier: Tier::Worker, why: Some(TierWhy::ServerFailed), ..worker })
            }
            OipFallback::Error => {
                let code = cause.code();
                let message = match code {
                    ErrorCode::UpstreamUnavailable => "this set's inference server is unavailable: try again later",
                    _ => "this set's inference server gave an invalid answer",
                };
                Err(ApiError {
                    code,
                    message: message.into(),
                    detail: Some(format!("oip {}: {cause}", self.model_id())),
                })
            }
        }
    }
}

/// The part of an inference response hiedge reads.
#[derive(Deserialize)]
struct InferResponse {
    outputs: Vec<OutputTensor>,
}

#[derive(Deserialize)]
struct OutputTensor {
    name: String,
    shape: Vec<u64>,
    datatype: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
}

impl OutputTensor {
    fn binary_size(&self) -> Option<u64> {
        self.parameters.as_ref().and_then(|p| p.get("binary_data_size")).and_then(Value::as_u64)
    }
}

/// Numbers of a JSON `data` array, flattened (servers send flat or nested row-major arrays).
fn flatten(value: &Value, out: &mut Vec<f64>, limit: usize) -> Result<(), UpstreamError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out, limit)),
        Value::Number(n) if out.len() < limit => {
            out.push(n.as_f64().ok_or_else(|| UpstreamError::Invalid("a value is not a number".into()))?);
            Ok(())
        }
        Value::Number(_) => Err(UpstreamError::Invalid(format!("more than {limit} values"))),
        _ => Err(UpstreamError::Invalid("a value is not a number".into())),
    }
}

/// The output `name` of an answer (JSON, or the binary extension's JSON header and bytes) as
/// `classes` finite values.
fn read_output(upstream: &Upstream<'_>, name: &str, classes: usize) -> Result<Vec<f32>, UpstreamError> {
    let invalid = |s: String| UpstreamError::Invalid(s);
    let (json, tail) = match upstream.header_length {
        None => (upstream.body, &[][..]),
        Some(len) => {
            let len: usize = len.trim().parse().map_err(|_| invalid(format!("{HEADER_LENGTH} is not a length")))?;
            if len > upstream.body.len() {
                return Err(invalid(format!("{HEADER_LENGTH} {len} is past the body's end")));
            }
            upstream.body.split_at(len)
        }
    };
    let response: InferResponse =
        serde_json::from_slice(json).map_err(|e| invalid(format!("not an inference response: {e}")))?;
    // Binary outputs follow the header in the order of `outputs`.
    let mut offset = 0usize;
    for output in &response.outputs {
        let size = output.binary_size().map(|s| usize::try_from(s).unwrap_or(usize::MAX));
        if output.name != name {
            offset = offset.saturating_add(size.unwrap_or(0));
            continue;
        }
        let count = output.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        if count != Some(classes as u64) {
            return Err(invalid(format!("output `{name}` has shape {:?}, not {classes} values", output.shape)));
        }
        let values: Vec<f64> = match (size, &output.data) {
            (Some(size), _) => {
                let width = match output.datatype.as_str() {
                    "FP32" => 4,
                    "FP64" => 8,
                    other => return Err(invalid(format!("output `{name}` is {other}, not FP32 or FP64"))),
                };
                let bytes = tail
                    .get(offset..offset.saturating_add(size))
                    .ok_or_else(|| invalid(format!("output `{name}`'s {size} bytes are past the body's end")))?;
                if size != classes * width {
                    return Err(invalid(format!("output `{name}` has {size} bytes, not {}", classes * width)));
                }
                bytes
                    .chunks_exact(width)
                    .map(|c| match width {
                        4 => <[u8; 4]>::try_from(c).map_or(f64::NAN, |b| f64::from(f32::from_le_bytes(b))),
                        _ => <[u8; 8]>::try_from(c).map_or(f64::NAN, f64::from_le_bytes),
                    })
                    .collect()
            }
            (None, Some(data)) => {
                if !matches!(output.datatype.as_str(), "FP32" | "FP64") {
                    return Err(invalid(format!("output `{name}` is {}, not FP32 or FP64", output.datatype)));
                }
                let mut values = Vec::with_capacity(classes);
                flatten(data, &mut values, classes)?;
                values
            }
            (None, None) => return Err(invalid(format!("output `{name}` has no data"))),
        };
        if values.len() != classes {
            return Err(invalid(format!("output `{name}` has {} values, not {classes}", values.len())));
        }
        return values
            .iter()
            .map(|&v| {
                let f = v as f32;
                if f.is_finite() {
                    Ok(f)
                } else {
                    Err(invalid(format!("output `{name}` holds {v}")))
                }
            })
            .collect();
    }
    Err(invalid(format!("no output named `{name}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2x2 RGB set (NCHW, mean 0.5, std 0.5 on 0..1) with three classes and `oip` edited by `f`.
    fn manifest(f: impl FnOnce(&mut Value)) -> Manifest {
        let mut v = serde_json::json!({
            "schema_version": 2, "name": "t",
            "input": {"shape": [1, 3, 2, 2], "layout": "NCHW", "dtype": "u8", "color": "rgb",
                      "normalize": {"scale": 0.00392156862745098, "mean": 0.5, "std": 0.5}},
            "classes": ["a", "b", "c"],
            "models": {"large": {"file": "l.onnx", "sha256": "0".repeat(64), "input_name": "x", "output": "logits"}},
            "oip": {"model": "big", "version": "2", "input_name": "in", "output_name": "out", "datatype": "UINT8",
                    "output": "logits", "escalate": {"kind": "max_prob", "threshold": 0.6}, "token_secret": "TOK"}
        });
        f(&mut v["oip"]);
        Manifest::from_json(&v.to_string()).unwrap()
    }

    /// The server tier of `m`'s `oip` with `url` and `token` as the Worker's settings.
    fn server_tier(m: &Manifest, url: Option<&str>, token: Option<&str>) -> Result<ServerTier, ApiError> {
        ServerTier::new(m, m.oip_tier().unwrap().unwrap(), url, token)
    }

    fn tier(f: impl FnOnce(&mut Value)) -> ServerTier {
        server_tier(&manifest(f), Some("https://gpu.internal:8443/kserve/"), Some("s3cret")).unwrap()
    }

    /// Pixels 0..12 interleaved RGB: pixel k has channels (3k, 3k+1, 3k+2).
    const PIXELS: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

    fn worker(probs: Vec<f32>) -> ClassifyResponse {
        let label = crate::prob::argmax(&probs) as u32;
        ClassifyResponse { label, probs, model: "large@0".into(), infer_ms: None, tier: Tier::Worker, why: None }
    }

    fn ok(body: &[u8]) -> Upstream<'_> {
        Upstream { status: 200, header_length: None, body }
    }

    #[test]
    fn a_set_without_oip_has_no_server_tier_and_settings_are_checked() {
        let mut m = manifest(|_| {});
        let err = |url: Option<&str>, token: Option<&str>| server_tier(&m, url, token).unwrap_err();
        for (url, token, names) in [
            (None, Some("t"), "variable OIP_URL is not set"),
            (Some("ftp://x"), Some("t"), "OIP_URL is not an http(s) URL"),
            (Some("http://user:pw@x"), Some("t"), "OIP_URL is not an http(s) URL"),
            (Some("http://x/?q=1"), Some("t"), "OIP_URL is not an http(s) URL"),
            (Some("http://"), Some("t"), "OIP_URL is not an http(s) URL"),
            (Some("http://x"), None, "secret TOK is not set"),
            (Some("http://x"), Some("  "), "secret TOK is not set"),
            (Some("http://x"), Some("a b"), "secret TOK is not a bearer token"),
        ] {
            let e = err(url, token);
            assert_eq!(e.code, ErrorCode::Internal);
            assert!(e.detail.as_deref().unwrap().contains(names), "{e:?}");
            // The value itself is never in the error.
            assert!(!e.message.contains("pw") && !e.detail.as_deref().unwrap().contains("pw"));
        }
        m.oip = None;
        assert!(crate::server::ModelSet::new("t", &m.to_json_pretty().unwrap()).unwrap().oip().is_none());
    }

    #[test]
    fn requests_stay_within_the_bound_and_the_cap() {
        for (datatype, binary) in [("UINT8", false), ("UINT8", true), ("FP32", false), ("FP32", true)] {
            let mut t = tier(|o| {
                o["datatype"] = datatype.into();
                o["binary"] = binary.into();
            });
            let r = t.infer_request(&PIXELS, "req-123").unwrap();
            assert!(r.body.len() <= t.config().request_bound(PIXELS.len()), "{datatype} binary={binary}");
            // Were the cap below the request (the manifest's check keeps it above), it is not sent.
            t.tier.max_request_bytes = r.body.len() - 1;
            let e = t.infer_request(&PIXELS, "req-123").unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::PayloadTooLarge, 413));
        }
    }

    #[test]
    fn json_requests_carry_the_pixels_or_normalised_values_in_the_model_layout() {
        let t = tier(|_| {});
        let r = t.infer_request(&PIXELS, "7").unwrap();
        assert_eq!(
            (r.method, r.url.as_str()),
            ("POST", "https://gpu.internal:8443/kserve/v2/models/big/versions/2/infer")
        );
        assert!(r.headers.contains(&("Authorization", "Bearer s3cret".into())));
        assert!(r.headers.contains(&("Content-Type", "application/json".into())));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["inputs"][0]["name"], "in");
        assert_eq!(v["inputs"][0]["shape"], serde_json::json!([1, 3, 2, 2]));
        assert_eq!(v["inputs"][0]["datatype"], "UINT8");
        // Planes: all R, then G, then B.
        assert_eq!(v["inputs"][0]["data"], serde_json::json!([0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]));
        assert_eq!(v["outputs"][0]["name"], "out");

        let t = tier(|o| o["datatype"] = "FP32".into());
        let v: Value = serde_json::from_slice(&t.infer_request(&PIXELS, "8").unwrap().body).unwrap();
        let data: Vec<f32> = serde_json::from_value(v["inputs"][0]["data"].clone()).unwrap();
        let want = Preprocessor::new(&manifest(|_| {})).run(&PIXELS).unwrap();
        assert_eq!(data.len(), 12);
        for (d, w) in data.iter().zip(&want) {
            assert!((d - w).abs() < 1e-6, "{data:?} vs {want:?}");
        }
        assert_eq!(v["inputs"][0]["datatype"], "FP32");
        // A sample of the wrong length is the client's error.
        assert_eq!(t.infer_request(&PIXELS[..11], "9").unwrap_err().code, ErrorCode::WrongInputLength);
    }

    #[test]
    fn binary_requests_put_the_tensor_after_the_json_header() {
        for datatype in ["UINT8", "FP32"] {
            let t = tier(|o| {
                o["binary"] = true.into();
                o["datatype"] = datatype.into();
            });
            let r = t.infer_request(&PIXELS, "1").unwrap();
            let len: usize = r.headers.iter().find(|(k, _)| *k == HEADER_LENGTH).unwrap().1.parse().unwrap();
            assert!(r.headers.contains(&("Content-Type", "application/octet-stream".into())));
            let header: Value = serde_json::from_slice(&r.body[..len]).unwrap();
            let tensor = &r.body[len..];
            assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], tensor.len());
            assert!(header["inputs"][0].get("data").is_none());
            assert_eq!(header["outputs"][0]["parameters"]["binary_data"], true);
            if datatype == "UINT8" {
                assert_eq!(tensor, [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]);
            } else {
                let want = Preprocessor::new(&manifest(|_| {})).run(&PIXELS).unwrap();
                let got: Vec<f32> = tensor.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                assert_eq!(got, want);
            }
        }
        // Without a token secret, no Authorization header at all.
        let m = manifest(|o| {
            o.as_object_mut().unwrap().remove("token_secret");
        });
        let t = server_tier(&m, Some("http://x"), Some("ignored")).unwrap();
        assert!(t.infer_request(&PIXELS, "1").unwrap().headers.iter().all(|(k, _)| *k != "Authorization"));
        let [health, model] = t.ready_requests();
        assert_eq!(
            (health.url.as_str(), model.url.as_str()),
            ("http://x/v2/health/ready", "http://x/v2/models/big/versions/2/ready")
        );
    }

    #[test]
    fn answers_in_json_and_binary_become_the_set_s_response() {
        let t = tier(|_| {});
        let logits = [1.0f32, 3.0, 2.0];
        let want = crate::prob::softmax(&logits, 1.0);
        let check = |r: ClassifyResponse| {
            assert_eq!((r.label, r.tier, r.why), (1, Tier::Server, Some(TierWhy::Escalated)));
            assert_eq!(r.model, "oip:big@2");
            for (g, w) in r.probs.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6);
            }
        };
        // Flat and nested data, FP32 and FP64, another output first.
        for body in [
            r#"{"outputs":[{"name":"out","shape":[1,3],"datatype":"FP32","data":[1.0,3.0,2.0]}]}"#,
            r#"{"outputs":[{"name":"other","shape":[1],"datatype":"FP32","data":[9]},{"name":"out","shape":[1,3],"datatype":"FP64","data":[[1,3,2]]}]}"#,
        ] {
            check(t.answer(&ok(body.as_bytes()), Some(4.0)).unwrap());
        }
        // Binary: a header, then the bytes of each binary output in order.
        let header = r#"{"outputs":[{"name":"other","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"out","shape":[1,3],"datatype":"FP32","parameters":{"binary_data_size":12}}]}"#;
        let mut body = header.as_bytes().to_vec();
        body.extend(9f32.to_le_bytes().iter().chain(&9f32.to_le_bytes()));
        body.extend(logits.iter().flat_map(|v| v.to_le_bytes()));
        let len = header.len().to_string();
        check(t.answer(&Upstream { status: 200, header_length: Some(&len), body: &body }, None).unwrap());
        // Probabilities are taken as they are.
        let t = tier(|o| o["output"] = "probabilities".into());
        let r =
            t.answer(&ok(br#"{"outputs":[{"name":"out","shape":[3],"datatype":"FP32","data":[0.2,0.5,0.3]}]}"#), None);
        assert_eq!(r.unwrap().probs, vec![0.2, 0.5, 0.3]);
    }

    #[test]
    fn a_wrong_answer_is_an_error_that_names_what_is_wrong() {
        let t = tier(|o| o["output"] = "probabilities".into());
        let invalid = |body: &str| match t.answer(&ok(body.as_bytes()), None) {
            Err(UpstreamError::Invalid(why)) => why,
            other => panic!("{body}: {other:?}"),
        };
        assert!(invalid("garbage").contains("not an inference response"));
        assert!(invalid(r#"{"outputs":[]}"#).contains("no output named `out`"));
        assert!(invalid(r#"{"outputs":[{"name":"out","shape":[4],"datatype":"FP32","data":[0.1,0.2,0.3,0.4]}]}"#)
            .contains("shape"));
        assert!(invalid(r#"{"outputs":[{"name":"out","shape":[3],"datatype":"FP32","data":[0.1,0.2]}]}"#)
            .contains("2 values"));
        assert!(
            invalid(r#"{"outputs":[{"name":"out","shape":[3],"datatype":"INT64","data":[0,1,0]}]}"#).contains("INT64")
        );
        assert!(invalid(r#"{"outputs":[{"name":"out","shape":[3],"datatype":"FP32","data":[0.1,"x",0.3]}]}"#)
            .contains("not a number"));
        assert!(invalid(r#"{"outputs":[{"name":"out","shape":[3],"datatype":"FP32","data":[0.1,1e39,0.3]}]}"#)
            .contains("holds"));
        assert!(invalid(r#"{"outputs":[{"name":"out","shape":[3],"datatype":"FP32","data":[0.9,0.9,0.9]}]}"#)
            .contains("probabilities"));
        assert!(invalid(r#"{"outputs":[{"name":"out","shape":[3],"datatype":"FP32"}]}"#).contains("no data"));
        assert!(invalid(
            r#"{"outputs":[{"name":"out","shape":[18446744073709551615,2],"datatype":"FP32","data":[]}]}"#
        )
        .contains("shape"));
        let binary = |len: &str, body: &[u8]| t.answer(&Upstream { status: 200, header_length: Some(len), body }, None);
        assert!(matches!(binary("x", b"{}"), Err(UpstreamError::Invalid(w)) if w.contains("not a length")));
        assert!(matches!(binary("99", b"{}"), Err(UpstreamError::Invalid(w)) if w.contains("past the body")));
        let header =
            r#"{"outputs":[{"name":"out","shape":[3],"datatype":"FP32","parameters":{"binary_data_size":12}}]}"#;
        let short = [header.as_bytes(), &[0u8; 8]].concat();
        assert!(
            matches!(binary(&header.len().to_string(), &short), Err(UpstreamError::Invalid(w)) if w.contains("past the body"))
        );
        let status = t.answer(&Upstream { status: 500, header_length: None, body: b"{\"error\":\"boom\"}" }, None);
        assert!(matches!(status, Err(UpstreamError::Status { status: 500, ref excerpt }) if excerpt.contains("boom")));
        let huge = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert_eq!(t.answer(&ok(&huge), None).unwrap_err(), UpstreamError::TooLarge);
    }

    #[test]
    fn escalation_follows_the_rule_and_failure_the_fallback() {
        let t = tier(|_| {});
        assert!(!t.escalates(&worker(vec![0.7, 0.2, 0.1])).unwrap());
        assert!(t.escalates(&worker(vec![0.6, 0.3, 0.1])).unwrap(), "sent at the threshold, as the device's rule");
        assert!(t.escalates(&worker(vec![0.4, 0.35, 0.25])).unwrap());
        assert!(tier(|o| o["escalate"] = serde_json::json!({"kind": "always"}))
            .escalates(&worker(vec![1.0, 0.0, 0.0]))
            .unwrap());
        let margin = tier(|o| o["escalate"] = serde_json::json!({"kind": "margin", "threshold": 0.2}));
        assert!(margin.escalates(&worker(vec![0.5, 0.35, 0.15])).unwrap());
        assert!(!margin.escalates(&worker(vec![0.6, 0.3, 0.1])).unwrap());

        let kept = t.kept(worker(vec![0.7, 0.2, 0.1]));
        assert_eq!((kept.tier, kept.why, kept.label), (Tier::Worker, Some(TierWhy::Confident), 0));
        let down = UpstreamError::Unreachable("connection refused to https://gpu.internal:8443".into());
        let r = t.failed(worker(vec![0.5, 0.3, 0.2]), &down).unwrap();
        assert_eq!((r.tier, r.why, r.model.as_str()), (Tier::Worker, Some(TierWhy::ServerFailed), "large@0"));
        let strict = tier(|o| o["on_failure"] = "error".into());
        let e = strict.failed(worker(vec![0.5, 0.3, 0.2]), &down).unwrap_err();
        assert_eq!((e.code, e.status()), (ErrorCode::UpstreamUnavailable, 503));
        // The client sees no address; the log's detail keeps the cause.
        assert!(!e.to_json().contains("gpu.internal") && e.detail.unwrap().contains("gpu.internal"));
        let e = strict.failed(worker(vec![0.5, 0.3, 0.2]), &UpstreamError::Invalid("x".into())).unwrap_err();
        assert_eq!((e.code, e.status()), (ErrorCode::UpstreamBadResponse, 502));
        let busy = UpstreamError::Status { status: 503, excerpt: String::new() };
        assert_eq!(strict.failed(worker(vec![0.5, 0.3, 0.2]), &busy).unwrap_err().status(), 503);
    }

    #[test]
    fn readiness_is_remembered_for_its_time_on_the_caller_s_clock() {
        let mut r = Readiness::default();
        assert_eq!(r.state(0.0), ReadyState::Unknown);
        r.record(true, 1_000.0);
        assert_eq!(r.state(1_000.0 + READY_TTL_MS - 1.0), ReadyState::Ready);
        assert_eq!(r.state(1_000.0 + READY_TTL_MS), ReadyState::Unknown);
        r.record(false, 5_000.0);
        assert_eq!(r.state(5_000.0), ReadyState::Down);
        assert_eq!(r.state(5_000.0 + DOWN_TTL_MS - 1.0), ReadyState::Down);
        assert_eq!(r.state(5_000.0 + DOWN_TTL_MS), ReadyState::Unknown);
        r.record(true, 9_000.0);
        assert_eq!(r.state(9_001.0), ReadyState::Ready, "an answer after being down makes it ready again");
    }
}
