//! The Worker's side on the committed models, natively: the model service against onnxruntime, the
//! files a model set serves (device roles only), and a model that answers NaN.

#[path = "support/committed.rs"]
mod committed;

use hiedge_core::server::{model_set_list, parse_set_index, ModelService, ModelSet};
use hiedge_core::Manifest;

use committed::{clock, fixture, manifest_json, models_dir, softmax_f64};

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
    assert_eq!((set.worker_model(), set.worker_model_file()), ("large", "large.nnef.tar"));
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
    // Three tiers: the Worker runs `mid`; `large` is the server's, never deployed nor served.
    let mut three: serde_json::Value = serde_json::from_str(&json).unwrap();
    three["oip"] = serde_json::json!({"model": "fashion-large", "input_name": "image", "output_name": "logits",
        "datatype": "UINT8", "output": "logits", "escalate": {"kind": "max_prob", "threshold": 0.78}, "worker_model": "mid"});
    let three = ModelSet::new("fashion-mnist", &three.to_string()).unwrap();
    assert_eq!((three.worker_model(), three.worker_model_file()), ("mid", "mid.nnef.tar"));
    assert!(three.asset_files().contains(&"mid.nnef.tar") && !three.asset_files().contains(&"large.nnef.tar"));
    assert_eq!(three.info().large, m.model("mid").unwrap().id("mid"));
    assert_eq!(three.device_file(&m.model("mid").unwrap().sha256).unwrap_err().status(), 404);
    assert_eq!(three.device_file(large).unwrap_err().status(), 404);
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
