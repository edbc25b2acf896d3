//! The network: stacked recurrent layers and a linear readout, all parameters in one flat
//! vector in PyTorch's order, with the live one-step forward and the window forward/backward.
//!
//! Layer `l` takes `x` (`l = 0`, length `d_input`) or the hidden state of layer `l − 1`; the
//! readout is `ŷ = W h_top + b` (`W`: `d_output x H`). Parameters, in this order, each matrix
//! column-major: for every layer `weight_ih_l{l}`, `weight_hh_l{l}`, `bias_ih_l{l}`,
//! `bias_hh_l{l}`; then `W` and `b`.

use crate::nn::cell::{self, CellKind, LayerBuf, LayerGrads, LayerParams};
use crate::nn::linalg::{gemm_nt, gemm_tn, gemv, row_sums};
use crate::nn::loss::Loss;
use crate::nn::simd::{Level, AVX2, AVX512, BASE};
use crate::{Error, Float, Result};
use nalgebra::{DMatrixView, DVector};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Shape of the network.
///
/// # Example
/// ```
/// use tbptt::{CellKind, ModelConfig};
/// let c = ModelConfig { cell: CellKind::Lstm, d_input: 2, d_hidden: 8, layers: 1, d_output: 2 };
/// assert_eq!(c.n_params(), 4 * 8 * (2 + 8 + 2) + 2 * 8 + 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Cell kind. Default: GRU.
    pub cell: CellKind,
    /// Input size `D` (features per event). Default: 1.
    pub d_input: usize,
    /// Hidden size `H` of every layer. Default: 64.
    pub d_hidden: usize,
    /// Number of stacked layers (at least 1). Default: 1.
    pub layers: usize,
    /// Readout size (the number of predicted values or of classes). Default: 1.
    pub d_output: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            cell: CellKind::Gru,
            d_input: 1,
            d_hidden: 64,
            layers: 1,
            d_output: 1,
        }
    }
}

/// Largest accepted input, hidden or output size (guards against absurd allocations).
pub const MAX_DIM: usize = 1 << 16;

impl ModelConfig {
    /// Checks that every size is positive and sane.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("d_input", self.d_input),
            ("d_hidden", self.d_hidden),
            ("d_output", self.d_output),
        ] {
            if v == 0 || v > MAX_DIM {
                return Err(Error::config(
                    field,
                    format!("must be in 1..={MAX_DIM}, got {v}"),
                ));
            }
        }
        if self.layers == 0 || self.layers > 64 {
            return Err(Error::config(
                "layers",
                format!("must be in 1..=64, got {}", self.layers),
            ));
        }
        Ok(())
    }

    /// Number of gate rows `G·H` of every layer.
    pub fn gate_rows(&self) -> usize {
        self.cell.gates() * self.d_hidden
    }

    /// Total number of parameters.
    pub fn n_params(&self) -> usize {
        let (g, h) = (self.gate_rows(), self.d_hidden);
        let mut n = 0;
        for l in 0..self.layers {
            let d_in = if l == 0 { self.d_input } else { h };
            n += g * (d_in + h + 2);
        }
        n + self.d_output * (h + 1)
    }

    /// Length of the recurrent state: `h` of every layer, then `c` of every layer (LSTM).
    pub fn state_len(&self) -> usize {
        let per = if self.cell.has_cell_state() { 2 } else { 1 };
        per * self.layers * self.d_hidden
    }
}

/// Where one layer's tensors sit in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerSpan {
    pub d_in: usize,
    pub w_ih: Range<usize>,
    pub w_hh: Range<usize>,
    pub b_ih: Range<usize>,
    pub b_hh: Range<usize>,
}

/// Offsets of every tensor in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub layers: Vec<LayerSpan>,
    pub w_out: Range<usize>,
    pub b_out: Range<usize>,
}

impl Layout {
    fn new(c: &ModelConfig) -> Self {
        let (g, h) = (c.gate_rows(), c.d_hidden);
        let mut at = 0;
        let mut take = |n: usize| {
            let r = at..at + n;
            at += n;
            r
        };
        let layers = (0..c.layers)
            .map(|l| {
                let d_in = if l == 0 { c.d_input } else { h };
                LayerSpan {
                    d_in,
                    w_ih: take(g * d_in),
                    w_hh: take(g * h),
                    b_ih: take(g),
                    b_hh: take(g),
                }
            })
            .collect();
        let w_out = take(c.d_output * h);
        let b_out = take(c.d_output);
        Layout {
            layers,
            w_out,
            b_out,
        }
    }
}

/// A tensor of the model, named as in PyTorch's `state_dict` (`W` and `b` for the readout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamName {
    /// `weight_ih_l{layer}`: `G·H x d_in`.
    WeightIh(usize),
    /// `weight_hh_l{layer}`: `G·H x H`.
    WeightHh(usize),
    /// `bias_ih_l{layer}`: `G·H`.
    BiasIh(usize),
    /// `bias_hh_l{layer}`: `G·H`.
    BiasHh(usize),
    /// Readout weight `W`: `d_output x H`.
    W,
    /// Readout bias `b`: `d_output`.
    B,
}

impl std::str::FromStr for ParamName {
    type Err = Error;

    /// Parses `weight_ih_l0`, `bias_hh_l1`, ..., `W` (or `readout.weight`), `b` (or
    /// `readout.bias`); `weight_ih` without a suffix means layer 0.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::config("param", format!("unknown parameter name {s:?}"));
        match s {
            "W" | "readout.weight" | "linear.weight" => return Ok(ParamName::W),
            "b" | "readout.bias" | "linear.bias" => return Ok(ParamName::B),
            _ => {}
        }
        let (stem, layer) = match s.rsplit_once("_l") {
            Some((stem, n)) => (stem, n.parse::<usize>().map_err(|_| bad())?),
            None => (s, 0),
        };
        match stem {
            "weight_ih" => Ok(ParamName::WeightIh(layer)),
            "weight_hh" => Ok(ParamName::WeightHh(layer)),
            "bias_ih" => Ok(ParamName::BiasIh(layer)),
            "bias_hh" => Ok(ParamName::BiasHh(layer)),
            _ => Err(bad()),
        }
    }
}

/// The network's parameters and shape.
///
/// # Example
/// ```
/// use tbptt::{Model, ModelConfig};
/// let m = Model::<f32>::new(ModelConfig::default(), 7).unwrap();
/// let bound = 1.0 / (64f32).sqrt();
/// assert!(m.params().iter().all(|p| p.abs() <= bound));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Model<T: Float> {
    config: ModelConfig,
    layout: Layout,
    params: DVector<T>,
}

impl<T: Float> Model<T> {
    /// A model with every parameter drawn from `U(−1/√H, 1/√H)` (PyTorch's default for
    /// recurrent layers), in parameter order, from a ChaCha8 generator seeded with `seed`.
    ///
    /// # Errors
    /// [`Error::Config`] if the configuration is invalid.
    pub fn new(config: ModelConfig, seed: u64) -> Result<Self> {
        let mut m = Self::zeros(config)?;
        let bound = 1.0 / (config.d_hidden as f64).sqrt();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for p in m.params.iter_mut() {
            *p = T::cast(rng.random_range(-bound..bound));
        }
        Ok(m)
    }

    /// A model with all parameters zero (to be filled with [`Model::set_param`]).
    ///
    /// # Errors
    /// [`Error::Config`] if the configuration is invalid.
    pub fn zeros(config: ModelConfig) -> Result<Self> {
        config.validate()?;
        Ok(Model {
            layout: Layout::new(&config),
            params: DVector::zeros(config.n_params()),
            config,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// All parameters, flat, in the documented order.
    pub fn params(&self) -> &[T] {
        self.params.as_slice()
    }

    /// All parameters, mutable (what an optimizer updates).
    pub fn params_mut(&mut self) -> &mut [T] {
        self.params.as_mut_slice()
    }

    /// Copies all parameters from `src` (e.g. weights published by a trainer).
    ///
    /// # Errors
    /// [`Error::Shape`] if the length differs.
    pub fn copy_params_from(&mut self, src: &[T]) -> Result<()> {
        if src.len() != self.params.len() {
            return Err(Error::len("copy_params_from", self.params.len(), src.len()));
        }
        self.params.as_mut_slice().copy_from_slice(src);
        Ok(())
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    fn range(&self, name: ParamName) -> Result<(Range<usize>, usize, usize)> {
        let c = &self.config;
        let (g, h) = (c.gate_rows(), c.d_hidden);
        let span = |l: usize| {
            self.layout.layers.get(l).ok_or_else(|| {
                Error::config(
                    "param",
                    format!("layer {l} does not exist ({} layers)", c.layers),
                )
            })
        };
        Ok(match name {
            ParamName::WeightIh(l) => {
                let s = span(l)?;
                (s.w_ih.clone(), g, s.d_in)
            }
            ParamName::WeightHh(l) => (span(l)?.w_hh.clone(), g, h),
            ParamName::BiasIh(l) => (span(l)?.b_ih.clone(), g, 1),
            ParamName::BiasHh(l) => (span(l)?.b_hh.clone(), g, 1),
            ParamName::W => (self.layout.w_out.clone(), c.d_output, h),
            ParamName::B => (self.layout.b_out.clone(), c.d_output, 1),
        })
    }

    /// Sets one tensor from PyTorch's row-major values (`weight.flatten().tolist()`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `row_major` has the wrong length, [`Error::Config`] for a layer
    /// that does not exist.
    pub fn set_param(&mut self, name: ParamName, row_major: &[f64]) -> Result<()> {
        let (r, rows, cols) = self.range(name)?;
        if row_major.len() != rows * cols {
            return Err(Error::len("set_param", rows * cols, row_major.len()));
        }
        let dst = &mut self.params.as_mut_slice()[r];
        for i in 0..rows {
            for j in 0..cols {
                dst[j * rows + i] = T::cast(row_major[i * cols + j]);
            }
        }
        Ok(())
    }

    /// One tensor in PyTorch's row-major order, as `f64`.
    ///
    /// # Errors
    /// [`Error::Config`] for a layer that does not exist.
    pub fn param(&self, name: ParamName) -> Result<Vec<f64>> {
        let (r, rows, cols) = self.range(name)?;
        Ok(row_major_of(&self.params.as_slice()[r], rows, cols))
    }

    /// The gradient buffer's slice for `name`, in row-major `f64` (for comparisons).
    ///
    /// # Errors
    /// [`Error::Shape`] if `grads` is not `n_params` long; [`Error::Config`] for a bad layer.
    pub fn grad_of(&self, grads: &[T], name: ParamName) -> Result<Vec<f64>> {
        if grads.len() != self.params.len() {
            return Err(Error::len("grad_of", self.params.len(), grads.len()));
        }
        let (r, rows, cols) = self.range(name)?;
        Ok(row_major_of(&grads[r], rows, cols))
    }

    /// The readout weight `W` (`d_output x H`) as a nalgebra view.
    pub fn readout(&self) -> DMatrixView<'_, T> {
        DMatrixView::from_slice(
            &self.params.as_slice()[self.layout.w_out.clone()],
            self.config.d_output,
            self.config.d_hidden,
        )
    }

    pub(crate) fn layer(&self, l: usize) -> LayerParams<'_, T> {
        let s = &self.layout.layers[l];
        let p = self.params.as_slice();
        LayerParams {
            w_ih: &p[s.w_ih.clone()],
            w_hh: &p[s.w_hh.clone()],
            b_ih: &p[s.b_ih.clone()],
            b_hh: &p[s.b_hh.clone()],
            d_in: s.d_in,
            h: self.config.d_hidden,
        }
    }

    /// One live step: advances `state` (length [`ModelConfig::state_len`]) with input `x`
    /// and writes the readout `ŷ = W h_top + b` into `y`. No allocation.
    ///
    /// # Panics
    /// If a length does not match the configuration (callers check once up front).
    pub fn step_to(&self, x: &[T], state: &mut [T], ws: &mut StepWorkspace<T>, y: &mut [T]) {
        let c = &self.config;
        assert!(
            x.len() == c.d_input && state.len() == c.state_len() && y.len() == c.d_output,
            "step_to: shape mismatch"
        );
        self.step_at(crate::nn::simd::level(), x, state, ws, y);
    }

    /// [`Model::step_to`] in the copy for `level`, which the CPU must support.
    pub(crate) fn step_at(
        &self,
        level: Level,
        x: &[T],
        state: &mut [T],
        ws: &mut StepWorkspace<T>,
        y: &mut [T],
    ) {
        match level {
            // SAFETY: `level` is at most what the CPU supports (`simd::level`).
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.step_avx512(x, state, ws, y) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.step_avx2(x, state, ws, y) },
            _ => self.step_impl::<BASE>(x, state, ws, y),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn step_avx2(&self, x: &[T], state: &mut [T], ws: &mut StepWorkspace<T>, y: &mut [T]) {
        self.step_impl::<AVX2>(x, state, ws, y);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn step_avx512(&self, x: &[T], state: &mut [T], ws: &mut StepWorkspace<T>, y: &mut [T]) {
        self.step_impl::<AVX512>(x, state, ws, y);
    }

    #[inline(always)]
    fn step_impl<const L: u8>(
        &self,
        x: &[T],
        state: &mut [T],
        ws: &mut StepWorkspace<T>,
        y: &mut [T],
    ) {
        let c = &self.config;
        let h = c.d_hidden;
        let (hs, cs) = state.split_at_mut(c.layers * h);
        for l in 0..c.layers {
            let p = self.layer(l);
            let (below, rest) = hs.split_at_mut(l * h);
            let hl = &mut rest[..h];
            let input: &[T] = if l == 0 { x } else { &below[(l - 1) * h..] };
            match c.cell {
                CellKind::Elman => cell::elman::step::<T, L>(&p, input, hl, &mut ws.a),
                CellKind::Gru => cell::gru::step::<T, L>(&p, input, hl, &mut ws.a, &mut ws.b),
                CellKind::Lstm => {
                    cell::lstm::step::<T, L>(&p, input, hl, &mut cs[l * h..(l + 1) * h], &mut ws.a)
                }
            }
        }
        let top = &hs[(c.layers - 1) * h..];
        let p = self.params.as_slice();
        y.copy_from_slice(&p[self.layout.b_out.clone()]);
        gemv::<T, L>(y, &p[self.layout.w_out.clone()], top, T::one());
    }
}

fn row_major_of<T: Float>(col_major: &[T], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            out[i * cols + j] = col_major[j * rows + i].as_f64();
        }
    }
    out
}

/// Scratch for [`Model::step_to`], allocated once.
#[derive(Clone, Debug)]
pub struct StepWorkspace<T> {
    a: Vec<T>,
    b: Vec<T>,
}

impl<T: Float> StepWorkspace<T> {
    /// Scratch sized for `config`.
    pub fn new(config: &ModelConfig) -> Self {
        let g = config.gate_rows();
        StepWorkspace {
            a: vec![T::zero(); g],
            b: vec![T::zero(); g],
        }
    }
}

/// Buffers for the forward and backward pass over a window of up to `capacity` steps, and the
/// gradient of every parameter. Allocated once; [`Window::forward_backward`] never allocates.
///
/// Fill the inputs ([`Window::inputs_mut`], `d_input x n` column-major) and the targets
/// ([`Window::targets_mut`], `d_output x n`), then call [`Window::forward_backward`].
#[derive(Clone, Debug)]
pub struct Window<T: Float> {
    config: ModelConfig,
    cap: usize,
    layers: Vec<LayerBuf<T>>,
    x: Vec<T>,
    targets: Vec<T>,
    y: Vec<T>,
    dy: Vec<T>,
    dh_top: Vec<T>,
    grads: DVector<T>,
    n: usize,
    first_loss_step: usize,
}

impl<T: Float> Window<T> {
    /// Buffers for windows of up to `capacity` steps of a model shaped by `config`.
    ///
    /// # Errors
    /// [`Error::Config`] if the configuration is invalid or `capacity` is 0.
    pub fn new(config: &ModelConfig, capacity: usize) -> Result<Self> {
        config.validate()?;
        if capacity == 0 {
            return Err(Error::config("window", "capacity must be at least 1"));
        }
        let h = config.d_hidden;
        let layers = (0..config.layers)
            .map(|l| {
                let d_in = if l == 0 { config.d_input } else { h };
                LayerBuf::new(config.cell, d_in, h, capacity, l > 0)
            })
            .collect();
        let z = |n: usize| vec![T::zero(); n];
        Ok(Window {
            config: *config,
            cap: capacity,
            layers,
            x: z(config.d_input * capacity),
            targets: z(config.d_output * capacity),
            y: z(config.d_output * capacity),
            dy: z(config.d_output * capacity),
            dh_top: z(h * capacity),
            grads: DVector::zeros(config.n_params()),
            n: 0,
            first_loss_step: 0,
        })
    }

    /// A window that holds nothing (capacity 0) and allocates nothing: the place holder a
    /// trainer keeps while its buffers are lent out (see [`crate::train::trainer::Trainer::take_window`]).
    pub fn empty(config: &ModelConfig) -> Self {
        Window {
            config: *config,
            cap: 0,
            layers: Vec::new(),
            x: Vec::new(),
            targets: Vec::new(),
            y: Vec::new(),
            dy: Vec::new(),
            dh_top: Vec::new(),
            grads: DVector::zeros(0),
            n: 0,
            first_loss_step: 0,
        }
    }

    /// The model shape the buffers are for.
    pub fn model_config(&self) -> &ModelConfig {
        &self.config
    }

    /// The most steps a window can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Input buffer, `d_input x capacity`, column `t` = input of step `t`.
    pub fn inputs_mut(&mut self) -> &mut [T] {
        &mut self.x
    }

    /// Target buffer, `d_output x capacity`, column `t` = target of step `t`.
    pub fn targets_mut(&mut self) -> &mut [T] {
        &mut self.targets
    }

    /// Both buffers at once: `(inputs, targets)`.
    pub fn io_mut(&mut self) -> (&mut [T], &mut [T]) {
        (&mut self.x, &mut self.targets)
    }

    /// Forward over the first `n` steps from `start` (a state of
    /// [`ModelConfig::state_len`]), loss over the last `loss_steps` of them (mean as defined by
    /// [`Loss::normalizer`]), backward through all `n` steps. Returns the loss; the gradients
    /// are in [`Window::grads`], the start-state gradient in [`Window::start_grad_to`].
    ///
    /// # Errors
    /// [`Error::Shape`] if `n` exceeds the capacity, `loss_steps` is not in `1..=n`, or
    /// `start` has the wrong length.
    pub fn forward_backward(
        &mut self,
        model: &Model<T>,
        start: &[T],
        n: usize,
        loss: Loss,
        loss_steps: usize,
    ) -> Result<T> {
        let c = self.config;
        if *model.config() != c {
            return Err(Error::Shape {
                op: "forward_backward",
                expected: format!("{c:?}"),
                got: format!("{:?}", model.config()),
            });
        }
        if n == 0 || n > self.cap {
            return Err(Error::len("forward_backward (steps)", self.cap, n));
        }
        if loss_steps == 0 || loss_steps > n {
            return Err(Error::len("forward_backward (loss steps)", n, loss_steps));
        }
        if start.len() != c.state_len() {
            return Err(Error::len(
                "forward_backward (start state)",
                c.state_len(),
                start.len(),
            ));
        }
        let level = crate::nn::simd::level();
        Ok(self.pass_at(level, model, start, n, loss, loss_steps))
    }

    /// [`Window::forward_backward`] in the copy for `level`, which the CPU must support.
    pub(crate) fn pass_at(
        &mut self,
        level: Level,
        model: &Model<T>,
        start: &[T],
        n: usize,
        loss: Loss,
        loss_steps: usize,
    ) -> T {
        match level {
            // SAFETY: `level` is at most what the CPU supports (`simd::level`).
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.pass_avx512(model, start, n, loss, loss_steps) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.pass_avx2(model, start, n, loss, loss_steps) },
            _ => self.pass::<BASE>(model, start, n, loss, loss_steps),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pass_avx2(
        &mut self,
        model: &Model<T>,
        start: &[T],
        n: usize,
        loss: Loss,
        loss_steps: usize,
    ) -> T {
        self.pass::<AVX2>(model, start, n, loss, loss_steps)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn pass_avx512(
        &mut self,
        model: &Model<T>,
        start: &[T],
        n: usize,
        loss: Loss,
        loss_steps: usize,
    ) -> T {
        self.pass::<AVX512>(model, start, n, loss, loss_steps)
    }

    /// The forward and backward pass proper, shapes already checked.
    #[inline(always)]
    fn pass<const L: u8>(
        &mut self,
        model: &Model<T>,
        start: &[T],
        n: usize,
        loss: Loss,
        loss_steps: usize,
    ) -> T {
        let c = self.config;
        let h = c.d_hidden;
        let (d_out, top) = (c.d_output, c.layers - 1);
        // ---- forward, layer by layer over the whole window
        for l in 0..c.layers {
            let (below, rest) = self.layers.split_at_mut(l);
            let buf = &mut rest[0];
            buf.hs[..h].copy_from_slice(&start[l * h..(l + 1) * h]);
            if c.cell.has_cell_state() {
                let off = c.layers * h + l * h;
                buf.cs[..h].copy_from_slice(&start[off..off + h]);
            }
            let x: &[T] = if l == 0 {
                &self.x
            } else {
                &below[l - 1].hs[h..]
            };
            let p = model.layer(l);
            match c.cell {
                CellKind::Elman => cell::elman::forward::<T, L>(&p, x, n, buf),
                CellKind::Gru => cell::gru::forward::<T, L>(&p, x, n, buf),
                CellKind::Lstm => cell::lstm::forward::<T, L>(&p, x, n, buf),
            }
        }
        // ---- readout and loss on the last `loss_steps` steps
        let s0 = n - loss_steps;
        self.first_loss_step = s0;
        self.n = n;
        let params = model.params();
        let w_out = &params[model.layout().w_out.clone()];
        let b_out = &params[model.layout().b_out.clone()];
        let hs_top = &self.layers[top].hs;
        let mut total = T::zero();
        for t in s0..n {
            let y = &mut self.y[t * d_out..(t + 1) * d_out];
            y.copy_from_slice(b_out);
            gemv::<T, L>(y, w_out, &hs_top[(t + 1) * h..(t + 2) * h], T::one());
            total += loss.step_to(
                y,
                &self.targets[t * d_out..(t + 1) * d_out],
                &mut self.dy[t * d_out..(t + 1) * d_out],
            );
        }
        let norm = T::of_usize(loss.normalizer(loss_steps, d_out));
        let inv = T::one() / norm;
        self.dy[s0 * d_out..n * d_out]
            .iter_mut()
            .for_each(|v| *v *= inv);
        // ---- gradients of the readout, and dL/dh_top from it
        let layout = model.layout();
        let grads = self.grads.as_mut_slice();
        let (g_layers, g_out) = grads.split_at_mut(layout.w_out.start);
        let (gw, gb) = g_out.split_at_mut(d_out * h);
        let dy = &self.dy[s0 * d_out..n * d_out];
        gemm_nt::<T, L>(
            gw,
            d_out,
            h,
            dy,
            &hs_top[(s0 + 1) * h..(n + 1) * h],
            loss_steps,
            T::zero(),
        );
        row_sums(gb, dy, loss_steps, T::zero());
        self.dh_top[..s0 * h].fill(T::zero());
        gemm_tn::<T, L>(
            &mut self.dh_top[s0 * h..n * h],
            h,
            loss_steps,
            w_out,
            dy,
            d_out,
            T::zero(),
        );
        // ---- backward, top layer first
        let mut g_rest = g_layers;
        for l in (0..c.layers).rev() {
            let s = &layout.layers[l];
            let (lower, this) = g_rest.split_at_mut(s.w_ih.start);
            g_rest = lower;
            let (gw_ih, r) = this.split_at_mut(s.w_ih.len());
            let (gw_hh, r) = r.split_at_mut(s.w_hh.len());
            let (gb_ih, gb_hh) = r.split_at_mut(s.b_ih.len());
            let g = LayerGrads {
                w_ih: gw_ih,
                w_hh: gw_hh,
                b_ih: gb_ih,
                b_hh: &mut gb_hh[..s.b_hh.len()],
            };
            let (below, rest) = self.layers.split_at_mut(l);
            let (buf, above) = rest.split_at_mut(1);
            let buf = &mut buf[0];
            let x: &[T] = if l == 0 {
                &self.x
            } else {
                &below[l - 1].hs[h..]
            };
            let dh_above: &[T] = if l == top { &self.dh_top } else { &above[0].dx };
            let p = model.layer(l);
            let need_dx = l > 0;
            match c.cell {
                CellKind::Elman => {
                    cell::elman::backward::<T, L>(&p, x, n, buf, dh_above, g, need_dx)
                }
                CellKind::Gru => cell::gru::backward::<T, L>(&p, x, n, buf, dh_above, g, need_dx),
                CellKind::Lstm => cell::lstm::backward::<T, L>(&p, x, n, buf, dh_above, g, need_dx),
            }
        }
        total * inv
    }

    /// Gradient of the last loss with respect to every parameter (flat, model order).
    pub fn grads(&self) -> &[T] {
        self.grads.as_slice()
    }

    /// Mutable gradients (for clipping in place before an optimizer step).
    pub fn grads_mut(&mut self) -> &mut [T] {
        self.grads.as_mut_slice()
    }

    /// Predictions of the loss steps of the last pass: `d_output x loss_steps`, column-major.
    pub fn predictions(&self) -> &[T] {
        let d = self.config.d_output;
        &self.y[self.first_loss_step * d..self.n * d]
    }

    /// Writes the gradient of the last loss with respect to the start state (same layout as
    /// the state) into `out`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `out` has the wrong length.
    pub fn start_grad_to(&self, out: &mut [T]) -> Result<()> {
        let c = &self.config;
        if out.len() != c.state_len() {
            return Err(Error::len("start_grad_to", c.state_len(), out.len()));
        }
        let h = c.d_hidden;
        for (l, buf) in self.layers.iter().enumerate() {
            out[l * h..(l + 1) * h].copy_from_slice(&buf.dh);
            if c.cell.has_cell_state() {
                let off = c.layers * h + l * h;
                out[off..off + h].copy_from_slice(&buf.dc);
            }
        }
        Ok(())
    }

    /// Writes the state after the last step of the last pass into `out`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `out` has the wrong length.
    pub fn final_state_to(&self, out: &mut [T]) -> Result<()> {
        let c = &self.config;
        if out.len() != c.state_len() {
            return Err(Error::len("final_state_to", c.state_len(), out.len()));
        }
        let (h, n) = (c.d_hidden, self.n);
        for (l, buf) in self.layers.iter().enumerate() {
            out[l * h..(l + 1) * h].copy_from_slice(&buf.hs[n * h..(n + 1) * h]);
            if c.cell.has_cell_state() {
                let off = c.layers * h + l * h;
                out[off..off + h].copy_from_slice(&buf.cs[n * h..(n + 1) * h]);
            }
        }
        Ok(())
    }
}

// ---- Per-step gradient norms, read by adaptive truncation in the training layer.
impl<T: Float> Window<T> {
    /// Writes, for every step `t` of the last pass, the norm of the loss gradient with respect
    /// to that step's gate pre-activations over all layers, `sqrt(Σ_l ‖∂L/∂a_{l,t}‖²)`, into
    /// `out[t]`, and returns the number of steps `n`. Before the loss steps these are purely
    /// backpropagated gradients: their decay along the window measures how fast the gradient
    /// fades with the lag. No allocation.
    ///
    /// # Errors
    /// [`Error::Shape`] if `out` is shorter than the last pass's number of steps.
    pub fn step_grad_norms_to(&self, out: &mut [T]) -> Result<usize> {
        let (n, g) = (self.n, self.config.gate_rows());
        if out.len() < n {
            return Err(Error::len("step_grad_norms_to", n, out.len()));
        }
        out[..n].fill(T::zero());
        for buf in &self.layers {
            for (t, o) in out[..n].iter_mut().enumerate() {
                for v in &buf.da[t * g..(t + 1) * g] {
                    *o += *v * *v;
                }
            }
        }
        out[..n]
            .iter_mut()
            .for_each(|v| *v = T::cast(v.as_f64().sqrt()));
        Ok(n)
    }
}
