//! Hierarchical Inference on the committed fixture, one sample at a time, as a device would do it:
//! the tiny model on every image, the calibrated decision module, the large model only when it
//! offloads. Run from the repository root:
//!
//! ```sh
//! cargo run --release -p hiedge-eval --example hi_fixture -- 20
//! ```

use std::path::Path;

use hiedge_core::{Feedback, Manifest, Model, PolicyConfig};
use hiedge_eval::fixture::Fixture;
use hiedge_eval::Metrics;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20);
    let dir = Path::new("models/fashion-mnist");
    let manifest = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
    let tiny = Model::load(&manifest, "tiny", &std::fs::read(dir.join("tiny.nnef.tar"))?)?;
    let large = Model::load(&manifest, "large", &std::fs::read(dir.join("large.nnef.tar"))?)?;
    let fixture = Fixture::load(&dir.join("fixture"), &[], manifest.input_len(), manifest.classes.len())?;
    let mut policy = PolicyConfig::calibrated(&manifest)?.build()?;

    let mut metrics = Metrics::default();
    for i in 0..n.min(fixture.len()) {
        let pixels = fixture.image(i);
        let local = tiny.predict(pixels, manifest.temperature())?;
        let decision = policy.decide(&local.probs)?;
        let answer = if decision.is_offload() {
            let remote = large.predict(pixels, 1.0)?;
            let fb = Feedback {
                probs: &local.probs,
                local_label: local.label,
                remote_label: remote.label,
                explored: decision.explored,
            };
            policy.observe(&fb)?;
            remote.label
        } else {
            local.label
        };
        let truth = fixture.labels[i] as usize;
        metrics.record(truth, local.label, answer, decision.is_offload());
        println!(
            "#{i:<4} {:<9} score {:.3}  tiny: {:<12} answer: {:<12} truth: {:<12} {}",
            if decision.is_offload() { "offloaded" } else { "local" },
            decision.score,
            manifest.classes[local.label],
            manifest.classes[answer],
            manifest.classes[truth],
            if answer == truth { "ok" } else { "WRONG" }
        );
    }
    println!(
        "\n{} samples: HI accuracy {:.1}%, offloaded {:.1}%",
        metrics.n,
        100.0 * metrics.hi_accuracy(),
        100.0 * metrics.offload_fraction()
    );
    Ok(())
}
