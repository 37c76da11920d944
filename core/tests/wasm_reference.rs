//! The reference file the browser tests compare the wasm build against
//! (`wasm-client/tests/native_reference.json`): native tract agrees with it within the stated
//! tolerances, and the comparison rules catch real changes.

#[path = "support/committed.rs"]
mod committed;
#[path = "support/reference.rs"]
mod reference;

use std::path::PathBuf;

use hiedge_core::session::HiSession;
use hiedge_core::{Manifest, Model, PolicyConfig};

use committed::{clock, fixture, manifest_json, models_dir};

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
                written by core/tests/wasm_reference.rs with HIEDGE_BLESS=1"
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

/// Native tract's probabilities of the real-size set's models on the two samples.
fn zoo_native() -> reference::ZooReference {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/zoo-rgb");
    let manifest = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let run = |name: &str| {
        let file = &manifest.model(name).unwrap().file;
        let model = Model::load(&manifest, name, &std::fs::read(dir.join(file)).unwrap()).unwrap();
        reference::zoo_samples().iter().map(|s| model.predict(s, 1.0).unwrap().probs).collect()
    };
    reference::ZooReference {
        about: "native tract, models/zoo-rgb's tiny and large models on reference::zoo_samples(), on one machine; \
                compared within ZOO_PROB_TOL (core/tests/support/reference.rs), never as text; \
                written by core/tests/wasm_reference.rs with HIEDGE_BLESS=1"
            .into(),
        tiny: run("tiny"),
        large: run("large"),
    }
}

/// The browser test of the real-size set (wasm-client/tests/web.rs) compares the wasm build with
/// `zoo_reference.json`; native tract here agrees with it within the stated tolerance, and a
/// probability moved past it is caught. `HIEDGE_BLESS=1` rewrites it.
#[test]
fn zoo_reference_file_agrees_with_native_tract_within_tolerance() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wasm-client/tests/zoo_reference.json");
    let native = zoo_native();
    if std::env::var("HIEDGE_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, serde_json::to_string_pretty(&native).unwrap() + "\n").unwrap();
    }
    let committed: reference::ZooReference = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} does not parse ({e}): rerun this test with HIEDGE_BLESS=1", path.display()));
    for (what, want, got) in [("tiny", &committed.tiny, &native.tiny), ("large", &committed.large, &native.large)] {
        reference::compare_zoo(want, got).unwrap_or_else(|e| panic!("{}: {what}: {e}", path.display()));
        let mut moved = got.clone();
        moved[1][3] += 2.0 * reference::ZOO_PROB_TOL;
        assert!(reference::compare_zoo(want, &moved).unwrap_err().contains("sample 1"), "{what}");
    }
}
