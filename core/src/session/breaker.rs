//! The offload circuit breaker: after `failures` failed requests in a row, or when the p95 round
//! trip of the last `window` answered requests is over `p95_budget_ms`, the client stops offloading
//! for `cooldown_ms`, then sends one probe; the probe's answer closes the breaker, its failure opens
//! it again. While it is open, a sample the decision module would offload is answered on the device
//! (`fail_mode: local`, fail-cheap) or waits for the probe (`fail_mode: wait`, fail-expensive: the
//! answer comes late but from the large model when it is back, from the device when it is not).
//!
//! Pure: every call takes the caller's clock reading (ms), so a test steps time itself.
//!
//! ```
//! use hiedge_core::session::breaker::{Admission, BreakerConfig, CircuitBreaker};
//! let mut b = CircuitBreaker::new(BreakerConfig { failures: 2, cooldown_ms: 1000.0, ..Default::default() }).unwrap();
//! assert_eq!(b.admit(0.0), Admission::Send);
//! b.record(false, 10.0, 0.0);
//! b.record(false, 10.0, 1.0); // two in a row: open until 1001
//! assert_eq!(b.admit(500.0), Admission::Refuse { until_ms: 1001.0 });
//! assert_eq!(b.admit(1001.0), Admission::Probe);
//! b.record(true, 12.0, 1010.0); // the probe was answered: closed
//! assert_eq!(b.admit(1011.0), Admission::Send);
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest latency window a breaker takes.
pub const MAX_WINDOW: usize = 1000;

/// What a sample the breaker refuses gets.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Fail cheap: the device answers at once (`why: circuit_open`).
    #[default]
    Local,
    /// Fail expensive: the sample waits until the breaker probes, then goes with (or after) the
    /// probe; if the probe fails it is answered on the device (`fallback`).
    Wait,
}

/// Circuit-breaker settings (`breaker` in `HiClient`'s options; every field optional).
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failed requests in a row that open the breaker. Default 5.
    pub failures: u32,
    /// Open it when the p95 round trip of the last `window` answered requests is over this many ms
    /// (default: no latency rule).
    #[cfg_attr(feature = "ts", tsify(optional))]
    pub p95_budget_ms: Option<f64>,
    /// Answered requests the p95 is taken over (1 to 1000). Default 20.
    pub window: usize,
    /// How long it stays open before a probe, ms. Default 30000.
    pub cooldown_ms: f64,
    /// What refused samples get. Default `local`.
    pub fail_mode: FailMode,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: 5, p95_budget_ms: None, window: 20, cooldown_ms: 30_000.0, fail_mode: FailMode::Local }
    }
}

/// Where the breaker stands.
#[cfg_attr(feature = "ts", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerPhase {
    /// Offloads go out.
    Closed,
    /// No offloads until the cooldown ends.
    Open,
    /// The cooldown ended and one probe is out.
    Probing,
}

/// What the breaker says about one sample the decision module wants to offload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// Send it.
    Send,
    /// Send it as the probe (the cooldown is over).
    Probe,
    /// Do not send it; the breaker is open until `until_ms` (or, while probing, until the probe
    /// answers: `until_ms` is then the reading given).
    Refuse {
        /// When the cooldown ends.
        until_ms: f64,
    },
}

/// The breaker's state as the client reports it.
#[cfg_attr(feature = "ts", derive(tsify::Tsify), tsify(missing_as_null))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerState {
    /// Closed, open or probing.
    pub phase: BreakerPhase,
    /// When an open breaker will probe, on the client's clock (ms).
    pub open_until_ms: Option<f64>,
    /// Failed requests in a row.
    pub consecutive_failures: u32,
    /// p95 round trip of the last `window` answered requests (ms), once there are `window`.
    pub p95_ms: Option<f64>,
    /// How often it opened.
    pub opened: u64,
    /// Samples it kept from the Worker (answered on the device or made to wait).
    pub refused: u64,
    /// Why it last opened (`"5 failed requests in a row"`, `"p95 812 ms over the 500 ms budget"`).
    pub last_reason: Option<String>,
}

/// The circuit breaker (see the module docs).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    phase: BreakerPhase,
    open_until_ms: f64,
    consecutive_failures: u32,
    round_trips: VecDeque<f64>,
    opened: u64,
    refused: u64,
    probes_done: u64,
    last_reason: Option<String>,
}

impl CircuitBreaker {
    /// A closed breaker; fails on settings that could never close or open it.
    pub fn new(config: BreakerConfig) -> Result<Self> {
        let budget_ok = config.p95_budget_ms.is_none_or(|b| b.is_finite() && b > 0.0);
        let window_ok = (1..=MAX_WINDOW).contains(&config.window);
        let cooldown_ok = config.cooldown_ms.is_finite() && config.cooldown_ms >= 0.0;
        if !(config.failures >= 1 && window_ok && cooldown_ok && budget_ok) {
            return Err(Error::InvalidSettings(format!(
                "breaker: needs failures >= 1, window in 1..={MAX_WINDOW}, a finite cooldownMs >= 0 and p95BudgetMs > 0 (or absent)"
            )));
        }
        Ok(Self {
            config,
            phase: BreakerPhase::Closed,
            open_until_ms: 0.0,
            consecutive_failures: 0,
            round_trips: VecDeque::with_capacity(config.window),
            opened: 0,
            refused: 0,
            probes_done: 0,
            last_reason: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Whether a sample the decision module wants to offload may go, at clock reading `now_ms`.
    /// [`Admission::Probe`] moves the breaker to probing; a refusal is counted.
    pub fn admit(&mut self, now_ms: f64) -> Admission {
        match self.phase {
            BreakerPhase::Closed => Admission::Send,
            BreakerPhase::Open if now_ms >= self.open_until_ms => {
                self.phase = BreakerPhase::Probing;
                Admission::Probe
            }
            BreakerPhase::Open => {
                self.refused += 1;
                Admission::Refuse { until_ms: self.open_until_ms }
            }
            BreakerPhase::Probing => {
                self.refused += 1;
                Admission::Refuse { until_ms: now_ms }
            }
        }
    }

    /// When a sample refused now could go: `None` when it can go now (closed, or the cooldown is
    /// over), else the end of the cooldown (while probing: `now_ms`, ask again later). Changes
    /// nothing; for `fail_mode: wait`, which asks before [`admit`](Self::admit).
    pub fn wait_until(&self, now_ms: f64) -> Option<f64> {
        match self.phase {
            BreakerPhase::Closed => None,
            BreakerPhase::Open if now_ms >= self.open_until_ms => None,
            BreakerPhase::Open => Some(self.open_until_ms),
            BreakerPhase::Probing => Some(now_ms),
        }
    }

    /// The outcome of a request the breaker let through (`ok`: a valid answer), its round trip and
    /// the clock reading when it ended.
    pub fn record(&mut self, ok: bool, round_trip_ms: f64, now_ms: f64) {
        if self.phase == BreakerPhase::Probing {
            self.probes_done += 1;
        }
        if ok {
            self.consecutive_failures = 0;
            if self.phase == BreakerPhase::Probing {
                self.phase = BreakerPhase::Closed;
                self.round_trips.clear();
            }
            if self.round_trips.len() == self.config.window {
                self.round_trips.pop_front();
            }
            self.round_trips.push_back(round_trip_ms.max(0.0));
            if let (Some(budget), Some(p95)) = (self.config.p95_budget_ms, self.p95_ms()) {
                if p95 > budget && self.phase == BreakerPhase::Closed {
                    self.open(now_ms, format!("p95 {p95:.0} ms over the {budget:.0} ms budget"));
                    self.round_trips.clear();
                }
            }
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            if self.phase == BreakerPhase::Probing {
                self.open(now_ms, "the probe failed".into());
            } else if self.phase == BreakerPhase::Closed && self.consecutive_failures >= self.config.failures {
                self.open(now_ms, format!("{} failed requests in a row", self.consecutive_failures));
            }
        }
    }

    fn open(&mut self, now_ms: f64, reason: String) {
        self.phase = BreakerPhase::Open;
        self.open_until_ms = now_ms + self.config.cooldown_ms;
        self.opened += 1;
        self.last_reason = Some(reason);
    }

    /// Probes answered or failed so far (a sample waiting in `fail_mode: wait` gives up once a
    /// probe made after it arrived has failed).
    pub fn probes_done(&self) -> u64 {
        self.probes_done
    }

    /// The p95 round trip over a full window (nearest rank), else `None`: the k-th largest with
    /// k = n - ceil(0.95 n) + 1, kept in a small sorted list (no general sort: it would cost the
    /// browser client kilobytes of wasm for a window of a few dozen).
    fn p95_ms(&self) -> Option<f64> {
        let n = self.round_trips.len();
        if n < self.config.window {
            return None;
        }
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
        let k = n - rank + 1;
        let mut largest: Vec<f64> = Vec::with_capacity(k + 1); // descending
        for &x in &self.round_trips {
            let at = largest.iter().position(|&y| x > y).unwrap_or(largest.len());
            if at < k {
                largest.insert(at, x);
                largest.truncate(k);
            }
        }
        largest.last().copied()
    }

    /// Where it stands.
    pub fn state(&self) -> BreakerState {
        BreakerState {
            phase: self.phase,
            open_until_ms: (self.phase == BreakerPhase::Open).then_some(self.open_until_ms),
            consecutive_failures: self.consecutive_failures,
            p95_ms: self.p95_ms(),
            opened: self.opened,
            refused: self.refused,
            last_reason: self.last_reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, budget: Option<f64>) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failures,
            p95_budget_ms: budget,
            window: 4,
            cooldown_ms: 100.0,
            fail_mode: FailMode::Local,
        })
        .unwrap()
    }

    #[test]
    fn opens_after_n_failures_in_a_row_only() {
        let mut b = breaker(3, None);
        b.record(false, 1.0, 0.0);
        b.record(false, 1.0, 1.0);
        b.record(true, 1.0, 2.0); // the run is broken
        b.record(false, 1.0, 3.0);
        b.record(false, 1.0, 4.0);
        assert_eq!(b.admit(5.0), Admission::Send);
        b.record(false, 1.0, 6.0);
        assert_eq!(b.state().phase, BreakerPhase::Open);
        assert_eq!(b.admit(7.0), Admission::Refuse { until_ms: 106.0 });
        assert_eq!(b.wait_until(7.0), Some(106.0));
        assert_eq!(b.state().last_reason.as_deref(), Some("3 failed requests in a row"));
    }

    #[test]
    fn probes_once_after_the_cooldown_and_reopens_on_failure() {
        let mut b = breaker(1, None);
        b.record(false, 1.0, 0.0);
        assert_eq!(b.admit(99.9), Admission::Refuse { until_ms: 100.0 });
        assert_eq!(b.wait_until(100.0), None);
        assert_eq!(b.admit(100.0), Admission::Probe);
        // One probe at a time: the next sample is refused while it is out.
        assert_eq!(b.admit(101.0), Admission::Refuse { until_ms: 101.0 });
        assert_eq!(b.wait_until(101.0), Some(101.0));
        b.record(false, 5.0, 105.0);
        let s = b.state();
        assert_eq!((s.phase, s.open_until_ms, s.opened, s.refused), (BreakerPhase::Open, Some(205.0), 2, 2));
        assert_eq!(b.admit(205.0), Admission::Probe);
        b.record(true, 5.0, 210.0);
        assert_eq!(b.state().phase, BreakerPhase::Closed);
        assert_eq!(b.admit(211.0), Admission::Send);
    }

    #[test]
    fn opens_on_p95_over_budget_over_a_full_window() {
        let mut b = breaker(5, Some(50.0));
        for (i, rtt) in [10.0, 20.0, 30.0].into_iter().enumerate() {
            b.record(true, rtt, i as f64);
        }
        assert_eq!(b.state().p95_ms, None);
        b.record(true, 49.0, 3.0);
        assert_eq!((b.state().phase, b.state().p95_ms), (BreakerPhase::Closed, Some(49.0)));
        b.record(true, 80.0, 4.0); // window 20, 30, 49, 80: p95 = 80
        assert_eq!(b.state().phase, BreakerPhase::Open);
        assert_eq!(b.state().last_reason.as_deref(), Some("p95 80 ms over the 50 ms budget"));
    }

    #[test]
    fn p95_is_the_nearest_rank_of_the_sorted_window() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for window in [1, 2, 19, 20, 21, 100, 1000] {
            let mut b = CircuitBreaker::new(BreakerConfig { window, ..Default::default() }).unwrap();
            for _ in 0..window {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b.round_trips.push_back((seed % 500) as f64); // ties included
            }
            let mut sorted: Vec<f64> = b.round_trips.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let rank = ((0.95 * window as f64).ceil() as usize).max(1);
            assert_eq!(b.p95_ms(), Some(sorted[rank - 1]), "window {window}");
        }
    }

    #[test]
    fn refuses_settings_that_cannot_work() {
        for c in [
            BreakerConfig { failures: 0, ..Default::default() },
            BreakerConfig { window: 0, ..Default::default() },
            BreakerConfig { window: MAX_WINDOW + 1, ..Default::default() },
            BreakerConfig { cooldown_ms: f64::NAN, ..Default::default() },
            BreakerConfig { p95_budget_ms: Some(-1.0), ..Default::default() },
        ] {
            assert!(CircuitBreaker::new(c).is_err(), "{c:?}");
        }
    }
}
