//! # hiedge-wasm: the `hiedge` npm package
//!
//! A thin wasm-bindgen facade over [`hiedge_core::session::HiSession`]: it converts JavaScript values,
//! fetches models, and makes the offload request with `fetch`; every HI decision, timing and
//! statistic is hiedge-core's.
//!
//! ```js
//! import init, { HiClient } from "hiedge";
//! await init();
//! const client = await HiClient.create({
//!   model: "/models/tiny.onnx", manifest: "/models/manifest.json",
//!   endpoint: "http://127.0.0.1:8787", timeoutMs: 2000,
//! });
//! const result = await client.classify(pixels); // Uint8Array(784)
//! console.log(result.label, result.decision, result.timings.totalMs);
//!
//! // Or everything from one Worker deployment: manifest, tiny model and early-exit stages are
//! // fetched from it by sha256, offloads go to that set's large model.
//! const mnist = await HiClient.create({ endpoint: "http://127.0.0.1:8787", modelSet: "mnist", earlyExit: true });
//! ```

mod image;
mod js;
mod offload;
mod options;
mod stream;

use std::cell::RefCell;
use std::rc::Rc;

use hiedge_core::policy::tradeoff::{self, ScoredSample};
use hiedge_core::protocol;
use hiedge_core::runtime::EarlyExitModel;
use hiedge_core::session::{HiSession, LocalStep, RemoteOutcome};
use hiedge_core::{Manifest, Model, PolicyConfig};
use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::js::{coded_error, core_error, now_ms, to_js, ManifestSource, INVALID_OPTIONS};
use crate::offload::OffloadClient;
pub use crate::options::{EarlyExitSources, HiClientOptions, ImageShape, LoadProgress, LoadStage, PolicyChoice};
pub use crate::stream::{HiStream, HiStreamOptions};

/// Runs when the module is instantiated: a Rust panic is printed to the console with its message
/// and location (then surfaces as a JS `RuntimeError`), instead of only "unreachable".
#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The HI client: the tiny model and decision module in WebAssembly, offload by `fetch`.
#[wasm_bindgen]
pub struct HiClient {
    inner: Rc<RefCell<HiSession>>,
    offload: Rc<RefCell<OffloadClient>>,
}

#[wasm_bindgen]
impl HiClient {
    /// Loads the manifest and the tiny model (fetching them when given URLs), builds the tract plan
    /// once, and sets up the decision policy and the offload client.
    pub async fn create(
        #[wasm_bindgen(unchecked_param_type = "HiClientOptions")] options: JsValue,
    ) -> Result<HiClient, JsValue> {
        if !options.is_object() {
            return Err(coded_error(
                INVALID_OPTIONS,
                "HiClient.create needs an options object: { model, manifest, endpoint }",
            ));
        }
        let options: HiClientOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| coded_error(INVALID_OPTIONS, &format!("invalid HiClient options: {e}")))?;
        let progress = options.on_progress.dyn_ref::<js_sys::Function>();
        let report = |stage: LoadStage, message: &str| {
            if let Some(f) = progress {
                if let Ok(p) = to_js(&LoadProgress { stage, message: message.into() }) {
                    // A throwing progress callback must not stop loading.
                    let _ = f.call1(&JsValue::NULL, &p);
                }
            }
        };

        let set = match options.model_set.as_deref() {
            None => None,
            Some(set) if protocol::is_set_name(set) => Some(set),
            Some(set) => {
                return Err(coded_error(
                    INVALID_OPTIONS,
                    &format!("`modelSet` `{set}` is not a model-set name (1-64 of a-z, 0-9, - and _)"),
                ))
            }
        };
        let token = options.token.as_deref().filter(|t| !t.is_empty());
        // A file the Worker serves for the set: its URL, or why it cannot be fetched.
        let from_worker = |what: &str, path: &dyn Fn(&str) -> String| -> Result<String, JsValue> {
            match (set, options.endpoint.as_deref()) {
                (Some(set), Some(endpoint)) => Ok(format!("{}{}", endpoint.trim_end_matches('/'), path(set))),
                _ => Err(coded_error(
                    INVALID_OPTIONS,
                    &format!("give `{what}`, or `modelSet` and `endpoint` to load it from the Worker"),
                )),
            }
        };
        let absent = |v: &JsValue| v.is_undefined() || v.is_null();

        report(LoadStage::Manifest, "loading the manifest");
        let source = if absent(&options.manifest) {
            let url = from_worker("manifest", &|set| protocol::set_path(set))?;
            ManifestSource::Text(js::fetch_text(&url, "manifest", token).await?)
        } else {
            js::manifest_source(&options.manifest).await?
        };
        let manifest = match source {
            ManifestSource::Text(json) => Manifest::from_json(&json).map_err(core_error)?,
            ManifestSource::Object(object) => {
                let manifest: Manifest = serde_wasm_bindgen::from_value(object).map_err(|e| {
                    coded_error("ManifestParse", &format!("manifest is not a valid hiedge manifest: {e}"))
                })?;
                manifest.validate().map_err(core_error)?;
                manifest
            }
        };
        let name = options.model_name.clone().unwrap_or_else(|| "tiny".into());
        // A device-side file of the manifest, fetched from the Worker by its sha256.
        let worker_file = |what: &str, sha256: &str| from_worker(what, &|set| protocol::set_file_path(set, sha256));

        report(LoadStage::Model, &format!("loading model `{name}`"));
        let bytes = if absent(&options.model) {
            let sha256 = &manifest.model(&name).map_err(core_error)?.sha256;
            js::fetch_bytes(&worker_file("model", sha256)?, "model", token).await?
        } else {
            js::bytes_or_fetch(&options.model, "model").await?
        };

        report(LoadStage::Compile, &format!("optimising model `{name}` ({} bytes)", bytes.len()));
        let model = Model::load(&manifest, &name, &bytes).map_err(core_error)?;
        let early_exit = if absent(&options.early_exit) || options.early_exit.as_bool() == Some(false) {
            None
        } else {
            report(LoadStage::Model, "loading the early-exit model");
            let (s1, s2) = if options.early_exit.as_bool() == Some(true) {
                let entry = manifest.early_exit.as_ref().ok_or_else(|| {
                    coded_error(INVALID_OPTIONS, "`earlyExit: true` needs a manifest with an `early_exit` model")
                })?;
                let (url1, url2) =
                    (worker_file("earlyExit", &entry.stage1.sha256)?, worker_file("earlyExit", &entry.stage2.sha256)?);
                let s1 = js::fetch_bytes(&url1, "earlyExit.stage1", token).await?;
                (s1, js::fetch_bytes(&url2, "earlyExit.stage2", token).await?)
            } else {
                let sources: EarlyExitSources = serde_wasm_bindgen::from_value(options.early_exit.clone())
                    .map_err(|e| coded_error(INVALID_OPTIONS, &format!("invalid `earlyExit`: {e}")))?;
                let s1 = js::bytes_or_fetch(&sources.stage1, "earlyExit.stage1").await?;
                (s1, js::bytes_or_fetch(&sources.stage2, "earlyExit.stage2").await?)
            };
            Some(EarlyExitModel::load(&manifest, &s1, &s2).map_err(core_error)?)
        };
        let policy = policy_config(&manifest, options.policy).map_err(core_error)?;
        let session = HiSession::with_early_exit(manifest, model, early_exit, policy).map_err(core_error)?;
        let offload = OffloadClient::from_options(
            options.endpoint,
            set,
            options.token,
            options.timeout_ms,
            options.network_delay_ms,
        )?;

        report(LoadStage::Ready, "ready");
        Ok(HiClient { inner: Rc::new(RefCell::new(session)), offload: Rc::new(RefCell::new(offload)) })
    }

    /// Classifies one sample: local model, decision, and offload when the decision module asks for
    /// it. The sample is model-sized bytes (`inputLength` of them, interleaved, row-major) or an
    /// image source of any size, converted to the model's input by hiedge-core (size, colour,
    /// resize rule of the manifest); only that converted input is ever offloaded. Never rejects for
    /// network reasons (the local answer comes back as `"fallback"` with the reason); rejects with
    /// `code` `"InputLength"` on bytes of the wrong length and `"InvalidInput"` on anything else.
    #[wasm_bindgen(unchecked_return_type = "Promise<ClassifyResult>")]
    pub fn classify(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "Uint8Array | ImageData | HTMLCanvasElement | OffscreenCanvas | HTMLImageElement | HTMLVideoElement | ImageBitmap | VideoFrame | Blob"
        )]
        input: JsValue,
    ) -> Promise {
        let session = self.inner.clone();
        let offload = self.offload.borrow().clone();
        if input.is_instance_of::<web_sys::Blob>() {
            return future_to_promise(async move {
                let input = image::read(input).await?;
                let (local, pixels) = local_step(&session, input)?;
                offload_and_finish(session, offload, local, pixels).await
            });
        }
        // Read and run the local step now, so samples are taken in call order.
        match image::read_now(&input).and_then(|input| local_step(&session, input)) {
            Ok((local, pixels)) => future_to_promise(offload_and_finish(session, offload, local, pixels)),
            Err(e) => Promise::reject(&e),
        }
    }

    /// Classifies one sample with the local model only (no network); `offloadWanted` says what the
    /// decision module would have done. Takes what `classify` takes except a `Blob` (decoding one
    /// is asynchronous). Throws on input of the wrong length.
    #[wasm_bindgen(js_name = classifyLocal, unchecked_return_type = "ClassifyResult")]
    pub fn classify_local(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "Uint8Array | ImageData | HTMLCanvasElement | OffscreenCanvas | HTMLImageElement | HTMLVideoElement | ImageBitmap | VideoFrame"
        )]
        input: JsValue,
    ) -> Result<JsValue, JsValue> {
        let (local, _) = local_step(&self.inner, image::read_now(&input)?)?;
        let result = self.inner.borrow_mut().finish(local, RemoteOutcome::LocalOnly, now_ms()).map_err(core_error)?;
        to_js(&result)
    }

    /// Times every operation of the local model's optimised tract plan over `runs` runs on `pixels`
    /// (mean ms per run, slowest first): where the local inference time goes.
    #[wasm_bindgen(unchecked_return_type = "OpTime[]")]
    pub fn profile(&self, pixels: &Uint8Array, runs: usize) -> Result<JsValue, JsValue> {
        let session = self.inner.borrow();
        let ops = session.model().profile(&pixels.to_vec(), runs, &now_ms).map_err(core_error)?;
        to_js(&ops)
    }

    /// Replaces the decision policy (a kind name or a full configuration; see `PolicyConfig`).
    #[wasm_bindgen(js_name = setPolicy)]
    pub fn set_policy(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PolicyChoice")] policy: JsValue,
    ) -> Result<(), JsValue> {
        let choice: Option<PolicyChoice> = serde_wasm_bindgen::from_value(policy)
            .map_err(|e| coded_error("InvalidPolicy", &format!("invalid policy configuration: {e}")))?;
        let mut session = self.inner.borrow_mut();
        let config = policy_config(session.manifest(), choice).map_err(core_error)?;
        session.set_policy(config).map_err(core_error)
    }

    /// The policy in use, as a full configuration.
    #[wasm_bindgen(unchecked_return_type = "PolicyConfig")]
    pub fn policy(&self) -> Result<JsValue, JsValue> {
        to_js(self.inner.borrow().policy())
    }

    /// Extra delay before each offload request (ms), to emulate a slow link.
    #[wasm_bindgen(js_name = setNetworkDelay)]
    pub fn set_network_delay(&self, ms: f64) -> Result<(), JsValue> {
        self.offload.borrow_mut().set_delay(ms)
    }

    /// Points the client at another Worker (or at none, with `null`).
    #[wasm_bindgen(js_name = setEndpoint)]
    pub fn set_endpoint(&self, endpoint: Option<String>) -> Result<(), JsValue> {
        self.offload.borrow_mut().set_endpoint(endpoint)
    }

    /// Running counts, offload fraction and mean latencies since creation or `resetStats()`.
    #[wasm_bindgen(unchecked_return_type = "ClientStats")]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.borrow().stats())
    }

    /// Clears the running statistics.
    #[wasm_bindgen(js_name = resetStats)]
    pub fn reset_stats(&self) {
        self.inner.borrow_mut().reset_stats();
    }

    /// The manifest in use (classes, input shape, models, calibrated decision parameters).
    #[wasm_bindgen(unchecked_return_type = "object")]
    pub fn manifest(&self) -> Result<JsValue, JsValue> {
        to_js(self.inner.borrow().manifest())
    }

    /// Class names, by label.
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Vec<String> {
        self.inner.borrow().manifest().classes.clone()
    }

    /// Number of bytes one sample must have (Fashion-MNIST: 784).
    #[wasm_bindgen(getter, js_name = inputLength)]
    pub fn input_length(&self) -> usize {
        self.inner.borrow().model().input_len()
    }

    /// One sample's height, width and channels, as the manifest's input shape and layout say.
    #[wasm_bindgen(getter, js_name = imageShape, unchecked_return_type = "ImageShape")]
    pub fn image_shape(&self) -> Result<JsValue, JsValue> {
        let (channels, height, width) = self.inner.borrow().manifest().chw();
        to_js(&ImageShape { height, width, channels })
    }

    /// `name@sha256-prefix` of the local model.
    #[wasm_bindgen(getter, js_name = modelId)]
    pub fn model_id(&self) -> String {
        self.inner.borrow().model().id().to_string()
    }
}

/// The accuracy / offloading trade-off of "offload when `score <= threshold`" over answered samples,
/// at `steps + 1` thresholds evenly spaced over 0..=1 (the demo's live curve).
#[wasm_bindgen(js_name = thresholdSweep, unchecked_return_type = "TradeoffPoint[]")]
pub fn threshold_sweep(
    #[wasm_bindgen(unchecked_param_type = "ScoredSample[]")] samples: JsValue,
    steps: u32,
) -> Result<JsValue, JsValue> {
    let samples: Vec<ScoredSample> = serde_wasm_bindgen::from_value(samples)
        .map_err(|e| coded_error(INVALID_OPTIONS, &format!("thresholdSweep needs ScoredSample objects: {e}")))?;
    to_js(&tradeoff::threshold_sweep(&samples, steps))
}

/// The model input for a read sample, and the local step on it.
fn local_step(session: &RefCell<HiSession>, input: image::Input) -> Result<(LocalStep, Vec<u8>), JsValue> {
    let mut session = session.borrow_mut();
    let pixels = image::to_pixels(input, &session.manifest().input)?;
    let local =
        session.check_input(pixels.len()).and_then(|_| session.run_local(&pixels, &now_ms)).map_err(core_error)?;
    Ok((local, pixels))
}

/// The offload (when the decision asks for it) and the result. No `RefCell` borrow lives across
/// the await: other classify calls run meanwhile.
async fn offload_and_finish(
    session: Rc<RefCell<HiSession>>,
    offload: OffloadClient,
    local: LocalStep,
    pixels: Vec<u8>,
) -> Result<JsValue, JsValue> {
    let classes = session.borrow().manifest().classes.len();
    let remote =
        if local.decision.is_offload() { offload.classify(&pixels, classes).await } else { RemoteOutcome::NotAsked };
    let result = session.borrow_mut().finish(local, remote, now_ms()).map_err(core_error)?;
    to_js(&result)
}

/// The configuration for a policy option: none (the manifest's calibrated logistic_top2), a kind
/// name (its calibrated parameters), or a full configuration. Its parameters are checked where it
/// is built (`HiSession::with_early_exit`, `set_policy`).
fn policy_config(manifest: &Manifest, choice: Option<PolicyChoice>) -> hiedge_core::Result<PolicyConfig> {
    match choice {
        None => PolicyConfig::calibrated(manifest),
        Some(PolicyChoice::Kind(kind)) => PolicyConfig::calibrated_for(manifest, kind),
        Some(PolicyChoice::Config(config)) => Ok(config),
    }
}
