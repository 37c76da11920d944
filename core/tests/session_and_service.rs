//! The client session and the Worker's model service on the committed models, natively, plus the
//! reference file the browser tests compare the wasm build against.

use std::path::PathBuf;
use std::time::Instant;

#[path = "support/reference.rs"]
mod reference;

use hiedge_core::policy::tradeoff::{CalibrationTarget, ScoredSample};
use hiedge_core::protocol::ClassifyResponse;
use hiedge_core::server::{model_set_list, parse_set_index, ModelService, ModelSet};
use hiedge_core::session::{HiSession, Mode, Outcome, RemoteOutcome, Side, Why};
use hiedge_core::{Manifest, Model, PolicyConfig};
use hiedge_eval::fixture::Fixture;

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
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(models_dir().join("tiny.nnef.tar")).unwrap()).unwrap();
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
            let label = hiedge_core::prob::argmax(logits);
            let probs = hiedge_core::prob::softmax(logits, 1.0);
            RemoteOutcome::Answered {
                response: ClassifyResponse { label: label as u32, probs, model: "large".into(), infer_ms: None },
                round_trip_ms: 1.0,
            }
        } else {
            RemoteOutcome::NotAsked
        };
        last = s.finish(local, remote, clock()).unwrap().threshold;
    }
    let (first, last) = (first_threshold.unwrap(), last.unwrap());
    let temperature = s.manifest().temperature();
    // What the learnt threshold should achieve, computed independently of the policy code from
    // onnxruntime's outputs in the fixture: the cost per sample beta * offloaded + errors kept, on
    // 400 images it did not learn from (400..800; the large model's label taken as the truth, as
    // the session does).
    let cost = |theta: f32| {
        (400..800)
            .map(|i| {
                let tiny = softmax_f64(fx.reference_logits("tiny", i).unwrap(), temperature);
                let p1 = tiny.iter().cloned().fold(0.0, f64::max);
                let argmax = |v: &[f64]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
                let large = softmax_f64(fx.reference_logits("large", i).unwrap(), 1.0);
                if p1 <= theta as f64 {
                    0.3
                } else {
                    (argmax(&tiny) != argmax(&large)) as u8 as f64
                }
            })
            .sum::<f64>()
            / 400.0
    };
    let best = (1..=100).map(|b| cost(b as f32 / 100.0)).fold(f64::INFINITY, f64::min);
    assert!(
        cost(last) < cost(first),
        "learning from remote labels did not lower the cost: threshold {first} -> {last}, cost {} -> {} (best {best})",
        cost(first),
        cost(last)
    );
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

/// Softmax in f64, written here so the service is checked against onnxruntime's logits with
/// arithmetic that is not the code under test.
fn softmax_f64(logits: &[f32], temperature: f32) -> Vec<f64> {
    let t = temperature as f64;
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / t));
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 / t - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[test]
fn model_service_agrees_with_onnxruntime_and_loads_lazily() {
    let json = manifest_json();
    let manifest = Manifest::from_json(&json).unwrap();
    let bytes = std::fs::read(models_dir().join("large.nnef.tar")).unwrap();
    let service = ModelService::new(&json, "large", bytes).unwrap();
    assert!(!service.health().loaded);
    assert_eq!(service.input_len(), 784);
    let fx = fixture(&manifest);
    let clock = clock();
    // The committed fixture holds onnxruntime's large-model logits (models/train/train.py): an
    // independent implementation. tract must give the same label and probabilities within 1e-4.
    for i in 0..20 {
        let r = service.classify(fx.image(i), &clock).unwrap();
        let want = softmax_f64(fx.reference_logits("large", i).unwrap(), 1.0);
        let want_label = (0..want.len()).max_by(|&a, &b| want[a].total_cmp(&want[b])).unwrap();
        assert_eq!(r.label as usize, want_label, "image {i}");
        assert_eq!(r.probs.len(), want.len());
        for (g, w) in r.probs.iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= 1e-4, "image {i}: {g} vs onnxruntime {w}");
        }
        assert!(r.model.starts_with("large@"));
        assert!(r.infer_ms.is_some(), "a native clock advances during inference");
    }
    assert!(service.health().loaded);
    let frozen = || 42.0;
    assert_eq!(service.classify(fx.image(0), &frozen).unwrap().infer_ms, None, "a frozen clock must give null");

    let mut tampered = std::fs::read(models_dir().join("large.nnef.tar")).unwrap();
    tampered[100] ^= 0xff;
    assert!(ModelService::new(&json, "large", tampered).is_err());
}

#[test]
fn a_model_set_serves_its_device_files_and_never_its_large_model() {
    let json = manifest_json();
    let set = ModelSet::new("fashion-mnist", &json).unwrap();
    let m = set.manifest();
    assert_eq!(set.server_model_file(), "large.nnef.tar");
    let files = set.device_files();
    let roles: Vec<&str> = files.iter().map(|(f, _)| f.role.as_str()).collect();
    assert_eq!(roles, ["tiny", "early_exit.stage1", "early_exit.stage2", "split.trunk"]);
    for (f, file) in &files {
        assert_eq!(f.path, format!("/v1/models/fashion-mnist/files/{}", f.sha256));
        assert_eq!(&set.device_file(&f.sha256).unwrap(), file);
        // The file named is the one hashed.
        let bytes = std::fs::read(models_dir().join(file)).unwrap();
        assert_eq!(hiedge_core::runtime::sha256_hex(&bytes), f.sha256);
    }
    let large = &m.model("large").unwrap().sha256;
    let e = set.device_file(large).unwrap_err();
    assert_eq!((e.status(), e.code), (404, hiedge_core::protocol::ErrorCode::NotFound));
    // The split tail stays at the edge too; features from another trunk are a conflict.
    let split = m.split.as_ref().unwrap();
    assert_eq!(set.device_file(&split.tail.sha256).unwrap_err().status(), 404);
    assert_eq!(set.split_tail_file(&split.trunk.sha256).unwrap(), "split_tail.nnef.tar");
    assert_eq!(set.split_tail_file(&"0".repeat(64)).unwrap_err().status(), 409);
    assert!(set.device_file(&"0".repeat(64)).is_err());
    let info = set.info();
    assert_eq!((info.input_length, info.classes.len()), (784, 10));
    assert_eq!(info.large, m.model("large").unwrap().id("large"));
    assert_eq!(info.classify, "/v1/models/fashion-mnist/classify");
    // A manifest under another directory name is refused, naming the field.
    let e = ModelSet::new("mnist", &json).unwrap_err().to_string();
    assert!(e.contains("`name`") && e.contains("mnist"), "{e}");
    // The index a deployment is published with.
    assert_eq!(parse_set_index(r#"{"sets":["mnist","fashion-mnist","mnist"]}"#).unwrap(), ["fashion-mnist", "mnist"]);
    for bad in [r#"{"sets":["../x"]}"#, r#"{"sets":["A"]}"#, r#"{"sets":[""]}"#, "[]", "nope"] {
        assert!(parse_set_index(bad).is_err(), "{bad}");
    }
    let list = model_set_list("fashion-mnist", &[set], vec![]);
    assert_eq!((list.default_set.as_str(), list.sets.len()), ("fashion-mnist", 1));
}

/// Native tract's outputs on the first 50 fixture images, as the reference file has them.
fn native_reference() -> reference::Reference {
    const N: usize = 50;
    let manifest = Manifest::from_json(&manifest_json()).unwrap();
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(models_dir().join("tiny.nnef.tar")).unwrap()).unwrap();
    let fx = fixture(&manifest);
    let predictions: Vec<_> = (0..N).map(|i| tiny.predict(fx.image(i), manifest.temperature()).unwrap()).collect();
    let mut policies = std::collections::BTreeMap::new();
    for kind in ["max_prob", "margin", "entropy", "logistic_top2", "online_hedge", "always_local", "always_offload"] {
        let config = PolicyConfig::calibrated_kind(&manifest, kind).unwrap();
        let mut policy = config.build().unwrap();
        let threshold = policy.threshold();
        let decisions = predictions.iter().map(|p| policy.decide(&p.probs).unwrap()).collect();
        policies.insert(kind.to_string(), reference::PolicyReference { config, threshold, decisions });
    }
    // EE-HI through a session with the early-exit model: the stage, local label and decision per image.
    let ee = hiedge_core::runtime::EarlyExitModel::load(
        &manifest,
        &std::fs::read(models_dir().join("ee_stage1.nnef.tar")).unwrap(),
        &std::fs::read(models_dir().join("ee_stage2.nnef.tar")).unwrap(),
    )
    .unwrap();
    let ee_config = PolicyConfig::calibrated_kind(&manifest, "ee_hi").unwrap();
    assert!(HiSession::new(manifest.clone(), tiny.clone(), ee_config.clone()).is_err(), "ee_hi without the model");
    let mut ee_session =
        HiSession::with_early_exit(manifest.clone(), tiny.clone(), Some(ee.clone()), ee_config.clone()).unwrap();
    let clock = clock();
    let steps = (0..N)
        .map(|i| {
            let step = ee_session.run_local(fx.image(i), &clock).unwrap();
            let exit_logits = ee.stage1(fx.image(i)).unwrap().0;
            let exit_p1 = hiedge_core::prob::top2(&hiedge_core::prob::softmax(&exit_logits, 1.0)).0;
            reference::EeStep {
                stage: serde_json::to_value(step.stage).unwrap().as_str().unwrap().to_string(),
                label: step.prediction.label,
                offload: step.decision.is_offload(),
                exit_p1,
                score: step.decision.score,
            }
        })
        .collect();
    reference::Reference {
        about: "native tract, tiny model, first 50 images of models/fashion-mnist/fixture, on one machine; \
                compared with tolerances (core/tests/support/reference.rs), never as text; \
                written by core/tests/session_and_service.rs with HIEDGE_BLESS=1"
            .into(),
        labels: predictions.iter().map(|p| p.label).collect(),
        probs: predictions.iter().map(|p| p.probs.clone()).collect(),
        policies,
        ee_hi: reference::EeReference { config: ee_config, steps },
    }
}

/// Checks `got` against the committed reference with the tolerances of `support/reference.rs`.
fn check_against(want: &reference::Reference, got: &reference::Reference) -> Result<(), String> {
    let got_labels = &got.labels;
    reference::compare_predictions(&want.labels, &want.probs, got_labels, &got.probs)?;
    if want.policies.len() != got.policies.len() {
        return Err(format!("{} policies, reference has {}", got.policies.len(), want.policies.len()));
    }
    for (kind, w) in &want.policies {
        let g = got.policies.get(kind).ok_or_else(|| format!("no `{kind}` decisions"))?;
        if g.config != w.config {
            return Err(format!("{kind}: configuration {:?}, reference {:?}", g.config, w.config));
        }
        reference::compare_decisions(kind, w, &g.decisions)?;
    }
    if got.ee_hi.config != want.ee_hi.config {
        return Err(format!("EE-HI configuration {:?}, reference {:?}", got.ee_hi.config, want.ee_hi.config));
    }
    reference::compare_ee_steps(&want.ee_hi, &got.ee_hi.steps)?;
    Ok(())
}

/// The browser tests (wasm-client/tests/web.rs) compare the wasm build against the committed
/// reference file. It must describe the committed models: native tract on this machine agrees with
/// it within the stated tolerances (not bit for bit: another CPU picks other SIMD kernels).
/// `HIEDGE_BLESS=1` rewrites it.
#[test]
fn wasm_reference_file_agrees_with_native_tract_within_tolerance() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasm-client/tests/native_reference.json");
    let native = native_reference();
    let stages: Vec<_> = native.ee_hi.steps.iter().map(|s| s.stage.as_str()).collect();
    for stage in ["exit", "stage2"] {
        assert!(stages.contains(&stage), "no EE-HI sample took the `{stage}` path in {}", stages.len());
    }
    if std::env::var("HIEDGE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, serde_json::to_string_pretty(&native).unwrap() + "\n").unwrap();
    }
    let committed: reference::Reference = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} does not parse ({e}): rerun this test with HIEDGE_BLESS=1", path.display()));
    if let Err(e) = check_against(&committed, &native) {
        panic!("{} disagrees with native tract: {e}. If the models changed, rerun with HIEDGE_BLESS=1", path.display());
    }
}

/// The comparison rules catch real changes and allow only what a different CPU can cause.
#[test]
fn reference_rules_catch_changes_beyond_the_tolerances() {
    let want = native_reference();
    assert_eq!(check_against(&want, &want), Ok(()));

    // Last-bit noise (well inside 1e-5) passes.
    let mut noisy = want.clone();
    noisy.probs[3][2] += 2e-6;
    noisy.policies.get_mut("max_prob").unwrap().decisions[3].score += 2e-6;
    assert_eq!(check_against(&want, &noisy), Ok(()));

    // A probability off by 2e-5, a changed label, a changed score: each is caught.
    let mut off = want.clone();
    off.probs[7][0] += 2e-5;
    assert!(check_against(&want, &off).unwrap_err().contains("image 7"));
    let mut relabelled = want.clone();
    relabelled.labels[4] = (relabelled.labels[4] + 1) % 10;
    assert!(check_against(&want, &relabelled).unwrap_err().contains("image 4"));
    let mut rescored = want.clone();
    rescored.policies.get_mut("entropy").unwrap().decisions[9].score += 1e-3;
    assert!(check_against(&want, &rescored).unwrap_err().contains("entropy, image 9"));

    // A flipped decision far from the threshold is caught; one whose score sits on the threshold is
    // allowed (up to the stated handful).
    let max_prob = &want.policies["max_prob"];
    let t = max_prob.threshold.unwrap();
    let far = (0..50).find(|&i| (max_prob.decisions[i].score - t).abs() > 0.01).unwrap();
    let mut flipped = want.clone();
    let d = &mut flipped.policies.get_mut("max_prob").unwrap().decisions[far];
    d.action = if d.is_offload() { hiedge_core::Action::Keep } else { hiedge_core::Action::Offload };
    assert!(check_against(&want, &flipped).unwrap_err().contains(&format!("max_prob, image {far}")));

    let mut borderline_want = want.clone();
    let mut borderline_got = want.clone();
    for i in 0..=reference::MAX_NEAR_THRESHOLD_FLIPS {
        let w = &mut borderline_want.policies.get_mut("max_prob").unwrap().decisions[i];
        w.score = t + 5e-6;
        let g = &mut borderline_got.policies.get_mut("max_prob").unwrap().decisions[i];
        g.score = t;
        g.action = if w.is_offload() { hiedge_core::Action::Keep } else { hiedge_core::Action::Offload };
        let result = check_against(&borderline_want, &borderline_got);
        if i < reference::MAX_NEAR_THRESHOLD_FLIPS {
            assert_eq!(result, Ok(()), "{} near-threshold flips", i + 1);
        } else {
            assert!(result.unwrap_err().contains("near-threshold flips"));
        }
    }

    // EE-HI: a changed stage far from the thresholds is caught.
    let mut ee = want.clone();
    let i = (0..50)
        .find(|&i| {
            let s = &want.ee_hi.steps[i];
            s.stage == "exit" && s.exit_p1 > 0.999
        })
        .expect("a confident exit");
    ee.ee_hi.steps[i].stage = "stage2".into();
    assert!(check_against(&want, &ee).unwrap_err().contains(&format!("EE-HI image {i}")));
}

/// The stream session with the real split trunk on the device and, for its requests, the real
/// services the Worker runs (split tail, large model), natively. A scripted clock drives admission.
#[test]
fn a_stream_answers_every_sample_once_and_skips_only_by_its_rule() {
    use hiedge_core::policy::planner::{PlannerConfig, SplitAction};
    use hiedge_core::runtime::split;
    use hiedge_core::server::SplitService;
    use hiedge_core::stream::{Step, StreamDecision, StreamSession};
    use std::cell::Cell;

    let json = manifest_json();
    let manifest = Manifest::from_json(&json).unwrap();
    let fx = fixture(&manifest);
    let sp = manifest.split.clone().unwrap();
    let trunk = split::load_trunk(&manifest, &std::fs::read(models_dir().join(&sp.trunk.file)).unwrap()).unwrap();
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(models_dir().join("tiny.nnef.tar")).unwrap()).unwrap();
    let tail = SplitService::new(&json, std::fs::read(models_dir().join(&sp.tail.file)).unwrap()).unwrap();
    let large = ModelService::new(&json, "large", std::fs::read(models_dir().join("large.nnef.tar")).unwrap()).unwrap();
    // `exit` left out: the manifest's calibrated threshold.
    let config = PlannerConfig { max_wait_ms: Some(100.0), explore_every: 4, ..Default::default() };
    let mut stream =
        StreamSession::new(manifest.clone(), "fashion-mnist", trunk, Some(tiny.clone()), Some(config)).unwrap();

    let now = Cell::new(0.0f64);
    let clock = || now.get();
    let mut results = Vec::new();
    for i in 0..200 {
        // Samples 100..110 arrived 500 ms before the device got to them: over the 100 ms budget.
        let arrived = if (100..110).contains(&i) { now.get() - 500.0 } else { now.get() };
        let index = stream.arrive(arrived);
        // The Worker is "down" for samples 150..170: requests fail.
        let down = (150..170).contains(&i);
        match stream.take(index, fx.image(i).to_vec(), arrived, &clock).unwrap() {
            Step::Done(r) => results.push(r),
            Step::Send(p) => {
                now.set(now.get() + 5.0);
                let outcome = if down {
                    RemoteOutcome::Failed { reason: "network error: scripted outage".into(), round_trip_ms: 5.0 }
                } else if p.path.ends_with("/classify") {
                    RemoteOutcome::Answered { response: large.classify(&p.body, &clock).unwrap(), round_trip_ms: 5.0 }
                } else {
                    let response = tail.classify(&p.body, 1 << 20, &clock).unwrap();
                    RemoteOutcome::Answered { response, round_trip_ms: 5.0 }
                };
                results.push(stream.finish(p, outcome, now.get()).unwrap());
            }
        }
        now.set(now.get() + 1.0);
    }
    assert_eq!(stream.config().exit, manifest.decision.as_ref().unwrap().split.map(|s| s.exit));
    let stats = stream.stats();
    let count = |d: StreamDecision| results.iter().filter(|r| r.decision == d).count() as u64;
    assert_eq!((stats.arrived, results.len()), (200, 200), "every sample answered exactly once");
    assert_eq!(stats.processed + stats.skipped, 200);
    assert_eq!(stats.skipped, 10, "exactly the ten late samples are skipped");
    assert!(results[100..110].iter().all(|r| r.decision == StreamDecision::Skipped && r.label.is_none()));
    assert!(results[100].reason.as_deref().unwrap().contains("waited 500.0 ms"));
    for (d, n) in [
        (StreamDecision::Exit, stats.exited),
        (StreamDecision::Features, stats.features),
        (StreamDecision::Raw, stats.raw),
        (StreamDecision::Device, stats.device),
        (StreamDecision::Fallback, stats.fallback),
    ] {
        assert_eq!(count(d), n, "{d:?}");
    }
    assert!(stats.exited > 100 && stats.features > 0 && stats.raw > 0, "{stats:?}");
    // During the outage: failed requests fall back to the tiny model's answer, then after three
    // failures the planner finishes on the device by plan (probing now and then).
    let outage = &results[150..170];
    assert!(outage.iter().any(|r| r.decision == StreamDecision::Fallback));
    assert!(
        outage.iter().any(|r| r.decision == StreamDecision::Device),
        "{:?}",
        outage.iter().map(|r| r.decision).collect::<Vec<_>>()
    );
    for r in outage.iter().filter(|r| matches!(r.decision, StreamDecision::Fallback | StreamDecision::Device)) {
        let i = r.index as usize;
        assert_eq!(r.label, Some(tiny.predict(fx.image(i), manifest.temperature()).unwrap().label));
    }
    assert!(
        results[175..].iter().any(|r| matches!(r.decision, StreamDecision::Features | StreamDecision::Raw)),
        "the network comes back"
    );
    // Remote answers are the services' own; exits are the exit head's.
    for r in &results {
        match r.decision {
            StreamDecision::Features => assert!(r.remote_model.as_deref().unwrap().starts_with("split_tail@")),
            StreamDecision::Raw => assert!(r.remote_model.as_deref().unwrap().starts_with("large@")),
            StreamDecision::Exit => assert_eq!(r.action, Some(SplitAction::Exit)),
            _ => {}
        }
    }
    let answered: Vec<_> = results.iter().filter(|r| r.label.is_some()).collect();
    let right = answered.iter().filter(|r| r.label == Some(fx.labels[r.index as usize] as usize)).count();
    let accuracy = right as f64 / answered.len() as f64;
    assert!(accuracy >= 0.88, "stream accuracy {accuracy}");
    eprintln!("stream: {stats:?}, accuracy {accuracy:.4}");
}

/// The Worker's answer for fixture image `i`: onnxruntime's large-model logits from the fixture.
fn large_answer(fx: &Fixture, i: usize) -> RemoteOutcome {
    let logits = fx.reference_logits("large", i).unwrap();
    RemoteOutcome::Answered {
        response: ClassifyResponse {
            label: hiedge_core::prob::argmax(logits) as u32,
            probs: hiedge_core::prob::softmax(logits, 1.0),
            model: "large@fixture".into(),
            infer_ms: None,
        },
        round_trip_ms: 5.0,
    }
}

fn failed() -> RemoteOutcome {
    RemoteOutcome::Failed { reason: "network error: refused".into(), round_trip_ms: 1.0 }
}

#[test]
fn every_mode_answers_where_it_says_and_says_why() {
    let mut s = session(PolicyConfig::calibrated(&Manifest::from_json(&manifest_json()).unwrap()).unwrap());
    let fx = fixture(s.manifest());
    let clock = clock();
    // Cascade: the route follows the decision module, on images it keeps and images it sends.
    let (mut kept, mut sent) = (0, 0);
    for i in 0..200 {
        let local = s.run_local(fx.image(i), &clock).unwrap();
        assert_eq!(local.route.send, local.decision.is_offload(), "image {i}");
        let remote = if local.route.send { large_answer(&fx, i) } else { RemoteOutcome::NotAsked };
        let r = s.finish(local, remote, clock()).unwrap();
        match r.decision {
            Outcome::Local => {
                kept += 1;
                assert_eq!((r.answered_by, r.why), (Side::Device, Why::Confident));
            }
            Outcome::Offloaded => {
                sent += 1;
                assert_eq!((r.answered_by, r.why), (Side::Worker, Why::Unsure));
            }
            Outcome::Fallback => panic!("no failure here"),
        }
    }
    assert!(kept > 100 && sent > 10, "kept {kept}, sent {sent}");

    // only_local and prefer_local: never a request, whatever the decision; offloadWanted still told.
    for mode in [Mode::OnlyLocal, Mode::PreferLocal] {
        s.set_mode(mode);
        for i in 0..60 {
            let local = s.run_local(fx.image(i), &clock).unwrap();
            assert!(!local.route.send);
            let wanted = local.decision.is_offload();
            let r = s.finish(local, RemoteOutcome::NotAsked, clock()).unwrap();
            assert_eq!((r.decision, r.answered_by, r.why, r.bytes_sent), (Outcome::Local, Side::Device, Why::Mode, 0));
            assert_eq!(r.offload_wanted, wanted);
        }
    }
    // prefer_remote: every sample is sent; a failure is answered on the device.
    s.set_mode(Mode::PreferRemote);
    let local = s.run_local(fx.image(0), &clock).unwrap();
    assert!(local.route.send && !local.decision.is_offload(), "image 0 is one the decision module keeps");
    let r = s.finish(local, large_answer(&fx, 0), clock()).unwrap();
    assert_eq!(
        (r.decision, r.answered_by, r.why, r.offload_wanted),
        (Outcome::Offloaded, Side::Worker, Why::Mode, false)
    );
    let local = s.run_local(fx.image(1), &clock).unwrap();
    let r = s.finish(local, failed(), clock()).unwrap();
    assert_eq!((r.decision, r.answered_by, r.why), (Outcome::Fallback, Side::Device, Why::Mode));
    // only_remote: a failure rejects (no device answer), an answer is the Worker's.
    s.set_mode(Mode::OnlyRemote);
    let local = s.run_local(fx.image(2), &clock).unwrap();
    let e = s.finish(local, failed(), clock()).unwrap_err();
    assert_eq!(e.code(), "RemoteUnavailable");
    assert!(e.to_string().contains("network error: refused"), "{e}");
    let local = s.run_local(fx.image(3), &clock).unwrap();
    assert_eq!(s.finish(local, large_answer(&fx, 3), clock()).unwrap().answered_by, Side::Worker);
    // A request for a sample routed to the device is a caller bug, reported.
    s.set_mode(Mode::OnlyLocal);
    let local = s.run_local(fx.image(4), &clock).unwrap();
    assert!(s.finish(local, large_answer(&fx, 4), clock()).is_err());
}

#[test]
fn the_hook_and_the_offload_cap_keep_samples_on_the_device() {
    let mut s = session(PolicyConfig::AlwaysOffload);
    let fx = fixture(s.manifest());
    let clock = clock();
    // The hook said no: answered on the device, flagged, counted.
    let mut local = s.run_local(fx.image(0), &clock).unwrap();
    local.withhold(Why::Refused);
    assert!(!s.admit_request(&mut local, 0.0));
    let r = s.finish(local, RemoteOutcome::NotAsked, clock()).unwrap();
    assert_eq!(
        (r.decision, r.why, r.offload_wanted, r.answered_by),
        (Outcome::Local, Why::Refused, true, Side::Device)
    );

    // At most 2 requests in any 60 s (clock readings in ms).
    s.set_offload_cap(Some(2));
    let mut admitted = Vec::new();
    for (i, now) in [0.0, 1_000.0, 2_000.0, 59_999.0, 60_000.0, 60_500.0, 61_000.0].into_iter().enumerate() {
        let mut local = s.run_local(fx.image(i), &clock).unwrap();
        let ok = s.admit_request(&mut local, now);
        admitted.push(ok);
        let remote = if ok { large_answer(&fx, i) } else { RemoteOutcome::NotAsked };
        let r = s.finish(local, remote, clock()).unwrap();
        assert_eq!(r.why, if ok { Why::Unsure } else { Why::OffloadCap }, "sample {i} at {now} ms");
    }
    // 0 and 1000 fill the window; 60000 frees the slot of 0, 61000 the slot of 1000.
    assert_eq!(admitted, [true, true, false, false, true, false, true]);
    let st = s.stats();
    assert_eq!((st.withheld, st.offloaded, st.local), (4, 4, 4), "1 refused + 3 over the cap; 4 sent");
    s.set_offload_cap(None);
    let mut local = s.run_local(fx.image(9), &clock).unwrap();
    assert!(s.admit_request(&mut local, 61_001.0));
}

#[test]
fn calibrating_on_labelled_samples_hits_its_target_on_held_out_ones() {
    let mut s = session(PolicyConfig::MaxProb { threshold: 0.5 });
    let fx = fixture(s.manifest());
    let clock = clock();
    // Scored as the browser's HiClient.calibrate does: the device model's score and whether each
    // model was right; the Worker's answers are onnxruntime's large-model logits.
    let scored = |s: &mut HiSession, range: std::ops::Range<usize>| -> Vec<ScoredSample> {
        range
            .map(|i| {
                let local = s.run_local(fx.image(i), &clock).unwrap();
                let large = hiedge_core::prob::argmax(fx.reference_logits("large", i).unwrap());
                ScoredSample {
                    score: s.calibration_rule().unwrap().score_unchecked(&local.prediction.probs),
                    local_right: local.prediction.label == fx.labels[i] as usize,
                    remote_right: large == fx.labels[i] as usize,
                }
            })
            .collect()
    };
    let (fit, held_out) = (scored(&mut s, 0..500), scored(&mut s, 500..1000));
    // Written out here, not by the code under test: share offloaded and accuracy at a threshold.
    let at = |samples: &[ScoredSample], t: f32| {
        let off = samples.iter().filter(|x| x.score <= t).count() as f64 / samples.len() as f64;
        let right = samples.iter().filter(|x| if x.score <= t { x.remote_right } else { x.local_right }).count();
        (off, right as f64 / samples.len() as f64)
    };

    let p = s.calibrate(&fit, CalibrationTarget::Offload(0.2)).unwrap();
    assert!(p.offloaded <= 0.2 && p.offloaded > 0.18, "{p:?}");
    assert_eq!(s.policy(), &PolicyConfig::MaxProb { threshold: p.threshold });
    assert_eq!(s.stats().calibrated_offload_fraction, Some(p.offloaded));
    let (off, _) = at(&held_out, p.threshold);
    assert!((off - 0.2).abs() <= 0.05, "held-out offload share {off} for target 0.2 (tolerance 0.05)");

    let local_acc = held_out.iter().filter(|x| x.local_right).count() as f64 / 500.0;
    let p = s.calibrate(&fit, CalibrationTarget::Accuracy(0.92)).unwrap();
    assert!(p.accuracy >= 0.92, "{p:?}");
    let (off, acc) = at(&held_out, p.threshold);
    assert!(acc >= 0.92 - 0.02, "held-out accuracy {acc} for target 0.92 (tolerance 0.02); tiny alone {local_acc}");
    assert!(off < 1.0, "it does not offload everything: {off}");

    assert_eq!(s.calibrate(&fit, CalibrationTarget::Accuracy(1.0)).unwrap_err().code(), "InvalidPolicy");
    s.set_policy(PolicyConfig::AlwaysLocal).unwrap();
    assert!(s.calibrate(&fit, CalibrationTarget::Offload(0.2)).unwrap_err().to_string().contains("has none"));
}

/// Overwrites the data of the tar member `member` (an NNEF tensor file: a 128-byte header, then
/// the values) with 0xFF bytes, which are f32 NaNs. The member's size, and so the tar, is unchanged.
fn poison_tensor(tar: &mut [u8], member: &str) {
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let name = String::from_utf8_lossy(&tar[at..at + 100]).trim_end_matches('\0').to_string();
        let size_field = String::from_utf8_lossy(&tar[at + 124..at + 136]).trim_matches(['\0', ' ']).to_string();
        let size = usize::from_str_radix(&size_field, 8).unwrap();
        if name == member {
            tar[at + 512 + 128..at + 512 + size].fill(0xFF);
            return;
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("no member {member}");
}

#[test]
fn a_model_that_answers_nan_gives_500_never_200() {
    let mut bytes = std::fs::read(models_dir().join("large.nnef.tar")).unwrap();
    poison_tensor(&mut bytes, "head/head.2/Gemm.c_add_axis_1.dat");
    let mut manifest: serde_json::Value = serde_json::from_str(&manifest_json()).unwrap();
    manifest["models"]["large"]["sha256"] = hiedge_core::runtime::sha256_hex(&bytes).into();
    let service = ModelService::new(&manifest.to_string(), "large", bytes).unwrap();
    let m = Manifest::from_json(&manifest_json()).unwrap();
    let e = service.classify(fixture(&m).image(0), &clock()).unwrap_err();
    assert_eq!(e.status(), 500, "{e}");
    assert!(e.detail.as_deref().is_some_and(|d| d.contains("is NaN")), "{:?}", e.detail);
    // What the caller gets names no file and no value.
    assert!(!e.to_json().contains("nnef") && !e.to_json().contains("NaN"), "{}", e.to_json());
}
