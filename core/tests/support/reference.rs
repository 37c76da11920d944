//! The native reference that the browser tests compare the wasm build against
//! (`wasm-client/tests/native_reference.json`), and the rules for comparing another machine's or
//! another build's output with it.
//!
//! tract picks its SIMD kernels at run time (AVX2, AVX-512, wasm simd128) and wasm has its own libm,
//! so floats differ in their last bits between machines and builds. The file documents one machine's
//! output; it is never compared as text. The rules:
//! * labels and EE-HI stages: exactly;
//! * probabilities within [`PROB_TOL`] absolute, scores within [`SCORE_TOL`];
//! * keep/offload decisions exactly, except where the reference score lies within [`SCORE_TOL`] of
//!   the threshold: such a flip is legitimate, is counted, and at most [`MAX_NEAR_THRESHOLD_FLIPS`]
//!   are allowed per policy.
//!
//! Included with `#[path]` by `core/tests/wasm_reference.rs` (native) and
//! `wasm-client/tests/web.rs` (wasm in Chromium), so both sides use the same rules.

#![allow(dead_code)] // each includer uses a different part

use std::collections::BTreeMap;

use hiedge_core::{Action, Decision, PolicyConfig};
use serde::{Deserialize, Serialize};

/// Largest accepted |difference| of one probability.
pub const PROB_TOL: f32 = 1e-5;
/// Largest accepted |difference| of one decision score.
pub const SCORE_TOL: f32 = 1e-5;
/// Decisions per policy allowed to differ, each only where the score is within [`SCORE_TOL`] of the threshold.
pub const MAX_NEAR_THRESHOLD_FLIPS: usize = 2;

/// The whole reference file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    /// What produced it (one machine's native tract).
    pub about: String,
    /// The tiny model's label per image.
    pub labels: Vec<usize>,
    /// The tiny model's probabilities per image.
    pub probs: Vec<Vec<f32>>,
    /// Every calibrated policy's decisions on `probs`.
    pub policies: BTreeMap<String, PolicyReference>,
    /// EE-HI through a session with the early-exit model.
    pub ee_hi: EeReference,
}

/// One policy's configuration and decisions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyReference {
    /// The calibrated configuration.
    pub config: PolicyConfig,
    /// The threshold the policy applied (for the near-threshold rule).
    pub threshold: Option<f32>,
    /// Its decision per image.
    pub decisions: Vec<Decision>,
}

/// EE-HI's configuration and steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EeReference {
    /// The calibrated EE-HI thresholds.
    pub config: PolicyConfig,
    /// One step per image.
    pub steps: Vec<EeStep>,
}

/// What EE-HI did with one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EeStep {
    /// `exit`, `early_offload` or `stage2`.
    pub stage: String,
    /// The local label.
    pub label: usize,
    /// Whether it was offloaded.
    pub offload: bool,
    /// The exit head's top probability (the stage-1 score).
    pub exit_p1: f32,
    /// The score of the decision taken (exit head p1, or the final head's p1 after stage 2).
    pub score: f32,
}

/// Labels exactly and probabilities within [`PROB_TOL`]; returns the largest difference.
pub fn compare_predictions(
    want_labels: &[usize],
    want_probs: &[Vec<f32>],
    got_labels: &[usize],
    got_probs: &[Vec<f32>],
) -> Result<f32, String> {
    if want_labels.len() != got_labels.len() || want_probs.len() != got_probs.len() {
        return Err(format!("{} reference images, {} compared", want_labels.len(), got_labels.len()));
    }
    if let Some(i) = (0..want_labels.len()).find(|&i| want_labels[i] != got_labels[i]) {
        return Err(format!("image {i}: label {} differs from the reference {}", got_labels[i], want_labels[i]));
    }
    compare_probs("image", want_probs, got_probs, PROB_TOL)
}

/// Each item's probabilities (as many as the reference's) within `tol` of the reference's; returns
/// the largest difference. `item` names an item in the error ("image 3: ...").
fn compare_probs(item: &str, want: &[Vec<f32>], got: &[Vec<f32>], tol: f32) -> Result<f32, String> {
    let mut max_diff = 0.0f32;
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if w.len() != g.len() {
            return Err(format!("{item} {i}: {} probabilities, reference has {}", g.len(), w.len()));
        }
        for (a, b) in w.iter().zip(g) {
            let d = (a - b).abs();
            if d.is_nan() || d > tol {
                return Err(format!("{item} {i}: probability {b} vs reference {a} (|diff| {d} > {tol})"));
            }
            max_diff = max_diff.max(d);
        }
    }
    Ok(max_diff)
}

/// Is `score` within [`SCORE_TOL`] of any of `thresholds`?
fn near(score: f32, thresholds: &[f32]) -> bool {
    thresholds.iter().any(|t| (score - t).abs() <= SCORE_TOL)
}

/// Decisions exactly, scores within [`SCORE_TOL`], except near-threshold flips (counted, at most
/// [`MAX_NEAR_THRESHOLD_FLIPS`]). Returns the number of flips.
pub fn compare_decisions(what: &str, want: &PolicyReference, got: &[Decision]) -> Result<usize, String> {
    if want.decisions.len() != got.len() {
        return Err(format!("{what}: {} decisions, reference has {}", got.len(), want.decisions.len()));
    }
    let thresholds: Vec<f32> = want.threshold.into_iter().collect();
    let mut flips = 0;
    for (i, (w, g)) in want.decisions.iter().zip(got).enumerate() {
        if (w.score - g.score).abs() > SCORE_TOL || g.score.is_nan() {
            return Err(format!("{what}, image {i}: score {} vs reference {}", g.score, w.score));
        }
        if (w.action, w.explored) != (g.action, g.explored) {
            if !near(w.score, &thresholds) {
                return Err(format!(
                    "{what}, image {i}: {g:?} but the reference says {w:?} (score not near the threshold)"
                ));
            }
            flips += 1;
        }
    }
    if flips > MAX_NEAR_THRESHOLD_FLIPS {
        return Err(format!("{what}: {flips} near-threshold flips, at most {MAX_NEAR_THRESHOLD_FLIPS} allowed"));
    }
    Ok(flips)
}

/// EE-HI steps: stage, label and offload exactly, except where the reference's stage-1 score is
/// within [`SCORE_TOL`] of the exit or offload threshold, or its stage-2 score of the HI threshold
/// (counted, at most [`MAX_NEAR_THRESHOLD_FLIPS`]). Returns the number of flips.
pub fn compare_ee_steps(want: &EeReference, got: &[EeStep]) -> Result<usize, String> {
    let PolicyConfig::EeHi { exit, offload, hi } = want.config else {
        return Err(format!("the EE-HI reference has a {:?} configuration", want.config));
    };
    if want.steps.len() != got.len() {
        return Err(format!("EE-HI: {} steps, reference has {}", got.len(), want.steps.len()));
    }
    let mut flips = 0;
    for (i, (w, g)) in want.steps.iter().zip(got).enumerate() {
        if (w.score - g.score).abs() > SCORE_TOL && w.stage == g.stage {
            return Err(format!("EE-HI image {i}: score {} vs reference {}", g.score, w.score));
        }
        if (&w.stage, w.label, w.offload) != (&g.stage, g.label, g.offload) {
            let borderline = near(w.exit_p1, &[exit, offload]) || (w.stage == "stage2" && near(w.score, &[hi]));
            if !borderline {
                return Err(format!("EE-HI image {i}: {g:?} but the reference says {w:?}"));
            }
            flips += 1;
        }
    }
    if flips > MAX_NEAR_THRESHOLD_FLIPS {
        return Err(format!("EE-HI: {flips} near-threshold flips, at most {MAX_NEAR_THRESHOLD_FLIPS} allowed"));
    }
    Ok(flips)
}

/// A decision from its parts (as the JS client reports them).
pub fn decision(offload: bool, score: f32, explored: bool) -> Decision {
    Decision { action: if offload { Action::Offload } else { Action::Keep }, score, explored }
}

/// Largest accepted |difference| of one probability of the real-size set's models (their GELU and
/// layer norms go through wasm's own libm; random weights put every probability near 0.1).
pub const ZOO_PROB_TOL: f32 = 1e-4;

/// Native tract's probabilities of the real-size set (`models/zoo-rgb`) on [`zoo_samples`]
/// (`wasm-client/tests/zoo_reference.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZooReference {
    /// What produced it.
    pub about: String,
    /// The device model's probabilities per sample.
    pub tiny: Vec<Vec<f32>>,
    /// The large model's probabilities per sample.
    pub large: Vec<Vec<f32>>,
}

/// Two 224x224 RGB samples (height x width x colour), the same on every machine: seeded
/// pseudo-random noise and a smooth colour ramp.
pub fn zoo_samples() -> Vec<Vec<u8>> {
    let (h, w) = (224usize, 224usize);
    let mut seed = 12345u32;
    let noise = (0..h * w * 3)
        .map(|_| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as u8
        })
        .collect();
    let ramp = (0..h * w * 3).map(|i| ((i / 3 % w) + (i / 3 / w) + 40 * (i % 3)) as u8).collect();
    vec![noise, ramp]
}

/// `got` against `want`, per sample and class, within [`ZOO_PROB_TOL`]: the largest difference.
pub fn compare_zoo(want: &[Vec<f32>], got: &[Vec<f32>]) -> Result<f32, String> {
    if want.len() != got.len() {
        return Err(format!("{} samples, reference has {}", got.len(), want.len()));
    }
    compare_probs("sample", want, got, ZOO_PROB_TOL)
}
