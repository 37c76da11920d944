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
//! [`OnlineHedge`] learns its threshold online from the remote labels of offloaded samples, and
//! [`PolicyConfig::AlwaysLocal`] / [`PolicyConfig::AlwaysOffload`] are the baselines.
//!
//! ```
//! use hiedge_core::{PolicyConfig, Action};
//! let mut policy = PolicyConfig::MaxProb { threshold: 0.8 }.build().unwrap();
//! assert_eq!(policy.decide(&[0.9, 0.05, 0.05]).unwrap().action, Action::Keep);
//! assert_eq!(policy.decide(&[0.6, 0.3, 0.1]).unwrap().action, Action::Offload);
//! assert!(policy.decide(&[f32::NAN, 0.5, 0.5]).is_err());
//! ```

use serde::{Deserialize, Serialize};

use crate::manifest::LogisticParams;
use crate::{Error, Manifest, Result};

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
pub trait DecisionPolicy: Send + std::fmt::Debug {
    /// Short snake_case name (`max_prob`, `online_hedge`, ...).
    fn name(&self) -> &'static str;
    /// Keep or offload a sample with these tiny-model probabilities. Errors on an empty vector,
    /// NaN/infinite or out-of-range values, or values that do not sum to 1.
    fn decide(&mut self, probs: &[f32]) -> Result<Decision>;
    /// Learns from the remote label of an offloaded sample. Fixed policies ignore it.
    fn observe(&mut self, _feedback: &Feedback<'_>) -> Result<()> {
        Ok(())
    }
    /// The threshold the policy currently applies, if it has one.
    fn threshold(&self) -> Option<f32> {
        None
    }
}

/// Checks that `probs` is a probability vector.
pub fn validate_probs(probs: &[f32]) -> Result<()> {
    if probs.is_empty() {
        return Err(Error::InvalidProbabilities("the probability vector is empty".into()));
    }
    if let Some((i, p)) = probs.iter().enumerate().find(|(_, p)| !p.is_finite()) {
        return Err(Error::InvalidProbabilities(format!("probability {i} is {p}, not a finite number")));
    }
    if let Some((i, p)) = probs.iter().enumerate().find(|(_, p)| !(-1e-6..=1.0 + 1e-6).contains(*p)) {
        return Err(Error::InvalidProbabilities(format!("probability {i} is {p}, outside 0..=1")));
    }
    let sum: f32 = probs.iter().sum();
    if (sum - 1.0).abs() > 1e-3 {
        return Err(Error::InvalidProbabilities(format!(
            "probabilities sum to {sum}, not 1 (pass softmax outputs, not logits)"
        )));
    }
    Ok(())
}

/// The largest and second largest probability (`p2 = 0` for a single class; `p1 == p2` on a tie).
pub fn top2(probs: &[f32]) -> (f32, f32) {
    let (mut p1, mut p2) = (f32::NEG_INFINITY, 0.0f32);
    for &p in probs {
        if p > p1 {
            p2 = p1.max(0.0);
            p1 = p;
        } else if p > p2 {
            p2 = p;
        }
    }
    (p1.max(0.0), p2)
}

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

/// `1 / (1 + e^-x)`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Offload when the rule's score is `<= threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdPolicy {
    /// The score.
    pub rule: ScoreRule,
    /// Offload when `score <= threshold`.
    pub threshold: f32,
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

/// Online threshold learning on the top probability with exponential weights (Hedge) over a grid of
/// thresholds, HIL-F style (Moothedath et al.), starting from uniform weights (no knowledge).
///
/// Expert `i` offloads when `p1 <= theta_i`. Its loss on a sample is `beta` if it would offload, and
/// 1 if it would keep a sample the tiny model got wrong (judged by the remote label), 0 otherwise.
/// The policy offloads when experts holding at least half the weight say so. Labels arrive only for
/// offloaded samples, so with probability `explore` it also offloads a sample it would keep, and
/// weighs what it learns from such samples by `1 / explore` (an unbiased loss estimate).
#[derive(Debug, Clone)]
pub struct OnlineHedge {
    thresholds: Vec<f32>,
    log_weights: Vec<f64>,
    beta: f64,
    eta: f64,
    explore: f64,
    rng: u64,
    observed: u64,
}

impl OnlineHedge {
    /// `bins` thresholds evenly spaced in `(0, 1]`, offload cost `beta`, learning rate `eta`,
    /// exploration probability `explore`, deterministic random stream `seed`.
    pub fn new(beta: f32, bins: usize, eta: f32, explore: f32, seed: u64) -> Result<Self> {
        if !(beta.is_finite() && (0.0..=1.0).contains(&beta)) {
            return Err(Error::InvalidPolicy(format!("online_hedge beta must be in 0..=1, is {beta}")));
        }
        if !(2..=10_000).contains(&bins) {
            return Err(Error::InvalidPolicy(format!("online_hedge bins must be in 2..=10000, is {bins}")));
        }
        if !(eta.is_finite() && eta > 0.0) {
            return Err(Error::InvalidPolicy(format!("online_hedge eta must be > 0, is {eta}")));
        }
        if seed > MAX_SEED {
            return Err(Error::InvalidPolicy(format!(
                "online_hedge seed must be at most 2^53-1 (exact as a JavaScript number), is {seed}"
            )));
        }
        if !(explore.is_finite() && explore > 0.0 && explore <= 1.0) {
            return Err(Error::InvalidPolicy(format!("online_hedge explore must be in (0, 1], is {explore}")));
        }
        let thresholds = (1..=bins).map(|i| i as f32 / bins as f32).collect();
        Ok(OnlineHedge {
            thresholds,
            log_weights: vec![0.0; bins],
            beta: beta as f64,
            eta: eta as f64,
            explore: explore as f64,
            rng: seed_state(seed),
            observed: 0,
        })
    }

    /// Number of remote labels learnt from so far.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// Expert weights scaled so the largest is 1 (log weights are kept normalised the same way).
    fn weights(&self) -> impl Iterator<Item = f64> + '_ {
        let max = self.log_weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.log_weights.iter().map(move |lw| (lw - max).exp())
    }

    /// Weight mass of experts that would offload a sample with top probability `p1`.
    fn offload_mass(&self, p1: f32) -> f64 {
        let (mut offload, mut total) = (0.0, 0.0);
        for (t, w) in self.thresholds.iter().zip(self.weights()) {
            total += w;
            if p1 <= *t {
                offload += w;
            }
        }
        offload / total
    }

    /// xorshift64*, uniform in [0, 1).
    fn next_uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The xorshift state for a seed: splitmix64 of it, so every seed (42 and 43 too) starts its own
/// stream, and never the all-zero state xorshift cannot leave.
fn seed_state(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    match z ^ (z >> 31) {
        0 => 0x9E37_79B9_7F4A_7C15,
        state => state,
    }
}

impl DecisionPolicy for OnlineHedge {
    fn name(&self) -> &'static str {
        "online_hedge"
    }

    fn decide(&mut self, probs: &[f32]) -> Result<Decision> {
        validate_probs(probs)?;
        let p1 = top2(probs).0;
        if self.offload_mass(p1) >= 0.5 {
            return Ok(Decision { action: Action::Offload, score: p1, explored: false });
        }
        let explored = self.next_uniform() < self.explore;
        let action = if explored { Action::Offload } else { Action::Keep };
        Ok(Decision { action, score: p1, explored })
    }

    fn observe(&mut self, fb: &Feedback<'_>) -> Result<()> {
        validate_probs(fb.probs)?;
        let p1 = top2(fb.probs).0;
        let weight = if fb.explored { 1.0 / self.explore } else { 1.0 };
        let local_wrong = if fb.local_label != fb.remote_label { 1.0 } else { 0.0 };
        for (t, lw) in self.thresholds.iter().zip(self.log_weights.iter_mut()) {
            let loss = if p1 <= *t { self.beta } else { local_wrong };
            *lw -= self.eta * weight * loss;
        }
        let max = self.log_weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        self.log_weights.iter_mut().for_each(|lw| *lw -= max);
        self.observed += 1;
        Ok(())
    }

    /// The weighted-median threshold: samples with `p1` at or below it are offloaded.
    fn threshold(&self) -> Option<f32> {
        let w: Vec<f64> = self.weights().collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        for (t, wi) in self.thresholds.iter().zip(&w).rev() {
            acc += wi;
            if acc >= total / 2.0 {
                return Some(*t);
            }
        }
        self.thresholds.first().copied()
    }
}

fn default_logistic_threshold() -> f32 {
    0.5
}
fn default_bins() -> usize {
    100
}
fn default_eta() -> f32 {
    0.05
}
fn default_explore() -> f32 {
    0.05
}
/// Largest seed accepted: 2^53 - 1, so a configuration survives JSON and JavaScript numbers exactly.
pub const MAX_SEED: u64 = (1 << 53) - 1;

fn default_seed() -> u64 {
    0x1E_3779_B97F_4A7C
}

/// A policy by name with its parameters; serialises as `{"kind": "max_prob", "threshold": 0.9}`.
/// This is what the CLI, the browser client and the demo pass around.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicyConfig {
    /// Offload when `p1 <= threshold`.
    MaxProb {
        /// Threshold in 0..=1.
        threshold: f32,
    },
    /// Offload when `p1 - p2 <= threshold`.
    Margin {
        /// Threshold in 0..=1.
        threshold: f32,
    },
    /// Offload when `1 - H/ln K <= threshold`.
    Entropy {
        /// Threshold in 0..=1.
        threshold: f32,
    },
    /// Offload when `sigmoid(bias + w1 p1 + w2 p2) <= threshold` (0.5 by default).
    LogisticTop2 {
        /// Intercept.
        bias: f32,
        /// Weight of p1.
        w1: f32,
        /// Weight of p2.
        w2: f32,
        /// Threshold in 0..=1.
        #[serde(default = "default_logistic_threshold")]
        threshold: f32,
    },
    /// Online Hedge over thresholds on p1 (see [`OnlineHedge`]).
    OnlineHedge {
        /// Cost of one offload relative to one misclassification (0..=1).
        beta: f32,
        /// Number of thresholds (default 100).
        #[serde(default = "default_bins")]
        bins: usize,
        /// Learning rate (default 0.05).
        #[serde(default = "default_eta")]
        eta: f32,
        /// Exploration probability (default 0.05).
        #[serde(default = "default_explore")]
        explore: f32,
        /// Seed of the exploration stream (at most [`MAX_SEED`], so it is exact in JavaScript).
        #[serde(default = "default_seed")]
        seed: u64,
    },
    /// EE-HI with the early-exit model (see [`crate::early_exit`]): exit when the exit head's
    /// `p1 > exit`, offload at once when `p1 <= offload`, else run stage 2 and offload when its
    /// `p1 <= hi`. Only a session with the early-exit model can run it; [`PolicyConfig::build`]
    /// gives the after-stage-2 rule (MaxProb at `hi`).
    EeHi {
        /// Exit threshold on the exit head.
        exit: f32,
        /// Early-offload threshold on the exit head (`<= exit`).
        offload: f32,
        /// MaxProb threshold on the final head.
        hi: f32,
    },
    /// Never offload (tiny-only).
    AlwaysLocal,
    /// Always offload (large-only).
    AlwaysOffload,
}

fn check_threshold(kind: &str, t: f32) -> Result<()> {
    if t.is_finite() && (0.0..=1.0).contains(&t) {
        Ok(())
    } else {
        Err(Error::InvalidPolicy(format!("{kind} threshold must be in 0..=1, is {t}")))
    }
}

impl PolicyConfig {
    /// The manifest's calibrated `LogisticTop2`: its fitted weights at its calibrated threshold
    /// (the one that reaches the calibration target with the least offloading), or at the plain
    /// LRA rule's 0.5 when the manifest has no threshold for it.
    pub fn calibrated(manifest: &Manifest) -> Result<Self> {
        let d = manifest.decision.as_ref().ok_or_else(|| {
            Error::InvalidPolicy("the manifest has no `decision` section: run `hiedge calibrate` first".into())
        })?;
        let l = d.logistic_top2;
        let threshold = manifest.threshold("logistic_top2").unwrap_or_else(default_logistic_threshold);
        Ok(PolicyConfig::LogisticTop2 { bias: l.bias, w1: l.w1, w2: l.w2, threshold })
    }

    /// `OnlineHedge` with offload cost `beta` and the default bins, learning rate, exploration and seed.
    pub fn online_hedge(beta: f32) -> Self {
        PolicyConfig::OnlineHedge {
            beta,
            bins: default_bins(),
            eta: default_eta(),
            explore: default_explore(),
            seed: default_seed(),
        }
    }

    /// Policy `kind` at the threshold calibrated for it in the manifest (`logistic_top2` also takes
    /// its calibrated weights). Kinds without a threshold get their defaults.
    pub fn calibrated_kind(manifest: &Manifest, kind: &str) -> Result<Self> {
        let t = |k: &str| {
            manifest.threshold(k).ok_or_else(|| {
                Error::InvalidPolicy(format!(
                    "the manifest has no calibrated threshold for `{k}`: run `hiedge calibrate`"
                ))
            })
        };
        Ok(match kind {
            "max_prob" => PolicyConfig::MaxProb { threshold: t(kind)? },
            "margin" => PolicyConfig::Margin { threshold: t(kind)? },
            "entropy" => PolicyConfig::Entropy { threshold: t(kind)? },
            "logistic_top2" => {
                t(kind)?;
                Self::calibrated(manifest)?
            }
            "online_hedge" => Self::online_hedge(0.3),
            "always_local" => PolicyConfig::AlwaysLocal,
            "always_offload" => PolicyConfig::AlwaysOffload,
            "ee_hi" => {
                let e = manifest.decision.as_ref().and_then(|d| d.early_exit).ok_or_else(|| {
                    Error::InvalidPolicy(
                        "the manifest has no calibrated EE-HI thresholds: add an early-exit model and run `hiedge calibrate`"
                            .into(),
                    )
                })?;
                let t = e.thresholds;
                PolicyConfig::EeHi { exit: t.exit, offload: t.offload, hi: t.hi }
            }
            other => return Err(Error::InvalidPolicy(format!("unknown policy kind `{other}`"))),
        })
    }

    /// The score rule and threshold, for threshold policies.
    pub fn threshold_policy(&self) -> Option<ThresholdPolicy> {
        let (rule, threshold) = match *self {
            PolicyConfig::MaxProb { threshold } => (ScoreRule::MaxProb, threshold),
            PolicyConfig::Margin { threshold } => (ScoreRule::Margin, threshold),
            PolicyConfig::Entropy { threshold } => (ScoreRule::Entropy, threshold),
            PolicyConfig::LogisticTop2 { bias, w1, w2, threshold } => {
                (ScoreRule::LogisticTop2(LogisticParams { bias, w1, w2 }), threshold)
            }
            _ => return None,
        };
        Some(ThresholdPolicy { rule, threshold })
    }

    /// Validates the parameters and builds the policy.
    pub fn build(&self) -> Result<Box<dyn DecisionPolicy>> {
        if let Some(p) = self.threshold_policy() {
            check_threshold(p.rule.key(), p.threshold)?;
            if let ScoreRule::LogisticTop2(l) = p.rule {
                if ![l.bias, l.w1, l.w2].iter().all(|v| v.is_finite()) {
                    return Err(Error::InvalidPolicy("logistic_top2 weights must be finite".into()));
                }
            }
            return Ok(Box::new(p));
        }
        Ok(match *self {
            PolicyConfig::OnlineHedge { beta, bins, eta, explore, seed } => {
                Box::new(OnlineHedge::new(beta, bins, eta, explore, seed)?)
            }
            PolicyConfig::EeHi { exit, offload, hi } => {
                crate::early_exit::EeHiThresholds { exit, offload, hi }.validate()?;
                Box::new(ThresholdPolicy { rule: ScoreRule::MaxProb, threshold: hi })
            }
            PolicyConfig::AlwaysLocal => Box::new(FixedPolicy(Action::Keep)),
            PolicyConfig::AlwaysOffload => Box::new(FixedPolicy(Action::Offload)),
            PolicyConfig::MaxProb { .. }
            | PolicyConfig::Margin { .. }
            | PolicyConfig::Entropy { .. }
            | PolicyConfig::LogisticTop2 { .. } => {
                return Err(Error::InvalidPolicy("threshold policy without a threshold rule".into()))
            }
        })
    }

    /// The EE-HI thresholds, for [`PolicyConfig::EeHi`].
    pub fn ee_hi(&self) -> Option<crate::early_exit::EeHiThresholds> {
        match *self {
            PolicyConfig::EeHi { exit, offload, hi } => Some(crate::early_exit::EeHiThresholds { exit, offload, hi }),
            _ => None,
        }
    }

    /// Parses a JSON policy description and builds it.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::InvalidPolicy(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(cfg: PolicyConfig, probs: &[f32]) -> Result<Decision> {
        cfg.build()?.decide(probs)
    }

    fn lra(threshold: f32) -> PolicyConfig {
        PolicyConfig::LogisticTop2 { bias: -4.0, w1: 10.0, w2: -4.0, threshold }
    }

    fn all_kinds() -> Vec<PolicyConfig> {
        vec![
            PolicyConfig::MaxProb { threshold: 0.5 },
            PolicyConfig::Margin { threshold: 0.5 },
            PolicyConfig::Entropy { threshold: 0.5 },
            lra(0.5),
            PolicyConfig::OnlineHedge { beta: 0.3, bins: 10, eta: 0.1, explore: 0.1, seed: 1 },
            PolicyConfig::AlwaysLocal,
            PolicyConfig::AlwaysOffload,
        ]
    }

    #[test]
    fn every_policy_rejects_bad_probabilities() {
        let bad: [&[f32]; 6] = [
            &[],
            &[f32::NAN, 0.5, 0.5],
            &[f32::INFINITY, 0.0],
            &[f32::NEG_INFINITY, 1.0],
            &[1.5, -0.5],
            &[2.0, 3.0, 1.0], // logits, not probabilities
        ];
        for cfg in all_kinds() {
            for probs in bad {
                let r = decide(cfg.clone(), probs);
                assert!(matches!(r, Err(Error::InvalidProbabilities(_))), "{cfg:?} accepted {probs:?}: {r:?}");
            }
        }
        let msg = decide(PolicyConfig::MaxProb { threshold: 0.5 }, &[]).unwrap_err().to_string();
        assert!(msg.contains("empty"), "{msg}");
    }

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

    #[test]
    fn bad_parameters_are_rejected() {
        for cfg in [
            PolicyConfig::MaxProb { threshold: 1.5 },
            PolicyConfig::Margin { threshold: f32::NAN },
            PolicyConfig::Entropy { threshold: -0.1 },
            PolicyConfig::LogisticTop2 { bias: f32::INFINITY, w1: 1.0, w2: 1.0, threshold: 0.5 },
            PolicyConfig::OnlineHedge { beta: 2.0, bins: 10, eta: 0.1, explore: 0.1, seed: 1 },
            PolicyConfig::OnlineHedge { beta: 0.3, bins: 1, eta: 0.1, explore: 0.1, seed: 1 },
            PolicyConfig::OnlineHedge { beta: 0.3, bins: 10, eta: 0.0, explore: 0.1, seed: 1 },
            PolicyConfig::OnlineHedge { beta: 0.3, bins: 10, eta: 0.1, explore: 0.0, seed: 1 },
            PolicyConfig::OnlineHedge { beta: 0.3, bins: 10, eta: 0.1, explore: 0.1, seed: MAX_SEED + 1 },
        ] {
            assert!(matches!(cfg.build(), Err(Error::InvalidPolicy(_))), "{cfg:?}");
        }
    }

    #[test]
    fn config_json_round_trip_and_defaults() {
        let cfg = PolicyConfig::from_json(r#"{"kind":"logistic_top2","bias":1,"w1":2,"w2":3}"#).unwrap();
        assert_eq!(cfg, PolicyConfig::LogisticTop2 { bias: 1.0, w1: 2.0, w2: 3.0, threshold: 0.5 });
        let cfg = PolicyConfig::from_json(r#"{"kind":"online_hedge","beta":0.3}"#).unwrap();
        let back = PolicyConfig::from_json(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(cfg, back);
        assert!(PolicyConfig::from_json(r#"{"kind":"max_prob"}"#).is_err());
        assert!(PolicyConfig::from_json(r#"{"kind":"bogus","threshold":0.5}"#).is_err());
        assert_eq!(PolicyConfig::from_json(r#"{"kind":"always_local"}"#).unwrap(), PolicyConfig::AlwaysLocal);
    }

    /// A stream where the tiny model is right when p1 > 0.8 and wrong below: starting from
    /// uniform weights, with a cheap offload the learnt threshold moves up to about 0.8.
    #[test]
    fn online_hedge_learns_threshold_from_remote_labels() {
        let mut h = OnlineHedge::new(0.1, 20, 0.2, 0.2, 7).unwrap();
        let start = h.threshold().unwrap();
        assert!((0.45..=0.55).contains(&start), "uniform start gives the middle threshold, got {start}");
        for i in 0..4000 {
            let p1 = 0.5 + 0.5 * ((i * 7919) % 1000) as f32 / 1000.0;
            let probs = [p1, 1.0 - p1];
            let d = h.decide(&probs).unwrap();
            if d.is_offload() {
                let remote = if p1 > 0.8 { 0 } else { 1 };
                h.observe(&Feedback { probs: &probs, local_label: 0, remote_label: remote, explored: d.explored })
                    .unwrap();
            }
        }
        let t = h.threshold().unwrap();
        assert!((0.75..=0.85).contains(&t), "learnt threshold {t}");
        assert!(h.observed() > 0);
        // with offloading more expensive than any error, it learns to keep everything
        let mut h = OnlineHedge::new(1.0, 20, 0.2, 0.2, 7).unwrap();
        for i in 0..4000 {
            let p1 = 0.5 + 0.5 * ((i * 7919) % 1000) as f32 / 1000.0;
            let probs = [p1, 1.0 - p1];
            let d = h.decide(&probs).unwrap();
            if d.is_offload() {
                let fb =
                    Feedback { probs: &probs, local_label: 0, remote_label: (p1 < 0.6) as usize, explored: d.explored };
                h.observe(&fb).unwrap();
            }
        }
        assert!(h.threshold().unwrap() <= 0.55, "{:?}", h.threshold());
    }

    #[test]
    fn calibrated_policies_come_from_the_manifest() {
        let json = |decision: &str| {
            format!(
                r#"{{"schema_version":1,"name":"m","input":{{"shape":[1,1,2,2],"layout":"NCHW","dtype":"u8",
                "normalize":{{"scale":1,"mean":0,"std":1}}}},"classes":["a","b"],
                "models":{{"t":{{"file":"t.onnx","sha256":"{}","input_name":"x","output":"logits","test_accuracy":0.5}}}}{decision}}}"#,
                "0".repeat(64)
            )
        };
        let with = |t: &str| {
            json(&format!(
                r#","decision":{{"temperature":1,"logistic_top2":{{"bias":1,"w1":2,"w2":3}},"thresholds":{{{t}}}}}"#
            ))
        };
        let m = Manifest::from_json(&with(r#""logistic_top2":0.9,"max_prob":0.8"#)).unwrap();
        assert_eq!(
            PolicyConfig::calibrated(&m).unwrap(),
            PolicyConfig::LogisticTop2 { bias: 1.0, w1: 2.0, w2: 3.0, threshold: 0.9 }
        );
        assert_eq!(PolicyConfig::calibrated_kind(&m, "max_prob").unwrap(), PolicyConfig::MaxProb { threshold: 0.8 });
        assert!(PolicyConfig::calibrated_kind(&m, "margin").unwrap_err().to_string().contains("hiedge calibrate"));
        assert!(PolicyConfig::calibrated_kind(&m, "nope").is_err());
        let m = Manifest::from_json(&with("")).unwrap();
        assert_eq!(
            PolicyConfig::calibrated(&m).unwrap(),
            PolicyConfig::LogisticTop2 { bias: 1.0, w1: 2.0, w2: 3.0, threshold: 0.5 }
        );
        let m = Manifest::from_json(&json("")).unwrap();
        assert!(PolicyConfig::calibrated(&m).unwrap_err().to_string().contains("hiedge calibrate"));
    }

    /// With uniform weights a sample with p1 = 0.95 is above the weighted-median threshold, so it is
    /// offloaded only to explore: at rate `explore` (binomial bounds), the same samples for the same
    /// seed, other samples (independently) for another seed.
    #[test]
    fn online_hedge_explores_at_its_rate_reproducibly_per_seed() {
        const N: usize = 2000;
        let explored = |seed| {
            let mut h = OnlineHedge::new(0.3, 50, 0.05, 0.3, seed).unwrap();
            (0..N)
                .map(|_| {
                    let d = h.decide(&[0.95, 0.05]).unwrap();
                    assert_eq!(d.explored, d.is_offload(), "only exploration offloads a confident sample");
                    d.explored
                })
                .collect::<Vec<_>>()
        };
        let a = explored(42);
        let rate = a.iter().filter(|&&e| e).count() as f64 / N as f64;
        // Binomial(2000, 0.3): standard deviation 0.0102; 5 of them.
        assert!((rate - 0.3).abs() < 0.051, "exploration rate {rate}, configured 0.3");
        assert_eq!(a, explored(42), "a seed must repeat its exploration stream");
        let b = explored(43);
        // Two independent streams agree on 0.3^2 + 0.7^2 = 58% of samples (sd 1.1%).
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / N as f64;
        assert!((agree - 0.58).abs() < 0.055, "seeds 42 and 43 agree on {agree} of samples");
    }
}
