//! PyTorch-exact optimizers (SGD, Adam, AdamW, RMSprop) over one flat parameter buffer,
//! and gradient-norm clipping as `torch.nn.utils.clip_grad_norm_`.
//!
//! Each update follows the single-tensor (`foreach=False`) code path of `torch.optim` step
//! by step, in the float arithmetic of `T`: hyper-parameter expressions that PyTorch
//! computes on Python floats (`1 - beta1`, `lr / bias_correction1`, `1 - lr * weight_decay`,
//! …) are computed in `f64` and then rounded to `T`, as PyTorch does; the tensor operations
//! are evaluated in `T` in PyTorch's order, fused where PyTorch's vectorized CPU kernels
//! fuse (`add(.., alpha)` and `lerp`).

mod adam;
mod rmsprop;
mod sgd;

use adam::Adam;
use rmsprop::RmsProp;
use sgd::Sgd;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::nn::simd::Level;
use crate::{Error, Float, Result};

fn default_lr() -> f64 {
    3e-3
}
fn default_sgd_lr() -> f64 {
    5e-2
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_adamw_weight_decay() -> f64 {
    1e-2
}
fn default_alpha() -> f64 {
    0.99
}

/// Which optimizer updates the parameters, with its hyper-parameters.
///
/// Defaults are PyTorch's, except the learning rate: `3e-3` (`5e-2` for SGD) when omitted.
/// Serialized (serde) as an internally tagged object whose `kind` is `sgd`, `adam`,
/// `adamw` or `rmsprop`; omitted fields take the defaults documented on each field, e.g.
/// `{"kind":"adam","lr":0.001}`. Parsed from `sgd`, `adam`, `adamw`, `rmsprop`, optionally
/// followed by `:LR` (see [`FromStr`](#impl-FromStr-for-OptimizerConfig)).
///
/// # Example
/// ```
/// use tbptt::nn::optim::OptimizerConfig;
///
/// let adam = OptimizerConfig::default();
/// assert_eq!(adam, OptimizerConfig::adam(3e-3));
/// assert_eq!(adam.lr(), 3e-3);
///
/// let sgd = OptimizerConfig::Sgd { lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0 };
/// sgd.validate()?;
/// assert_eq!("sgd".parse::<OptimizerConfig>()?, OptimizerConfig::sgd(5e-2));
/// assert_eq!("adamw:1e-3".parse::<OptimizerConfig>()?, OptimizerConfig::adamw(1e-3, 1e-2));
/// # Ok::<(), tbptt::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent with optional (Nesterov) momentum, as `torch.optim.SGD`
    /// (dampening 0).
    Sgd {
        /// Learning rate (parameter units per gradient unit); must be positive and finite.
        /// Default when omitted: `5e-2`.
        #[serde(default = "default_sgd_lr")]
        lr: f64,
        /// Momentum factor, `>= 0`; `0` disables the momentum buffer. Default: `0`.
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum; requires `momentum > 0`. Default: `false`.
        #[serde(default)]
        nesterov: bool,
        /// L2 penalty added to the gradient (`g += weight_decay * p`), `>= 0`. Default: `0`.
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with L2 weight decay added to the gradient, as `torch.optim.Adam`
    /// (`amsgrad=False`).
    Adam {
        /// Learning rate; must be positive and finite. Default when omitted: `3e-3`.
        #[serde(default = "default_lr")]
        lr: f64,
        /// Decay rate of the first-moment average, in `[0, 1)`. Default: `0.9`.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Decay rate of the second-moment average, in `[0, 1)`. Default: `0.999`.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Term added to the denominator, `> 0`. Default: `1e-8`.
        #[serde(default = "default_eps")]
        eps: f64,
        /// L2 penalty added to the gradient (`g += weight_decay * p`), `>= 0`. Default: `0`.
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with decoupled weight decay, as `torch.optim.AdamW`.
    #[serde(rename = "adamw")]
    AdamW {
        /// Learning rate; must be positive and finite. Default when omitted: `3e-3`.
        #[serde(default = "default_lr")]
        lr: f64,
        /// Decay rate of the first-moment average, in `[0, 1)`. Default: `0.9`.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Decay rate of the second-moment average, in `[0, 1)`. Default: `0.999`.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Term added to the denominator, `> 0`. Default: `1e-8`.
        #[serde(default = "default_eps")]
        eps: f64,
        /// Decoupled decay: each step first multiplies the parameters by
        /// `1 - lr * weight_decay`; `>= 0`. Default: `1e-2`.
        #[serde(default = "default_adamw_weight_decay")]
        weight_decay: f64,
    },
    /// RMSprop, as `torch.optim.RMSprop`.
    #[serde(rename = "rmsprop")]
    RmsProp {
        /// Learning rate; must be positive and finite. Default when omitted: `3e-3`.
        #[serde(default = "default_lr")]
        lr: f64,
        /// Smoothing constant of the squared-gradient average, in `[0, 1)`. Default: `0.99`.
        #[serde(default = "default_alpha")]
        alpha: f64,
        /// Term added to the denominator, `> 0`. Default: `1e-8`.
        #[serde(default = "default_eps")]
        eps: f64,
        /// Momentum factor, `>= 0`; `0` disables the momentum buffer. Default: `0`.
        #[serde(default)]
        momentum: f64,
        /// Normalize by the estimated variance of the gradient instead of its raw second
        /// moment. Default: `false`.
        #[serde(default)]
        centered: bool,
        /// L2 penalty added to the gradient (`g += weight_decay * p`), `>= 0`. Default: `0`.
        #[serde(default)]
        weight_decay: f64,
    },
}

impl Default for OptimizerConfig {
    /// Adam with the project's learning rate `3e-3` and PyTorch's other defaults.
    fn default() -> Self {
        Self::adam(default_lr())
    }
}

impl OptimizerConfig {
    /// Plain SGD with learning rate `lr` (no momentum, no weight decay).
    pub fn sgd(lr: f64) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// Adam with learning rate `lr` and PyTorch's defaults: betas `(0.9, 0.999)`, eps `1e-8`,
    /// no weight decay.
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig::Adam {
            lr,
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: 0.0,
        }
    }

    /// AdamW with learning rate `lr`, decoupled `weight_decay` (PyTorch's default is `1e-2`)
    /// and PyTorch's defaults otherwise: betas `(0.9, 0.999)`, eps `1e-8`.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        OptimizerConfig::AdamW {
            lr,
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay,
        }
    }

    /// RMSprop with learning rate `lr` and PyTorch's defaults: alpha `0.99`, eps `1e-8`,
    /// no momentum, not centered, no weight decay.
    pub fn rmsprop(lr: f64) -> Self {
        OptimizerConfig::RmsProp {
            lr,
            alpha: default_alpha(),
            eps: default_eps(),
            momentum: 0.0,
            centered: false,
            weight_decay: 0.0,
        }
    }

    /// The optimizer's name as [`FromStr`] and serde spell it: `sgd`, `adam`, `adamw` or
    /// `rmsprop`.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Sgd { .. } => "sgd",
            OptimizerConfig::Adam { .. } => "adam",
            OptimizerConfig::AdamW { .. } => "adamw",
            OptimizerConfig::RmsProp { .. } => "rmsprop",
        }
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerConfig::Sgd { lr, .. }
            | OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::AdamW { lr, .. }
            | OptimizerConfig::RmsProp { lr, .. } => lr,
        }
    }

    /// The same configuration with learning rate `lr` (not validated here).
    pub fn with_lr(mut self, lr: f64) -> Self {
        *self.lr_mut() = lr;
        self
    }

    fn lr_mut(&mut self) -> &mut f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. }
            | OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::AdamW { lr, .. }
            | OptimizerConfig::RmsProp { lr, .. } => lr,
        }
    }

    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending field: `lr` not positive and finite;
    /// `beta1`, `beta2` or `alpha` outside `[0, 1)`; `eps` not positive and finite;
    /// `momentum` negative or not finite; `nesterov` without `momentum > 0`;
    /// `weight_decay` negative or not finite.
    pub fn validate(&self) -> Result<()> {
        check_lr(self.lr())?;
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                check_non_negative("momentum", momentum)?;
                if nesterov && momentum <= 0.0 {
                    return Err(Error::config(
                        "nesterov",
                        "Nesterov momentum requires momentum > 0",
                    ));
                }
                check_non_negative("weight_decay", weight_decay)
            }
            OptimizerConfig::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            }
            | OptimizerConfig::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                check_unit("beta1", beta1)?;
                check_unit("beta2", beta2)?;
                check_positive("eps", eps)?;
                check_non_negative("weight_decay", weight_decay)
            }
            OptimizerConfig::RmsProp {
                alpha,
                eps,
                momentum,
                weight_decay,
                ..
            } => {
                check_unit("alpha", alpha)?;
                check_positive("eps", eps)?;
                check_non_negative("momentum", momentum)?;
                check_non_negative("weight_decay", weight_decay)
            }
        }
    }
}

fn check_lr(lr: f64) -> Result<()> {
    check_positive("lr", lr)
}

fn check_positive(field: &'static str, x: f64) -> Result<()> {
    if x > 0.0 && x.is_finite() {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be positive and finite, got {x}"),
        ))
    }
}

fn check_non_negative(field: &'static str, x: f64) -> Result<()> {
    if x >= 0.0 && x.is_finite() {
        Ok(())
    } else {
        Err(Error::config(
            field,
            format!("must be >= 0 and finite, got {x}"),
        ))
    }
}

fn check_unit(field: &'static str, x: f64) -> Result<()> {
    if (0.0..1.0).contains(&x) {
        Ok(())
    } else {
        Err(Error::config(field, format!("must be in [0, 1), got {x}")))
    }
}

impl FromStr for OptimizerConfig {
    type Err = Error;

    /// Parses `sgd`, `adam`, `adamw` or `rmsprop` (ASCII case ignored), optionally followed
    /// by `:LR`, e.g. `adam:1e-3`. Unspecified hyper-parameters take PyTorch's defaults;
    /// the learning rate defaults to `5e-2` for SGD and `3e-3` for the others.
    ///
    /// # Errors
    /// [`Error::Config`] with field `"optimizer"` for an unknown name or a malformed
    /// learning rate, or field `"lr"` for a learning rate that is not positive and finite.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (name, lr) = match s.split_once(':') {
            Some((name, lr)) => (name.trim(), Some(lr.trim())),
            None => (s, None),
        };
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        let config = if is("sgd") {
            OptimizerConfig::sgd(default_sgd_lr())
        } else if is("adam") {
            OptimizerConfig::adam(default_lr())
        } else if is("adamw") {
            OptimizerConfig::adamw(default_lr(), default_adamw_weight_decay())
        } else if is("rmsprop") {
            OptimizerConfig::rmsprop(default_lr())
        } else {
            return Err(Error::config(
                "optimizer",
                format!(
                    "unknown optimizer {s:?}: expected sgd, adam, adamw or rmsprop, \
                     optionally with a learning rate as in adam:1e-3"
                ),
            ));
        };
        match lr {
            None => Ok(config),
            Some(text) => {
                let lr = text.parse::<f64>().map_err(|_| {
                    Error::config(
                        "optimizer",
                        format!(
                            "bad learning rate {text:?} in {s:?}: expected a number, \
                             as in adam:1e-3"
                        ),
                    )
                })?;
                check_lr(lr)?;
                Ok(config.with_lr(lr))
            }
        }
    }
}

/// An optimizer with its state, updating one flat parameter buffer in place.
///
/// All state is allocated once by [`Optimizer::new`]; [`Optimizer::step`] does not
/// allocate. The state (step count and PyTorch's per-parameter buffers) serializes with
/// serde, so a run can be checkpointed and resumed.
///
/// # Example
/// ```
/// use tbptt::nn::optim::{Optimizer, OptimizerConfig};
///
/// // SGD with lr 0.1 on p = 1 with gradient 2: p = 1 - 0.1 * 2.
/// let mut sgd = Optimizer::<f64>::new(OptimizerConfig::sgd(0.1), 1)?;
/// let mut p = [1.0];
/// sgd.step(&mut p, &mut [2.0])?;
/// assert!((p[0] - 0.8).abs() < 1e-15);
///
/// // Adam's first step moves each parameter by about lr against its gradient's sign.
/// let mut adam = Optimizer::<f32>::new(OptimizerConfig::adam(0.01), 2)?;
/// let mut p = [1.0f32, 1.0];
/// adam.step(&mut p, &mut [3.0, -0.5])?;
/// assert!((p[0] - 0.99).abs() < 1e-6 && (p[1] - 1.01).abs() < 1e-6);
/// assert_eq!(adam.steps(), 1);
/// assert!(adam.step(&mut p, &mut [1.0]).is_err()); // wrong length
/// # Ok::<(), tbptt::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer<T> {
    /// Number of updates taken since creation or the last reset.
    step: u64,
    /// Length of the parameter buffer.
    n_params: usize,
    /// The update rule, with its hyper-parameters and its own state buffers.
    rule: Rule<T>,
}

/// Each optimizer owns its state (in its own file); Adam and AdamW share one.
#[derive(Clone, Debug, PartialEq)]
enum Rule<T> {
    Sgd(Sgd<T>),
    Adam(Adam<T>),
    RmsProp(RmsProp<T>),
}

/// PyTorch's `lerp(start, end, w)`: `start + w (end - start)` when `|w| < 0.5`, else
/// `end - (end - start)(1 - w)`, fused as its vectorized CPU kernel computes it.
#[inline(always)]
fn lerp<T: Float>(start: T, end: T, w: T, w_small: bool, w_minus_1: T) -> T {
    if w_small {
        w.fma(end - start, start)
    } else {
        w_minus_1.fma(end - start, end)
    }
}

impl<T: Float> Optimizer<T> {
    /// Creates an optimizer for `n_params` parameters, allocating all its state (zeros).
    ///
    /// # Errors
    /// Whatever [`OptimizerConfig::validate`] rejects.
    pub fn new(config: OptimizerConfig, n_params: usize) -> Result<Self> {
        config.validate()?;
        let buffers = state_lens(&config, n_params).map(|len| vec![T::cast(0.0); len]);
        Ok(Optimizer {
            step: 0,
            n_params,
            rule: Rule::assemble(config, buffers),
        })
    }

    /// Number of updates taken since creation or the last [`Optimizer::reset`].
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Number of parameters the optimizer updates.
    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Sets the learning rate for the following steps (e.g. for a schedule), keeping the
    /// state. Not validated here: pass a positive finite value.
    pub fn set_lr(&mut self, lr: f64) {
        match &mut self.rule {
            Rule::Sgd(o) => o.lr = lr,
            Rule::Adam(o) => o.lr = lr,
            Rule::RmsProp(o) => o.lr = lr,
        }
    }

    /// Zeroes the state and the step count, as a freshly created optimizer.
    pub fn reset(&mut self) {
        self.step = 0;
        let zero = T::cast(0.0);
        match &mut self.rule {
            Rule::Sgd(o) => o.momentum_buffer.fill(zero),
            Rule::Adam(o) => {
                o.exp_avg.fill(zero);
                o.exp_avg_sq.fill(zero);
            }
            Rule::RmsProp(o) => {
                o.square_avg.fill(zero);
                o.grad_avg.fill(zero);
                o.momentum_buffer.fill(zero);
            }
        }
    }

    /// Takes one update, `params -= …`, exactly as the corresponding `torch.optim`
    /// optimizer's single-tensor (`foreach=False`) step, in the arithmetic of `T`.
    ///
    /// `grads` is d(loss)/d(params). It may be modified: where the optimizer adds L2 weight
    /// decay to the gradient (SGD, Adam, RMSprop with `weight_decay > 0`), the decayed
    /// gradient is written back into it. Does not allocate.
    ///
    /// # Errors
    /// [`Error::Shape`] if `params` or `grads` is not `n_params` long; nothing is updated
    /// then.
    pub fn step(&mut self, params: &mut [T], grads: &mut [T]) -> Result<()> {
        let n = self.n_params;
        if params.len() != n {
            return Err(Error::len("Optimizer::step (params)", n, params.len()));
        }
        if grads.len() != n {
            return Err(Error::len("Optimizer::step (grads)", n, grads.len()));
        }
        self.step_at(crate::nn::simd::level(), params, grads);
        Ok(())
    }

    /// [`Optimizer::step`] in the copy for `level`, which the CPU must support; lengths
    /// already checked.
    pub(crate) fn step_at(&mut self, level: Level, params: &mut [T], grads: &mut [T]) {
        match level {
            // SAFETY: `level` is at most what the CPU supports (`simd::level`).
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.step_avx512(params, grads) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.step_avx2(params, grads) },
            _ => self.step_impl(params, grads),
        }
    }

    /// [`Optimizer::step`] compiled for AVX2 + FMA: `mul_add` becomes one instruction and the
    /// loops vectorize (in the baseline copy each `mul_add` is a library call).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn step_avx2(&mut self, params: &mut [T], grads: &mut [T]) {
        self.step_impl(params, grads);
    }

    /// [`Optimizer::step`] compiled for AVX-512: the same arithmetic in 512-bit vectors.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn step_avx512(&mut self, params: &mut [T], grads: &mut [T]) {
        self.step_impl(params, grads);
    }

    /// The update proper; lengths already checked. The arithmetic is the same in every copy.
    #[inline(always)]
    fn step_impl(&mut self, params: &mut [T], grads: &mut [T]) {
        self.step += 1;
        match &mut self.rule {
            Rule::Sgd(o) => o.step(self.step, params, grads),
            Rule::Adam(o) => o.step(self.step, params, grads),
            Rule::RmsProp(o) => o.step(params, grads),
        }
    }
}

/// The stored form of an [`Optimizer`], as checkpoints have always held it: the
/// configuration, the counters and all five buffers by name (empty where unused).
#[derive(Serialize)]
struct OptimizerRef<'a, T> {
    config: OptimizerConfig,
    step: u64,
    n_params: usize,
    momentum_buffer: &'a [T],
    exp_avg: &'a [T],
    exp_avg_sq: &'a [T],
    square_avg: &'a [T],
    grad_avg: &'a [T],
}

/// [`OptimizerRef`], owned, for reading.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerRepr<T> {
    config: OptimizerConfig,
    step: u64,
    n_params: usize,
    momentum_buffer: Vec<T>,
    exp_avg: Vec<T>,
    exp_avg_sq: Vec<T>,
    square_avg: Vec<T>,
    grad_avg: Vec<T>,
}

impl<T: Serialize> Serialize for Optimizer<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let [momentum_buffer, exp_avg, exp_avg_sq, square_avg, grad_avg] = self.buffers();
        OptimizerRef {
            config: self.config(),
            step: self.step,
            n_params: self.n_params,
            momentum_buffer,
            exp_avg,
            exp_avg_sq,
            square_avg,
            grad_avg,
        }
        .serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Optimizer<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = OptimizerRepr::<T>::deserialize(d)?;
        Optimizer::from_repr(r).map_err(serde::de::Error::custom)
    }
}

impl<T> Optimizer<T> {
    /// The configuration (with the current learning rate).
    pub fn config(&self) -> OptimizerConfig {
        match &self.rule {
            Rule::Sgd(o) => OptimizerConfig::Sgd {
                lr: o.lr,
                momentum: o.momentum,
                nesterov: o.nesterov,
                weight_decay: o.weight_decay,
            },
            Rule::Adam(o) if o.decoupled => OptimizerConfig::AdamW {
                lr: o.lr,
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
                weight_decay: o.weight_decay,
            },
            Rule::Adam(o) => OptimizerConfig::Adam {
                lr: o.lr,
                beta1: o.beta1,
                beta2: o.beta2,
                eps: o.eps,
                weight_decay: o.weight_decay,
            },
            Rule::RmsProp(o) => OptimizerConfig::RmsProp {
                lr: o.lr,
                alpha: o.alpha,
                eps: o.eps,
                momentum: o.momentum,
                centered: o.centered,
                weight_decay: o.weight_decay,
            },
        }
    }

    /// The state buffers, in the stored order: momentum buffer, first and second moment
    /// averages, squared-gradient and gradient averages (empty where unused).
    fn buffers(&self) -> [&[T]; 5] {
        match &self.rule {
            Rule::Sgd(o) => [&o.momentum_buffer, &[], &[], &[], &[]],
            Rule::Adam(o) => [&[], &o.exp_avg, &o.exp_avg_sq, &[], &[]],
            Rule::RmsProp(o) => [&o.momentum_buffer, &[], &[], &o.square_avg, &o.grad_avg],
        }
    }

    /// A stored optimizer whose buffers fit its configuration and parameter count.
    fn from_repr(r: OptimizerRepr<T>) -> Result<Self> {
        r.config.validate()?;
        let names = [
            "momentum_buffer",
            "exp_avg",
            "exp_avg_sq",
            "square_avg",
            "grad_avg",
        ];
        let stored = [
            r.momentum_buffer,
            r.exp_avg,
            r.exp_avg_sq,
            r.square_avg,
            r.grad_avg,
        ];
        let want = state_lens(&r.config, r.n_params);
        for ((name, buf), want) in names.iter().zip(&stored).zip(want) {
            if buf.len() != want {
                return Err(Error::config(
                    "optimizer",
                    format!("stored {name} holds {} values, expected {want}", buf.len()),
                ));
            }
        }
        Ok(Optimizer {
            step: r.step,
            n_params: r.n_params,
            rule: Rule::assemble(r.config, stored),
        })
    }
}

/// Lengths of the state buffers a configuration needs, in the stored order: momentum
/// buffer, first and second moment averages, squared-gradient and gradient averages.
fn state_lens(config: &OptimizerConfig, n: usize) -> [usize; 5] {
    let when = |b: bool| if b { n } else { 0 };
    match *config {
        OptimizerConfig::Sgd { momentum, .. } => [when(momentum != 0.0), 0, 0, 0, 0],
        OptimizerConfig::Adam { .. } | OptimizerConfig::AdamW { .. } => [0, n, n, 0, 0],
        OptimizerConfig::RmsProp {
            momentum, centered, ..
        } => [when(momentum > 0.0), 0, 0, n, when(centered)],
    }
}

impl<T> Rule<T> {
    /// The rule of `config` with its buffers, sized by [`state_lens`].
    fn assemble(config: OptimizerConfig, buffers: [Vec<T>; 5]) -> Self {
        let [momentum_buffer, exp_avg, exp_avg_sq, square_avg, grad_avg] = buffers;
        match config {
            OptimizerConfig::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => Rule::Sgd(Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
                momentum_buffer,
            }),
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            }
            | OptimizerConfig::AdamW {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => Rule::Adam(Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: matches!(config, OptimizerConfig::AdamW { .. }),
                exp_avg,
                exp_avg_sq,
            }),
            OptimizerConfig::RmsProp {
                lr,
                alpha,
                eps,
                momentum,
                centered,
                weight_decay,
            } => Rule::RmsProp(RmsProp {
                lr,
                alpha,
                eps,
                momentum,
                centered,
                weight_decay,
                square_avg,
                grad_avg,
                momentum_buffer,
            }),
        }
    }
}

/// The global L2 norm `sqrt(Σ g²)` of a gradient. The sum of squares is accumulated in
/// `f64` (in four interleaved partial sums) and rounded to `T` before the square root, so
/// that an `f32` sum over millions of parameters is as accurate as PyTorch's cascaded
/// reduction. Does not allocate.
pub fn grad_norm<T: Float>(g: &[T]) -> T {
    T::cast(sum_sq(g)).sqrt()
}

#[inline]
fn sum_sq<T: Float>(g: &[T]) -> f64 {
    let mut acc = [0.0f64; 4];
    let mut chunks = g.chunks_exact(4);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let x = x.as_f64();
            *a += x * x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        let x = x.as_f64();
        *a += x * x;
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3])
}

/// Clips a gradient's global L2 norm, as `torch.nn.utils.clip_grad_norm_` (norm type 2),
/// and returns the norm before clipping.
///
/// With `total` = [`grad_norm`]`(grads)` and `coef = max_norm / (total + 1e-6)` (in `T`), the
/// gradient is scaled by `coef` when `coef < 1`. A non-finite `total` leaves the gradient
/// untouched (and is returned, so the caller can skip the update). `max_norm` should be
/// positive. Does not allocate.
///
/// # Example
/// ```
/// use tbptt::nn::optim::clip_grad_norm;
///
/// let mut g = [3.0f32, 4.0];
/// assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
/// assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
/// ```
pub fn clip_grad_norm<T: Float>(grads: &mut [T], max_norm: T) -> T {
    let total = grad_norm(grads);
    if !total.finite() {
        return total;
    }
    let coef = max_norm / (total + T::cast(1e-6));
    if coef < T::cast(1.0) {
        for g in grads.iter_mut() {
            *g *= coef;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(close(*a, *b, tol), "{what}[{i}]: got {a}, want {b}");
        }
    }

    /// An independent f64 reference of the four optimizers, written from the textbook
    /// formulas (plain, unfused arithmetic), one parameter at a time.
    struct Reference {
        config: OptimizerConfig,
        t: u64,
        buf: Vec<f64>,
        m: Vec<f64>,
        v: Vec<f64>,
        ga: Vec<f64>,
    }

    impl Reference {
        fn new(config: OptimizerConfig, n: usize) -> Self {
            Reference {
                config,
                t: 0,
                buf: vec![0.0; n],
                m: vec![0.0; n],
                v: vec![0.0; n],
                ga: vec![0.0; n],
            }
        }

        fn step(&mut self, p: &mut [f64], grad: &[f64]) {
            self.t += 1;
            let t = self.t as i32;
            for i in 0..p.len() {
                let mut g = grad[i];
                match self.config {
                    OptimizerConfig::Sgd {
                        lr,
                        momentum,
                        nesterov,
                        weight_decay,
                    } => {
                        g += weight_decay * p[i];
                        if momentum != 0.0 {
                            self.buf[i] = if t == 1 {
                                g
                            } else {
                                momentum * self.buf[i] + g
                            };
                            g = if nesterov {
                                g + momentum * self.buf[i]
                            } else {
                                self.buf[i]
                            };
                        }
                        p[i] -= lr * g;
                    }
                    OptimizerConfig::Adam {
                        lr,
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    }
                    | OptimizerConfig::AdamW {
                        lr,
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                    } => {
                        if matches!(self.config, OptimizerConfig::AdamW { .. }) {
                            p[i] *= 1.0 - lr * weight_decay;
                        } else {
                            g += weight_decay * p[i];
                        }
                        self.m[i] = beta1 * self.m[i] + (1.0 - beta1) * g;
                        self.v[i] = beta2 * self.v[i] + (1.0 - beta2) * g * g;
                        let m_hat = self.m[i] / (1.0 - beta1.powi(t));
                        let v_hat = self.v[i] / (1.0 - beta2.powi(t));
                        p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
                    }
                    OptimizerConfig::RmsProp {
                        lr,
                        alpha,
                        eps,
                        momentum,
                        centered,
                        weight_decay,
                    } => {
                        g += weight_decay * p[i];
                        self.v[i] = alpha * self.v[i] + (1.0 - alpha) * g * g;
                        let var = if centered {
                            self.ga[i] = alpha * self.ga[i] + (1.0 - alpha) * g;
                            self.v[i] - self.ga[i] * self.ga[i]
                        } else {
                            self.v[i]
                        };
                        let avg = var.sqrt() + eps;
                        if momentum > 0.0 {
                            self.buf[i] = momentum * self.buf[i] + g / avg;
                            p[i] -= lr * self.buf[i];
                        } else {
                            p[i] -= lr * g / avg;
                        }
                    }
                }
            }
        }
    }

    /// Gradient of the test problem f(p) = Σ_i (i + 1)/2 · (p_i - c_i)², c = [0.5, -1, 2].
    fn quad_grad(p: &[f64]) -> Vec<f64> {
        let c = [0.5, -1.0, 2.0];
        p.iter()
            .enumerate()
            .map(|(i, &x)| (i as f64 + 1.0) * (x - c[i % 3]))
            .collect()
    }

    fn variants() -> Vec<OptimizerConfig> {
        vec![
            OptimizerConfig::sgd(0.1),
            OptimizerConfig::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
            },
            OptimizerConfig::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.05,
            },
            OptimizerConfig::Sgd {
                lr: 0.05,
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.1,
            },
            OptimizerConfig::adam(0.1),
            OptimizerConfig::Adam {
                lr: 0.05,
                beta1: 0.8,
                beta2: 0.99,
                eps: 1e-6,
                weight_decay: 0.5,
            },
            // beta1 < 0.5 exercises lerp's large-weight branch.
            OptimizerConfig::Adam {
                lr: 0.05,
                beta1: 0.3,
                beta2: 0.9,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            OptimizerConfig::adamw(0.1, 0.01),
            OptimizerConfig::adamw(0.1, 0.3),
            OptimizerConfig::rmsprop(0.01),
            OptimizerConfig::RmsProp {
                lr: 0.01,
                alpha: 0.9,
                eps: 1e-8,
                momentum: 0.0,
                centered: true,
                weight_decay: 0.0,
            },
            OptimizerConfig::RmsProp {
                lr: 0.01,
                alpha: 0.99,
                eps: 1e-8,
                momentum: 0.9,
                centered: false,
                weight_decay: 0.1,
            },
            OptimizerConfig::RmsProp {
                lr: 0.02,
                alpha: 0.3,
                eps: 1e-7,
                momentum: 0.5,
                centered: true,
                weight_decay: 0.2,
            },
        ]
    }

    /// Runs `steps` steps of both implementations from p0 on the quadratic.
    fn run_both(config: OptimizerConfig, steps: usize) -> (Vec<f64>, Vec<f64>, Vec<f32>) {
        let p0 = [1.0, 0.25, -0.5];
        let mut opt = Optimizer::<f64>::new(config.clone(), 3).unwrap();
        let mut opt32 = Optimizer::<f32>::new(config.clone(), 3).unwrap();
        let mut reference = Reference::new(config, 3);
        let (mut p, mut q) = (p0.to_vec(), p0.to_vec());
        let mut p32: Vec<f32> = p0.iter().map(|&x| x as f32).collect();
        for _ in 0..steps {
            let mut g = quad_grad(&p);
            opt.step(&mut p, &mut g).unwrap();
            let g = quad_grad(&q);
            reference.step(&mut q, &g);
            let p32_as64: Vec<f64> = p32.iter().map(|&x| x as f64).collect();
            let mut g32: Vec<f32> = quad_grad(&p32_as64).iter().map(|&x| x as f32).collect();
            opt32.step(&mut p32, &mut g32).unwrap();
        }
        (p, q, p32)
    }

    #[test]
    fn every_variant_matches_reference_formulas() {
        for config in variants() {
            for steps in [1, 2, 3, 25] {
                let (p, want, p32) = run_both(config.clone(), steps);
                assert_close(&p, &want, 1e-12, &format!("{config:?} after {steps}"));
                let p32: Vec<f64> = p32.iter().map(|&x| x as f64).collect();
                assert_close(&p32, &want, 2e-5, &format!("f32 {config:?} after {steps}"));
            }
        }
    }

    fn run(config: OptimizerConfig, p: &mut [f64], grads: &[&[f64]]) {
        let mut opt = Optimizer::<f64>::new(config, p.len()).unwrap();
        for g in grads {
            let mut g = g.to_vec();
            opt.step(p, &mut g).unwrap();
        }
    }

    #[test]
    fn sgd_by_hand() {
        // lr 0.1, p = 1, g = 2: p = 1 - 0.1 * 2 = 0.8; p = 0.8 - 0.2 = 0.6.
        let mut p = [1.0, -1.0];
        run(
            OptimizerConfig::sgd(0.1),
            &mut p,
            &[&[2.0, -1.0], &[2.0, 0.5]],
        );
        assert_close(&p, &[0.6, -0.95], 1e-15, "sgd");
        // Momentum 0.9: buf = 2, p = 0.8; buf = 0.9*2 + 2 = 3.8, p = 0.8 - 0.38 = 0.42;
        // buf = 0.9*3.8 + 2 = 5.42, p = 0.42 - 0.542 = -0.122.
        let mom = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        let mut p = [1.0];
        run(mom, &mut p, &[&[2.0], &[2.0], &[2.0]]);
        assert_close(&p, &[-0.122], 1e-15, "momentum");
        // Nesterov: buf = 2, d = 2 + 0.9*2 = 3.8, p = 0.62; buf = 3.8, d = 2 + 0.9*3.8 =
        // 5.42, p = 0.62 - 0.542 = 0.078.
        let nesterov = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        };
        let mut p = [1.0];
        run(nesterov, &mut p, &[&[2.0], &[2.0]]);
        assert_close(&p, &[0.078], 1e-15, "nesterov");
        // Weight decay 0.1: g = 2 + 0.1*1 = 2.1, p = 1 - 0.21 = 0.79; the decayed gradient
        // is written back.
        let wd = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.1,
        };
        let mut opt = Optimizer::<f64>::new(wd, 1).unwrap();
        let (mut p, mut g) = ([1.0], [2.0]);
        opt.step(&mut p, &mut g).unwrap();
        assert_close(&p, &[0.79], 1e-15, "weight decay");
        assert_close(&g, &[2.1], 1e-15, "decayed grad");
    }

    #[test]
    fn adam_by_hand() {
        // lr 0.1, p = 1, g = 2: m = 0.2, v = 0.004, m̂ = 0.2/0.1 = 2, v̂ = 0.004/0.001 = 4,
        // p = 1 - 0.1 * 2/(2 + 1e-8) ≈ 0.9; a constant gradient keeps m̂ = 2, v̂ = 4, so the
        // second step also moves by ≈ 0.1.
        let mut p = [1.0, 1.0];
        run(OptimizerConfig::adam(0.1), &mut p, &[&[2.0, -0.5]]);
        assert_close(&p, &[0.9, 1.1], 1e-7, "adam first step ≈ lr sign(g)");
        let mut p = [1.0];
        run(OptimizerConfig::adam(0.1), &mut p, &[&[2.0], &[2.0]]);
        assert_close(&p, &[0.8], 1e-8, "adam two steps");
        // Exactly: the first step is lr * 2 / (2 + 1e-8).
        let mut p = [1.0];
        run(OptimizerConfig::adam(0.1), &mut p, &[&[2.0]]);
        assert!(close(p[0], 1.0 - 0.2 / (2.0 + 1e-8), 1e-15), "{}", p[0]);
        // L2 weight decay 0.5: g = 2 + 0.5*1 = 2.5, first step ≈ 0.1 → 0.9; then
        // g = 2 + 0.5*0.9 = 2.45, m = 0.9*0.25 + 0.1*2.45 = 0.47,
        // v = 0.999*0.00625 + 0.001*6.0025 = 0.01224625, m̂ = 0.47/0.19,
        // v̂ = 0.01224625/0.001999, p = 0.9 - 0.1 m̂/sqrt(v̂) ≈ 0.80005779.
        let l2 = OptimizerConfig::Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let mut p = [1.0];
        run(l2, &mut p, &[&[2.0], &[2.0]]);
        let want = 0.9 - 0.1 * (0.47 / 0.19) / (0.01224625f64 / 0.001999).sqrt();
        assert!(close(p[0], want, 1e-7), "{} vs {want}", p[0]);
        assert!(close(p[0], 0.80005779, 1e-7), "{}", p[0]);
    }

    #[test]
    fn adamw_by_hand() {
        // lr 0.1, wd 0.01, p = 1, g = 2: p = 1 * (1 - 0.001) = 0.999, then the Adam step
        // moves it by ≈ 0.1: 0.899. The gradient is not modified.
        let mut opt = Optimizer::<f64>::new(OptimizerConfig::adamw(0.1, 0.01), 1).unwrap();
        let (mut p, mut g) = ([1.0], [2.0]);
        opt.step(&mut p, &mut g).unwrap();
        assert!(close(p[0], 0.899, 1e-8), "{}", p[0]);
        assert_eq!(g, [2.0]);
        // Zero gradient: AdamW only decays, Adam does nothing.
        let mut p = [2.0];
        run(OptimizerConfig::adamw(0.1, 0.5), &mut p, &[&[0.0], &[0.0]]);
        assert!(close(p[0], 2.0 * 0.95 * 0.95, 1e-15), "{}", p[0]);
        let mut p = [2.0];
        run(OptimizerConfig::adam(0.1), &mut p, &[&[0.0]]);
        assert_eq!(p, [2.0]);
    }

    #[test]
    fn rmsprop_by_hand() {
        // lr 0.01, alpha 0.99, p = 1, g = 2: v = 0.01*4 = 0.04, avg = 0.2 + 1e-8,
        // p = 1 - 0.01 * 2/0.2 ≈ 0.9.
        let mut p = [1.0];
        run(OptimizerConfig::rmsprop(0.01), &mut p, &[&[2.0]]);
        assert!(close(p[0], 1.0 - 0.02 / (0.2 + 1e-8), 1e-15), "{}", p[0]);
        // Centered: ga = 0.01*2 = 0.02, avg = sqrt(0.04 - 0.0004) = sqrt(0.0396) ≈ 0.198997,
        // p = 1 - 0.02/0.198997 ≈ 0.899496.
        let centered = OptimizerConfig::RmsProp {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            centered: true,
            weight_decay: 0.0,
        };
        let mut p = [1.0];
        run(centered, &mut p, &[&[2.0]]);
        assert!(close(p[0], 0.899496, 1e-6), "{}", p[0]);
        // Momentum 0.9: buf = 2/0.2 = 10, p = 1 - 0.1 = 0.9; then v = 0.99*0.04 + 0.04 =
        // 0.0796, buf = 9 + 2/sqrt(0.0796) ≈ 16.088812, p ≈ 0.9 - 0.16088812 = 0.73911188.
        let mom = OptimizerConfig::RmsProp {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.9,
            centered: false,
            weight_decay: 0.0,
        };
        let mut p = [1.0];
        run(mom, &mut p, &[&[2.0], &[2.0]]);
        assert!(close(p[0], 0.73911188, 1e-7), "{}", p[0]);
    }

    #[test]
    fn adam_minimizes_a_quadratic() {
        for config in [
            OptimizerConfig::adam(0.05),
            OptimizerConfig::adamw(0.05, 0.0),
        ] {
            let mut opt = Optimizer::<f32>::new(config.clone(), 3).unwrap();
            let mut p = [3.0f32, -4.0, 0.0];
            let c = [0.5f32, -1.0, 2.0];
            for _ in 0..3000 {
                let mut g: Vec<f32> = p.iter().zip(&c).map(|(x, c)| 2.0 * (x - c)).collect();
                opt.step(&mut p, &mut g).unwrap();
            }
            for (x, c) in p.iter().zip(&c) {
                assert!((x - c).abs() < 1e-3, "{config:?}: {p:?}");
            }
        }
    }

    #[test]
    fn shape_errors_leave_state_untouched() {
        let mut opt = Optimizer::<f64>::new(OptimizerConfig::adam(0.1), 3).unwrap();
        let mut p = [1.0; 3];
        assert!(matches!(
            opt.step(&mut p, &mut [1.0; 2]),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            opt.step(&mut [1.0; 4], &mut [1.0; 4]),
            Err(Error::Shape { .. })
        ));
        assert_eq!(opt.steps(), 0);
        assert_eq!(p, [1.0; 3]);
        assert_eq!(opt, Optimizer::new(OptimizerConfig::adam(0.1), 3).unwrap());
        // A stored state that does not fit its configuration is refused when it is read,
        // naming the buffer (it cannot exist as an optimizer).
        let mut json = serde_json::to_value(&opt).unwrap();
        json["exp_avg"] = serde_json::json!([0.0]);
        let e = serde_json::from_value::<Optimizer<f64>>(json).unwrap_err();
        assert!(
            e.to_string().contains("exp_avg holds 1 values, expected 3"),
            "{e}"
        );
        // Empty parameter sets are fine.
        let mut empty = Optimizer::<f32>::new(OptimizerConfig::default(), 0).unwrap();
        empty.step(&mut [], &mut []).unwrap();
    }

    #[test]
    fn reset_and_set_lr() {
        for config in variants() {
            let mut opt = Optimizer::<f64>::new(config.clone(), 3).unwrap();
            let mut p = [1.0, 2.0, 3.0];
            for _ in 0..3 {
                let mut g = quad_grad(&p);
                opt.step(&mut p, &mut g).unwrap();
            }
            assert_eq!(opt.steps(), 3);
            opt.reset();
            assert_eq!(
                opt,
                Optimizer::new(config.clone(), 3).unwrap(),
                "{config:?}"
            );
        }
        let mut opt = Optimizer::<f64>::new(OptimizerConfig::sgd(0.1), 1).unwrap();
        opt.set_lr(0.5);
        assert_eq!(opt.config().lr(), 0.5);
        let mut p = [1.0];
        opt.step(&mut p, &mut [1.0]).unwrap();
        assert_eq!(p, [0.5]);
        assert_eq!(opt.n_params(), 1);
    }

    #[test]
    fn clip_grad_norm_matches_torch() {
        // [3, 4] has norm 5; max 1 gives coef 1/(5 + 1e-6): [0.6, 0.8] up to a 1e-6 factor.
        let mut g = [3.0f64, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!(close(g[0], 0.6 / (1.0 + 2e-7), 1e-15), "{g:?}");
        assert!(close(g[1], 0.8 / (1.0 + 2e-7), 1e-15), "{g:?}");
        let mut g = [3.0f32, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
        // max 10: untouched.
        let mut g = [3.0f64, 4.0];
        assert_eq!(clip_grad_norm(&mut g, 10.0), 5.0);
        assert_eq!(g, [3.0, 4.0]);
        // max 5: coef = 5/(5 + 1e-6) < 1, scaled very slightly, as torch.
        let mut g = [3.0f64, 4.0];
        clip_grad_norm(&mut g, 5.0);
        assert!(g[0] < 3.0 && close(g[0], 3.0, 1e-6));
        // Non-finite norm: untouched, returned.
        let mut g = [1.0f64, f64::NAN];
        assert!(clip_grad_norm(&mut g, 1.0).is_nan());
        assert_eq!(g[0], 1.0);
        let mut g = [1.0f32, f32::INFINITY];
        assert_eq!(clip_grad_norm(&mut g, 1.0), f32::INFINITY);
        assert_eq!(g, [1.0, f32::INFINITY]);
        // Empty gradient: norm 0.
        assert_eq!(clip_grad_norm::<f64>(&mut [], 1.0), 0.0);
    }

    #[test]
    fn grad_norm_over_many_lanes() {
        // 1..=21: Σ i² = 21·22·43/6 = 3311; lengths around the 4-lane chunking.
        let g: Vec<f64> = (1..=21).map(f64::from).collect();
        assert_eq!(grad_norm(&g), 3311f64.sqrt());
        for n in 0..20 {
            let g = vec![2.0f32; n];
            assert!(
                (grad_norm(&g) - 2.0 * (n as f32).sqrt()).abs() < 1e-6,
                "{n}"
            );
        }
        // The norm of a large f32 buffer stays accurate.
        let g = vec![0.1f32; 1_000_000];
        let want = (1_000_000f64 * 0.1f32 as f64 * 0.1f32 as f64).sqrt();
        assert!(((grad_norm(&g) as f64) - want).abs() / want < 1e-6);
    }

    #[test]
    fn validate_names_the_field() {
        let field = |c: OptimizerConfig| match c.validate() {
            Err(Error::Config { field, .. }) => field,
            other => panic!("{c:?}: {other:?}"),
        };
        for lr in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(field(OptimizerConfig::sgd(lr)), "lr");
            assert_eq!(field(OptimizerConfig::adam(lr)), "lr");
            assert_eq!(field(OptimizerConfig::rmsprop(lr)), "lr");
        }
        let adam = |beta1, beta2, eps, weight_decay| OptimizerConfig::Adam {
            lr: 1e-3,
            beta1,
            beta2,
            eps,
            weight_decay,
        };
        assert_eq!(field(adam(1.0, 0.999, 1e-8, 0.0)), "beta1");
        assert_eq!(field(adam(-0.1, 0.999, 1e-8, 0.0)), "beta1");
        assert_eq!(field(adam(0.9, 1.0, 1e-8, 0.0)), "beta2");
        assert_eq!(field(adam(0.9, f64::NAN, 1e-8, 0.0)), "beta2");
        assert_eq!(field(adam(0.9, 0.999, 0.0, 0.0)), "eps");
        assert_eq!(field(adam(0.9, 0.999, 1e-8, -1e-3)), "weight_decay");
        assert!(adam(0.0, 0.0, 1e-8, 0.0).validate().is_ok());
        assert_eq!(field(OptimizerConfig::adamw(1e-3, -0.1)), "weight_decay");
        let sgd = |momentum, nesterov, weight_decay| OptimizerConfig::Sgd {
            lr: 0.1,
            momentum,
            nesterov,
            weight_decay,
        };
        assert_eq!(field(sgd(-0.5, false, 0.0)), "momentum");
        assert_eq!(field(sgd(0.0, true, 0.0)), "nesterov");
        assert_eq!(field(sgd(0.9, false, f64::INFINITY)), "weight_decay");
        assert!(sgd(0.9, true, 0.1).validate().is_ok());
        let rms = |alpha, eps, momentum| OptimizerConfig::RmsProp {
            lr: 0.01,
            alpha,
            eps,
            momentum,
            centered: true,
            weight_decay: 0.0,
        };
        assert_eq!(field(rms(1.0, 1e-8, 0.0)), "alpha");
        assert_eq!(field(rms(0.99, -1e-8, 0.0)), "eps");
        assert_eq!(field(rms(0.99, 1e-8, -0.9)), "momentum");
        assert!(rms(0.0, 1e-8, 0.9).validate().is_ok());
        // new() validates.
        assert!(matches!(
            Optimizer::<f32>::new(sgd(0.0, true, 0.0), 3),
            Err(Error::Config {
                field: "nesterov",
                ..
            })
        ));
        let msg = OptimizerConfig::adam(-1.0)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("lr") && msg.contains("-1"), "{msg}");
    }

    #[test]
    fn defaults_and_constructors() {
        assert_eq!(
            OptimizerConfig::default(),
            OptimizerConfig::Adam {
                lr: 3e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0
            }
        );
        assert_eq!(
            OptimizerConfig::rmsprop(0.01),
            OptimizerConfig::RmsProp {
                lr: 0.01,
                alpha: 0.99,
                eps: 1e-8,
                momentum: 0.0,
                centered: false,
                weight_decay: 0.0
            }
        );
        assert_eq!(
            OptimizerConfig::adamw(0.01, 0.02).with_lr(0.5),
            OptimizerConfig::adamw(0.5, 0.02)
        );
        for c in variants() {
            assert!(c.validate().is_ok(), "{c:?}");
            assert_eq!(c.with_lr(0.25).lr(), 0.25);
        }
    }

    #[test]
    fn parse() {
        let p = |s: &str| s.parse::<OptimizerConfig>();
        assert_eq!(p("sgd"), Ok(OptimizerConfig::sgd(5e-2)));
        assert_eq!(p("adam"), Ok(OptimizerConfig::adam(3e-3)));
        assert_eq!(p(" AdamW "), Ok(OptimizerConfig::adamw(3e-3, 1e-2)));
        assert_eq!(p("rmsprop"), Ok(OptimizerConfig::rmsprop(3e-3)));
        assert_eq!(p("rmsprop:0.01"), Ok(OptimizerConfig::rmsprop(0.01)));
        assert_eq!(p("sgd: 1e-1"), Ok(OptimizerConfig::sgd(0.1)));
        for c in variants() {
            assert_eq!(p(c.name()).map(|c| c.name()), Ok(c.name()));
        }
        for s in ["", "adagrad", "adam_w", "adam:", "adam:x"] {
            match p(s) {
                Err(Error::Config {
                    field: "optimizer",
                    reason,
                }) => assert!(reason.contains("adam"), "{reason}"),
                other => panic!("{s:?}: {other:?}"),
            }
        }
        assert!(matches!(
            p("sgd:-1"),
            Err(Error::Config { field: "lr", .. })
        ));
        assert!(matches!(p("sgd:0"), Err(Error::Config { field: "lr", .. })));
    }

    #[test]
    fn config_serde_round_trip() {
        for c in variants() {
            let s = serde_json::to_string(&c).unwrap();
            assert_eq!(
                serde_json::from_str::<OptimizerConfig>(&s).unwrap(),
                c,
                "{s}"
            );
            assert!(s.contains(&format!(r#""kind":"{}""#, c.name())), "{s}");
        }
        let from = |s: &str| serde_json::from_str::<OptimizerConfig>(s);
        assert_eq!(
            from(r#"{"kind":"adam"}"#).unwrap(),
            OptimizerConfig::default()
        );
        assert_eq!(
            from(r#"{"kind":"sgd","momentum":0.9}"#).unwrap(),
            OptimizerConfig::Sgd {
                lr: 5e-2,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0
            }
        );
        assert_eq!(
            from(r#"{"kind":"adamw","lr":0.001}"#).unwrap(),
            OptimizerConfig::adamw(1e-3, 1e-2)
        );
        assert_eq!(
            from(r#"{"kind":"rmsprop"}"#).unwrap(),
            OptimizerConfig::rmsprop(3e-3)
        );
        assert!(from(r#"{"kind":"adam","betas":[0.9,0.99]}"#).is_err());
        assert!(from(r#"{"kind":"adagrad"}"#).is_err());
    }

    #[test]
    fn optimizer_state_serde_round_trip_mid_run() {
        // JSON float parsing in serde_json is best-effort (exact only with its
        // `float_roundtrip` feature), so compare the continued runs to 1e-14.
        for config in variants() {
            let mut a = Optimizer::<f64>::new(config.clone(), 3).unwrap();
            let mut p = vec![1.0, 0.25, -0.5];
            for _ in 0..3 {
                let mut g = quad_grad(&p);
                a.step(&mut p, &mut g).unwrap();
            }
            let json = serde_json::to_string(&a).unwrap();
            let mut b: Optimizer<f64> = serde_json::from_str(&json).unwrap();
            assert_eq!(b.steps(), 3);
            let mut q = p.clone();
            for _ in 0..4 {
                let mut g = quad_grad(&p);
                a.step(&mut p, &mut g).unwrap();
                let mut g = quad_grad(&q);
                b.step(&mut q, &mut g).unwrap();
            }
            assert_close(&q, &p, 1e-14, &format!("{config:?}"));
            // f32 state round-trips exactly (shortest representation of each f32).
            let mut a = Optimizer::<f32>::new(config, 2).unwrap();
            let mut p = [1.0f32, -2.0];
            a.step(&mut p, &mut [0.3, -0.7]).unwrap();
            let b: Optimizer<f32> =
                serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
            assert_eq!(a, b);
        }
    }
}
