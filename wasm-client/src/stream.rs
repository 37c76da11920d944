//! `HiStream`: split inference (MDI-Exit) on a stream of samples, the device half. Each pushed
//! sample is queued; one pump takes them in arrival order, runs hiedge-core's
//! [`StreamSession::take`] (admission, split trunk, planner) and, when the plan sends something,
//! starts the request without waiting for it, so the trunk of the next sample runs while the Worker
//! runs the tail of this one. Every pushed sample's promise resolves with exactly one
//! `StreamResult` (skipped and fallback included); only unreadable input rejects.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use hiedge_core::policy::planner::PlannerConfig;
use hiedge_core::protocol::{self, OCTET_STREAM};
use hiedge_core::runtime::split;
use hiedge_core::stream::{Pending, Step, StreamDecision, StreamSession};
use hiedge_core::{Manifest, Model};
use js_sys::Promise;
use serde::Deserialize;
use tsify::Tsify;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;

use crate::image;
use crate::js::{self, coded_error, core_error, sleep, to_js, Clock, INVALID_OPTIONS};
use crate::offload::OffloadClient;

/// The options of `HiStream.create`.
#[derive(Tsify, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HiStreamOptions {
    /// Base URL of the hiedge Worker.
    pub endpoint: String,
    /// The model set (it must have a split model): the manifest, the split trunk and the device
    /// model are fetched from the Worker by sha256, features go to its tail.
    pub model_set: String,
    /// The model that finishes samples on the device when the network is out (default "tiny";
    /// `null`: the trunk's exit head answers them).
    #[tsify(optional, type = "string | null")]
    #[serde(default = "default_device_model")]
    pub device_model: Option<String>,
    /// Planner settings (default: the manifest's calibrated exit threshold and the defaults of
    /// `PlannerConfig`).
    #[tsify(optional)]
    pub planner: Option<PlannerConfig>,
    /// Request timeout in ms (default 3000); a timed-out sample falls back to the device.
    #[tsify(optional)]
    pub timeout_ms: Option<f64>,
    /// Bearer token when the Worker has an API_TOKEN.
    #[tsify(optional)]
    pub token: Option<String>,
    /// The clock the stream reads, in ms (default `performance.now`): arrivals, waits (so
    /// admission), device work and round trips are all measured on it. Give your own to run a
    /// stream on media timestamps or a simulation's time, or to step it in a test. It must return
    /// a finite number and never go back; `push` rejects while it does not. (`timeoutMs` stays in
    /// real time.)
    #[tsify(optional, type = "(() => number) | null")]
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub clock: JsValue,
}

fn default_device_model() -> Option<String> {
    Some("tiny".into())
}

/// A sample waiting for the device.
struct Queued {
    index: u64,
    pixels: Vec<u8>,
    arrived_ms: f64,
    resolve: js_sys::Function,
    reject: js_sys::Function,
}

/// Split inference on a stream: the split trunk in WebAssembly, a planner per sample, the tail in
/// the Worker.
#[wasm_bindgen]
pub struct HiStream {
    shared: Shared,
}

#[wasm_bindgen]
impl HiStream {
    /// Fetches the set's manifest, split trunk and device model from the Worker (by sha256) and
    /// builds the stream.
    pub async fn create(
        #[wasm_bindgen(unchecked_param_type = "HiStreamOptions")] options: JsValue,
    ) -> Result<HiStream, JsValue> {
        let options: HiStreamOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| coded_error(INVALID_OPTIONS, &format!("invalid HiStream options: {e}")))?;
        let clock = Clock::from_option(&options.clock)?;
        let set = options.model_set.as_str();
        if !protocol::is_set_name(set) {
            return Err(coded_error(INVALID_OPTIONS, &format!("`modelSet` `{set}` is not a model-set name")));
        }
        let base = options.endpoint.trim_end_matches('/').to_string();
        let token = options.token.as_deref().filter(|t| !t.is_empty());
        let manifest_json =
            js::fetch_text(&format!("{base}{}", protocol::set_path(set)), "manifest", token, js::LOAD_TIMEOUT_MS)
                .await?;
        let manifest = Manifest::from_json(&manifest_json).map_err(core_error)?;
        let entry = manifest
            .split
            .as_ref()
            .ok_or_else(|| coded_error(INVALID_OPTIONS, &format!("model set `{set}` has no split model")))?;
        let file = |sha: &str| format!("{base}{}", protocol::set_file_path(set, sha));
        let cache = crate::cache::FileCache::open().await;
        let progress = js::Progress::new(&JsValue::UNDEFINED);
        let trunk_sha = &entry.trunk.sha256;
        let trunk_bytes = cache.file(&file(trunk_sha), trunk_sha, "split trunk", token, &progress).await?;
        let trunk = split::load_trunk(&manifest, &trunk_bytes).map_err(core_error)?;
        let device = match &options.device_model {
            None => None,
            Some(name) => {
                let sha = manifest.model(name).map_err(core_error)?.sha256.clone();
                let bytes = cache.file(&file(&sha), &sha, "device model", token, &progress).await?;
                Some(Model::load(&manifest, name, &bytes).map_err(core_error)?)
            }
        };
        let session = StreamSession::new(manifest, set, trunk, device, options.planner).map_err(core_error)?;
        let offload =
            OffloadClient::from_options(Some(options.endpoint), Some(set), options.token, options.timeout_ms, None)?;
        Ok(HiStream {
            shared: Shared {
                session: Rc::new(RefCell::new(session)),
                queue: Rc::new(RefCell::new(VecDeque::new())),
                pumping: Rc::new(Cell::new(false)),
                offload: Rc::new(offload),
                clock,
            },
        })
    }

    /// Queues one sample (model-sized bytes or an image source read now: `ImageData`, a canvas, an
    /// `<img>`, a `<video>` frame, an `ImageBitmap`, a `VideoFrame`). Resolves with its
    /// `StreamResult` once answered or skipped; rejects only on unreadable input.
    #[wasm_bindgen(unchecked_return_type = "Promise<StreamResult>")]
    pub fn push(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "Uint8Array | ImageData | HTMLCanvasElement | OffscreenCanvas | HTMLImageElement | HTMLVideoElement | ImageBitmap | VideoFrame"
        )]
        input: JsValue,
    ) -> Promise {
        let arrived_ms = match self.shared.clock.try_now() {
            Ok(ms) => ms,
            Err(e) => return Promise::reject(&e),
        };
        let pixels = match image::read_now(&input).and_then(|input| self.pixels(input)) {
            Ok(p) => p,
            Err(e) => return Promise::reject(&e),
        };
        let index = self.shared.session.borrow_mut().arrive(arrived_ms);
        let queue = self.shared.queue.clone();
        let promise = Promise::new(&mut |resolve, reject| {
            queue.borrow_mut().push_back(Queued { index, pixels: pixels.clone(), arrived_ms, resolve, reject });
        });
        if !self.shared.pumping.get() {
            self.shared.pumping.set(true);
            spawn_local(self.shared.clone().pump());
        }
        promise
    }

    /// Running counts (arrived, processed, skipped, per decision), rates and the planner's costs.
    #[wasm_bindgen(unchecked_return_type = "StreamStats & { processedPerS: number }")]
    pub fn stats(&self) -> Result<JsValue, JsValue> {
        let stats = self.shared.session.borrow().stats();
        let value = to_js(&stats)?;
        js_sys::Reflect::set(&value, &"processedPerS".into(), &stats.processed_per_s().into())?;
        Ok(value)
    }

    /// Samples waiting for the device.
    #[wasm_bindgen(getter)]
    pub fn waiting(&self) -> usize {
        self.shared.queue.borrow().len()
    }

    /// The planner's settings in use.
    #[wasm_bindgen(unchecked_return_type = "PlannerConfig")]
    pub fn planner(&self) -> Result<JsValue, JsValue> {
        to_js(self.shared.session.borrow().config())
    }

    /// Class names, by label.
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Vec<String> {
        self.shared.session.borrow().manifest().classes.clone()
    }

    /// Bytes one sample must have.
    #[wasm_bindgen(getter, js_name = inputLength)]
    pub fn input_length(&self) -> usize {
        self.shared.session.borrow().input_len()
    }
}

impl HiStream {
    fn pixels(&self, input: image::Input) -> Result<Vec<u8>, JsValue> {
        let session = self.shared.session.borrow();
        let pixels = image::to_pixels(input, &session.manifest().input)?;
        if pixels.len() != session.input_len() {
            return Err(core_error(hiedge_core::Error::InputLength {
                expected: session.input_len(),
                actual: pixels.len(),
            }));
        }
        Ok(pixels)
    }
}

/// What a stream and its pump share: the session, the arrived samples, whether the pump runs, the
/// Worker client and the clock.
#[derive(Clone)]
struct Shared {
    session: Rc<RefCell<StreamSession>>,
    queue: Rc<RefCell<VecDeque<Queued>>>,
    pumping: Rc<Cell<bool>>,
    offload: Rc<OffloadClient>,
    clock: Clock,
}

impl Shared {
    /// Takes queued samples one at a time until the queue is empty, yielding to the event loop
    /// between them so that arrivals (and answers) are handled while it runs.
    async fn pump(self) {
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(q) = next else { break };
            let clock = self.clock.clone();
            let step = self.session.borrow_mut().take(q.index, q.pixels, q.arrived_ms, &move || clock.now());
            // A skipped sample cost the device nothing: take the next one at once, so that a backlog
            // of stale samples is cleared without a yield (at least a timer tick) per sample.
            let skipped = matches!(&step, Ok(Step::Done(r)) if r.decision == StreamDecision::Skipped);
            match step {
                Ok(Step::Done(result)) => settle(&q.resolve, &q.reject, to_js(&result)),
                Ok(Step::Send(pending)) => spawn_local(self.send(pending, q.resolve, q.reject)),
                Err(e) => {
                    let _ = q.reject.call1(&JsValue::NULL, &core_error(e));
                }
            }
            if !skipped {
                sleep(0.0).await;
            }
        }
        self.pumping.set(false);
    }

    /// Sends one sample's request and settles its promise with the outcome, timed on the stream's clock.
    fn send(
        &self,
        pending: Pending,
        resolve: js_sys::Function,
        reject: js_sys::Function,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let (session, offload, clock) = (self.session.clone(), self.offload.clone(), self.clock.clone());
        async move {
            let classes = session.borrow().manifest().classes.len();
            let outcome = offload.send_to(&pending.path, &pending.body, OCTET_STREAM, classes, &|| clock.now()).await;
            let result = session.borrow_mut().finish(pending, outcome, clock.now()).map_err(core_error);
            settle(&resolve, &reject, result.and_then(|r| to_js(&r)));
        }
    }
}

fn settle(resolve: &js_sys::Function, reject: &js_sys::Function, value: Result<JsValue, JsValue>) {
    let _ = match value {
        Ok(v) => resolve.call1(&JsValue::NULL, &v),
        Err(e) => reject.call1(&JsValue::NULL, &e),
    };
}
