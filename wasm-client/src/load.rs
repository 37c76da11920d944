//! Where `HiClient.create` gets the manifest and model files from: the options, the Worker
//! (`endpoint` + `modelSet`, files by sha256), and the Cache API ([`FileCache`]).

use hiedge_core::{protocol, Manifest};
use wasm_bindgen::prelude::*;

use crate::cache::{self, FileCache};
use crate::js::{self, coded_error, core_error, Progress, INVALID_OPTIONS};
use crate::options::HiClientOptions;

/// A left-out option.
pub fn absent(v: &JsValue) -> bool {
    v.is_undefined() || v.is_null()
}

/// The Worker-related options, checked.
pub struct Sources {
    /// The model set (`modelSet`), a valid set name.
    pub set: Option<String>,
    /// The Worker's base URL.
    pub endpoint: Option<String>,
    /// The bearer token, sent only to the Worker's own URLs.
    pub token: Option<String>,
    /// The `manifest` option as given.
    manifest: JsValue,
}

impl Sources {
    /// Reads `modelSet`, `endpoint`, `token` and `manifest`.
    pub fn from_options(options: &HiClientOptions) -> Result<Self, JsValue> {
        let set = match options.model_set.as_deref() {
            None => None,
            Some(set) if protocol::is_set_name(set) => Some(set.to_string()),
            Some(set) => {
                return Err(coded_error(
                    INVALID_OPTIONS,
                    &format!("`modelSet` `{set}` is not a model-set name (1-64 of a-z, 0-9, - and _)"),
                ))
            }
        };
        Ok(Sources {
            set,
            endpoint: options.endpoint.clone(),
            token: options.token.clone().filter(|t| !t.is_empty()),
            manifest: options.manifest.clone(),
        })
    }

    /// A URL of the Worker's for the set, or why there is none.
    fn worker_url(&self, what: &str, path: &dyn Fn(&str) -> String) -> Result<String, JsValue> {
        match (&self.set, &self.endpoint) {
            (Some(set), Some(endpoint)) => Ok(format!("{}{}", endpoint.trim_end_matches('/'), path(set))),
            _ => Err(coded_error(
                INVALID_OPTIONS,
                &format!("give `{what}`, or `modelSet` and `endpoint` to load it from the Worker"),
            )),
        }
    }

    /// The Worker's URL for a device-side file of the set, by its sha256.
    #[cfg(feature = "device")]
    pub fn worker_file(&self, what: &str, sha256: &str) -> Result<String, JsValue> {
        self.worker_url(what, &|set| protocol::set_file_path(set, sha256))
    }

    /// The URL the manifest is fetched from, when it is fetched (`None`: given as object or text).
    fn manifest_url(&self) -> Result<Option<String>, JsValue> {
        if absent(&self.manifest) {
            return self.worker_url("manifest", &|set| protocol::set_path(set)).map(Some);
        }
        match self.manifest.as_string() {
            Some(s) if !s.trim_start().starts_with('{') => Ok(Some(s)),
            Some(_) => Ok(None),
            None if self.manifest.is_object() => Ok(None),
            None => Err(coded_error(INVALID_OPTIONS, "`manifest` must be an object, JSON text or a URL")),
        }
    }

    /// The manifest given as JSON text or a JS object (when [`manifest_url`](Self::manifest_url) is `None`).
    fn given_manifest(&self) -> Result<Manifest, JsValue> {
        if let Some(json) = self.manifest.as_string() {
            return Manifest::from_json(&json).map_err(core_error);
        }
        let manifest: Manifest = serde_wasm_bindgen::from_value(self.manifest.clone())
            .map_err(|e| coded_error("ManifestParse", &format!("manifest is not a valid hiedge manifest: {e}")))?;
        manifest.validate().map_err(core_error)?;
        Ok(manifest)
    }

    /// The manifest, validated. A fetched one is network-first: stored when the network answers,
    /// the stored copy used when it does not (offline).
    pub async fn manifest(&self, cache: &FileCache, progress: &Progress) -> Result<Manifest, JsValue> {
        let Some(url) = self.manifest_url()? else { return self.given_manifest() };
        let token = if absent(&self.manifest) { self.token.as_deref() } else { None };
        let key = cache::manifest_key(&url);
        let json = match js::fetch_text(&url, "manifest", token, cache.timeout_ms()).await {
            Ok(json) => {
                // Only a manifest that parses is kept for offline use.
                if Manifest::from_json(&json).is_ok() {
                    cache.put(&key, json.as_bytes()).await;
                }
                json
            }
            Err(network) => match cache.get(&key).await {
                Some(bytes) => {
                    progress.bytes("manifest", bytes.len() as f64, Some(bytes.len() as f64), true);
                    String::from_utf8(bytes).map_err(|_| network)?
                }
                None => return Err(network),
            },
        };
        Manifest::from_json(&json).map_err(core_error)
    }

    /// The manifest when it can be had without the network (given, or stored), else `None`.
    pub async fn manifest_offline(&self, cache: &FileCache) -> Result<Option<Manifest>, JsValue> {
        match self.manifest_url()? {
            None => self.given_manifest().map(Some),
            Some(url) => Ok(cache
                .get(&cache::manifest_key(&url))
                .await
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|json| Manifest::from_json(&json).ok())),
        }
    }
}

/// A model file given as bytes, or a URL fetched through the cache under the manifest's `sha256`.
#[cfg(feature = "device")]
pub async fn file_or_fetch(
    value: &JsValue,
    what: &str,
    sha256: &str,
    cache: &FileCache,
    progress: &Progress,
) -> Result<Vec<u8>, JsValue> {
    use js_sys::{ArrayBuffer, Uint8Array};
    use wasm_bindgen::JsCast;
    if let Some(a) = value.dyn_ref::<Uint8Array>() {
        return Ok(a.to_vec());
    }
    if let Some(b) = value.dyn_ref::<ArrayBuffer>() {
        return Ok(Uint8Array::new(b).to_vec());
    }
    if let Some(url) = value.as_string() {
        return cache.file(&url, sha256, what, None, progress).await;
    }
    Err(coded_error(INVALID_OPTIONS, &format!("`{what}` must be a Uint8Array, an ArrayBuffer or a URL")))
}

/// Whether `HiClient.create(options)` would find the manifest (when fetched) and every model file
/// it needs in `cache`.
pub async fn is_cached(options: &HiClientOptions, cache: &FileCache) -> Result<bool, JsValue> {
    let sources = Sources::from_options(options)?;
    let Some(manifest) = sources.manifest_offline(cache).await? else { return Ok(false) };
    let name = options.model_name.as_deref().unwrap_or("tiny");
    let mut files = Vec::new();
    if absent(&options.model) || options.model.is_string() {
        files.push(manifest.model(name).map_err(core_error)?.sha256.clone());
    }
    let early_exit = &options.early_exit;
    if !absent(early_exit) && early_exit.as_bool() != Some(false) {
        if let Some(entry) = &manifest.early_exit {
            let given = |stage: &str| js_sys::Reflect::get(early_exit, &stage.into()).unwrap_or(JsValue::UNDEFINED);
            if early_exit.as_bool() == Some(true) || given("stage1").is_string() {
                files.push(entry.stage1.sha256.clone());
            }
            if early_exit.as_bool() == Some(true) || given("stage2").is_string() {
                files.push(entry.stage2.sha256.clone());
            }
        }
    }
    for sha256 in files {
        if !cache.has(&cache::file_key(&sha256)).await {
            return Ok(false);
        }
    }
    Ok(true)
}
