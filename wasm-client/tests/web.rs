//! Headless-Chromium tests of the `hiedge` package (`wasm-pack test --headless --chrome`, run by
//! `make test-browser`): the committed tiny model in wasm against native tract, each policy against
//! the native core, an unreachable Worker, and bad input.

use hiedge_core::{Decision, PolicyConfig};
use hiedge_wasm::HiClient;
use js_sys::{Object, Reflect, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const MANIFEST: &str = include_str!("../../models/fashion-mnist/manifest.json");
const TINY: &[u8] = include_bytes!("../../models/fashion-mnist/tiny.onnx");
const EE_STAGE1: &[u8] = include_bytes!("../../models/fashion-mnist/ee_stage1.onnx");
const EE_STAGE2: &[u8] = include_bytes!("../../models/fashion-mnist/ee_stage2.onnx");
const IMAGES: &[u8] = include_bytes!("../../models/fashion-mnist/fixture/images.u8");
const REFERENCE: &str = include_str!("native_reference.json");

#[derive(Deserialize)]
struct EeReference {
    config: PolicyConfig,
    steps: Vec<EeStep>,
}

#[derive(Deserialize)]
struct EeStep {
    stage: String,
    label: usize,
    offload: bool,
}

#[derive(Deserialize)]
struct Reference {
    ee_hi: EeReference,
    labels: Vec<usize>,
    probs: Vec<Vec<f32>>,
    policies: std::collections::BTreeMap<String, PolicyReference>,
}

#[derive(Deserialize)]
struct PolicyReference {
    config: PolicyConfig,
    decisions: Vec<Decision>,
}

fn reference() -> Reference {
    serde_json::from_str(REFERENCE).expect("native_reference.json parses")
}

fn image(i: usize) -> Uint8Array {
    Uint8Array::from(&IMAGES[i * 784..(i + 1) * 784])
}

fn set(o: &Object, k: &str, v: &JsValue) {
    Reflect::set(o, &k.into(), v).unwrap();
}

fn get(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &k.into()).unwrap()
}

fn options(policy: JsValue, endpoint: Option<&str>) -> JsValue {
    let o = Object::new();
    set(&o, "model", &Uint8Array::from(TINY).into());
    set(&o, "manifest", &MANIFEST.into());
    set(&o, "policy", &policy);
    set(&o, "endpoint", &endpoint.map_or(JsValue::NULL, JsValue::from_str));
    set(&o, "timeoutMs", &JsValue::from_f64(1500.0));
    o.into()
}

fn policy_js(config: &PolicyConfig) -> JsValue {
    js_sys::JSON::parse(&serde_json::to_string(config).unwrap()).unwrap()
}

async fn client(policy: JsValue, endpoint: Option<&str>) -> HiClient {
    match HiClient::create(options(policy, endpoint)).await {
        Ok(c) => c,
        Err(e) => panic!("HiClient.create failed: {e:?}"),
    }
}

#[wasm_bindgen_test]
async fn tiny_model_in_wasm_matches_native_tract_on_50_images() {
    let reference = reference();
    let c = client(JsValue::from_str("always_local"), None).await;
    assert_eq!(c.input_length(), 784);
    assert!(c.model_id().starts_with("tiny@"));
    let mut max_diff = 0.0f32;
    for (i, (label, probs)) in reference.labels.iter().zip(&reference.probs).enumerate() {
        let r = c.classify_local(&image(i)).unwrap();
        assert_eq!(get(&r, "localLabel").as_f64(), Some(*label as f64), "image {i}: label differs from native");
        let got: Vec<f32> = serde_json::from_str(&String::from(js_sys::JSON::stringify(&get(&r, "localProbs")).unwrap())).unwrap();
        assert_eq!(got.len(), probs.len());
        for (g, w) in got.iter().zip(probs) {
            max_diff = max_diff.max((g - w).abs());
        }
    }
    assert_eq!(reference.labels.len(), 50);
    assert!(max_diff <= 1e-5, "max |wasm - native| probability difference {max_diff}");
}

#[wasm_bindgen_test]
async fn every_policy_decides_as_the_native_core() {
    let reference = reference();
    assert_eq!(reference.policies.len(), 7);
    for (kind, want) in &reference.policies {
        // The core compiled to wasm, on the very same probabilities: identical decisions and scores.
        let mut policy = want.config.build().unwrap();
        for (i, probs) in reference.probs.iter().enumerate() {
            assert_eq!(policy.decide(probs).unwrap(), want.decisions[i], "{kind}, image {i}");
        }
        // The client end to end (its own wasm probabilities): same offload decisions.
        let c = client(policy_js(&want.config), None).await;
        for (i, d) in want.decisions.iter().enumerate() {
            let r = c.classify_local(&image(i)).unwrap();
            assert_eq!(get(&r, "offloadWanted").as_bool(), Some(d.is_offload()), "{kind}, image {i} via HiClient");
        }
        // A kind name gives the same calibrated configuration as the native core.
        let by_name = client(JsValue::from_str(kind), None).await;
        let cfg: PolicyConfig =
            serde_json::from_str(&String::from(js_sys::JSON::stringify(&by_name.policy().unwrap()).unwrap())).unwrap();
        assert_eq!(&cfg, &want.config, "{kind}");
    }
}

#[wasm_bindgen_test]
async fn ee_hi_in_wasm_takes_the_native_paths() {
    let reference = reference();
    let o = options(policy_js(&reference.ee_hi.config), None);
    let ee = Object::new();
    set(&ee, "stage1", &Uint8Array::from(EE_STAGE1).into());
    set(&ee, "stage2", &Uint8Array::from(EE_STAGE2).into());
    set(o.unchecked_ref(), "earlyExit", &ee.into());
    let c = match HiClient::create(o).await {
        Ok(c) => c,
        Err(e) => panic!("HiClient.create with earlyExit failed: {e:?}"),
    };
    for (i, want) in reference.ee_hi.steps.iter().enumerate() {
        let r = c.classify_local(&image(i)).unwrap();
        assert_eq!(get(&r, "localStage").as_string().as_deref(), Some(want.stage.as_str()), "image {i}");
        assert_eq!(get(&r, "localLabel").as_f64(), Some(want.label as f64), "image {i}");
        assert_eq!(get(&r, "offloadWanted").as_bool(), Some(want.offload), "image {i}");
    }
    // Without the early-exit model, ee_hi is refused with a reason.
    let err = HiClient::create(options(JsValue::from_str("ee_hi"), None)).await.err().expect("ee_hi without earlyExit");
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("earlyExit"));
}

#[wasm_bindgen_test]
async fn unreachable_worker_gives_fallback_and_loses_nothing() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let c = client(JsValue::from_str("always_offload"), Some("http://127.0.0.1:9")).await;
    let reference = reference();
    let promises: Vec<_> = (0..20).map(|i| JsFuture::from(c.classify(&image(i)))).collect();
    let mut n = 0;
    for (i, p) in promises.into_iter().enumerate() {
        let r = p.await.expect("classify must resolve when the Worker is down");
        assert_eq!(get(&r, "decision").as_string().as_deref(), Some("fallback"), "image {i}");
        assert_eq!(get(&r, "label").as_f64(), Some(reference.labels[i] as f64));
        assert!(get(&r, "remoteLabel").is_null());
        let reason = get(&r, "fallbackReason").as_string().unwrap_or_default();
        assert!(reason.contains("network error"), "reason: {reason}");
        n += 1;
    }
    assert_eq!(n, 20);
    let stats = c.stats().unwrap();
    assert_eq!(get(&stats, "samples").as_f64(), Some(20.0));
    assert_eq!(get(&stats, "fallback").as_f64(), Some(20.0));
    assert_eq!(get(&stats, "bytesSent").as_f64(), Some(20.0 * 784.0));

    // No endpoint at all: the same, with its own reason.
    let none = client(JsValue::from_str("always_offload"), None).await;
    let r = JsFuture::from(none.classify(&image(0))).await.unwrap();
    assert_eq!(get(&r, "decision").as_string().as_deref(), Some("fallback"));
    assert_eq!(get(&r, "fallbackReason").as_string().as_deref(), Some("no endpoint is configured"));
}

#[wasm_bindgen_test]
async fn wrong_length_input_is_rejected_with_both_lengths() {
    let c = client(JsValue::UNDEFINED, Some("http://127.0.0.1:9")).await;
    for n in [0usize, 783, 785] {
        let bad = Uint8Array::from(vec![0u8; n].as_slice());
        let err = JsFuture::from(c.classify(&bad)).await.expect_err("wrong length must reject");
        let msg = String::from(err.dyn_into::<js_sys::Error>().unwrap().message());
        assert_eq!(msg, format!("input has {n} values but the model expects 784"));
        let err = c.classify_local(&bad).expect_err("classifyLocal must throw");
        assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("784"));
    }
    assert_eq!(get(&c.stats().unwrap(), "samples").as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
async fn bad_options_are_explained() {
    let bad_policy = policy_js(&PolicyConfig::MaxProb { threshold: 0.5 });
    Reflect::set(&bad_policy, &"threshold".into(), &JsValue::from_f64(1.5)).unwrap();
    let err = HiClient::create(options(bad_policy, None)).await.err().expect("threshold 1.5 must be refused");
    let msg = String::from(err.dyn_into::<js_sys::Error>().unwrap().message());
    assert!(msg.contains("threshold must be in 0..=1"), "{msg}");

    let o = options(JsValue::UNDEFINED, Some("ftp://x"));
    let err = HiClient::create(o).await.err().expect("ftp endpoint must be refused");
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("not an http(s) URL"));

    let o = options(JsValue::UNDEFINED, None);
    let mut tampered = TINY.to_vec();
    tampered[10] ^= 1;
    set(o.unchecked_ref(), "model", &Uint8Array::from(tampered.as_slice()).into());
    let err = HiClient::create(o).await.err().expect("tampered model must be refused");
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("sha256"));
}
