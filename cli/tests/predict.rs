//! `hiedge predict` as a user runs it: the real-size set's large model on the committed photos, as
//! JSON; a file that is not an image is refused naming it.

mod support;

use serde_json::Value;
use support::{hiedge, repo};

fn predict(args: &[&str]) -> std::process::Output {
    hiedge(&[&["predict", "--models", "models/zoo-rgb"], args].concat())
}

#[test]
fn predict_answers_each_photo_as_json() {
    let photos = repo().join("cli/tests/fixtures/photos");
    let (a, b) = (photos.join("chelsea.jpg"), photos.join("coffee.jpg"));
    let out = predict(&["--model", "large", "--logits", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["set"].as_str(), v["model"].as_str()), (Some("zoo-rgb"), Some("large")));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let probs: Vec<f64> = r["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
        let logits = r["logits"].as_array().unwrap();
        assert_eq!((probs.len(), logits.len()), (10, 10), "{r}");
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{r}");
        let best = (0..10).max_by(|&i, &j| probs[i].total_cmp(&probs[j])).unwrap();
        assert_eq!(r["label"].as_u64(), Some(best as u64), "{r}");
        assert_eq!(r["class"].as_str(), Some(format!("random {best}").as_str()), "{r}");
    }
    // Two different photos, two different answers.
    assert_ne!(results[0]["probs"], results[1]["probs"]);
    // Without --logits, no raw outputs.
    let out = predict(&[a.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["results"][0].get("logits").is_none());
}

#[test]
fn a_file_that_is_not_an_image_is_refused_naming_it() {
    let out = predict(&["Cargo.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Cargo.toml") && stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}
