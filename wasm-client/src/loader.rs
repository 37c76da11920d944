//! The loader build's exports (`hiedge_loader_bg.wasm`, built `--no-default-features`): the
//! client's network layer without tract, small enough to arrive long before the device build.
//! The package's JS entry calls it to
//! - download the device build's wasm with progress and keep it in the Cache API by sha256
//!   ([`load_device_wasm`], the same [`FileCache::file`] the model files go through),
//! - answer samples through the Worker while the device model loads ([`WhileLoading`]: the same
//!   [`OffloadClient`] request and `ClassifyResponse` check as every offload of the device build),
//! - tell whether a load would need the network, and clear the cache.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hiedge_core::session::{HiResult, Mode, RemoteOutcome, Why};
use js_sys::{Promise, Uint8Array};
use serde::Deserialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::cache::{self, FileCache};
use crate::js::{self, coded_error, now_ms, result_to_js, Progress, INVALID_OPTIONS};
use crate::load::{self, Sources};
use crate::offload::{self, OffloadClient};
use crate::options::{millis, HiClientOptions, OffloadRequest};

/// `error.code` of a sample that neither the device model nor the Worker could answer yet.
const NOT_READY: &str = "NotReady";

/// Where the device build's wasm comes from (`loadDeviceWasm`'s options).
#[derive(Tsify, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceWasmOptions {
    /// The wasm's URL.
    pub url: String,
    /// Its sha256 (hex), written into the package by its build: the Cache API key, and the check
    /// of a cached copy. Without it the wasm is downloaded and not cached.
    #[tsify(optional)]
    pub sha256: Option<String>,
    /// Use the Cache API (default true).
    #[tsify(optional)]
    pub cache: Option<bool>,
    /// Time allowed for the download, ms (default 120000).
    #[tsify(optional)]
    pub load_timeout_ms: Option<f64>,
    /// Hears the download's progress (`file: "wasm"`).
    #[tsify(optional, type = "(progress: LoadProgress) => void")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub on_progress: JsValue,
}

/// Downloads the device build's wasm (at most 64 MiB, within `loadTimeoutMs`, reporting progress)
/// or takes it from the Cache API when a stored copy still hashes to `sha256`; resolves to the
/// compiled `WebAssembly.Module`.
#[wasm_bindgen(js_name = loadDeviceWasm, unchecked_return_type = "Promise<WebAssembly.Module>")]
pub fn load_device_wasm(#[wasm_bindgen(unchecked_param_type = "DeviceWasmOptions")] options: JsValue) -> Promise {
    future_to_promise(async move {
        let options: DeviceWasmOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| coded_error(INVALID_OPTIONS, &format!("invalid wasm options: {e}")))?;
        let progress = Progress::new(&options.on_progress);
        let timeout_ms = millis(options.load_timeout_ms, "loadTimeoutMs", js::LOAD_TIMEOUT_MS)?;
        let bytes = match &options.sha256 {
            Some(sha256) => {
                let cache = FileCache::for_options(options.cache, timeout_ms).await;
                cache.file(&options.url, sha256, "wasm", None, &progress).await?
            }
            None => js::fetch_bytes_with_progress(&options.url, "wasm", None, false, timeout_ms, &progress).await?,
        };
        JsFuture::from(js_sys::WebAssembly::compile(&Uint8Array::from(&bytes[..]))).await
    })
}

/// Whether `HiClient.create(options)` would load with no network: the device build's wasm (by
/// `wasmSha256`), a fetched manifest and the model files it needs are in the Cache API.
#[wasm_bindgen(js_name = isCached)]
pub async fn is_cached(
    #[wasm_bindgen(unchecked_param_type = "HiClientOptions")] options: JsValue,
    #[wasm_bindgen(js_name = wasmSha256)] wasm_sha256: String,
) -> Result<bool, JsValue> {
    let options = HiClientOptions::from_js(options)?;
    let cache = FileCache::open().await;
    if !cache.has(&cache::file_key(&wasm_sha256)).await {
        return Ok(false);
    }
    load::is_cached(&options, &cache).await
}

/// Deletes everything the client cached (the wasm, manifests, model files); resolves to whether
/// there was a cache to delete.
#[wasm_bindgen(js_name = clearCache)]
pub async fn clear_cache() -> Result<bool, JsValue> {
    FileCache::delete_all().await
}

/// hiedge-core's largest image (pixels): the page checks an element's size against it before
/// copying its pixels to the Web Worker.
#[wasm_bindgen(js_name = maxImagePixels)]
pub fn max_image_pixels() -> usize {
    hiedge_core::runtime::image::MAX_IMAGE_PIXELS
}

/// The set's class names and the offload client with the set's offload codec, once the manifest
/// is known: `None` until it has come, or when it could not.
type Classes = Rc<RefCell<Option<(Vec<String>, OffloadClient)>>>;

/// Answers model-sized samples through the Worker's classify route while the device model loads
/// (`HiClient.create({ answerWhileLoading: true })`). The answers are checked against the set's
/// classes, which come from the given manifest or are fetched (from its URL, or from the Worker's
/// set) in parallel with the first samples.
#[wasm_bindgen]
pub struct WhileLoading {
    offload: OffloadClient,
    mode: Cell<Mode>,
    classes: Classes,
    /// Settles when the classes are known or cannot be had.
    classes_known: Promise,
    answered: Rc<Cell<u32>>,
}

#[wasm_bindgen]
impl WhileLoading {
    /// From `HiClient.create`'s options (the page's functions left out). Throws when there is no
    /// Worker to answer (no `endpoint`) or the options cannot be read: then samples wait for the
    /// device model, whose load reports the options' errors.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "HiClientOptions")] options: JsValue,
    ) -> Result<WhileLoading, JsValue> {
        let options = HiClientOptions::from_js(options)?;
        let sources = Sources::from_options(&options)?;
        if sources.endpoint.is_none() {
            return Err(coded_error(INVALID_OPTIONS, "no `endpoint` to answer through while loading"));
        }
        let offload = OffloadClient::from_options(
            sources.endpoint.clone(),
            sources.set.as_deref(),
            sources.token.clone(),
            options.timeout_ms,
            None,
        )?;
        let load_timeout_ms = millis(options.load_timeout_ms, "loadTimeoutMs", js::LOAD_TIMEOUT_MS)?;
        let use_cache = options.cache;
        let codec = offload::codec_option(options.offload_codec.as_deref())?;
        let classes: Classes = Rc::default();
        let (known, mut client) = (classes.clone(), offload.clone());
        let classes_known = future_to_promise(async move {
            let cache = FileCache::for_options(use_cache, load_timeout_ms).await;
            let silent = Progress::new(&JsValue::UNDEFINED);
            if let Ok(manifest) = sources.manifest(&cache, &silent).await {
                client.set_codec(codec, manifest.offload_codec, &manifest.input);
                *known.borrow_mut() = Some((manifest.classes, client));
            }
            Ok(JsValue::UNDEFINED)
        });
        Ok(WhileLoading {
            offload,
            mode: Cell::new(options.mode.unwrap_or_default()),
            classes,
            classes_known,
            answered: Rc::default(),
        })
    }

    /// Sends one model-sized sample to the Worker and resolves to its checked answer
    /// (`why: "loading"`), or to `undefined` when the device must answer it (mode `only_local`,
    /// or the `allowOffload` hook said no). Rejects with code `NotReady` when the Worker did not
    /// answer, its answer fails the check, or the classes to check it against are not known
    /// within the offload timeout.
    #[wasm_bindgen(unchecked_return_type = "Promise<ClassifyResult | undefined>")]
    pub fn classify(
        &self,
        input: &Uint8Array,
        #[wasm_bindgen(
            js_name = allowOffload,
            unchecked_param_type = "((request: OffloadRequest) => boolean | Promise<boolean>) | null"
        )]
        allow_offload: JsValue,
    ) -> Promise {
        let (offload, mode, classes, known, answered) = (
            self.offload.clone(),
            self.mode.get(),
            self.classes.clone(),
            self.classes_known.clone(),
            self.answered.clone(),
        );
        let pixels = input.to_vec();
        future_to_promise(async move {
            let start = now_ms();
            if mode == Mode::OnlyLocal {
                return Ok(JsValue::UNDEFINED);
            }
            let hook = offload::allow_offload_hook(&allow_offload)?;
            let not_ready = |why: &str| {
                coded_error(
                    NOT_READY,
                    &format!("the device model is still loading and the Worker did not answer: {why}"),
                )
            };
            if classes.borrow().is_none() {
                // The classes were asked for when the client was created, in parallel with this
                // sample; on a slow network they may come just after it. Wait at most the offload
                // timeout: without them the answer cannot be checked, and is not used.
                let wait_ms = offload.timeout_ms();
                let timeout = future_to_promise(async move {
                    js::sleep(wait_ms).await;
                    Ok(JsValue::UNDEFINED)
                });
                let _ = JsFuture::from(Promise::race(&js_sys::Array::of2(&known, &timeout))).await;
            }
            let Some((names, client)) = classes.borrow().clone() else {
                return Err(not_ready("the set's classes are unknown, so its answer cannot be checked"));
            };
            // Encoded by the set's offload codec, as the device client's offloads are.
            let body = client.encode(pixels).await;
            if let Some(hook) = hook {
                let request = OffloadRequest {
                    local_label: -1,
                    confidence: 0.0,
                    score: 0.0,
                    why: Why::Loading,
                    bytes: body.bytes.len(),
                };
                if !offload::ask_hook(&hook, &request).await {
                    return Ok(JsValue::UNDEFINED);
                }
            }
            match client.classify(&body, names.len()).await {
                RemoteOutcome::Answered { response, .. } => {
                    answered.set(answered.get() + 1);
                    let bytes_sent = body.bytes.len();
                    result_to_js(&HiResult::answered_while_loading(response, &names, now_ms() - start, bytes_sent))
                }
                RemoteOutcome::Failed { reason, .. } => Err(not_ready(&reason)),
                RemoteOutcome::NotAsked | RemoteOutcome::LocalOnly => Err(not_ready("no request was made")),
            }
        })
    }

    /// The mode for the next samples (`setMode`); a mode that is not one is left to the device
    /// client's `setMode` to refuse.
    #[wasm_bindgen(js_name = setMode)]
    pub fn set_mode(&self, #[wasm_bindgen(unchecked_param_type = "Mode")] mode: JsValue) {
        if let Ok(mode) = serde_wasm_bindgen::from_value(mode) {
            self.mode.set(mode);
        }
    }

    /// The mode in use.
    #[wasm_bindgen(getter, unchecked_return_type = "Mode")]
    pub fn mode(&self) -> Result<JsValue, JsValue> {
        js::to_js(&self.mode.get())
    }

    /// Samples the Worker answered here (`stats().answeredWhileLoading`).
    #[wasm_bindgen(getter)]
    pub fn answered(&self) -> u32 {
        self.answered.get()
    }

    /// Sets the count of answered samples back to 0 (`resetStats`).
    #[wasm_bindgen(js_name = resetStats)]
    pub fn reset_stats(&self) {
        self.answered.set(0);
    }
}
