//! Elman cell: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.

use super::{LayerBuf, LayerGrads, LayerParams};
use crate::nn::linalg::{
    gemm_nn, gemm_nt, gemv, gemv_packed, pack_transposed, row_sums, transpose,
};
use crate::Float;

/// One live step: `h <- tanh(W_ih x + b_ih + W_hh h + b_hh)`; `a` is scratch of length `H`.
#[inline(always)]
pub(crate) fn step<T: Float, const L: u8>(
    p: &LayerParams<'_, T>,
    x: &[T],
    h: &mut [T],
    a: &mut [T],
) {
    let a = &mut a[..p.h];
    for ((ai, bi), bh) in a.iter_mut().zip(p.b_ih).zip(p.b_hh) {
        *ai = *bi + *bh;
    }
    gemv::<T, L>(a, p.w_ih, x, T::one());
    gemv::<T, L>(a, p.w_hh, h, T::one());
    for (hi, ai) in h.iter_mut().zip(a.iter()) {
        *hi = ai.tanh_act();
    }
}

/// Forward over `n` steps of `x` (`d_in x n`), from the start state in column 0 of `buf.hs`.
#[inline(always)]
pub(crate) fn forward<T: Float, const L: u8>(
    p: &LayerParams<'_, T>,
    x: &[T],
    n: usize,
    buf: &mut LayerBuf<T>,
) {
    let h = p.h;
    gemm_nn::<T, L>(&mut buf.gi, h, n, p.w_ih, x, p.d_in, T::zero());
    for col in buf.gi.chunks_exact_mut(h).take(n) {
        for ((v, bi), bh) in col.iter_mut().zip(p.b_ih).zip(p.b_hh) {
            *v += *bi + *bh;
        }
    }
    for t in 0..n {
        let (prev, next) = buf.hs.split_at_mut((t + 1) * h);
        let prev = &prev[t * h..];
        let next = &mut next[..h];
        next.copy_from_slice(&buf.gi[t * h..(t + 1) * h]);
        gemv::<T, L>(next, p.w_hh, prev, T::one());
        next.iter_mut().for_each(|v| *v = v.tanh_act());
    }
}

/// Backward over the `n` steps of the last [`forward`]. `dh_above` (`H x n`) is the gradient
/// reaching each `h_t` from outside the recurrence. Writes the layer's weight gradients,
/// `buf.dx` (if `need_dx`) and the start-state gradient in `buf.dh`.
#[inline(always)]
pub(crate) fn backward<T: Float, const L: u8>(
    p: &LayerParams<'_, T>,
    x: &[T],
    n: usize,
    buf: &mut LayerBuf<T>,
    dh_above: &[T],
    g: LayerGrads<'_, T>,
    need_dx: bool,
) {
    let h = p.h;
    pack_transposed::<T, L>(&mut buf.wt_hh, p.w_hh, h, h);
    buf.dh.fill(T::zero());
    for t in (0..n).rev() {
        let ht = &buf.hs[(t + 1) * h..(t + 2) * h];
        let up = &dh_above[t * h..(t + 1) * h];
        let da = &mut buf.da[t * h..(t + 1) * h];
        for (((d, u), g), y) in da.iter_mut().zip(up).zip(&buf.dh[..h]).zip(ht) {
            *d = (*u + *g) * (T::one() - *y * *y);
        }
        gemv_packed::<T, L>(&mut buf.dh, &buf.wt_hh, da, T::zero());
    }
    gemm_nt::<T, L>(g.w_ih, h, p.d_in, &buf.da, x, n, T::zero());
    gemm_nt::<T, L>(g.w_hh, h, h, &buf.da, &buf.hs, n, T::zero());
    row_sums(g.b_ih, &buf.da, n, T::zero());
    g.b_hh.copy_from_slice(g.b_ih);
    if need_dx {
        transpose(&mut buf.wt_ih, p.w_ih, h, p.d_in);
        gemm_nn::<T, L>(&mut buf.dx, p.d_in, n, &buf.wt_ih, &buf.da, h, T::zero());
    }
}
