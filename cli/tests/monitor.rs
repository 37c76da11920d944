//! `hiedge monitor` on Fashion-MNIST's 10,000 test images through the committed set's calibrated
//! HI (real tract, the committed models, the manifest's `decision.monitoring` baseline): quiet over
//! the unshifted stream, both alarms soon after a controlled shift, and the label-free accuracy
//! estimate near the true accuracy of what the tiny model kept, before and after.

mod support;

use serde_json::Value;
use support::{hiedge, repo};

fn monitor(args: &[&str]) -> Value {
    let models = repo().join("models/fashion-mnist");
    let mut all = vec!["monitor", "--json", "--models", models.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = hiedge(&all);
    assert!(out.status.success(), "hiedge monitor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn alarms(report: &Value) -> Vec<(String, u64)> {
    let last = report["rows"].as_array().unwrap().last().unwrap();
    last["state"]["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_string(), a["sample"].as_u64().unwrap()))
        .collect()
}

/// Stated bounds, fixed before the run: the label-free estimate within 2 points of the true
/// accuracy of every kept sample, and within 3.5 points over one 500-sample window (about 400 kept
/// samples: the binomial standard error alone is ~1.5 points at 90%); both alarms within 1,000
/// samples of a shift.
const EST_TOL_OVERALL: f64 = 0.02;
const EST_TOL_WINDOW: f64 = 0.035;
const DELAY: u64 = 1000;

#[test]
fn quiet_over_ten_thousand_unshifted_samples_with_an_estimate_near_the_truth() {
    let report = monitor(&["--shift", "none", "--shift-at", "10000", "--every", "10000"]);
    let row = report["rows"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(row["sample"], 10_000);
    assert_eq!(alarms(&report), vec![], "false alarms over 10,000 unshifted samples");
    let s = &row["state"];
    // The offload rate is near the calibrated one (the test set and the calibration set are the same
    // distribution): within 3 points.
    let (rate, target) = (s["offload"]["overallRate"].as_f64().unwrap(), s["offload"]["target"].as_f64().unwrap());
    assert!((rate - target).abs() < 0.03, "offloaded {rate}, calibrated {target}");
    // The label-free estimate against the labels the monitor never saw: over every kept sample,
    // and over the last window.
    let (est, truth) = (s["accuracy"]["keptOverall"].as_f64().unwrap(), row["true_kept_overall"].as_f64().unwrap());
    assert!((est - truth).abs() < EST_TOL_OVERALL, "estimated {est}, true {truth} over every kept sample");
    let (est, truth) = (s["accuracy"]["keptWindow"].as_f64().unwrap(), row["true_kept_window"].as_f64().unwrap());
    assert!((est - truth).abs() < EST_TOL_WINDOW, "estimated {est}, true {truth} over the last window");
    let classes = s["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 10);
    assert_eq!(classes.iter().map(|c| c["predicted"].as_u64().unwrap()).sum::<u64>(), 10_000);
}

#[test]
fn a_darkened_stream_raises_both_alarms_within_the_stated_delay() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("monitor.png");
    let report =
        monitor(&["--shift", "darken:0.4", "--shift-at", "5000", "--every", "500", "--plot", png.to_str().unwrap()]);
    let found = alarms(&report);
    // The plot: the shift (orange), the rate alarm (red) and the drift alarm (purple) as vertical
    // lines, each in the column of its sample (plot.rs: 56 px left margin, 888 px for 10,000 samples).
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (960, 420));
    let column_has = |sample: u64, rgb: [u8; 3]| {
        let x = 56 + (888.0 * sample as f64 / 10_000.0).round() as u32;
        // Most of the column: the series lines cross it in places.
        (44..384).filter(|y| img.get_pixel(x, *y).0 == rgb).count() > 300
    };
    assert!(column_has(5000, [239, 108, 0]), "no shift line at 5000");
    for (kind, rgb) in [("offload_rate", [198, 40, 40]), ("confidence_drift", [106, 27, 154])] {
        let at = found.iter().find(|(k, _)| k == kind).unwrap().1;
        assert!(column_has(at, rgb), "no {kind} line at sample {at}");
    }
    assert!(found.iter().all(|(_, at)| *at > 5000), "alarms before the shift: {found:?}");
    for kind in ["offload_rate", "confidence_drift"] {
        let first = found.iter().find(|(k, _)| k == kind).map(|(_, at)| at - 5000);
        assert!(first.is_some_and(|d| d <= DELAY), "{kind}: first alarm {first:?} samples after the shift, {found:?}");
    }
    // The estimate follows what the tiny model now gets right on the samples it keeps.
    let last = report["rows"].as_array().unwrap().last().unwrap();
    let est = last["state"]["accuracy"]["keptWindow"].as_f64().unwrap();
    let truth = last["true_kept_window"].as_f64().unwrap();
    assert!((est - truth).abs() < EST_TOL_WINDOW, "after the shift: estimated {est}, true {truth}");
}
