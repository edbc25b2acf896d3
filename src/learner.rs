//! The online learner: predicts every event at once, keeps the last `T` pairs, and trains by
//! TBPTT(k, T) every `k` events.
//!
//! Per event `x[t]` (forecasting mode, [`Learner::step`]):
//! 1. the prediction made at `t − 1` is scored against `x[t]`;
//! 2. the live state advances with `x[t]` and the forecast of `x[t+1]` is made at once (the
//!    live state is carried forward, never recomputed);
//! 3. the pair `(x[t−1], x[t])` enters the ring with the live state saved before `x[t−1]`;
//! 4. when the ring holds `T` pairs and `(t + 1) % k == 0`, one update
//!    ([`crate::tbptt::Trainer::update`]).
//!
//! With explicit targets ([`Learner::step_supervised`]) the pair `(x[t], y[t])` enters the ring
//! at once and the prediction made from `x[t]` is scored against `y[t]`.

use crate::loss::Loss;
use crate::model::{Model, ModelConfig, StepWorkspace};
use crate::optim::OptimizerConfig;
use crate::ring::Ring;
use crate::tbptt::{LossSteps, Trainer, TrainerConfig, UpdateStats};
use crate::{CellKind, Error, Float, Result};
use serde::{Deserialize, Serialize};

/// What the learner predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Targets {
    /// The next event's input values (one-step-ahead forecasting). Default.
    #[default]
    NextInput,
    /// Explicit target values given with each event ([`Learner::step_supervised`]).
    Explicit,
}

/// Everything that defines a learner. Fields state their default.
///
/// # Example
/// ```
/// use tbptt::{CellKind, LearnerConfig};
/// let config = LearnerConfig { cell: CellKind::Lstm, d_hidden: 16, window: 16, every: 4, ..Default::default() };
/// let learner = config.build::<f32>().unwrap();
/// assert_eq!(learner.model().config().d_hidden, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
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
    /// Window length `T` (k2). Default: 32.
    pub window: usize,
    /// Update period `k` (k1), in events. Default: 8.
    pub every: usize,
    /// Steps the loss counts. Default: `k`.
    pub loss_steps: LossSteps,
    /// Loss. Default: MSE.
    pub loss: Loss,
    /// Optimizer. Default: Adam, learning rate 3e-3.
    pub optimizer: OptimizerConfig,
    /// Global gradient-norm clip; `None` = off. Default: 1.0.
    pub clip: Option<f64>,
    /// Seed of the weight initialization. Default: 0.
    pub seed: u64,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        let t = TrainerConfig::default();
        LearnerConfig {
            cell: CellKind::Gru,
            d_input: 1,
            d_hidden: 32,
            layers: 1,
            d_target: None,
            targets: Targets::NextInput,
            window: t.window,
            every: t.every,
            loss_steps: t.loss_steps,
            loss: t.loss,
            optimizer: t.optimizer,
            clip: t.clip,
            seed: 0,
        }
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
            (Targets::Explicit, Some(d)) => d,
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

    /// The training side's settings.
    pub fn trainer_config(&self) -> TrainerConfig {
        TrainerConfig {
            window: self.window,
            every: self.every,
            loss_steps: self.loss_steps,
            loss: self.loss,
            optimizer: self.optimizer.clone(),
            clip: self.clip,
        }
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        self.model_config()?;
        self.trainer_config().validate()
    }

    /// Builds a learner with freshly initialized weights.
    ///
    /// # Errors
    /// [`Error::Config`] if a setting is invalid.
    pub fn build<T: Float>(&self) -> Result<Learner<T>> {
        Learner::new(self.clone())
    }
}

/// The result of one event.
#[derive(Debug, PartialEq)]
pub struct Prediction<'a, T> {
    /// 0-based index of the event.
    pub index: u64,
    /// The loss of the prediction made for this event (the forecast made at the previous
    /// event, or with explicit targets the prediction from this event's input), averaged over
    /// components as the loss's mean defines; `None` for the first event of a forecast stream.
    pub error: Option<T>,
    /// The model's output now: the forecast of the next event (or of this event's target).
    pub forecast: &'a [T],
    /// The update made after this event, if one was due.
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
///     assert_eq!(p.forecast.len(), 1);
/// }
/// assert!(learner.updates() > 0);
/// ```
#[derive(Clone, Debug)]
pub struct Learner<T: Float = f32> {
    config: LearnerConfig,
    model: Model<T>,
    trainer: Trainer<T>,
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
}

impl<T: Float> Learner<T> {
    /// A learner with weights initialized from `config.seed`.
    ///
    /// # Errors
    /// [`Error::Config`] if a setting is invalid.
    pub fn new(config: LearnerConfig) -> Result<Self> {
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
        let trainer = Trainer::new(&mc, config.trainer_config())?;
        let s = mc.state_len();
        let z = |n: usize| vec![T::zero(); n];
        Ok(Learner {
            ring: Ring::new(config.window, mc.d_input, mc.d_output, s),
            state: z(s),
            pre: z(s),
            ws: StepWorkspace::new(&mc),
            y: z(mc.d_output),
            grad_scratch: z(mc.d_output),
            pending_x: z(mc.d_input),
            pending_s: z(s),
            has_pending: false,
            events: 0,
            model,
            trainer,
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

    /// The training side (optimizer state, counters, last window's buffers).
    pub fn trainer(&self) -> &Trainer<T> {
        &self.trainer
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

    /// Updates applied.
    pub fn updates(&self) -> u64 {
        self.trainer.updates()
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
        let loss = self.config.loss;
        let d = self.y.len();
        let v = loss.step_to(&self.y, target, &mut self.grad_scratch);
        v / T::of_usize(loss.normalizer(1, d))
    }

    /// One event in forecasting mode: scores the previous forecast against `x`, advances the
    /// live state, forecasts the next event, records the pair and trains when due. No
    /// allocation.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` has the wrong length, [`Error::NonFinite`] if a value is NaN
    /// or infinite, [`Error::Config`] if the learner was built for explicit targets. On error
    /// nothing changes.
    pub fn step(&mut self, x: &[T]) -> Result<Prediction<'_, T>> {
        if self.config.targets != Targets::NextInput {
            return Err(Error::config(
                "targets",
                "this learner needs step_supervised",
            ));
        }
        self.check("step", x, self.pending_x.len())?;
        let error = (self.events > 0).then(|| self.score(x));
        self.pre.copy_from_slice(&self.state);
        self.model
            .step_to(x, &mut self.state, &mut self.ws, &mut self.y);
        if self.has_pending {
            self.ring.push(&self.pending_x, x, &self.pending_s);
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
    pub fn step_supervised(&mut self, x: &[T], target: &[T]) -> Result<Prediction<'_, T>> {
        if self.config.targets != Targets::Explicit {
            return Err(Error::config(
                "targets",
                "this learner forecasts its input; use step",
            ));
        }
        self.check("step_supervised (input)", x, self.pending_x.len())?;
        self.check("step_supervised (target)", target, self.y.len())?;
        self.pre.copy_from_slice(&self.state);
        self.model
            .step_to(x, &mut self.state, &mut self.ws, &mut self.y);
        let error = Some(self.score(target));
        self.ring.push(x, target, &self.pre);
        self.finish(error)
    }

    fn finish(&mut self, error: Option<T>) -> Result<Prediction<'_, T>> {
        let index = self.events;
        self.events += 1;
        let due =
            self.ring.len() >= self.config.window && self.events % self.config.every as u64 == 0;
        let update = if due {
            Some(self.trainer.update(&mut self.model, &self.ring)?)
        } else {
            None
        };
        Ok(Prediction {
            index,
            error,
            forecast: &self.y,
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
