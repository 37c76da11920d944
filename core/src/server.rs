//! The serving side of the wire protocol: access rules (CORS allow-list, bearer token, body cap) and
//! the classify handler. The Cloudflare Worker (edge-worker) is a thin HTTP facade over this, so
//! every check here is unit-tested natively.
//!
//! ```
//! use hiedge_core::server::AccessRules;
//! let rules = AccessRules::from_vars(Some("https://a.example, http://127.0.0.1:5173"), Some("s3cret"), None).unwrap();
//! assert_eq!(rules.allow_origin(Some("https://a.example")).unwrap().as_deref(), Some("https://a.example"));
//! assert_eq!(rules.allow_origin(Some("https://evil.example")).unwrap_err().status(), 403);
//! assert!(rules.check_token(Some("Bearer s3cret")).is_ok());
//! assert_eq!(rules.check_token(Some("Bearer nope")).unwrap_err().status(), 401);
//! ```

use subtle::ConstantTimeEq;

use crate::manifest::Manifest;
use crate::protocol::{
    self, ApiError, ClassifyResponse, DeviceFile, ErrorCode, HealthResponse, ModelSetInfo, ModelSetList, Route,
};
use crate::runtime::split::{self, QuantizedFeatures};
use crate::runtime::{verify, Model, Stage2};

/// Default request body cap: 64 KiB (a Fashion-MNIST sample is 784 bytes).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// Who may call the Worker and how much they may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRules {
    /// Allowed `Origin`s; `None` means any (`*`).
    pub allowed_origins: Option<Vec<String>>,
    /// Bearer token required on every request except the CORS preflight, when set.
    pub api_token: Option<String>,
    /// Largest accepted classify body in bytes.
    pub max_body: usize,
}

impl AccessRules {
    /// Rules from the Worker's variables: `ALLOWED_ORIGINS` (comma-separated exact origins, or `*`;
    /// unset means `*`), the `API_TOKEN` secret (unset or empty: no token needed) and `MAX_BODY_BYTES`.
    pub fn from_vars(origins: Option<&str>, token: Option<&str>, max_body: Option<&str>) -> Result<Self, String> {
        let allowed_origins = match origins.map(str::trim) {
            None | Some("") | Some("*") => None,
            Some(list) => Some(
                list.split(',').map(|o| o.trim().trim_end_matches('/').to_string()).filter(|o| !o.is_empty()).collect(),
            ),
        };
        let api_token = token.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        let max_body = match max_body.map(str::trim) {
            None | Some("") => DEFAULT_MAX_BODY,
            Some(v) => v.parse().map_err(|_| format!("MAX_BODY_BYTES must be a number of bytes, is `{v}`"))?,
        };
        Ok(AccessRules { allowed_origins, api_token, max_body })
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`: `None` for requests without
    /// one (not from a browser), `*` or the echoed origin when allowed, 403 otherwise.
    pub fn allow_origin(&self, origin: Option<&str>) -> Result<Option<String>, ApiError> {
        let Some(origin) = origin else { return Ok(None) };
        match &self.allowed_origins {
            None => Ok(Some("*".into())),
            Some(list) if list.iter().any(|o| o == origin) => Ok(Some(origin.to_string())),
            Some(_) => Err(ApiError::new(
                ErrorCode::OriginNotAllowed,
                format!("origin `{}` is not in ALLOWED_ORIGINS", origin.chars().take(100).collect::<String>()),
            )),
        }
    }

    /// Checks the `Authorization` header when a token is configured (constant-time comparison).
    pub fn check_token(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.api_token else { return Ok(()) };
        let given = authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
        match given {
            Some(t) if bool::from(t.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
            Some(_) => Err(ApiError::new(ErrorCode::Unauthorized, "the bearer token is not valid")),
            None => {
                Err(ApiError::new(ErrorCode::Unauthorized, "this Worker needs `Authorization: Bearer <API_TOKEN>`"))
            }
        }
    }
}

/// A request as the Worker sees it before reading the body: untrusted strings, all of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// The raw method (`GET`, `POST`, `OPTIONS`, or anything else a client sent).
    pub method: &'a str,
    /// The URL path.
    pub path: &'a str,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The `Content-Length` header.
    pub content_length: Option<&'a str>,
}

/// A request the Worker may serve: its route and the `Access-Control-Allow-Origin` to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The route.
    pub route: Route,
    /// `Access-Control-Allow-Origin` for the response (`None`: not a browser request).
    pub allow_origin: Option<String>,
}

/// A request refused before its body is read: the error, the CORS origin to answer it with (so a
/// browser can read the JSON error), and the `Allow` header for a 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// What is wrong.
    pub error: ApiError,
    /// `Access-Control-Allow-Origin` for the error response.
    pub allow_origin: Option<String>,
    /// `Allow` header value, for 405.
    pub allow: Option<&'static str>,
}

impl AccessRules {
    /// Every check the Worker makes before reading a body, in order: origin (403, answered without
    /// CORS), route (404/405), bearer token (401; not for the CORS preflight) and, for classify,
    /// the content type and declared length (415/413/400). The body itself is checked with
    /// [`protocol::check_classify_body`] once read.
    pub fn admit(&self, head: &RequestHead<'_>) -> Result<Admitted, Box<Refused>> {
        let allow_origin = self
            .allow_origin(head.origin)
            .map_err(|error| Box::new(Refused { error, allow_origin: None, allow: None }))?;
        let refuse = |error: ApiError| {
            let allow = (error.code == ErrorCode::MethodNotAllowed).then(|| protocol::allow_header(head.path));
            Box::new(Refused { error, allow_origin: allow_origin.clone(), allow })
        };
        let route = protocol::route(head.method, head.path).map_err(refuse)?;
        if route != Route::Preflight {
            self.check_token(head.authorization).map_err(refuse)?;
        }
        if matches!(route, Route::Classify { .. } | Route::Split { .. }) {
            protocol::check_classify_headers(head.content_type, head.content_length, self.max_body).map_err(refuse)?;
        }
        Ok(Admitted { route, allow_origin })
    }
}

/// The model that answers offloads in every set: `models.large` of the manifest. It is never
/// served as a file.
pub const SERVER_MODEL: &str = "large";

/// Reads the model-set index a deployment is published with (`index.json` at the root of the
/// assets directory, written by `edge-worker/index-models.mjs`): `{"sets": ["name", ...]}`. Every
/// name must be a valid set name ([`protocol::is_set_name`]); the list is returned sorted, once each.
pub fn parse_set_index(json: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        sets: Vec<String>,
    }
    let index: Index = serde_json::from_str(json).map_err(|e| format!("the model-set index is not valid: {e}"))?;
    let mut sets = index.sets;
    if let Some(bad) = sets.iter().find(|s| !protocol::is_set_name(s)) {
        return Err(format!("the model-set index names `{}`, which is not a valid set name", bad.escape_debug()));
    }
    sets.sort();
    sets.dedup();
    Ok(sets)
}

/// One model set as a Worker serves it: its manifest (checked), which files browsers may fetch, and
/// which file holds the large model. I/O-free: the Worker fetches the bytes.
#[derive(Debug, Clone)]
pub struct ModelSet {
    name: String,
    manifest: Manifest,
    manifest_json: String,
}

impl ModelSet {
    /// The set `name` from its manifest text. The manifest must be valid, name the set as its
    /// directory does, and have a `large` model.
    pub fn new(name: &str, manifest_json: &str) -> crate::error::Result<Self> {
        let manifest = Manifest::from_json(manifest_json)?;
        if manifest.name != name {
            return Err(crate::error::Error::ManifestInvalid {
                field: "name".into(),
                reason: format!("is `{}` but the set's directory is `{name}`", manifest.name.escape_debug()),
            });
        }
        manifest.model(SERVER_MODEL)?;
        Ok(ModelSet { name: name.into(), manifest, manifest_json: manifest_json.into() })
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest text, served as is by `GET /v1/models/<set>`.
    pub fn manifest_json(&self) -> &str {
        &self.manifest_json
    }

    /// The large model's file, relative to the set's directory.
    pub fn server_model_file(&self) -> &str {
        // `new` checked that the model exists.
        self.manifest.models.get(SERVER_MODEL).map_or("", |m| m.file.as_str())
    }

    /// The files browsers may fetch: every model but the large one, and the early-exit stages.
    pub fn device_files(&self) -> Vec<(DeviceFile, &str)> {
        let file = |role: &str, sha256: &str| DeviceFile {
            role: role.into(),
            sha256: sha256.into(),
            path: protocol::set_file_path(&self.name, sha256),
        };
        let large = self.manifest.models.get(SERVER_MODEL).map(|m| m.sha256.as_str());
        let mut files: Vec<(DeviceFile, &str)> = self
            .manifest
            .models
            .iter()
            .filter(|(name, m)| name.as_str() != SERVER_MODEL && Some(m.sha256.as_str()) != large)
            .map(|(name, m)| (file(name, &m.sha256), m.file.as_str()))
            .collect();
        if let Some(ee) = &self.manifest.early_exit {
            for (role, stage) in [("early_exit.stage1", &ee.stage1), ("early_exit.stage2", &ee.stage2)] {
                if Some(stage.sha256.as_str()) != large {
                    files.push((file(role, &stage.sha256), stage.file.as_str()));
                }
            }
        }
        // The split trunk runs on the device; its tail, like the large model, never leaves the edge.
        if let Some(sp) = &self.manifest.split {
            if Some(sp.trunk.sha256.as_str()) != large && sp.trunk.sha256 != sp.tail.sha256 {
                files.push((file("split.trunk", &sp.trunk.sha256), sp.trunk.file.as_str()));
            }
        }
        files
    }

    /// The split tail's file, for `POST /v1/models/<set>/split/<trunk_sha256>`: 404 when the set
    /// has no split model, 409 when the features come from another trunk than the set's.
    pub fn split_tail_file(&self, trunk_sha256: &str) -> Result<&str, ApiError> {
        let Some(sp) = &self.manifest.split else {
            return Err(ApiError::new(ErrorCode::NotFound, format!("model set `{}` has no split model", self.name)));
        };
        if sp.trunk.sha256 != trunk_sha256 {
            return Err(ApiError::new(
                ErrorCode::SplitMismatch,
                format!(
                    "these features come from trunk {trunk_sha256}, but model set `{}` splits at trunk {}: reload the set",
                    self.name, sp.trunk.sha256
                ),
            ));
        }
        Ok(&sp.tail.file)
    }

    /// The file behind `GET /v1/models/<set>/files/<sha256>`: a device-side file's name, or 404
    /// for any other key, the large model's included (it is never downloadable).
    pub fn device_file(&self, sha256: &str) -> Result<String, ApiError> {
        self.device_files().into_iter().find(|(f, _)| f.sha256 == sha256).map(|(_, file)| file.to_string()).ok_or_else(
            || {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("model set `{}` has no device-side file with sha256 {sha256}", self.name),
                )
            },
        )
    }

    /// The set as `GET /v1/models` lists it.
    pub fn info(&self) -> ModelSetInfo {
        let large = self.manifest.models.get(SERVER_MODEL).map(|m| m.id(SERVER_MODEL)).unwrap_or_default();
        ModelSetInfo {
            name: self.name.clone(),
            classes: self.manifest.classes.clone(),
            input_shape: self.manifest.input.shape.clone(),
            input_length: self.manifest.input_len(),
            manifest: protocol::set_path(&self.name),
            classify: protocol::set_classify_path(&self.name),
            large,
            device_files: self.device_files().into_iter().map(|(f, _)| f).collect(),
        }
    }
}

/// A set's split tail as a Worker serves it: features in, logits out. Like [`ModelService`], the
/// bytes are checked now and the tract plan is built on first use.
#[derive(Debug)]
pub struct SplitService {
    manifest: Manifest,
    /// The tail's model file (NNEF, or ONNX in builds with the `onnx` feature).
    file: Vec<u8>,
    id: String,
    feature_len: usize,
    tail: std::cell::OnceCell<Stage2>,
}

impl SplitService {
    /// The split tail of the manifest in `manifest_json`, from its model file bytes (sha256 checked now).
    pub fn new(manifest_json: &str, file: Vec<u8>) -> crate::error::Result<Self> {
        let manifest = Manifest::from_json(manifest_json)?;
        let entry = manifest.split.as_ref().ok_or_else(|| crate::error::Error::UnknownModel {
            name: "split".into(),
            available: manifest.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        verify("split.tail", &file, &entry.tail.sha256)?;
        let id = format!("split_tail@{}", &entry.tail.sha256[..12.min(entry.tail.sha256.len())]);
        let feature_len = entry.feature_shape.iter().product();
        Ok(SplitService { manifest, file, id, feature_len, tail: std::cell::OnceCell::new() })
    }

    /// `split_tail@sha256-prefix`.
    pub fn model_id(&self) -> &str {
        &self.id
    }

    /// Number of feature values a body carries.
    pub fn feature_len(&self) -> usize {
        self.feature_len
    }

    fn tail(&self) -> Result<&Stage2, ApiError> {
        if let Some(t) = self.tail.get() {
            return Ok(t);
        }
        let t = split::load_tail(&self.manifest, &self.file)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the split tail failed to load: {e}")))?;
        Ok(self.tail.get_or_init(|| t))
    }

    /// `POST /v1/models/<set>/split/<trunk>` on a body already read: checked with
    /// [`protocol::check_features_body`], dequantised, run through the tail, answered like classify.
    pub fn classify(
        &self,
        body: &[u8],
        max_body: usize,
        clock: &dyn Fn() -> f64,
    ) -> Result<ClassifyResponse, ApiError> {
        protocol::check_features_body(body, self.feature_len, max_body)?;
        let features = QuantizedFeatures::from_bytes(body, self.feature_len)?.dequantize();
        let tail = self.tail()?;
        let t0 = clock();
        let logits = tail
            .run(&features)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the split tail failed: {e}")))?;
        let elapsed = clock() - t0;
        let probs = crate::prob::softmax(&logits, 1.0);
        let label = crate::prob::argmax(&probs) as u32;
        Ok(ClassifyResponse { label, probs, model: self.id.clone(), infer_ms: (elapsed > 0.0).then_some(elapsed) })
    }
}

/// `GET /v1/models` from the sets of a deployment.
pub fn model_set_list(default_set: &str, sets: &[ModelSet]) -> ModelSetList {
    ModelSetList { default_set: default_set.into(), sets: sets.iter().map(ModelSet::info).collect() }
}

/// The model a Worker serves: the manifest and model file bytes are known at start-up, the tract plan is
/// built on first use (Workers allow 1 s of start-up) and kept for the isolate's life.
#[derive(Debug)]
pub struct ModelService {
    manifest: Manifest,
    manifest_json: String,
    name: String,
    file: Vec<u8>,
    id: String,
    model: std::cell::OnceCell<Model>,
}

impl ModelService {
    /// A service for model `name` of the manifest in `manifest_json`, with its model file's bytes. Checks
    /// the manifest and the bytes' sha256 now (cheap); parses the model later.
    pub fn new(manifest_json: &str, name: &str, file: Vec<u8>) -> crate::error::Result<Self> {
        let manifest = Manifest::from_json(manifest_json)?;
        let entry = manifest.model(name)?;
        verify(name, &file, &entry.sha256)?;
        let id = entry.id(name);
        Ok(ModelService {
            manifest,
            manifest_json: manifest_json.to_string(),
            name: name.into(),
            file,
            id,
            model: std::cell::OnceCell::new(),
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest as served by `GET /v1/models/<set>`.
    pub fn manifest_json(&self) -> &str {
        &self.manifest_json
    }

    /// `name@sha256-prefix`.
    pub fn model_id(&self) -> &str {
        &self.id
    }

    /// Bytes a classify body must have.
    pub fn input_len(&self) -> usize {
        self.manifest.input_len()
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> HealthResponse {
        HealthResponse { status: "ok".into(), model: self.id.clone(), loaded: self.model.get().is_some() }
    }

    /// The model, parsed and optimised on first call.
    pub fn model(&self) -> Result<&Model, ApiError> {
        if let Some(m) = self.model.get() {
            return Ok(m);
        }
        let m = Model::load(&self.manifest, &self.name, &self.file)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("the model failed to load: {e}")))?;
        Ok(self.model.get_or_init(|| m))
    }

    /// `POST /v1/classify` on a body already checked with
    /// [`check_classify_body`](crate::protocol::check_classify_body). `clock` reads milliseconds;
    /// when it does not advance across inference (workerd), `infer_ms` is `None`.
    pub fn classify(&self, pixels: &[u8], clock: &dyn Fn() -> f64) -> Result<ClassifyResponse, ApiError> {
        let model = self.model()?;
        let t0 = clock();
        let prediction = model
            .predict(pixels, 1.0)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("inference failed: {e}")))?;
        let elapsed = clock() - t0;
        Ok(ClassifyResponse {
            label: prediction.label as u32,
            probs: prediction.probs,
            model: self.id.clone(),
            infer_ms: (elapsed > 0.0).then_some(elapsed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let any = AccessRules::from_vars(None, None, None).unwrap();
        assert_eq!(any.allow_origin(Some("https://x.example")).unwrap().as_deref(), Some("*"));
        assert_eq!(any.allow_origin(None).unwrap(), None);
        let star = AccessRules::from_vars(Some(" * "), Some(""), Some("")).unwrap();
        assert_eq!(star, any);
        let list = AccessRules::from_vars(Some("https://a.example/, http://127.0.0.1:8080"), None, None).unwrap();
        assert_eq!(list.allow_origin(Some("https://a.example")).unwrap().as_deref(), Some("https://a.example"));
        assert_eq!(list.allow_origin(Some("http://127.0.0.1:8080")).unwrap().as_deref(), Some("http://127.0.0.1:8080"));
        for bad in ["https://a.example.evil", "http://a.example", "null", ""] {
            let e = list.allow_origin(Some(bad)).unwrap_err();
            assert_eq!((e.code, e.status()), (ErrorCode::OriginNotAllowed, 403), "{bad}");
        }
        assert_eq!(list.allow_origin(None).unwrap(), None);
    }

    #[test]
    fn tokens() {
        let open = AccessRules::from_vars(None, None, None).unwrap();
        assert!(open.check_token(None).is_ok());
        let locked = AccessRules::from_vars(None, Some("tok"), None).unwrap();
        for bad in [None, Some("tok"), Some("Bearer"), Some("Bearer to"), Some("Bearer tokk"), Some("Basic tok")] {
            assert_eq!(locked.check_token(bad).unwrap_err().status(), 401, "{bad:?}");
        }
        assert!(locked.check_token(Some("Bearer tok")).is_ok());
    }

    #[test]
    fn admit_checks_in_the_workers_order() {
        let rules = AccessRules::from_vars(Some("https://a.example"), Some("tok"), Some("1000")).unwrap();
        let classify = RequestHead {
            method: "POST",
            path: "/v1/classify",
            origin: Some("https://a.example"),
            authorization: Some("Bearer tok"),
            content_type: Some("application/octet-stream"),
            content_length: Some("784"),
        };
        let ok = rules.admit(&classify).unwrap();
        assert_eq!((ok.route, ok.allow_origin.as_deref()), (Route::Classify { set: None }, Some("https://a.example")));
        let refused = |head: RequestHead<'_>| *rules.admit(&head).unwrap_err();
        // A foreign origin is refused first, without CORS headers (the browser must not read it).
        let r = refused(RequestHead { origin: Some("https://evil.example"), method: "PUT", ..classify });
        assert_eq!((r.error.status(), r.allow_origin, r.allow), (403, None, None));
        // 405 carries the Allow header and CORS; 404 and 401 carry CORS.
        let r = refused(RequestHead { method: "GET", ..classify });
        assert_eq!((r.error.status(), r.allow), (405, Some("POST, OPTIONS")));
        assert_eq!(r.allow_origin.as_deref(), Some("https://a.example"));
        let r = refused(RequestHead { method: "DELETE", path: "/v1/health", ..classify });
        assert_eq!((r.error.status(), r.allow), (405, Some("GET, HEAD, OPTIONS")));
        assert_eq!(refused(RequestHead { path: "/v1/../etc", ..classify }).error.status(), 404);
        assert_eq!(refused(RequestHead { authorization: None, ..classify }).error.status(), 401);
        // The preflight needs no token; headers are checked for classify only.
        let pre = rules.admit(&RequestHead { method: "OPTIONS", authorization: None, ..classify }).unwrap();
        assert_eq!(pre.route, Route::Preflight);
        assert_eq!(refused(RequestHead { content_type: Some("text/plain"), ..classify }).error.status(), 415);
        assert_eq!(refused(RequestHead { content_length: Some("1001"), ..classify }).error.status(), 413);
        let health = RequestHead { method: "GET", path: "/v1/health", content_type: None, ..classify };
        assert_eq!(rules.admit(&health).unwrap().route, Route::Health);
        // A huge method is not echoed back whole.
        let long = "X".repeat(10_000);
        assert!(refused(RequestHead { method: &long, ..classify }).error.message.len() < 200);
    }

    #[test]
    fn body_cap() {
        assert_eq!(AccessRules::from_vars(None, None, None).unwrap().max_body, DEFAULT_MAX_BODY);
        assert_eq!(AccessRules::from_vars(None, None, Some("2048")).unwrap().max_body, 2048);
        assert!(AccessRules::from_vars(None, None, Some("lots")).unwrap_err().contains("MAX_BODY_BYTES"));
    }
}
