//! Headless-Chromium tests of the `hiedge` package (`wasm-pack test --headless --chrome`, run by
//! `make test-browser`): the committed tiny model in wasm against native tract, each policy against
//! the native core, an unreachable Worker, and bad input.
//! The device build only: the loader build (no `device` feature) is tested through the package in
//! tests/npm and tests/hostile.
#![cfg(feature = "device")]

use hiedge_core::PolicyConfig;
use hiedge_wasm::HiClient;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

#[path = "../../core/tests/support/reference.rs"]
mod reference;

#[path = "../../core/tests/support/pillow.rs"]
mod pillow;

wasm_bindgen_test_configure!(run_in_browser);

const MANIFEST: &str = include_str!("../../models/fashion-mnist/manifest.json");
// The archives `hiedge compile` wrote from the set's ONNX files (the files its manifest names).
const TINY: &[u8] = include_bytes!("../../models/fashion-mnist/tiny.nnef.tar");
const EE_STAGE1: &[u8] = include_bytes!("../../models/fashion-mnist/ee_stage1.nnef.tar");
const EE_STAGE2: &[u8] = include_bytes!("../../models/fashion-mnist/ee_stage2.nnef.tar");
const IMAGES: &[u8] = include_bytes!("../../models/fashion-mnist/fixture/images.u8");
/// Native tract's output on one machine, compared with the tolerances of `reference.rs`.
const REFERENCE: &str = include_str!("native_reference.json");

fn reference() -> reference::Reference {
    serde_json::from_str(REFERENCE).expect("native_reference.json parses")
}

fn js_to<T: serde::de::DeserializeOwned>(v: &JsValue) -> T {
    serde_json::from_str(&String::from(js_sys::JSON::stringify(v).unwrap())).unwrap()
}

/// The decision a `ClassifyResult` reports.
fn result_decision(r: &JsValue) -> hiedge_core::Decision {
    reference::decision(
        get(r, "offloadWanted").as_bool().unwrap(),
        get(r, "score").as_f64().unwrap() as f32,
        get(r, "explored").as_bool().unwrap(),
    )
}

/// `error.code` of a rejected call.
fn code(err: &JsValue) -> String {
    get(err, "code").as_string().unwrap_or_else(|| format!("no code on {err:?}"))
}

fn image(i: usize) -> JsValue {
    Uint8Array::from(&IMAGES[i * 784..(i + 1) * 784]).into()
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
async fn tiny_model_in_wasm_agrees_with_native_tract_on_50_images() {
    let reference = reference();
    assert_eq!(reference.labels.len(), 50);
    let c = client(JsValue::from_str("always_local"), None).await;
    assert_eq!(c.input_length(), 784);
    assert!(c.model_id().starts_with("tiny@"));
    let (mut labels, mut probs) = (Vec::new(), Vec::new());
    for i in 0..reference.labels.len() {
        let r = c.classify_local(image(i)).unwrap();
        labels.push(get(&r, "localLabel").as_f64().unwrap() as usize);
        probs.push(js_to::<Vec<f32>>(&get(&r, "localProbs")));
    }
    let max_diff = reference::compare_predictions(&reference.labels, &reference.probs, &labels, &probs)
        .unwrap_or_else(|e| panic!("wasm vs native: {e}"));
    console_log!("max |wasm - native| probability difference: {max_diff:e}");
}

#[wasm_bindgen_test]
async fn every_policy_decides_as_the_native_core() {
    let reference = reference();
    assert_eq!(reference.policies.len(), 7);
    for (kind, want) in &reference.policies {
        // The core compiled to wasm, on the native probabilities: the same decisions, scores within
        // the tolerance (wasm's libm is not the native one).
        let mut policy = want.config.build().unwrap();
        assert_eq!(policy.threshold(), want.threshold, "{kind}");
        let got: Vec<_> = reference.probs.iter().map(|p| policy.decide(p).unwrap()).collect();
        reference::compare_decisions(kind, want, &got).unwrap_or_else(|e| panic!("core in wasm: {e}"));
        // The client end to end, on its own wasm probabilities.
        let c = client(policy_js(&want.config), None).await;
        let got: Vec<_> =
            (0..want.decisions.len()).map(|i| result_decision(&c.classify_local(image(i)).unwrap())).collect();
        reference::compare_decisions(kind, want, &got).unwrap_or_else(|e| panic!("HiClient: {e}"));
        // A kind name gives the same calibrated configuration as the native core.
        let by_name = client(JsValue::from_str(kind), None).await;
        let cfg: PolicyConfig = js_to(&by_name.policy().unwrap());
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
    let got: Vec<_> = (0..reference.ee_hi.steps.len())
        .map(|i| {
            let r = c.classify_local(image(i)).unwrap();
            reference::EeStep {
                stage: get(&r, "localStage").as_string().unwrap(),
                label: get(&r, "localLabel").as_f64().unwrap() as usize,
                offload: get(&r, "offloadWanted").as_bool().unwrap(),
                exit_p1: f32::NAN, // not reported by the client; the rules use the reference's
                score: get(&r, "score").as_f64().unwrap() as f32,
            }
        })
        .collect();
    reference::compare_ee_steps(&reference.ee_hi, &got).unwrap_or_else(|e| panic!("{e}"));
    // Without the early-exit model, ee_hi is refused with a reason.
    let err = HiClient::create(options(JsValue::from_str("ee_hi"), None)).await.err().expect("ee_hi without earlyExit");
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("earlyExit"));
}

#[wasm_bindgen_test]
async fn unreachable_worker_gives_fallback_and_loses_nothing() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let c = client(JsValue::from_str("always_offload"), Some("http://127.0.0.1:9")).await;
    let reference = reference();
    let promises: Vec<_> = (0..20).map(|i| JsFuture::from(c.classify(image(i)))).collect();
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
    let r = JsFuture::from(none.classify(image(0))).await.unwrap();
    assert_eq!(get(&r, "decision").as_string().as_deref(), Some("fallback"));
    assert_eq!(get(&r, "fallbackReason").as_string().as_deref(), Some("no endpoint is configured"));
}

#[wasm_bindgen_test]
async fn wrong_length_input_is_rejected_with_both_lengths() {
    let c = client(JsValue::UNDEFINED, Some("http://127.0.0.1:9")).await;
    for n in [0usize, 783, 785] {
        let bad = Uint8Array::from(vec![0u8; n].as_slice());
        let err = JsFuture::from(c.classify(bad.clone().into())).await.expect_err("wrong length must reject");
        assert_eq!(code(&err), "InputLength", "the error names the hiedge_core::Error variant");
        let msg = String::from(err.dyn_into::<js_sys::Error>().unwrap().message());
        assert_eq!(msg, format!("input has {n} values but the model expects 784"));
        let err = c.classify_local(bad.clone().into()).expect_err("classifyLocal must throw");
        assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("784"));
    }
    assert_eq!(get(&c.stats().unwrap(), "samples").as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
async fn bad_options_are_explained() {
    let bad_policy = policy_js(&PolicyConfig::MaxProb { threshold: 0.5 });
    Reflect::set(&bad_policy, &"threshold".into(), &JsValue::from_f64(1.5)).unwrap();
    let err = HiClient::create(options(bad_policy, None)).await.err().expect("threshold 1.5 must be refused");
    assert_eq!(code(&err), "InvalidPolicy");
    let msg = String::from(err.dyn_into::<js_sys::Error>().unwrap().message());
    assert!(msg.contains("threshold must be in 0..=1"), "{msg}");

    let err = HiClient::create(options(JsValue::from_str("bogus"), None)).await.err().expect("unknown kind");
    assert_eq!(code(&err), "InvalidOptions");
    let msg = String::from(err.dyn_into::<js_sys::Error>().unwrap().message());
    assert!(msg.contains("unknown policy kind `bogus`"), "{msg}");
    let o = options(JsValue::UNDEFINED, None);
    set(o.unchecked_ref(), "timeoutMs", &JsValue::from_str("soon"));
    let err = HiClient::create(o).await.err().expect("a string timeout must be refused");
    assert_eq!(code(&err), "InvalidOptions");

    let o = options(JsValue::UNDEFINED, Some("ftp://x"));
    let err = HiClient::create(o).await.err().expect("ftp endpoint must be refused");
    assert_eq!(code(&err), "InvalidOptions");
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("not an http(s) URL"));

    let o = options(JsValue::UNDEFINED, None);
    let mut tampered = TINY.to_vec();
    tampered[10] ^= 1;
    set(o.unchecked_ref(), "model", &Uint8Array::from(tampered.as_slice()).into());
    let err = HiClient::create(o).await.err().expect("tampered model must be refused");
    assert_eq!(code(&err), "ModelHashMismatch");
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("sha256"));

    // The ONNX file itself, named by a manifest: the browser build reads NNEF and says how to get it.
    const ONNX: &[u8] = include_bytes!("../../models/fashion-mnist/tiny.onnx");
    let mut manifest: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
    manifest["models"]["tiny"]["file"] = "tiny.onnx".into();
    manifest["models"]["tiny"]["sha256"] = hiedge_core::runtime::sha256_hex(ONNX).into();
    let o = options(JsValue::UNDEFINED, None);
    set(o.unchecked_ref(), "manifest", &JsValue::from_str(&manifest.to_string()));
    set(o.unchecked_ref(), "model", &Uint8Array::from(ONNX).into());
    let err = HiClient::create(o).await.err().expect("an ONNX file must be refused by the browser build");
    assert_eq!(code(&err), "UnsupportedModelFormat");
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("hiedge compile"));
}

/// The sample as an RGBA image of `scale` times the model's size (each pixel repeated), gray in
/// all three colour channels.
fn rgba(i: usize, scale: usize) -> (Vec<u8>, u32) {
    let side = 28 * scale;
    let gray = &IMAGES[i * 784..(i + 1) * 784];
    let mut out = Vec::with_capacity(side * side * 4);
    for y in 0..side {
        for x in 0..side {
            let v = gray[(y / scale) * 28 + x / scale];
            out.extend([v, v, v, 255]);
        }
    }
    (out, side as u32)
}

/// RGBA pixels of a `side x side` image as `ImageData`, an `OffscreenCanvas` holding them and a PNG
/// `Blob` of that canvas.
async fn image_sources(pixels: &[u8], side: u32) -> (web_sys::ImageData, web_sys::OffscreenCanvas, web_sys::Blob) {
    let data = web_sys::ImageData::new_with_u8_clamped_array_and_sh(wasm_bindgen::Clamped(pixels), side, side).unwrap();
    let canvas = web_sys::OffscreenCanvas::new(side, side).unwrap();
    let ctx: web_sys::OffscreenCanvasRenderingContext2d =
        canvas.get_context("2d").unwrap().unwrap().dyn_into().unwrap();
    ctx.put_image_data(&data, 0.0, 0.0).unwrap();
    let blob = JsFuture::from(canvas.convert_to_blob().unwrap()).await.unwrap().dyn_into().unwrap();
    (data, canvas, blob)
}

#[wasm_bindgen_test]
async fn image_sources_give_the_answer_of_their_converted_bytes() {
    use hiedge_core::manifest::Manifest;
    use hiedge_core::runtime::image::{to_model_pixels, Image, PixelFormat};
    let c = client(JsValue::from_str("always_local"), None).await;
    let manifest = Manifest::from_json(MANIFEST).unwrap();
    let shape: serde_json::Value = js_to(&c.image_shape().unwrap());
    assert_eq!(shape, serde_json::json!({ "height": 28, "width": 28, "channels": 1 }), "NCHW [1, 1, 28, 28]");
    for (i, scale) in [(0usize, 1usize), (1, 2), (2, 3)] {
        let (pixels, side) = rgba(i, scale);
        // What core's conversion makes of it, classified as plain bytes.
        let converted = to_model_pixels(
            &Image::new(&pixels, side as usize, side as usize, PixelFormat::Rgba).unwrap(),
            &manifest.input,
        )
        .unwrap();
        if scale == 1 {
            assert_eq!(converted, IMAGES[i * 784..(i + 1) * 784], "a model-sized gray image converts to itself");
        }
        let want: serde_json::Value = js_to(&c.classify_local(Uint8Array::from(converted.as_slice()).into()).unwrap());
        // ImageData, a canvas holding it, and a PNG Blob of that canvas: the same label and probabilities.
        let (data, canvas, blob) = image_sources(&pixels, side).await;
        for (what, input) in
            [("ImageData", JsValue::from(data)), ("OffscreenCanvas", canvas.into()), ("Blob", blob.into())]
        {
            let got: serde_json::Value = js_to(&JsFuture::from(c.classify(input)).await.unwrap());
            assert_eq!(got["label"], want["label"], "{what}, image {i} at {scale}x");
            let (a, b) = (got["probs"].as_array().unwrap(), want["probs"].as_array().unwrap());
            for (p, q) in a.iter().zip(b) {
                assert!((p.as_f64().unwrap() - q.as_f64().unwrap()).abs() <= 1e-6, "{what}: {p} vs {q}");
            }
            assert_eq!(got["bytesSent"], 0, "kept locally");
        }
    }
    // Anything else is refused with a code and what is accepted.
    for bad in [JsValue::from_str("cat.png"), JsValue::from_f64(3.0), js_sys::Object::new().into()] {
        let err = JsFuture::from(c.classify(bad)).await.expect_err("not an image");
        assert_eq!(code(&err), "InvalidInput");
        let msg = String::from(err.dyn_into::<js_sys::Error>().unwrap().message());
        assert!(msg.contains("ImageData") && msg.contains("Uint8Array"), "{msg}");
    }
}

/// The one conversion, compiled to wasm, against the Pillow reference by the native test's rules
/// (`core/tests/support/pillow.rs`).
#[wasm_bindgen_test]
fn image_conversion_in_wasm_matches_pillow() {
    pillow::check_against_pillow().unwrap_or_else(|e| panic!("{e}"));
}

/// An `<img>` element (decoded from a PNG of the sample, 2x) classifies as its ImageData does.
#[wasm_bindgen_test]
async fn an_img_element_classifies_as_its_pixels() {
    let c = client(JsValue::from_str("always_local"), None).await;
    let (pixels, side) = rgba(4, 2);
    let (data, _, blob) = image_sources(&pixels, side).await;
    let url = web_sys::Url::create_object_url_with_blob(&blob).unwrap();
    let img = web_sys::HtmlImageElement::new().unwrap();
    img.set_src(&url);
    JsFuture::from(img.decode()).await.expect("the PNG decodes");
    let want: serde_json::Value = js_to(&c.classify_local(data.into()).unwrap());
    let got: serde_json::Value = js_to(&JsFuture::from(c.classify(img.into())).await.unwrap());
    assert_eq!(got["label"], want["label"]);
    assert_eq!(got["probs"], want["probs"]);
}

/// A set the project was not built around (`cli/tests/fixtures`: NHWC input, a tiny model that
/// ends in Softmax), described by a schema-2 manifest: the client takes its size and colour from the
/// manifest, reads the model's outputs as probabilities, and converts an image for it.
#[wasm_bindgen_test]
async fn an_nhwc_probability_model_set_is_driven_by_its_manifest() {
    use hiedge_core::runtime::sha256_hex;
    // `hiedge compile` of cli/tests/fixtures/nhwc_softmax_tiny.onnx (cli/tests/import.rs checks it).
    const TOY: &[u8] = include_bytes!("../../cli/tests/fixtures/nhwc_softmax_tiny.nnef.tar");
    let manifest = serde_json::json!({
        "schema_version": 2, "name": "toy",
        "input": {"shape": [1, 28, 28, 1], "layout": "NHWC", "dtype": "u8", "color": "gray", "resize": "center_crop",
                  "normalize": {"scale": 1.0 / 255.0, "mean": [0.5], "std": [0.25]}},
        "classes": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
        "models": {"tiny": {"file": "tiny.nnef.tar", "sha256": sha256_hex(TOY), "input_name": "pixels", "output": "probabilities"}}
    });
    let o = Object::new();
    set(&o, "model", &Uint8Array::from(TOY).into());
    set(&o, "manifest", &JsValue::from_str(&manifest.to_string()));
    set(&o, "policy", &JsValue::from_str("always_local"));
    let c = HiClient::create(o.into()).await.unwrap_or_else(|e| panic!("toy set refused: {e:?}"));
    assert_eq!(c.input_length(), 784);
    let shape: serde_json::Value = js_to(&c.image_shape().unwrap());
    assert_eq!(shape, serde_json::json!({ "height": 28, "width": 28, "channels": 1 }));
    // A wide image is centre-cropped to its middle square, then shrunk: the same as that square alone.
    let (square, side) = rgba(5, 2);
    let side = side as usize;
    let mut wide = Vec::with_capacity(side * 2 * side * 4);
    for y in 0..side {
        wide.extend(std::iter::repeat_n([0u8, 0, 0, 255], side / 2).flatten());
        wide.extend_from_slice(&square[y * side * 4..(y + 1) * side * 4]);
        wide.extend(std::iter::repeat_n([0u8, 0, 0, 255], side / 2).flatten());
    }
    let image = |px: &[u8], w: usize| {
        web_sys::ImageData::new_with_u8_clamped_array_and_sh(wasm_bindgen::Clamped(px), w as u32, side as u32).unwrap()
    };
    let a: serde_json::Value = js_to(&c.classify_local(image(&wide, side * 2).into()).unwrap());
    let b: serde_json::Value = js_to(&c.classify_local(image(&square, side).into()).unwrap());
    assert_eq!(a["probs"], b["probs"], "centre-crop keeps the middle square");
    // Probabilities from a Softmax-ended model are used as they are: they sum to 1, and the top one
    // is above e / (e + 9) = 0.232, the most a second softmax over 10 values in 0..=1 could leave.
    let probs: Vec<f64> = a["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    let p1 = probs.iter().copied().fold(0.0, f64::max);
    let e = std::f64::consts::E;
    assert!(p1 > e / (e + 9.0), "top probability {p1}: softmaxed twice?");
    assert_eq!(
        a["className"],
        serde_json::json!(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
                [a["label"].as_u64().unwrap() as usize]
        )
    );
}

/// hiedge's 2x2 max pool with wasm SIMD (natively its tests compare it with tract's; natively it
/// has no SIMD path) against a plain four-loop maximum, in both layouts, at sizes with and without
/// a scalar tail. A maximum picks one of its inputs, so the values are equal.
#[wasm_bindgen_test]
fn simd_max_pool_takes_each_windows_maximum() {
    use hiedge_core::runtime::kernels::MaxPool2x2;
    let mut seed = 7u32;
    for &(channels_last, n, c, h, w) in &[
        (false, 1, 24, 28, 28),
        (false, 2, 3, 15, 17),
        (false, 1, 2, 8, 9),
        (true, 1, 14, 14, 32),
        (true, 2, 9, 11, 6),
        (true, 1, 3, 5, 7),
    ] {
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let at = |i: usize, ch: usize, y: usize, xx: usize| {
            if channels_last {
                x[((i * h + y) * w + xx) * c + ch]
            } else {
                x[((i * c + ch) * h + y) * w + xx]
            }
        };
        let (oh, ow) = (h / 2, w / 2);
        let mut want = vec![0.0f32; n * c * oh * ow];
        for i in 0..n {
            for ch in 0..c {
                for y in 0..oh {
                    for xx in 0..ow {
                        let m = [
                            at(i, ch, 2 * y, 2 * xx),
                            at(i, ch, 2 * y, 2 * xx + 1),
                            at(i, ch, 2 * y + 1, 2 * xx),
                            at(i, ch, 2 * y + 1, 2 * xx + 1),
                        ]
                        .into_iter()
                        .fold(f32::MIN, f32::max);
                        let o = if channels_last {
                            ((i * oh + y) * ow + xx) * c + ch
                        } else {
                            ((i * c + ch) * oh + y) * ow + xx
                        };
                        want[o] = m;
                    }
                }
            }
        }
        let got = MaxPool2x2::new(channels_last, n, c, h, w).pool(&x).unwrap();
        assert_eq!(got, want, "channels_last {channels_last}, {n}x{c}x{h}x{w}");
    }
    assert!(MaxPool2x2::new(false, 1, 1, 4, 4).pool(&[0.0; 15]).is_err(), "a wrong length is refused");
}

/// hiedge's direct convolution with wasm SIMD (natively its tests compare it with tract's
/// convolution; natively it has no SIMD path) against a plain loop that adds each output's products
/// in the same order (input channel, kernel row, kernel column, from zero, then the bias): without
/// a fused multiply-add both round the same way, so the values are equal. Stems, a patch
/// embedding, padding on every side, an overhanging last window, a part block of channels.
#[wasm_bindgen_test]
fn simd_direct_conv_adds_each_outputs_products_in_order() {
    use hiedge_core::runtime::kernels::{seeded_values, DirectConv};
    let mut seed = 11u32;
    let mut values = |n: usize| seeded_values(n, &mut seed);
    // (images, channels, input, outputs, kernel, strides, padding before, output)
    type Conv = (usize, usize, [usize; 2], usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2]);
    let cases: &[Conv] = &[
        (1, 3, [32, 30], 16, [3, 3], [2, 2], [1, 1], [16, 15]),
        (2, 3, [17, 19], 10, [3, 3], [2, 2], [1, 1], [9, 10]),
        (1, 3, [48, 64], 12, [16, 16], [16, 16], [0, 0], [3, 4]),
        (1, 1, [20, 23], 7, [5, 5], [1, 1], [2, 2], [20, 23]),
        (1, 2, [10, 10], 5, [4, 4], [3, 3], [0, 2], [3, 4]),
    ];
    for &(n, c, [h, w], m, [kh, kw], [sh, sw], [top, left], [oh, ow]) in cases {
        let (x, weights, bias) = (values(n * c * h * w), values(m * c * kh * kw), values(m));
        let conv =
            DirectConv::new(Some(n), c, [h, w], [kh, kw], [sh, sw], [top, left], [oh, ow], &weights, &bias).unwrap();
        let got = conv.conv(&x).unwrap();
        let mut want = Vec::with_capacity(n * m * oh * ow);
        for i in 0..n {
            for o in 0..m {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0.0f32;
                        for ch in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (y, xx) = (
                                        (oy * sh + ky) as isize - top as isize,
                                        (ox * sw + kx) as isize - left as isize,
                                    );
                                    let inside = y >= 0 && xx >= 0 && (y as usize) < h && (xx as usize) < w;
                                    let v =
                                        if inside { x[((i * c + ch) * h + y as usize) * w + xx as usize] } else { 0.0 };
                                    sum += weights[((o * c + ch) * kh + ky) * kw + kx] * v;
                                }
                            }
                        }
                        want.push(sum + bias[o]);
                    }
                }
            }
        }
        assert_eq!(got, want, "{n}x{c}x{h}x{w}, {m} outputs of {kh}x{kw} stride {sh}x{sw}");
    }
    let conv = DirectConv::new(Some(1), 1, [4, 4], [3, 3], [1, 1], [0, 0], [2, 2], &[0.5; 9], &[0.0]).unwrap();
    assert!(conv.conv(&[0.0; 15]).is_err(), "a wrong length is refused");
}

const ZOO_MANIFEST: &str = include_str!("../../models/zoo-rgb/manifest.json");
const ZOO_TINY: &[u8] = include_bytes!("../../models/zoo-rgb/tiny.nnef.tar");
const ZOO_LARGE: &[u8] = include_bytes!("../../models/zoo-rgb/large.nnef.tar");
/// Native tract's output of the real-size set on `reference::zoo_samples()`, on one machine.
const ZOO_REFERENCE: &str = include_str!("zoo_reference.json");

/// The real-size set's 224x224 RGB models (MobileNetV3-style device model, ViT-style large model
/// with exact GELU and LayerNorm) in the browser's wasm build agree with native tract within
/// `ZOO_PROB_TOL`, and the client takes a 224x224 RGB sample.
#[wasm_bindgen_test]
async fn real_size_models_in_wasm_agree_with_native_tract() {
    let want: reference::ZooReference = serde_json::from_str(ZOO_REFERENCE).expect("zoo_reference.json parses");
    let manifest = hiedge_core::Manifest::from_json(ZOO_MANIFEST).unwrap();
    let samples = reference::zoo_samples();
    for (name, bytes, probs) in [("tiny", ZOO_TINY, &want.tiny), ("large", ZOO_LARGE, &want.large)] {
        let model = hiedge_core::Model::load(&manifest, name, bytes).unwrap();
        let got: Vec<Vec<f32>> = samples.iter().map(|s| model.predict(s, 1.0).unwrap().probs).collect();
        let max_diff = reference::compare_zoo(probs, &got).unwrap_or_else(|e| panic!("{name}: wasm vs native: {e}"));
        console_log!("zoo-rgb {name}: max |wasm - native| probability difference: {max_diff:e}");
    }
    let options = Object::new();
    Reflect::set(&options, &"manifest".into(), &ZOO_MANIFEST.into()).unwrap();
    Reflect::set(&options, &"model".into(), &Uint8Array::from(ZOO_TINY).into()).unwrap();
    Reflect::set(&options, &"policy".into(), &"always_local".into()).unwrap();
    let client = HiClient::create(options.into()).await.unwrap();
    assert_eq!(client.input_length(), 3 * 224 * 224);
    let r = client.classify_local(Uint8Array::from(samples[0].as_slice()).into()).unwrap();
    let local: Vec<f32> = js_to(&get(&r, "localProbs"));
    reference::compare_zoo(&want.tiny[..1], &[local]).unwrap_or_else(|e| panic!("the client on the sample: {e}"));
}
