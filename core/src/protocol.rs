//! The wire protocol between the browser client and the edge Worker (see docs/protocol.md).
//!
//! * `POST /v1/classify`, `Content-Type: application/octet-stream`, body = the raw `u8` pixels the
//!   manifest describes. `200` -> [`ClassifyResponse`] as JSON.
//! * `GET /v1/health` -> [`HealthResponse`]; `GET /v1/models` -> the Worker's manifest.
//! * Every error: a 4xx/5xx status with [`ErrorBody`] JSON `{"error": {"code", "message"}}`.
//!
//! Both sides use these types and checks, so the Worker's validation and the client's parsing
//! cannot drift apart.
//!
//! ```
//! use hiedge_core::protocol::{route, Route, ErrorCode};
//! assert_eq!(route("POST", "/v1/classify").unwrap(), Route::Classify);
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
    /// 500: the model failed; nothing the caller can fix.
    Internal,
    /// Client side only: the response could not be used.
    BadResponse,
}

impl ErrorCode {
    /// HTTP status for this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::EmptyBody | ErrorCode::WrongInputLength => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::OriginNotAllowed => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Internal => 500,
            ErrorCode::BadResponse => 502,
        }
    }
}

/// An error with its code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Kind.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
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
        ApiError { code, message: message.into() }
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

/// The routes a Worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/health`.
    Health,
    /// `GET /v1/models`.
    Models,
    /// `POST /v1/classify`.
    Classify,
    /// `OPTIONS` on any known path (CORS preflight).
    Preflight,
}

/// Maps a method and path to a route: 404 for unknown paths (including any with `..`, `//`, or a
/// trailing slash), 405 for known paths with another method.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let known = match path {
        HEALTH_PATH => (Route::Health, "GET"),
        MODELS_PATH => (Route::Models, "GET"),
        CLASSIFY_PATH => (Route::Classify, "POST"),
        _ => {
            let shown: String = path.chars().take(80).collect();
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "no route for `{shown}`; the routes are GET {HEALTH_PATH}, GET {MODELS_PATH}, POST {CLASSIFY_PATH}"
                ),
            ));
        }
    };
    match method {
        "OPTIONS" => Ok(Route::Preflight),
        m if m == known.1 || (m == "HEAD" && known.1 == "GET") => Ok(known.0),
        m => Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("{path} accepts {} only, not {}", known.1, m.chars().take(20).collect::<String>()),
        )),
    }
}

/// Methods allowed on a path, for the `Allow` header.
pub fn allowed_methods(route: Route) -> &'static str {
    match route {
        Route::Classify => "POST, OPTIONS",
        _ => "GET, HEAD, OPTIONS",
    }
}

/// The `Allow` header for a known path (its method and `OPTIONS`).
pub fn allow_header(path: &str) -> &'static str {
    match route("POST", path) {
        Ok(r) => allowed_methods(r),
        Err(_) => allowed_methods(Route::Health),
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
        for (m, p) in [("PUT", CLASSIFY_PATH), ("DELETE", HEALTH_PATH), ("POST", MODELS_PATH), ("GET", CLASSIFY_PATH)] {
            let e = route(m, p).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::MethodNotAllowed, 405), "{m} {p}");
        }
        for p in
            ["/", "/v1", "/v1/classify/", "/v2/classify", "/v1/../v1/classify", "//v1/health", "/v1/models/../../etc"]
        {
            assert_eq!(route("GET", p).unwrap_err().status(), 404, "{p}");
        }
        assert_eq!(allowed_methods(Route::Classify), "POST, OPTIONS");
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
