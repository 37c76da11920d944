//! Trade-off sweeps over a labelled set: what HI accuracy each policy reaches for what offloading.

use serde::{Deserialize, Serialize};

use hiedge_core::manifest::OutputKind;
use hiedge_core::policy::tradeoff::{fit_threshold, CalibrationTarget, ScoredSample};
use hiedge_core::policy::{DecisionPolicy, Feedback, ScoreRule};
use hiedge_core::prob::{argmax, validate_probs};

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Both models' answers on a labelled set.
#[derive(Debug, Clone)]
pub struct Samples {
    /// True labels.
    pub labels: Vec<usize>,
    /// Tiny-model probabilities (after temperature scaling).
    pub tiny_probs: Vec<Vec<f32>>,
    /// Tiny-model labels.
    pub tiny_pred: Vec<usize>,
    /// Large-model labels.
    pub large_pred: Vec<usize>,
}

impl Samples {
    /// From raw outputs of both models: the tiny model's become probabilities as its manifest
    /// `output` kind says (softmax at `temperature` for logits, unchanged for probabilities); the
    /// large model's argmax is its label either way.
    pub fn from_outputs(
        labels: Vec<usize>,
        tiny_logits: &[Vec<f32>],
        tiny_output: OutputKind,
        large_logits: &[Vec<f32>],
        temperature: f32,
    ) -> Result<Self> {
        if tiny_logits.len() != labels.len() || large_logits.len() != labels.len() {
            return Err(Error::InvalidData(format!(
                "{} labels but {} tiny and {} large outputs",
                labels.len(),
                tiny_logits.len(),
                large_logits.len()
            )));
        }
        let tiny_probs: Vec<Vec<f32>> = tiny_logits.iter().map(|l| tiny_output.probabilities(l, temperature)).collect();
        for p in &tiny_probs {
            validate_probs(p)?;
        }
        let tiny_pred = tiny_probs.iter().map(|p| argmax(p)).collect();
        let large_pred = large_logits.iter().map(|l| argmax(l)).collect();
        Ok(Samples { labels, tiny_probs, tiny_pred, large_pred })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn record(&self, m: &mut Metrics, i: usize, offloaded: bool) {
        let fin = if offloaded { self.large_pred[i] } else { self.tiny_pred[i] };
        m.record(self.labels[i], self.tiny_pred[i], fin, offloaded);
    }

    /// Metrics when every sample is kept (`false`) or offloaded (`true`).
    pub fn baseline(&self, offload: bool) -> Metrics {
        let mut m = Metrics::default();
        (0..self.len()).for_each(|i| self.record(&mut m, i, offload));
        m
    }

    /// Metrics of a threshold rule: offload when `score <= threshold`.
    pub fn at_threshold(&self, rule: &ScoreRule, threshold: f32) -> Metrics {
        let mut m = Metrics::default();
        for (i, p) in self.tiny_probs.iter().enumerate() {
            self.record(&mut m, i, rule.score_unchecked(p) <= threshold);
        }
        m
    }

    /// Runs a (possibly learning) policy over the samples in order; offloaded samples feed the
    /// large model's label back to it, as a deployment would.
    pub fn run_policy(&self, policy: &mut dyn DecisionPolicy) -> Result<Metrics> {
        let mut m = Metrics::default();
        for (i, p) in self.tiny_probs.iter().enumerate() {
            let d = policy.decide(p)?;
            if d.is_offload() {
                policy.observe(&Feedback {
                    probs: p,
                    local_label: self.tiny_pred[i],
                    remote_label: self.large_pred[i],
                    explored: d.explored,
                })?;
            }
            self.record(&mut m, i, d.is_offload());
        }
        Ok(m)
    }

    /// The threshold that reaches `target` HI accuracy with the least offloading
    /// ([`fit_threshold`], the same search the browser's `HiClient.calibrate` runs). `None` when no
    /// threshold reaches it.
    pub fn operating_point(&self, rule: &ScoreRule, target: f64) -> Option<OperatingPoint> {
        let scored: Vec<ScoredSample> = (0..self.len())
            .map(|i| ScoredSample {
                score: rule.score_unchecked(&self.tiny_probs[i]),
                local_right: self.tiny_pred[i] == self.labels[i],
                remote_right: self.large_pred[i] == self.labels[i],
            })
            .collect();
        let point = fit_threshold(&scored, CalibrationTarget::Accuracy(target))?;
        Some(OperatingPoint { threshold: point.threshold, metrics: self.at_threshold(rule, point.threshold) })
    }
}

/// A threshold and what it gives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// Offload when `score <= threshold`.
    pub threshold: f32,
    /// Metrics at that threshold.
    pub metrics: Metrics,
}

#[cfg(test)]
mod tests {
    use super::*;
    use hiedge_core::PolicyConfig;

    /// 4 samples: tiny right on the two confident ones, large right on all but the last.
    fn samples() -> Samples {
        Samples {
            labels: vec![0, 1, 2, 3],
            tiny_probs: vec![vec![0.9, 0.1], vec![0.2, 0.8], vec![0.6, 0.4], vec![0.55, 0.45]],
            tiny_pred: vec![0, 1, 0, 0],
            large_pred: vec![0, 1, 2, 0],
        }
    }

    #[test]
    fn thresholds_trade_offload_for_accuracy() {
        let s = samples();
        assert_eq!(s.baseline(false).hi_accuracy(), 0.5);
        assert_eq!(s.baseline(true).hi_accuracy(), 0.75);
        let m = s.at_threshold(&ScoreRule::MaxProb, 0.6);
        assert_eq!((m.offloaded, m.correct), (2, 3));
        let op = s.operating_point(&ScoreRule::MaxProb, 0.75).unwrap();
        // offloading just the 0.55 sample is not enough; 0.55 and 0.6 are
        assert_eq!(op.threshold, 0.6);
        assert_eq!(op.metrics.offloaded, 2);
        assert!(s.operating_point(&ScoreRule::MaxProb, 0.9).is_none());
        let op = s.operating_point(&ScoreRule::MaxProb, 0.5).unwrap();
        assert_eq!((op.threshold, op.metrics.offloaded), (0.0, 0));
    }

    #[test]
    fn run_policy_matches_threshold_metrics_for_fixed_policies() {
        let s = samples();
        let mut p = PolicyConfig::MaxProb { threshold: 0.6 }.build().unwrap();
        assert_eq!(s.run_policy(p.as_mut()).unwrap(), s.at_threshold(&ScoreRule::MaxProb, 0.6));
        let mut p = PolicyConfig::AlwaysOffload.build().unwrap();
        assert_eq!(s.run_policy(p.as_mut()).unwrap(), s.baseline(true));
    }

    #[test]
    fn from_outputs_checks_lengths() {
        assert!(Samples::from_outputs(vec![0], &[], OutputKind::Logits, &[vec![1.0, 0.0]], 1.0).is_err());
        let s = Samples::from_outputs(vec![1], &[vec![0.0, 2.0]], OutputKind::Logits, &[vec![3.0, 0.0]], 1.0).unwrap();
        assert_eq!((s.tiny_pred[0], s.large_pred[0]), (1, 0));
    }

    /// A tiny model that ends in Softmax: its outputs are used as they are. Softmaxing them again
    /// (the old sweep path) flattens a 0.91 answer over 10 classes to p1 = 0.23, so MaxProb at 0.3
    /// offloaded every sample.
    #[test]
    fn probability_outputs_are_not_softmaxed_again() {
        let mut confident = vec![0.01f32; 10];
        confident[3] = 0.91;
        let outputs = vec![confident; 4];
        let large = vec![vec![0.0; 10]; 4];
        let labels = vec![3; 4];
        let s = Samples::from_outputs(labels.clone(), &outputs, OutputKind::Probabilities, &large, 2.0).unwrap();
        assert!((s.tiny_probs[0][3] - 0.91).abs() < 1e-6, "temperature is not applied to probabilities");
        assert_eq!(s.at_threshold(&ScoreRule::MaxProb, 0.3).offload_fraction(), 0.0);
        let wrong = Samples::from_outputs(labels, &outputs, OutputKind::Logits, &large, 1.0).unwrap();
        assert_eq!(wrong.at_threshold(&ScoreRule::MaxProb, 0.3).offload_fraction(), 1.0, "read as logits");
    }
}
