//! Recurrent cells with PyTorch's parameter layout and gate order.
//!
//! Every cell maps an input `x` (length `d_in`) and the previous state to a new hidden state
//! `h` (length `H`); `G` gate blocks of `H` rows each are stacked in `w_ih` (`G·H x d_in`),
//! `w_hh` (`G·H x H`), `b_ih` and `b_hh` (`G·H`), exactly as `torch.nn.RNN/GRU/LSTM` store them:
//!
//! - [`CellKind::Elman`] (`G = 1`): `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`
//! - [`CellKind::Gru`] (`G = 3`, gates r, z, n):
//!   `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
//!   `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`
//! - [`CellKind::Lstm`] (`G = 4`, gates i, f, g, o): `[i f g o] = W_ih x + b_ih + W_hh h + b_hh`,
//!   `c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)`, `h' = σ(o) ⊙ tanh(c')`
//!
//! Each module has the one-step forward used for live prediction and the forward and backward
//! passes over a whole window used for training. Both run on preallocated buffers.

pub(crate) mod elman;
pub(crate) mod gru;
pub(crate) mod lstm;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kind of recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Elman network with `tanh` (`torch.nn.RNN`).
    Elman,
    /// Gated recurrent unit (`torch.nn.GRU`), the default.
    #[default]
    Gru,
    /// Long short-term memory (`torch.nn.LSTM`).
    Lstm,
}

impl CellKind {
    /// Number of gate blocks `G` stacked in the weight matrices (1, 3 or 4).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Elman => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }

    /// Whether the cell carries a cell state `c` beside `h` (LSTM).
    pub fn has_cell_state(self) -> bool {
        matches!(self, CellKind::Lstm)
    }

    /// Lower-case name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Elman => "elman",
            CellKind::Gru => "gru",
            CellKind::Lstm => "lstm",
        }
    }
}

impl fmt::Display for CellKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CellKind {
    type Err = crate::Error;

    /// Parses `elman` (or `rnn`), `gru` or `lstm`, case-insensitively.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "elman" | "rnn" | "tanh" => Ok(CellKind::Elman),
            "gru" => Ok(CellKind::Gru),
            "lstm" => Ok(CellKind::Lstm),
            other => Err(crate::Error::config(
                "cell",
                format!("unknown cell {other:?}; expected elman, gru or lstm"),
            )),
        }
    }
}

/// Parameters of one layer, as slices of the model's flat parameter vector (column-major).
#[derive(Clone, Copy)]
pub(crate) struct LayerParams<'a, T> {
    pub w_ih: &'a [T],
    pub w_hh: &'a [T],
    pub b_ih: &'a [T],
    pub b_hh: &'a [T],
    pub d_in: usize,
    pub h: usize,
}

/// Gradients of one layer, same layout as [`LayerParams`].
pub(crate) struct LayerGrads<'a, T> {
    pub w_ih: &'a mut [T],
    pub w_hh: &'a mut [T],
    pub b_ih: &'a mut [T],
    pub b_hh: &'a mut [T],
}

/// Buffers for one layer over a window of up to `cap` steps, allocated once.
#[derive(Clone, Debug)]
pub(crate) struct LayerBuf<T> {
    /// `H x (cap+1)`: column 0 is the start state, column `t+1` the state after step `t`.
    pub hs: Vec<T>,
    /// LSTM cell states, same layout as `hs` (empty otherwise).
    pub cs: Vec<T>,
    /// `G·H x cap`: input projections (plus the biases that can be folded in).
    pub gi: Vec<T>,
    /// Per-cell saved activations (`GRU`: r, z, n, W_hn h + b_hn; `LSTM`: i, f, g, o, tanh c).
    pub act: Vec<T>,
    /// `G·H x cap`: gradient of the loss with respect to the input-side pre-activations.
    pub da: Vec<T>,
    /// `G·H x cap`: gradient with respect to the hidden-side pre-activations (GRU only).
    pub dah: Vec<T>,
    /// `d_in x cap`: gradient with respect to this layer's inputs (for the layer below).
    pub dx: Vec<T>,
    /// Running `dL/dh` and `dL/dc` during the backward sweep; the start-state gradient after it.
    pub dh: Vec<T>,
    /// See `dh`.
    pub dc: Vec<T>,
    /// Scratch of length `G·H`.
    pub tmp: Vec<T>,
    /// `H x G·H`: the transpose of `W_hh`, refreshed at the start of every backward pass.
    pub wt_hh: Vec<T>,
    /// `d_in x G·H`: the transpose of `W_ih` for layers that pass a gradient down (else empty).
    pub wt_ih: Vec<T>,
}

impl<T: crate::Float> LayerBuf<T> {
    pub fn new(kind: CellKind, d_in: usize, h: usize, cap: usize, need_dx: bool) -> Self {
        let g = kind.gates() * h;
        let z = |n: usize| vec![T::zero(); n];
        let act = match kind {
            CellKind::Elman => 0,
            CellKind::Gru => 4 * h * cap,
            CellKind::Lstm => 5 * h * cap,
        };
        LayerBuf {
            hs: z(h * (cap + 1)),
            cs: if kind.has_cell_state() {
                z(h * (cap + 1))
            } else {
                Vec::new()
            },
            gi: z(g * cap),
            act: z(act),
            da: z(g * cap),
            dah: if kind == CellKind::Gru {
                z(g * cap)
            } else {
                Vec::new()
            },
            dx: z(d_in * cap),
            dh: z(h),
            dc: z(h),
            tmp: z(g),
            wt_hh: z(g * h),
            wt_ih: if need_dx { z(g * d_in) } else { Vec::new() },
        }
    }
}
