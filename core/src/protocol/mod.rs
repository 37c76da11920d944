//! The wire protocol between the browser client and the edge Worker (see docs/protocol.md).
//!
//! * `POST /v1/classify`, `Content-Type: application/octet-stream`, body = the raw `u8` pixels the
//!   manifest describes. `200` -> [`ClassifyResponse`] as JSON.
//!   `POST /v1/models/<set>/classify` is the same for a named model set.
//! * `GET /v1/health` -> [`HealthResponse`]; `GET /v1/models` -> [`ModelSetList`];
//!   `GET /v1/models/<set>` -> the set's manifest; `GET /v1/models/<set>/files/<sha256>` -> a
//!   device-side file of the set (never its large model).
//! * Every error: a 4xx/5xx status with [`ErrorBody`] JSON `{"error": {"code", "message"}}`.
//!
//! Both sides use these types and checks, so the Worker's validation and the client's parsing
//! cannot drift apart.
//!
//! ```
//! use hiedge_core::protocol::{route, Route, ErrorCode};
//! assert_eq!(route("POST", "/v1/classify").unwrap(), Route::Classify { set: None });
//! assert_eq!(route("GET", "/v1/classify").unwrap_err().code, ErrorCode::MethodNotAllowed);
//! assert_eq!(route("GET", "/../etc/passwd").unwrap_err().code, ErrorCode::NotFound);
//! ```

use serde::{Deserialize, Serialize};

/// Path of the classify endpoint.
pub const CLASSIFY_PATH: &str = "/v1/classify";
/// Path of the health endpoint.
pub const HEALTH_PATH: &str = "/v1/health";
/// Path of the manifest endpoint.
pub const MODELS_PATH: &str = "/v1/models";
/// The request body type of raw pixels (classify) and split features (the split route's only type).
pub const OCTET_STREAM: &str = "application/octet-stream";
/// Cloudflare's largest static asset, 25 MiB ("Individual Static Asset file size",
/// <https://developers.cloudflare.com/workers/platform/limits/>): every file of a model set the
/// Worker serves or loads is one. `hiedge import` refuses a set over it, and so does the Worker's
/// build (`edge-worker/index-models.mjs`, through `core/protocol-constants.json`).
pub const MAX_STATIC_ASSET_BYTES: u64 = 25 * 1024 * 1024;

/// Body of a successful classify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyResponse {
    /// Most probable class.
    pub label: u32,
    /// Class probabilities.
    pub probs: Vec<f32>,
    /// `"<name>@<sha256 prefix>"` of the model that answered.
    pub model: String,
    /// Inference time measured inside the Worker, or `null` where the runtime cannot measure it
    /// (workerd does not advance its clock during pure CPU work).
    pub infer_ms: Option<f64>,
    /// Which tier answered: `worker` (its own large model; a response without the field) or
    /// `server` (the set's Open Inference Protocol server, the manifest's `oip`).
    #[serde(default)]
    pub tier: Tier,
    /// Why that tier answered, for a set with a server tier; absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<TierWhy>,
}

/// The tier above the device that answered a classify.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// The Worker's own large model.
    #[default]
    Worker,
    /// The set's Open Inference Protocol server.
    Server,
}

/// Why a set with a server tier answered as it did.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierWhy {
    /// The Worker's model was sure enough (the manifest's `oip.escalate`): it answered.
    Confident,
    /// The Worker's model was unsure (or `escalate` is `always`): the server answered.
    Escalated,
    /// The server should have answered but was down, too slow or answered wrongly; the Worker's
    /// model answered instead (`oip.on_failure: worker`).
    ServerFailed,
}

impl ClassifyResponse {
    /// Parses and checks a classify response for `classes` classes: the label is in range and the
    /// probabilities are a valid distribution whose argmax is the label.
    pub fn from_json(json: &str, classes: usize) -> Result<Self, ApiError> {
        let r: ClassifyResponse = serde_json::from_str(json)
            .map_err(|e| ApiError::new(ErrorCode::BadResponse, format!("response is not a classify result: {e}")))?;
        if r.probs.len() != classes {
            return Err(ApiError::new(
                ErrorCode::BadResponse,
                format!("response has {} probabilities, expected {classes}", r.probs.len()),
            ));
        }
        crate::prob::validate_probs(&r.probs).map_err(|e| ApiError::new(ErrorCode::BadResponse, e.to_string()))?;
        if r.label as usize >= classes || r.probs[r.label as usize] < crate::prob::top2(&r.probs).0 {
            return Err(ApiError::new(ErrorCode::BadResponse, format!("response label {} is not the argmax", r.label)));
        }
        Ok(r)
    }
}

/// Body of `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Always `"ok"`.
    pub status: String,
    /// Model id served.
    pub model: String,
    /// Whether the model has already been parsed and optimised in this isolate.
    pub loaded: bool,
}

/// Body of `GET /v1/models`: the model sets a Worker serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct ModelSetList {
    /// The set `POST /v1/classify` and `GET /v1/health` use (`DEFAULT_MODEL_SET`).
    pub default_set: String,
    /// Every set that loaded, by name.
    pub sets: Vec<ModelSetInfo>,
    /// Sets of the deployment that cannot be served (bad manifest, missing file, name and directory
    /// disagreeing): their routes answer `500 internal`, every other set keeps working.
    #[serde(default)]
    pub broken: Vec<BrokenSet>,
}

/// A model set in [`ModelSetList::broken`]: its name and a safe reason (the details, such as file
/// names, are in the Worker's log only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct BrokenSet {
    /// The set's name (its directory).
    pub name: String,
    /// Why it cannot be served, in words that name no file or path.
    pub reason: String,
}

/// One model set in [`ModelSetList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct ModelSetInfo {
    /// The set's name (its directory).
    pub name: String,
    /// Class names, index = label.
    pub classes: Vec<String>,
    /// The model input's shape, as the manifest gives it.
    pub input_shape: Vec<usize>,
    /// Bytes a classify body must have.
    pub input_length: usize,
    /// Path of the manifest: `/v1/models/<set>`.
    pub manifest: String,
    /// Path to classify with the large model: `/v1/models/<set>/classify`.
    pub classify: String,
    /// Id of the Worker's model that answers offloads (`large@<sha256 prefix>`, or the model
    /// `oip.worker_model` names in a three-tier set: `mid@...`).
    pub large: String,
    /// The files a browser may download (by content: `/v1/models/<set>/files/<sha256>`).
    pub device_files: Vec<DeviceFile>,
}

/// A device-side file of a model set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
pub struct DeviceFile {
    /// Its role in the manifest: a model name (`tiny`) or `early_exit.stage1` / `early_exit.stage2`.
    pub role: String,
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Where to fetch it: `/v1/models/<set>/files/<sha256>`.
    pub path: String,
}

/// Machine-readable error kinds, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is empty.
    EmptyBody,
    /// 400: the body is not the manifest's number of bytes.
    WrongInputLength,
    /// 401: `API_TOKEN` is set and the request has no valid bearer token.
    Unauthorized,
    /// 403: the `Origin` is not in `ALLOWED_ORIGINS`.
    OriginNotAllowed,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists but not for this method.
    MethodNotAllowed,
    /// 413: the body is larger than the cap.
    PayloadTooLarge,
    /// 415: classify needs `application/octet-stream` or `image/png|jpeg|webp`; split needs
    /// `application/octet-stream`.
    UnsupportedMediaType,
    /// 400: an encoded image that cannot be decoded, or whose decoded size is over the cap.
    InvalidImage,
    /// 429: this client sent more inference requests than the Worker's rate limit allows; retry
    /// after the `Retry-After` header's seconds.
    RateLimited,
    /// 400: a features body whose header is not a finite offset and a positive scale.
    InvalidFeatures,
    /// 409: the features come from another split trunk than the set's (the client's model is stale).
    SplitMismatch,
    /// 500: the model failed; nothing the caller can fix.
    Internal,
    /// Client side only: the response could not be used.
    BadResponse,
    /// 503: the set's Open Inference Protocol server is down, not ready or too slow, and the set
    /// answers that with an error (`oip.on_failure: error`).
    UpstreamUnavailable,
    /// 502: the set's Open Inference Protocol server answered with an error or with something that
    /// is not a valid answer for this set (`oip.on_failure: error`).
    UpstreamBadResponse,
}

impl ErrorCode {
    /// HTTP status for this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::EmptyBody
            | ErrorCode::WrongInputLength
            | ErrorCode::InvalidFeatures
            | ErrorCode::InvalidImage => 400,
            ErrorCode::SplitMismatch => 409,
            ErrorCode::Unauthorized => 401,
            ErrorCode::OriginNotAllowed => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::BadResponse | ErrorCode::UpstreamBadResponse => 502,
            ErrorCode::UpstreamUnavailable => 503,
        }
    }
}

/// An error with its code and a human sentence.
///
/// Only `code` and `message` cross the network. An internal error's `detail` (file names, asset
/// paths, tract's error chain) never does: the Worker writes it to its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Kind.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// For the server's log only: what the operator needs to fix it. Never serialised.
    #[serde(skip)]
    pub detail: Option<String>,
}

/// The JSON error envelope `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

impl ApiError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), detail: None }
    }

    /// A `500 internal` error: `message` is what the caller sees and must name no file, path or
    /// library error; `detail` is what the operator sees in the Worker's log.
    pub fn internal(message: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        ApiError { code: ErrorCode::Internal, message: message.into(), detail: Some(detail.to_string()) }
    }

    /// HTTP status.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// `{"error": {"code": ..., "message": ...}}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&ErrorBody { error: self.clone() })
            .unwrap_or_else(|_| r#"{"error":{"code":"internal","message":"error"}}"#.into())
    }
}

mod body;
mod routes;

pub use body::{check_classify_body, check_classify_headers, check_features_body, SampleEncoding, FEATURES_HEADER_LEN};
pub use routes::{
    allow_header, allowed_methods, is_set_name, is_sha256, route, set_classify_path, set_file_path, set_path,
    set_split_path, Route, CLIENT_CACHE_NAME, MAX_SET_NAME, SET_NAME_PATTERN,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_shape() {
        let e = ApiError::new(ErrorCode::WrongInputLength, "bad");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v, serde_json::json!({"error": {"code": "wrong_input_length", "message": "bad"}}));
    }

    #[test]
    fn response_parsing_validates() {
        let good = r#"{"label":1,"probs":[0.2,0.8],"model":"large@abc","infer_ms":null}"#;
        let r = ClassifyResponse::from_json(good, 2).unwrap();
        assert_eq!((r.label, r.infer_ms), (1, None));
        for bad in [
            "not json",
            r#"{"label":1,"probs":[0.2,0.8]}"#,
            r#"{"label":0,"probs":[0.2,0.8],"model":"m","infer_ms":1.0}"#,
            r#"{"label":5,"probs":[0.2,0.8],"model":"m","infer_ms":1.0}"#,
            r#"{"label":1,"probs":[0.2,0.9],"model":"m","infer_ms":1.0}"#,
            r#"{"label":1,"probs":[0.8],"model":"m","infer_ms":1.0}"#,
        ] {
            assert_eq!(ClassifyResponse::from_json(bad, 2).unwrap_err().code, ErrorCode::BadResponse, "{bad}");
        }
    }
}
