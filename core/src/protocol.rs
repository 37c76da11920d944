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
/// The only accepted request body type for classify.
pub const OCTET_STREAM: &str = "application/octet-stream";

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
    /// Id of the large model that answers offloads (`large@<sha256 prefix>`).
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
    /// 415: classify needs `application/octet-stream`.
    UnsupportedMediaType,
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
}

impl ErrorCode {
    /// HTTP status for this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::EmptyBody | ErrorCode::WrongInputLength | ErrorCode::InvalidFeatures => 400,
            ErrorCode::SplitMismatch => 409,
            ErrorCode::Unauthorized => 401,
            ErrorCode::OriginNotAllowed => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::BadResponse => 502,
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

/// Longest model-set name.
pub const MAX_SET_NAME: usize = 64;

/// Whether `name` may name a model set: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter
/// or digit. Set names are directory names and URL path segments, so nothing else is allowed.
pub fn is_set_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SET_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Whether `hex` is a sha256 as manifests write it: 64 lower-case hex digits.
pub fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `/v1/models/<set>`: the set's manifest.
pub fn set_path(set: &str) -> String {
    format!("{MODELS_PATH}/{set}")
}

/// `/v1/models/<set>/classify`: classify with the set's large model.
pub fn set_classify_path(set: &str) -> String {
    format!("{MODELS_PATH}/{set}/classify")
}

/// `/v1/models/<set>/split/<trunk sha256>`: the set's split tail on features from that trunk.
pub fn set_split_path(set: &str, trunk_sha256: &str) -> String {
    format!("{MODELS_PATH}/{set}/split/{trunk_sha256}")
}

/// Bytes before the values in a features body: `offset` and `scale`, little-endian f32.
pub const FEATURES_HEADER_LEN: usize = 8;

/// Checks a features body (`POST /v1/models/<set>/split/<trunk>`) of `feature_len` values: not
/// empty, not over `max_body`, exactly `FEATURES_HEADER_LEN + feature_len` bytes, and a header of a
/// finite offset and a finite positive scale. Returns `(offset, scale)`.
pub fn check_features_body(body: &[u8], feature_len: usize, max_body: usize) -> Result<(f32, f32), ApiError> {
    let expected = FEATURES_HEADER_LEN + feature_len;
    if body.is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            format!("the body is empty; send the {expected} bytes of quantised features"),
        ));
    }
    if body.len() > max_body {
        return Err(too_large(body.len(), max_body));
    }
    if body.len() != expected {
        return Err(ApiError::new(
            ErrorCode::WrongInputLength,
            format!(
                "the body has {} bytes but {feature_len} quantised features take {expected} \
                 ({FEATURES_HEADER_LEN} header bytes: offset and scale as little-endian f32)",
                body.len()
            ),
        ));
    }
    let f32_at = |i: usize| f32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let (offset, scale) = (f32_at(0), f32_at(4));
    // Every value the body can stand for (offset + q * scale, q <= 255) must be finite too.
    if !offset.is_finite() || !scale.is_finite() || scale <= 0.0 || !(offset + 255.0 * scale).is_finite() {
        return Err(ApiError::new(
            ErrorCode::InvalidFeatures,
            format!("the features header must be a finite offset and a finite positive scale, is {offset} and {scale}"),
        ));
    }
    Ok((offset, scale))
}

/// `/v1/models/<set>/files/<sha256>`: one device-side file of the set (tiny model, early-exit
/// stages), addressed by its content so it can be cached for ever.
pub fn set_file_path(set: &str, sha256: &str) -> String {
    format!("{MODELS_PATH}/{set}/files/{sha256}")
}

/// The routes a Worker serves. `set: None` is the Worker's default set (`DEFAULT_MODEL_SET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/health`: the default set's large model.
    Health,
    /// `GET /v1/models`: the list of model sets.
    Models,
    /// `GET /v1/models/<set>`: a set's manifest.
    Manifest {
        /// The set.
        set: String,
    },
    /// `GET /v1/models/<set>/files/<sha256>`: a device-side file of a set.
    File {
        /// The set.
        set: String,
        /// The file's sha256, as the manifest lists it.
        sha256: String,
    },
    /// `POST /v1/models/<set>/split/<trunk sha256>`: the set's split tail on quantised features.
    Split {
        /// The set.
        set: String,
        /// sha256 of the trunk that computed the features (the client's split-model identity).
        trunk_sha256: String,
    },
    /// `POST /v1/classify` (the default set) or `POST /v1/models/<set>/classify`.
    Classify {
        /// The set; `None` for the default one.
        set: Option<String>,
    },
    /// `OPTIONS` on any known path (CORS preflight).
    Preflight,
}

impl Route {
    /// The model set the route names, if it names one.
    pub fn set(&self) -> Option<&str> {
        match self {
            Route::Manifest { set } | Route::File { set, .. } | Route::Split { set, .. } => Some(set),
            Route::Classify { set } => set.as_deref(),
            _ => None,
        }
    }
}

/// A path's route and the one method it accepts (besides `HEAD` for `GET`, and `OPTIONS`).
fn resolve(path: &str) -> Option<(Route, &'static str)> {
    match path {
        HEALTH_PATH => return Some((Route::Health, "GET")),
        MODELS_PATH => return Some((Route::Models, "GET")),
        CLASSIFY_PATH => return Some((Route::Classify { set: None }, "POST")),
        _ => {}
    }
    let rest = path.strip_prefix(MODELS_PATH)?.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [set] if is_set_name(set) => Some((Route::Manifest { set: set.to_string() }, "GET")),
        [set, "classify"] if is_set_name(set) => Some((Route::Classify { set: Some(set.to_string()) }, "POST")),
        [set, "files", sha] if is_set_name(set) && is_sha256(sha) => {
            Some((Route::File { set: set.to_string(), sha256: sha.to_string() }, "GET"))
        }
        [set, "split", sha] if is_set_name(set) && is_sha256(sha) => {
            Some((Route::Split { set: set.to_string(), trunk_sha256: sha.to_string() }, "POST"))
        }
        _ => None,
    }
}

/// Maps a method and path to a route: 404 for unknown paths (including any with `..`, `//`, a
/// trailing slash, a set name that is not [`is_set_name`] or a file key that is not a sha256),
/// 405 for known paths with another method.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let Some((route, accepted)) = resolve(path) else {
        let shown: String = path.chars().take(80).collect();
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no route for `{shown}`; the routes are GET {HEALTH_PATH}, GET {MODELS_PATH}, GET {MODELS_PATH}/<set>, \
                 GET {MODELS_PATH}/<set>/files/<sha256>, POST {MODELS_PATH}/<set>/classify, \
                 POST {MODELS_PATH}/<set>/split/<trunk sha256>, POST {CLASSIFY_PATH}"
            ),
        ));
    };
    match method {
        "OPTIONS" => Ok(Route::Preflight),
        m if m == accepted || (m == "HEAD" && accepted == "GET") => Ok(route),
        m => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!(
                "{} accepts {accepted} only, not {}",
                path.chars().take(80).collect::<String>(),
                m.chars().take(20).collect::<String>()
            ),
        )),
    }
}

/// Methods allowed on a route, for the `Allow` header.
pub fn allowed_methods(route: &Route) -> &'static str {
    match route {
        Route::Classify { .. } | Route::Split { .. } => "POST, OPTIONS",
        _ => "GET, HEAD, OPTIONS",
    }
}

/// The `Allow` header for a known path (its method and `OPTIONS`).
pub fn allow_header(path: &str) -> &'static str {
    match resolve(path) {
        Some((route, _)) => allowed_methods(&route),
        None => allowed_methods(&Route::Health),
    }
}

/// Checks a classify request's headers before its body is read: content type (ignoring parameters
/// and case) and, when given, the declared length against `max_body`.
pub fn check_classify_headers(
    content_type: Option<&str>,
    content_length: Option<&str>,
    max_body: usize,
) -> Result<(), ApiError> {
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if ct.as_deref() != Some(OCTET_STREAM) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "classify takes the raw pixels as `Content-Type: {OCTET_STREAM}`, got {}",
                content_type
                    .map_or("no content type".into(), |c| format!("`{}`", c.chars().take(80).collect::<String>()))
            ),
        ));
    }
    if let Some(len) = content_length {
        match len.trim().parse::<u64>() {
            Ok(n) if n > max_body as u64 => return Err(too_large(n as usize, max_body)),
            Ok(_) => {}
            Err(_) => return Err(ApiError::new(ErrorCode::WrongInputLength, "Content-Length is not a number")),
        }
    }
    Ok(())
}

fn too_large(n: usize, max_body: usize) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("body of {n} bytes exceeds the limit of {max_body} bytes"))
}

/// Checks a classify body: not empty, not over `max_body`, exactly `expected` bytes.
pub fn check_classify_body(body: &[u8], expected: usize, max_body: usize) -> Result<(), ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(ErrorCode::EmptyBody, format!("the body is empty; send the {expected} pixel bytes")));
    }
    if body.len() > max_body {
        return Err(too_large(body.len(), max_body));
    }
    if body.len() != expected {
        return Err(ApiError::new(
            ErrorCode::WrongInputLength,
            format!("the body has {} bytes but the model expects {expected}", body.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(route("GET", HEALTH_PATH).unwrap(), Route::Health);
        assert_eq!(route("HEAD", MODELS_PATH).unwrap(), Route::Models);
        assert_eq!(route("OPTIONS", CLASSIFY_PATH).unwrap(), Route::Preflight);
        assert_eq!(route("POST", CLASSIFY_PATH).unwrap(), Route::Classify { set: None });
        assert_eq!(route("GET", "/v1/models/mnist").unwrap(), Route::Manifest { set: "mnist".into() });
        let classify = route("POST", &set_classify_path("fashion-mnist")).unwrap();
        assert_eq!((classify.set(), allowed_methods(&classify)), (Some("fashion-mnist"), "POST, OPTIONS"));
        let sha = "ab".repeat(32);
        assert_eq!(
            route("GET", &set_file_path("my_set-2", &sha)).unwrap(),
            Route::File { set: "my_set-2".into(), sha256: sha.clone() }
        );
        let set_classify = set_classify_path("mnist");
        for (m, p) in [
            ("PUT", CLASSIFY_PATH),
            ("DELETE", HEALTH_PATH),
            ("POST", MODELS_PATH),
            ("GET", CLASSIFY_PATH),
            ("GET", set_classify.as_str()),
            ("POST", "/v1/models/mnist"),
        ] {
            let e = route(m, p).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::MethodNotAllowed, 405), "{m} {p}");
        }
        assert_eq!(allow_header(&set_classify), "POST, OPTIONS");
        assert_eq!(allow_header("/v1/models/mnist"), "GET, HEAD, OPTIONS");
        let upper_sha = format!("/v1/models/mnist/files/{}", "AB".repeat(32));
        let short_sha = format!("/v1/models/mnist/files/{}", "ab".repeat(31));
        let long_name = format!("/v1/models/{}", "a".repeat(65));
        for p in [
            "/",
            "/v1",
            "/v1/classify/",
            "/v2/classify",
            "/v1/../v1/classify",
            "//v1/health",
            "/v1/models/../../etc",
            "/v1/models/",
            "/v1/models/..",
            "/v1/models/Mnist",
            "/v1/models/-x",
            "/v1/models/mnist/",
            "/v1/models/mnist/large.onnx",
            "/v1/models/mnist/files/large.onnx",
            "/v1/models/mnist/classify/x",
            "/v1/models/a%2Fb",
            upper_sha.as_str(),
            short_sha.as_str(),
            long_name.as_str(),
        ] {
            assert_eq!(route("GET", p).unwrap_err().status(), 404, "{p}");
        }
        assert_eq!(allowed_methods(&Route::Classify { set: None }), "POST, OPTIONS");
        let split = route("POST", &set_split_path("mnist", &sha)).unwrap();
        assert_eq!(split, Route::Split { set: "mnist".into(), trunk_sha256: sha.clone() });
        assert_eq!((split.set(), allowed_methods(&split)), (Some("mnist"), "POST, OPTIONS"));
        assert_eq!(route("GET", &set_split_path("mnist", &sha)).unwrap_err().status(), 405);
        assert_eq!(route("POST", "/v1/models/mnist/split/abc").unwrap_err().status(), 404);
    }

    #[test]
    fn classify_headers() {
        let ok = |ct: &str| check_classify_headers(Some(ct), Some("784"), 4096);
        assert!(ok("application/octet-stream").is_ok());
        assert!(ok("Application/Octet-Stream; charset=binary").is_ok());
        for ct in ["application/json", "text/plain", "multipart/form-data", ""] {
            assert_eq!(ok(ct).unwrap_err().status(), 415, "{ct}");
        }
        assert_eq!(check_classify_headers(None, None, 10).unwrap_err().status(), 415);
        let e = check_classify_headers(Some(OCTET_STREAM), Some("10485760"), 4096).unwrap_err();
        assert_eq!((e.code, e.status()), (ErrorCode::PayloadTooLarge, 413));
        assert!(check_classify_headers(Some(OCTET_STREAM), Some("abc"), 4096).is_err());
        assert!(check_classify_headers(Some(OCTET_STREAM), None, 4096).is_ok());
    }

    #[test]
    fn classify_body() {
        assert_eq!(check_classify_body(&[], 784, 4096).unwrap_err().code, ErrorCode::EmptyBody);
        for n in [783, 785, 1] {
            let e = check_classify_body(&vec![0; n], 784, 4096).unwrap_err();
            assert_eq!(e.code, ErrorCode::WrongInputLength);
            assert!(e.message.contains(&n.to_string()) && e.message.contains("784"), "{}", e.message);
        }
        assert_eq!(check_classify_body(&vec![0; 5000], 784, 4096).unwrap_err().status(), 413);
        assert!(check_classify_body(&[0; 784], 784, 4096).is_ok());
    }

    #[test]
    fn features_body() {
        let body = |offset: f32, scale: f32, n: usize| {
            let mut b = offset.to_le_bytes().to_vec();
            b.extend_from_slice(&scale.to_le_bytes());
            b.extend(std::iter::repeat_n(7u8, n));
            b
        };
        assert_eq!(check_features_body(&body(0.0, 0.5, 784), 784, 4096).unwrap(), (0.0, 0.5));
        assert_eq!(check_features_body(&[], 784, 4096).unwrap_err().code, ErrorCode::EmptyBody);
        for n in [0, 783, 785, 4000] {
            let e = check_features_body(&body(0.0, 0.5, n), 784, 4096).unwrap_err();
            assert_eq!(
                e.code,
                if n + 8 > 4096 { ErrorCode::PayloadTooLarge } else { ErrorCode::WrongInputLength },
                "{n}"
            );
        }
        for (o, s) in
            [(f32::NAN, 1.0), (0.0, f32::INFINITY), (0.0, 0.0), (0.0, -1.0), (f32::NEG_INFINITY, 1.0), (0.0, 3e38)]
        {
            let e = check_features_body(&body(o, s, 784), 784, 4096).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::InvalidFeatures, 400), "{o} {s}");
        }
        assert_eq!(ErrorCode::SplitMismatch.status(), 409);
    }

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
