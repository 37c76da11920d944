//! A candidate policy beside the active one, two ways to try it before switching:
//! - **shadow** ([`Shadow`]): the candidate decides on every sample the active policy decides on,
//!   and nothing it decides is acted on; its [`ShadowReport`] says what it would have done: how
//!   often it would offload, how often its answer would have agreed with the large model where the
//!   large model's answer is known, and the label-free expected accuracy of what it would keep;
//! - **rollout** ([`Rollout`]): the candidate decides for a stable fraction of users (by a hash of
//!   the user id: a user stays in one arm across sessions) or of samples (by a hash of the sample's
//!   bytes: the same input always gets the same policy), and the [`RolloutReport`] counts each arm.
//!
//! The hash is FNV-1a (64 bit) of the bytes, its top 53 bits read as a number in [0, 1): integer
//! arithmetic, so every machine puts a user in the same arm.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::monitor::p_correct;
use crate::policy::{DecisionPolicy, Feedback, PolicyConfig};
use crate::prob::argmax;

/// A candidate policy, built and checked to decide on the final head's probabilities like the
/// policy it stands beside.
fn build_candidate(config: &PolicyConfig, role: &str) -> Result<Box<dyn DecisionPolicy>> {
    let policy = config.build()?;
    if policy.uses_exit_head() {
        return Err(Error::InvalidPolicy(format!(
            "the {role} policy ({}) decides on the exit head; a {role} compares policies on the final head only",
            policy.name()
        )));
    }
    Ok(policy)
}

/// What the shadow policy would have done (`ShadowReport` in TypeScript).
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowReport {
    /// The candidate.
    pub policy: PolicyConfig,
    /// Samples it decided on.
    pub samples: u64,
    /// Samples it would have offloaded.
    pub offloads: u64,
    /// `offloads / samples` (0 before any sample): what `hiedge eval` calls the offload fraction.
    pub offload_fraction: f64,
    /// Samples the active policy wanted to offload.
    pub active_offloads: u64,
    /// Samples where the two decided differently.
    pub differing: u64,
    /// Samples the large model answered (so the candidate's answer can be checked against it).
    pub checked: u64,
    /// Over `checked`: how often the candidate's HI answer (the large model's when it offloads,
    /// the device's when it keeps) equals the large model's. `hiedge eval --truth large`'s HI
    /// accuracy on the same samples.
    pub agreement: Option<f64>,
    /// Checked samples the candidate would keep.
    pub kept_checked: u64,
    /// Over those: how often the device's answer equals the large model's (`hiedge eval --truth
    /// large`'s kept accuracy).
    pub kept_agreement: Option<f64>,
    /// Label-free: the mean calibrated P(the device is right) over every sample the candidate
    /// would keep (the manifest's logistic_top2; `None` without a calibrated manifest or before
    /// it kept any).
    pub expected_kept_accuracy: Option<f64>,
}

/// A shadow policy and its running report.
#[derive(Debug)]
pub struct Shadow {
    policy: Box<dyn DecisionPolicy>,
    logistic: Option<(f32, f32, f32)>,
    report: ShadowReport,
    kept_agreed: u64,
    agreed: u64,
    kept: u64,
    kept_p_sum: f64,
}

impl Shadow {
    /// A shadow of `config`, estimating expected accuracy with `manifest`'s logistic_top2.
    pub fn new(config: PolicyConfig, manifest: &Manifest) -> Result<Self> {
        let policy = build_candidate(&config, "shadow")?;
        let logistic =
            manifest.decision.as_ref().map(|d| (d.logistic_top2.bias, d.logistic_top2.w1, d.logistic_top2.w2));
        Ok(Self {
            policy,
            logistic,
            report: ShadowReport {
                policy: config,
                samples: 0,
                offloads: 0,
                offload_fraction: 0.0,
                active_offloads: 0,
                differing: 0,
                checked: 0,
                agreement: None,
                kept_checked: 0,
                kept_agreement: None,
                expected_kept_accuracy: None,
            },
            kept_agreed: 0,
            agreed: 0,
            kept: 0,
            kept_p_sum: 0.0,
        })
    }

    /// The candidate's decision on these probabilities: whether it would offload.
    pub fn decide(&mut self, probs: &[f32]) -> Result<bool> {
        Ok(self.policy.decide(probs)?.is_offload())
    }

    /// Records one sample: the candidate's decision (from [`decide`](Self::decide)), the active
    /// policy's wish, the device's probabilities and the large model's label when it answered.
    /// An online candidate learns from the large model's label on samples it would offload.
    pub fn record(&mut self, offload: bool, active_offload: bool, probs: &[f32], remote: Option<usize>) -> Result<()> {
        let local = argmax(probs);
        let r = &mut self.report;
        r.samples += 1;
        r.offloads += u64::from(offload);
        r.active_offloads += u64::from(active_offload);
        r.differing += u64::from(offload != active_offload);
        if !offload {
            self.kept += 1;
            if let Some(l) = self.logistic {
                self.kept_p_sum += p_correct(l, probs);
            }
        }
        if let Some(remote) = remote {
            r.checked += 1;
            if offload {
                self.agreed += 1;
                self.policy.observe(&Feedback { probs, local_label: local, remote_label: remote, explored: false })?;
            } else {
                r.kept_checked += 1;
                if local == remote {
                    self.agreed += 1;
                    self.kept_agreed += 1;
                }
            }
        }
        Ok(())
    }

    /// The report so far.
    pub fn report(&self) -> ShadowReport {
        let ratio = |a: f64, n: u64| (n > 0).then(|| a / n as f64);
        let r = &self.report;
        ShadowReport {
            offload_fraction: ratio(r.offloads as f64, r.samples).unwrap_or(0.0),
            agreement: ratio(self.agreed as f64, r.checked),
            kept_agreement: ratio(self.kept_agreed as f64, r.kept_checked),
            expected_kept_accuracy: self.logistic.and_then(|_| ratio(self.kept_p_sum, self.kept)),
            ..r.clone()
        }
    }
}

/// Which policy decided a sample under a rollout.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// The active policy.
    Control,
    /// The rollout's candidate.
    Candidate,
}

/// What a rollout hashes to pick the arm.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutUnit {
    /// The user id: every sample of a user gets the same arm, in every session.
    #[default]
    User,
    /// The sample's bytes: the same input always gets the same arm.
    Sample,
}

/// One arm's counts.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmCounts {
    /// Samples the arm's policy decided.
    pub samples: u64,
    /// Of those, the ones it wanted to offload.
    pub offloads: u64,
    /// Offloads the large model answered.
    pub answered: u64,
    /// Of those, the ones where the device's answer was the large model's.
    pub agreed: u64,
}

/// A rollout's running counts (`RolloutReport` in TypeScript).
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutReport {
    /// The candidate.
    pub policy: PolicyConfig,
    /// The fraction of users or samples it decides for.
    pub fraction: f64,
    /// What is hashed.
    pub unit: RolloutUnit,
    /// With `unit: user`, this user's arm.
    pub user_arm: Option<Arm>,
    /// The active policy's samples.
    pub control: ArmCounts,
    /// The candidate's samples.
    pub candidate: ArmCounts,
}

/// A candidate policy applied to a stable fraction of users or samples.
#[derive(Debug)]
pub struct Rollout {
    policy: Box<dyn DecisionPolicy>,
    report: RolloutReport,
}

/// FNV-1a over `bytes`, as a number in [0, 1).
pub fn unit_hash(bytes: &[u8]) -> f64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Rollout {
    /// `config` for `fraction` (0..=1) of users (`user_id` required) or samples.
    pub fn new(config: PolicyConfig, fraction: f64, unit: RolloutUnit, user_id: Option<&str>) -> Result<Self> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::InvalidSettings(format!("rollout: `fraction` must be in 0..=1, got {fraction}")));
        }
        let user_arm = match (unit, user_id) {
            (RolloutUnit::User, Some(id)) if !id.is_empty() => Some(Self::arm_of(id.as_bytes(), fraction)),
            (RolloutUnit::User, _) => {
                return Err(Error::InvalidSettings(
                    "rollout: `unit: user` needs a non-empty `userId` (or use `unit: sample`)".into(),
                ))
            }
            (RolloutUnit::Sample, _) => None,
        };
        let policy = build_candidate(&config, "rollout")?;
        Ok(Self {
            policy,
            report: RolloutReport {
                policy: config,
                fraction,
                unit,
                user_arm,
                control: ArmCounts::default(),
                candidate: ArmCounts::default(),
            },
        })
    }

    fn arm_of(bytes: &[u8], fraction: f64) -> Arm {
        if unit_hash(bytes) < fraction {
            Arm::Candidate
        } else {
            Arm::Control
        }
    }

    /// The arm of a sample with these bytes.
    pub fn arm(&self, sample: &[u8]) -> Arm {
        self.report.user_arm.unwrap_or_else(|| Self::arm_of(sample, self.report.fraction))
    }

    /// The candidate policy (it decides the candidate arm's samples and learns from them).
    pub fn policy_mut(&mut self) -> &mut dyn DecisionPolicy {
        self.policy.as_mut()
    }

    /// Counts one sample of `arm`: whether its policy wanted to offload, and whether the large
    /// model answered it with the device's label.
    pub fn record(&mut self, arm: Arm, offload: bool, answered_agreeing: Option<bool>) {
        let c = match arm {
            Arm::Control => &mut self.report.control,
            Arm::Candidate => &mut self.report.candidate,
        };
        c.samples += 1;
        c.offloads += u64::from(offload);
        if let Some(agreed) = answered_agreeing {
            c.answered += 1;
            c.agreed += u64::from(agreed);
        }
    }

    /// Starts the counts afresh (the arms stay as they are).
    pub fn reset(&mut self) {
        self.report.control = ArmCounts::default();
        self.report.candidate = ArmCounts::default();
    }

    /// The report so far.
    pub fn report(&self) -> RolloutReport {
        self.report.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::from_json(include_str!("../../../models/fashion-mnist/manifest.json")).unwrap()
    }

    #[test]
    fn shadow_counts_what_the_candidate_would_do() {
        let mut s = Shadow::new(PolicyConfig::MaxProb { threshold: 0.8 }, &manifest()).unwrap();
        let probs: [&[f32]; 3] = [&[0.9, 0.1], &[0.7, 0.3], &[0.6, 0.4]];
        // Active offloads only the last; the large model answered samples 1 and 2 (labels 1 and 0).
        let (actives, remotes) = ([false, false, true], [None, Some(1), Some(0)]);
        for ((p, active), remote) in probs.iter().zip(actives).zip(remotes) {
            let offload = s.decide(p).unwrap();
            s.record(offload, active, p, remote).unwrap();
        }
        let r = s.report();
        assert_eq!((r.samples, r.offloads, r.active_offloads, r.differing), (3, 2, 1, 1));
        // Checked: sample 1 (candidate offloads: agrees by construction), sample 2 (offloads).
        assert_eq!((r.checked, r.agreement, r.kept_checked, r.kept_agreement), (2, Some(1.0), 0, None));
        assert!((r.offload_fraction - 2.0 / 3.0).abs() < 1e-12);
        let kept = r.expected_kept_accuracy.unwrap();
        assert!(kept > 0.5 && kept < 1.0, "{kept}");
    }

    #[test]
    fn a_kept_sample_agrees_only_when_the_labels_match() {
        let mut s = Shadow::new(PolicyConfig::MaxProb { threshold: 0.5 }, &manifest()).unwrap();
        s.record(false, false, &[0.9, 0.1], Some(0)).unwrap();
        s.record(false, false, &[0.9, 0.1], Some(1)).unwrap();
        let r = s.report();
        assert_eq!((r.checked, r.kept_checked, r.agreement, r.kept_agreement), (2, 2, Some(0.5), Some(0.5)));
    }

    #[test]
    fn rollout_arms_are_stable_and_near_the_fraction() {
        let config = PolicyConfig::MaxProb { threshold: 0.9 };
        let users = (0..10_000).map(|i| format!("user-{i}"));
        let candidates = users
            .filter(|u| {
                let r = Rollout::new(config.clone(), 0.1, RolloutUnit::User, Some(u)).unwrap();
                let arm = r.arm(&[1, 2, 3]);
                assert_eq!(arm, r.arm(&[9, 9]), "a user's arm does not depend on the sample");
                arm == Arm::Candidate
            })
            .count();
        // Binomial(10000, 0.1): sd 30; 5 sd either side.
        assert!((850..=1150).contains(&candidates), "{candidates}");
        let r = Rollout::new(config.clone(), 0.5, RolloutUnit::Sample, None).unwrap();
        assert_eq!(r.arm(&[1, 2, 3]), r.arm(&[1, 2, 3]));
        assert_eq!(Rollout::new(config.clone(), 0.0, RolloutUnit::Sample, None).unwrap().arm(&[7]), Arm::Control);
        assert_eq!(Rollout::new(config.clone(), 1.0, RolloutUnit::Sample, None).unwrap().arm(&[7]), Arm::Candidate);
        assert!(Rollout::new(config.clone(), 0.1, RolloutUnit::User, None).is_err());
        assert!(Rollout::new(config, 1.5, RolloutUnit::Sample, None).is_err());
        // FNV-1a's published value for "a" (0xaf63dc4c8601ec8c), top 53 bits over 2^53.
        assert_eq!(unit_hash(b"a"), (0xaf63dc4c8601ec8cu64 >> 11) as f64 / (1u64 << 53) as f64);
    }

    #[test]
    fn candidates_on_the_exit_head_are_refused() {
        let ee = PolicyConfig::EeHi { exit: 0.9, offload: 0.3, hi: 0.8 };
        assert!(Shadow::new(ee.clone(), &manifest()).is_err());
        assert!(Rollout::new(ee, 0.5, RolloutUnit::Sample, None).is_err());
    }
}
