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
//! | phase (with `phase`, off by default) | `|mean(last w_s) − usual value at this phase| / spread of the phase` | departures from the usual pattern at that time of day, weekdays and weekends apart (needs timestamps) |
//!
//! Each of the first three (and the phase statistic) is taken as `ln(stat + 10⁻³)` and judged by its [`Tail`]: the
//! surprise is `−log10 p` of its tail probability against its recent history, a bounded
//! summary in which the value seen `j` events ago weighs `e^(−j/history)` (see
//! [`tail`](super::tail)). A new record after `t` events has probability `2 / (t + 1)` when
//! the events are exchangeable, surprise `log10((t + 1) / 2)`. The event's surprise is the
//! largest of these plus a share `a` (`others`, 0.5) of the rest, so that evidence from
//! several statistics at once adds up:
//!
//! `surprise = max_j S_j + a · (Σ_j S_j − max_j S_j)`, `raw = min(1, surprise / decades)`,
//!
//! so `raw = 0.5` means `p = 10^(−decades/2)`. Finally the **onset filter** reports one alarm
//! per episode, not one per event of it. An episode starts at an event whose surprise beats
//! the largest surprise of the previous `onset` events; its peak over that event and the
//! `confirm` events after it is reported at the last of them, and every other event reports 0.
//! A rising run of scores (0.47, 0.50, 0.51, ...) is thus one alarm at its peak, not one alarm
//! per step, at the price of a delay of `confirm` events. An episode whose first event already
//! scores above the alarm threshold is an alarm whatever follows, so it is reported at once
//! (`at_once`): an obvious spike is flagged on its own event.
//!
//! An episode's surprise is then discounted by its **precedents**: with a weight `c` of
//! earlier reported episodes at least as surprising (the one `j` episodes back weighing
//! `e^(−j/precedents)`), its probability is multiplied by `1 + c` (the surprise loses
//! `log10(1 + c)`), so a kind of event seen before alarms less each time it comes back, and
//! the first of its kind keeps its full score. The onset filter and precedents work on
//! surprises, before they are capped at 1.
//!
//! The rows per day come from the time step between the first two events (`86400 / Δt`, when
//! between 2 and `max_period`); without timestamps the seasonal statistic is off. The score is
//! 0 for the first event and stays small during warm-up: a tail gives no surprise before it
//! has seen 30 values, and records are weak early.
//!
//! **An event beyond measure**, whose forecast error is at least [`SATURATED`] (`10^150`
//! standard deviations: values near `f64::MAX`), scores 1 at once, without confirmation, and
//! leaves the statistics as they were (its values are taken as the previous ones); a second
//! one within `onset` events belongs to the same episode and scores 0.
//!
//! # Memory
//!
//! Per value of an event: a ring of the last `max(w + W, w_s)` values, or `w_s` plus a day
//! when the events carry timestamps, at about 4.5 bytes a value, and the shift and seasonal
//! tails; per stream: the error's tail, the episodes' summary and the onset filter's last
//! `onset` surprises (`f32`). With the defaults, one value per event takes 3,604 heap bytes
//! without timestamps and 5,344 with one every 5 minutes, whatever the history (earlier
//! versions kept each tail's last 16,384 values twice, about 1 MB). A state written by those
//! versions is converted on load: each tail's values are pushed into a summary, oldest
//! first, and the values of each ring into the new ring.

use super::phase::{Phases, MAX_BINS};
use super::tail::{Grid, Tail, TailRepr, FLOOR};
use crate::detect::norm::{NormMode, Normalizer};
use serde::{Deserialize, Serialize};

/// A forecast error, in normalized units, at or beyond which an event is beyond measure
/// (`1e150` standard deviations, or an error too large for `f64`): it is reported at once
/// with a score of 1 and leaves the statistics as they were.
pub const SATURATED: f64 = 1e150;

/// The surprise, in decades, of a saturated event (finite, and within `f32`).
const SATURATED_SURPRISE: f64 = 1e30;

/// Values beyond `±VALUE_LIMIT` count as `±VALUE_LIMIT` in the statistics, so that the
/// differences the rings keep fit in `f32` and every sum and square stays finite.
const VALUE_LIMIT: f64 = 1e37;

/// Values of a ring block: the first is kept as `f64`, the others as `f32` differences from
/// it.
const BLOCK: usize = 16;

/// Settings of the anomaly likelihood.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LikelihoodConfig {
    /// Memory of each statistic's tail, in events: the value seen `j` events ago weighs
    /// `e^(−j/history)` in it, so a tail holds the equivalent of at most `history` values
    /// (exponential forgetting with this time constant; earlier versions kept the last
    /// `history` values exactly). Default: 16384.
    pub history: usize,
    /// Fraction of the history in the fitted exponential tail. Default: 0.02.
    pub tail: f64,
    /// Recent events `w` of the shift statistic. Default: 5.
    pub shift_recent: usize,
    /// Events `W` before those the recent ones are compared with. Default: 100.
    pub shift_base: usize,
    /// Recent events `w_s` of the seasonal statistic. Default: 6.
    pub season_recent: usize,
    /// Longest day, in events, the seasonal statistic uses. Default: 4096.
    pub max_period: usize,
    /// Previous events a score must beat to be reported (the onset filter); 0 disables it.
    /// Default: 100.
    pub onset: usize,
    /// Events after an episode's first event over which its peak is taken: the alarm is
    /// reported `confirm` events after the episode starts, once, with the largest score of
    /// those `confirm + 1` events. 0 reports at once. Used with the onset filter only.
    /// Default: 5.
    pub confirm: usize,
    /// Memory of the reported episodes, in episodes: an episode's tail probability is
    /// multiplied by one plus the weight of the earlier episodes at least as surprising, an
    /// episode `j` episodes back weighing `e^(−j/precedents)`, so that a kind of event seen
    /// before alarms less each time. 0 disables it. Default: 1024.
    pub precedents: usize,
    /// Surprise, in decades of probability, that scores 1. Default: 10.
    pub decades: f64,
    /// Whether a new minimum or maximum counts (the record statistic). Default: true.
    pub records: bool,
    /// Weight `a` of the other statistics' surprises added to the largest one: evidence from
    /// several statistics at once adds up. Default: 0.5.
    pub others: f64,
    /// Half-life, in events, of the running root mean square of the forecast errors that the
    /// error statistic is divided by (the error relative to the forecaster's recent accuracy,
    /// so that the large errors of a forecaster still learning do not make later ones look
    /// usual); 0 judges the error itself, in normalized units. Default: 0.
    pub error_scale: usize,
    /// Events before the forecast error enters its statistic. Default: 0.
    pub error_warmup: usize,
    /// Phases per day of the same-phase statistic (the recent mean against the usual value at
    /// that time of day, weekdays and weekends apart, with a robust spread per phase; needs
    /// timestamps and more than one event per phase); 0 disables it. Default: 0.
    pub phase: usize,
    /// Whether an episode whose first event alone, discounted by its precedents, already
    /// scores above the alarm threshold ([`Likelihood::set_threshold`]) is reported at
    /// once instead of after `confirm` events: it is an alarm whatever follows, and waiting
    /// would only delay it. An episode that starts below the threshold still waits for its
    /// peak, which may cross it. Default: true.
    pub at_once: bool,
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
            error_scale: 0,
            error_warmup: 0,
            phase: 0,
            at_once: true,
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
        if [
            self.max_period,
            self.onset,
            self.confirm,
            self.precedents,
            self.error_scale,
            self.error_warmup,
        ]
        .iter()
        .any(|v| *v > 1 << 20)
        {
            return bad(
                "anomaly.likelihood",
                "max_period, onset, confirm, precedents, error_scale and error_warmup must be at \
                 most 2^20"
                    .into(),
            );
        }
        if self.phase > MAX_BINS {
            return bad(
                "anomaly.likelihood.phase",
                format!("must be at most {MAX_BINS}, got {}", self.phase),
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

    /// Values each series keeps, with `period` rows per day (0: none): the shift statistic's
    /// `w + W`, and the seasonal statistic's `w_s` and the `w_s` a day back.
    fn ring_len(&self, period: usize) -> usize {
        let day = if period > 0 {
            period + self.season_recent
        } else {
            self.season_recent
        };
        (self.shift_recent + self.shift_base).max(day)
    }
}

/// The last values of a series, in blocks of [`BLOCK`]: the first value of a block as `f64`,
/// the others as `f32` differences from it, so a value costs about 4.5 bytes and comes back
/// exact to `6·10⁻⁸` of its difference from the block's first value (a level of `10^9` with a
/// noise of 1 keeps its noise, which `f32` values would round away). The ring holds one block
/// more than the values it serves, because writing a block's first value invalidates the
/// rest of that block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ring {
    base: Vec<f64>,
    delta: Vec<f32>,
    /// The next slot.
    head: usize,
    /// Values pushed (saturating).
    seen: u64,
}

impl Ring {
    /// A ring serving the last `len` values.
    fn new(len: usize) -> Self {
        let cap = len + BLOCK;
        Ring {
            base: vec![0.0; cap.div_ceil(BLOCK)],
            delta: vec![0.0; cap],
            head: 0,
            seen: 0,
        }
    }

    /// The values it serves.
    fn len(&self) -> usize {
        self.delta.len() - BLOCK
    }

    /// Values that can be read: `at(lag)` for `lag < kept()`.
    fn kept(&self) -> usize {
        self.seen.min(self.len() as u64) as usize
    }

    fn push(&mut self, x: f64) {
        let s = self.head;
        if s.is_multiple_of(BLOCK) {
            self.base[s / BLOCK] = x;
            self.delta[s] = 0.0;
        } else {
            self.delta[s] = (x - self.base[s / BLOCK]) as f32;
        }
        self.head = (s + 1) % self.delta.len();
        self.seen = self.seen.saturating_add(1);
    }

    /// The value `lag` events back (0: the newest); `lag < kept()`.
    fn at(&self, lag: usize) -> f64 {
        let cap = self.delta.len();
        let s = (self.head + cap - 1 - lag) % cap;
        self.base[s / BLOCK] + f64::from(self.delta[s])
    }

    fn mean(&self, lags: std::ops::Range<usize>) -> f64 {
        let k = lags.len() as f64;
        lags.map(|j| self.at(j)).sum::<f64>() / k
    }

    /// The same values in a ring serving `len` (the newest `len` of them).
    fn resized(&self, len: usize) -> Ring {
        let mut r = Ring::new(len);
        for lag in (0..self.kept().min(len)).rev() {
            r.push(self.at(lag));
        }
        r.seen = self.seen;
        r
    }

    fn heap_bytes(&self) -> usize {
        self.base.capacity() * std::mem::size_of::<f64>()
            + self.delta.capacity() * std::mem::size_of::<f32>()
    }

    fn validate(&self, len: usize) -> crate::Result<()> {
        if self.delta.len() != len + BLOCK
            || self.base.len() != self.delta.len().div_ceil(BLOCK)
            || self.head >= self.delta.len()
            || !self.base.iter().all(|v| v.abs() <= VALUE_LIMIT)
            || !self.delta.iter().all(|v| v.is_finite())
        {
            return Err(crate::Error::state(
                "likelihood",
                "likelihood value history is inconsistent",
            ));
        }
        Ok(())
    }
}

/// Per value: recent values, extremes and the tails of the shift and seasonal statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Series {
    ring: Ring,
    min: f64,
    max: f64,
    shift: Tail,
    season: Tail,
    /// The same-phase statistic's phases and tail (with `phase`).
    phases: Phases,
    phase: Tail,
}

impl Series {
    fn new(c: &LikelihoodConfig, period: usize) -> Self {
        Series {
            ring: Ring::new(c.ring_len(period)),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            shift: Tail::new(c.history, c.tail),
            season: Tail::new(c.history, c.tail),
            phases: Phases::new(),
            phase: Tail::new(c.history, c.tail),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.ring.heap_bytes()
            + self.shift.heap_bytes()
            + self.season.heap_bytes()
            + self.phases.heap_bytes()
            + self.phase.heap_bytes()
    }

    /// Checks a deserialized series against the settings and the period.
    fn validate(&self, c: &LikelihoodConfig, period: usize, events: u64) -> crate::Result<()> {
        self.ring.validate(c.ring_len(period))?;
        if self.ring.seen > events || self.min.is_nan() || self.max.is_nan() {
            return Err(crate::Error::state(
                "likelihood",
                "likelihood value history is inconsistent",
            ));
        }
        for t in [&self.shift, &self.season, &self.phase] {
            check_tail(t, Grid::Log, c.history, c.tail)?;
        }
        self.phases.validate(c.phase)
    }
}

/// Checks a deserialized tail and that it has the grid and settings expected.
fn check_tail(t: &Tail, grid: Grid, history: usize, tail: f64) -> crate::Result<()> {
    t.validate()?;
    if t.grid() != grid || t.history() != history.max(1) as f64 || t.fraction() != tail {
        return Err(crate::Error::state(
            "likelihood",
            "likelihood tail has the wrong grid, history or tail fraction",
        ));
    }
    Ok(())
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
/// // Above the threshold (0.5) at once, the spike's episode is reported on its own event,
/// // once (an episode starting below it is reported `confirm` events later, with its peak).
/// let mut reported = vec![l.score(Some(600_000.0), &[40.0], Some(30.0))];
/// for t in 1..=5 {
///     reported.push(l.score(Some(600_000.0 + t as f64 * 300.0), &[10.0], Some(0.1)));
/// }
/// assert!(reported[0] > 0.9);
/// assert_eq!(reported[1..], [0.0; 5]);
/// assert_eq!(l.reported(), None);
/// // The whole state, one value per event, timestamps every 5 minutes: about 5 KiB.
/// assert!(l.heap_bytes() < 6 * 1024, "{}", l.heap_bytes());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LikelihoodRepr")]
pub struct Likelihood {
    config: LikelihoodConfig,
    events: u64,
    first_time: Option<f64>,
    period: usize,
    norm: Normalizer,
    series: Vec<Series>,
    error: Tail,
    /// The running weight and mean square of the forecast errors (with `error_scale`).
    error_ms: (f64, f64),
    /// Surprises of the last `onset` events (`f32`: the onset filter compares them only).
    recent: Vec<f32>,
    recent_head: usize,
    /// The episode being confirmed: its peak surprise so far and the events left before it is
    /// reported.
    pending: Option<(f64, usize)>,
    /// The first event of the episode being confirmed: its number among the events scored
    /// and its time.
    pending_start: Option<(u64, Option<f64>)>,
    /// The first event of the episode the last scored event reported (`None` when it
    /// reported none).
    reported: Option<(u64, Option<f64>)>,
    /// Peak surprises of the reported episodes, in tenths of `decades` (so 10 scores 1) on
    /// [`Grid::Decades`].
    episodes: Tail,
    /// The alarm threshold, for [`LikelihoodConfig::at_once`] (a reporting setting, not
    /// stored: the pipeline sets it).
    #[serde(skip)]
    threshold: f64,
}

/// A stored likelihood as read: this version's, or one of earlier versions (exact histories
/// and a ring of `f64` values), converted on load.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LikelihoodRepr {
    config: LikelihoodConfig,
    events: u64,
    first_time: Option<f64>,
    period: usize,
    norm: Normalizer,
    series: Vec<SeriesRepr>,
    error: TailRepr,
    #[serde(default)]
    error_ms: (f64, f64),
    recent: Vec<f32>,
    recent_head: usize,
    #[serde(default)]
    pending: Option<(f64, usize)>,
    #[serde(default)]
    pending_start: Option<(u64, Option<f64>)>,
    #[serde(default)]
    reported: Option<(u64, Option<f64>)>,
    #[serde(default)]
    episodes: Option<TailRepr>,
}

/// A stored series: this version's (with a [`Ring`]), or earlier versions' (a ring of
/// `max(w + W, max_period + w_s)` values as `f64`, the newest at `head − 1`, `len` of them
/// kept).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesRepr {
    ring: RingRepr,
    #[serde(default)]
    head: Option<usize>,
    #[serde(default)]
    len: Option<usize>,
    min: f64,
    max: f64,
    shift: TailRepr,
    season: TailRepr,
    #[serde(default)]
    phases: Phases,
    #[serde(default)]
    phase: Option<TailRepr>,
}

/// This version's ring, or the values of earlier versions'.
#[derive(Deserialize)]
#[serde(untagged)]
enum RingRepr {
    Blocks(Ring),
    Values(Vec<f64>),
}

impl SeriesRepr {
    fn into_series(self, c: &LikelihoodConfig, period: usize) -> crate::Result<Series> {
        let shift = self.shift.into_tail(Grid::Log)?;
        let season = self.season.into_tail(Grid::Log)?;
        let phase = match self.phase {
            Some(t) => t.into_tail(Grid::Log)?,
            None => Tail::new(c.history, c.tail),
        };
        let ring = match (self.ring, self.head, self.len) {
            (RingRepr::Blocks(ring), None, None) => ring,
            (RingRepr::Values(values), Some(head), Some(len)) => {
                let cap = values.len();
                if len > cap || (cap > 0 && head >= cap) || !values.iter().all(|v| v.is_finite()) {
                    return Err(crate::Error::state(
                        "likelihood",
                        "likelihood value history is inconsistent",
                    ));
                }
                let mut ring = Ring::new(c.ring_len(period));
                for lag in (0..len).rev() {
                    let x = values[(head + cap - 1 - lag) % cap];
                    ring.push(x.clamp(-VALUE_LIMIT, VALUE_LIMIT));
                }
                ring
            }
            _ => {
                return Err(crate::Error::state(
                    "likelihood",
                    "likelihood value history is neither a ring nor values",
                ))
            }
        };
        Ok(Series {
            ring,
            min: self.min,
            max: self.max,
            shift,
            season,
            phases: self.phases,
            phase,
        })
    }
}

impl TryFrom<LikelihoodRepr> for Likelihood {
    type Error = crate::Error;

    fn try_from(r: LikelihoodRepr) -> crate::Result<Self> {
        let c = r.config;
        c.validate()?;
        if r.period > c.max_period {
            return Err(crate::Error::state(
                "likelihood",
                format!("likelihood period {} is out of range", r.period),
            ));
        }
        let series = r
            .series
            .into_iter()
            .map(|s| s.into_series(&c, r.period))
            .collect::<Result<Vec<_>, _>>()?;
        let episodes = match r.episodes {
            Some(e) => e.into_tail(Grid::Decades)?,
            None => Tail::with_grid(Grid::Decades, c.precedents, 1.0),
        };
        Ok(Likelihood {
            config: c,
            events: r.events,
            first_time: r.first_time,
            period: r.period,
            norm: r.norm,
            series,
            error: r.error.into_tail(Grid::Log)?,
            error_ms: r.error_ms,
            recent: r.recent,
            recent_head: r.recent_head,
            pending: r.pending,
            pending_start: r.pending_start,
            reported: r.reported,
            episodes,
            threshold: super::AnomalyKind::Likelihood.default_threshold(),
        })
    }
}

/// Adds one statistic's surprise `v` to the running largest and total.
fn note(best: &mut f64, total: &mut f64, v: f64) {
    *best = best.max(v);
    *total += v;
}

/// A surprise as the onset filter keeps it (`f32`), so that comparisons with kept ones are
/// exact.
fn kept_surprise(s: f64) -> f32 {
    s.min(f64::from(f32::MAX)) as f32
}

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
            error_ms: (0.0, 0.0),
            recent: Vec::new(),
            recent_head: 0,
            pending: None,
            pending_start: None,
            reported: None,
            episodes: Tail::with_grid(Grid::Decades, config.precedents, 1.0),
            threshold: super::AnomalyKind::Likelihood.default_threshold(),
        }
    }

    /// Sets the alarm threshold that [`LikelihoodConfig::at_once`] compares a starting
    /// episode's score with (default: 0.5, the likelihood's default threshold).
    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = threshold;
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

    /// Heap bytes held: the capacities of every buffer (tails' bins, rings, block means,
    /// onset history, normalizer), not counting the `Likelihood` value itself.
    pub fn heap_bytes(&self) -> usize {
        let f64s = std::mem::size_of::<f64>();
        self.series.capacity() * std::mem::size_of::<Series>()
            + self.series.iter().map(Series::heap_bytes).sum::<usize>()
            + self.error.heap_bytes()
            + self.episodes.heap_bytes()
            + self.recent.capacity() * std::mem::size_of::<f32>()
            // The normalizer's mean and second moment per value.
            + 2 * self.norm.dim() * f64s
    }

    fn init(&mut self, d: usize) {
        let c = &self.config;
        self.norm = Normalizer::new(d, NormMode::Cumulative);
        self.series = (0..d).map(|_| Series::new(c, 0)).collect();
        self.recent = Vec::with_capacity(c.onset);
    }

    /// Scores one event: its values (`actual`, always the same number of them; finite) and
    /// the forecast error made for it in normalized units (`None` when there was no
    /// forecast). Returns the score in `[0, 1]`; no allocation after the first events.
    ///
    /// An error of at least [`SATURATED`] (or infinite) makes the event beyond measure: it
    /// scores 1 at once (unless an earlier one did within the last `onset` events: the same
    /// episode), and its values are taken as the previous ones, so that the statistics stay
    /// as they were.
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
                        // The ring grows to hold a day (once, at the second event).
                        let len = self.config.ring_len(self.period);
                        for s in &mut self.series {
                            s.ring = s.ring.resized(len);
                        }
                    }
                }
            }
            _ => {}
        }
        let c = self.config;
        let error = error.filter(|e| !e.is_nan());
        let saturated = error.is_some_and(|e| e.abs() >= SATURATED);
        let ln = |s: f64| (s + FLOOR).ln();
        let (mut best, mut total) = (0.0f64, 0.0f64);
        if saturated {
            for s in &mut self.series {
                let held = if s.ring.kept() > 0 { s.ring.at(0) } else { 0.0 };
                s.ring.push(held);
            }
        } else {
            self.norm.observe(actual);
            let judged = error.and_then(|e| self.relative_error(e.abs()));
            if let Some(e) = judged.filter(|_| t >= c.error_warmup as u64) {
                let s = ln(e);
                note(&mut best, &mut total, self.error.surprise(s));
                self.error.push(s);
            }
        }
        let judged = if saturated { 0 } else { actual.len() };
        for (i, (series, &x)) in self.series.iter_mut().zip(actual).enumerate().take(judged) {
            let x = x.clamp(-VALUE_LIMIT, VALUE_LIMIT);
            let std = self.norm.std(i);
            let ring = &mut series.ring;
            ring.push(x);
            let (w, base) = (c.shift_recent, c.shift_base);
            if ring.kept() >= w + base {
                let recent = ring.mean(0..w);
                let past = ring.mean(w..w + base);
                let var = (w..w + base)
                    .map(|j| (ring.at(j) - past).powi(2))
                    .sum::<f64>()
                    / base as f64;
                let stat = ln((recent - past).abs() / (var.sqrt() + FLOOR * std + 1e-12));
                note(&mut best, &mut total, series.shift.surprise(stat));
                series.shift.push(stat);
            }
            let (p, ws) = (self.period, c.season_recent);
            if p > 0 && ring.kept() >= p + ws {
                let stat = ln((ring.mean(0..ws) - ring.mean(p..p + ws)).abs() / std);
                note(&mut best, &mut total, series.season.surprise(stat));
                series.season.push(stat);
            }
            if let Some(now) = time.filter(|_| p > 0 && c.phase > 0 && ring.kept() >= ws) {
                let floor = FLOOR * std + 1e-12;
                if let Some(stat) = series
                    .phases
                    .observe(now, ring.mean(0..ws), c.phase, p, floor)
                {
                    let stat = ln(stat);
                    note(&mut best, &mut total, series.phase.surprise(stat));
                    series.phase.push(stat);
                }
            }
            if c.records && t > 0 && (x > series.max || x < series.min) {
                note(&mut best, &mut total, ((t + 1) as f64 / 2.0).log10());
            }
            series.max = series.max.max(x);
            series.min = series.min.min(x);
        }
        self.events += 1;
        let surprise = if saturated {
            SATURATED_SURPRISE
        } else {
            best + c.others * (total - best)
        };
        let unit = |s: f64| (s / c.decades).clamp(0.0, 1.0);
        let kept = kept_surprise(surprise);
        let surprise = f64::from(kept);
        self.reported = None;
        if c.onset == 0 {
            self.reported = Some((t, time));
            return unit(surprise);
        }
        let before = self.recent.iter().fold(0.0f64, |a, b| a.max(f64::from(*b)));
        if self.recent.len() < c.onset {
            self.recent.push(kept);
        } else {
            self.recent[self.recent_head] = kept;
            self.recent_head = (self.recent_head + 1) % c.onset;
        }
        if saturated {
            // Reported at once, ending any episode being confirmed (the same one).
            if surprise <= before {
                return 0.0;
            }
            self.pending = None;
            self.pending_start = None;
        }
        let decisive = self.pending.is_none() && surprise > before && self.decisive(surprise);
        let peak = match &mut self.pending {
            _ if saturated => surprise,
            Some((peak, left)) => {
                *peak = peak.max(surprise);
                *left -= 1;
                if *left > 0 {
                    return 0.0;
                }
                let peak = *peak;
                self.pending = None;
                // A state written before episodes kept their start: `confirm` events back.
                let start = self.pending_start.take();
                self.reported = start.or(Some((t.saturating_sub(c.confirm as u64), None)));
                peak
            }
            None if surprise > before && c.confirm > 0 && !decisive => {
                self.pending = Some((surprise, c.confirm));
                self.pending_start = Some((t, time));
                return 0.0;
            }
            None if surprise > before => surprise,
            None => return 0.0,
        };
        if self.reported.is_none() {
            self.reported = Some((t, time));
        }
        if c.precedents == 0 {
            return unit(peak);
        }
        // The episode's tail probability times one plus its precedents: the weight of earlier
        // episodes at least as surprising, kept in tenths of `decades` (a score of 1 is 10).
        let scaled = peak * 10.0 / c.decades;
        let seen = self.episodes.at_least(scaled);
        self.episodes.push(scaled);
        unit(peak - (1.0 + seen).log10())
    }

    /// Whether an episode starting with `surprise` scores the alarm threshold already,
    /// discounted by its precedents as its report would be ([`LikelihoodConfig::at_once`]).
    fn decisive(&self, surprise: f64) -> bool {
        let c = &self.config;
        if !c.at_once {
            return false;
        }
        let seen = if c.precedents == 0 {
            0.0
        } else {
            self.episodes.at_least(surprise * 10.0 / c.decades)
        };
        ((surprise - (1.0 + seen).log10()) / c.decades).min(1.0) > self.threshold
    }

    /// The forecast error `e` as the error statistic judges it: `e` itself, or with
    /// `error_scale` its ratio to the running root mean square of the errors before it (`None`
    /// for the first), which `e` then joins, winsorized at 10 times that scale.
    fn relative_error(&mut self, e: f64) -> Option<f64> {
        let h = self.config.error_scale;
        if h == 0 {
            return Some(e);
        }
        let (w, ms) = self.error_ms;
        let scale = (w > 0.0).then(|| ms.sqrt());
        let sq = scale.map_or(e * e, |s| e.min(10.0 * s + FLOOR).powi(2));
        let w = w * 0.5f64.powf(1.0 / h as f64) + 1.0;
        self.error_ms = (w, ms + (sq.min(1e300) - ms) / w);
        scale.map(|s| e / (s + FLOOR))
    }

    /// The first event of the episode that the last scored event reported, as the number of
    /// events between it and the last one (0: the last event itself) and its time; `None` when
    /// the last event reported no episode. An episode confirmed over `confirm` events is
    /// reported `confirm` events after it began; one above the threshold from its first event
    /// ([`LikelihoodConfig::at_once`]), one beyond measure, or any with `confirm` or `onset` 0,
    /// at once.
    ///
    /// # Example
    /// ```
    /// use tbptt::detect::anomaly::{Likelihood, LikelihoodConfig};
    /// // Confirmed: the spike is reported 5 events after it.
    /// let config = LikelihoodConfig { at_once: false, ..Default::default() };
    /// let mut l = Likelihood::new(config);
    /// for t in 0..2000 {
    ///     let noise = ((t * 7919) % 101) as f64 / 100.0 - 0.5;
    ///     l.score(Some(t as f64 * 300.0), &[10.0 + noise], Some(noise.abs()));
    /// }
    /// l.score(Some(600_000.0), &[40.0], Some(30.0));
    /// assert_eq!(l.reported(), None);
    /// for t in 1..=5 {
    ///     l.score(Some(600_000.0 + t as f64 * 300.0), &[10.0], Some(0.1));
    /// }
    /// assert_eq!(l.reported(), Some((5, Some(600_000.0))));
    /// ```
    pub fn reported(&self) -> Option<(u64, Option<f64>)> {
        self.reported
            .map(|(start, time)| (self.events.saturating_sub(1).saturating_sub(start), time))
    }

    /// Checks a deserialized state against its settings: sizes, indices and finite values, so
    /// that scoring later events cannot panic.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn validate(&self) -> crate::Result<()> {
        self.config.validate()?;
        let c = &self.config;
        let d = self.series.len();
        if self.norm.dim() != d && !(d == 0 && self.events == 0) {
            return Err(crate::Error::state(
                "likelihood",
                "likelihood statistics have inconsistent sizes",
            ));
        }
        if d > 0 {
            self.norm.validate(d)?;
        }
        if self.period > c.max_period || self.period == 1 {
            return Err(crate::Error::state(
                "likelihood",
                format!("likelihood period {} is out of range", self.period),
            ));
        }
        if self.recent.len() > c.onset
            || (self.recent_head != 0 && self.recent_head >= self.recent.len())
            || !self.recent.iter().all(|v| v.is_finite() && *v >= 0.0)
            || self.pending.is_some_and(|(p, left)| {
                !(p.is_finite() && p >= 0.0) || left == 0 || left > c.confirm
            })
            || [self.pending_start, self.reported]
                .iter()
                .flatten()
                .any(|(start, time)| *start >= self.events || time.is_some_and(|t| !t.is_finite()))
        {
            return Err(crate::Error::state(
                "likelihood",
                "likelihood onset history is inconsistent",
            ));
        }
        let (w, ms) = self.error_ms;
        if !(w.is_finite() && w >= 0.0 && ms.is_finite() && ms >= 0.0) {
            return Err(crate::Error::state(
                "likelihood",
                "likelihood error scale is not finite",
            ));
        }
        check_tail(&self.error, Grid::Log, c.history, c.tail)?;
        check_tail(&self.episodes, Grid::Decades, c.precedents, 1.0)?;
        for s in &self.series {
            s.validate(c, self.period, self.events)?;
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
    fn an_episode_above_the_threshold_at_once_is_reported_on_its_first_event() {
        let c = LikelihoodConfig::default().confirm;
        let spike = |l: &mut Likelihood| {
            let mut out = vec![l.score(None, &[50.0], Some(50.0))];
            out.extend((0..c).map(|_| l.score(None, &[0.0], Some(0.0))));
            out
        };
        // Above the default threshold on its first event: reported there, with its onset.
        let mut l = warmed(LikelihoodConfig::default());
        let now = spike(&mut l);
        assert!(now[0] > 0.9, "{now:?}");
        assert!(now[1..].iter().all(|s| *s == 0.0), "{now:?}");
        // Not at once (the setting off, or a threshold no first event can pass): `confirm`
        // events later, with the same score.
        let off = LikelihoodConfig {
            at_once: false,
            ..Default::default()
        };
        let mut high = warmed(LikelihoodConfig::default());
        high.set_threshold(1.0);
        for mut l in [warmed(off), high] {
            let late = spike(&mut l);
            assert!(late[..c].iter().all(|s| *s == 0.0), "{late:?}");
            assert_eq!(late[c], now[0], "{late:?}");
        }
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
        // 20 decades to a score of 1: the peaks (about 36, 5.9, 5.5 and 5.3 decades) fall in
        // different bins of the episodes' summary, whose bins are a hundredth of that.
        let config = LikelihoodConfig {
            decades: 20.0,
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
            // Each earlier spike at least as surprising multiplies p by one more, times its
            // weight e^(−i/1024) for one i episodes back (at least 0.997 here).
            let precedents = plain[..j].iter().filter(|p| **p >= plain[j]).count() as f64;
            let want = plain[j] - (1.0 + precedents).log10() / config.decades;
            assert!(
                (discounted[j] - want).abs() < 1e-4,
                "{discounted:?} {plain:?}"
            );
        }
        assert!(discounted[3] < plain[3], "{discounted:?} {plain:?}");
    }

    /// The whole state, one value per event, after 20,000 events: 3,604 heap bytes without
    /// timestamps (three tails of 888 or 640 bytes, a ring of 105 values in 548 bytes, the
    /// onset filter's 400), 5,344 with an event every 5 minutes (a fourth tail, and the ring
    /// holds a day: 294 values in 1,400 bytes). Earlier versions kept about 1 MB. Scoring
    /// changes nothing about the sizes, and a round trip keeps the state.
    #[test]
    fn a_warmed_up_state_takes_a_few_kib() {
        let mut sizes = Vec::new();
        for timed in [false, true] {
            let mut l = Likelihood::new(LikelihoodConfig::default());
            let mut s = 3u64;
            for t in 0..20_000u64 {
                let x = noise(&mut s);
                let spike = if t % 3000 == 0 { 20.0 } else { 0.0 };
                let time = timed.then_some(t as f64 * 300.0);
                l.score(time, &[10.0 + x + spike], Some(x.abs() + spike));
                if t == 10_000 {
                    sizes.push(l.heap_bytes());
                }
            }
            let bytes = rmp_serde::to_vec_named(&l).unwrap();
            let back: Likelihood = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, l);
            assert!(back.validate().is_ok());
            sizes.push(l.heap_bytes());
            eprintln!(
                "timed {timed}: {} heap bytes, {} inline, {} serialized",
                l.heap_bytes(),
                std::mem::size_of::<Likelihood>(),
                bytes.len()
            );
            assert!(bytes.len() < l.heap_bytes() + 200, "{} bytes", bytes.len());
        }
        assert!(sizes[0] == sizes[1] && sizes[2] == sizes[3], "{sizes:?}");
        assert!(sizes[0] <= 4096 && sizes[2] <= 5632, "{sizes:?}");
    }

    /// 3,000 states with one byte changed (and 300 cut short): each is refused by the
    /// reader or by `validate`, or it validates and scores on without panicking.
    #[test]
    fn corrupted_states_are_refused_or_harmless_never_a_panic() {
        let mut l = Likelihood::new(LikelihoodConfig {
            history: 64,
            ..Default::default()
        });
        let mut s = 9u64;
        for t in 0..700u64 {
            let x = noise(&mut s);
            l.score(Some(t as f64 * 300.0), &[x, 2.0 * x], Some(x.abs()));
        }
        let bytes = rmp_serde::to_vec_named(&l).unwrap();
        let (mut refused, mut kept) = (0, 0);
        for i in 0..3300 {
            let mut b = bytes.clone();
            if i < 3000 {
                let at = (((noise(&mut s) + 0.5) * b.len() as f64) as usize).min(b.len() - 1);
                b[at] ^= 1 << (i % 8);
            } else {
                b.truncate(i % b.len());
            }
            match rmp_serde::from_slice::<Likelihood>(&b) {
                Ok(mut m) if m.validate().is_ok() => {
                    kept += 1;
                    for t in 700..710u64 {
                        let sc = m.score(Some(t as f64 * 300.0), &[1.0, 2.0], Some(0.5));
                        assert!((0.0..=1.0).contains(&sc), "{sc}");
                    }
                }
                _ => refused += 1,
            }
        }
        eprintln!("{refused} refused, {kept} harmless");
        assert!(refused > 300, "{refused} refused");
    }

    #[test]
    fn invalid_settings_and_states_are_refused() {
        let c = LikelihoodConfig {
            tail: 0.0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let mut l = Likelihood::new(LikelihoodConfig::default());
        for t in 0..50 {
            l.score(Some(t as f64 * 60.0), &[1.0 + t as f64], Some(0.5));
        }
        assert!(l.validate().is_ok());
        let refused = |f: &dyn Fn(&mut Likelihood)| {
            let mut m = l.clone();
            f(&mut m);
            m.validate().is_err()
        };
        assert!(refused(&|m| m.series[0].ring.head = 1 << 20));
        assert!(refused(&|m| m.series[0].ring.delta.push(0.0)));
        assert!(refused(&|m| m.series[0].ring.delta[3] = f32::INFINITY));
        assert!(refused(&|m| m.series[0].ring.base[0] = 1e300));
        assert!(refused(&|m| m.series[0].ring.seen = 51));
        assert!(refused(&|m| m.period = 7), "a ring for another period");
        assert!(refused(&|m| m.series[0].shift = Tail::new(100, c.tail)));
        assert!(refused(
            &|m| m.error = Tail::with_grid(Grid::Decades, 16384, 0.02)
        ));
        assert!(refused(&|m| m.episodes = Tail::new(1024, 1.0)));
        assert!(refused(&|m| m.recent.push(f32::NAN)));
        assert!(refused(&|m| m.pending = Some((1.0, 6))));
    }
}
#[cfg(test)]
mod phase_tests {
    use super::*;

    /// Five-minute events for 8 weeks from a Monday: a daily cycle of 20, weekends 15 lower,
    /// uniform noise; with `dip`, 10 below it for 6 hours (72 events) of a weekday at `start`.
    /// Returns the peak score over the dip and the hour after, and the likelihood.
    fn dip_peak(phase: usize, dip: bool) -> (f64, Likelihood) {
        let c = LikelihoodConfig {
            phase,
            ..LikelihoodConfig::default()
        };
        let mut l = Likelihood::new(c);
        let (per_day, mut g) = (288, 12345u64);
        let n = per_day * 7 * 8;
        let start = per_day * (7 * 4 + 2) + 100; // a Wednesday, 08:20
        let mut peak = 0.0f64;
        for t in 0..n {
            let day = t / per_day;
            let ph = (t % per_day) as f64 / per_day as f64;
            let weekend = if day % 7 >= 5 { -15.0 } else { 0.0 };
            g ^= g << 13;
            g ^= g >> 7;
            g ^= g << 17;
            let noise = ((g >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 3.4;
            let mut v = 100.0 + 20.0 * (2.0 * std::f64::consts::PI * ph).sin() + weekend + noise;
            if dip && (start..start + 72).contains(&t) {
                v -= 10.0;
            }
            let time = 1_699_833_600.0 + 300.0 * t as f64;
            let s = l.score(Some(time), &[v], Some(noise.abs() / 12.0));
            if (start..start + 84).contains(&t) {
                peak = peak.max(s);
            }
        }
        (peak, l)
    }

    #[test]
    fn the_same_phase_statistic_sees_a_dip_inside_the_usual_range() {
        let (off, _) = dip_peak(0, true);
        let (on, l) = dip_peak(48, true);
        let (clean, _) = dip_peak(48, false);
        assert!(off < 0.1, "without it the dip scores {off}");
        assert!(on > 0.3 && on > clean + 0.2, "{on} (clean {clean})");
        // 96 phases of a centre, a spread and a count, plus a tail, per value.
        let (_, without) = dip_peak(0, false);
        let extra = l.heap_bytes() - without.heap_bytes();
        assert!(extra < 96 * 16 + 1024, "{extra}");
        // The state round-trips, and phases of the wrong size are refused.
        let bytes = rmp_serde::to_vec_named(&l).unwrap();
        let back: Likelihood = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, l);
        assert!(back.validate().is_ok());
        let mut bad = l.clone();
        bad.config.phase = 24;
        let bytes = rmp_serde::to_vec_named(&bad).unwrap();
        let bad: Likelihood = rmp_serde::from_slice(&bytes).unwrap();
        assert!(bad.validate().is_err());
    }
}
