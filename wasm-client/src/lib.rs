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
//! ```

mod js;
mod offload;

use std::cell::RefCell;
use std::rc::Rc;

use hiedge_core::early_exit::EarlyExitModel;
use hiedge_core::session::{HiSession, RemoteOutcome};
use hiedge_core::{Manifest, Model, PolicyConfig};
use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::js::{js_error, now_ms, to_js};
use crate::offload::OffloadClient;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A decision policy: a kind name (its calibrated parameters are taken from the manifest) or a full configuration. */
export type PolicyConfig =
  | "max_prob" | "margin" | "entropy" | "logistic_top2" | "online_hedge" | "always_local" | "always_offload"
  | { kind: "max_prob" | "margin" | "entropy"; threshold: number }
  | { kind: "logistic_top2"; bias: number; w1: number; w2: number; threshold?: number }
  | { kind: "online_hedge"; beta: number; bins?: number; eta?: number; explore?: number; seed?: number }
  | { kind: "always_local" } | { kind: "always_offload" }
  | "ee_hi" | { kind: "ee_hi"; exit: number; offload: number; hi: number };

/** Loading progress reported by `HiClient.create`. */
export interface LoadProgress { stage: "manifest" | "model" | "compile" | "ready"; message: string }

export interface HiClientOptions {
  /** The tiny ONNX model: its bytes, or a URL to fetch. */
  model: Uint8Array | ArrayBuffer | string;
  /** The model-set manifest: an object, its JSON text, or a URL to fetch. */
  manifest: object | string;
  /** Which model of the manifest runs locally (default "tiny"). */
  modelName?: string;
  /** The manifest's early-exit model (its two stages), needed for the "ee_hi" policy. */
  earlyExit?: { stage1: Uint8Array | ArrayBuffer | string; stage2: Uint8Array | ArrayBuffer | string };
  /** Base URL of the hiedge Worker, e.g. "https://hiedge.example.workers.dev". Without it every offload falls back. */
  endpoint?: string | null;
  /** Decision policy (default: the manifest's calibrated logistic_top2). */
  policy?: PolicyConfig;
  /** Offload timeout in ms (default 3000). On timeout the local answer is used, flagged "fallback". */
  timeoutMs?: number;
  /** Bearer token when the Worker has an API_TOKEN. */
  token?: string;
  /** Extra delay added before each offload request, to emulate a slow link (default 0). */
  networkDelayMs?: number;
  /** Called as loading proceeds. */
  onProgress?: (progress: LoadProgress) => void;
}

export interface Timings {
  preprocessMs: number; localMs: number; decisionMs: number;
  /** Offload round trip including any emulated delay (0 when kept locally). */
  roundTripMs: number;
  /** The Worker's own inference time, or null where its runtime cannot measure it (workerd freezes its clock during CPU work). */
  remoteMs: number | null;
  totalMs: number;
}

export interface ClassifyResult {
  label: number; className: string; probs: number[]; confidence: number;
  decision: "local" | "offloaded" | "fallback";
  score: number; threshold: number | null; offloadWanted: boolean; explored: boolean;
  localLabel: number; localProbs: number[];
  remoteLabel: number | null; remoteModel: string | null;
  /** Why the offload failed, for "fallback". */
  fallbackReason: string | null;
  timings: Timings; bytesSent: number;
  /** "full" for HI; for EE-HI "exit" (the exit head answered), "early_offload" (offloaded after stage 1) or "stage2". */
  localStage: "full" | "exit" | "early_offload" | "stage2";
}

export interface ClientStats {
  samples: number; local: number; offloaded: number; fallback: number;
  offloadFraction: number; meanTotalMs: number; meanLocalMs: number; meanRoundTripMs: number; bytesSent: number;
}
"#;

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
            return Err(js_error("HiClient.create needs an options object: { model, manifest, endpoint }"));
        }
        let get = |k: &str| Reflect::get(&options, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        let progress = get("onProgress").dyn_into::<js_sys::Function>().ok();
        let report = |stage: &str, message: &str| {
            if let Some(f) = &progress {
                let o = Object::new();
                let _ = Reflect::set(&o, &"stage".into(), &stage.into());
                let _ = Reflect::set(&o, &"message".into(), &message.into());
                let _ = f.call1(&JsValue::NULL, &o);
            }
        };

        report("manifest", "loading the manifest");
        let manifest_json = js::text_or_fetch(&get("manifest"), "manifest").await?;
        let manifest = Manifest::from_json(&manifest_json).map_err(|e| js_error(&e.to_string()))?;
        let name = get("modelName").as_string().unwrap_or_else(|| "tiny".into());

        report("model", &format!("loading model `{name}`"));
        let bytes = js::bytes_or_fetch(&get("model"), "model").await?;

        report("compile", &format!("optimising model `{name}` ({} bytes)", bytes.len()));
        let model = Model::load(&manifest, &name, &bytes).map_err(|e| js_error(&e.to_string()))?;
        let early_exit = match get("earlyExit") {
            v if v.is_undefined() || v.is_null() => None,
            v => {
                report("model", "loading the early-exit model");
                let stage = |k: &str| Reflect::get(&v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
                let s1 = js::bytes_or_fetch(&stage("stage1"), "earlyExit.stage1").await?;
                let s2 = js::bytes_or_fetch(&stage("stage2"), "earlyExit.stage2").await?;
                Some(EarlyExitModel::load(&manifest, &s1, &s2).map_err(|e| js_error(&e.to_string()))?)
            }
        };
        let policy = policy_from_js(&manifest, &get("policy"))?;
        let session =
            HiSession::with_early_exit(manifest, model, early_exit, policy).map_err(|e| js_error(&e.to_string()))?;
        let offload =
            OffloadClient::from_options(&get("endpoint"), &get("token"), &get("timeoutMs"), &get("networkDelayMs"))?;

        report("ready", "ready");
        Ok(HiClient { inner: Rc::new(RefCell::new(session)), offload: Rc::new(RefCell::new(offload)) })
    }

    /// Classifies one sample: tiny model, decision, and offload when the decision module asks for it.
    /// Never rejects for network reasons (the local answer comes back as `"fallback"` with the
    /// reason); rejects on input of the wrong length.
    #[wasm_bindgen(unchecked_return_type = "Promise<ClassifyResult>")]
    pub fn classify(&self, pixels: &Uint8Array) -> Promise {
        let pixels = pixels.to_vec();
        let local = {
            let mut session = self.inner.borrow_mut();
            session.check_input(pixels.len()).and_then(|_| session.run_local(&pixels, &now_ms))
        };
        let local = match local {
            Ok(l) => l,
            Err(e) => return Promise::reject(&js_error(&e.to_string())),
        };
        let session = self.inner.clone();
        let offload = self.offload.borrow().clone();
        // No RefCell borrow may live across an await: other classify calls run meanwhile.
        let classes = session.borrow().manifest().classes.len();
        future_to_promise(async move {
            let remote = if local.decision.is_offload() {
                offload.classify(&pixels, classes).await
            } else {
                RemoteOutcome::NotAsked
            };
            let result = session.borrow_mut().finish(local, remote, now_ms()).map_err(|e| js_error(&e.to_string()))?;
            to_js(&result)
        })
    }

    /// Classifies one sample with the tiny model only (no network); `offloadWanted` says what the
    /// decision module would have done. Throws on input of the wrong length.
    #[wasm_bindgen(js_name = classifyLocal, unchecked_return_type = "ClassifyResult")]
    pub fn classify_local(&self, pixels: &Uint8Array) -> Result<JsValue, JsValue> {
        let pixels = pixels.to_vec();
        let mut session = self.inner.borrow_mut();
        let local = session
            .check_input(pixels.len())
            .and_then(|_| session.run_local(&pixels, &now_ms))
            .map_err(|e| js_error(&e.to_string()))?;
        let result = session.finish(local, RemoteOutcome::LocalOnly, now_ms()).map_err(|e| js_error(&e.to_string()))?;
        to_js(&result)
    }

    /// Times every operation of the local model's optimised tract plan over `runs` runs on `pixels`
    /// (mean ms per run, slowest first): where the local inference time goes.
    #[wasm_bindgen(unchecked_return_type = "Array<{ node: string; op: string; ms: number }>")]
    pub fn profile(&self, pixels: &Uint8Array, runs: usize) -> Result<JsValue, JsValue> {
        let session = self.inner.borrow();
        let ops = session.model().profile(&pixels.to_vec(), runs, &now_ms).map_err(|e| js_error(&e.to_string()))?;
        to_js(&ops)
    }

    /// Replaces the decision policy (a kind name or a full configuration; see `PolicyConfig`).
    #[wasm_bindgen(js_name = setPolicy)]
    pub fn set_policy(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PolicyConfig")] policy: JsValue,
    ) -> Result<(), JsValue> {
        let mut session = self.inner.borrow_mut();
        let config = policy_from_js(session.manifest(), &policy)?;
        session.set_policy(config).map_err(|e| js_error(&e.to_string()))
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

    /// `name@sha256-prefix` of the local model.
    #[wasm_bindgen(getter, js_name = modelId)]
    pub fn model_id(&self) -> String {
        self.inner.borrow().model().id().to_string()
    }
}

/// A policy from JS: `undefined` (the manifest's calibrated logistic_top2), a kind name (its
/// calibrated parameters), or a configuration object.
fn policy_from_js(manifest: &Manifest, value: &JsValue) -> Result<PolicyConfig, JsValue> {
    let config = if value.is_undefined() || value.is_null() {
        PolicyConfig::calibrated(manifest)
    } else if let Some(kind) = value.as_string() {
        PolicyConfig::calibrated_kind(manifest, &kind)
    } else {
        let json = js_sys::JSON::stringify(value).map_err(|_| js_error("policy is not a JSON object"))?;
        PolicyConfig::from_json(&String::from(json))
    };
    // Its parameters are checked where it is built (HiSession::new / set_policy).
    config.map_err(|e| js_error(&e.to_string()))
}
