//! TBPTT(k1, k2) updates (Williams & Peng's BPTT(h, h′)) and full BPTT for comparison.
//!
//! Every `k1 = k` events, one update: forward over the newest `k2 = T` pairs of the ring from
//! the live state saved before the first of them, with the current weights; loss = mean over
//! the newest `L` steps' errors (`L = k` by default, so every target counts once); backward
//! through all `T` steps; clip by global norm; one optimizer step.
//!
//! **NaN guard.** An update whose loss or gradient norm is not finite is rejected before the
//! optimizer step: weights and optimizer state stay unchanged, the rejection is counted
//! ([`Trainer::rejected`]) and logged (the first 10, then one line per 1000), and the next
//! window is trained as usual. Finite but exploding gradients are bounded by clipping.

use crate::nn::loss::Loss;
use crate::nn::model::{Model, ModelConfig, Window};
use crate::nn::optim::{clip_grad_norm, grad_norm, Optimizer, OptimizerConfig};
use crate::train::ring::Ring;
use crate::train::truncation::{
    Adaptive, AutoTruncation, Truncation, TruncationReport, TruncationState,
};
use crate::{Error, Float, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How many of a window's newest steps the loss counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossSteps {
    /// The newest `k` steps: each target is counted exactly once over the stream (default).
    #[default]
    Every,
    /// All `T` steps of the window.
    All,
    /// The newest `n` steps (`1 <= n <= T`).
    Last(usize),
}

impl LossSteps {
    /// The number of steps for a window of `t` steps updated every `k` events.
    pub fn resolve(self, t: usize, k: usize) -> usize {
        match self {
            LossSteps::Every => k,
            LossSteps::All => t,
            LossSteps::Last(n) => n,
        }
    }
}

impl FromStr for LossSteps {
    type Err = Error;

    /// `k` (or `every`), `all` (or `T`), or a number of steps.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "k" | "every" => Ok(LossSteps::Every),
            "all" | "T" => Ok(LossSteps::All),
            n => n.parse::<usize>().map(LossSteps::Last).map_err(|_| {
                Error::config(
                    "loss_steps",
                    format!("expected k, all or a number, got {s:?}"),
                )
            }),
        }
    }
}

impl fmt::Display for LossSteps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossSteps::Every => f.write_str("k"),
            LossSteps::All => f.write_str("all"),
            LossSteps::Last(n) => write!(f, "{n}"),
        }
    }
}

/// Settings of the training side.
///
/// # Example
/// ```
/// use tbptt::{Truncation, TrainerConfig};
/// let c = TrainerConfig { truncation: Truncation::Fixed(16), every: 4, ..Default::default() };
/// assert_eq!((c.max_window(), c.every), (16, 4));
/// c.validate()?;
/// # Ok::<(), tbptt::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TrainerConfigRepr", into = "TrainerConfigRepr")]
pub struct TrainerConfig {
    /// How the window length `T = k2` (steps of backpropagation per update) is chosen: fixed,
    /// or adapted online between bounds ([`crate::train::truncation`]); buffers are sized for
    /// the largest. Default: fixed, 32.
    pub truncation: Truncation,
    /// Update period `k = k1`, in events (`1 <= k <= T`). Default: 8.
    pub every: usize,
    /// How many newest steps the loss counts. Default: `k`.
    pub loss_steps: LossSteps,
    /// The loss. Default: MSE.
    pub loss: Loss,
    /// The optimizer. Default: Adam, learning rate 3e-3.
    pub optimizer: OptimizerConfig,
    /// Largest global gradient norm; `None` disables clipping. Default: 1.0.
    pub clip: Option<f64>,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            truncation: Truncation::Fixed(32),
            every: 8,
            loss_steps: LossSteps::Every,
            loss: Loss::Mse,
            optimizer: OptimizerConfig::default(),
            clip: Some(1.0),
        }
    }
}

/// The stored form of [`TrainerConfig`] (and of the training half of
/// [`crate::LearnerConfig`]): the window and the adaptive settings as separate fields, as
/// checkpoints and store templates have always held them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TrainerConfigRepr {
    pub(crate) window: usize,
    pub(crate) every: usize,
    pub(crate) loss_steps: LossSteps,
    pub(crate) loss: Loss,
    pub(crate) optimizer: OptimizerConfig,
    pub(crate) clip: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) auto_truncation: Option<AutoTruncation>,
}

impl Default for TrainerConfigRepr {
    fn default() -> Self {
        TrainerConfig::default().into()
    }
}

impl From<TrainerConfig> for TrainerConfigRepr {
    fn from(c: TrainerConfig) -> Self {
        let (window, auto_truncation) = match c.truncation {
            Truncation::Fixed(t) => (t, None),
            Truncation::Auto(a) => (a.max, Some(a)),
        };
        TrainerConfigRepr {
            window,
            every: c.every,
            loss_steps: c.loss_steps,
            loss: c.loss,
            optimizer: c.optimizer,
            clip: c.clip,
            auto_truncation,
        }
    }
}

impl TryFrom<TrainerConfigRepr> for TrainerConfig {
    type Error = Error;

    /// Refuses adaptive settings whose largest `T` is not the stored window.
    fn try_from(r: TrainerConfigRepr) -> Result<Self> {
        let truncation = match r.auto_truncation {
            None => Truncation::Fixed(r.window),
            Some(a) if a.max == r.window => Truncation::Auto(a),
            Some(a) => {
                return Err(Error::config(
                    "window",
                    format!(
                        "with adaptive truncation the window is the largest T and must equal \
                         t_max = {}, got {}",
                        a.max, r.window
                    ),
                ))
            }
        };
        Ok(TrainerConfig {
            truncation,
            every: r.every,
            loss_steps: r.loss_steps,
            loss: r.loss,
            optimizer: r.optimizer,
            clip: r.clip,
        })
    }
}

pub use super::ring::MAX_WINDOW;

impl TrainerConfig {
    /// The largest window length `T`, which the buffers are sized for: the fixed `T`, or the
    /// adaptive maximum.
    pub fn max_window(&self) -> usize {
        match &self.truncation {
            Truncation::Fixed(t) => *t,
            Truncation::Auto(a) => a.max,
        }
    }

    /// The adaptive settings, with adaptive truncation.
    pub fn auto_truncation(&self) -> Option<&AutoTruncation> {
        match &self.truncation {
            Truncation::Fixed(_) => None,
            Truncation::Auto(a) => Some(a),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field: `T` outside `1..=MAX_WINDOW`, `k` outside `1..=T`
    /// (TBPTT(k1, k2) needs `k1 <= k2`), loss steps outside `1..=T`, a bad clip, loss or
    /// optimizer setting.
    pub fn validate(&self) -> Result<()> {
        let window = self.max_window();
        if window == 0 || window > MAX_WINDOW {
            return Err(Error::config(
                "window",
                format!("T must be in 1..={MAX_WINDOW}, got {window}"),
            ));
        }
        if self.every == 0 || self.every > window {
            return Err(Error::config(
                "every",
                format!(
                    "k must be in 1..=T (k1 <= k2), got k = {} with T = {window}",
                    self.every
                ),
            ));
        }
        let l = self.loss_steps.resolve(window, self.every);
        if l == 0 || l > window {
            return Err(Error::config(
                "loss_steps",
                format!("must be in 1..=T = {window}, got {l}"),
            ));
        }
        if let Some(c) = self.clip {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::config(
                    "clip",
                    format!("must be positive and finite, got {c}"),
                ));
            }
        }
        if let Some(a) = self.auto_truncation() {
            if self.loss_steps == LossSteps::All {
                return Err(Error::config(
                    "loss_steps",
                    "adaptive truncation measures the gradient decay on the steps before the \
                     loss steps; use k or a number, not all",
                ));
            }
            a.validate(self.every, l)?;
        }
        self.loss.validate()?;
        self.optimizer.validate()
    }
}

/// What one update did.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats<T> {
    /// The window's loss before the step.
    pub loss: T,
    /// Global gradient norm before clipping.
    pub grad_norm: T,
    /// Whether the step was applied (`false` when the loss or a gradient was not finite:
    /// weights and optimizer state are then unchanged).
    pub applied: bool,
}

/// What a [`Trainer`] carries from update to update, for checkpoints: the optimizer with its
/// state (moments, step count) and the counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState<T> {
    /// The optimizer and its state.
    pub optimizer: Optimizer<T>,
    /// Updates applied.
    pub updates: u64,
    /// Updates rejected as non-finite.
    pub rejected: u64,
    /// Sum of the applied updates' losses.
    pub loss_sum: f64,
    /// Adaptive truncation's estimates and statistics (`None` with a fixed `T`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<TruncationState>,
}

/// The training side: optimizer, window buffers and counters. Owns no weights; it updates
/// the model it is given.
#[derive(Clone, Debug)]
pub struct Trainer<T: Float> {
    config: TrainerConfig,
    loss_steps: usize,
    optimizer: Optimizer<T>,
    window: Window<T>,
    adaptive: Option<Adaptive<T>>,
    updates: u64,
    rejected: u64,
    loss_sum: f64,
}

impl<T: Float> Trainer<T> {
    /// A trainer for models shaped by `model`.
    ///
    /// # Errors
    /// [`Error::Config`] if either configuration is invalid.
    pub fn new(model: &ModelConfig, config: TrainerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Trainer {
            loss_steps: config.loss_steps.resolve(config.max_window(), config.every),
            optimizer: Optimizer::new(config.optimizer.clone(), model.n_params())?,
            // The buffers are allocated at the first update (a learner that is lent a
            // worker's buffers never allocates its own).
            window: {
                model.validate()?;
                Window::empty(model)
            },
            adaptive: config.auto_truncation().cloned().map(|a| {
                Adaptive::new(
                    a,
                    config.loss_steps.resolve(config.max_window(), config.every),
                )
            }),
            config,
            updates: 0,
            rejected: 0,
            loss_sum: 0.0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The window length `T` the next update uses (fixed, or chosen by adaptive truncation).
    pub fn window_len(&self) -> usize {
        self.adaptive
            .as_ref()
            .map_or(self.config.max_window(), |a| a.current())
    }

    /// The window lengths used so far (current, min, mean, max).
    pub fn truncation(&self) -> TruncationReport {
        match &self.adaptive {
            Some(a) => a.report(),
            None => TruncationReport::fixed(self.config.max_window(), self.updates + self.rejected),
        }
    }

    /// The optimizer (with its state).
    pub fn optimizer(&self) -> &Optimizer<T> {
        &self.optimizer
    }

    /// Updates applied so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Updates rejected because the loss or a gradient was not finite.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Mean loss over the applied updates (0 before the first).
    pub fn mean_loss(&self) -> f64 {
        if self.updates == 0 {
            0.0
        } else {
            self.loss_sum / self.updates as f64
        }
    }

    /// The optimizer state and counters (allocates; for checkpoints).
    pub fn to_state(&self) -> TrainerState<T> {
        TrainerState {
            optimizer: self.optimizer.clone(),
            updates: self.updates,
            rejected: self.rejected,
            loss_sum: self.loss_sum,
            truncation: self.adaptive.as_ref().map(|a| a.to_state()),
        }
    }

    /// A trainer for models shaped by `model` that continues from `state`.
    ///
    /// # Errors
    /// [`Error::Config`] if `config` is invalid, or if the state does not fit it: an
    /// optimizer of another kind or size, state buffers of the wrong length, non-finite
    /// moments, a non-finite loss sum, or adaptive-truncation state that is missing, present
    /// with a fixed `T`, or inconsistent.
    pub fn from_state(
        model: &ModelConfig,
        config: TrainerConfig,
        state: TrainerState<T>,
    ) -> Result<Self> {
        let mut t = Trainer::new(model, config)?;
        let bad = |reason: String| Err(Error::state("checkpoint.optimizer", reason));
        if state.optimizer.config() != t.optimizer.config() {
            return bad(format!(
                "optimizer {:?} differs from the configuration's {:?}",
                state.optimizer.config(),
                t.optimizer.config()
            ));
        }
        let n = model.n_params();
        if state.optimizer.n_params() != n {
            return bad(format!(
                "optimizer state for {} parameters, the model has {n}",
                state.optimizer.n_params()
            ));
        }
        // A trial step on zero parameters checks the state buffers' lengths (the optimizer
        // refuses a state inconsistent with its configuration) and that they are finite.
        let mut probe = state.optimizer.clone();
        let mut p = vec![T::zero(); n];
        let mut g = vec![T::zero(); n];
        if let Err(e) = probe.step(&mut p, &mut g) {
            return bad(format!(
                "optimizer state does not fit its configuration: {e}"
            ));
        }
        if !p.iter().all(|v| v.finite()) {
            return bad("optimizer state holds non-finite values".into());
        }
        if !state.loss_sum.is_finite() {
            return bad("non-finite loss sum".into());
        }
        match (&mut t.adaptive, &state.truncation) {
            (None, None) => {}
            (Some(a), Some(st)) => a.restore(st)?,
            (Some(_), None) => {
                return Err(Error::state(
                    "checkpoint.truncation",
                    "adaptive truncation is configured but the state has none".to_string(),
                ))
            }
            (None, Some(_)) => {
                return Err(Error::state(
                    "checkpoint.truncation",
                    "the state has adaptive-truncation data but T is fixed".to_string(),
                ))
            }
        }
        t.optimizer = state.optimizer;
        t.updates = state.updates;
        t.rejected = state.rejected;
        t.loss_sum = state.loss_sum;
        Ok(t)
    }

    /// The window buffers of the last update (gradients, predictions).
    pub fn window(&self) -> &Window<T> {
        &self.window
    }

    /// Hands out the window buffers (the largest part of a trainer's memory), leaving an
    /// empty place holder: many learners of one shape that train one at a time can share one
    /// set of buffers (a worker of many keyed series lends its set to each series in turn,
    /// with [`Trainer::swap_window`]). An update without buffers allocates new ones.
    pub fn take_window(&mut self) -> Window<T> {
        let empty = Window::empty(self.window.model_config());
        std::mem::replace(&mut self.window, empty)
    }

    /// Lends `window` to this trainer: swaps it with the trainer's own buffers (the empty
    /// place holder after [`Trainer::take_window`]) and returns true, when it fits; buffers of
    /// another shape, or too short for the configured `T`, are left where they are (false).
    pub fn swap_window(&mut self, window: &mut Window<T>) -> bool {
        if window.model_config() != self.window.model_config()
            || window.capacity() < self.config.max_window()
        {
            return false;
        }
        std::mem::swap(&mut self.window, window);
        true
    }

    /// Whether the trainer holds window buffers (not lent out).
    pub fn has_window(&self) -> bool {
        self.window.capacity() > 0
    }

    /// Allocates window buffers if they were lent out and not given back.
    fn ensure_window(&mut self) -> Result<()> {
        if self.window.capacity() == 0 {
            let shape = *self.window.model_config();
            self.window = Window::new(&shape, self.config.max_window())?;
        }
        Ok(())
    }

    /// One TBPTT update of `model` on the newest `T` pairs of `ring` (`T` =
    /// [`Trainer::window_len`]). No allocation.
    ///
    /// # Errors
    /// [`Error::Shape`] if the ring holds fewer than `T` pairs or does not fit the model.
    pub fn update(&mut self, model: &mut Model<T>, ring: &Ring<T>) -> Result<UpdateStats<T>> {
        let t = self.window_len();
        if ring.len() < t {
            return Err(Error::len("update (ring pairs)", t, ring.len()));
        }
        self.ensure_window()?;
        let (xs, ys) = self.window.io_mut();
        let start = ring.copy_newest_to(t, xs, ys);
        let loss =
            self.window
                .forward_backward(model, start, t, self.config.loss, self.loss_steps)?;
        self.adapt()?;
        self.apply(model, loss)
    }

    /// One TBPTT update of `model` on a window given as column-major buffers (`d_input x n`
    /// inputs, `d_output x n` targets, `n` up to the configured `T`) and its start state. No
    /// allocation.
    ///
    /// # Errors
    /// [`Error::Shape`] if a buffer does not fit: lengths that are not `n` whole steps of
    /// both, or `n` outside `loss steps..=T`.
    pub fn update_from(
        &mut self,
        model: &mut Model<T>,
        xs: &[T],
        ys: &[T],
        start: &[T],
    ) -> Result<UpdateStats<T>> {
        let mc = model.config();
        let (d_in, d_out) = (mc.d_input, mc.d_output);
        let t = xs.len() / d_in;
        self.ensure_window()?;
        let (wx, wy) = self.window.io_mut();
        if xs.len() != t * d_in || ys.len() != t * d_out || xs.len() > wx.len() {
            return Err(Error::len(
                "update_from (window)",
                wx.len() + wy.len(),
                xs.len() + ys.len(),
            ));
        }
        wx[..xs.len()].copy_from_slice(xs);
        wy[..ys.len()].copy_from_slice(ys);
        let loss =
            self.window
                .forward_backward(model, start, t, self.config.loss, self.loss_steps)?;
        self.adapt()?;
        self.apply(model, loss)
    }

    /// Feeds the last pass's per-step gradient norms to adaptive truncation (no-op when `T`
    /// is fixed).
    fn adapt(&mut self) -> Result<()> {
        if let Some(a) = &mut self.adaptive {
            let n = self.window.step_grad_norms_to(&mut a.norms)?;
            a.observe(n);
        }
        Ok(())
    }

    /// Clips and applies the gradients now in the window buffers (after a forward/backward).
    fn apply(&mut self, model: &mut Model<T>, loss: T) -> Result<UpdateStats<T>> {
        let grads = self.window.grads_mut();
        let norm = match self.config.clip {
            Some(c) => clip_grad_norm(grads, T::cast(c)),
            None => grad_norm(grads),
        };
        if !(loss.finite() && norm.finite()) {
            self.rejected += 1;
            if self.rejected <= 10 || self.rejected.is_multiple_of(1000) {
                tracing::warn!(
                    "update rejected: non-finite loss {:?} or gradient norm {:?}; weights and \
                     optimizer state unchanged ({} rejected so far)",
                    loss.as_f64(),
                    norm.as_f64(),
                    self.rejected
                );
            }
            return Ok(UpdateStats {
                loss,
                grad_norm: norm,
                applied: false,
            });
        }
        self.optimizer.step(model.params_mut(), grads)?;
        self.updates += 1;
        self.loss_sum += loss.as_f64();
        Ok(UpdateStats {
            loss,
            grad_norm: norm,
            applied: true,
        })
    }
}

/// Loss and gradient of full BPTT over a whole finite sequence: forward over all `n` steps of
/// `inputs` (`d_input x n`, column-major) from `start`, loss over every step against
/// `targets` (`d_output x n`), backward through all of it. Returns the loss and the flat
/// gradient (model order). Allocates buffers for `n` steps: it is the yardstick truncation is
/// measured against, not a hot path.
///
/// # Errors
/// [`Error::Shape`] if a length does not fit the model.
pub fn full_bptt<T: Float>(
    model: &Model<T>,
    inputs: &[T],
    targets: &[T],
    start: &[T],
    loss: Loss,
) -> Result<(T, Vec<T>)> {
    let c = *model.config();
    if inputs.is_empty() || !inputs.len().is_multiple_of(c.d_input) {
        return Err(Error::Shape {
            op: "full_bptt (inputs)",
            expected: format!("a positive multiple of {}", c.d_input),
            got: inputs.len().to_string(),
        });
    }
    let n = inputs.len() / c.d_input;
    if targets.len() != n * c.d_output {
        return Err(Error::len(
            "full_bptt (targets)",
            n * c.d_output,
            targets.len(),
        ));
    }
    let mut w = Window::new(&c, n)?;
    let (xs, ys) = w.io_mut();
    xs.copy_from_slice(inputs);
    ys.copy_from_slice(targets);
    let l = w.forward_backward(model, start, n, loss, n)?;
    Ok((l, w.grads().to_vec()))
}
