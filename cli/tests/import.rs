//! `hiedge import` as a user runs it, on a pair the project was not built around
//! (`cli/tests/fixtures`, written by models/train/import_fixture.py: NHWC input with a symbolic
//! batch, a tiny model ending in Softmax, a large one emitting logits), and on the committed pair;
//! then `hiedge eval` on what it wrote. Bad input is refused with one clear line.

mod support;

use std::path::{Path, PathBuf};

use hiedge_core::manifest::{Layout, Manifest, OutputKind};
use hiedge_core::prob::top2;
use hiedge_core::runtime::{sha256_hex, ModelFormat};
use hiedge_core::Model;
use serde_json::Value;
use support::{fashion_idx, import, repo};

/// A fresh temporary directory (removed when the guard drops) and a path `name` inside it that
/// does not exist yet.
fn temp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let guard = tempfile::Builder::new().prefix("hiedge-import-").tempdir().expect("a temporary directory");
    let path = guard.path().join(name);
    (guard, path)
}

fn eval_json(models: &Path, limit: usize) -> Value {
    support::eval_json(&["--limit", &limit.to_string(), "--models", models.to_str().unwrap()])
}

fn row<'a>(report: &'a Value, policy: &str, param: &str) -> &'a Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["policy"] == policy && r["param"] == param).unwrap()
}

/// The first `n` Fashion-MNIST test images.
fn test_images(n: usize) -> Vec<Vec<u8>> {
    let images = fashion_idx("t10k", "images");
    (0..n).map(|i| images.item(i).to_vec()).collect()
}

const CLASSES: &str = "zero,one,two,three,four,five,six,seven,eight,nine";

/// The pair the project was not built around: NHWC, a tiny model ending in Softmax.
fn toy_pair() -> (PathBuf, PathBuf) {
    let fixtures = repo().join("cli/tests/fixtures");
    (fixtures.join("nhwc_softmax_tiny.onnx"), fixtures.join("nhwc_logits_large.onnx"))
}

#[test]
fn import_reads_the_graphs_and_eval_runs_the_set() {
    let (_tmp, out_dir) = temp("toy");
    let (tiny, large) = toy_pair();
    let out = import("toy", &tiny, &large, &out_dir, &["--classes", CLASSES, "--mean", "0.5", "--std", "0.25"]);
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    let manifest = Manifest::from_json(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest.schema_version, manifest.name.as_str()), (2, "toy"));
    assert_eq!((manifest.input.shape.as_slice(), manifest.input.layout), (&[1, 28, 28, 1][..], Layout::Nhwc));
    assert_eq!(manifest.model("tiny").unwrap().output, OutputKind::Probabilities, "the tiny graph ends in Softmax");
    assert_eq!(manifest.model("large").unwrap().output, OutputKind::Logits);
    assert_eq!(manifest.model("tiny").unwrap().input_name, "pixels");
    assert_eq!(manifest.classes.len(), 10);

    // The ONNX files are compiled to the NNEF archives the runtime loads, the ONNX kept as source.
    let file = |name: &str| out_dir.join(&manifest.model(name).unwrap().file);
    for name in ["tiny", "large"] {
        let entry = manifest.model(name).unwrap();
        assert_eq!(entry.file, format!("{name}.nnef.tar"));
        let source = entry.source.as_ref().expect("the ONNX source is named");
        assert_eq!(source.file, format!("{name}.onnx"));
        assert_eq!(source.sha256, sha256_hex(&std::fs::read(out_dir.join(&source.file)).unwrap()));
        assert_eq!(ModelFormat::of(&std::fs::read(file(name)).unwrap()), ModelFormat::Nnef);
    }
    // The archives load (sha256 checked) and the tiny model's outputs are used as probabilities.
    let tiny_model = Model::load(&manifest, "tiny", &std::fs::read(file("tiny")).unwrap()).unwrap();
    Model::load(&manifest, "large", &std::fs::read(file("large")).unwrap()).unwrap();
    // The archive the browser tests load (wasm-client/tests/web.rs) is this compile of the fixture,
    // up to float rounding: its outputs agree with the fresh one's on real images.
    let committed = std::fs::read(repo().join("cli/tests/fixtures/nhwc_softmax_tiny.nnef.tar")).unwrap();
    let mut as_committed = manifest.clone();
    as_committed.models.get_mut("tiny").unwrap().sha256 = sha256_hex(&committed);
    let committed_model = Model::load(&as_committed, "tiny", &committed).unwrap();
    let images = test_images(300);
    for img in &images[..50] {
        let (a, b) = (tiny_model.logits(img).unwrap(), committed_model.logits(img).unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-4 * x.abs().max(1.0)), "{a:?} vs {b:?}");
    }
    let p1: Vec<f32> = images
        .iter()
        .map(|img| {
            let p = tiny_model.predict(img, manifest.temperature()).unwrap();
            assert_eq!(p.probs, p.logits, "a probability model's outputs are not softmaxed again");
            top2(&p.probs).0
        })
        .collect();

    // eval on the imported set: MaxProb at 0.3 offloads the images whose p1 <= 0.3, counted here
    // from the model's raw outputs (softmaxing them again would offload all of them).
    let report = eval_json(&out_dir, 300);
    assert_eq!(report["model_set"], "toy");
    let offloaded = row(&report, "max_prob", "0.300")["offload_fraction"].as_f64().unwrap();
    let expected = p1.iter().filter(|&&p| p <= 0.3).count() as f64 / 300.0;
    assert!((offloaded - expected).abs() < 1e-9, "eval offloads {offloaded}, the raw outputs say {expected}");
    assert!(offloaded < 0.5, "{offloaded}");
}

#[test]
fn the_committed_pair_imported_scores_as_the_committed_set() {
    let (_tmp, out_dir) = temp("fm");
    let committed = repo().join("models/fashion-mnist");
    let manifest = Manifest::from_json(&std::fs::read_to_string(committed.join("manifest.json")).unwrap()).unwrap();
    let classes = out_dir.with_extension("classes.txt");
    std::fs::write(&classes, manifest.classes.join("\n")).unwrap();
    let (mean, std) =
        (manifest.input.normalize.mean.get(0).to_string(), manifest.input.normalize.std.get(0).to_string());
    let (trunk, tail) = (committed.join("split_trunk.onnx"), committed.join("split_tail.onnx"));
    let out = import(
        "fm-again",
        &committed.join("tiny.onnx"),
        &committed.join("large.onnx"),
        &out_dir,
        &[
            "--classes-file",
            classes.to_str().unwrap(),
            "--mean",
            &mean,
            "--std",
            &std,
            "--split-trunk",
            trunk.to_str().unwrap(),
            "--split-tail",
            tail.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("split model: trunk -> features [1, 16, 7, 7] -> tail"));
    // The split model's feature shape and files are read from the graphs, as committed (the ONNX
    // sources; the archives compiled from them are compared by their outputs, in eval below).
    let imported = Manifest::from_json(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap()).unwrap();
    let (a, b) = (imported.split.as_ref().unwrap(), manifest.split.as_ref().unwrap());
    let source = |s: &hiedge_core::manifest::StageEntry| s.source.as_ref().map(|f| f.sha256.clone());
    assert_eq!(
        (&a.feature_shape, source(&a.trunk), source(&a.tail)),
        (&b.feature_shape, source(&b.trunk), source(&b.tail))
    );
    assert!(source(&a.trunk).is_some());
    let (ours, theirs) = (eval_json(&out_dir, 500), eval_json(&committed, 500));
    for policy in ["tiny-only", "large-only"] {
        assert_eq!(row(&ours, policy, "-")["hi_accuracy"], row(&theirs, policy, "-")["hi_accuracy"], "{policy}");
    }
    for key in ["exit_head_accuracy", "u8_accuracy"] {
        assert_eq!(ours["split"][key], theirs["split"][key], "{key}");
    }
    std::fs::remove_file(&classes).ok();
}

#[test]
fn contradictions_are_refused_with_one_line() {
    let fixtures = repo().join("cli/tests/fixtures");
    let (tiny, large) = toy_pair();
    let fm_tiny = repo().join("models/fashion-mnist/tiny.onnx");
    let (readme, cumsum) = (repo().join("README.md"), fixtures.join("nhwc_cumsum_tiny.onnx"));
    let (_tmp, out_dir) = temp("refused");
    let split = ["--split-trunk", tiny.to_str().unwrap(), "--split-tail", large.to_str().unwrap()];
    // (set name, tiny model, the other flags, what the one line says)
    let cases: Vec<(&str, &Path, Vec<&str>, &str)> = vec![
        ("x", &tiny, vec!["--classes", "a,b,c"], "outputs 10 values but 3 class names"),
        ("x", &tiny, vec!["--classes", CLASSES, "--layout", "NCHW"], "contradicts the input shape"),
        ("x", &tiny, vec!["--classes", CLASSES, "--color", "rgb"], "needs 3 channel(s)"),
        ("x", &tiny, vec!["--classes", CLASSES, "--mean", "0.1,0.2"], "--mean has 2 values"),
        ("x", &fm_tiny, vec!["--classes", CLASSES], "the models take different inputs"),
        ("x", &readme, vec!["--classes", CLASSES], "tiny model: not an ONNX model"),
        ("My Set/..", &tiny, vec!["--classes", CLASSES], "is not a model-set name"),
        // A graph with an operator the browser's and Worker's model reader leaves out.
        (
            "x",
            &cumsum,
            vec!["--classes", CLASSES],
            "which hiedge's model reader (the browser client's and the Worker's) does not include",
        ),
        // A split trunk that is not one (one output) is refused.
        ("x", &tiny, [&["--classes", CLASSES][..], &split[..]].concat(), "the split trunk has 1 outputs"),
    ];
    for (name, tiny, extra, expected) in cases {
        let out = import(name, tiny, &large, &out_dir, &extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name} {tiny:?} {extra:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{extra:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(!out_dir.exists(), "nothing written for a refused import");
    }
}

#[test]
fn import_never_writes_through_a_link_nor_over_a_file_it_did_not_create() {
    let (tiny, large) = toy_pair();
    let import_into = |out: &Path| import("x", &tiny, &large, out, &["--classes", CLASSES]);
    let refused = |out: &Path, expected: &str| {
        let run = import_into(out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    };
    let (_tmp, root) = temp("links");
    std::fs::create_dir_all(&root).unwrap();
    let victim_dir = root.join("victim");
    std::fs::create_dir_all(&victim_dir).unwrap();
    let victim = victim_dir.join("precious.txt");
    std::fs::write(&victim, "keep me").unwrap();

    // --out is a link to another directory: refused, nothing written there.
    let linked_out = root.join("linked-out");
    std::os::unix::fs::symlink(&victim_dir, &linked_out).unwrap();
    refused(&linked_out, "is a symbolic link");
    assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 1);

    // A file the import would write is a link to a file elsewhere: refused, the file untouched.
    let out = root.join("with-link");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("tiny.onnx")).unwrap();
    refused(&out, "exists");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

    // A regular file the import would write (here a compiled archive) is already there: refused,
    // the file untouched, and the ONNX files were not written beside it.
    let out = root.join("with-file");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("large.nnef.tar"), "someone else's").unwrap();
    refused(&out, "large.nnef.tar exists");
    assert_eq!(std::fs::read_to_string(out.join("large.nnef.tar")).unwrap(), "someone else's");
    assert!(!out.join("tiny.onnx").exists());

    // The same import into a new directory works.
    let fresh = root.join("fresh");
    let run = import_into(&fresh);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(fresh.join("manifest.json").is_file());
}

/// `bytes` written to `dir/name` (an ONNX graph a test made).
fn written(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Cloudflare's limits are checked at import: a large model whose archive is over the 25 MiB a
/// static asset may be is stored in parts (each within it, joined back whole), a device model over
/// it, or a set whose loading and one run take more than an isolate's 128 MB, is refused naming
/// the limit, and nothing is left behind; a set within them says what it needs.
#[test]
fn a_set_over_the_workers_limits_is_stored_in_parts_or_refused_at_import() {
    let (tmp, out_dir) = temp("limits");
    let write = |name: &str, bytes: Vec<u8>| written(tmp.path(), name, bytes);
    let tiny = write("tiny.onnx", support::onnx::dense(16));
    // 784 x 8500 float weights: 26.7 MB, over 25 MiB (26.2 MB).
    let big = write("big.onnx", support::onnx::dense(8500));
    // A 784 x 60000 float activation: 188 MB, over 128 MB, from 40 bytes of weights.
    let wide = write("wide.onnx", support::onnx::wide_activation(60_000));
    for (tiny, large, expected) in [
        (&big, &tiny, "MiB: Cloudflare serves static assets of at most 25.0 MiB each"),
        (&tiny, &wide, "MB to load and run once, natively: more than the 128.0 MB a Worker isolate may use"),
    ] {
        let out = import("x", tiny, large, &out_dir, &["--classes", CLASSES]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{large:?}: {stderr}");
        assert!(stderr.contains(expected), "{large:?}: {stderr}");
        assert!(stderr.contains("https://developers.cloudflare.com/workers/platform/limits/"), "{stderr}");
        assert!(!out_dir.exists(), "nothing written for a refused import");
        // The number it names is over the limit it names.
        let named: f64 = stderr
            .split(" is ")
            .nth(1)
            .or(stderr.split(" took ").nth(1))
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(named > if large == &wide { 128.0 } else { 25.0 }, "{stderr}");
        println!("refused: {}", stderr.trim_end());
    }
    // The 26.7 MB model as the large one: stored in parts of at most 25 MiB, the whole archive not
    // left to upload, and read back whole (eval runs it).
    let out = import("x", &tiny, &big, &out_dir, &["--classes", CLASSES]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("large.nnef.tar is over Cloudflare's 25.0 MiB static-asset limit"), "{stdout}");
    let manifest = Manifest::from_json(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap()).unwrap();
    let parts = manifest.model("large").unwrap().stored_files();
    assert_eq!(parts, ["large.nnef.tar.part-0", "large.nnef.tar.part-1"]);
    assert!(!out_dir.join("large.nnef.tar").exists());
    for part in &parts {
        assert!(std::fs::metadata(out_dir.join(part)).unwrap().len() <= 25 * 1024 * 1024, "{part}");
    }
    let report = eval_json(&out_dir, 3);
    assert_eq!(report["images"], 3, "eval loads the large model from its parts");
    println!("parts: {}", stdout.lines().find(|l| l.contains("parts")).unwrap_or_default());
    println!("parts: {}", stdout.lines().find(|l| l.starts_with("Cloudflare limits")).unwrap_or_default());
    std::fs::remove_dir_all(&out_dir).unwrap();
    // Within the limits: 4.2 MB of weights, and the measured memory is reported.
    let fits = write("fits.onnx", support::onnx::dense(1300));
    let out = import("x", &tiny, &fits, &out_dir, &["--classes", CLASSES]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("Cloudflare limits")).expect("the limits line");
    let heap: f64 =
        line.split("the Worker's models took ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    // At least the weights held once (4.1 MB), and not absurdly more.
    assert!((4.0..64.0).contains(&heap), "{line}");
    println!("accepted: {line}");
}

/// A large model with PyTorch's default GELU (the erf form, as in a ViT) imports: tract folds it
/// into one operator, written to NNEF as `tract_core_gelu_exact` and read back by the browser's
/// and Worker's reader, with the ONNX model's outputs (import checks them).
#[test]
fn exact_gelu_imports_as_one_operator() {
    let (tmp, out_dir) = temp("gelu");
    let write = |name: &str, bytes: Vec<u8>| written(tmp.path(), name, bytes);
    let tiny = write("tiny.onnx", support::onnx::dense(16));
    let large = write("gelu.onnx", support::onnx::dense_exact_gelu(64));
    let out = import("gelu", &tiny, &large, &out_dir, &["--classes", CLASSES]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archive = std::fs::read(out_dir.join("large.nnef.tar")).unwrap();
    let text = String::from_utf8_lossy(&archive);
    assert!(text.contains("tract_core_gelu_exact"), "the archive writes the folded GELU");
    assert!(!text.contains("tract_core_erf"), "no unfolded erf is left");
    let manifest = Manifest::from_json(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap()).unwrap();
    let model = Model::load(&manifest, "large", &archive).expect("the runtime's reader reads it");
    assert_eq!(model.logits(&[128; 784]).unwrap().len(), 10);
}
