//! Files the client downloads, kept in the browser's Cache API so a second page load (or a load
//! with no network at all) does not download them again.
//!
//! - Model files are keyed by the sha256 the manifest gives them, so a changed manifest (new
//!   hashes) fetches new files and an unchanged one never fetches twice; a cached file whose bytes
//!   do not hash to its key is dropped and fetched again.
//! - A manifest fetched from a URL is network-first: a fresh copy is used and stored when the
//!   network answers, the stored copy when it does not.
//!
//! Everything here is best effort: without the Cache API (an insecure origin, `cache: false`) or
//! when the browser refuses to store, files are fetched as before.

use hiedge_core::runtime::sha256_hex;
use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::js::{self, Progress};

/// The Cache API cache the client (and the package's `init`) uses.
pub const CACHE_NAME: &str = hiedge_core::protocol::CLIENT_CACHE_NAME;
/// Cache keys are URLs; these never go to the network.
const KEY_BASE: &str = "https://cache.hiedge.invalid/";

/// The key of a file by its sha256.
pub fn file_key(sha256: &str) -> String {
    format!("{KEY_BASE}sha256/{}", sha256.to_ascii_lowercase())
}

/// The key of a manifest fetched from `url`.
pub fn manifest_key(url: &str) -> String {
    format!("{KEY_BASE}manifest/{}", String::from(js_sys::encode_uri_component(url)))
}

/// The client's file cache, or none.
#[derive(Clone)]
pub struct FileCache {
    cache: Option<web_sys::Cache>,
    /// Time allowed for each download (`loadTimeoutMs`).
    timeout_ms: f64,
}

impl FileCache {
    /// No caching.
    pub fn disabled() -> Self {
        FileCache { cache: None, timeout_ms: js::LOAD_TIMEOUT_MS }
    }

    /// The same cache, with `timeout_ms` for each download.
    pub fn with_timeout(self, timeout_ms: f64) -> Self {
        FileCache { timeout_ms, ..self }
    }

    /// Time allowed for each download.
    pub fn timeout_ms(&self) -> f64 {
        self.timeout_ms
    }

    /// The cache the `cache` option asks for (`false`: none; default: the Cache API), with
    /// `timeout_ms` for each download.
    pub async fn for_options(cache: Option<bool>, timeout_ms: f64) -> Self {
        let cache = if cache == Some(false) { FileCache::disabled() } else { FileCache::open().await };
        cache.with_timeout(timeout_ms)
    }

    /// Opens the cache when the Cache API is here (secure origins, window or worker).
    pub async fn open() -> Self {
        let cache = match storage() {
            Some(storage) => await_value(storage.open(CACHE_NAME)).await.and_then(|c| c.dyn_into().ok()),
            None => None,
        };
        FileCache { cache, timeout_ms: js::LOAD_TIMEOUT_MS }
    }

    /// Deletes the whole cache (model files, manifests, and the package's wasm); `Ok(false)` when
    /// there was none or the Cache API is not here.
    pub async fn delete_all() -> Result<bool, JsValue> {
        let Some(storage) = storage() else { return Ok(false) };
        let deleted = JsFuture::from(storage.delete(CACHE_NAME)).await.map_err(|e| {
            js::coded_error(js::FETCH_FAILED, &format!("could not clear the cache: {}", js::describe(&e)))
        })?;
        Ok(deleted.as_bool() == Some(true))
    }

    /// The stored bytes for `key`, if any.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let cache = self.cache.as_ref()?;
        let response: web_sys::Response = await_value(cache.match_with_str(key)).await?.dyn_into().ok()?;
        let buffer = await_value(response.array_buffer().ok()?).await?;
        Some(Uint8Array::new(&buffer).to_vec())
    }

    /// Stores `bytes` under `key` (a failure to store only costs a later download).
    pub async fn put(&self, key: &str, bytes: &[u8]) {
        let Some(cache) = &self.cache else { return };
        let body = Uint8Array::from(bytes);
        if let Ok(response) = web_sys::Response::new_with_opt_buffer_source(Some(&body)) {
            let _ = await_value(cache.put_with_str(key, &response)).await;
        }
    }

    /// Drops the entry under `key`.
    pub async fn delete(&self, key: &str) {
        if let Some(cache) = &self.cache {
            let _ = await_value(cache.delete_with_str(key)).await;
        }
    }

    /// Whether an entry is stored under `key`.
    pub async fn has(&self, key: &str) -> bool {
        match &self.cache {
            Some(cache) => await_value(cache.match_with_str(key)).await.is_some_and(|r| !r.is_undefined()),
            None => false,
        }
    }

    /// The file with this sha256: from the cache when its bytes still hash to it, otherwise
    /// downloaded from `url` (reporting bytes as they arrive; once more past the HTTP cache when
    /// the bytes do not hash to it) and stored.
    pub async fn file(
        &self,
        url: &str,
        sha256: &str,
        what: &str,
        token: Option<&str>,
        progress: &Progress,
    ) -> Result<Vec<u8>, JsValue> {
        let is_file = |bytes: &[u8]| sha256_hex(bytes).eq_ignore_ascii_case(sha256);
        let key = file_key(sha256);
        if let Some(bytes) = self.get(&key).await {
            if is_file(&bytes) {
                progress.bytes(what, bytes.len() as f64, Some(bytes.len() as f64), true);
                return Ok(bytes);
            }
            self.delete(&key).await;
        }
        let mut bytes = js::fetch_bytes_with_progress(url, what, token, false, self.timeout_ms, progress).await?;
        let mut matches = is_file(&bytes);
        if !matches {
            // A changed file at the same URL may still be in the HTTP cache: ask the server once.
            bytes = js::fetch_bytes_with_progress(url, what, token, true, self.timeout_ms, progress).await?;
            matches = is_file(&bytes);
        }
        // Only bytes that are the file the manifest names are kept; the model loader reports a
        // mismatch with both hashes.
        if matches {
            self.put(&key, &bytes).await;
        }
        Ok(bytes)
    }
}

/// `globalThis.caches`, where the Cache API is available.
fn storage() -> Option<web_sys::CacheStorage> {
    js_sys::Reflect::get(&js_sys::global(), &"caches".into()).ok().and_then(|s| s.dyn_into().ok())
}

/// Awaits a promise, `None` when it rejects or resolves to `undefined`.
async fn await_value(promise: Promise) -> Option<JsValue> {
    JsFuture::from(promise).await.ok().filter(|v| !v.is_undefined())
}
