//! The client session and the Worker's model service on the committed models, natively, plus the
//! reference file the browser tests compare the wasm build against.

use std::path::PathBuf;
use std::time::Instant;

use hiedge_core::fixture::Fixture;
use hiedge_core::protocol::ClassifyResponse;
use hiedge_core::server::ModelService;
use hiedge_core::session::{HiSession, Outcome, RemoteOutcome};
use hiedge_core::{Manifest, Model, PolicyConfig};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fashion-mnist")
}

fn manifest_json() -> String {
    std::fs::read_to_string(models_dir().join("manifest.json")).unwrap()
}

fn fixture(manifest: &Manifest) -> Fixture {
    Fixture::load(&models_dir().join("fixture"), &["tiny", "large"], manifest.input_len(), manifest.classes.len())
        .unwrap()
}

fn session(policy: PolicyConfig) -> HiSession {
    let manifest = Manifest::from_json(&manifest_json()).unwrap();
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(models_dir().join("tiny.onnx")).unwrap()).unwrap();
    HiSession::new(manifest, tiny, policy).unwrap()
}

fn clock() -> impl Fn() -> f64 {
    let start = Instant::now();
    move || start.elapsed().as_secs_f64() * 1e3
}

#[test]
fn session_keeps_offloads_and_falls_back_without_losing_samples() {
    let mut s = session(PolicyConfig::AlwaysOffload);
    let fx = fixture(s.manifest());
    let clock = clock();
    let response = |label: u32| {
        let mut probs = vec![0.0; 10];
        probs[label as usize] = 1.0;
        ClassifyResponse { label, probs, model: "large@test".into(), infer_ms: None }
    };
    let local = s.run_local(fx.image(0), &clock).unwrap();
    assert!(local.decision.is_offload());
    let r = s.finish(local, RemoteOutcome::Answered { response: response(3), round_trip_ms: 12.5 }, clock()).unwrap();
    assert_eq!((r.decision, r.label, r.remote_label, r.bytes_sent), (Outcome::Offloaded, 3, Some(3), 784));
    assert_eq!((r.timings.round_trip_ms, r.timings.remote_ms), (12.5, None));

    let local = s.run_local(fx.image(1), &clock).unwrap();
    let local_label = local.prediction.label;
    let r = s
        .finish(local, RemoteOutcome::Failed { reason: "timeout after 10 ms".into(), round_trip_ms: 10.0 }, clock())
        .unwrap();
    assert_eq!((r.decision, r.label, r.remote_label), (Outcome::Fallback, local_label, None));
    assert_eq!(r.fallback_reason.as_deref(), Some("timeout after 10 ms"));

    // Offload decided but no request made: a caller bug, reported, not a silent local answer.
    let local = s.run_local(fx.image(2), &clock).unwrap();
    assert!(s.finish(local, RemoteOutcome::NotAsked, clock()).is_err());

    s.set_policy(PolicyConfig::AlwaysLocal).unwrap();
    let local = s.run_local(fx.image(3), &clock).unwrap();
    let r = s.finish(local, RemoteOutcome::NotAsked, clock()).unwrap();
    assert_eq!((r.decision, r.bytes_sent, r.offload_wanted), (Outcome::Local, 0, false));
    assert!(r.timings.total_ms >= r.timings.local_ms);

    let st = s.stats();
    assert_eq!((st.samples, st.local, st.offloaded, st.fallback), (3, 1, 1, 1));
    assert!((st.offload_fraction - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(st.bytes_sent, 2 * 784);
    assert!((st.mean_round_trip_ms - 11.25).abs() < 1e-9);
    assert!(s.check_input(783).unwrap_err().to_string().contains("783"));
}

#[test]
fn online_hedge_learns_from_remote_labels_in_a_session() {
    let mut s = session(PolicyConfig::online_hedge(0.3));
    let fx = fixture(s.manifest());
    let clock = clock();
    let start = s.run_local(fx.image(0), &clock).unwrap();
    let first_threshold = s.finish(start, RemoteOutcome::LocalOnly, clock()).unwrap().threshold;
    let mut last = first_threshold;
    for i in 0..400 {
        let local = s.run_local(fx.image(i), &clock).unwrap();
        let remote = if local.decision.is_offload() {
            let logits = fx.reference_logits("large", i).unwrap();
            let label = hiedge_core::model::argmax(logits);
            let probs = hiedge_core::model::softmax(logits, 1.0);
            RemoteOutcome::Answered {
                response: ClassifyResponse { label: label as u32, probs, model: "large".into(), infer_ms: None },
                round_trip_ms: 1.0,
            }
        } else {
            RemoteOutcome::NotAsked
        };
        last = s.finish(local, remote, clock()).unwrap().threshold;
    }
    assert!(first_threshold.is_some() && last.is_some());
    assert_ne!(first_threshold, last, "the Hedge threshold never moved after 400 samples with feedback");
    let st = s.stats();
    assert!(st.offloaded > 0 && st.local > 0, "{st:?}");
}

#[test]
fn profiling_names_every_operation_and_times_them() {
    let s = session(PolicyConfig::AlwaysLocal);
    let fx = fixture(s.manifest());
    let ops = s.model().profile(fx.image(0), 20, &clock()).unwrap();
    assert!(ops.len() >= 3, "{ops:?}");
    assert!(ops.windows(2).all(|w| w[0].ms >= w[1].ms), "slowest first");
    assert!(ops[0].ms > 0.0 && ops.iter().all(|o| !o.op.is_empty()));
    assert!(s.model().profile(&[0u8; 3], 1, &clock()).is_err());
}

#[test]
fn model_service_matches_native_tract_and_loads_lazily() {
    let json = manifest_json();
    let manifest = Manifest::from_json(&json).unwrap();
    let bytes: &'static [u8] = Box::leak(std::fs::read(models_dir().join("large.onnx")).unwrap().into_boxed_slice());
    let service = ModelService::new(&json, "large", bytes).unwrap();
    assert!(!service.health().loaded);
    assert_eq!(service.input_len(), 784);
    let large = Model::load(&manifest, "large", bytes).unwrap();
    let fx = fixture(&manifest);
    let clock = clock();
    for i in 0..20 {
        let r = service.classify(fx.image(i), &clock).unwrap();
        let want = large.predict(fx.image(i), 1.0).unwrap();
        assert_eq!(r.label as usize, want.label);
        assert_eq!(r.probs, want.probs);
        assert!(r.model.starts_with("large@"));
        assert!(r.infer_ms.is_some(), "a native clock advances during inference");
    }
    assert!(service.health().loaded);
    let frozen = || 42.0;
    assert_eq!(service.classify(fx.image(0), &frozen).unwrap().infer_ms, None, "a frozen clock must give null");

    let mut tampered = std::fs::read(models_dir().join("large.onnx")).unwrap();
    tampered[100] ^= 0xff;
    assert!(ModelService::new(&json, "large", Box::leak(tampered.into_boxed_slice())).is_err());
}

/// The browser tests (wasm-client/tests/web.rs) compare the wasm build against this file: the tiny
/// model's labels and probabilities from native tract on the first 50 fixture images, and every
/// calibrated policy's decisions on those probabilities. `HIEDGE_BLESS=1` rewrites it.
#[test]
fn wasm_reference_file_is_native_tract() {
    const N: usize = 50;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasm-client/tests/native_reference.json");
    let manifest = Manifest::from_json(&manifest_json()).unwrap();
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(models_dir().join("tiny.onnx")).unwrap()).unwrap();
    let fx = fixture(&manifest);
    let predictions: Vec<_> = (0..N).map(|i| tiny.predict(fx.image(i), manifest.temperature()).unwrap()).collect();
    let mut policies = serde_json::Map::new();
    for kind in ["max_prob", "margin", "entropy", "logistic_top2", "online_hedge", "always_local", "always_offload"] {
        let config = PolicyConfig::calibrated_kind(&manifest, kind).unwrap();
        let mut policy = config.build().unwrap();
        let decisions: Vec<_> = predictions.iter().map(|p| policy.decide(&p.probs).unwrap()).collect();
        policies.insert(kind.into(), serde_json::json!({ "config": config, "decisions": decisions }));
    }
    // EE-HI through a session with the early-exit model: the stage, local label and decision per image.
    let ee = hiedge_core::early_exit::EarlyExitModel::load(
        &manifest,
        &std::fs::read(models_dir().join("ee_stage1.onnx")).unwrap(),
        &std::fs::read(models_dir().join("ee_stage2.onnx")).unwrap(),
    )
    .unwrap();
    let ee_config = PolicyConfig::calibrated_kind(&manifest, "ee_hi").unwrap();
    let mut ee_session = HiSession::with_early_exit(manifest.clone(), tiny.clone(), Some(ee), ee_config.clone()).unwrap();
    let clock = clock();
    let ee_steps: Vec<_> = (0..N)
        .map(|i| {
            let step = ee_session.run_local(fx.image(i), &clock).unwrap();
            serde_json::json!({ "stage": step.stage, "label": step.prediction.label, "offload": step.decision.is_offload() })
        })
        .collect();
    let stages: Vec<_> = ee_steps.iter().map(|s| s["stage"].as_str().unwrap().to_string()).collect();
    for stage in ["exit", "stage2"] {
        assert!(stages.iter().any(|s| s == stage), "no EE-HI sample took the `{stage}` path in {N}");
    }
    assert!(HiSession::new(manifest.clone(), tiny.clone(), ee_config.clone()).is_err(), "ee_hi without the model");
    let reference = serde_json::json!({
        "ee_hi": { "config": ee_config, "steps": ee_steps },
        "about": "native tract, tiny model, first 50 images of models/fashion-mnist/fixture; written by core/tests/session_and_service.rs",
        "labels": predictions.iter().map(|p| p.label).collect::<Vec<_>>(),
        "probs": predictions.iter().map(|p| &p.probs).collect::<Vec<_>>(),
        "policies": policies,
    });
    let text = serde_json::to_string_pretty(&reference).unwrap() + "\n";
    if std::env::var("HIEDGE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == text, "{} is stale: rerun this test with HIEDGE_BLESS=1", path.display());
}
