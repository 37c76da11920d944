//! An early-exit local model (for EE-HI): stage 1 maps the image to the exit head's logits and the
//! intermediate features; stage 2 maps the features to the final logits. Both stages are parsed and
//! optimised once, like [`Model`](crate::Model).
//!
//! ```no_run
//! use hiedge_core::{early_exit::EarlyExitModel, Manifest};
//! # fn main() -> Result<(), hiedge_core::Error> {
//! let dir = std::path::Path::new("models/fashion-mnist");
//! let manifest = Manifest::from_json(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
//! let ee = EarlyExitModel::load(&manifest, &std::fs::read(dir.join("ee_stage1.onnx"))?,
//!                               &std::fs::read(dir.join("ee_stage2.onnx"))?)?;
//! let (exit_logits, features) = ee.stage1(&[0u8; 784])?;
//! let final_logits = ee.stage2(&features)?; // only when the exit head is not sure enough
//! # Ok(()) }
//! ```

use crate::model::{optimised_plan, run_plan, sha256_hex, Plan};
use crate::{Error, Manifest, Preprocessor, Result};

/// The intermediate features stage 1 hands to stage 2.
#[derive(Debug, Clone, PartialEq)]
pub struct Features(Vec<f32>);

impl Features {
    /// The values, in the manifest's `feature_shape`.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// Both stages of the manifest's early-exit model, ready to run.
#[derive(Debug, Clone)]
pub struct EarlyExitModel {
    stage1: Plan,
    stage2: Plan,
    pre: Preprocessor,
    input_shape: Vec<usize>,
    feature_shape: Vec<usize>,
}

impl EarlyExitModel {
    /// Loads the manifest's `early_exit` stages from their ONNX bytes (checking both sha256s).
    pub fn load(manifest: &Manifest, stage1: &[u8], stage2: &[u8]) -> Result<Self> {
        let entry = manifest.early_exit.as_ref().ok_or_else(|| Error::UnknownModel {
            name: "early_exit".into(),
            available: manifest.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        for (name, bytes, want) in
            [("early_exit.stage1", stage1, &entry.stage1), ("early_exit.stage2", stage2, &entry.stage2)]
        {
            let actual = sha256_hex(bytes);
            if actual != want.sha256 {
                return Err(Error::ModelHashMismatch { name: name.into(), expected: want.sha256.clone(), actual });
            }
        }
        let model = EarlyExitModel {
            stage1: optimised_plan(stage1, &manifest.input.shape)?,
            stage2: optimised_plan(stage2, &entry.feature_shape)?,
            pre: Preprocessor::new(manifest),
            input_shape: manifest.input.shape.clone(),
            feature_shape: entry.feature_shape.clone(),
        };
        let probe = model.stage1(&vec![0; model.pre.input_len()])?;
        let classes = manifest.classes.len();
        if probe.0.len() != classes || model.stage2(&probe.1)?.len() != classes {
            return Err(Error::Model(format!("the early-exit stages do not both output {classes} class logits")));
        }
        Ok(model)
    }

    /// Raw pixels -> (exit-head logits, features for stage 2).
    pub fn stage1(&self, pixels: &[u8]) -> Result<(Vec<f32>, Features)> {
        self.stage1_values(&self.pre.run(pixels)?)
    }

    /// The preprocessing stage 1 expects.
    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    /// Already-normalised input values -> (exit-head logits, features for stage 2).
    pub fn stage1_values(&self, input: &[f32]) -> Result<(Vec<f32>, Features)> {
        let mut out = run_plan(&self.stage1, &self.input_shape, input)?;
        if out.len() != 2 {
            return Err(Error::Model(format!("early-exit stage 1 must have 2 outputs, has {}", out.len())));
        }
        let features = Features(out.swap_remove(1));
        let expected: usize = self.feature_shape.iter().product();
        if features.0.len() != expected {
            return Err(Error::Model(format!(
                "stage 1 features have {} values, expected {expected}",
                features.0.len()
            )));
        }
        Ok((out.swap_remove(0), features))
    }

    /// Features -> final logits.
    pub fn stage2(&self, features: &Features) -> Result<Vec<f32>> {
        let mut out = run_plan(&self.stage2, &self.feature_shape, &features.0)?;
        if out.is_empty() {
            return Err(Error::Model("early-exit stage 2 produced no output".into()));
        }
        Ok(out.swap_remove(0))
    }

    /// Number of raw pixels one sample must have.
    pub fn input_len(&self) -> usize {
        self.pre.input_len()
    }
}

// ---- EE-HI: the decision after each stage -------------------------------------------------------

use serde::{Deserialize, Serialize};

use crate::policy::{top2, validate_probs, Action};

/// EE-HI thresholds, all on the top probability `p1` of a head's softmax:
/// after stage 1, answer locally when the exit head is sure (`p1 > exit`), offload at once when it
/// is very unsure (`p1 <= offload`), else run stage 2 and offload when `p1 <= hi` (MaxProb HI).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EeHiThresholds {
    /// Exit early with the exit head's answer when its `p1 > exit`.
    pub exit: f32,
    /// Offload without running stage 2 when the exit head's `p1 <= offload` (`offload <= exit`).
    pub offload: f32,
    /// After stage 2: offload when the final head's `p1 <= hi`.
    pub hi: f32,
}

/// What EE-HI does after stage 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterStage1 {
    /// Answer with the exit head.
    Exit,
    /// Offload now, skipping stage 2.
    Offload,
    /// Run stage 2, then decide.
    Continue,
}

impl EeHiThresholds {
    /// Checks `0 <= offload <= exit <= 1` and `0 <= hi <= 1`.
    pub fn validate(&self) -> Result<()> {
        let ok = |t: f32| t.is_finite() && (0.0..=1.0).contains(&t);
        if !(ok(self.exit) && ok(self.offload) && ok(self.hi)) {
            return Err(Error::InvalidPolicy(format!("ee_hi thresholds must be in 0..=1, are {self:?}")));
        }
        if self.offload > self.exit {
            return Err(Error::InvalidPolicy(format!(
                "ee_hi offload threshold {} must not exceed the exit threshold {}",
                self.offload, self.exit
            )));
        }
        Ok(())
    }

    /// The decision after stage 1, from the exit head's probabilities.
    pub fn after_stage1(&self, exit_probs: &[f32]) -> Result<AfterStage1> {
        validate_probs(exit_probs)?;
        Ok(self.after_stage1_p1(top2(exit_probs).0))
    }

    /// The decision after stage 2, from the final head's probabilities.
    pub fn after_stage2(&self, final_probs: &[f32]) -> Result<Action> {
        validate_probs(final_probs)?;
        Ok(self.after_stage2_p1(top2(final_probs).0))
    }

    /// The stage-1 rule on the exit head's top probability.
    fn after_stage1_p1(&self, p1: f32) -> AfterStage1 {
        if p1 > self.exit {
            AfterStage1::Exit
        } else if p1 <= self.offload {
            AfterStage1::Offload
        } else {
            AfterStage1::Continue
        }
    }

    /// The stage-2 rule (MaxProb HI) on the final head's top probability.
    fn after_stage2_p1(&self, p1: f32) -> Action {
        if p1 <= self.hi {
            Action::Offload
        } else {
            Action::Keep
        }
    }
}

/// Relative costs EE-HI thresholds are fitted for (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EeCost {
    /// Stage 1 on the device.
    pub stage1_ms: f64,
    /// Stage 2 on the device.
    pub stage2_ms: f64,
    /// One offload round trip.
    pub offload_ms: f64,
}

/// EE-HI over a labelled set: what happened, as fractions of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EeOutcome {
    /// Final answers that were right.
    pub accuracy: f64,
    /// Samples offloaded (early or after stage 2).
    pub offloaded: f64,
    /// Samples answered by the exit head.
    pub exited: f64,
    /// Samples that ran stage 2.
    pub stage2: f64,
}

impl EeOutcome {
    /// Expected latency per sample under `cost`: stage 1 always, stage 2 when run, the round trip when offloaded.
    pub fn expected_ms(&self, cost: &EeCost) -> f64 {
        cost.stage1_ms + self.stage2 * cost.stage2_ms + self.offloaded * cost.offload_ms
    }
}

/// EE-HI as `hiedge calibrate` fitted it: thresholds, the costs they were fitted for, and what they
/// gave on the calibration set. Stored in the manifest's `decision.early_exit`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EeHiCalibrated {
    /// The thresholds.
    pub thresholds: EeHiThresholds,
    /// Costs minimised (stage times measured natively, offload round trip assumed).
    pub fitted_for: EeCost,
    /// Outcome on the calibration set.
    pub calibration: EeOutcome,
}

/// Per-sample facts EE-HI needs, precomputed once from both heads' and the large model's outputs.
#[derive(Debug, Clone)]
pub struct EeSamples {
    exit_p1: Vec<f32>,
    final_p1: Vec<f32>,
    exit_right: Vec<bool>,
    final_right: Vec<bool>,
    large_right: Vec<bool>,
}

impl EeSamples {
    /// From the exit head's and final head's probabilities, the large model's labels and the truth.
    pub fn new(exit_probs: &[Vec<f32>], final_probs: &[Vec<f32>], large: &[usize], truth: &[usize]) -> Result<Self> {
        let n = truth.len();
        if exit_probs.len() != n || final_probs.len() != n || large.len() != n || n == 0 {
            return Err(Error::InvalidData("EE-HI samples need the same, non-zero number of each input".into()));
        }
        let right = |p: &Vec<f32>, t: usize| crate::model::argmax(p) == t;
        Ok(EeSamples {
            exit_p1: exit_probs.iter().map(|p| top2(p).0).collect(),
            final_p1: final_probs.iter().map(|p| top2(p).0).collect(),
            exit_right: exit_probs.iter().zip(truth).map(|(p, &t)| right(p, t)).collect(),
            final_right: final_probs.iter().zip(truth).map(|(p, &t)| right(p, t)).collect(),
            large_right: large.iter().zip(truth).map(|(&l, &t)| l == t).collect(),
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.exit_p1.len()
    }

    /// Always false (construction needs samples).
    pub fn is_empty(&self) -> bool {
        self.exit_p1.is_empty()
    }

    /// Accuracy of the exit head alone on these samples.
    pub fn exit_head_accuracy(&self) -> f64 {
        fraction(&self.exit_right)
    }

    /// Accuracy of the final head alone on these samples.
    pub fn final_head_accuracy(&self) -> f64 {
        fraction(&self.final_right)
    }

    /// EE-HI with thresholds `th` on these samples.
    pub fn simulate(&self, th: &EeHiThresholds) -> EeOutcome {
        let (mut right, mut off, mut exited, mut s2) = (0usize, 0usize, 0usize, 0usize);
        for i in 0..self.len() {
            let answer_right = match th.after_stage1_p1(self.exit_p1[i]) {
                AfterStage1::Exit => {
                    exited += 1;
                    self.exit_right[i]
                }
                AfterStage1::Offload => {
                    off += 1;
                    self.large_right[i]
                }
                AfterStage1::Continue => {
                    s2 += 1;
                    match th.after_stage2_p1(self.final_p1[i]) {
                        Action::Offload => {
                            off += 1;
                            self.large_right[i]
                        }
                        Action::Keep => self.final_right[i],
                    }
                }
            };
            right += answer_right as usize;
        }
        let n = self.len() as f64;
        EeOutcome {
            accuracy: right as f64 / n,
            offloaded: off as f64 / n,
            exited: exited as f64 / n,
            stage2: s2 as f64 / n,
        }
    }

    /// The thresholds (on a 0.01 grid) that reach `target` accuracy with the least expected latency
    /// under `cost`; `None` when no setting reaches the target.
    pub fn fit(&self, target: f64, cost: &EeCost) -> Option<(EeHiThresholds, EeOutcome)> {
        let grid: Vec<f32> = (0..=100).map(|k| k as f32 / 100.0).collect();
        let mut best: Option<(EeHiThresholds, EeOutcome, f64)> = None;
        for &exit in &grid[50..] {
            for &offload in grid.iter().filter(|&&o| o <= exit).step_by(2) {
                for &hi in &grid[20..] {
                    let th = EeHiThresholds { exit, offload, hi };
                    let out = self.simulate(&th);
                    if out.accuracy < target {
                        continue;
                    }
                    let ms = out.expected_ms(cost);
                    if best.as_ref().is_none_or(|b| ms < b.2) {
                        best = Some((th, out, ms));
                    }
                }
            }
        }
        best.map(|(th, out, _)| (th, out))
    }
}

fn fraction(flags: &[bool]) -> f64 {
    flags.iter().filter(|&&f| f).count() as f64 / flags.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_after_each_stage() {
        let th = EeHiThresholds { exit: 0.9, offload: 0.4, hi: 0.7 };
        th.validate().unwrap();
        assert_eq!(th.after_stage1(&[0.95, 0.05]).unwrap(), AfterStage1::Exit);
        assert_eq!(th.after_stage1(&[0.9, 0.1]).unwrap(), AfterStage1::Continue);
        assert_eq!(th.after_stage1(&[0.4, 0.35, 0.25]).unwrap(), AfterStage1::Offload);
        assert_eq!(th.after_stage2(&[0.7, 0.3]).unwrap(), Action::Offload);
        assert_eq!(th.after_stage2(&[0.71, 0.29]).unwrap(), Action::Keep);
        assert!(th.after_stage1(&[f32::NAN, 0.5]).is_err());
        assert!(EeHiThresholds { exit: 0.5, offload: 0.6, hi: 0.5 }.validate().is_err());
        assert!(EeHiThresholds { exit: 1.5, offload: 0.1, hi: 0.5 }.validate().is_err());
    }

    #[test]
    fn simulate_and_fit() {
        // Sample 0: exit head sure and right. 1: exit unsure, final sure and right. 2: both unsure,
        // final wrong, large right. 3: exit very unsure, large right.
        let exit = vec![vec![0.95, 0.05], vec![0.7, 0.3], vec![0.6, 0.4], vec![0.5, 0.5]];
        let fin = vec![vec![0.99, 0.01], vec![0.05, 0.95], vec![0.55, 0.45], vec![0.6, 0.4]];
        let truth = [0, 1, 1, 1];
        let large = [0, 1, 1, 1];
        let s = EeSamples::new(&exit, &fin, &large, &truth).unwrap();
        let out = s.simulate(&EeHiThresholds { exit: 0.9, offload: 0.5, hi: 0.6 });
        assert_eq!(out, EeOutcome { accuracy: 1.0, offloaded: 0.5, exited: 0.25, stage2: 0.5 });
        assert_eq!((s.exit_head_accuracy(), s.final_head_accuracy()), (0.25, 0.5));
        // Everything through stage 2 and kept: samples 2 and 3 (final head wrong) are lost.
        assert_eq!(s.simulate(&EeHiThresholds { exit: 1.0, offload: 0.0, hi: 0.0 }).accuracy, 0.5);
        let cost = EeCost { stage1_ms: 0.1, stage2_ms: 0.2, offload_ms: 20.0 };
        let (th, out) = s.fit(1.0, &cost).unwrap();
        assert_eq!(out.accuracy, 1.0);
        assert_eq!(out.offloaded, 0.5, "{th:?}: two samples need the large model");
        th.validate().unwrap();
        assert!(EeSamples::new(&exit, &fin, &large, &truth[..3]).is_err());
    }
}
