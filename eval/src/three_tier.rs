//! Three tiers (device -> Worker -> server) over a labelled set: which tier answers each sample
//! under a threshold at each hop, and the accuracy, as the browser and the Worker decide at run
//! time. The device's hop uses its model's probabilities (at the manifest's temperature, as the
//! client does); the Worker's hop (the manifest's `oip.escalate`) uses its model's plain softmax, as
//! the Worker does. Both send a sample on when the score is `<= threshold`.

use serde::Serialize;

use hiedge_core::policy::ScoreRule;
use hiedge_core::prob::{argmax, validate_probs};

use crate::error::{Error, Result};

/// Each tier's answers on a labelled set.
#[derive(Debug, Clone)]
pub struct ThreeTier {
    labels: Vec<usize>,
    device: Vec<Vec<f32>>,
    /// The device's score of each sample, by the rule given at construction.
    device_score: Vec<f32>,
    worker: Vec<Vec<f32>>,
    server_pred: Vec<usize>,
}

/// Where the samples went and how many were right, at one pair of thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TierOutcome {
    /// The device's threshold (`inf`: every sample goes to the Worker; `-inf`: none; JSON `null`).
    pub device_threshold: f32,
    /// The Worker's threshold (`-inf`: it sends nothing on; JSON `null` when not finite).
    pub worker_threshold: f32,
    /// Share of all samples the device sent to the Worker (hop 1).
    pub to_worker: f64,
    /// Share of all samples the Worker sent on to the server (hop 2).
    pub to_server: f64,
    /// Share of the samples the Worker received that it sent on.
    pub worker_escalation: f64,
    /// Share answered right, whichever tier answered.
    pub accuracy: f64,
}

impl ThreeTier {
    /// From each tier's probabilities (the device's at its temperature, judged by `device_rule`;
    /// the Worker's plain) and the server's predicted labels, with the true labels; all as long as
    /// `labels`.
    pub fn new(
        labels: Vec<usize>,
        device: Vec<Vec<f32>>,
        device_rule: &ScoreRule,
        worker: Vec<Vec<f32>>,
        server_pred: Vec<usize>,
    ) -> Result<Self> {
        let n = labels.len();
        if device.len() != n || worker.len() != n || server_pred.len() != n {
            return Err(Error::InvalidData(format!(
                "{n} labels but {} device, {} Worker and {} server answers",
                device.len(),
                worker.len(),
                server_pred.len()
            )));
        }
        for p in device.iter().chain(&worker) {
            validate_probs(p)?;
        }
        let device_score = device.iter().map(|p| device_rule.score_unchecked(p)).collect();
        Ok(ThreeTier { labels, device, device_score, worker, server_pred })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The outcome when the device sends at score `<= device_t` and the Worker at `rule`'s score
    /// `<= worker_t` (`f32::INFINITY`: always; `-inf`: never).
    pub fn at(&self, device_t: f32, rule: &ScoreRule, worker_t: f32) -> TierOutcome {
        let (mut to_worker, mut to_server, mut right) = (0usize, 0usize, 0usize);
        for i in 0..self.len() {
            let answer = if self.device_score[i] <= device_t {
                to_worker += 1;
                if rule.score_unchecked(&self.worker[i]) <= worker_t {
                    to_server += 1;
                    self.server_pred[i]
                } else {
                    argmax(&self.worker[i])
                }
            } else {
                argmax(&self.device[i])
            };
            right += (answer == self.labels[i]) as usize;
        }
        self.outcome(device_t, worker_t, to_worker, to_server, right)
    }

    fn outcome(&self, device_t: f32, worker_t: f32, to_worker: usize, to_server: usize, right: usize) -> TierOutcome {
        let n = self.len().max(1) as f64;
        TierOutcome {
            device_threshold: device_t,
            worker_threshold: worker_t,
            to_worker: to_worker as f64 / n,
            to_server: to_server as f64 / n,
            worker_escalation: if to_worker == 0 { 0.0 } else { to_server as f64 / to_worker as f64 },
            accuracy: right as f64 / n,
        }
    }

    /// The Worker's threshold on `rule` that reaches `target` accuracy with the fewest samples sent
    /// to the server, at the device's `device_t` (`None` when no threshold reaches it). Exact:
    /// every distinct Worker score of the samples that reach it is tried, in one pass over them
    /// sorted.
    pub fn fit_worker(&self, device_t: f32, rule: &ScoreRule, target: f64) -> Option<TierOutcome> {
        let mut reached = Vec::new();
        let mut right = 0i64;
        for i in 0..self.len() {
            if self.device_score[i] <= device_t {
                let worker_right = argmax(&self.worker[i]) == self.labels[i];
                let server_right = self.server_pred[i] == self.labels[i];
                reached.push((rule.score_unchecked(&self.worker[i]), server_right as i64 - worker_right as i64));
                right += worker_right as i64;
            } else {
                right += (argmax(&self.device[i]) == self.labels[i]) as i64;
            }
        }
        reached.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = self.len().max(1) as f64;
        let to_worker = reached.len();
        if right as f64 / n >= target {
            return Some(self.outcome(device_t, f32::NEG_INFINITY, to_worker, 0, right as usize));
        }
        let mut k = 0;
        while k < reached.len() {
            // Every sample at this score goes together (the rule is `score <= threshold`).
            let score = reached[k].0;
            while k < reached.len() && reached[k].0 == score {
                right += reached[k].1;
                k += 1;
            }
            if right as f64 / n >= target {
                return Some(self.outcome(device_t, score, to_worker, k, right as usize));
            }
        }
        None
    }

    /// Accuracy when every sample is answered by one tier: 0 the device, 1 the Worker, 2 the server.
    pub fn single_tier_accuracy(&self, tier: usize) -> f64 {
        let right = (0..self.len())
            .filter(|&i| {
                let answer = match tier {
                    0 => argmax(&self.device[i]),
                    1 => argmax(&self.worker[i]),
                    _ => self.server_pred[i],
                };
                answer == self.labels[i]
            })
            .count();
        right as f64 / self.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four samples, two classes, label 0 each: the device is sure and right on the first, sure
    /// and wrong on none, unsure on the rest; the Worker is sure and right on the second, unsure
    /// and wrong on the third and fourth; the server is right on the third only.
    fn tiers() -> ThreeTier {
        let p = |a: f32| vec![a, 1.0 - a];
        ThreeTier::new(
            vec![0, 0, 0, 0],
            vec![p(0.95), p(0.6), p(0.55), p(0.4)],
            &ScoreRule::MaxProb,
            vec![p(0.9), p(0.95), p(0.45), p(0.3)],
            vec![1, 1, 0, 1],
        )
        .unwrap()
    }

    #[test]
    fn each_hop_sends_what_its_rule_says_and_counts_the_answers() {
        let t = tiers();
        let r = ScoreRule::MaxProb;
        // The device keeps only the first (0.95 > 0.7); the Worker's tops on the rest are 0.95,
        // 0.55 and 0.7 (the last two for class 1): samples 3 and 4 go to the server.
        let o = t.at(0.7, &r, 0.7);
        assert_eq!((o.to_worker, o.to_server, o.worker_escalation), (0.75, 0.5, 2.0 / 3.0));
        // Right: 1 (device), 2 (Worker), 3 (server); the fourth the server gets wrong.
        assert_eq!(o.accuracy, 0.75);
        // Nothing past the device; everything to the server.
        assert_eq!(t.at(f32::NEG_INFINITY, &r, 1.0).accuracy, 0.75, "the device alone: right on 0.95, 0.6, 0.55");
        let all = t.at(f32::INFINITY, &r, f32::INFINITY);
        assert_eq!((all.to_worker, all.to_server, all.accuracy), (1.0, 1.0, 0.25));
        assert_eq!([0, 1, 2].map(|k| t.single_tier_accuracy(k)), [0.75, 0.5, 0.25]);
    }

    #[test]
    fn the_fitted_worker_threshold_is_the_cheapest_that_reaches_the_target() {
        let t = tiers();
        let r = ScoreRule::MaxProb;
        // All to the Worker: it alone is right on 2 of 4 (0.9 and 0.95 tops, class 0).
        let fit = t.fit_worker(f32::INFINITY, &r, 0.5).unwrap();
        assert_eq!((fit.to_server, fit.worker_threshold, fit.accuracy), (0.0, f32::NEG_INFINITY, 0.5));
        // 0.75 needs the third sample (Worker 0.55 on class 1, server right): the lowest score first.
        let fit = t.fit_worker(f32::INFINITY, &r, 0.75).unwrap();
        assert_eq!((fit.to_server, fit.worker_threshold, fit.accuracy), (0.25, 0.55, 0.75));
        assert_eq!(t.at(f32::INFINITY, &r, fit.worker_threshold).accuracy, fit.accuracy, "the same outcome as `at`");
        assert!(t.fit_worker(f32::INFINITY, &r, 0.8).is_none());
        assert!(ThreeTier::new(vec![0], vec![], &r, vec![], vec![]).is_err());
    }
}
