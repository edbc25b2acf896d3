//! LSTM cell, PyTorch's formulation (gates i, f, g, o).

use super::{LayerBuf, LayerGrads, LayerParams};
use crate::nn::linalg::{
    gemm_nn, gemm_nt, gemv, gemv_packed, pack_transposed, row_sums, transpose,
};
use crate::Float;

/// One live step; `a` is scratch of length `4H`. `h` and `c` are updated in place.
#[inline(always)]
pub(crate) fn step<T: Float, const L: u8>(
    p: &LayerParams<'_, T>,
    x: &[T],
    h: &mut [T],
    c: &mut [T],
    a: &mut [T],
) {
    let hh = p.h;
    let a = &mut a[..4 * hh];
    for ((ai, bi), bh) in a.iter_mut().zip(p.b_ih).zip(p.b_hh) {
        *ai = *bi + *bh;
    }
    gemv::<T, L>(a, p.w_ih, x, T::one());
    gemv::<T, L>(a, p.w_hh, h, T::one());
    let (a_i, rest) = a.split_at(hh);
    let (a_f, rest) = rest.split_at(hh);
    let (a_g, a_o) = rest.split_at(hh);
    let (a_o, h, c) = (&a_o[..hh], &mut h[..hh], &mut c[..hh]);
    for i in 0..hh {
        let ig = a_i[i].sigmoid();
        let fg = a_f[i].sigmoid();
        let gg = a_g[i].tanh_act();
        let og = a_o[i].sigmoid();
        let cn = fg * c[i] + ig * gg;
        c[i] = cn;
        h[i] = og * cn.tanh_act();
    }
}

/// Forward over `n` steps of `x` (`d_in x n`) from the start state in column 0 of `buf.hs`
/// and `buf.cs`. Saves i, f, g, o (activated) and `tanh(c)` per step in `buf.act`.
#[inline(always)]
pub(crate) fn forward<T: Float, const L: u8>(
    p: &LayerParams<'_, T>,
    x: &[T],
    n: usize,
    buf: &mut LayerBuf<T>,
) {
    let h = p.h;
    let g4 = 4 * h;
    gemm_nn::<T, L>(&mut buf.gi, g4, n, p.w_ih, x, p.d_in, T::zero());
    for col in buf.gi.chunks_exact_mut(g4).take(n) {
        for ((v, bi), bh) in col.iter_mut().zip(p.b_ih).zip(p.b_hh) {
            *v += *bi + *bh;
        }
    }
    for t in 0..n {
        let act = &mut buf.act[t * 5 * h..(t + 1) * 5 * h];
        let (a, tc) = act.split_at_mut(g4);
        a.copy_from_slice(&buf.gi[t * g4..(t + 1) * g4]);
        gemv::<T, L>(a, p.w_hh, &buf.hs[t * h..(t + 1) * h], T::one());
        let (cprev, cnext) = buf.cs.split_at_mut((t + 1) * h);
        let cprev = &cprev[t * h..];
        let hnext = &mut buf.hs[(t + 1) * h..(t + 2) * h];
        let (a_i, rest) = a.split_at_mut(h);
        let (a_f, rest) = rest.split_at_mut(h);
        let (a_g, a_o) = rest.split_at_mut(h);
        let (a_o, cprev, cnext, tc) = (&mut a_o[..h], &cprev[..h], &mut cnext[..h], &mut tc[..h]);
        for i in 0..h {
            let ig = a_i[i].sigmoid();
            let fg = a_f[i].sigmoid();
            let gg = a_g[i].tanh_act();
            let og = a_o[i].sigmoid();
            a_i[i] = ig;
            a_f[i] = fg;
            a_g[i] = gg;
            a_o[i] = og;
            let cn = fg * cprev[i] + ig * gg;
            cnext[i] = cn;
            let t_c = cn.tanh_act();
            tc[i] = t_c;
            hnext[i] = og * t_c;
        }
    }
}

/// Backward over the `n` steps of the last [`forward`]; see `elman::backward`. Leaves the
/// start-state gradients in `buf.dh` and `buf.dc`.
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
    let g4 = 4 * h;
    let one = T::one();
    pack_transposed::<T, L>(&mut buf.wt_hh, p.w_hh, g4, h);
    buf.dh.fill(T::zero());
    buf.dc.fill(T::zero());
    for t in (0..n).rev() {
        let act = &buf.act[t * 5 * h..(t + 1) * 5 * h];
        let cprev = &buf.cs[t * h..(t + 1) * h];
        let up = &dh_above[t * h..(t + 1) * h];
        let da = &mut buf.da[t * g4..(t + 1) * g4];
        let (s_i, rest) = act.split_at(h);
        let (s_f, rest) = rest.split_at(h);
        let (s_g, rest) = rest.split_at(h);
        let (s_o, s_c) = rest.split_at(h);
        let (da_i, rest) = da.split_at_mut(h);
        let (da_f, rest) = rest.split_at_mut(h);
        let (da_g, da_o) = rest.split_at_mut(h);
        let (s_c, da_o, dh, dc) = (&s_c[..h], &mut da_o[..h], &buf.dh[..h], &mut buf.dc[..h]);
        for i in 0..h {
            let (ig, fg, gg, og, tc) = (s_i[i], s_f[i], s_g[i], s_o[i], s_c[i]);
            let dht = up[i] + dh[i];
            let dct = dht * og * (one - tc * tc) + dc[i];
            da_i[i] = dct * gg * ig * (one - ig);
            da_f[i] = dct * cprev[i] * fg * (one - fg);
            da_g[i] = dct * ig * (one - gg * gg);
            da_o[i] = dht * tc * og * (one - og);
            dc[i] = dct * fg;
        }
        gemv_packed::<T, L>(&mut buf.dh, &buf.wt_hh, da, T::zero());
    }
    gemm_nt::<T, L>(g.w_ih, g4, p.d_in, &buf.da, x, n, T::zero());
    gemm_nt::<T, L>(g.w_hh, g4, h, &buf.da, &buf.hs, n, T::zero());
    row_sums(g.b_ih, &buf.da, n, T::zero());
    g.b_hh.copy_from_slice(g.b_ih);
    if need_dx {
        transpose(&mut buf.wt_ih, p.w_ih, g4, p.d_in);
        gemm_nn::<T, L>(&mut buf.dx, p.d_in, n, &buf.wt_ih, &buf.da, g4, T::zero());
    }
}
