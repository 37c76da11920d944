//! The split model (MDI-Exit) offline: exit-head and tail predictions over a labelled set, the
//! accuracy, exit share and bytes sent at an exit threshold, and the threshold that reaches a
//! target accuracy with the most exits (what `hiedge calibrate` writes to `decision.split`).
//!
//! ```
//! use hiedge_eval::split::SplitSamples;
//! // Two samples: the exit head is sure of the first (and right), unsure of the second.
//! let s = SplitSamples::new(vec![vec![0.9, 0.1], vec![0.6, 0.4]], vec![0, 1], vec![0, 1], vec![0, 1], 784, 792).unwrap();
//! let o = s.at_exit(0.8);
//! assert_eq!((o.exited, o.accuracy), (0.5, 1.0));
//! assert_eq!(o.bytes_per_sample, 0.5 * 792.0);
//! ```

use hiedge_core::manifest::SplitCalibrated;
use hiedge_core::prob::{argmax, softmax, top2};
use hiedge_core::runtime::split::QuantizedFeatures;
use hiedge_core::runtime::{Stage1, Stage2};

use crate::dataset::Split;
use crate::error::{Error, Result};

/// Per-sample outputs of a split model over a labelled set.
#[derive(Debug, Clone)]
pub struct SplitSamples {
    /// Softmax of the exit head.
    pub exit_probs: Vec<Vec<f32>>,
    /// Tail's label on u8-quantised features (what the Worker answers).
    pub tail_u8: Vec<usize>,
    /// Tail's label on float features.
    pub tail_f32: Vec<usize>,
    /// Truth.
    pub labels: Vec<usize>,
    /// Bytes of one raw sample (what HI sends).
    pub raw_bytes: usize,
    /// Bytes of one features body (what split sends).
    pub feature_bytes: usize,
}

/// A split model at one exit threshold.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SplitOutcome {
    /// The threshold: exit when the exit head's `p1 > exit`.
    pub exit: f32,
    /// Accuracy (exit head where it exited, tail on u8 features elsewhere).
    pub accuracy: f64,
    /// Share answered by the exit head.
    pub exited: f64,
    /// Mean bytes sent per sample.
    pub bytes_per_sample: f64,
}

impl SplitSamples {
    /// From per-sample outputs; all lists must have the same length.
    pub fn new(
        exit_probs: Vec<Vec<f32>>,
        tail_u8: Vec<usize>,
        tail_f32: Vec<usize>,
        labels: Vec<usize>,
        raw_bytes: usize,
        feature_bytes: usize,
    ) -> Result<Self> {
        let n = labels.len();
        if exit_probs.len() != n || tail_u8.len() != n || tail_f32.len() != n {
            return Err(Error::InvalidData("split outputs and labels differ in length".into()));
        }
        Ok(SplitSamples { exit_probs, tail_u8, tail_f32, labels, raw_bytes, feature_bytes })
    }

    /// Runs the trunk and the tail (on quantised and on float features) over `data`.
    pub fn compute(trunk: &Stage1, tail: &Stage2, data: &Split) -> Result<Self> {
        let (mut exit_probs, mut tail_u8, mut tail_f32) = (Vec::new(), Vec::new(), Vec::new());
        let mut feature_bytes = 0;
        for i in 0..data.len() {
            let (exit_logits, features) = trunk.run(data.image(i))?;
            exit_probs.push(softmax(&exit_logits, 1.0));
            let q = QuantizedFeatures::quantize(&features);
            feature_bytes = q.to_bytes().len();
            tail_u8.push(argmax(&tail.run(&q.dequantize())?));
            tail_f32.push(argmax(&tail.run(&features)?));
        }
        let labels = data.labels.clone();
        Self::new(exit_probs, tail_u8, tail_f32, labels, trunk.input_len(), feature_bytes)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn share(&self, hit: impl Fn(usize) -> bool) -> f64 {
        (0..self.len()).filter(|&i| hit(i)).count() as f64 / self.len().max(1) as f64
    }

    /// Accuracy of the exit head alone.
    pub fn exit_head_accuracy(&self) -> f64 {
        self.share(|i| argmax(&self.exit_probs[i]) == self.labels[i])
    }

    /// Accuracy of trunk + tail on u8 features (no exit).
    pub fn tail_u8_accuracy(&self) -> f64 {
        self.share(|i| self.tail_u8[i] == self.labels[i])
    }

    /// Accuracy of trunk + tail on float features (no exit, no quantisation).
    pub fn tail_f32_accuracy(&self) -> f64 {
        self.share(|i| self.tail_f32[i] == self.labels[i])
    }

    /// Exit where the exit head's `p1 > exit`, else send u8 features to the tail.
    pub fn at_exit(&self, exit: f32) -> SplitOutcome {
        let exits = |i: usize| top2(&self.exit_probs[i]).0 > exit;
        let right = |i: usize| {
            let label = if exits(i) { argmax(&self.exit_probs[i]) } else { self.tail_u8[i] };
            label == self.labels[i]
        };
        let exited = self.share(exits);
        SplitOutcome {
            exit,
            accuracy: self.share(right),
            exited,
            bytes_per_sample: (1.0 - exited) * self.feature_bytes as f64,
        }
    }

    /// The threshold (0.01 grid) that reaches `target` accuracy with the most exits, or `None`.
    pub fn fit_exit(&self, target: f64) -> Option<SplitOutcome> {
        (0..=100).map(|k| self.at_exit(k as f32 / 100.0)).find(|o| o.accuracy >= target)
    }

    /// What `hiedge calibrate` writes: the fitted threshold for `target`.
    pub fn calibrated(&self, target: f64) -> Option<SplitCalibrated> {
        self.fit_exit(target).map(|o| SplitCalibrated {
            exit: o.exit,
            target_accuracy: target,
            exited: o.exited,
            accuracy: o.accuracy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fitted_threshold_is_the_lowest_that_reaches_the_target() {
        // Exit head right when p1 >= 0.7, wrong below; tail always right.
        let p = |p1: f32| vec![p1, 1.0 - p1];
        let exit_probs = vec![p(0.95), p(0.9), p(0.8), p(0.72), p(0.65), p(0.55)];
        let labels = vec![0, 0, 0, 0, 1, 1];
        let s = SplitSamples::new(exit_probs, labels.clone(), labels.clone(), labels, 784, 792).unwrap();
        assert_eq!(s.tail_u8_accuracy(), 1.0);
        let o = s.fit_exit(1.0).unwrap();
        // Exiting at p1 > 0.65 would answer the 0.65 sample (wrong); 0.65 itself does not exit it.
        assert!((o.exit - 0.65).abs() < 1e-6, "{o:?}");
        assert_eq!((o.accuracy, o.exited), (1.0, 4.0 / 6.0));
        assert!((o.bytes_per_sample - 2.0 / 6.0 * 792.0).abs() < 1e-9);
        assert!(s.fit_exit(1.01).is_none());
    }
}
