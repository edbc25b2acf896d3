//! The online learner: predicts every event at once, keeps the last `T` pairs, and trains by
//! TBPTT(k, T) every `k` events.
//!
//! Per event `x[t]` (forecasting mode, [`Learner::step`]):
//! 1. the prediction made at `t − 1` is scored against `x[t]`;
//! 2. the live state advances with `x[t]` and the forecast of `x[t+1]` is made at once (the
//!    live state is carried forward, never recomputed);
//! 3. the pair `(x[t−1], x[t])` enters the ring with the live state saved before `x[t−1]`;
//! 4. when the ring holds `T` pairs and `(t + 1) % k == 0`, one update
//!    ([`crate::train::trainer::Trainer::update`]).
//!
//! With explicit targets ([`Learner::step_supervised`]) the pair `(x[t], y[t])` enters the ring
//! at once and the prediction made from `x[t]` is scored against `y[t]`.

use crate::nn::loss::Loss;
use crate::nn::model::{Model, ModelConfig, StepWorkspace, Window};
use crate::nn::optim::OptimizerConfig;
use crate::train::background::Background;
use crate::train::ring::{Ring, RingState};
use crate::train::trainer::{
    LossSteps, Trainer, TrainerConfig, TrainerConfigRepr, TrainerState, UpdateStats,
};
use crate::train::truncation::{AutoTruncation, TruncationReport};
use crate::{CellKind, Error, Float, Result};
use serde::{Deserialize, Serialize};

/// Most buffer values (ring, window, gradients, optimizer state) a learner may allocate:
/// 2^30, 4 GiB of `f32`.
pub const MAX_BUFFER_ELEMENTS: u64 = 1 << 30;

/// What the learner predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// The next event's input values (one-step-ahead forecasting). Default.
    #[default]
    NextInput,
    /// Explicit target values given with each event ([`Learner::step_supervised`]).
    Explicit,
    /// A target revealed by the next event, which the caller derives from it (for example
    /// its change from the current event), with `d_target` values (default: `d_input`)
    /// ([`Learner::step_ahead`]). The timing is that of [`Targets::NextInput`]: the forecast
    /// made at `t` is scored against the target given at `t + 1`.
    Ahead,
}

/// Everything that defines a learner. Fields state their default.
///
/// # Example
/// ```
/// use tbptt::{CellKind, LearnerConfig};
/// let config = LearnerConfig {
///     cell: CellKind::Lstm,
///     d_hidden: 16,
///     trainer: tbptt::TrainerConfig { truncation: 16.into(), every: 4, ..Default::default() },
///     ..Default::default()
/// };
/// let learner = config.build::<f32>().unwrap();
/// assert_eq!(learner.model().config().d_hidden, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "LearnerConfigRepr", into = "LearnerConfigRepr")]
pub struct LearnerConfig {
    /// Cell kind. Default: GRU.
    pub cell: CellKind,
    /// Values per event `D`. Default: 1.
    pub d_input: usize,
    /// Hidden size `H`. Default: 32.
    pub d_hidden: usize,
    /// Stacked layers. Default: 1.
    pub layers: usize,
    /// Explicit target size (only with [`Targets::Explicit`]; forecasting predicts
    /// `d_input` values). Default: `None`.
    pub d_target: Option<usize>,
    /// What is predicted. Default: the next input.
    pub targets: Targets,
    /// The training side: truncation `T` (k2), update period `k` (k1), loss, optimizer and
    /// clipping. Default: [`TrainerConfig::default`] (`T = 32`, `k = 8`, MSE, Adam 3e-3,
    /// clip 1.0).
    pub trainer: TrainerConfig,
    /// Seed of the weight initialization. Default: 0.
    pub seed: u64,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            cell: CellKind::Gru,
            d_input: 1,
            d_hidden: 32,
            layers: 1,
            d_target: None,
            targets: Targets::NextInput,
            trainer: TrainerConfig::default(),
            seed: 0,
        }
    }
}

/// The stored form of [`LearnerConfig`]: one flat record, fields in this order, as
/// checkpoints, store templates and [`crate::io::checkpoint::config_hash`] have always read
/// it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LearnerConfigRepr {
    cell: CellKind,
    d_input: usize,
    d_hidden: usize,
    layers: usize,
    d_target: Option<usize>,
    targets: Targets,
    window: usize,
    every: usize,
    loss_steps: LossSteps,
    loss: Loss,
    optimizer: OptimizerConfig,
    clip: Option<f64>,
    seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auto_truncation: Option<AutoTruncation>,
}

impl Default for LearnerConfigRepr {
    fn default() -> Self {
        LearnerConfig::default().into()
    }
}

impl From<LearnerConfig> for LearnerConfigRepr {
    fn from(c: LearnerConfig) -> Self {
        let t = TrainerConfigRepr::from(c.trainer);
        LearnerConfigRepr {
            cell: c.cell,
            d_input: c.d_input,
            d_hidden: c.d_hidden,
            layers: c.layers,
            d_target: c.d_target,
            targets: c.targets,
            window: t.window,
            every: t.every,
            loss_steps: t.loss_steps,
            loss: t.loss,
            optimizer: t.optimizer,
            clip: t.clip,
            seed: c.seed,
            auto_truncation: t.auto_truncation,
        }
    }
}

impl TryFrom<LearnerConfigRepr> for LearnerConfig {
    type Error = Error;

    fn try_from(r: LearnerConfigRepr) -> Result<Self> {
        let trainer = TrainerConfig::try_from(TrainerConfigRepr {
            window: r.window,
            every: r.every,
            loss_steps: r.loss_steps,
            loss: r.loss,
            optimizer: r.optimizer,
            clip: r.clip,
            auto_truncation: r.auto_truncation,
        })?;
        Ok(LearnerConfig {
            cell: r.cell,
            d_input: r.d_input,
            d_hidden: r.d_hidden,
            layers: r.layers,
            d_target: r.d_target,
            targets: r.targets,
            trainer,
            seed: r.seed,
        })
    }
}

impl LearnerConfig {
    /// The model's shape.
    ///
    /// # Errors
    /// [`Error::Config`] when `d_target` is given without explicit targets or missing with them.
    pub fn model_config(&self) -> Result<ModelConfig> {
        let d_output = match (self.targets, self.d_target) {
            (Targets::NextInput, None) => self.d_input,
            (Targets::NextInput, Some(_)) => {
                return Err(Error::config(
                    "d_target",
                    "a target size needs explicit targets (forecasting predicts the input)",
                ))
            }
            (Targets::Explicit, Some(d)) | (Targets::Ahead, Some(d)) => d,
            (Targets::Ahead, None) => self.d_input,
            (Targets::Explicit, None) => {
                return Err(Error::config(
                    "d_target",
                    "explicit targets need a target size",
                ))
            }
        };
        let m = ModelConfig {
            cell: self.cell,
            d_input: self.d_input,
            d_hidden: self.d_hidden,
            layers: self.layers,
            d_output,
        };
        m.validate()?;
        Ok(m)
    }

    /// The largest window length `T` (the ring's and buffers' size):
    /// [`TrainerConfig::max_window`].
    pub fn max_window(&self) -> usize {
        self.trainer.max_window()
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let m = self.model_config()?;
        self.trainer.validate()?;
        // The buffers a learner allocates grow with T × (sizes) and with the parameter count;
        // refuse configurations (typed or read from a checkpoint) that would need more than
        // MAX_BUFFER_ELEMENTS values, before anything is allocated.
        let t = self.max_window() as u128;
        let g = m.gate_rows() as u128;
        let per_step = (m.d_input + m.d_output + m.state_len()) as u128
            + m.layers as u128 * (3 * g + 6 * m.d_hidden as u128 + m.d_hidden as u128);
        let need = t * per_step + 4 * m.n_params() as u128;
        if need > MAX_BUFFER_ELEMENTS as u128 {
            return Err(Error::config(
                "window",
                format!(
                    "T = {} with these sizes needs about {need} buffer values, more than the \
                     limit of {MAX_BUFFER_ELEMENTS}; use a smaller T, hidden size or input",
                    self.max_window()
                ),
            ));
        }
        Ok(())
    }

    /// Builds a learner with freshly initialized weights.
    ///
    /// # Errors
    /// [`Error::Config`] if a setting is invalid.
    pub fn build<T: Float>(&self) -> Result<Learner<T>> {
        Learner::new(self.clone())
    }
}

/// Everything a [`Learner`] needs to continue exactly where it stopped: the configuration,
/// the weights, the optimizer state and counters, the ring of the last `T` pairs with their
/// start states, the live state and forecast, and the pending input. There is no random
/// state after initialization (the seed only draws the initial weights).
///
/// Made by [`Learner::snapshot`], turned back into a learner by [`Learner::restore`]; it
/// derives serde (the `tbptt` command stores it in MessagePack checkpoints,
/// the checkpoints of the I/O layer).
///
/// # Example
/// ```
/// use tbptt::{Learner, LearnerConfig};
/// let mut a = LearnerConfig { d_hidden: 8, trainer: tbptt::TrainerConfig { truncation: 8.into(), every: 4, ..Default::default() }, ..Default::default() }.build::<f64>()?;
/// for t in 0..50 { a.step(&[(t as f64 * 0.3).sin()])?; }
/// let mut b = Learner::restore(a.snapshot()?)?;
/// for t in 50..100 {
///     let x = [(t as f64 * 0.3).sin()];
///     a.step(&x)?;
///     b.step(&x)?;
///     assert_eq!(a.forecast(), b.forecast()); // bit for bit
/// }
/// # Ok::<(), tbptt::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerState<T> {
    /// The configuration.
    pub config: LearnerConfig,
    /// The weights, flat, in [`Model::params`] order.
    pub params: Vec<T>,
    /// The optimizer state and the update counters.
    pub trainer: TrainerState<T>,
    /// The last `T` pairs and their start states.
    pub ring: RingState<T>,
    /// The live recurrent state.
    pub state: Vec<T>,
    /// The current forecast (scored against the next event).
    pub forecast: Vec<T>,
    /// The input waiting for its target (forecasting mode).
    pub pending_x: Vec<T>,
    /// The live state before the pending input.
    pub pending_s: Vec<T>,
    /// Whether `pending_x` holds an input.
    pub has_pending: bool,
    /// Events seen.
    pub events: u64,
    /// Updates skipped by a busy background trainer.
    pub skipped: u64,
}

/// The result of one event: small, `Copy` and owned, so it does not borrow the learner.
///
/// The forecast it goes with is [`Learner::forecast`] (kept in the learner, so a step does
/// not allocate).
///
/// # Example
/// ```
/// use tbptt::LearnerConfig;
/// let mut learner = LearnerConfig::default().build::<f32>()?;
/// let p = learner.step(&[0.5])?;
/// // `p` is a value: the learner can be read (or stepped) while it is alive.
/// println!("event {} forecast {} after {} updates", p.index, learner.forecast()[0], learner.updates());
/// let q = learner.step(&[0.25])?;
/// assert_eq!((p.index, q.index), (0, 1));
/// assert!(p.error.is_none() && q.error.is_some());
/// # Ok::<(), tbptt::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction<T> {
    /// 0-based index of the event.
    pub index: u64,
    /// The loss of the prediction made for this event (the forecast made at the previous
    /// event, or with explicit targets the prediction from this event's input), averaged over
    /// components as the loss's mean defines; `None` for the first event of a forecast stream.
    pub error: Option<T>,
    /// The update made after this event, if one was due and training runs inline (with a
    /// background trainer the update happens later, on its thread).
    pub update: Option<UpdateStats<T>>,
}

/// The online TBPTT learner.
///
/// # Example
/// ```
/// use tbptt::LearnerConfig;
/// let mut learner = LearnerConfig::default().build::<f32>().unwrap();
/// for t in 0..200 {
///     let p = learner.step(&[(t as f32 * 0.3).sin()]).unwrap();
///     assert!(p.index == t && learner.forecast().len() == 1);
/// }
/// assert!(learner.updates() > 0);
/// ```
#[derive(Clone, Debug)]
pub struct Learner<T: Float = f32> {
    config: LearnerConfig,
    model: Model<T>,
    mode: Mode<T>,
    ring: Ring<T>,
    state: Vec<T>,
    pre: Vec<T>,
    ws: StepWorkspace<T>,
    y: Vec<T>,
    grad_scratch: Vec<T>,
    pending_x: Vec<T>,
    pending_s: Vec<T>,
    has_pending: bool,
    events: u64,
    skipped: u64,
    /// With a background trainer: wait for it when it is busy instead of skipping the update.
    wait: bool,
}

impl<T: Float> Learner<T> {
    /// A learner with weights initialized from `config.seed`.
    ///
    /// # Errors
    /// [`Error::Config`] if a setting is invalid.
    pub fn new(config: LearnerConfig) -> Result<Self> {
        config.validate()?;
        let mc = config.model_config()?;
        let model = Model::new(mc, config.seed)?;
        Self::with_model(config, model)
    }

    /// A learner starting from given weights (e.g. loaded from PyTorch).
    ///
    /// # Errors
    /// [`Error::Config`] if a setting is invalid or the model's shape differs from the
    /// configuration's.
    pub fn with_model(config: LearnerConfig, model: Model<T>) -> Result<Self> {
        config.validate()?;
        let mc = config.model_config()?;
        if *model.config() != mc {
            return Err(Error::config(
                "model",
                format!(
                    "model shape {:?} differs from the configuration's {mc:?}",
                    model.config()
                ),
            ));
        }
        let trainer = Trainer::new(&mc, config.trainer.clone())?;
        let s = mc.state_len();
        let z = |n: usize| vec![T::zero(); n];
        Ok(Learner {
            ring: Ring::new(config.max_window(), mc.d_input, mc.d_output, s),
            state: z(s),
            pre: z(s),
            ws: StepWorkspace::new(&mc),
            y: z(mc.d_output),
            grad_scratch: z(mc.d_output),
            pending_x: z(mc.d_input),
            pending_s: z(s),
            has_pending: false,
            events: 0,
            skipped: 0,
            wait: false,
            model,
            mode: Mode::Inline(Box::new(trainer)),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// The current weights.
    pub fn model(&self) -> &Model<T> {
        &self.model
    }

    /// The current weights, mutable.
    pub fn model_mut(&mut self) -> &mut Model<T> {
        &mut self.model
    }

    /// The training side (optimizer state, counters, last window's buffers), when training
    /// runs inline; `None` while it runs on a background thread.
    pub fn trainer(&self) -> Option<&Trainer<T>> {
        match &self.mode {
            Mode::Inline(t) => Some(t),
            Mode::Background(_) => None,
        }
    }

    /// Hands out the inline trainer's window buffers ([`Trainer::take_window`]); `None` with a
    /// background trainer (its buffers live on its thread).
    pub fn take_window(&mut self) -> Option<Window<T>> {
        match &mut self.mode {
            Mode::Inline(t) => Some(t.take_window()),
            Mode::Background(_) => None,
        }
    }

    /// Lends window buffers to the inline trainer ([`Trainer::swap_window`]): whether they
    /// fit (false with a background trainer).
    pub fn swap_window(&mut self, window: &mut Window<T>) -> bool {
        match &mut self.mode {
            Mode::Inline(t) => t.swap_window(window),
            Mode::Background(_) => false,
        }
    }

    /// With a background trainer: whether a due update waits for the trainer when it is still
    /// busy with the previous ones (`true`: no update is lost and the caller is slowed to the
    /// trainer's pace, back-pressure) or is skipped and counted (`false`, the default:
    /// prediction never waits).
    pub fn set_wait_for_trainer(&mut self, wait: bool) {
        self.wait = wait;
    }

    /// Whether training runs on a background thread.
    pub fn is_background(&self) -> bool {
        matches!(self.mode, Mode::Background(_))
    }

    /// Updates skipped because the background trainer was still busy with earlier windows
    /// (always 0 inline).
    pub fn skipped_updates(&self) -> u64 {
        self.skipped
    }

    /// Updates rejected because the loss or a gradient was not finite.
    pub fn rejected_updates(&self) -> u64 {
        match &self.mode {
            Mode::Inline(t) => t.rejected(),
            Mode::Background(b) => b.rejected,
        }
    }

    /// Mean loss over the updates applied so far (as last published by a background trainer).
    pub fn mean_loss(&self) -> f64 {
        match &self.mode {
            Mode::Inline(t) => t.mean_loss(),
            Mode::Background(b) => b.mean_loss,
        }
    }

    /// Moves training to a background thread: from now on a due update copies the window into
    /// a preallocated job and hands it over a bounded crossbeam channel; the trainer computes
    /// the update on its own copy of the weights and publishes them back; every event first
    /// swaps in the newest published weights. Prediction never waits for training: when both
    /// job buffers are busy, the due update is skipped and counted
    /// ([`Learner::skipped_updates`]). No allocation per event or update after warm-up.
    ///
    /// # Errors
    /// [`Error::Config`] if the thread cannot be started. Calling it twice is a no-op.
    pub fn spawn_trainer(&mut self) -> Result<()> {
        if self.is_background() {
            return Ok(());
        }
        let Mode::Inline(trainer) = &self.mode else {
            return Ok(());
        };
        // The thread gets a copy; the inline trainer stays in place until the thread runs,
        // so a failed spawn leaves the learner as it was.
        let b = Background::spawn((**trainer).clone(), self.model.clone())?;
        self.mode = Mode::Background(Box::new(b));
        Ok(())
    }

    /// Waits for the background trainer to finish the windows it holds, takes its final
    /// weights and returns to inline training (deterministic from here on). A no-op inline.
    ///
    /// # Errors
    /// [`Error::TrainerPanicked`] if the trainer thread panicked (its weights are then lost and the
    /// learner keeps the last weights it received).
    pub fn join_trainer(&mut self) -> Result<()> {
        if !self.is_background() {
            return Ok(());
        }
        let Mode::Background(b) = &mut self.mode else {
            return Ok(());
        };
        // After a panic the spent background stays: it takes no more windows, and the
        // learner predicts with the last weights it received.
        let (trainer, model) = b.join()?;
        self.model.copy_params_from(model.params())?;
        self.mode = Mode::Inline(trainer);
        Ok(())
    }

    /// Everything needed to continue exactly from here ([`Learner::restore`]). Allocates.
    ///
    /// With a background trainer, the trainer first finishes the windows it holds (at most
    /// two updates) and hands back its weights and optimizer state; then a fresh trainer
    /// thread is started. Prediction waits for those updates only: this is for checkpoints,
    /// every so many events, not for every event.
    ///
    /// # Errors
    /// [`Error::TrainerPanicked`] if the trainer thread panicked, [`Error::Spawn`] if it
    /// cannot be restarted.
    pub fn snapshot(&mut self) -> Result<LearnerState<T>> {
        let background = self.is_background();
        if background {
            self.join_trainer()?;
        }
        let trainer = match &self.mode {
            Mode::Inline(t) => t.to_state(),
            // Still in the background after a successful join: only a dead trainer.
            Mode::Background(_) => return Err(Error::TrainerPanicked),
        };
        let state = LearnerState {
            config: self.config.clone(),
            params: self.model.params().to_vec(),
            trainer,
            ring: self.ring.to_state(),
            state: self.state.clone(),
            forecast: self.y.clone(),
            pending_x: self.pending_x.clone(),
            pending_s: self.pending_s.clone(),
            has_pending: self.has_pending,
            events: self.events,
            skipped: self.skipped,
        };
        if background {
            self.spawn_trainer()?;
        }
        Ok(state)
    }

    /// A learner that continues exactly from `state` ([`Learner::snapshot`]), training
    /// inline (call [`Learner::spawn_trainer`] for a background trainer). Every length and
    /// value of the state is checked, so a state from an untrusted file cannot make later
    /// calls fail or panic.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid configuration; [`Error::State`] naming the part for
    /// buffers that do not fit it, non-finite weights, states or optimizer moments.
    pub fn restore(state: LearnerState<T>) -> Result<Self> {
        let mc = state.config.model_config()?;
        state.config.validate()?;
        fn bad<X>(part: &'static str, reason: String) -> Result<X> {
            Err(Error::state(part, reason))
        }
        let s = mc.state_len();
        for (field, v, want) in [
            ("checkpoint.params", &state.params, mc.n_params()),
            ("checkpoint.state", &state.state, s),
            ("checkpoint.forecast", &state.forecast, mc.d_output),
            ("checkpoint.pending_x", &state.pending_x, mc.d_input),
            ("checkpoint.pending_s", &state.pending_s, s),
        ] {
            if v.len() != want {
                return bad(field, format!("{} values, expected {want}", v.len()));
            }
            if !v.iter().all(|x| x.finite()) {
                return bad(field, "holds a non-finite value".into());
            }
        }
        if state.config.targets == Targets::Explicit && state.has_pending {
            return bad(
                "checkpoint.has_pending",
                "a learner with explicit targets keeps no pending input".into(),
            );
        }
        let ring = Ring::from_state(
            &state.ring,
            state.config.max_window(),
            mc.d_input,
            mc.d_output,
            s,
        )
        .map_err(|e| e.in_part("checkpoint.ring"))?;
        if ring.pushed() > state.events {
            return bad(
                "checkpoint.events",
                format!(
                    "{} events seen but {} pairs recorded",
                    state.events,
                    ring.pushed()
                ),
            );
        }
        let mut model = Model::zeros(mc)?;
        model.copy_params_from(&state.params)?;
        let trainer = Trainer::from_state(&mc, state.config.trainer.clone(), state.trainer)?;
        let mut l = Learner::with_model(state.config, model)?;
        l.mode = Mode::Inline(Box::new(trainer));
        l.ring = ring;
        l.state = state.state;
        l.y = state.forecast;
        l.pending_x = state.pending_x;
        l.pending_s = state.pending_s;
        l.has_pending = state.has_pending;
        l.events = state.events;
        l.skipped = state.skipped;
        Ok(l)
    }

    /// The ring of the last `T` pairs.
    pub fn ring(&self) -> &Ring<T> {
        &self.ring
    }

    /// The live recurrent state (`h` of each layer, then `c` of each layer for LSTM).
    pub fn state(&self) -> &[T] {
        &self.state
    }

    /// The current forecast (of the next event, or of the last event's target).
    pub fn forecast(&self) -> &[T] {
        &self.y
    }

    /// Events seen.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The window length `T` the next update uses: fixed, or chosen by adaptive truncation
    /// (with a background trainer, as last published by it).
    pub fn window_len(&self) -> usize {
        match &self.mode {
            Mode::Inline(t) => t.window_len(),
            Mode::Background(b) => b.truncation.current,
        }
    }

    /// The window lengths used so far: the current `T` and its min, mean and max over the
    /// updates, and the measured gradient decay rate with adaptive truncation (with a
    /// background trainer, as last published by it).
    pub fn truncation(&self) -> TruncationReport {
        match &self.mode {
            Mode::Inline(t) => t.truncation(),
            Mode::Background(b) => b.truncation,
        }
    }

    /// Updates applied.
    pub fn updates(&self) -> u64 {
        match &self.mode {
            Mode::Inline(t) => t.updates(),
            Mode::Background(b) => b.updates,
        }
    }

    fn check(&self, op: &'static str, v: &[T], len: usize) -> Result<()> {
        if v.len() != len {
            return Err(Error::len(op, len, v.len()));
        }
        if let Some(index) = v.iter().position(|x| !x.finite()) {
            return Err(Error::NonFinite { op, index });
        }
        Ok(())
    }

    fn score(&mut self, target: &[T]) -> T {
        let loss = self.config.trainer.loss;
        let d = self.y.len();
        let v = loss.step_to(&self.y, target, &mut self.grad_scratch);
        v / T::of_usize(loss.normalizer(1, d))
    }

    /// One event in forecasting mode: scores the previous forecast against `x`, advances the
    /// live state, forecasts the next event, records the pair and trains when due. No
    /// allocation. The same as [`Learner::predict`] followed by [`Learner::learn`], in one
    /// call.
    ///
    /// The learner sees values as given: raw values of a large scale (thousands, say) make
    /// its steps far too big and its forecasts far worse than repeating the last value. Feed
    /// it normalized values, or use [`Pipeline`](crate::Pipeline), which normalizes, runs a
    /// learner and scores anomalies on the values' own scale.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has the wrong length, [`Error::NonFinite`] if a value is NaN
    /// or infinite, [`Error::Config`] if the learner was built for explicit targets. On error
    /// nothing changes.
    pub fn step(&mut self, x: &[T]) -> Result<Prediction<T>> {
        if self.config.targets != Targets::NextInput {
            return Err(Error::config(
                "targets",
                "this learner needs step_supervised or step_ahead",
            ));
        }
        self.check("step", x, self.pending_x.len())?;
        self.advance(x, x)
    }

    /// Scores the standing forecast (made at the previous event) against `actual`, the
    /// value of the event now arriving, and changes nothing: River's `predict_one`. In
    /// forecasting mode `actual` is the event's input `x`; with [`Targets::Ahead`] it is the
    /// `realized` target. The returned `error` is, bit for bit, the one [`Learner::step`]
    /// (or [`Learner::step_ahead`]) would report for the same event; `update` is `None`.
    /// No allocation.
    ///
    /// A caller that does not want an event learned (an anomaly, say) calls `predict`, and
    /// [`Learner::learn`] only for the events it accepts; a skipped event neither trains the
    /// model nor advances its state.
    ///
    /// # Example
    /// ```
    /// use tbptt::LearnerConfig;
    /// let mut learner = LearnerConfig::default().build::<f64>()?;
    /// let mut skipped = 0;
    /// for t in 0..400 {
    ///     let x = if t == 300 { 40.0 } else { (t as f64 * 0.3).sin() };
    ///     let p = learner.predict(&[x])?;
    ///     if p.error.is_some_and(|e| e > 100.0) {
    ///         skipped += 1; // do not learn the spike
    ///     } else {
    ///         learner.learn(&[x])?;
    ///     }
    /// }
    /// assert_eq!((skipped, learner.events()), (1, 399));
    /// # Ok::<(), tbptt::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Shape`] if `actual` does not have the forecast's length,
    /// [`Error::NonFinite`] if a value is NaN or infinite, [`Error::Config`] if the learner
    /// was built for explicit targets (it has no standing forecast; use
    /// [`Learner::step_supervised`]).
    pub fn predict(&self, actual: &[T]) -> Result<Prediction<T>> {
        if self.config.targets == Targets::Explicit {
            return Err(Error::config(
                "targets",
                "a learner with explicit targets has no standing forecast; use step_supervised",
            ));
        }
        self.check("predict", actual, self.y.len())?;
        let loss = self.config.trainer.loss;
        let error = (self.events > 0)
            .then(|| loss.value(&self.y, actual) / T::of_usize(loss.normalizer(1, self.y.len())));
        Ok(Prediction {
            index: self.events,
            error,
            update: None,
        })
    }

    /// Learns one event in forecasting mode: advances the live state with `x`, forecasts the
    /// next event, records the pair and trains when due, returning the update if one ran
    /// inline. River's `learn_one`; [`Learner::predict`] then `learn` is [`Learner::step`]
    /// bit for bit. No allocation.
    ///
    /// # Example
    /// ```
    /// use tbptt::LearnerConfig;
    /// let config = LearnerConfig::default();
    /// let (mut a, mut b) = (config.build::<f32>()?, config.build::<f32>()?);
    /// for t in 0..100 {
    ///     let x = [(t as f32 * 0.3).sin()];
    ///     let p = a.predict(&x)?;
    ///     let update = a.learn(&x)?;
    ///     let q = b.step(&x)?;
    ///     assert_eq!((p.error, update), (q.error, q.update));
    ///     assert_eq!(a.forecast(), b.forecast());
    /// }
    /// # Ok::<(), tbptt::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Learner::step`].
    pub fn learn(&mut self, x: &[T]) -> Result<Option<UpdateStats<T>>> {
        self.step(x).map(|p| p.update)
    }

    /// One event whose arrival reveals `realized`, the target of the forecast made at the
    /// previous event ([`Targets::Ahead`]): scores that forecast against `realized`, advances
    /// the live state with `x`, forecasts the next target, records the pair
    /// `(x[t−1], realized)` and trains when due. On the first event `realized` is checked but
    /// not used. No allocation.
    ///
    /// # Example
    /// ```
    /// use tbptt::{LearnerConfig, Targets};
    /// // Learn the next change of a ramp from its current level and change.
    /// let config = LearnerConfig { d_input: 2, d_target: Some(1), targets: Targets::Ahead, ..Default::default() };
    /// let mut learner = config.build::<f32>()?;
    /// let mut prev = 0.0f32;
    /// for t in 0..500 {
    ///     let x = (t as f32 * 0.3).sin();
    ///     learner.step_ahead(&[x, x - prev], &[x - prev])?;
    ///     prev = x;
    /// }
    /// assert!(learner.updates() > 0);
    /// # Ok::<(), tbptt::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Learner::step`], for `x` and `realized`; [`Error::Config`] if the learner was not
    /// built for [`Targets::Ahead`].
    pub fn step_ahead(&mut self, x: &[T], realized: &[T]) -> Result<Prediction<T>> {
        if self.config.targets != Targets::Ahead {
            return Err(Error::config(
                "targets",
                "this learner was not built for targets revealed ahead",
            ));
        }
        self.check("step_ahead (input)", x, self.pending_x.len())?;
        self.check("step_ahead (target)", realized, self.y.len())?;
        self.advance(x, realized)
    }

    /// The forecasting step shared by [`Learner::step`] and [`Learner::step_ahead`], after
    /// the checks.
    fn advance(&mut self, x: &[T], realized: &[T]) -> Result<Prediction<T>> {
        self.poll();
        let error = (self.events > 0).then(|| self.score(realized));
        self.pre.copy_from_slice(&self.state);
        self.model
            .step_to(x, &mut self.state, &mut self.ws, &mut self.y);
        if self.has_pending {
            self.ring.push(&self.pending_x, realized, &self.pending_s);
        }
        self.pending_x.copy_from_slice(x);
        self.pending_s.copy_from_slice(&self.pre);
        self.has_pending = true;
        self.finish(error)
    }

    /// One event with an explicit target: advances the live state with `x`, predicts, scores
    /// the prediction against `target`, records the pair and trains when due. No allocation.
    ///
    /// # Errors
    /// As [`Learner::step`], for `x` and `target`.
    pub fn step_supervised(&mut self, x: &[T], target: &[T]) -> Result<Prediction<T>> {
        if self.config.targets != Targets::Explicit {
            return Err(Error::config(
                "targets",
                "this learner forecasts its input; use step",
            ));
        }
        self.check("step_supervised (input)", x, self.pending_x.len())?;
        self.check("step_supervised (target)", target, self.y.len())?;
        self.poll();
        self.pre.copy_from_slice(&self.state);
        self.model
            .step_to(x, &mut self.state, &mut self.ws, &mut self.y);
        let error = Some(self.score(target));
        self.ring.push(x, target, &self.pre);
        self.finish(error)
    }

    /// Swaps in the newest weights a background trainer has published (no-op inline).
    fn poll(&mut self) {
        if let Mode::Background(b) = &mut self.mode {
            b.poll(&mut self.model);
        }
    }

    fn finish(&mut self, error: Option<T>) -> Result<Prediction<T>> {
        let index = self.events;
        self.events += 1;
        let due = self.ring.len() >= self.window_len()
            && self.events.is_multiple_of(self.config.trainer.every as u64);
        let update = match (&mut self.mode, due) {
            (_, false) => None,
            (Mode::Inline(t), true) => Some(t.update(&mut self.model, &self.ring)?),
            (Mode::Background(b), true) => {
                if !b.submit(&self.ring, self.wait) {
                    self.skipped += 1;
                }
                None
            }
        };
        Ok(Prediction {
            index,
            error,
            update,
        })
    }

    /// Forecast from the current state without changing anything: the output for input `x`
    /// as if it were the next event. Allocates its own state copy; for inspection, not the
    /// hot path.
    ///
    /// # Errors
    /// As [`Learner::step`].
    pub fn peek(&self, x: &[T]) -> Result<Vec<T>> {
        self.check("peek", x, self.pending_x.len())?;
        let mut s = self.state.clone();
        let mut ws = StepWorkspace::new(self.model.config());
        let mut y = vec![T::zero(); self.y.len()];
        self.model.step_to(x, &mut s, &mut ws, &mut y);
        Ok(y)
    }
}

enum Mode<T: Float> {
    Inline(Box<Trainer<T>>),
    Background(Box<Background<T>>),
}

impl<T: Float> Clone for Mode<T> {
    /// A clone of a background learner trains inline (threads are not cloned).
    fn clone(&self) -> Self {
        match self {
            Mode::Inline(t) => Mode::Inline(t.clone()),
            Mode::Background(b) => Mode::Inline(Box::new(b.snapshot.clone())),
        }
    }
}

impl<T: Float> std::fmt::Debug for Mode<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Inline(_) => f.write_str("Inline"),
            Mode::Background(b) => write!(f, "Background {{ updates: {} }}", b.updates),
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_before_allocation() {
        let c = LearnerConfig {
            d_input: 65_536,
            trainer: TrainerConfig {
                truncation: (1 << 20).into(),
                every: 8,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("buffer values"), "{e}");
        assert!(c.build::<f32>().is_err());
        assert!(LearnerConfig::default().validate().is_ok());
    }
}
