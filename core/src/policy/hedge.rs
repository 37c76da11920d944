//! [`OnlineHedge`]: a threshold learnt online from the remote labels of offloaded samples.

use crate::error::{Error, Result};
use crate::policy::{Action, Decision, DecisionPolicy, Feedback};
use crate::prob::{top2, validate_probs};

/// Largest seed accepted: 2^53 - 1, so a configuration survives JSON and JavaScript numbers exactly.
pub const MAX_SEED: u64 = (1 << 53) - 1;

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

#[cfg(test)]
mod tests {
    use super::*;

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
