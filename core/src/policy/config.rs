//! [`PolicyConfig`]: a policy by name with its parameters, as the CLI, the browser client and the
//! demo pass it around, and how it is built from a manifest's calibrated values.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::manifest::{EeHiThresholds, LogisticParams, Manifest};
use crate::policy::{Action, DecisionPolicy, EeHiPolicy, FixedPolicy, OnlineHedge, ScoreRule, ThresholdPolicy};

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
fn default_seed() -> u64 {
    0x1E_3779_B97F_4A7C
}

/// A policy kind by name, for "this kind at its calibrated parameters"
/// ([`PolicyConfig::calibrated_kind`]); serialises as its snake_case name (`"max_prob"`).
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// [`PolicyConfig::MaxProb`].
    MaxProb,
    /// [`PolicyConfig::Margin`].
    Margin,
    /// [`PolicyConfig::Entropy`].
    Entropy,
    /// [`PolicyConfig::LogisticTop2`].
    LogisticTop2,
    /// [`PolicyConfig::OnlineHedge`] (offload cost 0.3, default learning parameters).
    OnlineHedge,
    /// [`PolicyConfig::EeHi`].
    EeHi,
    /// [`PolicyConfig::AlwaysLocal`].
    AlwaysLocal,
    /// [`PolicyConfig::AlwaysOffload`].
    AlwaysOffload,
}

/// A policy by name with its parameters; serialises as `{"kind": "max_prob", "threshold": 0.9}`.
/// This is what the CLI, the browser client and the demo pass around.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
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
    /// EE-HI with the early-exit model ([`EeHiPolicy`]): exit when the exit head's `p1 > exit`,
    /// offload at once when `p1 <= offload`, else run stage 2 and offload when its `p1 <= hi`.
    /// Only a session with the early-exit model can run it.
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
        let kind = serde_json::from_value(serde_json::Value::String(kind.into()))
            .map_err(|_| Error::InvalidPolicy(format!("unknown policy kind `{kind}`")))?;
        Self::calibrated_for(manifest, kind)
    }

    /// [`calibrated_kind`](PolicyConfig::calibrated_kind) for a parsed [`PolicyKind`].
    pub fn calibrated_for(manifest: &Manifest, kind: PolicyKind) -> Result<Self> {
        let t = |k: &str| {
            manifest.threshold(k).ok_or_else(|| {
                Error::InvalidPolicy(format!(
                    "the manifest has no calibrated threshold for `{k}`: run `hiedge calibrate`"
                ))
            })
        };
        Ok(match kind {
            PolicyKind::MaxProb => PolicyConfig::MaxProb { threshold: t("max_prob")? },
            PolicyKind::Margin => PolicyConfig::Margin { threshold: t("margin")? },
            PolicyKind::Entropy => PolicyConfig::Entropy { threshold: t("entropy")? },
            PolicyKind::LogisticTop2 => {
                t("logistic_top2")?;
                Self::calibrated(manifest)?
            }
            PolicyKind::OnlineHedge => Self::online_hedge(0.3),
            PolicyKind::AlwaysLocal => PolicyConfig::AlwaysLocal,
            PolicyKind::AlwaysOffload => PolicyConfig::AlwaysOffload,
            PolicyKind::EeHi => {
                let e = manifest.decision.as_ref().and_then(|d| d.early_exit).ok_or_else(|| {
                    Error::InvalidPolicy(
                        "the manifest has no calibrated EE-HI thresholds: add an early-exit model and run `hiedge calibrate`"
                            .into(),
                    )
                })?;
                let t = e.thresholds;
                PolicyConfig::EeHi { exit: t.exit, offload: t.offload, hi: t.hi }
            }
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

    /// The same threshold policy at another threshold; `None` for policies without one.
    pub fn with_threshold(&self, threshold: f32) -> Option<PolicyConfig> {
        Some(match *self {
            PolicyConfig::MaxProb { .. } => PolicyConfig::MaxProb { threshold },
            PolicyConfig::Margin { .. } => PolicyConfig::Margin { threshold },
            PolicyConfig::Entropy { .. } => PolicyConfig::Entropy { threshold },
            PolicyConfig::LogisticTop2 { bias, w1, w2, .. } => PolicyConfig::LogisticTop2 { bias, w1, w2, threshold },
            _ => return None,
        })
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
                Box::new(EeHiPolicy::new(EeHiThresholds { exit, offload, hi })?)
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

    /// Parses a JSON policy description and builds it.
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::InvalidPolicy(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_support::{decide, lra};
    use crate::policy::MAX_SEED;

    fn all_kinds() -> Vec<PolicyConfig> {
        vec![
            PolicyConfig::MaxProb { threshold: 0.5 },
            PolicyConfig::Margin { threshold: 0.5 },
            PolicyConfig::Entropy { threshold: 0.5 },
            lra(0.5),
            PolicyConfig::OnlineHedge { beta: 0.3, bins: 10, eta: 0.1, explore: 0.1, seed: 1 },
            PolicyConfig::EeHi { exit: 0.9, offload: 0.3, hi: 0.6 },
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
}
