//! The anomaly likelihood: how improbable the newest event is, judged by several statistics
//! against each one's own history, online.
//!
//! Per event, with the values `x` (per value `i`, normalized by their running standard
//! deviation `s_i`) and the forecast error `e` in normalized units, the statistics are
//!
//! | statistic | value | catches |
//! |---|---|---|
//! | error | `e` | spikes and breaks the forecaster did not expect |
//! | shift | `|mean(last w) − mean(w + 1 … w + W back)| / std(w + 1 … w + W back)` | level shifts the forecaster quickly adapts to |
//! | season | `|mean(last w_s) − mean(same rows one day earlier)| / s_i` | a daily pattern that breaks (needs timestamps) |
//! | record | a new minimum or maximum of all values seen | excursions to new levels |
//!
//! Each of the first three is taken as `ln(stat + 10⁻³)` and judged by its [`Tail`]: the
//! surprise is `−log10 p` of its tail probability against its last `history` values. A new
//! record after `t` events has probability `2 / (t + 1)` when the events are exchangeable,
//! surprise `log10((t + 1) / 2)`. The event's surprise is the largest of these plus a share
//! `a` (`others`, 0.5) of the rest, so that evidence from several statistics at once adds up:
//!
//! `surprise = max_j S_j + a · (Σ_j S_j − max_j S_j)`, `raw = min(1, surprise / decades)`,
//!
//! so `raw = 0.5` means `p = 10^(−decades/2)`. Finally the **onset filter** reports one alarm
//! per episode, not one per event of it. An episode starts at an event whose surprise beats
//! the largest surprise of the previous `onset` events; its peak over that event and the
//! `confirm` events after it is reported at the last of them, and every other event reports 0.
//! A rising run of scores (0.47, 0.50, 0.51, ...) is thus one alarm at its peak, not one alarm
//! per step, at the price of a delay of `confirm` events.
//!
//! An episode's surprise is then discounted by its **precedents**: with `c` of the last
//! `precedents` reported episodes at least as surprising, its probability is multiplied by
//! `1 + c` (the surprise loses `log10(1 + c)`), so a kind of event seen before alarms less
//! each time it comes back, and the first of its kind keeps its full score. The onset filter
//! and precedents work on surprises, before they are capped at 1.
//!
//! The rows per day come from the time step between the first two events (`86400 / Δt`, when
//! between 2 and `max_period`); without timestamps the seasonal statistic is off. The score is
//! 0 for the first event and stays small during warm-up: a tail gives no surprise before it
//! holds 30 values, and records are weak early.

use super::tail::Tail;
use crate::detect::norm::{NormMode, Normalizer};
use serde::{Deserialize, Serialize};

/// Settings of the anomaly likelihood.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LikelihoodConfig {
    /// Values of each statistic its tail probability is judged against, in events. Default:
    /// 16384.
    pub history: usize,
    /// Fraction of the history in the fitted exponential tail. Default: 0.02.
    pub tail: f64,
    /// Recent events `w` of the shift statistic. Default: 5.
    pub shift_recent: usize,
    /// Events `W` before those the recent ones are compared with. Default: 100.
    pub shift_base: usize,
    /// Recent events `w_s` of the seasonal statistic. Default: 6.
    pub season_recent: usize,
    /// Longest day, in events, the seasonal statistic keeps. Default: 4096.
    pub max_period: usize,
    /// Previous events a score must beat to be reported (the onset filter); 0 disables it.
    /// Default: 100.
    pub onset: usize,
    /// Events after an episode's first event over which its peak is taken: the alarm is
    /// reported `confirm` events after the episode starts, once, with the largest score of
    /// those `confirm + 1` events. 0 reports at once. Used with the onset filter only.
    /// Default: 5.
    pub confirm: usize,
    /// Reported episodes remembered as precedents: an episode's tail probability is multiplied
    /// by one plus the number of them at least as surprising, so that a kind of event seen
    /// before alarms less each time. 0 disables it. Default: 1024.
    pub precedents: usize,
    /// Surprise, in decades of probability, that scores 1. Default: 10.
    pub decades: f64,
    /// Whether a new minimum or maximum counts (the record statistic). Default: true.
    pub records: bool,
    /// Weight `a` of the other statistics' surprises added to the largest one: evidence from
    /// several statistics at once adds up. Default: 0.5.
    pub others: f64,
}

impl Default for LikelihoodConfig {
    fn default() -> Self {
        LikelihoodConfig {
            history: 16384,
            tail: 0.02,
            shift_recent: 5,
            shift_base: 100,
            season_recent: 6,
            max_period: 4096,
            onset: 100,
            confirm: 5,
            precedents: 1024,
            decades: 10.0,
            records: true,
            others: 0.5,
        }
    }
}

impl LikelihoodConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the first setting out of range.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |field, reason: String| Err(crate::Error::config(field, reason));
        if !(1..=1 << 24).contains(&self.history) {
            return bad(
                "anomaly.likelihood.history",
                format!("must be in 1..=2^24, got {}", self.history),
            );
        }
        if !(self.tail > 0.0 && self.tail <= 1.0) {
            return bad(
                "anomaly.likelihood.tail",
                format!("must be in (0, 1], got {}", self.tail),
            );
        }
        for (field, v) in [
            ("anomaly.likelihood.shift_recent", self.shift_recent),
            ("anomaly.likelihood.shift_base", self.shift_base),
            ("anomaly.likelihood.season_recent", self.season_recent),
        ] {
            if !(1..=1 << 16).contains(&v) {
                return bad(field, format!("must be in 1..=65536, got {v}"));
            }
        }
        if [self.max_period, self.onset, self.confirm, self.precedents]
            .iter()
            .any(|v| *v > 1 << 20)
        {
            return bad(
                "anomaly.likelihood",
                "max_period, onset, confirm and precedents must be at most 2^20".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.others) {
            return bad(
                "anomaly.likelihood.others",
                format!("must be in [0, 1], got {}", self.others),
            );
        }
        if !(self.decades > 0.0 && self.decades.is_finite()) {
            return bad(
                "anomaly.likelihood.decades",
                format!("must be positive, got {}", self.decades),
            );
        }
        Ok(())
    }

    fn ring_len(&self) -> usize {
        (self.shift_recent + self.shift_base).max(self.max_period + self.season_recent)
    }
}

/// Per value: recent values, extremes and the tails of the shift and seasonal statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Series {
    ring: Vec<f64>,
    head: usize,
    len: usize,
    min: f64,
    max: f64,
    shift: Tail,
    season: Tail,
}

impl Series {
    /// The value `lag` events back (0: the newest); `lag < len`.
    fn at(&self, lag: usize) -> f64 {
        let n = self.ring.len();
        self.ring[(self.head + n - 1 - lag) % n]
    }

    fn mean(&self, lags: std::ops::Range<usize>) -> f64 {
        let k = lags.len() as f64;
        lags.map(|j| self.at(j)).sum::<f64>() / k
    }
}

/// State of the anomaly likelihood (see the module docs).
///
/// # Example
/// ```
/// use tbptt::detect::anomaly::{Likelihood, LikelihoodConfig};
/// let mut l = Likelihood::new(LikelihoodConfig::default());
/// let mut quiet = 0.0f64;
/// for t in 0..2000 {
///     let noise = ((t * 7919) % 101) as f64 / 100.0 - 0.5;
///     quiet = quiet.max(l.score(Some(t as f64 * 300.0), &[10.0 + noise], Some(noise.abs())));
/// }
/// assert!(quiet < 0.5);
/// // The spike's episode is reported `confirm` (5) events later, once, with its peak.
/// let mut reported = vec![l.score(Some(600_000.0), &[40.0], Some(30.0))];
/// for t in 1..=5 {
///     reported.push(l.score(Some(600_000.0 + t as f64 * 300.0), &[10.0], Some(0.1)));
/// }
/// assert_eq!(reported[..5], [0.0; 5]);
/// assert!(reported[5] > 0.9);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Likelihood {
    config: LikelihoodConfig,
    events: u64,
    first_time: Option<f64>,
    period: usize,
    norm: Normalizer,
    series: Vec<Series>,
    error: Tail,
    recent: Vec<f64>,
    recent_head: usize,
    /// The episode being confirmed: its peak surprise so far and the events left before it is
    /// reported.
    #[serde(default)]
    pending: Option<(f64, usize)>,
    /// Peak surprises of the last `precedents` reported episodes (from the first one on).
    #[serde(default)]
    episodes: Option<Tail>,
}

/// Adds one statistic's surprise `v` to the running largest and total.
fn note(best: &mut f64, total: &mut f64, v: f64) {
    *best = best.max(v);
    *total += v;
}

/// Offset inside the logarithm of each statistic: statistics are in standard deviations, so
/// anything below a thousandth of one counts as nothing.
const FLOOR: f64 = 1e-3;

impl Likelihood {
    /// Fresh state; the number of values is fixed by the first event scored.
    pub fn new(config: LikelihoodConfig) -> Self {
        Likelihood {
            config,
            events: 0,
            first_time: None,
            period: 0,
            norm: Normalizer::new(0, NormMode::Cumulative),
            series: Vec::new(),
            error: Tail::new(config.history, config.tail),
            recent: Vec::new(),
            recent_head: 0,
            pending: None,
            episodes: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &LikelihoodConfig {
        &self.config
    }

    /// The number of values per event, once the first event has fixed it (else 0).
    pub fn dim(&self) -> usize {
        self.series.len()
    }

    /// Rows per day used by the seasonal statistic (0: off).
    pub fn period(&self) -> usize {
        self.period
    }

    fn init(&mut self, d: usize) {
        let c = &self.config;
        self.norm = Normalizer::new(d, NormMode::Cumulative);
        self.series = (0..d)
            .map(|_| Series {
                ring: vec![0.0; c.ring_len()],
                head: 0,
                len: 0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                shift: Tail::new(c.history, c.tail),
                season: Tail::new(c.history, c.tail),
            })
            .collect();
        self.recent = Vec::with_capacity(c.onset);
    }

    /// Scores one event: its values (`actual`, always the same number of them; finite) and
    /// the forecast error made for it in normalized units (`None` when there was no
    /// forecast). Returns the score in `[0, 1]`; no allocation after the first events.
    pub fn score(&mut self, time: Option<f64>, actual: &[f64], error: Option<f64>) -> f64 {
        if self.series.is_empty() {
            self.init(actual.len());
        }
        let t = self.events;
        match (t, time) {
            (0, _) => self.first_time = time,
            (1, Some(now)) => {
                if let Some(dt) = self.first_time.map(|t0| now - t0) {
                    let per_day = 86_400.0 / dt;
                    if dt > 0.0 && per_day >= 2.0 && per_day <= self.config.max_period as f64 {
                        self.period = per_day.round() as usize;
                    }
                }
            }
            _ => {}
        }
        self.norm.observe(actual);
        let ln = |s: f64| (s + FLOOR).ln();
        let (mut best, mut total) = (0.0f64, 0.0f64);
        if let Some(e) = error.filter(|e| e.is_finite()) {
            let s = ln(e.abs());
            note(&mut best, &mut total, self.error.surprise(s));
            self.error.push(s);
        }
        let c = self.config;
        for (i, (series, &x)) in self.series.iter_mut().zip(actual).enumerate() {
            let std = self.norm.std(i);
            let cap = series.ring.len();
            series.ring[series.head] = x;
            series.head = (series.head + 1) % cap;
            series.len = (series.len + 1).min(cap);
            let (w, base) = (c.shift_recent, c.shift_base);
            if series.len >= w + base {
                let recent = series.mean(0..w);
                let past = series.mean(w..w + base);
                let var = (w..w + base)
                    .map(|j| (series.at(j) - past).powi(2))
                    .sum::<f64>()
                    / base as f64;
                let stat = ln((recent - past).abs() / (var.sqrt() + FLOOR * std + 1e-12));
                note(&mut best, &mut total, series.shift.surprise(stat));
                series.shift.push(stat);
            }
            let (p, ws) = (self.period, c.season_recent);
            if p > 0 && series.len >= p + ws {
                let stat = ln((series.mean(0..ws) - series.mean(p..p + ws)).abs() / std);
                note(&mut best, &mut total, series.season.surprise(stat));
                series.season.push(stat);
            }
            if c.records && t > 0 && (x > series.max || x < series.min) {
                note(&mut best, &mut total, ((t + 1) as f64 / 2.0).log10());
            }
            series.max = series.max.max(x);
            series.min = series.min.min(x);
        }
        self.events += 1;
        let surprise = best + c.others * (total - best);
        let unit = |s: f64| (s / c.decades).clamp(0.0, 1.0);
        if c.onset == 0 {
            return unit(surprise);
        }
        let before = self.recent.iter().fold(0.0f64, |a, b| a.max(*b));
        if self.recent.len() < c.onset {
            self.recent.push(surprise);
        } else {
            self.recent[self.recent_head] = surprise;
            self.recent_head = (self.recent_head + 1) % c.onset;
        }
        let peak = match &mut self.pending {
            Some((peak, left)) => {
                *peak = peak.max(surprise);
                *left -= 1;
                if *left > 0 {
                    return 0.0;
                }
                let peak = *peak;
                self.pending = None;
                peak
            }
            None if surprise > before && c.confirm > 0 => {
                self.pending = Some((surprise, c.confirm));
                return 0.0;
            }
            None if surprise > before => surprise,
            None => return 0.0,
        };
        if c.precedents == 0 {
            return unit(peak);
        }
        // The episode's tail probability times one plus its precedents: earlier episodes at
        // least as surprising.
        let episodes = self
            .episodes
            .get_or_insert_with(|| Tail::new(c.precedents, 1.0));
        let seen = episodes.len() - episodes.count_below(peak);
        episodes.push(peak);
        unit(peak - (1.0 + seen as f64).log10())
    }

    /// Checks a deserialized state against its settings: sizes, indices and finite values, so
    /// that scoring later events cannot panic.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn validate(&self) -> Result<(), String> {
        self.config.validate().map_err(|e| e.to_string())?;
        let c = &self.config;
        let d = self.series.len();
        if self.norm.dim() != d && !(d == 0 && self.events == 0) {
            return Err("likelihood statistics have inconsistent sizes".into());
        }
        if d > 0 {
            self.norm.validate(d)?;
        }
        if self.period > c.max_period || self.period == 1 {
            return Err(format!("likelihood period {} is out of range", self.period));
        }
        if self.recent.len() > c.onset
            || (self.recent_head != 0 && self.recent_head >= self.recent.len())
            || !self.recent.iter().all(|v| v.is_finite() && *v >= 0.0)
            || self.pending.is_some_and(|(p, left)| {
                !(p.is_finite() && p >= 0.0) || left == 0 || left > c.confirm
            })
        {
            return Err("likelihood onset history is inconsistent".into());
        }
        self.error.validate()?;
        if let Some(e) = &self.episodes {
            e.validate()?;
            if e.capacity() != c.precedents.max(1) {
                return Err("likelihood episode history has the wrong capacity".into());
            }
        }
        for s in &self.series {
            if s.ring.len() != c.ring_len()
                || s.head >= s.ring.len()
                || s.len > s.ring.len()
                || !s.ring.iter().all(|v| v.is_finite())
                || s.min.is_nan()
                || s.max.is_nan()
            {
                return Err("likelihood value history is inconsistent".into());
            }
            s.shift.validate()?;
            s.season.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    #[test]
    fn the_first_event_scores_zero_and_scores_stay_in_the_unit_interval() {
        let mut l = Likelihood::new(LikelihoodConfig::default());
        assert_eq!(l.score(Some(0.0), &[5.0, 1.0], None), 0.0);
        let mut s = 7u64;
        for t in 1..3000u64 {
            let x = [5.0 + noise(&mut s), if t % 500 == 0 { 1e6 } else { 1.0 }];
            let sc = l.score(Some(t as f64 * 60.0), &x, Some(noise(&mut s).abs()));
            assert!((0.0..=1.0).contains(&sc), "{sc}");
        }
        assert_eq!(l.period(), 1440);
        assert!(l.validate().is_ok());
    }

    /// A likelihood warmed up on 1000 events of noise (no timestamps).
    fn warmed(config: LikelihoodConfig) -> Likelihood {
        let mut l = Likelihood::new(config);
        let mut s = 11u64;
        for _ in 0..1000 {
            l.score(None, &[noise(&mut s)], Some(noise(&mut s).abs()));
        }
        l
    }

    #[test]
    fn without_confirmation_the_onset_filter_reports_the_first_event_of_an_episode() {
        let mut l = warmed(LikelihoodConfig {
            confirm: 0,
            ..Default::default()
        });
        let first = l.score(None, &[50.0], Some(50.0));
        let second = l.score(None, &[50.0], Some(50.0));
        assert!(first > 0.9, "{first}");
        assert_eq!(second, 0.0);
        assert_eq!(l.period(), 0, "no timestamps, no seasonal statistic");
    }

    #[test]
    fn an_episode_is_reported_once_with_its_peak_after_confirm_events() {
        // Many decades to a score of 1, so that no score saturates at 1.
        let config = LikelihoodConfig {
            decades: 200.0,
            ..Default::default()
        };
        let mut l = warmed(config);
        let mut quiet = warmed(LikelihoodConfig { onset: 0, ..config });
        // A run whose peak is neither its first nor its last event.
        let mut reported = Vec::new();
        let mut raw = Vec::new();
        for (j, x) in [0.6, 1e6, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0]
            .iter()
            .enumerate()
        {
            reported.push(l.score(None, &[*x], Some(*x)));
            raw.push(quiet.score(None, &[*x], Some(*x)));
            assert!(l.validate().is_ok(), "event {j}");
        }
        let c = config.confirm;
        let peak = raw[..=c].iter().fold(0.0f64, |a, b| a.max(*b));
        assert!(peak > raw[0] && peak > raw[c], "{raw:?}");
        assert_eq!(reported[c], peak, "{reported:?}");
        let others: Vec<f64> = (0..reported.len())
            .filter(|j| *j != c)
            .map(|j| reported[j])
            .collect();
        assert!(others.iter().all(|v| *v == 0.0), "{reported:?}");
        // A state in the middle of an episode survives a round trip and validates.
        let mut m = warmed(config);
        m.score(None, &[50.0], Some(50.0));
        assert!(m.pending.is_some());
        let back: Likelihood =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        m.pending = Some((0.5, c + 1));
        assert!(m.validate().is_err());
    }

    #[test]
    fn a_repeated_kind_of_episode_alarms_less_each_time() {
        let config = LikelihoodConfig {
            decades: 200.0,
            confirm: 0,
            ..Default::default()
        };
        let alarms = |config: LikelihoodConfig| {
            let mut l = warmed(config);
            let mut s = 5u64;
            let mut out = Vec::new();
            for j in 0..4 {
                out.push(l.score(None, &[8.0], Some(8.0)));
                for _ in 0..300 + j {
                    l.score(None, &[noise(&mut s)], Some(noise(&mut s).abs()));
                }
            }
            assert!(l.validate().is_ok());
            out
        };
        let plain = alarms(LikelihoodConfig {
            precedents: 0,
            ..config
        });
        let discounted = alarms(config);
        assert_eq!(discounted[0], plain[0], "a first episode has no precedent");
        for j in 1..4 {
            // Each earlier spike at least as surprising multiplies p by one more.
            let precedents = plain[..j].iter().filter(|p| **p >= plain[j]).count() as f64;
            let want = plain[j] - (1.0 + precedents).log10() / config.decades;
            assert!(
                (discounted[j] - want).abs() < 1e-12,
                "{discounted:?} {plain:?}"
            );
        }
        assert!(discounted[3] < plain[3], "{discounted:?} {plain:?}");
    }

    #[test]
    fn invalid_settings_and_states_are_refused() {
        let c = LikelihoodConfig {
            tail: 0.0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let mut l = Likelihood::new(LikelihoodConfig::default());
        l.score(None, &[1.0], None);
        l.series[0].head = 1 << 20;
        assert!(l.validate().is_err());
    }
}
