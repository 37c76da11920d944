//! tract, loading the committed NNEF archives, vs the onnxruntime reference outputs of their ONNX
//! sources committed with the models (first 1,000 test images),
//! plus the size budgets of the committed models.

use std::path::PathBuf;

use hiedge_core::prob::argmax;
use hiedge_core::runtime::{sha256_hex, ModelFormat};
use hiedge_core::{Error, Manifest, Model};
use hiedge_eval::fixture::Fixture;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fashion-mnist")
}

fn manifest() -> Manifest {
    Manifest::from_json(&std::fs::read_to_string(models_dir().join("manifest.json")).unwrap()).unwrap()
}

fn onnx(name: &str) -> Vec<u8> {
    std::fs::read(models_dir().join(format!("{name}.onnx"))).unwrap()
}

/// The file the manifest names for a model (`tiny`) or stage (`ee_stage1`, `split_tail`): the NNEF
/// archive `hiedge compile` wrote from the ONNX file of the same name, which onnxruntime's
/// reference outputs come from; these tests hold the archives to those outputs.
fn model_file(name: &str) -> Vec<u8> {
    let m = manifest();
    let (ee, sp) = (m.early_exit.as_ref(), m.split.as_ref());
    let file = match name {
        "ee_stage1" => &ee.unwrap().stage1.file,
        "ee_stage2" => &ee.unwrap().stage2.file,
        "split_trunk" => &sp.unwrap().trunk.file,
        "split_tail" => &sp.unwrap().tail.file,
        _ => &m.model(name).unwrap().file,
    };
    assert_eq!(file, &format!("{name}.nnef.tar"));
    let bytes = std::fs::read(models_dir().join(file)).unwrap();
    assert_eq!(ModelFormat::of(&bytes), ModelFormat::Nnef, "{file}");
    bytes
}

#[test]
fn every_committed_archive_names_the_onnx_file_it_was_compiled_from() {
    let m = manifest();
    let (ee, sp) = (m.early_exit.as_ref().unwrap(), m.split.as_ref().unwrap());
    let sources = [
        ("tiny", m.model("tiny").unwrap().source.as_ref()),
        ("large", m.model("large").unwrap().source.as_ref()),
        ("ee_stage1", ee.stage1.source.as_ref()),
        ("ee_stage2", ee.stage2.source.as_ref()),
        ("split_trunk", sp.trunk.source.as_ref()),
        ("split_tail", sp.tail.source.as_ref()),
    ];
    for (name, source) in sources {
        let source = source.unwrap_or_else(|| panic!("{name} has no source"));
        assert_eq!(source.file, format!("{name}.onnx"));
        assert_eq!(source.sha256, sha256_hex(&onnx(name)), "{name}.onnx changed: run hiedge compile");
        model_file(name);
    }
}

#[test]
fn tract_matches_onnxruntime_on_the_fixture() {
    let manifest = manifest();
    let fixture =
        Fixture::load(&models_dir().join("fixture"), &["tiny", "large"], manifest.input_len(), manifest.classes.len())
            .unwrap();
    assert_eq!(fixture.len(), 1000);
    for name in ["tiny", "large"] {
        let model = Model::load(&manifest, name, &model_file(name)).unwrap();
        let (mut max_diff, mut same_argmax) = (0.0f32, 0);
        for i in 0..fixture.len() {
            let got = model.logits(fixture.image(i)).unwrap();
            let want = fixture.reference_logits(name, i).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                max_diff = max_diff.max((g - w).abs());
            }
            same_argmax += (argmax(&got) == argmax(want)) as usize;
        }
        assert_eq!(same_argmax, fixture.len(), "{name}: argmax differs from onnxruntime");
        assert!(max_diff <= 1e-4, "{name}: max |tract - onnxruntime| = {max_diff}");
        eprintln!("{name}: argmax 100% equal, max |diff| {max_diff:e}");
    }
}

#[test]
fn model_load_checks_hash_and_input() {
    let manifest = manifest();
    let mut bytes = model_file("tiny");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(Model::load(&manifest, "tiny", &bytes), Err(Error::ModelHashMismatch { .. })));
    assert!(matches!(Model::load(&manifest, "huge", &bytes), Err(Error::UnknownModel { .. })));
    let tiny = Model::load(&manifest, "tiny", &model_file("tiny")).unwrap();
    assert_eq!(tiny.input_len(), 784);
    assert_eq!(tiny.num_classes(), 10);
    assert!(tiny.id().starts_with("tiny@"));
    let err = tiny.predict(&[0u8; 783], 1.0).unwrap_err();
    assert_eq!(err.to_string(), "input has 783 values but the model expects 784");
    let p = tiny.predict(&[0u8; 784], manifest.temperature()).unwrap();
    assert!((p.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
}

/// Sum of the ONNX initializers' element counts, times 4 bytes (fp32).
fn weight_bytes(bytes: &[u8]) -> usize {
    use tract_onnx::prelude::Framework;
    let proto = tract_onnx::onnx().proto_model_for_read(&mut &bytes[..]).unwrap();
    let graph = proto.graph.unwrap();
    graph.initializer.iter().map(|t| t.dims.iter().product::<i64>() as usize * 4).sum()
}

#[test]
fn committed_models_fit_their_budgets() {
    let manifest = manifest();
    let tiny = onnx("tiny");
    let tiny_weights = weight_bytes(&tiny);
    assert!(tiny_weights <= 40 * 1024, "tiny has {tiny_weights} bytes of fp32 weights > 40 KB");
    assert_eq!(Some(tiny_weights as u64), manifest.model("tiny").unwrap().weight_bytes);
    let large = onnx("large");
    assert!(large.len() <= 8 * 1024 * 1024, "large.onnx is {} bytes > 8 MB", large.len());
    assert!(manifest.model("tiny").unwrap().test_accuracy.expect("measured") >= 0.90);
    assert!(manifest.model("large").unwrap().test_accuracy.expect("measured") >= 0.935);
}

#[test]
fn early_exit_stages_match_onnxruntime_on_the_fixture() {
    use hiedge_core::runtime::EarlyExitModel;
    let manifest = manifest();
    let fixture =
        Fixture::load(&models_dir().join("fixture"), &["ee_exit", "ee"], manifest.input_len(), manifest.classes.len())
            .unwrap();
    let ee = EarlyExitModel::load(&manifest, &model_file("ee_stage1"), &model_file("ee_stage2")).unwrap();
    let (mut max_diff, mut same) = (0.0f32, [0usize; 2]);
    for i in 0..fixture.len() {
        let (exit_logits, features) = ee.stage1(fixture.image(i)).unwrap();
        let final_logits = ee.stage2(&features).unwrap();
        for (k, (got, name)) in [(&exit_logits, "ee_exit"), (&final_logits, "ee")].into_iter().enumerate() {
            let want = fixture.reference_logits(name, i).unwrap();
            for (g, w) in got.iter().zip(want) {
                max_diff = max_diff.max((g - w).abs());
            }
            same[k] += (argmax(got) == argmax(want)) as usize;
        }
    }
    assert_eq!(same, [fixture.len(); 2], "argmax differs from onnxruntime");
    assert!(max_diff <= 1e-4, "early exit: max |tract - onnxruntime| = {max_diff}");
    eprintln!("early exit: both heads argmax 100% equal, max |diff| {max_diff:e}");
    // Tampered stage 2 is refused.
    let mut bad = model_file("ee_stage2");
    bad[20] ^= 1;
    assert!(matches!(
        EarlyExitModel::load(&manifest, &model_file("ee_stage1"), &bad),
        Err(Error::ModelHashMismatch { .. })
    ));
    assert!(ee.stage1(&[0u8; 10]).is_err());
}

#[test]
fn split_trunk_and_tail_match_onnxruntime_on_the_fixture() {
    use hiedge_core::prob::top2;
    use hiedge_core::runtime::split::{self, QuantizedFeatures};
    let manifest = manifest();
    let fixture = Fixture::load(
        &models_dir().join("fixture"),
        &["split_exit", "split"],
        manifest.input_len(),
        manifest.classes.len(),
    )
    .unwrap();
    let trunk = split::load_trunk(&manifest, &model_file("split_trunk")).unwrap();
    let tail = split::load_tail(&manifest, &model_file("split_tail")).unwrap();
    let (mut max_diff, mut max_q_diff, mut near_ties) = (0.0f32, 0.0f32, 0);
    for i in 0..fixture.len() {
        let (exit_logits, features) = trunk.run(fixture.image(i)).unwrap();
        let final_logits = tail.run(&features).unwrap();
        for (got, name) in [(&exit_logits, "split_exit"), (&final_logits, "split")] {
            let want = fixture.reference_logits(name, i).unwrap();
            for (g, w) in got.iter().zip(want) {
                max_diff = max_diff.max((g - w).abs());
            }
            // The label must agree unless onnxruntime's top two are within the tolerance.
            let (a, b) = top2(want);
            if a - b > 1e-4 {
                assert_eq!(argmax(got), argmax(want), "{name} image {i}");
            } else {
                near_ties += 1;
            }
        }
        // What the wire costs: the tail on u8 features moves the logits by little.
        let q = tail.run(&QuantizedFeatures::quantize(&features).dequantize()).unwrap();
        for (g, w) in q.iter().zip(&final_logits) {
            max_q_diff = max_q_diff.max((g - w).abs());
        }
    }
    assert!(max_diff <= 1e-4, "split: max |tract - onnxruntime| = {max_diff}");
    // The wire's u8 quantisation of the committed trunk's features moved the tail's logits by 0.033
    // at most on these images (on the machine that wrote this); 0.1 leaves room for other CPUs' last bits, and a
    // quantiser off by one step (or the wrong scale) moves them by far more.
    assert!(max_q_diff <= 0.1, "split: u8 features move the tail's logits by {max_q_diff}, more than 0.1");
    eprintln!(
        "split: trunk exit head and tail match onnxruntime on {} images (max |diff| {max_diff:e}, {near_ties} near ties); \
         u8 features move the tail's logits by at most {max_q_diff:.4}",
        fixture.len()
    );
    let mut bad = model_file("split_tail");
    bad[30] ^= 1;
    assert!(matches!(split::load_tail(&manifest, &bad), Err(Error::ModelHashMismatch { .. })));
}
