//! A two-sided Bernoulli CUSUM: has the offload rate moved away from the calibrated one?

use serde::Serialize;

/// Page's CUSUM on a stream of 0/1 outcomes (offloaded or not), one statistic per direction: for
/// "up", `S = max(0, S + log(p_up / p0)` on a 1, `S + log((1 - p_up) / (1 - p0))` on a 0`)`; "down"
/// likewise with `p_down`. An alarm is raised while a statistic is above `h`.
///
/// The statistic adds exact log-likelihood ratios, so by Lorden (1971) the mean run length between
/// false alarms of each side is at least `e^h` samples while the rate stays `p0`;
/// [`BernoulliCusum::for_false_alarm_run`] sets `h = ln(2 * run)` so the two sides together raise a
/// false alarm no more than once in `run` samples on average. A shift to `p1` is detected after about
/// `h / KL(p1 || p0)` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct BernoulliCusum {
    p0: f64,
    up: Option<Side>,
    down: Option<Side>,
    h: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Side {
    /// Increment on a 1.
    one: f64,
    /// Increment on a 0.
    zero: f64,
    s: f64,
    alarms: u64,
    /// In an alarm episode: from crossing `h` until the statistic is back at 0.
    raised: bool,
}

impl Side {
    fn new(p0: f64, p1: f64) -> Option<Self> {
        (p1 > 0.0 && p1 < 1.0 && (p1 - p0).abs() > 1e-12).then(|| Side {
            one: (p1 / p0).ln(),
            zero: ((1.0 - p1) / (1.0 - p0)).ln(),
            s: 0.0,
            alarms: 0,
            raised: false,
        })
    }

    /// One outcome; true when it started an alarm episode.
    fn push(&mut self, x: bool, h: f64) -> bool {
        self.s = (self.s + if x { self.one } else { self.zero }).max(0.0);
        if self.s > h && !self.raised {
            self.alarms += 1;
            self.raised = true;
            return true;
        }
        if self.s == 0.0 {
            self.raised = false;
        }
        false
    }
}

/// The CUSUM's state, for reports.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CusumState {
    /// The rate it watches for (the calibrated offload fraction).
    pub target: f64,
    /// The upward statistic and its alarm level.
    pub up: f64,
    /// The downward statistic.
    pub down: f64,
    /// Alarm level `h`.
    pub h: f64,
    /// True while either statistic is above `h`.
    pub alarm: bool,
    /// Alarm episodes (upward + downward): a statistic crossing `h` starts one, which lasts until
    /// the statistic is back at 0, so a statistic hovering around `h` counts once.
    pub alarms: u64,
}

impl BernoulliCusum {
    /// Watches for the rate `p0` moving to `p_up` or `p_down`, alarming above `h`. A side whose
    /// rate is not in (0, 1) or equals `p0` is left out; `p0` must be in (0, 1).
    pub fn new(p0: f64, p_up: f64, p_down: f64, h: f64) -> Option<Self> {
        if !(p0 > 0.0 && p0 < 1.0 && h.is_finite() && h > 0.0) {
            return None;
        }
        Some(Self { p0, up: Side::new(p0, p_up), down: Side::new(p0, p_down), h })
    }

    /// The default design: watch for the rate doubling or halving (5 points either way where that
    /// is more, but never past `(1 + p0) / 2` or below `p0 / 4`),
    /// with at most one false alarm per `run` samples on average (Lorden's bound, see above).
    ///
    /// A target at the edge (a policy calibrated to offload nothing, or everything; kept at 0.001 or
    /// 0.999 here, since the statistic needs a rate in (0, 1)) cannot move further that way: that
    /// side is left out, or it would eventually alarm on a stream that is exactly on target.
    pub fn for_false_alarm_run(target: f64, run: f64) -> Option<Self> {
        const EDGE: f64 = 1e-3;
        let p0 = target.clamp(EDGE, 1.0 - EDGE);
        let up = if target >= 1.0 - EDGE { p0 } else { (2.0 * p0).max(p0 + 0.05).min(0.5 * (1.0 + p0)) };
        let down = if target <= EDGE { p0 } else { (0.5 * p0).min(p0 - 0.05).max(0.25 * p0) };
        Self::new(p0, up, down, (2.0 * run.max(1.0)).ln())
    }

    /// One outcome: `true` = offloaded. Returns true when it started an alarm episode (on either
    /// side).
    pub fn push(&mut self, offloaded: bool) -> bool {
        let h = self.h;
        let mut started = false;
        for side in [&mut self.up, &mut self.down].into_iter().flatten() {
            started |= side.push(offloaded, h);
        }
        started
    }

    /// Where it stands.
    pub fn state(&self) -> CusumState {
        let s = |side: &Option<Side>| side.map_or(0.0, |x| x.s);
        let alarms = |side: &Option<Side>| side.map_or(0, |x| x.alarms);
        CusumState {
            target: self.p0,
            up: s(&self.up),
            down: s(&self.down),
            h: self.h,
            alarm: s(&self.up) > self.h || s(&self.down) > self.h,
            alarms: alarms(&self.up) + alarms(&self.down),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::test_rng::Rng;

    #[test]
    fn a_target_of_never_or_always_watches_only_the_side_it_can_move_to() {
        // Exactly on target for 100,000 samples: no alarm (the clamped rate's far side would raise
        // one every few ten thousand samples).
        let mut never = BernoulliCusum::for_false_alarm_run(0.0, 1e6).unwrap();
        let mut always = BernoulliCusum::for_false_alarm_run(1.0, 1e6).unwrap();
        for _ in 0..100_000 {
            assert!(!never.push(false) && !always.push(true));
        }
        assert_eq!((never.state().alarms, always.state().alarms), (0, 0));
        // and a move the other way is still caught.
        let caught = (0..200).any(|i| never.push(i % 4 == 0));
        assert!(caught, "a rate of 0.25 against a target of 0 is caught within 200 samples");
    }

    #[test]
    fn quiet_at_the_target_rate_and_fires_soon_after_a_shift() {
        // At most one false alarm per 10^6 samples by design: none over 200,000 in-control samples
        // at each of these rates (a seeded stream: the same every run).
        for p0 in [0.05, 0.2, 0.5] {
            let mut c = BernoulliCusum::for_false_alarm_run(p0, 1e6).unwrap();
            let mut rng = Rng(7);
            for _ in 0..200_000 {
                c.push(rng.next_f64() < p0);
            }
            assert_eq!(c.state().alarms, 0, "p0 {p0}: {:?}", c.state());
            // Then the rate doubles (at most to 0.8): the alarm within h / KL samples, times two
            // for slack.
            let p1 = (2.0 * p0).min(0.8);
            let kl = p1 * (p1 / p0).ln() + (1.0 - p1) * ((1.0 - p1) / (1.0 - p0)).ln();
            let bound = (2.0 * c.state().h / kl).ceil() as usize;
            let delay = (1..=bound).find(|_| {
                c.push(rng.next_f64() < p1);
                c.state().alarm
            });
            assert!(delay.is_some(), "p0 {p0}: no alarm within {bound} samples of the rate doubling");
        }
    }

    #[test]
    fn a_drop_is_seen_too_and_the_statistics_follow_their_definition() {
        let mut c = BernoulliCusum::new(0.2, 0.4, 0.1, 5.0).unwrap();
        c.push(true);
        let s = c.state();
        assert!((s.up - 2f64.ln()).abs() < 1e-12 && s.down == 0.0, "{s:?}");
        c.push(false);
        assert!((c.state().up - (2f64.ln() + (0.6f64 / 0.8).ln())).abs() < 1e-12);
        for _ in 0..200 {
            c.push(false);
        }
        let s = c.state();
        assert!(s.alarm && s.down > s.h && s.up == 0.0 && s.alarms == 1, "{s:?}");
        assert!(BernoulliCusum::new(0.0, 0.5, 0.1, 5.0).is_none());
        assert!(BernoulliCusum::new(0.2, 0.5, 0.1, f64::NAN).is_none());
    }

    #[test]
    fn an_episode_lasts_until_the_statistic_is_back_at_zero() {
        // Up side only (p_down = p0 leaves the down side out): +ln 2 per 1, ln(0.75) per 0.
        let mut c = BernoulliCusum::new(0.2, 0.4, 0.2, 5.0).unwrap();
        let push = |c: &mut BernoulliCusum, x: bool, n: usize| {
            (0..n).for_each(|_| {
                c.push(x);
            })
        };
        push(&mut c, true, 8); // 5.55 > h
        assert_eq!((c.state().alarm, c.state().alarms), (true, 1));
        push(&mut c, false, 2); // 4.97: below h, not at 0
        assert!(!c.state().alarm && c.state().up > 0.0);
        push(&mut c, true, 1); // above h again: the same episode
        assert_eq!((c.state().alarm, c.state().alarms), (true, 1));
        push(&mut c, false, 30); // back at 0: the episode ends
        assert_eq!(c.state().up, 0.0);
        push(&mut c, true, 8);
        assert_eq!(c.state().alarms, 2);
    }
}
