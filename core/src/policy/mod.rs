//! Decision policies: keep the tiny model's answer or offload the sample to the large model.
//!
//! Every policy looks at the tiny model's probability vector. The threshold policies compute a
//! confidence *score* in `0..=1` and offload when `score <= threshold` (keep only when strictly more
//! confident than the threshold), so a threshold of 1 offloads everything and 0 keeps (almost)
//! everything:
//!
//! | policy | score |
//! |---|---|
//! | [`ScoreRule::MaxProb`] | top probability `p1` (Moothedath et al.) |
//! | [`ScoreRule::Margin`] | `p1 - p2` |
//! | [`ScoreRule::Entropy`] | `1 - H(p) / ln K` |
//! | [`ScoreRule::LogisticTop2`] | `sigmoid(b + w1 p1 + w2 p2)` (the "LRA" module of Behera et al.; default threshold 0.5) |
//!
//! [`OnlineHedge`] learns its threshold online from the remote labels of offloaded samples,
//! [`EeHiPolicy`] decides on an early-exit model's exit head first (EE-HI), and
//! [`PolicyConfig::AlwaysLocal`] / [`PolicyConfig::AlwaysOffload`] are the baselines.
//!
//! The layer above probability maths and the manifest schema: policies read both, and nothing
//! below imports them.
//!
//! ```
//! use hiedge_core::{PolicyConfig, Action};
//! let mut policy = PolicyConfig::MaxProb { threshold: 0.8 }.build().unwrap();
//! assert_eq!(policy.decide(&[0.9, 0.05, 0.05]).unwrap().action, Action::Keep);
//! assert_eq!(policy.decide(&[0.6, 0.3, 0.1]).unwrap().action, Action::Offload);
//! assert!(policy.decide(&[f32::NAN, 0.5, 0.5]).is_err());
//! ```

mod config;
mod ee_hi;
mod hedge;
pub mod planner;
mod threshold;
pub mod tradeoff;

use serde::{Deserialize, Serialize};

use crate::error::Result;

pub use config::{PolicyConfig, PolicyKind};
pub use ee_hi::{expected_ms as ee_hi_expected_ms, EeHiPolicy};
pub use hedge::{OnlineHedge, MAX_SEED};
pub use threshold::{FixedPolicy, ScoreRule, ThresholdPolicy};

/// What to do with a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Use the tiny model's answer.
    Keep,
    /// Ask the large model.
    Offload,
}

/// A policy's verdict on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Keep or offload.
    pub action: Action,
    /// The confidence score the policy compared (see the module docs).
    pub score: f32,
    /// True when [`OnlineHedge`] offloaded only to explore (it would have kept the sample).
    pub explored: bool,
}

impl Decision {
    /// `action == Offload`.
    pub fn is_offload(&self) -> bool {
        self.action == Action::Offload
    }
}

/// What an offloaded sample taught us: the remote model's label for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Feedback<'a> {
    /// The tiny model's probabilities for the sample (as given to `decide`).
    pub probs: &'a [f32],
    /// The tiny model's label.
    pub local_label: usize,
    /// The large model's label, taken as the truth.
    pub remote_label: usize,
    /// The sample's [`Decision::explored`].
    pub explored: bool,
}

/// A decision module. `decide` may update internal state (a random stream, for exploration);
/// `observe` receives remote labels for offloaded samples, in any order.
///
/// A policy that [uses the exit head](DecisionPolicy::uses_exit_head) of an early-exit local
/// model (EE-HI) is asked twice: [`decide_at_exit_head`](DecisionPolicy::decide_at_exit_head) after
/// stage 1, and `decide` on the final head only when that said "run stage 2". Plain policies keep
/// the defaults and see only the full local model's probabilities.
pub trait DecisionPolicy: Send + std::fmt::Debug {
    /// Short snake_case name (`max_prob`, `online_hedge`, ...).
    fn name(&self) -> &'static str;
    /// Keep or offload a sample with these local-model probabilities (the final head's, for a
    /// staged model). Errors on an empty vector, NaN/infinite or out-of-range values, or values
    /// that do not sum to 1.
    fn decide(&mut self, probs: &[f32]) -> Result<Decision>;
    /// Whether the policy decides on the exit head of an early-exit model (false by default).
    fn uses_exit_head(&self) -> bool {
        false
    }
    /// The decision after stage 1 of an early-exit model, from the exit head's probabilities:
    /// `Some` to stop there (`Keep`: answer with the exit head; `Offload`: offload without stage 2),
    /// `None` to run stage 2 and then [`decide`](DecisionPolicy::decide). By default, after checking
    /// the probabilities, always `None`.
    fn decide_at_exit_head(&mut self, exit_probs: &[f32]) -> Result<Option<Decision>> {
        crate::prob::validate_probs(exit_probs)?;
        Ok(None)
    }
    /// Learns from the remote label of an offloaded sample. Fixed policies ignore it.
    fn observe(&mut self, _feedback: &Feedback<'_>) -> Result<()> {
        Ok(())
    }
    /// The threshold the policy currently applies, if it has one.
    fn threshold(&self) -> Option<f32> {
        None
    }
}

/// What the policy tests share: build and decide in one call, and an LRA configuration.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Decision, PolicyConfig};
    use crate::error::Result;

    /// Builds `cfg` and decides on `probs`.
    pub fn decide(cfg: PolicyConfig, probs: &[f32]) -> Result<Decision> {
        cfg.build()?.decide(probs)
    }

    /// LogisticTop2 with weights (-4, 10, -4) at `threshold`.
    pub fn lra(threshold: f32) -> PolicyConfig {
        PolicyConfig::LogisticTop2 { bias: -4.0, w1: 10.0, w2: -4.0, threshold }
    }
}
