//! `HiClient`: the device model and decision module in WebAssembly, offload by `fetch` (the
//! `device` build of the package; the loader build leaves it out).

use std::cell::RefCell;
use std::rc::Rc;

use hiedge_core::monitor::MonitorConfig;
use hiedge_core::policy::tradeoff::{self, CalibrationTarget, ScoredSample};
use hiedge_core::runtime::EarlyExitModel;
use hiedge_core::session::candidate::{Rollout, RolloutUnit};
use hiedge_core::session::{BreakerWait, HiSession, LocalStep, Mode, RemoteOutcome, Why};
use hiedge_core::{Manifest, Model, PolicyConfig};
use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::cache::FileCache;
use crate::image;
use crate::js::{self, coded_error, core_error, result_to_js, sleep, to_js, Clock, Progress, INVALID_OPTIONS};
use crate::load::{self, absent, file_or_fetch, Sources};
use crate::offload::{self, OffloadClient};
use crate::options::{
    self, CalibrateOptions, Calibration, EarlyExitSources, HiClientOptions, ImageShape, LoadStage, OffloadRequest,
    PolicyChoice, RolloutOptions,
};

/// The HI client: the tiny model and decision module in WebAssembly, offload by `fetch`.
#[wasm_bindgen]
pub struct HiClient {
    inner: Rc<RefCell<HiSession>>,
    offload: Rc<RefCell<OffloadClient>>,
    allow_offload: Rc<RefCell<Option<js_sys::Function>>>,
    clock: Clock,
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
        let options = HiClientOptions::from_js(options)?;
        let clock = Clock::from_option(&options.clock)?;
        let progress = Progress::new(&options.on_progress);
        let load_timeout_ms = options::millis(options.load_timeout_ms, "loadTimeoutMs", js::LOAD_TIMEOUT_MS)?;
        let cache = FileCache::for_options(options.cache, load_timeout_ms).await;
        let sources = Sources::from_options(&options)?;
        let token = sources.token.as_deref();

        progress.stage(LoadStage::Manifest, "loading the manifest");
        let manifest = sources.manifest(&cache, &progress).await?;
        let name = options.model_name.clone().unwrap_or_else(|| "tiny".into());

        progress.stage(LoadStage::Model, &format!("loading model `{name}`"));
        let sha256 = manifest.model(&name).map_err(core_error)?.sha256.clone();
        let bytes = if absent(&options.model) {
            let url = sources.worker_file("model", &sha256)?;
            cache.file(&url, &sha256, "model", token, &progress).await?
        } else {
            file_or_fetch(&options.model, "model", &sha256, &cache, &progress).await?
        };

        progress.stage(LoadStage::Compile, &format!("optimising model `{name}` ({} bytes)", bytes.len()));
        let model = Model::load(&manifest, &name, &bytes).map_err(core_error)?;
        let early_exit = if absent(&options.early_exit) || options.early_exit.as_bool() == Some(false) {
            None
        } else {
            progress.stage(LoadStage::Model, "loading the early-exit model");
            let entry = manifest.early_exit.as_ref().ok_or_else(|| {
                coded_error(INVALID_OPTIONS, "`earlyExit` needs a manifest with an `early_exit` model")
            })?;
            let (sha1, sha2) = (&entry.stage1.sha256, &entry.stage2.sha256);
            let (s1, s2) = if options.early_exit.as_bool() == Some(true) {
                let (url1, url2) = (sources.worker_file("earlyExit", sha1)?, sources.worker_file("earlyExit", sha2)?);
                let s1 = cache.file(&url1, sha1, "earlyExit.stage1", token, &progress).await?;
                (s1, cache.file(&url2, sha2, "earlyExit.stage2", token, &progress).await?)
            } else {
                let given: EarlyExitSources = serde_wasm_bindgen::from_value(options.early_exit.clone())
                    .map_err(|e| coded_error(INVALID_OPTIONS, &format!("invalid `earlyExit`: {e}")))?;
                let s1 = file_or_fetch(&given.stage1, "earlyExit.stage1", sha1, &cache, &progress).await?;
                (s1, file_or_fetch(&given.stage2, "earlyExit.stage2", sha2, &cache, &progress).await?)
            };
            Some(EarlyExitModel::load(&manifest, &s1, &s2).map_err(core_error)?)
        };
        let policy = policy_config(&manifest, options.policy).map_err(core_error)?;
        let mut session = HiSession::with_early_exit(manifest, model, early_exit, policy).map_err(core_error)?;
        session.set_mode(options.mode.unwrap_or_default());
        session.set_offload_cap(options.max_offloads_per_minute);
        session.set_breaker(options.breaker).map_err(core_error)?;
        let shadow = options.shadow.map(|choice| policy_config(session.manifest(), Some(choice))).transpose();
        session.set_shadow(shadow.map_err(core_error)?).map_err(core_error)?;
        let rollout = options.rollout.map(|r| rollout(session.manifest(), r)).transpose()?;
        session.set_rollout(rollout).map_err(core_error)?;
        let monitor = match options.monitor.as_bool() {
            _ if absent(&options.monitor) => None,
            Some(on) => on.then(MonitorConfig::default),
            None => Some(
                serde_wasm_bindgen::from_value(options.monitor.clone())
                    .map_err(|e| coded_error(INVALID_OPTIONS, &format!("invalid `monitor`: {e}")))?,
            ),
        };
        session.set_monitor(monitor).map_err(core_error)?;
        let allow_offload = offload::allow_offload_hook(&options.allow_offload)?;
        let mut offload = OffloadClient::from_options(
            sources.endpoint.clone(),
            sources.set.as_deref(),
            sources.token.clone(),
            options.timeout_ms,
            options.network_delay_ms,
        )?;
        {
            let manifest = session.manifest();
            let codec = offload::codec_option(options.offload_codec.as_deref())?;
            offload.set_codec(codec, manifest.offload_codec, &manifest.input);
        }

        progress.stage(LoadStage::Ready, "ready");
        Ok(HiClient {
            inner: Rc::new(RefCell::new(session)),
            offload: Rc::new(RefCell::new(offload)),
            allow_offload: Rc::new(RefCell::new(allow_offload)),
            clock,
        })
    }

    /// Whether `HiClient.create(options)` would load without the network: a fetched manifest and
    /// every model file it needs are in the cache (files keyed by their manifest sha256).
    #[wasm_bindgen(js_name = isCached, unchecked_return_type = "Promise<boolean>")]
    pub fn is_cached(#[wasm_bindgen(unchecked_param_type = "HiClientOptions")] options: JsValue) -> Promise {
        future_to_promise(async move {
            let options = HiClientOptions::from_js(options)?;
            load::is_cached(&options, &FileCache::open().await).await.map(JsValue::from)
        })
    }

    /// Deletes everything the client cached (model files, manifests, the package's wasm);
    /// resolves to whether there was a cache to delete.
    #[wasm_bindgen(js_name = clearCache, unchecked_return_type = "Promise<boolean>")]
    pub fn clear_cache() -> Promise {
        future_to_promise(async move { FileCache::delete_all().await.map(JsValue::from) })
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
        let hook = self.allow_offload.borrow().clone();
        let clock = self.clock.clone();
        if input.is_instance_of::<web_sys::Blob>() {
            return future_to_promise(async move {
                let input = image::read(input).await?;
                let (local, pixels) = local_step(&session, input, &clock)?;
                offload_and_finish(session, offload, hook, local, pixels, clock).await
            });
        }
        // Read and run the local step now, so samples are taken in call order.
        match image::read_now(&input).and_then(|input| local_step(&session, input, &clock)) {
            Ok((local, pixels)) => future_to_promise(offload_and_finish(session, offload, hook, local, pixels, clock)),
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
        let (local, _) = local_step(&self.inner, image::read_now(&input)?, &self.clock)?;
        let now = self.clock.now();
        let result = self.inner.borrow_mut().finish(local, RemoteOutcome::LocalOnly, now).map_err(core_error)?;
        result_to_js(&result)
    }

    /// Times every operation of the local model's optimised tract plan over `runs` runs on `pixels`
    /// (mean ms per run, slowest first): where the local inference time goes.
    #[wasm_bindgen(unchecked_return_type = "OpTime[]")]
    pub fn profile(&self, pixels: &Uint8Array, runs: usize) -> Result<JsValue, JsValue> {
        let session = self.inner.borrow();
        let ops = session.model().profile(&pixels.to_vec(), runs, &js::now_ms).map_err(core_error)?;
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

    /// Where samples are answered from the next one on: "cascade" (the decision module decides),
    /// "prefer_local", "only_local", "prefer_remote" or "only_remote".
    #[wasm_bindgen(js_name = setMode)]
    pub fn set_mode(&self, #[wasm_bindgen(unchecked_param_type = "Mode")] mode: JsValue) -> Result<(), JsValue> {
        let mode: Mode = serde_wasm_bindgen::from_value(mode.clone()).map_err(|_| {
            coded_error(
                INVALID_OPTIONS,
                &format!(
                    "unknown mode {}: use cascade, prefer_local, only_local, prefer_remote or only_remote",
                    js::describe(&mode)
                ),
            )
        })?;
        self.inner.borrow_mut().set_mode(mode);
        Ok(())
    }

    /// The mode in use.
    #[wasm_bindgen(getter, unchecked_return_type = "Mode")]
    pub fn mode(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.borrow().mode())
    }

    /// Sets (or, with `null`, removes) the hook asked before each request to the Worker.
    #[wasm_bindgen(js_name = setAllowOffload)]
    pub fn set_allow_offload(
        &self,
        #[wasm_bindgen(unchecked_param_type = "((request: OffloadRequest) => boolean | Promise<boolean>) | null")]
        hook_fn: JsValue,
    ) -> Result<(), JsValue> {
        *self.allow_offload.borrow_mut() = offload::allow_offload_hook(&hook_fn)?;
        Ok(())
    }

    /// Caps requests to the Worker at `perMinute` in any 60 s (`null`: no cap).
    #[wasm_bindgen(js_name = setMaxOffloadsPerMinute)]
    pub fn set_max_offloads_per_minute(&self, per_minute: Option<u32>) {
        self.inner.borrow_mut().set_offload_cap(per_minute);
    }

    /// Fits the policy's threshold on the user's own labelled samples, in the browser, with the
    /// same search as `hiedge calibrate`: every sample runs on the device and is sent to the Worker
    /// (for its answer), then the threshold that meets `{ targetAccuracy }` with the least
    /// offloading, or `{ targetOffload }` with the most, becomes the policy's. Needs a threshold
    /// policy (max_prob, margin, entropy, logistic_top2) and the Worker; rejects (code
    /// `RemoteUnavailable`) when a sample gets no answer, `InvalidPolicy` when no threshold meets
    /// the target. `stats().calibratedOffloadFraction` then holds the fitted share.
    #[wasm_bindgen(unchecked_return_type = "Promise<Calibration>")]
    pub fn calibrate(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "Array<Uint8Array | ImageData | HTMLCanvasElement | OffscreenCanvas | HTMLImageElement | ImageBitmap | VideoFrame | Blob>"
        )]
        samples: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ArrayLike<number>")] labels: JsValue,
        #[wasm_bindgen(unchecked_param_type = "CalibrateOptions")] target: JsValue,
    ) -> Promise {
        let session = self.inner.clone();
        let offload = self.offload.borrow().clone();
        let clock = self.clock.clone();
        future_to_promise(async move {
            let target = calibration_target(target)?;
            let samples: js_sys::Array =
                samples.dyn_into().map_err(|_| coded_error(INVALID_OPTIONS, "calibrate needs an array of samples"))?;
            let labels: Vec<f64> =
                js_sys::Array::from(&labels).iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect();
            let classes = session.borrow().manifest().classes.len();
            if labels.len() != samples.length() as usize || labels.is_empty() {
                return Err(coded_error(
                    INVALID_OPTIONS,
                    &format!(
                        "calibrate needs one label per sample: {} samples, {} labels",
                        samples.length(),
                        labels.len()
                    ),
                ));
            }
            // Refuse before any request is made.
            let rule = session.borrow().calibration_rule().map_err(core_error)?;
            let mut scored = Vec::with_capacity(labels.len());
            for (i, (sample, label)) in samples.iter().zip(labels).enumerate() {
                if !(label >= 0.0 && label.fract() == 0.0 && (label as usize) < classes) {
                    return Err(coded_error(
                        INVALID_OPTIONS,
                        &format!("label {i} is {label}: labels are class indices 0..{classes}"),
                    ));
                }
                let (local, pixels) = local_step(&session, image::read(sample).await?, &clock)?;
                let label = label as usize;
                let score = rule.score_unchecked(&local.prediction.probs);
                // Sent as offloads will be (the offload codec), so the fit sees the answers it will get.
                let body = offload.encode(pixels).await;
                let remote = match offload.classify(&body, classes).await {
                    RemoteOutcome::Answered { response, .. } => response.label as usize,
                    RemoteOutcome::Failed { reason, .. } => {
                        return Err(core_error(hiedge_core::Error::RemoteUnavailable(format!(
                            "calibrate needs the Worker's answer for every sample; sample {i}: {reason}"
                        ))))
                    }
                    RemoteOutcome::NotAsked | RemoteOutcome::LocalOnly => {
                        return Err(coded_error("Internal", "the offload client made no request"))
                    }
                };
                scored.push(ScoredSample {
                    score,
                    local_right: local.prediction.label == label,
                    remote_right: remote == label,
                });
            }
            let n = scored.len() as f64;
            let point = session.borrow_mut().calibrate(&scored, target).map_err(core_error)?;
            to_js(&Calibration {
                policy: session.borrow().policy().clone(),
                threshold: point.threshold,
                offloaded: point.offloaded,
                accuracy: point.accuracy,
                samples: scored.len(),
                local_accuracy: scored.iter().filter(|s| s.local_right).count() as f64 / n,
                remote_accuracy: scored.iter().filter(|s| s.remote_right).count() as f64 / n,
            })
        })
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

    /// The monitor's state (offload rate and its alarm, confidence drift, per-class counts, the
    /// label-free accuracy estimate, alarms so far), or `null` when the client has no monitor
    /// (the `monitor` option) or the policy in use has no calibrated rate.
    #[wasm_bindgen(unchecked_return_type = "MonitorState | null")]
    pub fn monitor(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.borrow().monitor_state())
    }

    /// The circuit breaker's state, or `null` without one (the `breaker` option).
    #[wasm_bindgen(unchecked_return_type = "BreakerState | null")]
    pub fn breaker(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.borrow().breaker_state())
    }

    /// What the shadow policy would have done so far, or `null` without one.
    #[wasm_bindgen(js_name = shadowReport, unchecked_return_type = "ShadowReport | null")]
    pub fn shadow_report(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.borrow().shadow_report())
    }

    /// Starts shadowing a candidate policy from the next sample on, its report from zero (`null`:
    /// stop).
    #[wasm_bindgen(js_name = setShadow)]
    pub fn set_shadow(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PolicyChoice | null")] policy: JsValue,
    ) -> Result<(), JsValue> {
        let choice: Option<PolicyChoice> = serde_wasm_bindgen::from_value(policy)
            .map_err(|e| coded_error("InvalidPolicy", &format!("invalid shadow policy: {e}")))?;
        let mut session = self.inner.borrow_mut();
        let config = choice.map(|c| policy_config(session.manifest(), Some(c))).transpose().map_err(core_error)?;
        session.set_shadow(config).map_err(core_error)
    }

    /// The rollout's counts per arm, or `null` without one.
    #[wasm_bindgen(js_name = rolloutReport, unchecked_return_type = "RolloutReport | null")]
    pub fn rollout_report(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.borrow().rollout_report())
    }

    /// Starts a rollout from the next sample on, its counts from zero (`null`: stop).
    #[wasm_bindgen(js_name = setRollout)]
    pub fn set_rollout(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RolloutOptions | null")] rollout_options: JsValue,
    ) -> Result<(), JsValue> {
        let options: Option<RolloutOptions> = serde_wasm_bindgen::from_value(rollout_options)
            .map_err(|e| coded_error(INVALID_OPTIONS, &format!("invalid rollout: {e}")))?;
        let mut session = self.inner.borrow_mut();
        let built = options.map(|o| rollout(session.manifest(), o)).transpose()?;
        session.set_rollout(built).map_err(core_error)
    }

    /// Clears the running statistics, and starts the monitor, the shadow report and the
    /// rollout's counts afresh (the circuit breaker keeps its state).
    #[wasm_bindgen(js_name = resetStats)]
    pub fn reset_stats(&self) -> Result<(), JsValue> {
        self.inner.borrow_mut().reset_stats().map_err(core_error)
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
fn local_step(
    session: &RefCell<HiSession>,
    input: image::Input,
    clock: &Clock,
) -> Result<(LocalStep, Vec<u8>), JsValue> {
    let mut session = session.borrow_mut();
    let pixels = image::to_pixels(input, &session.manifest().input)?;
    let now = || clock.now();
    let local = session.check_input(pixels.len()).and_then(|_| session.run_local(&pixels, &now)).map_err(core_error)?;
    Ok((local, pixels))
}

/// The offload (when the route sends the sample, the `allowOffload` hook agrees and the offload
/// cap admits it) and the result. No `RefCell` borrow lives across an await: other classify calls
/// run meanwhile.
async fn offload_and_finish(
    session: Rc<RefCell<HiSession>>,
    offload: OffloadClient,
    hook: Option<js_sys::Function>,
    mut local: LocalStep,
    pixels: Vec<u8>,
    clock: Clock,
) -> Result<JsValue, JsValue> {
    // The body as it will be sent (encoded by the offload codec), so the hook and the result see
    // its real size.
    let body = if local.route.send { Some(offload.encode(pixels).await) } else { None };
    if let Some(body) = &body {
        local.payload_bytes = body.bytes.len();
        if let Some(hook) = hook {
            if !ask_hook(&hook, &local).await {
                local.withhold(Why::Refused);
            }
        }
    }
    // An open breaker in fail_mode "wait" holds the sample until it probes (the first poll at
    // least 25 ms away, the longest 1 s, so a `clock` a test steps is read again soon).
    let ticket = session.borrow().breaker_ticket();
    loop {
        let wait = session.borrow_mut().breaker_wait(&mut local, ticket, clock.now());
        let BreakerWait::Until(t) = wait else { break };
        sleep((t - clock.now()).clamp(25.0, 1_000.0)).await;
    }
    let classes = session.borrow().manifest().classes.len();
    let send = session.borrow_mut().admit_request(&mut local, clock.now());
    let remote = match (send, &body) {
        (true, Some(body)) => offload.classify(body, classes).await,
        _ => RemoteOutcome::NotAsked,
    };
    let result = session.borrow_mut().finish(local, remote, clock.now()).map_err(core_error)?;
    result_to_js(&result)
}

/// Asks the `allowOffload` hook about a sample the device model answered.
async fn ask_hook(hook: &js_sys::Function, local: &LocalStep) -> bool {
    offload::ask_hook(
        hook,
        &OffloadRequest {
            local_label: local.prediction.label as i64,
            confidence: local.prediction.probs.get(local.prediction.label).copied().unwrap_or(0.0),
            score: local.decision.score,
            why: local.route.why,
            bytes: local.payload_bytes,
        },
    )
    .await
}

/// `{ targetAccuracy }` or `{ targetOffload }`, exactly one, in 0..=1.
fn calibration_target(value: JsValue) -> Result<CalibrationTarget, JsValue> {
    let options: CalibrateOptions = serde_wasm_bindgen::from_value(value)
        .map_err(|e| coded_error(INVALID_OPTIONS, &format!("calibrate options: {e}")))?;
    let target = match (options.target_accuracy, options.target_offload) {
        (Some(a), None) => CalibrationTarget::Accuracy(a),
        (None, Some(o)) => CalibrationTarget::Offload(o),
        _ => {
            return Err(coded_error(INVALID_OPTIONS, "calibrate needs exactly one of targetAccuracy and targetOffload"))
        }
    };
    match target {
        CalibrationTarget::Accuracy(v) | CalibrationTarget::Offload(v) if (0.0..=1.0).contains(&v) => Ok(target),
        _ => Err(coded_error(INVALID_OPTIONS, "calibrate targets are fractions in 0..=1")),
    }
}

/// The configuration for a policy option: none (the manifest's calibrated logistic_top2), a kind
/// name (its calibrated parameters), or a full configuration. Its parameters are checked where it
/// is built (`HiSession::with_early_exit`, `set_policy`).
/// The rollout `HiClient`'s `rollout` option asks for.
fn rollout(manifest: &Manifest, options: RolloutOptions) -> Result<Rollout, JsValue> {
    let policy = policy_config(manifest, Some(options.policy)).map_err(core_error)?;
    let unit = options.unit.unwrap_or(RolloutUnit::User);
    Rollout::new(policy, options.fraction, unit, options.user_id.as_deref()).map_err(core_error)
}

fn policy_config(manifest: &Manifest, choice: Option<PolicyChoice>) -> hiedge_core::Result<PolicyConfig> {
    match choice {
        None => PolicyConfig::calibrated(manifest),
        Some(PolicyChoice::Kind(kind)) => PolicyConfig::calibrated_for(manifest, kind),
        Some(PolicyChoice::Config(config)) => Ok(config),
    }
}
