//! Choosing `T` and `k` on a recorded log: a grid of configurations, each run online over the
//! same events, scored on the last 20% (exactly the window of `tbptt replay`'s summary) and
//! over all events, and a recommendation.
//!
//! # Brief overview
//!
//! - [`TAxis`]: a value of the `T` axis: a fixed window, [`TAxis::Auto`] (adaptive
//!   truncation, [`crate::train::truncation`], with the settings of the base configuration's
//!   [`crate::TrainerConfig::auto_truncation`]) or [`TAxis::Full`] (full BPTT through
//!   everything seen so far, the thing truncation approximates). (Not to be confused with
//!   [`crate::train::truncation::Truncation`], how one learner chooses `T`.)
//! - [`Grid`] → [`RunSpec`]s: the cartesian product of `T`, `k`, cell and hidden size
//!   (combinations with `k > T` are left out).
//! - [`evaluate`]: one run, inline and deterministic, through the same [`Pipeline`] as
//!   `tbptt replay`, scored by the pipeline's own [`ErrorTrail`], so its MSE is replay's
//!   summary figure for the same settings, bit for bit. Returns a
//!   [`RunResult`]: MSE and MAE over the last 20% in the input's units, the same for the naive
//!   and seasonal-naive forecasts, MSE over all events, events/s (measured), work per update
//!   and per event and the run's buffer memory (computed from the buffer sizes). An auto run's
//!   work is computed from the mean `T` its updates used, its memory at `max` (the buffers are
//!   allocated for it), and its [`RunResult::truncation`] reports the `T` it chose.
//! - [`run_grid`]: every run of the grid, spread over threads, cheapest first (by
//!   [`estimated_madds`]), results in grid order. Full-BPTT runs see only the first
//!   `full_max` events (their work grows with the square of the length).
//! - [`recommend`]: the cheapest truncated run (fewest multiply-adds per event) whose MSE is
//!   within a tolerance of the best truncated run's. Full BPTT is a reference and is never
//!   recommended: see [`TAxis::Full`].
//!
//! **Full BPTT online.** A [`TAxis::Full`] run makes every `k` events one update whose
//! window is the whole history: forward from the initial state over every pair seen so far,
//! loss on the newest `k` steps (as for TBPTT), backward through all of them. Its work per
//! update grows with the log (`O(n)` per update, `O(n²/k)` over the log) and it keeps the
//! activations of the whole log; the learner under it is given a window longer than the log,
//! so it never trains by itself, and the update is made from outside with [`Window`] buffers
//! as long as the log.
//!
//! **The scored window.** The last 20% is the window of [`ErrorTrail::last20`], the figure
//! `tbptt replay` reports: the events after the first (the first has no forecast), at least
//! 20% of them, rounded up to whole trail blocks on logs longer than 2,048 events
//! ([`scored_events`]). MAE and the seasonal-naive figures are computed over the same events.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::detect::pipeline::PipelineConfig;
//! use tbptt::tools::sweep::{evaluate, recommend, Grid, RunSpec, TAxis};
//!
//! let events: Vec<Event> = (0..1000)
//!     .map(|t| Event { values: vec![(t as f64 * 0.4).sin()], ..Default::default() })
//!     .collect();
//! let grid = Grid {
//!     windows: vec![TAxis::Fixed(8), TAxis::Fixed(16)],
//!     every: vec![4],
//!     cells: vec![tbptt::CellKind::Gru],
//!     hidden: vec![8],
//! };
//! let base = PipelineConfig::default();
//! let results: Vec<_> = grid
//!     .specs()
//!     .iter()
//!     .map(|s| evaluate(&events, &base, s, None))
//!     .collect::<Result<_, _>>()?;
//! assert!(results.iter().all(|r| r.mse < r.naive_mse));
//! let rec = recommend(&results, 0.05).unwrap();
//! assert!(results[rec.chosen].mse <= results[rec.best].mse * 1.05);
//! # Ok::<(), tbptt::Error>(())
//! ```

use crate::detect::pipeline::ErrorTrail;
use crate::detect::pipeline::{OutputRecord, Pipeline, PipelineConfig};
use crate::detect::trace::ForecastTrace;
use crate::event::Event;
use crate::io::format::{LoadError, ReadError, Reader};
use crate::io::source::{SourceConfig, SourceSpec};
use crate::nn::model::{ModelConfig, Window};
use crate::nn::optim::{clip_grad_norm, grad_norm, Optimizer};
use crate::train::truncation::{Truncation, TruncationReport};
use crate::{CellKind, Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A value of the window (`T`) axis of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TAxis {
    /// TBPTT with a fixed window of `T` steps.
    Fixed(usize),
    /// TBPTT with adaptive truncation: `T` follows the measured gradient decay
    /// ([`crate::train::truncation`]). Its settings are the base configuration's
    /// [`crate::TrainerConfig::auto_truncation`], or [`crate::train::truncation::AutoTruncation::default`] when unset.
    Auto,
    /// Full BPTT: every update backpropagates through everything seen so far.
    ///
    /// A reference only: [`recommend`] never picks it, and `tbptt replay`/`learn` do not
    /// offer it. Its memory and its work per update grow with the stream without bound
    /// (`O(n)` activations, `O(n²/k)` work), which a learner meant to run for months on a
    /// live stream in fixed memory cannot afford; what it shows is how much truncation loses.
    Full,
}

impl FromStr for TAxis {
    type Err = Error;

    /// A positive number of steps, `auto` or `full`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "full" => Ok(TAxis::Full),
            "auto" => Ok(TAxis::Auto),
            n => match n.parse::<usize>() {
                Ok(t) if t > 0 => Ok(TAxis::Fixed(t)),
                _ => Err(Error::config(
                    "window",
                    format!("expected a positive number of steps, `auto` or `full`, got {s:?}"),
                )),
            },
        }
    }
}

impl fmt::Display for TAxis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TAxis::Fixed(t) => write!(f, "{t}"),
            TAxis::Auto => f.write_str("auto"),
            TAxis::Full => f.write_str("full"),
        }
    }
}

impl TAxis {
    /// Whether a period `k` fits this window (`k <= T`; any `k` for full BPTT and for
    /// `auto`, whose settings [`check_auto`] checks against `k`).
    pub fn admits(self, k: usize) -> bool {
        match self {
            TAxis::Fixed(t) => k <= t,
            TAxis::Auto | TAxis::Full => true,
        }
    }
}

/// The axes of a sweep. Every combination is one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Window lengths `T`.
    pub windows: Vec<TAxis>,
    /// Update periods `k`.
    pub every: Vec<usize>,
    /// Cells.
    pub cells: Vec<CellKind>,
    /// Hidden sizes `H`.
    pub hidden: Vec<usize>,
}

impl Default for Grid {
    /// `T` ∈ {4, 8, 16, 32, 64, full}, `k` ∈ {1, 4, 8}, GRU and LSTM, `H` ∈ {32, 64}.
    fn default() -> Self {
        Grid {
            windows: [4, 8, 16, 32, 64]
                .map(TAxis::Fixed)
                .into_iter()
                .chain([TAxis::Full])
                .collect(),
            every: vec![1, 4, 8],
            cells: vec![CellKind::Gru, CellKind::Lstm],
            hidden: vec![32, 64],
        }
    }
}

impl Grid {
    /// The runs, in order: cell, then `H`, then `T`, then `k`; combinations with `k > T` are
    /// left out.
    pub fn specs(&self) -> Vec<RunSpec> {
        let mut v = Vec::new();
        for &cell in &self.cells {
            for &hidden in &self.hidden {
                for &window in &self.windows {
                    for &every in &self.every {
                        if window.admits(every) {
                            v.push(RunSpec {
                                window,
                                every,
                                cell,
                                hidden,
                            });
                        }
                    }
                }
            }
        }
        v
    }

    /// Checks the axes.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty axis, `k = 0` or `H = 0`, or a grid whose every
    /// combination has `k > T`.
    pub fn validate(&self) -> Result<()> {
        for (name, empty) in [
            ("window", self.windows.is_empty()),
            ("every", self.every.is_empty()),
            ("cell", self.cells.is_empty()),
            ("hidden", self.hidden.is_empty()),
        ] {
            if empty {
                return Err(Error::config(name, "the sweep needs at least one value"));
            }
        }
        if self.every.contains(&0) {
            return Err(Error::config("every", "k must be at least 1"));
        }
        if self.hidden.contains(&0) {
            return Err(Error::config("hidden", "H must be at least 1"));
        }
        if self.specs().is_empty() {
            return Err(Error::config(
                "every",
                "every combination has k > T; nothing to run",
            ));
        }
        Ok(())
    }
}

/// One configuration of a sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunSpec {
    /// The window.
    pub window: TAxis,
    /// The update period `k`.
    pub every: usize,
    /// The cell.
    pub cell: CellKind,
    /// The hidden size `H`.
    pub hidden: usize,
}

impl fmt::Display for RunSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} H={} T={} k={}",
            self.cell, self.hidden, self.window, self.every
        )
    }
}

/// Errors of the naive forecasts over the scored events, in the input's units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Naive forecast (the last value): mean squared error.
    pub naive_mse: f64,
    /// Naive forecast: mean absolute error.
    pub naive_mae: f64,
    /// Seasonal-naive forecast (the value one season earlier): MSE, when a season is given.
    pub seasonal_mse: Option<f64>,
    /// Seasonal-naive forecast: MAE.
    pub seasonal_mae: Option<f64>,
    /// Naive forecast over every event with a forecast (all but the first): MSE.
    pub naive_mse_all: f64,
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The configuration.
    pub spec: RunSpec,
    /// Events processed: the whole log, or for [`TAxis::Full`] at most the `full_max` first
    /// ones ([`run_grid`]).
    pub events: u64,
    /// Events scored (the last 20% of those with a forecast, as [`scored_events`] counts).
    pub scored: u64,
    /// Mean squared forecast error over the scored events, in the input's units (averaged
    /// over the values of an event).
    pub mse: f64,
    /// Mean absolute forecast error over the scored events, in the input's units.
    pub mae: f64,
    /// Naive forecast (the last value) over the same events: MSE.
    pub naive_mse: f64,
    /// Naive forecast: MAE.
    pub naive_mae: f64,
    /// Seasonal-naive forecast (the value `season` events earlier): MSE, when a season is
    /// given.
    pub seasonal_mse: Option<f64>,
    /// Seasonal-naive forecast: MAE.
    pub seasonal_mae: Option<f64>,
    /// Mean squared forecast error over every event with a forecast (all but the first), in
    /// the input's units.
    pub mse_all: f64,
    /// Naive forecast over the same events: MSE.
    pub naive_mse_all: f64,
    /// Updates applied.
    pub updates: u64,
    /// The window lengths an [`TAxis::Auto`] run used (current, min, mean, max, measured
    /// gradient decay); `None` for fixed and full runs.
    pub truncation: Option<TruncationReport>,
    /// Mean number of steps each update backpropagated through (`T`; the mean `T` used, for
    /// auto; the mean history length, for full BPTT).
    pub steps_per_update: f64,
    /// Multiply-adds of one update, computed: steps × the cell's matrix products (one
    /// forward, two backward).
    pub madds_per_update: f64,
    /// Multiply-adds of training per event: all updates' work over the events. The cost the
    /// recommendation minimizes.
    pub madds_per_event: f64,
    /// Bytes of the buffers the training needs (ring, window activations and gradients,
    /// weights, gradient and optimizer moments), computed from their sizes; for auto, at the
    /// largest `T` (`max`), for which they are allocated; for full BPTT, a
    /// ring and a window as long as the log. (The sweep's full-BPTT harness also keeps the
    /// learner's own idle window of that length, which is not counted: it is not part of what
    /// full BPTT needs.)
    pub buffer_bytes: u64,
    /// Events per second of wall time (measured, including prediction; runs share the cores,
    /// so this is noisy).
    pub events_per_sec: f64,
    /// Wall time of the run, in seconds (measured).
    pub wall_seconds: f64,
}

impl RunResult {
    /// The MSE relative to the naive forecast's (below 1: better than naive).
    pub fn rel_naive(&self) -> f64 {
        ratio(self.mse, self.naive_mse)
    }

    /// The MSE relative to the seasonal-naive forecast's, when a season was given.
    pub fn rel_seasonal(&self) -> Option<f64> {
        self.seasonal_mse.map(|s| ratio(self.mse, s))
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::INFINITY
    }
}

/// Multiply-adds of one step forward and backward through a model (two products per weight
/// matrix backward: the gradient of the weights and of the input).
pub fn madds_per_step(c: &ModelConfig) -> f64 {
    let g = c.gate_rows() as f64;
    let h = c.d_hidden as f64;
    let mut m = 0.0;
    for l in 0..c.layers {
        let d_in = if l == 0 { c.d_input } else { c.d_hidden } as f64;
        m += g * (d_in + h);
    }
    m += c.d_output as f64 * h;
    3.0 * m
}

/// Bytes (f32) of the training buffers of a model with a window of `t` steps: the ring of
/// `t` pairs with their start states, the window's inputs, targets, outputs, activations and
/// gradients (as [`Window`] allocates them), and the weights with their gradient and two
/// optimizer moments.
pub fn buffer_bytes(c: &ModelConfig, t: usize) -> u64 {
    let (t, h) = (t as u64, c.d_hidden as u64);
    let (di, dout, s) = (c.d_input as u64, c.d_output as u64, c.state_len() as u64);
    let g = c.gate_rows() as u64;
    let ring = t * (di + dout + s);
    let mut window = t * (di + 3 * dout + h);
    for l in 0..c.layers as u64 {
        let d_in = if l == 0 { di } else { h };
        let act = match c.cell {
            CellKind::Elman => 0,
            CellKind::Gru => 4 * h,
            CellKind::Lstm => 5 * h,
        };
        let cs = if c.cell.has_cell_state() { h } else { 0 };
        let dah = if c.cell == CellKind::Gru { g } else { 0 };
        // The transposed `W_hh` (and `W_ih` above the first layer) of the backward pass.
        let transposed = g * h + if l > 0 { g * d_in } else { 0 };
        window += (t + 1) * (h + cs) + t * (g + act + g + dah + d_in) + 2 * h + g + transposed;
    }
    let params = 4 * c.n_params() as u64;
    4 * (ring + window + params)
}

/// The absolute errors of a run's events with a forecast, in order (the pipeline's
/// [`ErrorTrail`] holds the squared ones); the MAE is taken over the trail's last-20% window
/// at the end.
#[derive(Clone, Debug, Default)]
struct Scorer {
    ae: Vec<f64>,
}

impl Scorer {
    fn new(events: usize) -> Self {
        Scorer {
            ae: Vec::with_capacity(events),
        }
    }

    /// The events the pipeline's trail counts: every one after the first (the first has no
    /// forecast, or, with explicit targets, no naive forecast).
    fn push(&mut self, r: &OutputRecord) {
        if r.index == 0 || r.residual.is_empty() {
            return;
        }
        let k = r.residual.len() as f64;
        self.ae
            .push(r.residual.iter().map(|x| x.abs()).sum::<f64>() / k);
    }

    /// The mean absolute error of the newest `last` events.
    fn mae(&self, last: u64) -> f64 {
        let from = self
            .ae
            .len()
            .saturating_sub(usize::try_from(last).unwrap_or(usize::MAX));
        let tail = &self.ae[from..];
        if tail.is_empty() {
            0.0
        } else {
            tail.iter().sum::<f64>() / tail.len() as f64
        }
    }
}

/// How many events of an `events`-event log the last-20% figures cover: the window of
/// [`ErrorTrail::last20`] (replay's summary) over the `events - 1` events with a forecast.
/// Exactly `max((events - 1) / 5, 1)` from 2 up to 2,049 events; past that, rounded up to the
/// trail's blocks.
///
/// ```
/// assert_eq!(tbptt::tools::sweep::scored_events(100), 19);
/// // 4,031 forecasts: a fifth is 806, in blocks of 2 (and a last block of 1): 807.
/// assert_eq!(tbptt::tools::sweep::scored_events(4032), 807);
/// ```
pub fn scored_events(events: usize) -> u64 {
    let mut t = ErrorTrail::default();
    for _ in 1..events {
        t.push(0.0, 0.0);
    }
    t.last20_events()
}

/// The naive and seasonal-naive forecasts' errors over the events [`evaluate`] scores: the
/// last-20% window of [`scored_events`] (and, for `naive_mse_all`, every event after the
/// first). The naive forecast of an event is the previous event's values (targets, with
/// explicit targets); the seasonal-naive one is the values `season` events earlier (events
/// without one are left out of the seasonal figures). The naive MSEs are those of replay's
/// summary: summed in the same [`ErrorTrail`].
pub fn baselines(events: &[Event], season: Option<usize>) -> Baselines {
    let explicit = events.first().is_some_and(|e| !e.targets.is_empty());
    fn pick(e: &Event, explicit: bool) -> &[f64] {
        if explicit {
            &e.targets
        } else {
            &e.values
        }
    }
    let actual = |e| pick(e, explicit);
    let mut trail = ErrorTrail::default();
    let mut naive = Vec::with_capacity(events.len());
    for i in 1..events.len() {
        let (a, p) = (actual(&events[i]), actual(&events[i - 1]));
        let k = a.len() as f64;
        let (mut se, mut ae) = (0.0, 0.0);
        for (x, y) in a.iter().zip(p) {
            let d = x - y;
            se += d * d;
            ae += d.abs();
        }
        trail.push(0.0, se / k);
        naive.push(ae / k);
    }
    let last = usize::try_from(trail.last20_events()).unwrap_or(usize::MAX);
    let from = events.len().saturating_sub(last).max(1);
    let mut b = Baselines {
        naive_mse: trail.last20().1,
        naive_mae: 0.0,
        seasonal_mse: None,
        seasonal_mae: None,
        naive_mse_all: trail.all().1,
    };
    let tail = &naive[from - 1..];
    if !tail.is_empty() {
        b.naive_mae = tail.iter().sum::<f64>() / tail.len() as f64;
    }
    let (mut sn, mut sse, mut sae) = (0u64, 0.0, 0.0);
    if let Some(s) = season.filter(|&s| s > 0) {
        for i in from.max(s)..events.len() {
            let (a, q) = (actual(&events[i]), actual(&events[i - s]));
            if q.len() != a.len() || a.is_empty() {
                continue;
            }
            let k = a.len() as f64;
            sse += a.iter().zip(q).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / k;
            sae += a.iter().zip(q).map(|(x, y)| (x - y).abs()).sum::<f64>() / k;
            sn += 1;
        }
        if sn > 0 {
            b.seasonal_mse = Some(sse / sn as f64);
            b.seasonal_mae = Some(sae / sn as f64);
        }
    }
    b
}

/// The settings of one run: `base` with the spec's cell, `H`, `T` and `k`, inline. A fixed
/// `T` clears `base`'s adaptive truncation; [`TAxis::Auto`] applies it (the defaults when
/// unset), with buffers for its `max`. For
/// [`TAxis::Full`] the learner's own window is one longer than the log, so it never
/// trains by itself (the full-BPTT update is made from outside).
pub fn run_config(base: &PipelineConfig, spec: &RunSpec, n_events: usize) -> PipelineConfig {
    let mut c = base.clone();
    c.background = false;
    c.learner.cell = spec.cell;
    c.learner.d_hidden = spec.hidden;
    c.learner.trainer.every = spec.every;
    match spec.window {
        TAxis::Fixed(t) => c.learner.trainer.truncation = Truncation::Fixed(t),
        TAxis::Auto => {
            let a = base.learner.trainer.auto_truncation().cloned();
            let a = a.unwrap_or_default();
            c.learner.trainer.truncation = Truncation::Auto(a);
        }
        TAxis::Full => {
            c.learner.trainer.truncation = Truncation::Fixed(n_events.max(spec.every) + 1);
        }
    }
    c
}

/// Checks the adaptive-truncation settings of every [`TAxis::Auto`] run of `specs` (as
/// [`run_config`] applies them to `base`) against its `k` and loss steps, before anything
/// runs.
///
/// # Errors
/// [`Error::Config`] naming the field (`t_min`, `t_max`, `t_tolerance`, `t_history`,
/// `loss_steps`).
pub fn check_auto(base: &PipelineConfig, specs: &[RunSpec]) -> Result<()> {
    for s in specs.iter().filter(|s| s.window == TAxis::Auto) {
        let c = run_config(base, s, 0).learner;
        // The settings first, so that an error names the auto flag rather than the window
        // sized from it; then everything else the trainer checks.
        if let (Some(a), false) = (
            c.trainer.auto_truncation(),
            c.trainer.loss_steps == crate::LossSteps::All,
        ) {
            a.validate(
                c.trainer.every,
                c.trainer.loss_steps.resolve(a.max, c.trainer.every),
            )?;
        }
        c.trainer.validate()?;
    }
    Ok(())
}

/// The full-BPTT update of a [`TAxis::Full`] run: buffers for the whole log, the
/// optimizer and clipping of the base settings.
struct FullBptt {
    window: Window<f32>,
    optimizer: Optimizer<f32>,
    start: Vec<f32>,
    clip: Option<f64>,
    loss: crate::Loss,
    loss_steps: crate::LossSteps,
    every: usize,
    steps: u64,
}

impl FullBptt {
    fn new(pipeline: &Pipeline, n_events: usize) -> Result<Self> {
        let l = pipeline
            .learner()
            .ok_or_else(|| Error::config("sweep", "full BPTT before the first event"))?;
        let mc = *l.model().config();
        let lc = l.config();
        Ok(FullBptt {
            window: Window::new(&mc, n_events.max(1))?,
            optimizer: Optimizer::new(lc.trainer.optimizer.clone(), mc.n_params())?,
            start: vec![0.0; mc.state_len()],
            clip: lc.trainer.clip,
            loss: lc.trainer.loss,
            loss_steps: lc.trainer.loss_steps,
            every: lc.trainer.every,
            steps: 0,
        })
    }

    /// After an event: when `k` events have passed and `k` pairs are held, one update through
    /// every pair held (the whole history). Returns whether one was applied.
    fn after_event(&mut self, pipeline: &mut Pipeline) -> Result<bool> {
        let Some(l) = pipeline.learner() else {
            return Ok(false);
        };
        let ring = l.ring();
        let n = ring.len();
        if l.events() % self.every as u64 != 0 || n < self.every {
            return Ok(false);
        }
        let (xs, ys) = self.window.io_mut();
        self.start.copy_from_slice(ring.copy_newest_to(n, xs, ys));
        let ls = self.loss_steps.resolve(n, self.every).min(n);
        let loss = self
            .window
            .forward_backward(l.model(), &self.start, n, self.loss, ls)?;
        self.steps += n as u64;
        let grads = self.window.grads_mut();
        let norm = match self.clip {
            Some(c) => clip_grad_norm(grads, c as f32),
            None => grad_norm(grads),
        };
        if !(loss.is_finite() && norm.is_finite()) {
            return Ok(false);
        }
        let Some(l) = pipeline.learner_mut() else {
            return Ok(false);
        };
        self.optimizer.step(l.model_mut().params_mut(), grads)?;
        Ok(true)
    }
}

/// Runs one configuration over `events`, inline and deterministic, and scores it: see
/// [`RunResult`]. `season` adds the seasonal-naive baseline.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration (e.g. a full-BPTT run whose buffers would
/// exceed the learner's limit), [`Error::Shape`] for an event whose arity differs from the
/// first one's.
pub fn evaluate(
    events: &[Event],
    base: &PipelineConfig,
    spec: &RunSpec,
    season: Option<usize>,
) -> Result<RunResult> {
    evaluate_traced(events, base, spec, season, None)
}

/// [`evaluate`], also filling `trace` with the forecasts and anomaly scores (for plots).
///
/// # Errors
/// As [`evaluate`].
pub fn evaluate_traced(
    events: &[Event],
    base: &PipelineConfig,
    spec: &RunSpec,
    season: Option<usize>,
    mut trace: Option<&mut ForecastTrace>,
) -> Result<RunResult> {
    let n = events.len();
    let config = run_config(base, spec, n);
    let mut pipeline = Pipeline::new(config)?;
    let explicit = events.first().is_some_and(|e| !e.targets.is_empty());
    let mut scorer = Scorer::new(n);
    let mut full: Option<FullBptt> = None;
    let mut full_updates = 0u64;
    let started = Instant::now();
    for (i, ev) in events.iter().enumerate() {
        let rec = pipeline.process(ev).map_err(|e| match e {
            Error::Shape { expected, got, .. } => Error::Shape {
                op: "sweep: event",
                expected,
                got: format!("{got} at event {i}"),
            },
            e => e,
        })?;
        scorer.push(rec);
        if let Some(t) = trace.as_deref_mut() {
            let actual = if explicit { &ev.targets } else { &ev.values };
            t.push(rec, actual);
        }
        if spec.window == TAxis::Full {
            if full.is_none() {
                full = Some(FullBptt::new(&pipeline, n)?);
            }
            if let Some(f) = full.as_mut() {
                full_updates += u64::from(f.after_event(&mut pipeline)?);
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    // The pipeline's own trail: the figures of replay's summary, over the same window.
    let trail = pipeline.trail().clone();
    if trail.events() != scorer.ae.len() as u64 {
        return Err(Error::config(
            "sweep",
            format!(
                "scored {} events but the pipeline's trail holds {}",
                scorer.ae.len(),
                trail.events()
            ),
        ));
    }
    let (mse, naive_mse) = trail.last20();
    let (mse_all, naive_mse_all) = trail.all();
    let scored = trail.last20_events();
    let mae = scorer.mae(scored);
    let b = baselines(events, season);
    let learner = pipeline.learner();
    let mc = match learner {
        Some(l) => *l.model().config(),
        None => {
            return Err(Error::config("sweep", "the log has no event"));
        }
    };
    let report = learner.map(|l| l.truncation());
    let (updates, steps_per_update, buffer_t) = match (spec.window, &full) {
        (TAxis::Fixed(t), _) => (learner.map_or(0, |l| l.updates()), t as f64, t),
        (TAxis::Auto, _) => {
            let r = report.unwrap_or_else(|| TruncationReport::fixed(0, 0));
            // Before the first update the report's mean is the starting T; no work was done.
            let mean = if r.updates > 0 { r.mean } else { 0.0 };
            (
                learner.map_or(0, |l| l.updates()),
                mean,
                mc_auto_max(&pipeline),
            )
        }
        (TAxis::Full, Some(f)) => {
            let per = if full_updates > 0 {
                f.steps as f64 / full_updates as f64
            } else {
                0.0
            };
            (full_updates, per, n)
        }
        (TAxis::Full, None) => (0, 0.0, n),
    };
    let madds_per_update = steps_per_update * madds_per_step(&mc);
    Ok(RunResult {
        spec: *spec,
        events: n as u64,
        scored,
        mse,
        mae,
        naive_mse,
        naive_mae: b.naive_mae,
        seasonal_mse: b.seasonal_mse,
        seasonal_mae: b.seasonal_mae,
        mse_all,
        naive_mse_all,
        updates,
        truncation: report.filter(|r| r.adaptive),
        steps_per_update,
        madds_per_update,
        madds_per_event: if n > 0 {
            madds_per_update * updates as f64 / n as f64
        } else {
            0.0
        },
        buffer_bytes: buffer_bytes(&mc, buffer_t),
        events_per_sec: if wall > 0.0 { n as f64 / wall } else { 0.0 },
        wall_seconds: wall,
    })
}

/// The largest `T` of a pipeline's adaptive learner (its buffers' length).
fn mc_auto_max(pipeline: &Pipeline) -> usize {
    pipeline
        .learner()
        .map_or(0, |l| match &l.config().trainer.auto_truncation() {
            Some(a) => a.max,
            None => l.config().max_window(),
        })
}

/// The default `full_max` of [`run_grid`] (`tbptt sweep --full-max`): full BPTT runs on
/// at most the first 1,000 events. With `k = 1` its work is about `n²/2` steps: 500,000
/// for 1,000 events, as much as `T = 25` over 20,000, where the whole of a 20,000-event log
/// would be 200 million.
pub const DEFAULT_FULL_MAX: usize = 1_000;

/// Events a run sees: the whole log, or for [`TAxis::Full`] at most the first `full_max`.
pub fn run_events(spec: &RunSpec, events: usize, full_max: usize) -> usize {
    match spec.window {
        TAxis::Full => events.min(full_max.max(1)),
        TAxis::Fixed(_) | TAxis::Auto => events,
    }
}

/// Per-event work outside the model's matrix products (decoding, normalization, the anomaly
/// score, the ring), in multiply-add equivalents, and an update's fixed work (the optimizer
/// step over every weight, clipping, copying the window) in steps: fitted to the run times
/// of the default grid on a 20,000-event log (the estimate was then within about 27%, one
/// standard deviation, of each run's measured time).
const OVERHEAD_MADDS_PER_EVENT: f64 = 10_000.0;
const OVERHEAD_STEPS_PER_UPDATE: f64 = 3.0;

/// An estimate of a run's work before it runs, in multiply-adds, to order the runs and to
/// drive the progress bar's estimate of the time left: the events it sees
/// ([`run_events`]) times one forward step (the forecast) plus the steps its updates
/// backpropagate through per event, at [`madds_per_step`] (`T/k`; for `auto`, the middle of
/// its range over `k`; for full BPTT, half the run's length over `k`), plus a fixed work per
/// event and per update.
pub fn estimated_madds(
    events: &[Event],
    base: &PipelineConfig,
    spec: &RunSpec,
    full_max: usize,
) -> f64 {
    let d_input = events.first().map_or(1, |e| e.values.len().max(1));
    let d_output = events.first().map_or(d_input, |e| {
        if e.targets.is_empty() {
            d_input
        } else {
            e.targets.len()
        }
    });
    let mc = ModelConfig {
        cell: spec.cell,
        d_input,
        d_hidden: spec.hidden,
        layers: base.learner.layers.max(1),
        d_output,
    };
    let n = run_events(spec, events.len(), full_max) as f64;
    let k = spec.every.max(1) as f64;
    let steps = match spec.window {
        TAxis::Fixed(t) => t as f64 / k,
        TAxis::Auto => {
            let a = base.learner.trainer.auto_truncation().cloned();
            let a = a.unwrap_or_default();
            (a.min + a.max) as f64 / 2.0 / k
        }
        TAxis::Full => n / 2.0 / k,
    };
    let per_step = madds_per_step(&mc);
    let per_event = per_step / 3.0 + (steps + OVERHEAD_STEPS_PER_UPDATE / k) * per_step;
    n * (per_event + OVERHEAD_MADDS_PER_EVENT)
}

/// Runs every spec over `events` on `threads` threads (at least 1), the cheapest first (by
/// [`estimated_madds`]), so that results arrive early and the time left can be estimated
/// from those done; full-BPTT runs see only the first `full_max` events ([`run_events`]).
/// `done` is called after each run (for a progress bar). Results come back in the order of
/// `specs`. Each run is deterministic, so the errors do not depend on the thread count; the
/// timings do.
///
/// # Errors
/// The first run's error, in spec order.
pub fn run_grid(
    events: &[Event],
    base: &PipelineConfig,
    specs: &[RunSpec],
    season: Option<usize>,
    full_max: usize,
    threads: usize,
    done: &(dyn Fn(&RunSpec) + Sync),
) -> Result<Vec<RunResult>> {
    let mut order: Vec<usize> = (0..specs.len()).collect();
    let work: Vec<f64> = specs
        .iter()
        .map(|s| estimated_madds(events, base, s, full_max))
        .collect();
    order.sort_by(|&a, &b| work[a].total_cmp(&work[b]));
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Result<RunResult>>>> =
        Mutex::new((0..specs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(specs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&j) = order.get(i) else { break };
                let n = run_events(&specs[j], events.len(), full_max);
                let r = evaluate(&events[..n], base, &specs[j], season);
                done(&specs[j]);
                if let Ok(mut s) = slots.lock() {
                    s[j] = Some(r);
                }
            });
        }
    });
    let slots = slots
        .into_inner()
        .map_err(|_| Error::config("sweep", "a run panicked"))?;
    slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| Err(Error::config("sweep", "a run did not finish"))))
        .collect()
}

/// The sweep's choice.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Index of the run with the lowest MSE among those that saw the whole log (a full-BPTT
    /// run, the reference, when it saw the whole log and did best).
    pub best: usize,
    /// Index of the truncated run (fixed `T` or `auto`, what `tbptt replay` runs) with the
    /// lowest MSE.
    pub best_truncated: usize,
    /// Index of the recommended run: the cheapest truncated run whose MSE is at most
    /// `(1 + tolerance)` times the best truncated run's.
    pub chosen: usize,
    /// The tolerance used, as a fraction (0.05 = 5%).
    pub tolerance: f64,
    /// Whether the best truncated run's MSE is above the naive forecast's: then every
    /// configuration the sweep can recommend forecasts worse than repeating the last value.
    pub worse_than_naive: bool,
}

/// The cheapest truncated run (fewest multiply-adds per event, then fewest buffer bytes,
/// then grid order) whose MSE is within `tolerance` (a fraction) of the lowest truncated
/// run's. Full BPTT ([`TAxis::Full`]) is never chosen: `tbptt replay` cannot run it (see
/// there why). Runs that saw only part of the log (full BPTT past `full_max`) are scored on
/// other events and are left out of `best` too. `None` when no truncated run has a finite
/// error.
pub fn recommend(results: &[RunResult], tolerance: f64) -> Option<Recommendation> {
    let whole = results.iter().map(|r| r.events).max()?;
    let finite = |r: &RunResult| r.mse.is_finite() && r.scored > 0 && r.events == whole;
    let truncated = |r: &RunResult| finite(r) && r.spec.window != TAxis::Full;
    let lowest = |keep: &dyn Fn(&RunResult) -> bool| {
        results
            .iter()
            .enumerate()
            .filter(|(_, r)| keep(r))
            .min_by(|a, b| a.1.mse.total_cmp(&b.1.mse))
            .map(|(i, _)| i)
    };
    let best_truncated = lowest(&truncated)?;
    let best = lowest(&finite)?;
    let limit = results[best_truncated].mse * (1.0 + tolerance.max(0.0));
    let chosen = results
        .iter()
        .enumerate()
        .filter(|(_, r)| truncated(r) && r.mse <= limit)
        .min_by(|a, b| {
            a.1.madds_per_event
                .total_cmp(&b.1.madds_per_event)
                .then(a.1.buffer_bytes.cmp(&b.1.buffer_bytes))
        })?
        .0;
    let b = &results[best_truncated];
    Some(Recommendation {
        best,
        best_truncated,
        chosen,
        tolerance,
        worse_than_naive: b.mse > b.naive_mse,
    })
}

/// A log read into memory.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The accepted events, in order.
    pub events: Vec<Event>,
    /// Records rejected (malformed, NaN, missing values with `skip`, ...), each logged.
    pub rejected: u64,
}

/// Reads every event of a file (or any finite source) with the same decoders and checks as
/// `tbptt replay`; rejected records are logged (the first 20) and counted, or stop the read
/// with `strict`.
///
/// # Errors
/// [`LoadError`]: the file cannot be opened or read, the decoder configuration is unusable,
/// or, with `strict` (and for fatal errors such as a column selection that does not fit), the
/// first bad record, naming its position.
pub fn read_events(config: SourceConfig, strict: bool) -> std::result::Result<Loaded, LoadError> {
    let (name, input): (String, Box<dyn std::io::Read>) = match &config.spec {
        SourceSpec::File(path) => {
            let open = |source| LoadError::Open {
                path: path.clone(),
                source,
            };
            let file = std::fs::File::open(path).map_err(open)?;
            if file.metadata().map_err(open)?.is_dir() {
                return Err(open(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "is a directory",
                )));
            }
            (format!("file {}", path.display()), Box::new(file))
        }
        SourceSpec::Stdin => ("stdin".to_string(), Box::new(std::io::stdin().lock())),
        other => return Err(LoadError::NotAFile(other.to_string())),
    };
    let mut reader = Reader::new(input, &config.decoder)?;
    let mut loaded = Loaded::default();
    let mut event = Event::new();
    loop {
        match reader.read_event(&mut event) {
            Ok(true) => loaded.events.push(std::mem::take(&mut event)),
            Ok(false) => return Ok(loaded),
            Err(ReadError::Parse(error)) => {
                // The parse error names its own line or byte; prefix only the source's name.
                let at = if error.position().is_some() {
                    name.clone()
                } else {
                    format!("{name}, {}", reader.position())
                };
                if strict || error.is_fatal() {
                    return Err(LoadError::Rejected { at, error });
                }
                loaded.rejected += 1;
                if loaded.rejected <= 20 {
                    tracing::warn!("{at}: {error}; skipped");
                }
            }
            Err(ReadError::Io(source)) => return Err(LoadError::Read { name, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_axis_parses_numbers_auto_and_full() {
        assert_eq!("16".parse::<TAxis>().unwrap(), TAxis::Fixed(16));
        assert_eq!("full".parse::<TAxis>().unwrap(), TAxis::Full);
        assert!("0".parse::<TAxis>().is_err());
        assert_eq!("auto".parse::<TAxis>().unwrap(), TAxis::Auto);
        assert_eq!(TAxis::Auto.to_string(), "auto");
        assert!("auto2".parse::<TAxis>().is_err());
        assert_eq!(TAxis::Full.to_string(), "full");
    }

    #[test]
    fn grid_leaves_out_k_above_t() {
        let g = Grid {
            windows: vec![TAxis::Fixed(4), TAxis::Full],
            every: vec![1, 8],
            cells: vec![CellKind::Gru],
            hidden: vec![4],
        };
        let s = g.specs();
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|s| s.window.admits(s.every)));
    }

    /// Naive errors by hand: values 0, 1, 3, 6, ..., 45 (differences 1, 2, ..., 9); 10
    /// events, 9 with a forecast, the last 20% of them (1) is the last: naive error 9,
    /// squared 81. With season 2: 45 − 28 = 17, squared 289.
    #[test]
    fn baselines_by_hand() {
        let ev: Vec<Event> = (0..10)
            .map(|i| Event {
                values: vec![(i * (i + 1) / 2) as f64],
                ..Default::default()
            })
            .collect();
        let b = baselines(&ev, Some(2));
        assert_eq!((b.naive_mse, b.naive_mae), (81.0, 9.0));
        assert_eq!((b.seasonal_mse, b.seasonal_mae), (Some(289.0), Some(17.0)));
        assert_eq!(scored_events(10), 1);
        // Over all 9: (1 + 4 + ... + 81) / 9 = 285 / 9.
        assert!((b.naive_mse_all - 285.0 / 9.0).abs() < 1e-12);
    }

    /// The window is the trail's: exactly a fifth of the events with a forecast up to 2,048
    /// of them; past that whole blocks of 2, so 4,033 forecasts (an odd number: a last block
    /// of 1) are scored on 807 events, not 806 (as a plain count would have it).
    #[test]
    fn scored_window_is_the_trails() {
        assert_eq!(scored_events(0), 0);
        assert_eq!(scored_events(1), 0);
        assert_eq!(scored_events(2), 1);
        assert_eq!(scored_events(2049), 409);
        assert_eq!(scored_events(4033), 806);
        assert_eq!(scored_events(4034), 807);
        for n in [3usize, 100, 2048, 2050, 4097, 10_001] {
            let mut t = ErrorTrail::default();
            for i in 1..n {
                t.push(i as f64, 0.0);
            }
            assert_eq!(scored_events(n), t.last20_events(), "{n}");
            let c = t.last20_events() as f64;
            // The trail's last-20% mean of 1..n-1 is the mean of its last `c` values.
            let want = (n as f64 - 1.0) - (c - 1.0) / 2.0;
            assert!((t.last20().0 - want).abs() < 1e-9 * want, "{n}");
            assert!((t.all().0 - n as f64 / 2.0).abs() < 1e-9 * n as f64, "{n}");
        }
    }

    #[test]
    fn full_bptt_run_trains_and_costs_grow_with_the_log() {
        let ev: Vec<Event> = (0..1000)
            .map(|t| Event {
                values: vec![(t as f64 * 0.4).sin()],
                ..Default::default()
            })
            .collect();
        let base = PipelineConfig::default();
        let spec = |w| RunSpec {
            window: w,
            every: 4,
            cell: CellKind::Gru,
            hidden: 8,
        };
        let full = evaluate(&ev, &base, &spec(TAxis::Full), None).unwrap();
        let t8 = evaluate(&ev, &base, &spec(TAxis::Fixed(8)), None).unwrap();
        // Updates at events 8, 12, ..., 1000 (k = 4 pairs needed), through 7, 11, ..., 999
        // pairs: 249 updates, mean 503.
        assert_eq!(full.updates, 249);
        assert!(
            (full.steps_per_update - 503.0).abs() < 1e-9,
            "{}",
            full.steps_per_update
        );
        assert!(full.madds_per_event > 10.0 * t8.madds_per_event);
        assert!(full.buffer_bytes > 10 * t8.buffer_bytes);
        assert!(
            full.mse < full.naive_mse,
            "{} vs {}",
            full.mse,
            full.naive_mse
        );
    }

    /// An auto run: its cost from the mean `T` used, its memory at `max`, its report; the
    /// settings come from the base configuration and are checked before a run.
    #[test]
    fn auto_run_reports_the_t_it_used() {
        use crate::train::truncation::AutoTruncation;
        let ev: Vec<Event> = (0..1000)
            .map(|t| Event {
                values: vec![(t as f64 * 0.4).sin()],
                ..Default::default()
            })
            .collect();
        let mut base = PipelineConfig::default();
        base.learner.trainer.truncation = Truncation::Auto(AutoTruncation {
            min: 8,
            max: 32,
            ..Default::default()
        });
        let spec = |w| RunSpec {
            window: w,
            every: 4,
            cell: CellKind::Gru,
            hidden: 8,
        };
        assert!(run_config(&base, &spec(TAxis::Fixed(8)), 1000)
            .learner
            .trainer
            .auto_truncation()
            .is_none());
        let r = evaluate(&ev, &base, &spec(TAxis::Auto), None).unwrap();
        let t = r.truncation.expect("auto runs carry the report");
        assert!(
            t.adaptive && 8 <= t.min && t.min <= t.max && t.max <= 32,
            "{t:?}"
        );
        assert!(t.updates > 200, "{t:?}");
        assert_eq!(r.steps_per_update, t.mean);
        let fixed = evaluate(&ev, &base, &spec(TAxis::Fixed(8)), None).unwrap();
        assert!(fixed.truncation.is_none());
        let per_step = fixed.madds_per_update / 8.0;
        assert!((r.madds_per_update - t.mean * per_step).abs() < 1e-6 * r.madds_per_update);
        let t32 = evaluate(&ev, &base, &spec(TAxis::Fixed(32)), None).unwrap();
        assert_eq!(r.buffer_bytes, t32.buffer_bytes);
        check_auto(&base, &[spec(TAxis::Auto)]).unwrap();
        base.learner.trainer.truncation = Truncation::Auto(AutoTruncation {
            min: 5,
            ..Default::default()
        });
        match check_auto(&base, &[spec(TAxis::Fixed(8)), spec(TAxis::Auto)]) {
            Err(Error::Config { field, .. }) => assert_eq!(field, "t_min"),
            other => panic!("{other:?}"),
        }
        assert!(check_auto(&base, &[spec(TAxis::Fixed(8))]).is_ok());
    }

    /// The grid runs cheapest first (one thread: `done` sees them in that order), results
    /// come back in grid order, and full BPTT sees only the first `full_max` events.
    #[test]
    fn run_grid_goes_cheapest_first_and_caps_full() {
        let ev: Vec<Event> = (0..300)
            .map(|t| Event {
                values: vec![(t as f64 * 0.4).sin()],
                ..Default::default()
            })
            .collect();
        let base = PipelineConfig::default();
        let grid = Grid {
            windows: vec![TAxis::Fixed(16), TAxis::Full, TAxis::Fixed(4)],
            every: vec![1, 4],
            cells: vec![CellKind::Lstm, CellKind::Gru],
            hidden: vec![8, 4],
        };
        let specs = grid.specs();
        let seen = Mutex::new(Vec::new());
        let results = run_grid(&ev, &base, &specs, None, 100, 1, &|s| {
            seen.lock().unwrap().push(*s)
        })
        .unwrap();
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), specs.len());
        let work: Vec<f64> = seen
            .iter()
            .map(|s| estimated_madds(&ev, &base, s, 100))
            .collect();
        assert!(work.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_ne!(seen, specs, "grid order is not cheapest first here");
        for (r, s) in results.iter().zip(&specs) {
            assert_eq!(r.spec, *s);
            let n = if s.window == TAxis::Full { 100 } else { 300 };
            assert_eq!(r.events, n);
            assert_eq!(r.scored, scored_events(n as usize));
        }
        // A larger model, a longer window, a shorter period, more events: more work.
        let spec = |window, every, cell, hidden| RunSpec {
            window,
            every,
            cell,
            hidden,
        };
        let w = |s: RunSpec| estimated_madds(&ev, &base, &s, 100);
        let g = CellKind::Gru;
        assert!(w(spec(TAxis::Fixed(8), 1, g, 8)) > w(spec(TAxis::Fixed(4), 1, g, 8)));
        assert!(w(spec(TAxis::Fixed(8), 1, g, 8)) > w(spec(TAxis::Fixed(8), 4, g, 8)));
        assert!(w(spec(TAxis::Fixed(8), 1, CellKind::Lstm, 8)) > w(spec(TAxis::Fixed(8), 1, g, 8)));
        assert!(
            estimated_madds(&ev, &base, &spec(TAxis::Full, 1, g, 8), 300)
                > w(spec(TAxis::Full, 1, g, 8))
        );
    }

    #[test]
    fn recommend_picks_the_cheapest_within_tolerance() {
        let r = |mse: f64, cost: f64| RunResult {
            spec: RunSpec {
                window: TAxis::Fixed(8),
                every: 1,
                cell: CellKind::Gru,
                hidden: 4,
            },
            events: 10,
            scored: 2,
            mse,
            mae: 0.0,
            naive_mse: 1.0,
            naive_mae: 1.0,
            seasonal_mse: None,
            seasonal_mae: None,
            mse_all: mse,
            naive_mse_all: 1.0,
            updates: 1,
            truncation: None,
            steps_per_update: 1.0,
            madds_per_update: cost,
            madds_per_event: cost,
            buffer_bytes: 0,
            events_per_sec: 0.0,
            wall_seconds: 0.0,
        };
        let v = [r(1.0, 10.0), r(1.04, 5.0), r(1.2, 1.0), r(f64::NAN, 0.0)];
        let rec = recommend(&v, 0.05).unwrap();
        assert_eq!((rec.best, rec.chosen), (0, 1));
        assert!(!rec.worse_than_naive);
        assert_eq!(recommend(&v, 0.0).unwrap().chosen, 0);
        assert_eq!(recommend(&v, 0.5).unwrap().chosen, 2);
        // Full BPTT is the best but never chosen, and the tolerance is against the best
        // truncated run; a full run that saw only a prefix is not even the best.
        let mut full = r(0.5, 0.5);
        full.spec.window = TAxis::Full;
        let v = [r(1.0, 10.0), r(1.04, 5.0), full.clone()];
        let rec = recommend(&v, 0.05).unwrap();
        assert_eq!((rec.best, rec.best_truncated, rec.chosen), (2, 0, 1));
        full.events = 5;
        let v = [r(1.0, 10.0), r(1.04, 5.0), full.clone()];
        assert_eq!(recommend(&v, 0.05).unwrap().best, 0);
        assert!(recommend(&[full], 0.05).is_none());
        // Worse than naive (naive MSE 1.0 in `r`).
        let rec = recommend(&[r(1.3, 1.0), r(1.2, 10.0)], 0.05).unwrap();
        assert!(rec.worse_than_naive);
        assert_eq!(rec.chosen, 1);
    }
}
