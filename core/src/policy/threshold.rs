//! Fixed-threshold decision modules ([`ThresholdPolicy`] over a [`ScoreRule`]) and the
//! always-local / always-offload baselines ([`FixedPolicy`]).

use crate::error::Result;
use crate::manifest::LogisticParams;
use crate::policy::{Action, Decision, DecisionPolicy};
use crate::prob::{sigmoid, top2, validate_probs};

/// How a threshold policy turns probabilities into a confidence score in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreRule {
    /// Top probability.
    MaxProb,
    /// Top minus second probability.
    Margin,
    /// One minus normalised entropy.
    Entropy,
    /// Logistic regression on the top two probabilities: estimated probability the tiny model is right.
    LogisticTop2(LogisticParams),
}

impl ScoreRule {
    /// Snake-case key, as used in the manifest's `decision.thresholds`.
    pub fn key(&self) -> &'static str {
        match self {
            ScoreRule::MaxProb => "max_prob",
            ScoreRule::Margin => "margin",
            ScoreRule::Entropy => "entropy",
            ScoreRule::LogisticTop2(_) => "logistic_top2",
        }
    }

    /// Score of a probability vector that has passed [`validate_probs`].
    pub fn score_unchecked(&self, probs: &[f32]) -> f32 {
        let (p1, p2) = top2(probs);
        match self {
            ScoreRule::MaxProb => p1,
            ScoreRule::Margin => (p1 - p2).max(0.0),
            ScoreRule::Entropy => {
                if probs.len() < 2 {
                    return 1.0;
                }
                let h: f32 = probs.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.ln()).sum();
                (1.0 - h / (probs.len() as f32).ln()).clamp(0.0, 1.0)
            }
            ScoreRule::LogisticTop2(l) => sigmoid(l.bias + l.w1 * p1 + l.w2 * p2),
        }
    }

    /// Validates, then scores.
    pub fn score(&self, probs: &[f32]) -> Result<f32> {
        validate_probs(probs)?;
        Ok(self.score_unchecked(probs))
    }
}

/// Offload when the rule's score is `<= threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdPolicy {
    /// The score.
    pub rule: ScoreRule,
    /// Offload when `score <= threshold`.
    pub threshold: f32,
}

impl ThresholdPolicy {
    /// The Worker's hop to its server tier (the manifest's `oip.escalate`) as a policy on the
    /// Worker model's probabilities: `None` for `always` (every sample goes on).
    pub fn escalation(escalate: &crate::manifest::Escalate) -> Option<Self> {
        use crate::manifest::Escalate;
        let (rule, threshold) = match *escalate {
            Escalate::Always => return None,
            Escalate::MaxProb { threshold } => (ScoreRule::MaxProb, threshold),
            Escalate::Margin { threshold } => (ScoreRule::Margin, threshold),
            Escalate::Entropy { threshold } => (ScoreRule::Entropy, threshold),
        };
        Some(ThresholdPolicy { rule, threshold })
    }
}

impl DecisionPolicy for ThresholdPolicy {
    fn name(&self) -> &'static str {
        self.rule.key()
    }
    fn decide(&mut self, probs: &[f32]) -> Result<Decision> {
        let score = self.rule.score(probs)?;
        let action = if score <= self.threshold { Action::Offload } else { Action::Keep };
        Ok(Decision { action, score, explored: false })
    }
    fn threshold(&self) -> Option<f32> {
        Some(self.threshold)
    }
}

/// Always the same action, whatever the sample (the tiny-only and large-only baselines).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedPolicy(pub Action);

impl DecisionPolicy for FixedPolicy {
    fn name(&self) -> &'static str {
        match self.0 {
            Action::Keep => "always_local",
            Action::Offload => "always_offload",
        }
    }
    fn decide(&mut self, probs: &[f32]) -> Result<Decision> {
        validate_probs(probs)?;
        Ok(Decision { action: self.0, score: top2(probs).0, explored: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{decide, lra};
    use crate::policy::PolicyConfig;
    use crate::prob::top2;

    #[test]
    fn max_prob_offloads_at_or_below_threshold() {
        let cfg = PolicyConfig::MaxProb { threshold: 0.7 };
        assert_eq!(decide(cfg.clone(), &[0.7, 0.2, 0.1]).unwrap().action, Action::Offload);
        assert_eq!(decide(cfg.clone(), &[0.71, 0.19, 0.1]).unwrap().action, Action::Keep);
        // extremes: 1 offloads even a certain sample, 0 keeps everything
        assert!(decide(PolicyConfig::MaxProb { threshold: 1.0 }, &[1.0, 0.0]).unwrap().is_offload());
        assert!(!decide(PolicyConfig::MaxProb { threshold: 0.0 }, &[0.5, 0.5]).unwrap().is_offload());
    }

    #[test]
    fn margin_ties_are_maximally_unsure() {
        let d = decide(PolicyConfig::Margin { threshold: 0.0 }, &[0.4, 0.4, 0.2]).unwrap();
        assert_eq!(d.score, 0.0);
        assert!(d.is_offload());
        let d = decide(PolicyConfig::Margin { threshold: 0.3 }, &[0.7, 0.2, 0.1]).unwrap();
        assert!((d.score - 0.5).abs() < 1e-6);
        assert!(!d.is_offload());
    }

    #[test]
    fn entropy_score_spans_zero_to_one() {
        let uniform = decide(PolicyConfig::Entropy { threshold: 0.0 }, &[0.25; 4]).unwrap();
        assert!(uniform.score.abs() < 1e-6 && uniform.is_offload());
        let certain = decide(PolicyConfig::Entropy { threshold: 0.99 }, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(certain.score, 1.0);
        assert!(!certain.is_offload());
    }

    #[test]
    fn logistic_top2_matches_formula() {
        let probs = [0.6, 0.3, 0.1];
        let d = decide(lra(0.5), &probs).unwrap();
        let expected = sigmoid(-4.0 + 10.0 * 0.6 - 4.0 * 0.3);
        assert!((d.score - expected).abs() < 1e-6);
        assert_eq!(d.is_offload(), expected <= 0.5);
        // sigmoid(-4 + 10*0.45 - 4*0.45) = sigmoid(-1.3) < 0.5 -> offload
        assert!(decide(lra(0.5), &[0.45, 0.45, 0.1]).unwrap().is_offload());
    }

    #[test]
    fn baselines_ignore_confidence() {
        assert!(!decide(PolicyConfig::AlwaysLocal, &[0.1; 10]).unwrap().is_offload());
        assert!(decide(PolicyConfig::AlwaysOffload, &[1.0, 0.0]).unwrap().is_offload());
    }

    #[test]
    fn single_class_and_ties() {
        assert_eq!(top2(&[1.0]), (1.0, 0.0));
        assert_eq!(top2(&[0.5, 0.5]), (0.5, 0.5));
        assert_eq!(top2(&[0.2, 0.5, 0.3]), (0.5, 0.3));
        assert!(decide(PolicyConfig::Entropy { threshold: 0.5 }, &[1.0]).is_ok());
    }
}
