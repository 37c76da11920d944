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
    self, ApiError, BrokenSet, ClassifyResponse, DeviceFile, ErrorCode, HealthResponse, ModelSetInfo, ModelSetList,
    Route,
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
    /// unset means `*`), the `API_TOKEN` secret (unset: no token needed; set but blank: an error, so
    /// a misconfigured Worker fails closed) and `MAX_BODY_BYTES`.
    pub fn from_vars(origins: Option<&str>, token: Option<&str>, max_body: Option<&str>) -> Result<Self, String> {
        let allowed_origins = match origins.map(str::trim) {
            None | Some("") | Some("*") => None,
            Some(list) => Some(
                list.split(',').map(|o| o.trim().trim_end_matches('/').to_string()).filter(|o| !o.is_empty()).collect(),
            ),
        };
        // A token that is set but blank fails closed: an empty secret must never open the Worker.
        let api_token = match token {
            None => None,
            Some(t) if t.trim().is_empty() => {
                return Err("API_TOKEN is set but blank: set a real token, or remove the secret/variable to run \
                            without one"
                    .into())
            }
            Some(t) => Some(t.trim().to_string()),
        };
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

/// How a response may be cached, for [`AccessRules::response_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Content-addressed device files: cached for ever.
    Immutable,
    /// Manifests and the set list: cached, but revalidated on every use.
    Revalidate,
    /// Inference answers, health and errors: never stored.
    NoStore,
}

/// Seconds a client waits after a `429` (the rate-limit binding's period, `[[ratelimits]]` in
/// wrangler.toml).
pub const RATE_LIMIT_RETRY_AFTER_S: u32 = 60;

impl AccessRules {
    /// The CORS and caching headers of every response, given the `Access-Control-Allow-Origin`
    /// admission chose (`None`: no `Origin`, or a refused one).
    ///
    /// A shared cache must never hand a response made for one origin (or for no origin) to another:
    /// a Worker open to any origin answers every response with `Access-Control-Allow-Origin: *`,
    /// whether or not the request had an `Origin`; one with an origin list adds `Vary: Origin` to
    /// every response. With `API_TOKEN` set, nothing is `public`: files are `private`.
    pub fn response_headers(&self, allow_origin: Option<&str>, caching: Caching) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        let acao = match (&self.allowed_origins, allow_origin) {
            (None, _) => Some("*"),
            (Some(_), origin) => origin,
        };
        if let Some(origin) = acao {
            headers.push(("Access-Control-Allow-Origin", origin.to_string()));
            headers.push(("Access-Control-Expose-Headers", "Server-Timing, ETag, Retry-After".to_string()));
        }
        if self.allowed_origins.is_some() {
            headers.push(("Vary", "Origin".to_string()));
        }
        let scope = if self.api_token.is_some() { "private" } else { "public" };
        let cache_control = match caching {
            Caching::Immutable => format!("{scope}, max-age=31536000, immutable"),
            Caching::Revalidate if self.api_token.is_some() => "private, no-cache".to_string(),
            Caching::Revalidate => "no-cache".to_string(),
            Caching::NoStore => "no-store".to_string(),
        };
        headers.push(("Cache-Control", cache_control));
        headers.push(("X-Content-Type-Options", "nosniff".to_string()));
        headers
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

/// The model that runs on the device: `models.tiny` of the manifest.
pub const DEVICE_MODEL: &str = "tiny";

/// The roles whose files `GET /v1/models/<set>/files/<sha256>` may serve; nothing else is served.
pub const DEVICE_ROLES: [&str; 4] = [DEVICE_MODEL, "early_exit.stage1", "early_exit.stage2", "split.trunk"];

/// A relative path with empty and `.` segments dropped, so `./a//b` and `a/b` compare equal
/// (manifests refuse `..` and absolute paths already).
fn normalize_path(path: &str) -> String {
    path.split('/').filter(|seg| !seg.is_empty() && *seg != ".").collect::<Vec<_>>().join("/")
}

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

    /// The files browsers may fetch, by an allow-list of roles ([`DEVICE_ROLES`]): the device model
    /// (`tiny`), the early-exit stages and the split trunk. Nothing else a manifest lists is ever
    /// served: not the large model or any other model entry, no ONNX source, not the split tail. A
    /// device-role entry that shares its sha256 or its path with one of those is left out too, so a
    /// manifest cannot publish a server-side file by naming it again under a device role.
    pub fn device_files(&self) -> Vec<(DeviceFile, &str)> {
        let m = &self.manifest;
        let mut candidates: Vec<(&str, &str, &str)> = Vec::new();
        if let Some(tiny) = m.models.get(DEVICE_MODEL) {
            candidates.push((DEVICE_ROLES[0], &tiny.sha256, &tiny.file));
        }
        if let Some(ee) = &m.early_exit {
            candidates.push((DEVICE_ROLES[1], &ee.stage1.sha256, &ee.stage1.file));
            candidates.push((DEVICE_ROLES[2], &ee.stage2.sha256, &ee.stage2.file));
        }
        if let Some(sp) = &m.split {
            candidates.push((DEVICE_ROLES[3], &sp.trunk.sha256, &sp.trunk.file));
        }
        let server_only = self.server_only_files();
        candidates
            .into_iter()
            .filter(|(_, sha256, file)| {
                !server_only.iter().any(|(s, f)| s == sha256 || normalize_path(f) == normalize_path(file))
            })
            .map(|(role, sha256, file)| {
                let device = DeviceFile {
                    role: role.into(),
                    sha256: sha256.to_string(),
                    path: protocol::set_file_path(&self.name, sha256),
                };
                (device, file)
            })
            .collect()
    }

    /// `(sha256, path)` of every file of the manifest that must never leave the Worker: every model
    /// entry but the device model, every ONNX source, the split tail.
    fn server_only_files(&self) -> Vec<(&str, &str)> {
        let m = &self.manifest;
        let mut files: Vec<(&str, &str)> = Vec::new();
        for (name, entry) in &m.models {
            if name != DEVICE_MODEL {
                files.push((&entry.sha256, &entry.file));
            }
            if let Some(src) = &entry.source {
                files.push((&src.sha256, &src.file));
            }
        }
        let stages = m.early_exit.iter().flat_map(|ee| [&ee.stage1, &ee.stage2]);
        let split = m.split.iter().flat_map(|sp| [&sp.trunk, &sp.tail]);
        for stage in stages.chain(split) {
            if let Some(src) = &stage.source {
                files.push((&src.sha256, &src.file));
            }
        }
        if let Some(sp) = &m.split {
            files.push((&sp.tail.sha256, &sp.tail.file));
        }
        files
    }

    /// Every file the Worker reads for this set, relative to its directory: the device files, the
    /// large model and the split tail (checked to exist when the set is listed).
    pub fn asset_files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.device_files().into_iter().map(|(_, f)| f).collect();
        files.push(self.server_model_file());
        if let Some(sp) = &self.manifest.split {
            files.push(&sp.tail.file);
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
            .map_err(|e| ApiError::internal("the split model failed to load", format!("split tail: {e}")))?;
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
            .map_err(|e| ApiError::internal("the split model failed on this sample", format!("split tail: {e}")))?;
        let elapsed = clock() - t0;
        check_finite(&logits, "split tail logits")?;
        let probs = crate::prob::softmax(&logits, 1.0);
        check_finite(&probs, "split tail probabilities")?;
        let label = crate::prob::argmax(&probs) as u32;
        Ok(ClassifyResponse { label, probs, model: self.id.clone(), infer_ms: (elapsed > 0.0).then_some(elapsed) })
    }
}

/// `GET /v1/models` from the sets of a deployment that loaded and those that cannot be served.
pub fn model_set_list(default_set: &str, sets: &[ModelSet], broken: Vec<BrokenSet>) -> ModelSetList {
    ModelSetList { default_set: default_set.into(), sets: sets.iter().map(ModelSet::info).collect(), broken }
}

/// The `500 internal` every route of a set answers when the set cannot be served; `detail` (the
/// manifest error, the missing file) is for the Worker's log only.
pub fn broken_set(name: &str, detail: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("model set `{name}` is misconfigured on this Worker and cannot be served"), detail)
}

/// The answer of a model that gave a non-finite output: checked on every answer so that a `200`
/// never carries NaN or infinity.
fn check_finite(values: &[f32], what: &str) -> Result<(), ApiError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(ApiError::internal(
            "the model gave a non-finite answer for this sample",
            format!("{what}: output {i} is {}", values[i]),
        )),
    }
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
            .map_err(|e| ApiError::internal("the model failed to load", format!("model `{}`: {e}", self.name)))?;
        Ok(self.model.get_or_init(|| m))
    }

    /// `POST /v1/classify` on a body already checked with
    /// [`check_classify_body`](crate::protocol::check_classify_body). `clock` reads milliseconds;
    /// when it does not advance across inference (workerd), `infer_ms` is `None`.
    pub fn classify(&self, pixels: &[u8], clock: &dyn Fn() -> f64) -> Result<ClassifyResponse, ApiError> {
        let model = self.model()?;
        let t0 = clock();
        let prediction = model.predict(pixels, 1.0).map_err(|e| {
            ApiError::internal("inference failed on this sample", format!("model `{}`: {e}", self.name))
        })?;
        let elapsed = clock() - t0;
        check_finite(&prediction.probs, &format!("model `{}` probabilities", self.name))?;
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
        let star = AccessRules::from_vars(Some(" * "), None, Some("")).unwrap();
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

    #[test]
    fn a_blank_token_fails_closed() {
        for blank in ["", " ", "\t\n "] {
            let e = AccessRules::from_vars(None, Some(blank), None).unwrap_err();
            assert!(e.contains("API_TOKEN is set but blank"), "{blank:?}: {e}");
        }
        assert_eq!(AccessRules::from_vars(None, None, None).unwrap().api_token, None);
        assert_eq!(AccessRules::from_vars(None, Some(" tok "), None).unwrap().api_token.as_deref(), Some("tok"));
    }

    fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_response_is_safe_in_a_shared_cache() {
        // Open to any origin: a wildcard ACAO on every response, with or without an Origin.
        let any = AccessRules::from_vars(None, None, None).unwrap();
        for origin in [None, Some("*")] {
            let h = any.response_headers(origin, Caching::Immutable);
            assert_eq!(header(&h, "Access-Control-Allow-Origin"), Some("*"));
            assert_eq!(header(&h, "Cache-Control"), Some("public, max-age=31536000, immutable"));
        }
        // An origin list: Vary: Origin on every response, the allowed origin echoed only to itself.
        let list = AccessRules::from_vars(Some("https://a.example"), None, None).unwrap();
        let no_origin = list.response_headers(None, Caching::Revalidate);
        assert_eq!(header(&no_origin, "Vary"), Some("Origin"));
        assert_eq!(header(&no_origin, "Access-Control-Allow-Origin"), None);
        let echoed = list.response_headers(Some("https://a.example"), Caching::Revalidate);
        assert_eq!((header(&echoed, "Vary"), header(&echoed, "Cache-Control")), (Some("Origin"), Some("no-cache")));
        // With a token nothing is public.
        let locked = AccessRules::from_vars(None, Some("tok"), None).unwrap();
        let file = locked.response_headers(None, Caching::Immutable);
        assert_eq!(header(&file, "Cache-Control"), Some("private, max-age=31536000, immutable"));
        assert_eq!(
            header(&locked.response_headers(None, Caching::Revalidate), "Cache-Control"),
            Some("private, no-cache")
        );
        assert_eq!(header(&locked.response_headers(None, Caching::NoStore), "Cache-Control"), Some("no-store"));
    }

    fn fashion_mnist() -> serde_json::Value {
        serde_json::from_str(include_str!("../../models/fashion-mnist/manifest.json")).unwrap()
    }

    fn served(manifest: &serde_json::Value) -> Vec<(String, String)> {
        let set = ModelSet::new("fashion-mnist", &manifest.to_string()).unwrap();
        set.device_files().into_iter().map(|(f, file)| (f.role, file.to_string())).collect()
    }

    #[test]
    fn only_device_roles_are_served() {
        let m = fashion_mnist();
        let roles = served(&m);
        let names: Vec<&str> = roles.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(names, ["tiny", "early_exit.stage1", "early_exit.stage2", "split.trunk"]);
        let set = ModelSet::new("fashion-mnist", &m.to_string()).unwrap();
        let large = m["models"]["large"]["sha256"].as_str().unwrap();
        let tail = m["split"]["tail"]["sha256"].as_str().unwrap();
        let tiny_source = m["models"]["tiny"]["source"]["sha256"].as_str().unwrap();
        for refused in [large, tail, tiny_source] {
            assert_eq!(set.device_file(refused).unwrap_err().status(), 404, "{refused}");
        }
        let tiny = m["models"]["tiny"]["sha256"].as_str().unwrap();
        assert_eq!(set.device_file(tiny).unwrap(), "tiny.nnef.tar");
    }

    #[test]
    fn a_server_side_file_under_a_device_role_is_not_served() {
        // Another model entry is never served, whatever its name.
        let mut m = fashion_mnist();
        m["models"]["medium"] = m["models"]["tiny"].clone();
        m["models"]["medium"]["file"] = "medium.nnef.tar".into();
        m["models"]["medium"]["sha256"] = "ab".repeat(32).into();
        assert!(!served(&m).iter().any(|(_, f)| f == "medium.nnef.tar"));
        // The large model's bytes under the tiny role (same sha256): refused.
        let mut m = fashion_mnist();
        m["models"]["tiny"]["sha256"] = m["models"]["large"]["sha256"].clone();
        assert!(!served(&m).iter().any(|(r, _)| r == "tiny"));
        // The large model's path under a stage role, spelled differently: refused.
        let mut m = fashion_mnist();
        m["early_exit"]["stage1"]["file"] = "./large.nnef.tar".into();
        assert!(!served(&m).iter().any(|(r, _)| r == "early_exit.stage1"));
        // The split tail's or an ONNX source's path under the trunk role: refused.
        for path in ["split_tail.nnef.tar", "large.onnx", "tiny.onnx"] {
            let mut m = fashion_mnist();
            m["split"]["trunk"]["file"] = path.into();
            assert!(!served(&m).iter().any(|(r, _)| r == "split.trunk"), "{path}");
        }
    }

    #[test]
    fn non_finite_outputs_never_answer() {
        assert!(check_finite(&[0.25, 0.75], "probs").is_ok());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let e = check_finite(&[0.5, bad], "probs").unwrap_err();
            assert_eq!(e.status(), 500);
            assert!(!e.message.contains("NaN") && !e.message.contains("inf"), "{}", e.message);
            assert!(e.detail.unwrap().contains("output 1"));
        }
    }
}
