//! The committed Fashion-MNIST set and its parity fixture, as the integration tests load them.
//! Included with `#[path]` by `session.rs`, `service.rs` and `wasm_reference.rs`.

#![allow(dead_code)] // each includer uses a different part

use std::path::PathBuf;
use std::time::Instant;

use hiedge_core::session::HiSession;
use hiedge_core::{Manifest, Model, PolicyConfig};
use hiedge_eval::fixture::Fixture;

/// The committed set's directory.
pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fashion-mnist")
}

/// Its manifest, as committed.
pub fn manifest_json() -> String {
    std::fs::read_to_string(models_dir().join("manifest.json")).unwrap()
}

/// Its parity fixture: images, labels and onnxruntime's logits of both models.
pub fn fixture(manifest: &Manifest) -> Fixture {
    Fixture::load(&models_dir().join("fixture"), &["tiny", "large"], manifest.input_len(), manifest.classes.len())
        .unwrap()
}

/// A session on its tiny model with `policy`.
pub fn session(policy: PolicyConfig) -> HiSession {
    let manifest = Manifest::from_json(&manifest_json()).unwrap();
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(models_dir().join("tiny.nnef.tar")).unwrap()).unwrap();
    HiSession::new(manifest, tiny, policy).unwrap()
}

/// Milliseconds since the call, from the real clock.
pub fn clock() -> impl Fn() -> f64 {
    let start = Instant::now();
    move || start.elapsed().as_secs_f64() * 1e3
}

/// Softmax in f64, written here so the service is checked against onnxruntime's logits with
/// arithmetic that is not the code under test.
pub fn softmax_f64(logits: &[f32], temperature: f32) -> Vec<f64> {
    let t = temperature as f64;
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / t));
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 / t - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}
