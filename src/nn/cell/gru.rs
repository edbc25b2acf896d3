//! GRU cell, PyTorch's formulation (gates r, z, n; `b_hn` inside `r ⊙ (·)`).

use super::{LayerBuf, LayerGrads, LayerParams};
use crate::nn::linalg::{
    gemm_nn, gemm_nt, gemv, gemv_packed, pack_transposed, row_sums, transpose,
};
use crate::Float;

/// Gate update of the window forward: from the input projection `gi` and hidden projection `gh`
/// (both `3H`, biases included) and the previous state `hp`, writes the new state into `hn`;
/// `act` (`4H`) receives r, z, n and `W_hn h + b_hn` for the backward pass.
#[inline(always)]
fn gates<T: Float>(gi: &[T], gh: &[T], hp: &[T], hn: &mut [T], act: &mut [T], h: usize) {
    let (gi_r, rest) = gi.split_at(h);
    let (gi_z, gi_n) = rest.split_at(h);
    let (gh_r, rest) = gh.split_at(h);
    let (gh_z, gh_n) = rest.split_at(h);
    let (ar, rest) = act.split_at_mut(h);
    let (az, rest) = rest.split_at_mut(h);
    let (an, ag) = rest.split_at_mut(h);
    // Every slice cut to exactly `h` so the loop runs without bounds checks and vectorizes.
    let (gi_n, gh_n, ag, hp, hn) = (&gi_n[..h], &gh_n[..h], &mut ag[..h], &hp[..h], &mut hn[..h]);
    for i in 0..h {
        let r = (gi_r[i] + gh_r[i]).sigmoid();
        let z = (gi_z[i] + gh_z[i]).sigmoid();
        let nn = (gi_n[i] + r * gh_n[i]).tanh_act();
        ar[i] = r;
        az[i] = z;
        an[i] = nn;
        ag[i] = gh_n[i];
        hn[i] = nn + z * (hp[i] - nn);
    }
}

/// One live step; `gi` and `gh` are scratch of length `3H`. `h` is updated in place.
#[inline(always)]
pub(crate) fn step<T: Float, const L: u8>(
    p: &LayerParams<'_, T>,
    x: &[T],
    h: &mut [T],
    gi: &mut [T],
    gh: &mut [T],
) {
    let g3 = 3 * p.h;
    let (gi, gh) = (&mut gi[..g3], &mut gh[..g3]);
    gi.copy_from_slice(p.b_ih);
    gemv::<T, L>(gi, p.w_ih, x, T::one());
    gh.copy_from_slice(p.b_hh);
    gemv::<T, L>(gh, p.w_hh, h, T::one());
    let hh = p.h;
    let (gi_r, rest) = gi.split_at(hh);
    let (gi_z, gi_n) = rest.split_at(hh);
    let (gh_r, rest) = gh.split_at(hh);
    let (gh_z, gh_n) = rest.split_at(hh);
    let (gi_n, gh_n, h) = (&gi_n[..hh], &gh_n[..hh], &mut h[..hh]);
    // h[i] is read before it is written, so the update is in place.
    for i in 0..hh {
        let r = (gi_r[i] + gh_r[i]).sigmoid();
        let z = (gi_z[i] + gh_z[i]).sigmoid();
        let nn = (gi_n[i] + r * gh_n[i]).tanh_act();
        h[i] = nn + z * (h[i] - nn);
    }
}

/// Forward over `n` steps of `x` (`d_in x n`) from the start state in column 0 of `buf.hs`.
#[inline(always)]
pub(crate) fn forward<T: Float, const L: u8>(
    p: &LayerParams<'_, T>,
    x: &[T],
    n: usize,
    buf: &mut LayerBuf<T>,
) {
    let h = p.h;
    let g3 = 3 * h;
    gemm_nn::<T, L>(&mut buf.gi, g3, n, p.w_ih, x, p.d_in, T::zero());
    // W_hh in panels for the T recurrent gemvs (the backward pass packs its transpose here).
    for col in buf.gi.chunks_exact_mut(g3).take(n) {
        for (v, b) in col.iter_mut().zip(p.b_ih) {
            *v += *b;
        }
    }
    for t in 0..n {
        let gh = &mut buf.tmp[..g3];
        gh.copy_from_slice(p.b_hh);
        gemv::<T, L>(gh, p.w_hh, &buf.hs[t * h..(t + 1) * h], T::one());
        let (prev, next) = buf.hs.split_at_mut((t + 1) * h);
        gates(
            &buf.gi[t * g3..(t + 1) * g3],
            gh,
            &prev[t * h..],
            &mut next[..h],
            &mut buf.act[t * 4 * h..(t + 1) * 4 * h],
            h,
        );
    }
}

/// Backward over the `n` steps of the last [`forward`]; see `elman::backward`.
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
    let g3 = 3 * h;
    let one = T::one();
    pack_transposed::<T, L>(&mut buf.wt_hh, p.w_hh, g3, h);
    buf.dh.fill(T::zero());
    for t in (0..n).rev() {
        let hp = &buf.hs[t * h..(t + 1) * h];
        let act = &buf.act[t * 4 * h..(t + 1) * 4 * h];
        let (r, rest) = act.split_at(h);
        let (z, rest) = rest.split_at(h);
        let (nn, ghn) = rest.split_at(h);
        let up = &dh_above[t * h..(t + 1) * h];
        let ghn = &ghn[..h];
        let da = &mut buf.da[t * g3..(t + 1) * g3];
        let dah = &mut buf.dah[t * g3..(t + 1) * g3];
        let (da_r, rest) = da.split_at_mut(h);
        let (da_z, da_n) = rest.split_at_mut(h);
        let (dah_r, rest) = dah.split_at_mut(h);
        let (dah_z, dah_n) = rest.split_at_mut(h);
        let (da_n, dah_n, dh) = (&mut da_n[..h], &mut dah_n[..h], &mut buf.dh[..h]);
        for i in 0..h {
            let dht = up[i] + dh[i];
            let dpn = dht * (one - z[i]) * (one - nn[i] * nn[i]);
            let dpz = dht * (hp[i] - nn[i]) * z[i] * (one - z[i]);
            let dpr = dpn * ghn[i] * r[i] * (one - r[i]);
            da_r[i] = dpr;
            da_z[i] = dpz;
            da_n[i] = dpn;
            dah_r[i] = dpr;
            dah_z[i] = dpz;
            dah_n[i] = dpn * r[i];
            dh[i] = dht * z[i];
        }
        gemv_packed::<T, L>(&mut buf.dh, &buf.wt_hh, dah, one);
    }
    gemm_nt::<T, L>(g.w_ih, g3, p.d_in, &buf.da, x, n, T::zero());
    gemm_nt::<T, L>(g.w_hh, g3, h, &buf.dah, &buf.hs, n, T::zero());
    row_sums(g.b_ih, &buf.da, n, T::zero());
    row_sums(g.b_hh, &buf.dah, n, T::zero());
    if need_dx {
        transpose(&mut buf.wt_ih, p.w_ih, g3, p.d_in);
        gemm_nn::<T, L>(&mut buf.dx, p.d_in, n, &buf.wt_ih, &buf.da, g3, T::zero());
    }
}
