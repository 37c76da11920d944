//! A deployment's model sets as the Worker serves them: the set index, each set's manifest and the
//! files browsers may fetch (device roles only), the large model's service and the split tail's.

use crate::manifest::{Manifest, ModelEntry, OipTier};
use crate::protocol::{
    self, ApiError, BrokenSet, ClassifyResponse, DeviceFile, ErrorCode, HealthResponse, ModelSetInfo, ModelSetList,
    SampleEncoding, Tier,
};
use crate::runtime::split::{self, QuantizedFeatures};
use crate::runtime::{verify, Model, Stage2};

/// The model that answers offloads in a set without a server tier: `models.large` of the
/// manifest. A set with one names the Worker's model in `oip.worker_model` ([`ModelSet::worker_model`]).
/// Neither is ever served as a file.
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
    /// The manifest's `oip`, read once here.
    oip: Option<OipTier>,
    /// The model the Worker runs: `oip.worker_model`, else `large`.
    worker_model: String,
}

impl ModelSet {
    /// The set `name` from its manifest text. The manifest must be valid, name the set as its
    /// directory does, and have the model the Worker runs ([`Manifest::worker_model`]).
    pub fn new(name: &str, manifest_json: &str) -> crate::error::Result<Self> {
        let manifest = Manifest::from_json(manifest_json)?;
        if manifest.name != name {
            return Err(crate::error::Error::ManifestInvalid {
                field: "name".into(),
                reason: format!("is `{}` but the set's directory is `{name}`", manifest.name.escape_debug()),
            });
        }
        // A set whose server tier is not valid is broken here, with the field named, not at its
        // first escalated sample.
        let oip = manifest.oip_tier()?;
        let worker_model = oip.as_ref().map_or(SERVER_MODEL, |t| t.worker_model.as_str()).to_string();
        manifest.model(&worker_model)?;
        // Browsers fetch device models whole, by sha256: only the Worker's model may be in parts.
        if let Some((model, _)) = manifest.models.iter().find(|(n, m)| n.as_str() != worker_model && m.parts.is_some())
        {
            return Err(crate::error::Error::ManifestInvalid {
                field: format!("models.{model}.parts"),
                reason: format!("only the `{worker_model}` model, which stays in the Worker, may be stored in parts"),
            });
        }
        Ok(ModelSet { name: name.into(), manifest, manifest_json: manifest_json.into(), oip, worker_model })
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

    /// The largest request body this set can use: one sample (its input length) or, with a split
    /// model, the split tail's quantised features with their header, whichever is larger.
    pub fn largest_body(&self) -> usize {
        let features = self
            .manifest
            .split
            .as_ref()
            .map_or(0, |sp| protocol::FEATURES_HEADER_LEN + sp.feature_shape.iter().product::<usize>());
        self.manifest.input_len().max(features)
    }

    /// The set's server tier, the manifest's `oip` (checked by [`ModelSet::new`]); `None` without one.
    pub fn oip(&self) -> Option<&OipTier> {
        self.oip.as_ref()
    }

    /// The manifest's model the Worker runs on offloaded samples: `large`, or `oip.worker_model`.
    pub fn worker_model(&self) -> &str {
        &self.worker_model
    }

    /// The Worker's model's file, relative to the set's directory.
    pub fn worker_model_file(&self) -> &str {
        // `new` checked that the model exists.
        self.manifest.models.get(&self.worker_model).map_or("", |m| m.file.as_str())
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
    /// Worker's model (or its parts) and the split tail (checked to exist when the set is listed).
    /// A three-tier set's `large` model runs on the server: its file need not be deployed.
    pub fn asset_files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.device_files().into_iter().map(|(_, f)| f).collect();
        // `new` checked that the Worker's model exists.
        files.extend(self.manifest.models.get(&self.worker_model).map(ModelEntry::stored_files).unwrap_or_default());
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
        let large = self.manifest.models.get(&self.worker_model).map(|m| m.id(&self.worker_model)).unwrap_or_default();
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
        Ok(ClassifyResponse {
            label,
            probs,
            model: self.id.clone(),
            infer_ms: (elapsed > 0.0).then_some(elapsed),
            tier: Tier::Worker,
            why: None,
        })
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

/// A classify body as the model's input: raw bytes checked for length (400), or an encoded image
/// (`image/png|jpeg|webp`) decoded, checked against the decoded-pixel cap and converted by the
/// manifest's rule (400 `invalid_image` when it cannot be). Both are first checked against `cap`.
/// Without the `decode` feature an image is refused with 415.
pub fn sample_input(
    body: Vec<u8>,
    encoding: SampleEncoding,
    manifest: &Manifest,
    cap: usize,
) -> Result<Vec<u8>, ApiError> {
    protocol::check_classify_body(&body, encoding, manifest.input_len(), cap)?;
    if encoding == SampleEncoding::Raw {
        return Ok(body);
    }
    #[cfg(feature = "decode")]
    {
        crate::runtime::decode::decode_to_model_pixels(&body, encoding, &manifest.input)
            .map_err(|e| ApiError::new(ErrorCode::InvalidImage, e.to_string()))
    }
    #[cfg(not(feature = "decode"))]
    Err(ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("this server was built without image decoders: send `{}`", protocol::OCTET_STREAM),
    ))
}

/// The model a Worker serves: the manifest and model file bytes are known at start-up, the tract plan is
/// built on first use (Workers allow 1 s of start-up) and kept for the isolate's life.
#[derive(Debug)]
pub struct ModelService {
    manifest: Manifest,
    manifest_json: String,
    name: String,
    /// The model file's bytes until the model is parsed, then empty: an isolate does not hold the
    /// file beside the plan made from it.
    file: std::cell::RefCell<Vec<u8>>,
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
            file: std::cell::RefCell::new(file),
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
        let m = Model::load(&self.manifest, &self.name, &self.file.borrow())
            .map_err(|e| ApiError::internal("the model failed to load", format!("model `{}`: {e}", self.name)))?;
        // The plan holds what it needs: the file's bytes are not kept beside it.
        self.file.replace(Vec::new());
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
            tier: Tier::Worker,
            why: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fashion_mnist() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../models/fashion-mnist/manifest.json")).unwrap()
    }

    fn served(manifest: &serde_json::Value) -> Vec<(String, String)> {
        let set = ModelSet::new("fashion-mnist", &manifest.to_string()).unwrap();
        set.device_files().into_iter().map(|(f, file)| (f.role, file.to_string())).collect()
    }

    #[test]
    fn only_the_large_model_may_be_in_parts_and_its_parts_are_its_assets() {
        let part =
            |i: usize| serde_json::json!({ "file": format!("large.nnef.tar.part-{i}"), "sha256": "ab".repeat(32) });
        let mut m = fashion_mnist();
        m["models"]["large"]["parts"] = serde_json::json!([part(0), part(1)]);
        let set = ModelSet::new("fashion-mnist", &m.to_string()).unwrap();
        let assets = set.asset_files();
        assert!(assets.contains(&"large.nnef.tar.part-0") && assets.contains(&"large.nnef.tar.part-1"));
        assert!(!assets.contains(&"large.nnef.tar"), "{assets:?}");
        m["models"]["tiny"]["parts"] = serde_json::json!([part(0), part(1)]);
        let e = ModelSet::new("fashion-mnist", &m.to_string()).unwrap_err().to_string();
        assert!(e.contains("models.tiny.parts"), "{e}");
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
