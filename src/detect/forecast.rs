//! What the pipeline forecasts: the next value's change, learned by the network, combined
//! online with the naive and seasonal baselines by their recent errors.
//!
//! **The change, not the level.** With [`ForecastTarget::Change`] (the default) the network's
//! target is the next event's change `x[t+1] − x[t]`, normalized by the running mean and
//! standard deviation of the changes, and its forecast is `x[t] + Δ̂`. A network that has
//! learned nothing forecasts a change near the mean change, so it starts at the naive forecast
//! (plus the trend), not at the running mean; and new highs or level shifts move the level, not
//! the scale of the changes it predicts. Its inputs per value are the normalized level, the
//! normalized last change and, once a season is known, the change that followed the same phase
//! one season earlier; on request (`time`), with timestamps, also the phase of the day, week
//! and year as sine and cosine (each cycle only when the events sample it at least 4 and at
//! most 20,000 times). A second head predicts the normalized next level, which the anomaly
//! scores judge.
//!
//! **The combination.** The record's forecast is a convex combination of up to four members:
//! the network, the naive forecast `x[t]`, the seasonal naive `x[t+1−P]` and the seasonal
//! change `x[t] + x[t+1−P] − x[t−P]`. `P` comes from the timestamps: the events per day, week
//! or year, the shortest of those cycles sampled at least 4 times, when it is at most
//! `max_season`; the seasonal members exist only then. The
//! weights follow the exponentially weighted average forecaster with fixed share (Hedge;
//! Herbster & Warmuth 1998): each member's squared error, in units of the changes' standard
//! deviation and clipped at `clip` (4) of them, becomes a loss `ℓ ∈ [0, 1]`; its log-weight
//! falls by `η ℓ`, and then a fraction `α` of the total weight is shared evenly. With `N`
//! members, over any `n` events the combination's loss (before clipping binds, where the
//! squared loss is convex) is at most that of the best sequence of members with `m` switches
//! plus `((m + 1) ln N + m ln(1/α) + n ln(1/(1 − α))) / η + n η / 8` (in clipped-loss units);
//! against the best single member over the stream (`m = 0`) that is
//! `ln N / η + n (ln(1/(1 − α))/η + η/8)`. That worst case is loose (`η/8` per event is about
//! naive's own average clipped loss); measured on real series, the combination keeps the
//! network, which knows nothing at first, from costing the forecast much during warm-up.
//!
//! [`ForecastTarget::Level`] with `combine`, `time` and `season` false
//! ([`ForecastConfig::level`]) is the network alone predicting the normalized next value: the
//! forecaster of earlier versions, which checkpoints written before this one continue with.
//! It wins where the level itself is predictable from the recent values better than the last
//! value is (a mean-reverting series sampled coarsely, a clean periodic signal without
//! timestamps); on series that wander or trend the change is the better target.

use crate::detect::norm::{NormMode, Normalizer};
use crate::nn::scalar::Float;
use serde::{Deserialize, Serialize};

/// What the network predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForecastTarget {
    /// The next value's change from the current one, normalized (default).
    #[default]
    Change,
    /// The next value itself, normalized.
    Level,
}

/// Cycles (seconds) whose phase is an input, and from which the season is taken: a day, a
/// week, a year.
const CYCLES: [f64; 3] = [86_400.0, 604_800.0, 31_556_952.0];
/// Inputs per timestamped event for the phases: sine and cosine of each cycle.
pub const TIME_FEATURES: usize = 2 * CYCLES.len();
/// A cycle is an input when the events sample it at least this often ...
const MIN_PER_CYCLE: f64 = 4.0;
/// ... and at most this often.
const MAX_PER_CYCLE: f64 = 20_000.0;
/// Members of the combination: network, naive, seasonal naive, seasonal change.
pub const MEMBERS: usize = 4;
/// Names of the members, in the order of [`Forecaster::members`].
pub const MEMBER_NAMES: [&str; MEMBERS] = ["net", "naive", "seasonal", "seasonal_change"];

/// Settings of the forecaster. Fields state their default.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// What the network predicts. Default: the change.
    pub target: ForecastTarget,
    /// Combine the network with the baselines by their recent errors. Default: true.
    pub combine: bool,
    /// With timestamps: the phases of the day, week and year as inputs. Default: false (the
    /// seasonal members and input carry the season; the phases added nothing to the forecasts
    /// of the bundled and NAB series and lowered the anomaly scores' cross-validated NAB
    /// score).
    pub time: bool,
    /// With timestamps: the season's members and the seasonal change as an input. Default:
    /// true.
    pub season: bool,
    /// Errors beyond this many standard deviations of the changes count as this many in the
    /// combination's loss. Default: 4.
    pub clip: f64,
    /// Learning rate `η` of the combination, per unit of clipped loss. Default: 0.5.
    pub eta: f64,
    /// Fixed share `α`: the fraction of the weight shared evenly after each event, so that a
    /// member that was bad for long can come back. Default: 0.002.
    pub share: f64,
    /// Longest season `P`, in events. Default: 2048.
    pub max_season: usize,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            target: ForecastTarget::Change,
            combine: true,
            time: false,
            season: true,
            clip: 4.0,
            eta: 0.5,
            share: 0.002,
            max_season: 2048,
        }
    }
}

impl ForecastConfig {
    /// The network alone predicting the next value's level, without time inputs: the
    /// forecaster of earlier versions (and of checkpoints that do not name one).
    pub fn level() -> Self {
        ForecastConfig {
            target: ForecastTarget::Level,
            combine: false,
            time: false,
            season: false,
            ..Default::default()
        }
    }

    /// Whether this is [`ForecastConfig::level`]'s network-alone forecaster, which the pipeline
    /// runs as earlier versions did.
    pub fn is_plain_level(&self) -> bool {
        self.target == ForecastTarget::Level && !self.combine && !self.time && !self.season
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the bad field.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.eta > 0.0 && self.eta.is_finite()) {
            return Err(crate::Error::config("forecast.eta", "must be positive"));
        }
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            return Err(crate::Error::config("forecast.clip", "must be positive"));
        }
        if !(0.0..1.0).contains(&self.share) {
            return Err(crate::Error::config("forecast.share", "must be in [0, 1)"));
        }
        if self.max_season > 1 << 16 {
            return Err(crate::Error::config("forecast.max_season", "at most 65536"));
        }
        Ok(())
    }
}

/// The last `P + 1` values of each column, for the seasonal members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SeasonRing {
    period: usize,
    dim: usize,
    head: usize,
    len: usize,
    values: Vec<f64>,
}

impl SeasonRing {
    fn new(period: usize, dim: usize) -> Self {
        SeasonRing {
            period,
            dim,
            head: 0,
            len: 0,
            values: vec![0.0; (period + 1) * dim],
        }
    }

    fn cap(&self) -> usize {
        self.period + 1
    }

    fn push(&mut self, x: &[f64]) {
        let at = self.head * self.dim;
        self.values[at..at + self.dim].copy_from_slice(&x[..self.dim]);
        self.head = (self.head + 1) % self.cap();
        self.len = (self.len + 1).min(self.cap());
    }

    /// Column `i` of the value `j` events before the newest (`j < cap`).
    fn back(&self, j: usize, i: usize) -> f64 {
        let cap = self.cap();
        let slot = (self.head + cap - 1 - j) % cap;
        self.values[slot * self.dim + i]
    }

    fn full(&self) -> bool {
        self.len == self.cap()
    }

    fn validate(&self, dim: usize, max: usize) -> crate::Result<()> {
        let ok = self.dim == dim
            && self.period >= 2
            && self.period <= max
            && self.values.len() == (self.period + 1) * dim
            && self.head < self.cap()
            && self.len <= self.cap()
            && self.values.iter().all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err(crate::Error::state(
                "forecaster",
                "season ring is inconsistent",
            ))
        }
    }
}

/// The forecaster's state for one stream of `D` values: the changes' statistics, the
/// sampling interval and season, the combination's weights and the members' pending
/// forecasts. Serializable, so checkpoints continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecaster {
    config: ForecastConfig,
    dim: usize,
    timed: bool,
    first_time: Option<f64>,
    interval: Option<f64>,
    diffs: Normalizer,
    season: Option<SeasonRing>,
    log_w: [f64; MEMBERS],
    /// The members' forecasts of the next event, `MEMBERS × D`, member-major.
    pending: Vec<f64>,
    /// The network's level forecast of the next event.
    level: Vec<f64>,
    prev: Vec<f64>,
    has_prev: bool,
}

impl Forecaster {
    /// A forecaster for `dim` values per event; `timed` when the first event has a timestamp
    /// (time inputs are then part of the network's input).
    pub fn new(config: ForecastConfig, dim: usize, timed: bool) -> Self {
        Forecaster {
            config,
            dim,
            timed,
            first_time: None,
            interval: None,
            diffs: Normalizer::new(dim, NormMode::Cumulative),
            season: None,
            log_w: [0.0; MEMBERS],
            pending: vec![0.0; MEMBERS * dim],
            level: vec![0.0; dim],
            prev: vec![0.0; dim],
            has_prev: false,
        }
    }

    /// Values per event.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The settings.
    pub fn config(&self) -> &ForecastConfig {
        &self.config
    }

    /// The network's input size: level, change and seasonal change per value, plus the
    /// phases when the events are timestamped.
    pub fn d_input(&self) -> usize {
        3 * self.dim + if self.phases() { TIME_FEATURES } else { 0 }
    }

    /// The network's output size: with [`ForecastTarget::Change`], the change and (a second
    /// head) the level of each value; with [`ForecastTarget::Level`], the level.
    pub fn d_target(&self) -> usize {
        match self.config.target {
            ForecastTarget::Change => 2 * self.dim,
            ForecastTarget::Level => self.dim,
        }
    }

    /// The network's forecast of the next level (its level head), in the input's units.
    pub fn level_forecast(&self) -> &[f64] {
        &self.level
    }

    fn phases(&self) -> bool {
        self.timed && self.config.time
    }

    /// The season `P` in events, once known.
    pub fn season(&self) -> Option<usize> {
        self.season.as_ref().map(|s| s.period)
    }

    /// The combination's current weights, in [`MEMBER_NAMES`] order (members that do not
    /// exist have weight 0).
    pub fn weights(&self) -> [f64; MEMBERS] {
        softmax(&self.log_w[..self.members()])
    }

    /// Members in the combination now: the network and naive, and the two seasonal ones
    /// once a season is known.
    pub fn members(&self) -> usize {
        if !self.config.combine {
            1
        } else if self.season.is_some() {
            MEMBERS
        } else {
            2
        }
    }

    /// The members' forecasts of the next event, `MEMBERS × D`, in [`MEMBER_NAMES`] order.
    pub fn member_forecasts(&self) -> &[f64] {
        &self.pending
    }

    /// Step 1 of an event: learns the sampling interval (and season) from the first two
    /// timestamps, scores the members' forecasts of this event and moves the weights.
    /// Returns whether a forecast was pending.
    pub fn observe(&mut self, time: Option<f64>, actual: &[f64]) -> bool {
        self.learn_interval(time);
        if !self.has_prev {
            return false;
        }
        if self.config.combine {
            let n = self.members();
            let c = self.config.clip;
            let mut losses = [0.0; MEMBERS];
            for (m, loss) in losses.iter_mut().enumerate().take(n) {
                let f = &self.pending[m * self.dim..(m + 1) * self.dim];
                let mut se = 0.0;
                for (i, (a, f)) in actual.iter().zip(f).enumerate() {
                    // An error too large for f64 (values near f64::MAX) counts as clipped.
                    let e = (a - f) / self.diffs.std(i);
                    let e = if e.is_finite() { e.clamp(-c, c) } else { c };
                    se += e * e;
                }
                *loss = se / (self.dim as f64 * c * c);
            }
            self.hedge(&losses[..n]);
        }
        true
    }

    fn learn_interval(&mut self, time: Option<f64>) {
        if !self.timed || self.interval.is_some() {
            return;
        }
        let Some(now) = time else { return };
        match self.first_time {
            None => self.first_time = Some(now),
            Some(t0) if now > t0 => {
                let dt = now - t0;
                self.interval = Some(dt);
                let per = CYCLES
                    .iter()
                    .map(|c| c / dt)
                    .find(|p| *p >= MIN_PER_CYCLE && *p <= MAX_PER_CYCLE);
                if let Some(p) = per.filter(|_| self.config.season) {
                    let p = p.round() as usize;
                    if p >= 2 && p <= self.config.max_season {
                        self.season = Some(SeasonRing::new(p, self.dim));
                    }
                }
            }
            Some(_) => {}
        }
    }

    fn hedge(&mut self, losses: &[f64]) {
        let n = losses.len();
        for (l, loss) in self.log_w.iter_mut().zip(losses) {
            *l -= self.config.eta * loss;
        }
        let w = softmax(&self.log_w[..n]);
        let a = self.config.share;
        for (l, o) in self.log_w.iter_mut().zip(&w[..n]) {
            *l = ((1.0 - a) * o + a / n as f64).ln();
        }
    }

    /// Step 2: records this event's values (the change statistics and the season) and
    /// writes the network's input `u` ([`Forecaster::d_input`] values) and, for the forecast
    /// made at the previous event, its realized target `y` (`D` values), both normalized.
    /// `levels` normalizes the level inputs (and, with [`ForecastTarget::Level`], the target).
    pub fn inputs_to<T: Float>(
        &mut self,
        time: Option<f64>,
        actual: &[f64],
        levels: &Normalizer,
        u: &mut [T],
        y: &mut [T],
    ) {
        let d = self.dim;
        if self.has_prev {
            for (p, a) in self.prev.iter_mut().zip(actual) {
                *p = a - *p;
            }
            self.diffs.observe(&self.prev);
        } else {
            self.prev.iter_mut().for_each(|p| *p = 0.0);
        }
        levels.normalize_to(actual, &mut u[..d]);
        if self.has_prev {
            self.diffs.normalize_to(&self.prev, &mut u[d..2 * d]);
        } else {
            u[d..2 * d].iter_mut().for_each(|v| *v = T::zero());
        }
        match self.config.target {
            ForecastTarget::Change => {
                y[..d].copy_from_slice(&u[d..2 * d]);
                y[d..].copy_from_slice(&u[..d]);
            }
            ForecastTarget::Level => y.copy_from_slice(&u[..d]),
        }
        if let Some(s) = self.season.as_mut() {
            s.push(actual);
        }
        match self.season.as_ref().filter(|s| s.full()) {
            Some(s) => {
                for i in 0..d {
                    let c = s.back(s.period - 1, i) - s.back(s.period, i);
                    let z = (c - self.diffs.mean(i)) / self.diffs.std(i);
                    u[2 * d + i] = T::cast(
                        z.clamp(-crate::detect::norm::Z_LIMIT, crate::detect::norm::Z_LIMIT),
                    );
                }
            }
            None => u[2 * d..3 * d].iter_mut().for_each(|v| *v = T::zero()),
        }
        if self.phases() {
            self.phases_to(time, &mut u[3 * d..]);
        }
        self.prev.copy_from_slice(actual);
    }

    fn phases_to<T: Float>(&self, time: Option<f64>, out: &mut [T]) {
        out.iter_mut().for_each(|v| *v = T::zero());
        let (Some(t), Some(dt)) = (time, self.interval) else {
            return;
        };
        for (c, o) in CYCLES.iter().zip(out.chunks_exact_mut(2)) {
            let per = c / dt;
            if (MIN_PER_CYCLE..=MAX_PER_CYCLE).contains(&per) {
                let phase = std::f64::consts::TAU * t.rem_euclid(*c) / c;
                o[0] = T::cast(phase.sin());
                o[1] = T::cast(phase.cos());
            }
        }
    }

    /// Step 3: from the network's output (normalized), the members' forecasts of the next
    /// event and their combination, written to `out` (`D` values, the input's units).
    /// `levels` de-normalizes a level forecast.
    pub fn forecast_to<T: Float>(
        &mut self,
        net: &[T],
        actual: &[f64],
        levels: &Normalizer,
        out: &mut [f64],
    ) {
        let d = self.dim;
        let (netf, rest) = self.pending.split_at_mut(d);
        match self.config.target {
            ForecastTarget::Change => {
                for (i, ((f, z), a)) in netf.iter_mut().zip(net).zip(actual).enumerate() {
                    *f = a + self.diffs.mean(i) + self.diffs.std(i) * z.as_f64();
                }
                levels.denormalize_to(&net[d..], &mut self.level);
            }
            ForecastTarget::Level => {
                levels.denormalize_to(net, netf);
                self.level.copy_from_slice(netf);
            }
        }
        let (naive, seasonal) = rest.split_at_mut(d);
        naive.copy_from_slice(actual);
        let (sn, sc) = seasonal.split_at_mut(d);
        match self.season.as_ref().filter(|s| s.full()) {
            Some(s) => {
                for i in 0..d {
                    sn[i] = s.back(s.period - 1, i);
                    sc[i] = actual[i] + s.back(s.period - 1, i) - s.back(s.period, i);
                }
            }
            None => {
                sn.copy_from_slice(actual);
                sc.copy_from_slice(actual);
            }
        }
        // Members (and the level head) beyond the range of f64, possible only for values near
        // f64::MAX, fall back to the naive forecast so that every state stays finite.
        for (m, f) in self.pending.iter_mut().enumerate() {
            if !f.is_finite() {
                *f = actual[m % d];
            }
        }
        for (f, a) in self.level.iter_mut().zip(actual) {
            if !f.is_finite() {
                *f = *a;
            }
        }
        self.has_prev = true;
        if !self.config.combine {
            out.copy_from_slice(&self.pending[..d]);
            return;
        }
        let w = self.weights();
        out.iter_mut().for_each(|v| *v = 0.0);
        for (m, wm) in w.iter().enumerate().take(self.members()) {
            for (o, f) in out.iter_mut().zip(&self.pending[m * d..(m + 1) * d]) {
                *o += wm * f;
            }
        }
        // Finite members can still sum beyond the range of f64; the naive forecast is then
        // the safe one.
        if out.iter().any(|v| !v.is_finite()) {
            out.copy_from_slice(actual);
        }
    }

    /// Checks a deserialized forecaster against the pipeline's settings and sizes.
    ///
    /// # Errors
    /// A message naming the first problem.
    pub fn validate(&self, config: &ForecastConfig, dim: usize) -> crate::Result<()> {
        if self.config != *config {
            return Err(crate::Error::state(
                "forecaster",
                "the forecaster's settings differ from the pipeline's",
            ));
        }
        if self.dim != dim
            || self.pending.len() != MEMBERS * dim
            || self.prev.len() != dim
            || self.level.len() != dim
        {
            return Err(crate::Error::state(
                "forecaster",
                format!("forecaster sizes differ from {dim} values"),
            ));
        }
        self.diffs.validate(dim)?;
        if self.diffs.mode() != NormMode::Cumulative {
            return Err(crate::Error::state(
                "forecaster",
                "forecaster change statistics have the wrong mode",
            ));
        }
        if let Some(s) = &self.season {
            s.validate(dim, self.config.max_season)?;
        }
        let finite = self.log_w.iter().all(|v| v.is_finite())
            && self.pending.iter().all(|v| v.is_finite())
            && self.level.iter().all(|v| v.is_finite())
            && self.prev.iter().all(|v| v.is_finite())
            && self.interval.is_none_or(|v| v.is_finite() && v > 0.0)
            && self.first_time.is_none_or(|v| v.is_finite());
        if !finite {
            return Err(crate::Error::state(
                "forecaster",
                "forecaster state is not finite",
            ));
        }
        Ok(())
    }
}

/// Normalized weights `exp(l_i − max l) / Σ` of up to [`MEMBERS`] log-weights (the rest 0).
fn softmax(log_w: &[f64]) -> [f64; MEMBERS] {
    let mut w = [0.0; MEMBERS];
    let m = log_w.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    let mut sum = 0.0;
    for (o, l) in w.iter_mut().zip(log_w) {
        *o = (l - m).exp();
        sum += *o;
    }
    w.iter_mut().for_each(|v| *v /= sum);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedge_moves_weight_to_the_better_member_and_keeps_a_share() {
        let mut f = Forecaster::new(ForecastConfig::default(), 1, false);
        for _ in 0..2000 {
            f.hedge(&[0.01, 0.2]);
        }
        let w = f.weights();
        // Fixed share keeps at least α/N of the weight on every member: the loser settles
        // near α / (η Δℓ) ≈ 0.002 / 0.095 ≈ 0.011 (hand-derived equilibrium).
        assert!(w[0] > 0.98 && w[1] >= 0.001 - 1e-12, "{w:?}");
        assert!((w[0] + w[1] - 1.0).abs() < 1e-12);
        // The other member recovers within a few hundred events once it is better.
        for _ in 0..300 {
            f.hedge(&[0.2, 0.01]);
        }
        assert!(f.weights()[1] > 0.9, "{:?}", f.weights());
    }

    #[test]
    fn values_near_f64_max_keep_the_state_finite() {
        let mut f = Forecaster::new(ForecastConfig::default(), 1, false);
        let mut levels = Normalizer::new(1, NormMode::Cumulative);
        let (mut u, mut y, mut out) = (vec![0f32; f.d_input()], vec![0f32; f.d_target()], [0f64]);
        for x in [1.0, -f64::MAX, f64::MAX, 5e307, 2.0, 3.0] {
            f.observe(None, &[x]);
            levels.observe(&[x]);
            f.inputs_to(None, &[x], &levels, &mut u, &mut y);
            // A network output as large as f32 allows.
            f.forecast_to(&[f32::MAX, f32::MAX], &[x], &levels, &mut out);
            assert!(out[0].is_finite(), "forecast {} after {x}", out[0]);
        }
        assert!(f.validate(&ForecastConfig::default(), 1).is_ok());
        assert!(f.weights().iter().all(|w| w.is_finite()));
    }

    #[test]
    fn season_comes_from_the_timestamps() {
        // Hourly events: a day is 24 of them; weekly events: a year is 52.
        for (dt, p) in [
            (3600.0, Some(24)),
            (604_800.0, Some(52)),
            (300.0, Some(288)),
        ] {
            let mut f = Forecaster::new(ForecastConfig::default(), 1, true);
            f.observe(Some(1e9), &[0.0]);
            f.observe(Some(1e9 + dt), &[0.0]);
            assert_eq!(f.season(), p, "dt {dt}");
        }
        // Yearly events sample no cycle often enough.
        let mut f = Forecaster::new(ForecastConfig::default(), 1, true);
        f.observe(Some(0.0), &[0.0]);
        f.observe(Some(31_556_952.0), &[0.0]);
        assert_eq!(f.season(), None);
    }

    #[test]
    fn members_forecast_naive_and_seasonal_values() {
        // Hourly, period 24: x[t] = t % 24 * 10 + t.
        let mut f = Forecaster::new(ForecastConfig::default(), 1, true);
        let levels = Normalizer::new(1, NormMode::Cumulative);
        let (mut u, mut y, mut out) = (vec![0f32; f.d_input()], vec![0f32; f.d_target()], [0f64]);
        let x = |t: usize| (t % 24) as f64 * 10.0 + t as f64;
        for t in 0..720 {
            let time = Some(t as f64 * 3600.0);
            f.observe(time, &[x(t)]);
            f.inputs_to(time, &[x(t)], &levels, &mut u, &mut y);
            f.forecast_to(&[0.0, 0.0], &[x(t)], &levels, &mut out);
        }
        let m = f.member_forecasts();
        // naive = x(719); seasonal = x(696); seasonal change = x(719) + x(696) - x(695),
        // which is x(720).
        assert_eq!(m[1], x(719));
        assert_eq!(m[2], x(696));
        assert_eq!(m[3], x(720));
        assert_eq!(f.members(), MEMBERS);
        // The seasonal change is exact here, while the network's constant change misses each
        // day's drop (a clipped loss of 1 a day): after 29 days it carries the weight.
        assert!(f.weights()[3] > 0.5, "{:?}", f.weights());
    }
}
