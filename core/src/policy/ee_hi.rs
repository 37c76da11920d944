//! [`EeHiPolicy`]: EE-HI (early exit + HI) as a decision module. It decides twice: once on the exit
//! head of the early-exit model ([`DecisionPolicy::decide_at_exit_head`]: exit, offload now, or run
//! stage 2), then, when stage 2 ran, on the final head ([`DecisionPolicy::decide`], MaxProb at `hi`).

use crate::error::{Error, Result};
use crate::manifest::{EeCost, EeHiThresholds, EeOutcome};
use crate::policy::{Action, Decision, DecisionPolicy};
use crate::prob::{top2, validate_probs};

/// EE-HI with fixed thresholds (see [`EeHiThresholds`]).
///
/// ```
/// use hiedge_core::{Action, DecisionPolicy, PolicyConfig};
/// let mut p = PolicyConfig::EeHi { exit: 0.9, offload: 0.4, hi: 0.7 }.build().unwrap();
/// assert!(p.uses_exit_head());
/// assert_eq!(p.decide_at_exit_head(&[0.95, 0.05]).unwrap().unwrap().action, Action::Keep); // exit
/// assert_eq!(p.decide_at_exit_head(&[0.4, 0.35, 0.25]).unwrap().unwrap().action, Action::Offload);
/// assert!(p.decide_at_exit_head(&[0.8, 0.2]).unwrap().is_none()); // run stage 2
/// assert_eq!(p.decide(&[0.7, 0.3]).unwrap().action, Action::Offload); // final head, p1 <= hi
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EeHiPolicy {
    thresholds: EeHiThresholds,
}

impl EeHiPolicy {
    /// Checks the thresholds (`0 <= offload <= exit <= 1`, `0 <= hi <= 1`).
    pub fn new(thresholds: EeHiThresholds) -> Result<Self> {
        thresholds.validate().map_err(Error::InvalidPolicy)?;
        Ok(EeHiPolicy { thresholds })
    }

    /// The thresholds.
    pub fn thresholds(&self) -> EeHiThresholds {
        self.thresholds
    }

    /// The rule after stage 1 on the exit head's top probability: `Some(Keep)` to exit with the
    /// exit head's answer, `Some(Offload)` to offload without stage 2, `None` to run stage 2.
    pub fn at_exit_head(&self, exit_p1: f32) -> Option<Action> {
        if exit_p1 > self.thresholds.exit {
            Some(Action::Keep)
        } else if exit_p1 <= self.thresholds.offload {
            Some(Action::Offload)
        } else {
            None
        }
    }

    /// The rule after stage 2 (MaxProb HI) on the final head's top probability.
    pub fn at_final_head(&self, final_p1: f32) -> Action {
        if final_p1 <= self.thresholds.hi {
            Action::Offload
        } else {
            Action::Keep
        }
    }
}

impl DecisionPolicy for EeHiPolicy {
    fn name(&self) -> &'static str {
        "ee_hi"
    }

    fn decide(&mut self, probs: &[f32]) -> Result<Decision> {
        validate_probs(probs)?;
        let p1 = top2(probs).0;
        Ok(Decision { action: self.at_final_head(p1), score: p1, explored: false })
    }

    fn uses_exit_head(&self) -> bool {
        true
    }

    fn decide_at_exit_head(&mut self, exit_probs: &[f32]) -> Result<Option<Decision>> {
        validate_probs(exit_probs)?;
        let p1 = top2(exit_probs).0;
        Ok(self.at_exit_head(p1).map(|action| Decision { action, score: p1, explored: false }))
    }

    /// The final head's threshold (`hi`).
    fn threshold(&self) -> Option<f32> {
        Some(self.thresholds.hi)
    }
}

/// EE-HI's expected latency per sample (milliseconds) for an outcome under `cost`: stage 1 always,
/// stage 2 for the samples that ran it, the round trip for the samples offloaded. `hiedge
/// calibrate` fits the thresholds that minimise it at the accuracy asked for.
///
/// ```
/// use hiedge_core::manifest::{EeCost, EeOutcome};
/// let cost = EeCost { stage1_ms: 1.0, stage2_ms: 4.0, offload_ms: 20.0 };
/// let outcome = EeOutcome { accuracy: 0.9, offloaded: 0.25, exited: 0.5, stage2: 0.5 };
/// assert_eq!(hiedge_core::policy::ee_hi_expected_ms(&outcome, &cost), 1.0 + 0.5 * 4.0 + 0.25 * 20.0);
/// ```
pub fn expected_ms(outcome: &EeOutcome, cost: &EeCost) -> f64 {
    cost.stage1_ms + outcome.stage2 * cost.stage2_ms + outcome.offloaded * cost.offload_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_after_each_stage() {
        let mut p = EeHiPolicy::new(EeHiThresholds { exit: 0.9, offload: 0.4, hi: 0.7 }).unwrap();
        let at_exit = |p: &mut EeHiPolicy, probs: &[f32]| p.decide_at_exit_head(probs).map(|d| d.map(|d| d.action));
        assert_eq!(at_exit(&mut p, &[0.95, 0.05]).unwrap(), Some(Action::Keep));
        assert_eq!(at_exit(&mut p, &[0.9, 0.1]).unwrap(), None, "p1 == exit runs stage 2");
        assert_eq!(at_exit(&mut p, &[0.4, 0.35, 0.25]).unwrap(), Some(Action::Offload));
        assert_eq!(p.decide(&[0.7, 0.3]).unwrap().action, Action::Offload);
        assert_eq!(p.decide(&[0.71, 0.29]).unwrap().action, Action::Keep);
        assert!(p.decide_at_exit_head(&[f32::NAN, 0.5]).is_err());
        assert_eq!(p.threshold(), Some(0.7));
        for bad in
            [EeHiThresholds { exit: 0.5, offload: 0.6, hi: 0.5 }, EeHiThresholds { exit: 1.5, offload: 0.1, hi: 0.5 }]
        {
            assert!(matches!(EeHiPolicy::new(bad), Err(Error::InvalidPolicy(_))), "{bad:?}");
        }
    }
}
