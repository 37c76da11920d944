//! `hiedge eval --json` on the full test set: the committed manifest's accuracies are what the
//! committed models really score natively; HI with thresholds calibrated on held-out training
//! images reaches large-only accuracy - 0.3 points on the test set while offloading at most 25%;
//! and the tables in README.md and models/README.md are what `hiedge eval` prints (within stated
//! tolerances, since another CPU may decide a sample on a threshold the other way).

mod support;

use serde_json::Value;
use support::{eval_json, hiedge, repo};

fn row<'a>(report: &'a Value, policy: &str) -> &'a Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["policy"] == policy).unwrap()
}

/// Largest accepted |difference| between a percentage in a committed table and `hiedge eval`:
/// the table's rounding (0.005 points) plus 2 of 10,000 test images (0.02 points), for decisions
/// that sit on a threshold and may go the other way on another CPU.
const PCT_TOL: f64 = 0.025;
/// The same for a cost per image (4 decimals; 2 images change it by at most 0.0002 + 0.0001 * beta).
const COST_TOL: f64 = 0.00035;

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("models/fashion-mnist/manifest.json")).unwrap()).unwrap()
}

#[test]
fn eval_reproduces_manifest_accuracies_and_the_calibrated_hi_claim() {
    let report = eval_json(&["--tiers", "tiny,mid,large"]);
    assert_eq!(report["images"], 10_000);
    let manifest = manifest();
    check_three_tiers(&report["three_tier"], &manifest);
    for (policy, model) in [("tiny-only", "tiny"), ("large-only", "large")] {
        let measured = row(&report, policy)["hi_accuracy"].as_f64().unwrap();
        let committed = manifest["models"][model]["test_accuracy"].as_f64().unwrap();
        assert!(
            (measured - committed).abs() <= 0.00051,
            "{model}: tract measures {measured}, manifest says {committed}"
        );
    }
    let large = row(&report, "large-only")["hi_accuracy"].as_f64().unwrap();

    // The claim README.md makes: thresholds fitted on the calibration set (training images
    // 55,000..60,000), evaluated on the test set, reach large-only - 0.3 points offloading <= 25%.
    for policy in ["max_prob", "logistic_top2"] {
        let calibrated = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["policy"] == policy && r["param"].as_str().unwrap().starts_with("calibrated "))
            .unwrap_or_else(|| panic!("no calibrated {policy} row: is the manifest calibrated?"));
        let want = manifest["decision"]["thresholds"][policy].as_f64().unwrap();
        assert!((calibrated["threshold"].as_f64().unwrap() - want).abs() < 1e-6, "{calibrated}");
        let (acc, off) =
            (calibrated["hi_accuracy"].as_f64().unwrap(), calibrated["offload_fraction"].as_f64().unwrap());
        assert!(
            acc >= large - 0.003,
            "{policy} calibrated: {:.2}% < large-only {:.2}% - 0.3",
            100.0 * acc,
            100.0 * large
        );
        assert!(off <= 0.25, "{policy} calibrated offloads {:.2}% of the test images", 100.0 * off);
    }

    // EE-HI: both heads score what the manifest says; the calibrated thresholds beat the early-exit
    // model alone and let some samples exit.
    let ee = &report["ee_hi"];
    for (key, committed) in [("exit_head_accuracy", "exit_test_accuracy"), ("final_head_accuracy", "test_accuracy")] {
        let measured = ee[key].as_f64().unwrap();
        let want = manifest["early_exit"][committed].as_f64().unwrap();
        assert!((measured - want).abs() <= 0.00051, "early exit {key}: tract {measured}, manifest {want}");
    }
    let o = &ee["outcome"];
    let f = |k: &str| o[k].as_f64().unwrap();
    assert!(
        f("accuracy") > ee["final_head_accuracy"].as_f64().unwrap(),
        "EE-HI must beat the early-exit model alone: {o}"
    );
    assert!(f("exited") > 0.0 && f("stage2") < 1.0, "no sample exited early: {o}");

    check_model_card_tables(&report);
    check_readme_summary(&report);
}

/// The cells of each table row that starts with `|` after the line `header` (the separator skipped).
fn table(text: &str, header: &str) -> Vec<Vec<String>> {
    let start = text.find(header).unwrap_or_else(|| panic!("no table `{header}`"));
    text[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().trim_matches('*').to_string()).collect())
        .collect()
}

/// A table cell against a fraction from the report (as a percentage, `-` for null).
fn assert_pct(cell: &str, fraction: &Value, what: &str) {
    match fraction.as_f64() {
        None => assert_eq!(cell, "-", "{what}: table says {cell}, eval says null"),
        Some(f) => {
            let shown: f64 = cell.trim_end_matches('%').parse().unwrap_or_else(|_| panic!("{what}: `{cell}`"));
            assert!(
                (shown - 100.0 * f).abs() <= PCT_TOL,
                "{what}: table says {cell}, hiedge eval gives {:.3}",
                100.0 * f
            );
        }
    }
}

/// Two `param` texts name the same row: equal words, and numbers within one unit of the table's
/// last printed digit (a computed threshold may move that much on another CPU).
fn same_param(eval: &str, table: &str) -> bool {
    let words = |s: &str| {
        s.split(|c: char| c.is_whitespace() || "()=".contains(c))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (a, b) = (words(eval), words(table));
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(xv), Ok(yv)) => {
                let decimals = y.split('.').nth(1).map_or(0, str::len) as i32;
                (xv - yv).abs() <= 10f64.powi(-decimals) * 1.001
            }
            _ => x == y,
        })
}

/// models/README.md's tables are what `hiedge eval --json` gives, within the stated tolerances.
fn check_model_card_tables(report: &Value) {
    let card = std::fs::read_to_string(repo().join("models/README.md")).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let trade_off = table(&card, "| policy | threshold / param | offload % | HI acc % |");
    assert_eq!(trade_off.len(), rows.len(), "the model card's trade-off table has other rows than `hiedge eval`");
    for cells in &trade_off {
        let what = format!("models/README.md row `{} | {}`", cells[0], cells[1]);
        let r = rows
            .iter()
            .find(|r| r["policy"] == cells[0].as_str() && same_param(r["param"].as_str().unwrap(), &cells[1]))
            .unwrap_or_else(|| panic!("{what}: no such row in `hiedge eval`"));
        assert_pct(&cells[2], &r["offload_fraction"], &what);
        assert_pct(&cells[3], &r["hi_accuracy"], &what);
        assert_pct(&cells[4], &r["kept_accuracy"], &what);
        for (cell, cost) in cells[5..8].iter().zip(r["cost"].as_array().unwrap()) {
            let (shown, want): (f64, f64) = (cell.parse().unwrap(), cost[1].as_f64().unwrap());
            assert!((shown - want).abs() <= COST_TOL, "{what}: cost {cell} vs {want:.5} at beta {}", cost[0]);
        }
    }

    let points = table(&card, "| policy | threshold | offload % | HI acc % |");
    let ops = report["operating_points"].as_array().unwrap();
    assert_eq!(points.len(), ops.len());
    for (cells, op) in points.iter().zip(ops) {
        let what = format!("models/README.md operating point `{}`", cells[0]);
        assert_eq!(op[0], cells[0].as_str(), "{what}");
        let r = &op[1];
        assert!(
            same_param(r["param"].as_str().unwrap(), &cells[1]),
            "{what}: threshold {} vs {}",
            cells[1],
            r["param"]
        );
        assert_pct(&cells[2], &r["offload_fraction"], &what);
        assert_pct(&cells[3], &r["hi_accuracy"], &what);
    }

    // The EE-HI table (the device-compute column is a timing: `make eval` reports it, not checked here).
    let ee = &report["ee_hi"];
    let o = &ee["outcome"];
    let f = |k: &str| o[k].as_f64().unwrap();
    let ee_rows = table(&card, "| | accuracy % | offload % | exit head answered % |");
    let hi = &ee["hi"];
    let expect: [(&str, [Value; 5]); 4] = [
        (
            "HI, tiny + logistic_top2",
            [hi["hi_accuracy"].clone(), hi["offload_fraction"].clone(), Value::Null, Value::Null, Value::Null],
        ),
        (
            "EE-HI",
            [
                o["accuracy"].clone(),
                o["offloaded"].clone(),
                o["exited"].clone(),
                (1.0 - f("exited") - f("stage2")).into(),
                o["stage2"].clone(),
            ],
        ),
        (
            "early-exit model, exit head only",
            [ee["exit_head_accuracy"].clone(), 0.0.into(), 1.0.into(), 0.0.into(), 0.0.into()],
        ),
        (
            "early-exit model, final head only",
            [ee["final_head_accuracy"].clone(), 0.0.into(), 0.0.into(), 0.0.into(), 1.0.into()],
        ),
    ];
    assert_eq!(ee_rows.len(), expect.len());
    for (cells, (name, values)) in ee_rows.iter().zip(&expect) {
        assert!(cells[0].starts_with(name), "EE-HI table row `{}`, expected `{name}`", cells[0]);
        for (cell, value) in cells[1..6].iter().zip(values) {
            assert_pct(cell, value, &format!("models/README.md EE-HI row `{name}`"));
        }
    }
}

/// `--tiers tiny,mid,large`: each model alone scores what the manifest says, the device hop is the
/// calibrated one, sending more on at the Worker never sends fewer to the server, the fitted
/// threshold reaches its target with fewer server calls than sending everything on, and
/// models/README.md's table is this report.
fn check_three_tiers(t: &Value, manifest: &Value) {
    for (i, role) in ["tiny", "mid", "large"].iter().enumerate() {
        let (measured, committed) =
            (t["alone"][i].as_f64().unwrap(), manifest["models"][role]["test_accuracy"].as_f64().unwrap());
        assert!((measured - committed).abs() <= 0.00051, "{role}: tract {measured}, manifest {committed}");
    }
    let device = manifest["decision"]["thresholds"]["max_prob"].as_f64().unwrap();
    assert!((t["device_threshold"].as_f64().unwrap() - device).abs() < 1e-6);
    let f = |o: &Value, k: &str| o[k].as_f64().unwrap();
    let (two_mid, two_large) = (&t["device_worker"], &t["device_server"]);
    assert_eq!(f(two_mid, "to_server"), 0.0);
    assert_eq!(f(two_large, "to_server"), f(two_large, "to_worker"));
    let rows = t["rows"].as_array().unwrap();
    for pair in rows.windows(2) {
        assert!(f(&pair[0], "to_server") <= f(&pair[1], "to_server"), "{pair:?}");
    }
    let fitted = &t["fitted"];
    assert!(f(fitted, "accuracy") >= f(t, "target_accuracy"), "{fitted}");
    assert!(f(fitted, "to_server") < f(two_large, "to_server"), "three tiers send fewer to the server: {fitted}");

    let card = std::fs::read_to_string(repo().join("models/README.md")).unwrap();
    let table =
        table(&card, "| tiers | Worker threshold | to Worker % | to server % | sent on at the Worker % | accuracy % |");
    let mut want: Vec<&Value> = vec![two_mid, two_large];
    want.extend(rows);
    want.push(fitted);
    assert_eq!(
        table.len(),
        want.len(),
        "models/README.md's three-tier table has other rows than `hiedge eval --tiers`"
    );
    for (cells, o) in table.iter().zip(want) {
        let what = format!("models/README.md three-tier row `{} | {}`", cells[0], cells[1]);
        assert_pct(&cells[2], &o["to_worker"], &what);
        assert_pct(&cells[3], &o["to_server"], &what);
        assert_pct(&cells[4], &o["worker_escalation"], &what);
        assert_pct(&cells[5], &o["accuracy"], &what);
    }
}

/// README.md's summary table: tiny-only, large-only and the two calibrated rows.
fn check_readme_summary(report: &Value) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let summary = table(&readme, "| | offloaded | accuracy |");
    let calibrated = |policy: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["policy"] == policy && r["param"].as_str().unwrap().starts_with("calibrated"))
            .unwrap()
            .clone()
    };
    let expect = [
        ("tiny model only", row(report, "tiny-only").clone()),
        ("large model only", row(report, "large-only").clone()),
        ("HI, LogisticTop2", calibrated("logistic_top2")),
        ("HI, MaxProb", calibrated("max_prob")),
    ];
    assert_eq!(summary.len(), expect.len(), "README.md summary rows");
    for (cells, (name, r)) in summary.iter().zip(&expect) {
        assert!(cells[0].starts_with(name), "README.md row `{}`, expected `{name}`", cells[0]);
        // The offload column has one decimal or none: allow its rounding.
        let off: f64 = cells[1].trim_end_matches('%').parse().unwrap();
        let want = 100.0 * r["offload_fraction"].as_f64().unwrap();
        assert!((off - want).abs() <= 0.05 + PCT_TOL, "README.md `{name}`: {} offloaded vs {want:.3}%", cells[1]);
        assert_pct(&cells[2], &r["hi_accuracy"], &format!("README.md `{name}`"));
    }
}

#[test]
fn missing_data_dir_is_a_clear_error() {
    let out = hiedge(&["eval", "--data", "/nonexistent/fm"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dataset-fashion-mnist"), "{err}");
}

#[test]
fn calibrate_fits_the_worker_hop_into_oip_escalate() {
    // The committed set with a server tier, as a deployment would add it.
    let tmp = tempfile::tempdir().unwrap();
    let from = repo().join("models/fashion-mnist");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let calibrated = |kind: &str, worker_model: &str| {
        let mut m = manifest();
        m["oip"] = serde_json::json!({"model": "fashion-large", "input_name": "image", "output_name": "logits",
            "datatype": "FP32", "output": "logits", "escalate": {"kind": kind, "threshold": 0.5}, "worker_model": worker_model});
        std::fs::write(tmp.path().join("manifest.json"), m.to_string()).unwrap();
        let out =
            hiedge(&["calibrate", "--dry-run", "--models", tmp.path().to_str().unwrap(), "--tiers", "tiny,mid,large"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let written: Value = serde_json::from_slice(&out.stdout).unwrap();
        (written["oip"]["escalate"].clone(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The threshold is fitted on calibration images (1,500 of them here), on the rule the manifest chose.
    let (escalate, log) = calibrated("max_prob", "mid");
    assert_eq!(escalate["kind"], "max_prob");
    let t = escalate["threshold"].as_f64().unwrap();
    assert!(t > 0.5 && t < 1.0, "fitted max_prob threshold {t}: {log}");
    assert!(log.contains("tiny -> mid -> large: mid sends on at max_prob <="), "{log}");
    // A threshold fitted on mid is not written for a Worker that runs another model.
    let (escalate, log) = calibrated("max_prob", "large");
    assert_eq!(escalate["threshold"].as_f64(), Some(0.5), "{log}");
    assert!(log.contains("the Worker runs oip.worker_model `large`, not `mid`"), "{log}");
    // Three roles or nothing.
    let out = hiedge(&["calibrate", "--dry-run", "--models", tmp.path().to_str().unwrap(), "--tiers", "tiny,large"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tiers takes three model roles"));
}
