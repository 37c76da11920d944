//! # hiedge-fuzz
//!
//! The checks behind hiedge's fuzz targets: each takes arbitrary bytes, feeds them to one of
//! hiedge-core's decoders of untrusted input, and panics only when an invariant breaks (a panic
//! inside hiedge-core is a failure too). `make fuzz` runs them under libFuzzer
//! (`cargo +nightly fuzz run --features libfuzzer <target>`); `make test` replays the committed
//! corpus in `fuzz/corpus/<target>/` on stable (`tests/replay.rs`), so a fixed crash stays fixed.
//!
//! | target | input | invariants |
//! |---|---|---|
//! | [`manifest`] | manifest JSON text | parse/validate never panics; a valid manifest has a usable input contract (length in range, finite normalised values) and survives a JSON round trip |
//! | [`classify_request`] | method, path, headers, Worker variables, body | the Worker's checks ([`AccessRules::admit`], [`protocol::check_classify_body`]) never panic; every refusal is a 4xx with JSON that parses back and a bounded message; an accepted body has exactly the model's length |
//! | [`preprocess`] | an input shape, normalisation, layout and pixels of any length | accepted iff the length is right; output finite, same length |
//! | [`policy_decide`] | a policy configuration and any float vector | `decide` accepts exactly the valid probability vectors; scores and thresholds stay in `0..=1` |
//! | [`classify_response`] | a Worker's response text | the client's parser never panics; an accepted response is a valid distribution whose argmax is the label |
//! | [`decode_image`] | an encoding and an encoded image's bytes | the Worker's decoders never panic; a decoded image is within the pixel cap, its buffer matches its size, and it converts to a 28x28 gray and a 16x16 RGB input of the right length |
//! | [`split_features`] | a feature count and a split-route body; arbitrary floats | the Worker's feature checks never panic; accepted features dequantise to finite values; quantised floats survive the wire |
//!
//! ```
//! hiedge_fuzz::manifest(b"{\"schema_version\": 1}");
//! hiedge_fuzz::policy_decide(&[0, 1, 2, 3, 4, 5, 6, 7]);
//! ```

use arbitrary::{Arbitrary, Unstructured};
use hiedge_core::prob::validate_probs;
use hiedge_core::protocol::{self, ClassifyResponse, ErrorBody, SampleEncoding};
use hiedge_core::runtime::decode::{self, MAX_DECODED_PIXELS};
use hiedge_core::runtime::image::to_model_pixels;
use hiedge_core::server::{AccessRules, RequestHead};
use hiedge_core::{Error, Feedback, Manifest, PolicyConfig, Preprocessor};

/// A fuzz target's check.
pub type Check = fn(&[u8]);

/// The fuzz targets by name, as `make fuzz` and the corpus replay know them.
pub const TARGETS: [(&str, Check); 7] = [
    ("manifest", manifest),
    ("classify_request", classify_request),
    ("preprocess", preprocess),
    ("policy_decide", policy_decide),
    ("classify_response", classify_response),
    ("split_features", split_features),
    ("decode_image", decode_image),
];

/// Largest error message the Worker may send: untrusted parts are echoed only truncated.
const MAX_ERROR_MESSAGE: usize = 400;

/// Manifest text: parsing and validation never panic; what validates is usable.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let m = match Manifest::from_json(&text) {
        Ok(m) => m,
        Err(e) => {
            assert!(matches!(e, Error::ManifestParse(_) | Error::ManifestInvalid { .. }), "{e:?}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let n = m.input_len();
    assert!(n > 0 && n <= 16 * 1024 * 1024, "validated input length {n}");
    let (c, h, w) = m.chw();
    assert_eq!(c * h * w, n);
    if n <= 1 << 16 {
        let pre = Preprocessor::new(&m);
        for pixel in [0u8, 255] {
            let values = pre.run(&vec![pixel; n]).expect("the manifest's own length is accepted");
            assert!(values.iter().all(|v| v.is_finite()), "pixel {pixel} normalises to a non-finite value");
        }
    }
    for kind in ["max_prob", "margin", "entropy", "logistic_top2", "online_hedge", "ee_hi", "always_local"] {
        if let Ok(config) = PolicyConfig::calibrated_kind(&m, kind) {
            let _ = config.build();
        }
    }
    let again = m.to_json_pretty().expect("a parsed manifest serialises");
    let back = Manifest::from_json(&again).expect("a serialised manifest parses again");
    assert_eq!(back.to_json_pretty().expect("serialises"), again, "the JSON round trip changed the manifest");
}

/// A string that is often one the code knows, else anything.
fn pick<'a>(u: &mut Unstructured<'a>, known: &[&'a str]) -> arbitrary::Result<&'a str> {
    if u.ratio(3, 4)? {
        Ok(*u.choose(known)?)
    } else {
        <&str>::arbitrary(u)
    }
}

fn maybe<'a>(u: &mut Unstructured<'a>, known: &[&'a str]) -> arbitrary::Result<Option<&'a str>> {
    if u.ratio(1, 5)? {
        Ok(None)
    } else {
        pick(u, known).map(Some)
    }
}

/// One request through the Worker's checks, as `edge-worker` runs them.
pub fn classify_request(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = classify_request_from(&mut u);
}

fn classify_request_from(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    const ORIGINS: [&str; 3] = ["https://a.example", "http://127.0.0.1:5173", "null"];
    let rules = AccessRules::from_vars(
        maybe(u, &["*", "https://a.example", "https://a.example, http://127.0.0.1:5173"])?,
        maybe(u, &["s3cret", ""])?,
        maybe(u, &["65536", "784", "100"])?,
    );
    let Ok(rules) = rules else { return Ok(()) };
    let head = RequestHead {
        method: pick(u, &["POST", "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PROPFIND"])?,
        path: pick(
            u,
            &[
                "/v1/classify",
                "/v1/health",
                "/v1/models",
                "/v1/classify/",
                "/../v1/classify",
                "/",
                "/v1/models/mnist",
                "/v1/models/mnist/classify",
                "/v1/models/mnist/files/0000000000000000000000000000000000000000000000000000000000000000",
                "/v1/models/../classify",
                "/v1/models/mnist/large.onnx",
            ],
        )?,
        origin: maybe(u, &ORIGINS)?,
        authorization: maybe(u, &["Bearer s3cret", "Bearer s3cre", "Basic s3cret", "Bearer "])?,
        content_type: maybe(
            u,
            &[
                "application/octet-stream",
                "APPLICATION/Octet-Stream; x=1",
                "application/json",
                "image/png",
                "image/jpeg",
            ],
        )?,
        content_length: maybe(u, &["784", "0", "70000", "-1", "18446744073709551616", " 784 "])?,
    };
    let body: Vec<u8> = if u.ratio(1, 2)? { vec![u.arbitrary()?; 784] } else { u.arbitrary()? };
    let admitted = match rules.admit(&head) {
        Ok(a) => a,
        Err(refused) => {
            check_refusal(&refused.error);
            if let Some(o) = &refused.allow_origin {
                assert!(o == "*" || Some(o.as_str()) == head.origin, "CORS origin {o} was not the request's");
            }
            return Ok(());
        }
    };
    if matches!(admitted.route, protocol::Route::Classify { .. }) {
        assert!(head.content_type.is_some(), "classify admitted without a content type");
        // A 784-byte set: without MAX_BODY_BYTES its own cap is its input length (ModelSet::largest_body).
        let cap = rules.max_body.unwrap_or(784);
        let encoding = head.content_type.and_then(SampleEncoding::from_content_type).expect("an admitted type");
        if let Err(e) = protocol::check_classify_body(&body, encoding, 784, cap) {
            check_refusal(&e);
        } else {
            assert!(!body.is_empty() && body.len() <= cap);
            assert!(encoding != SampleEncoding::Raw || body.len() == 784);
        }
    }
    Ok(())
}

fn check_refusal(e: &protocol::ApiError) {
    assert!((400..500).contains(&e.status()), "refusal with status {}: {e:?}", e.status());
    assert!(e.message.chars().count() <= MAX_ERROR_MESSAGE, "error message of {} characters", e.message.len());
    let back: ErrorBody = serde_json::from_str(&e.to_json()).expect("the error JSON parses");
    assert_eq!(&back.error, e);
}

/// Preprocessing of any input contract and any number of pixels.
pub fn preprocess(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = preprocess_from(&mut u);
}

fn preprocess_from(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let dim = |u: &mut Unstructured<'_>| u.int_in_range(1..=40usize);
    let (c, h, w) = (u.int_in_range(1..=4usize)?, dim(u)?, dim(u)?);
    let nhwc: bool = u.arbitrary()?;
    let (scale, mean, std): (f32, f32, f32) = if u.ratio(1, 2)? { (1.0 / 255.0, 0.5, 0.25) } else { u.arbitrary()? };
    let shape = if nhwc { [1, h, w, c] } else { [1, c, h, w] };
    let json = serde_json::json!({
        "schema_version": 1, "name": "fuzz",
        "input": { "shape": shape, "layout": if nhwc { "NHWC" } else { "NCHW" }, "dtype": "u8",
                   "normalize": { "scale": scale, "mean": mean, "std": std } },
        "classes": ["a", "b"],
        "models": { "t": { "file": "t.onnx", "sha256": "0".repeat(64), "input_name": "x", "output": "logits", "test_accuracy": 0.5 } }
    });
    let m = match Manifest::from_json(&json.to_string()) {
        Ok(m) => m,
        Err(e) => {
            // JSON has no NaN or infinity: those arrive as `null` and fail to parse; every other
            // refusal names the input field.
            let json_cannot_say = ![scale, mean, std].iter().all(|v| v.is_finite());
            assert!(
                (json_cannot_say && matches!(e, Error::ManifestParse(_))) || e.to_string().contains("input."),
                "an input contract error that names no input field: {e}"
            );
            return Ok(());
        }
    };
    let pixels: Vec<u8> = if u.ratio(1, 2)? { vec![u.arbitrary()?; c * h * w] } else { u.arbitrary()? };
    let pre = Preprocessor::new(&m);
    match pre.run(&pixels) {
        Ok(values) => {
            assert_eq!(pixels.len(), c * h * w);
            assert_eq!(values.len(), pixels.len());
            assert!(values.iter().all(|v| v.is_finite()), "non-finite model input");
        }
        Err(e) => {
            assert_ne!(pixels.len(), c * h * w, "the right length was refused: {e}");
            assert!(
                matches!(e, Error::InputLength { expected, actual } if expected == c * h * w && actual == pixels.len())
            );
        }
    }
    Ok(())
}

/// Any policy configuration, any probability vector, any feedback.
pub fn policy_decide(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let _ = policy_decide_from(&mut u);
}

fn float(u: &mut Unstructured<'_>) -> arbitrary::Result<f32> {
    if u.ratio(3, 4)? {
        Ok(u.int_in_range(0..=1000u16)? as f32 / 1000.0)
    } else {
        u.arbitrary()
    }
}

fn policy_decide_from(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let config = match u.int_in_range(0..=7u8)? {
        0 => PolicyConfig::MaxProb { threshold: float(u)? },
        1 => PolicyConfig::Margin { threshold: float(u)? },
        2 => PolicyConfig::Entropy { threshold: float(u)? },
        3 => PolicyConfig::LogisticTop2 {
            bias: u.arbitrary()?,
            w1: u.arbitrary()?,
            w2: u.arbitrary()?,
            threshold: float(u)?,
        },
        4 => PolicyConfig::OnlineHedge {
            beta: float(u)?,
            bins: u.int_in_range(0..=300usize)?,
            eta: float(u)?,
            explore: float(u)?,
            seed: u.arbitrary()?,
        },
        5 => PolicyConfig::EeHi { exit: float(u)?, offload: float(u)?, hi: float(u)? },
        6 => PolicyConfig::AlwaysLocal,
        _ => PolicyConfig::AlwaysOffload,
    };
    let Ok(mut policy) = config.build() else { return Ok(()) };
    for _ in 0..u.int_in_range(1..=8u8)? {
        let mut probs: Vec<f32> = (0..u.int_in_range(0..=40usize)?).map(|_| float(u)).collect::<Result<_, _>>()?;
        if u.ratio(2, 3)? {
            // Often a real distribution, so the valid path is explored too.
            let sum: f32 = probs.iter().map(|p| p.abs()).sum();
            if sum.is_finite() && sum > 0.0 {
                probs.iter_mut().for_each(|p| *p = p.abs() / sum);
            }
        }
        let valid = validate_probs(&probs).is_ok();
        match policy.decide(&probs) {
            Ok(d) => {
                assert!(valid, "{config:?} decided on invalid probabilities {probs:?}");
                assert!(d.score.is_finite() && (0.0..=1.0).contains(&d.score), "{config:?}: score {}", d.score);
                if let Some(t) = policy.threshold() {
                    assert!(t.is_finite() && (0.0..=1.0).contains(&t), "{config:?}: threshold {t}");
                }
                let remote = u.int_in_range(0..=probs.len())?;
                let local = u.int_in_range(0..=probs.len())?;
                let fb = Feedback { probs: &probs, local_label: local, remote_label: remote, explored: d.explored };
                policy.observe(&fb).expect("feedback on valid probabilities is accepted");
            }
            Err(e) => assert!(!valid, "{config:?} refused valid probabilities {probs:?}: {e}"),
        }
        match policy.decide_at_exit_head(&probs) {
            Ok(Some(d)) => {
                assert!(valid && policy.uses_exit_head(), "{config:?} stopped at the exit head on {probs:?}");
                assert!(d.score.is_finite() && (0.0..=1.0).contains(&d.score), "{config:?}: score {}", d.score);
            }
            Ok(None) => assert!(valid, "{config:?} accepted invalid exit-head probabilities {probs:?}"),
            Err(e) => assert!(!valid, "{config:?} refused valid exit-head probabilities {probs:?}: {e}"),
        }
    }
    Ok(())
}

/// A Worker's answer as the client parses it.
pub fn classify_response(data: &[u8]) {
    let Some((&classes, text)) = data.split_first() else { return };
    let classes = 1 + classes as usize % 16;
    let text = String::from_utf8_lossy(text);
    let _ = serde_json::from_str::<ErrorBody>(&text);
    if let Ok(r) = ClassifyResponse::from_json(&text, classes) {
        assert_eq!(r.probs.len(), classes);
        assert!(validate_probs(&r.probs).is_ok(), "accepted probabilities {:?}", r.probs);
        let label = r.label as usize;
        assert!(label < classes);
        assert!(r.probs.iter().all(|&p| p <= r.probs[label]), "label {label} is not the argmax of {:?}", r.probs);
    }
}

/// A split-route body as the Worker reads it, and features through the client's quantisation.
pub fn split_features(data: &[u8]) {
    use hiedge_core::runtime::{split::QuantizedFeatures, Features};
    let Some((head, body)) = data.split_first_chunk::<2>() else { return };
    let feature_len = 1 + u16::from_le_bytes(*head) as usize % 2048;
    match protocol::check_features_body(body, feature_len, 4096) {
        Ok(_) => {
            let q = QuantizedFeatures::from_bytes(body, feature_len).expect("checked bodies read");
            let f = q.dequantize();
            assert_eq!(f.len(), feature_len);
            assert!(f.as_slice().iter().all(|v| v.is_finite()), "accepted features dequantise to non-finite values");
        }
        Err(e) => check_refusal(&e),
    }
    // The same bytes as floats: quantised, they always make a body the Worker accepts.
    let floats: Vec<f32> = body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if floats.is_empty() {
        return;
    }
    let q = QuantizedFeatures::quantize(&Features::new(floats.clone()));
    let wire = q.to_bytes();
    let read = QuantizedFeatures::from_bytes(&wire, floats.len());
    let finite: Vec<f32> = floats.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    // A range too wide for f32 (its largest value, offset + 255 * scale, overflows) is the one case
    // the body cannot carry; the Worker refuses it and the client falls back.
    if finite.is_empty() || (lo + 255.0 * ((hi - lo) / 255.0)).is_finite() {
        let read = read.unwrap_or_else(|e| panic!("quantised {floats:?} makes a refused body: {e}"));
        assert_eq!(read, q);
    }
}

/// An encoded image under one of the protocol's image types: decoding never panics, and what
/// decodes is within the cap and converts to model inputs of the right length.
pub fn decode_image(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let encoding = [SampleEncoding::Png, SampleEncoding::Jpeg, SampleEncoding::Webp][pick as usize % 3];
    let Ok(decoded) = decode::decode_image(bytes, encoding) else { return };
    let count = decoded.width * decoded.height;
    assert!(count > 0 && count <= MAX_DECODED_PIXELS, "a {}x{} image decoded", decoded.width, decoded.height);
    assert_eq!(decoded.pixels.len(), count * decoded.format.bytes_per_pixel());
    let image = decoded.image().expect("a decoded image is a valid image");
    for (json, len) in [(FUZZ_GRAY_28, 784), (FUZZ_RGB_16, 768)] {
        let manifest = Manifest::from_json(json).expect("the fuzz manifests are valid");
        let pixels = to_model_pixels(&image, &manifest.input).expect("a decoded image converts");
        assert_eq!(pixels.len(), len);
    }
}

const FUZZ_GRAY_28: &str = r#"{"schema_version":2,"name":"g","input":{"shape":[1,1,28,28],"layout":"NCHW","dtype":"u8",
  "normalize":{"scale":0.00392156862745098,"mean":0.5,"std":0.5}},"classes":["a","b"],
  "models":{"t":{"file":"t.onnx","sha256":"0000000000000000000000000000000000000000000000000000000000000000",
  "input_name":"x","output":"logits","test_accuracy":0.5}}}"#;

const FUZZ_RGB_16: &str = r#"{"schema_version":2,"name":"c","input":{"shape":[1,3,16,16],"layout":"NCHW","dtype":"u8",
  "normalize":{"scale":0.00392156862745098,"mean":0.5,"std":0.5},"resize":"center_crop"},"classes":["a","b"],
  "models":{"t":{"file":"t.onnx","sha256":"0000000000000000000000000000000000000000000000000000000000000000",
  "input_name":"x","output":"logits","test_accuracy":0.5}}}"#;
