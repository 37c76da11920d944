//! EE-HI over a labelled set: per-sample facts from both heads and the large model
//! ([`EeSamples`]), what given thresholds do on them ([`EeSamples::simulate`], with the runtime's own
//! [`EeHiPolicy`] rules) and the thresholds that reach a target accuracy at the least expected latency
//! ([`EeSamples::fit`]).

use hiedge_core::manifest::{EeCost, EeHiThresholds, EeOutcome};
use hiedge_core::policy::ee_hi_expected_ms;
use hiedge_core::policy::{Action, EeHiPolicy};
use hiedge_core::prob::{argmax, top2};

use crate::error::{Error, Result};

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
        let right = |p: &Vec<f32>, t: usize| argmax(p) == t;
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

    /// EE-HI with thresholds `th` on these samples, by the rules the runtime applies
    /// ([`EeHiPolicy::at_exit_head`], [`EeHiPolicy::at_final_head`]).
    pub fn simulate(&self, th: &EeHiThresholds) -> Result<EeOutcome> {
        let policy = EeHiPolicy::new(*th)?;
        let (mut right, mut off, mut exited, mut s2) = (0usize, 0usize, 0usize, 0usize);
        for i in 0..self.len() {
            let answer_right = match policy.at_exit_head(self.exit_p1[i]) {
                Some(Action::Keep) => {
                    exited += 1;
                    self.exit_right[i]
                }
                Some(Action::Offload) => {
                    off += 1;
                    self.large_right[i]
                }
                None => {
                    s2 += 1;
                    match policy.at_final_head(self.final_p1[i]) {
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
        Ok(EeOutcome {
            accuracy: right as f64 / n,
            offloaded: off as f64 / n,
            exited: exited as f64 / n,
            stage2: s2 as f64 / n,
        })
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
                    // Every grid point is valid (offload <= exit, all in 0..=1).
                    let Ok(out) = self.simulate(&th) else { continue };
                    if out.accuracy < target {
                        continue;
                    }
                    let ms = ee_hi_expected_ms(&out, cost);
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
    fn simulate_and_fit() {
        // Sample 0: exit head sure and right. 1: exit unsure, final sure and right. 2: both unsure,
        // final wrong, large right. 3: exit very unsure, large right.
        let exit = vec![vec![0.95, 0.05], vec![0.7, 0.3], vec![0.6, 0.4], vec![0.5, 0.5]];
        let fin = vec![vec![0.99, 0.01], vec![0.05, 0.95], vec![0.55, 0.45], vec![0.6, 0.4]];
        let truth = [0, 1, 1, 1];
        let large = [0, 1, 1, 1];
        let s = EeSamples::new(&exit, &fin, &large, &truth).unwrap();
        let out = s.simulate(&EeHiThresholds { exit: 0.9, offload: 0.5, hi: 0.6 }).unwrap();
        assert_eq!(out, EeOutcome { accuracy: 1.0, offloaded: 0.5, exited: 0.25, stage2: 0.5 });
        assert_eq!((s.exit_head_accuracy(), s.final_head_accuracy()), (0.25, 0.5));
        // Everything through stage 2 and kept: samples 2 and 3 (final head wrong) are lost.
        assert_eq!(s.simulate(&EeHiThresholds { exit: 1.0, offload: 0.0, hi: 0.0 }).unwrap().accuracy, 0.5);
        assert!(s.simulate(&EeHiThresholds { exit: 0.5, offload: 0.6, hi: 0.5 }).is_err());
        let cost = EeCost { stage1_ms: 0.1, stage2_ms: 0.2, offload_ms: 20.0 };
        let (th, out) = s.fit(1.0, &cost).unwrap();
        assert_eq!(out.accuracy, 1.0);
        assert_eq!(out.offloaded, 0.5, "{th:?}: two samples need the large model");
        th.validate().unwrap();
        assert!(EeSamples::new(&exit, &fin, &large, &truth[..3]).is_err());
    }
}
