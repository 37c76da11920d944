//! `hiedge eval --json` on the full test set: the committed manifest's accuracies are what the
//! committed models really score natively, and HI reaches large-only accuracy - 0.3 points while
//! offloading at most 25% of the test images.

use std::process::Command;

use serde_json::Value;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn eval_json() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hiedge"))
        .current_dir(repo())
        .args(["eval", "--json"])
        .output()
        .expect("run hiedge eval");
    assert!(out.status.success(), "hiedge eval failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("eval --json prints JSON")
}

fn row<'a>(report: &'a Value, policy: &str) -> &'a Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["policy"] == policy).unwrap()
}

#[test]
fn eval_reproduces_manifest_accuracies_and_the_hi_claim() {
    let report = eval_json();
    assert_eq!(report["images"], 10_000);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("models/fashion-mnist/manifest.json")).unwrap())
            .unwrap();
    for (policy, model) in [("tiny-only", "tiny"), ("large-only", "large")] {
        let measured = row(&report, policy)["hi_accuracy"].as_f64().unwrap();
        let committed = manifest["models"][model]["test_accuracy"].as_f64().unwrap();
        assert!(
            (measured - committed).abs() <= 0.00051,
            "{model}: tract measures {measured}, manifest says {committed}"
        );
    }
    assert_eq!(row(&report, "tiny-only")["offload_fraction"], 0.0);
    assert_eq!(row(&report, "large-only")["offload_fraction"], 1.0);

    let target = report["target_accuracy"].as_f64().unwrap();
    let large = report["large_only_accuracy"].as_f64().unwrap();
    assert!((large - 0.003 - target).abs() < 1e-9);
    let ops = report["operating_points"].as_array().unwrap();
    let best = ops
        .iter()
        .filter(|op| op[0] == "max_prob" || op[0] == "logistic_top2")
        .filter_map(|op| op[1].as_object())
        .map(|r| (r["offload_fraction"].as_f64().unwrap(), r["hi_accuracy"].as_f64().unwrap()))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("max_prob or logistic_top2 reaches the target");
    assert!(best.1 >= target, "{best:?} below target {target}");
    assert!(best.0 <= 0.25, "needs {:.1}% offloading to reach {target}", 100.0 * best.0);

    // EE-HI: both heads score what the manifest says, and the calibrated thresholds give a consistent outcome.
    let ee = &report["ee_hi"];
    for (key, committed) in [("exit_head_accuracy", "exit_test_accuracy"), ("final_head_accuracy", "test_accuracy")] {
        let measured = ee[key].as_f64().unwrap();
        let want = manifest["early_exit"][committed].as_f64().unwrap();
        assert!((measured - want).abs() <= 0.00051, "early exit {key}: tract {measured}, manifest {want}");
    }
    let o = &ee["outcome"];
    let f = |k: &str| o[k].as_f64().unwrap();
    assert!(f("exited") + f("stage2") <= 1.0 + 1e-9 && f("offloaded") <= 1.0 - f("exited") + 1e-9, "{o}");
    assert!(f("accuracy") > ee["final_head_accuracy"].as_f64().unwrap(), "EE-HI must beat the early-exit model alone: {o}");
    assert!(f("exited") > 0.0 && f("stage2") < 1.0, "no sample exited early: {o}");

    // every threshold row's cost is (beta * offload + errors) / n
    for r in report["rows"].as_array().unwrap() {
        let (off, acc) = (r["offload_fraction"].as_f64().unwrap(), r["hi_accuracy"].as_f64().unwrap());
        for c in r["cost"].as_array().unwrap() {
            let (beta, cost) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
            assert!((cost - (beta * off + 1.0 - acc)).abs() < 1e-9);
        }
    }
}

#[test]
fn missing_data_dir_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_hiedge"))
        .current_dir(repo())
        .args(["eval", "--data", "/nonexistent/fm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dataset-fashion-mnist"), "{err}");
}
