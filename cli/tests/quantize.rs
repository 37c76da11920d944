//! `hiedge quantize` as a user runs it on the committed Fashion-MNIST set (copied): int8 and f16
//! weights are measured on labelled test images against the f32 archive, stored only within the
//! gate, named in the manifest with what the gate measured, kept by `hiedge compile`, and loaded
//! by the runtime's reader (hiedge eval runs the set); past the gate the set is left as it was.

mod support;

use std::path::Path;

use hiedge_core::manifest::{Manifest, WeightStorage};
use hiedge_core::runtime::sha256_hex;
use support::{hiedge, repo};

fn copy_set(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(repo().join("models/fashion-mnist")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn manifest(dir: &Path) -> Manifest {
    Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

fn quantize(dir: &Path, extra: &[&str]) -> std::process::Output {
    hiedge(&[&["quantize", "--models", dir.to_str().unwrap(), "--limit", "500"], extra].concat())
}

#[test]
fn stored_weights_pass_the_gate_shrink_the_file_and_stay_through_compile() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("set");
    copy_set(&dir);
    let f32_len = std::fs::metadata(dir.join("large.nnef.tar")).unwrap().len() as f64;
    for (storage, share) in [(WeightStorage::Int8, 0.3), (WeightStorage::F16, 0.55)] {
        let out = quantize(&dir, &["--weights", storage.as_str(), "--max-drop", "1"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{storage}: {}", String::from_utf8_lossy(&out.stderr));
        println!("{storage}: {}", stdout.lines().next().unwrap_or_default());
        let m = manifest(&dir);
        let entry = m.model("large").unwrap();
        let weights = entry.weights.as_ref().expect("the manifest names the stored weights");
        assert_eq!(weights.storage, storage);
        let gate = &weights.gate;
        assert_eq!(gate.samples, 500);
        assert!(gate.passed() && gate.max_drop == 1.0, "{gate:?}");
        // The f32 model's accuracy on these 500 images, measured as eval measures it.
        assert!((0.85..=1.0).contains(&gate.accuracy_f32), "{gate:?}");
        assert!(gate.agreement >= 0.98, "{storage} changes few answers: {gate:?}");
        assert!(gate.max_prob_diff > 0.0, "{storage}: the stored weights are not the f32 ones");
        let bytes = std::fs::read(dir.join(&entry.file)).unwrap();
        assert_eq!(sha256_hex(&bytes), entry.sha256);
        assert!((bytes.len() as f64) < share * f32_len, "{storage}: {} bytes against f32's {f32_len}", bytes.len());
        assert!(String::from_utf8_lossy(&bytes).contains("hiedge_stored_weights"), "{storage}");
        // The runtime loads it: eval runs the set.
        let report = support::eval_json(&["--models", dir.to_str().unwrap(), "--limit", "50"]);
        assert_eq!(report["images"], 50);
        // compile rewrites every archive from its ONNX source, storing these weights the same way.
        let out = hiedge(&["compile", "--models", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(manifest(&dir).model("large").unwrap().sha256, entry.sha256, "{storage}: compile keeps the storage");
    }
    // Back to f32: what `hiedge compile` writes for the set on this machine (compiled archives are
    // compared on one CPU only: another may fold a constant to other low bits than the committed one).
    let out = quantize(&dir, &["--weights", "f32"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fresh = tmp.path().join("fresh");
    copy_set(&fresh);
    let out = hiedge(&["compile", "--models", fresh.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = manifest(&dir);
    assert!(restored.model("large").unwrap().weights.is_none());
    assert_eq!(restored.model("large").unwrap(), manifest(&fresh).model("large").unwrap());
}

#[test]
fn past_the_gate_the_set_is_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("set");
    copy_set(&dir);
    let before =
        (std::fs::read(dir.join("manifest.json")).unwrap(), std::fs::read(dir.join("large.nnef.tar")).unwrap());
    // A gate that asks int8 for 5 points more accuracy than f32 has: refused, with the numbers.
    let out = quantize(&dir, &["--weights", "int8", "--max-drop=-5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("past --max-drop -5") && stderr.contains("the set is unchanged"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("on 500 samples"), "the measurement is printed");
    let after = (std::fs::read(dir.join("manifest.json")).unwrap(), std::fs::read(dir.join("large.nnef.tar")).unwrap());
    assert!(before == after, "nothing written");
    // Without labelled data there is no gate, and nothing is stored.
    let out = quantize(&dir, &["--weights", "f16", "--data", tmp.path().join("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(dir.join("manifest.json")).unwrap() == before.0);
}
