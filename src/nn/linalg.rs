//! Dense kernels over column-major slices, written so that they never allocate.
//!
//! nalgebra's matrices are the storage everywhere; these loops are what the hot path calls on
//! their slices (`as_slice`), because the generic `gemm` of nalgebra hands larger products to
//! `matrixmultiply`, which allocates a packing buffer on every call. Shapes are checked by the
//! callers once; here they are only `debug_assert!`ed.
//!
//! Every kernel is `#[inline(always)]` and generic over `const L: u8`, the instruction-set
//! level of the copy it is inlined into ([`crate::nn::simd`]'s `BASE`, `AVX2`, `AVX512`).
//! Above the baseline the multiply-adds are fused (`mul_add`), which is only fast inside code
//! compiled for a CPU with FMA; at `AVX512` the GEMM keeps a four times larger block of `C` in the
//! 32 vector registers. The cells' entry points are compiled once per level, the widest one the
//! CPU has is chosen at run time, and everything below them, down to these loops, is inlined
//! into each copy. The order of the operations on each element is the same at every level above
//! the baseline, so the AVX2 and AVX-512 copies give bit-identical results.

use crate::nn::simd::{AVX512, BASE};
use crate::Float;

/// `a * b + c`, fused above the baseline level.
#[inline(always)]
pub(crate) fn madd<T: Float, const L: u8>(a: T, b: T, c: T) -> T {
    if L != BASE {
        a.fma(b, c)
    } else {
        a * b + c
    }
}

/// `y += A x` over `ncols` columns of `A` (column-major, column `j` at `a[j * lda..][..m]`
/// with `m = y.len()`), reading `x[j * xs]`. The rows go in blocks of eight vector registers
/// (then four, one, and single rows) held in registers across all `ncols` columns: each
/// element of `y` is loaded and stored once, and its multiply-adds run over `j` in order, as
/// in [`micro`] with one column (which this is). Eight independent sums per block cover the
/// FMA units' latency; the column-sweep loop this replaces reloaded and stored `y` every eight
/// columns, with the eight multiply-adds of each vector of `y` chained one after another.
#[inline(always)]
fn gemv_acc<T: Float, const L: u8>(
    y: &mut [T],
    a: &[T],
    lda: usize,
    x: &[T],
    xs: usize,
    ncols: usize,
) {
    let m = y.len();
    if m == 0 || ncols == 0 {
        return;
    }
    debug_assert!(lda >= m && a.len() >= (ncols - 1) * lda + m && x.len() > (ncols - 1) * xs);
    match (L == AVX512, std::mem::size_of::<T>() == 4) {
        (false, true) => gemv_rows::<T, L, 8>(y, a, lda, x, xs, ncols),
        (false, false) => gemv_rows::<T, L, 4>(y, a, lda, x, xs, ncols),
        (true, true) => gemv_rows::<T, L, 16>(y, a, lda, x, xs, ncols),
        (true, false) => gemv_rows::<T, L, 8>(y, a, lda, x, xs, ncols),
    }
}

/// `y += A x` for `8 V` rows of `A` held in eight vector registers of `V` lanes across all the
/// columns, as two halves of four updated in the same pass. (As one `[[T; V]; 8]`, LLVM
/// vectorizes the loop over the eight registers instead, with gathers and scatters, five
/// times slower; a loop of four it unrolls.)
#[inline(always)]
fn gemv_block8<T: Float, const L: u8, const V: usize>(
    y: &mut [T],
    a: &[T],
    lda: usize,
    x: &[T],
    xs: usize,
    ncols: usize,
) {
    let mut lo = [[T::zero(); V]; 4];
    let mut hi = [[T::zero(); V]; 4];
    let (ylo, yhi) = y.split_at_mut(4 * V);
    for (v, src) in lo.iter_mut().zip(ylo.chunks_exact(V)) {
        v.copy_from_slice(src);
    }
    for (v, src) in hi.iter_mut().zip(yhi.chunks_exact(V)) {
        v.copy_from_slice(src);
    }
    for j in 0..ncols {
        let s = x[j * xs];
        let (clo, chi) = a[j * lda..j * lda + 8 * V].split_at(4 * V);
        for (v, c) in lo.iter_mut().zip(clo.chunks_exact(V)) {
            for r in 0..V {
                v[r] = madd::<T, L>(c[r], s, v[r]);
            }
        }
        for (v, c) in hi.iter_mut().zip(chi.chunks_exact(V)) {
            for r in 0..V {
                v[r] = madd::<T, L>(c[r], s, v[r]);
            }
        }
    }
    for (v, dst) in lo.iter().zip(ylo.chunks_exact_mut(V)) {
        dst.copy_from_slice(v);
    }
    for (v, dst) in hi.iter().zip(yhi.chunks_exact_mut(V)) {
        dst.copy_from_slice(v);
    }
}

/// [`gemv_acc`]'s row blocks with vectors of `V` lanes.
#[inline(always)]
fn gemv_rows<T: Float, const L: u8, const V: usize>(
    y: &mut [T],
    a: &[T],
    lda: usize,
    x: &[T],
    xs: usize,
    ncols: usize,
) {
    let m = y.len();
    let mut i = 0;
    while i + 8 * V <= m {
        gemv_block8::<T, L, V>(&mut y[i..i + 8 * V], &a[i..], lda, x, xs, ncols);
        i += 8 * V;
    }
    if i + 4 * V <= m {
        micro::<T, L, V, 4, 1>(&mut y[i..], m, &a[i..], lda, x, 0, xs, ncols);
        i += 4 * V;
    }
    while i + V <= m {
        micro::<T, L, V, 1, 1>(&mut y[i..], m, &a[i..], lda, x, 0, xs, ncols);
        i += V;
    }
    while i < m {
        micro::<T, L, 1, 1, 1>(&mut y[i..], m, &a[i..], lda, x, 0, xs, ncols);
        i += 1;
    }
}

#[inline(always)]
fn scale<T: Float>(y: &mut [T], beta: T) {
    if beta == T::zero() {
        y.fill(T::zero());
    } else if beta != T::one() {
        y.iter_mut().for_each(|v| *v *= beta);
    }
}

/// Vector lanes of `T` at level `L`: 16 `f32` or 8 `f64` at 512 bits, 8 `f32` or 4 `f64`
/// below.
#[inline(always)]
fn lanes<T: Float, const L: u8>() -> usize {
    let bytes = if L == AVX512 { 64 } else { 32 };
    bytes / std::mem::size_of::<T>()
}

/// Rows per panel of a packed matrix ([`pack_transposed`], [`gemv_packed`]): eight vector
/// registers.
#[inline(always)]
fn panel_rows<T: Float, const L: u8>() -> usize {
    8 * lanes::<T, L>()
}

/// `dst = A^T`, `A` column-major `m x n`, packed for [`gemv_packed`] as the `n x m` matrix
/// it is: the rows in panels of [`panel_rows`] (the last one shorter), each panel
/// column-major with its own rows as the leading dimension, so the gemv streams each panel
/// as one contiguous run. A panel of `A^T`'s rows is the transpose of a run of `A`'s
/// columns, contiguous in `A`, so each panel is one tiled [`transpose`]. The backward passes
/// multiply by the transposed recurrent matrix once per step and pack it once per window.
/// (Packing `W_hh` itself for the forward pass gained nothing: its column-major runs of 128
/// rows already stream well, and the copy cost 3% at H = 256.) The layout depends on `L`.
#[inline(always)]
pub(crate) fn pack_transposed<T: Float, const L: u8>(dst: &mut [T], a: &[T], m: usize, n: usize) {
    let rp = panel_rows::<T, L>();
    debug_assert!(dst.len() >= m * n && a.len() >= m * n);
    for j0 in (0..n).step_by(rp) {
        let r = rp.min(n - j0);
        transpose(
            &mut dst[j0 * m..(j0 + r) * m],
            &a[j0 * m..(j0 + r) * m],
            m,
            r,
        );
    }
}

/// `y = A x + beta * y` with `A` (`y.len() x x.len()`) packed by [`pack_transposed`] at the
/// same level `L`. Each element's sum runs over the columns in
/// order, so the result equals [`gemv`]'s on the unpacked matrix to the bit.
#[inline(always)]
pub(crate) fn gemv_packed<T: Float, const L: u8>(y: &mut [T], packed: &[T], x: &[T], beta: T) {
    scale(y, beta);
    let (m, n) = (y.len(), x.len());
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(packed.len() >= m * n);
    match (L == AVX512, std::mem::size_of::<T>() == 4) {
        (false, true) => gemv_panels::<T, L, 8>(y, packed, x),
        (false, false) => gemv_panels::<T, L, 4>(y, packed, x),
        (true, true) => gemv_panels::<T, L, 16>(y, packed, x),
        (true, false) => gemv_panels::<T, L, 8>(y, packed, x),
    }
}

/// [`gemv_packed`] with vectors of `V` lanes (`V = lanes::<T, L>()`).
#[inline(always)]
fn gemv_panels<T: Float, const L: u8, const V: usize>(y: &mut [T], packed: &[T], x: &[T]) {
    let (m, n) = (y.len(), x.len());
    let rp = 8 * V;
    let m_full = m / rp * rp;
    for i0 in (0..m_full).step_by(rp) {
        gemv_block8::<T, L, V>(&mut y[i0..i0 + rp], &packed[i0 * n..], rp, x, 1, n);
    }
    if m_full < m {
        let rem = m - m_full;
        gemv_rows::<T, L, V>(&mut y[m_full..], &packed[m_full * n..], rem, x, 1, n);
    }
}

/// `y = A x + beta * y`, `A` column-major `m x n` (leading dimension `m = y.len()`,
/// `n = x.len()`). With `beta == 0`, `y` is not read.
#[inline(always)]
pub(crate) fn gemv<T: Float, const L: u8>(y: &mut [T], a: &[T], x: &[T], beta: T) {
    scale(y, beta);
    gemv_acc::<T, L>(y, a, y.len(), x, 1, x.len());
}

/// `y = A^T x + beta * y`, `A` column-major `m x n`, `x` of length `m`, `y` of `n`.
/// Four columns at a time share each load of `x`.
#[inline(always)]
pub(crate) fn gemv_t<T: Float, const L: u8>(y: &mut [T], a: &[T], x: &[T], beta: T) {
    let m = x.len();
    let n = y.len();
    if m == 0 {
        scale(y, beta);
        return;
    }
    debug_assert!(a.len() >= m * n);
    let put = |yj: &mut T, d: T| {
        *yj = if beta == T::zero() {
            d
        } else {
            madd::<T, L>(beta, *yj, d)
        };
    };
    let mut j = 0;
    while j + 4 <= n {
        let block = &a[j * m..(j + 4) * m];
        let (c0, rest) = block.split_at(m);
        let (c1, rest) = rest.split_at(m);
        let (c2, c3) = rest.split_at(m);
        let d = dot4::<T, L>([c0, c1, c2, c3], x);
        for q in 0..4 {
            put(&mut y[j + q], d[q]);
        }
        j += 4;
    }
    while j < n {
        let d = dot::<T, L>(&a[j * m..(j + 1) * m], x);
        put(&mut y[j], d);
        j += 1;
    }
}

/// Four dot products against the same `x`, each with eight independent lanes; every load of
/// `x` serves four columns.
#[inline(always)]
fn dot4<T: Float, const L: u8>(c: [&[T]; 4], x: &[T]) -> [T; 4] {
    let m = x.len();
    let full = m / 8 * 8;
    let (xh, xt) = x.split_at(full);
    let [c0, c1, c2, c3] = c.map(|col| col[..m].split_at(full));
    let (mut a0, mut a1, mut a2, mut a3) = (
        [T::zero(); 8],
        [T::zero(); 8],
        [T::zero(); 8],
        [T::zero(); 8],
    );
    for ((((xv, v0), v1), v2), v3) in xh
        .chunks_exact(8)
        .zip(c0.0.chunks_exact(8))
        .zip(c1.0.chunks_exact(8))
        .zip(c2.0.chunks_exact(8))
        .zip(c3.0.chunks_exact(8))
    {
        for r in 0..8 {
            a0[r] = madd::<T, L>(v0[r], xv[r], a0[r]);
            a1[r] = madd::<T, L>(v1[r], xv[r], a1[r]);
            a2[r] = madd::<T, L>(v2[r], xv[r], a2[r]);
            a3[r] = madd::<T, L>(v3[r], xv[r], a3[r]);
        }
    }
    let hsum = |v: [T; 8]| ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
    let mut d = [hsum(a0), hsum(a1), hsum(a2), hsum(a3)];
    for (i, xv) in xt.iter().enumerate() {
        d[0] = madd::<T, L>(c0.1[i], *xv, d[0]);
        d[1] = madd::<T, L>(c1.1[i], *xv, d[1]);
        d[2] = madd::<T, L>(c2.1[i], *xv, d[2]);
        d[3] = madd::<T, L>(c3.1[i], *xv, d[3]);
    }
    d
}

/// Dot product with sixteen independent accumulators (vectorizes, and is deterministic).
#[inline(always)]
pub(crate) fn dot<T: Float, const L: u8>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); 16];
    let mut ac = a.chunks_exact(16);
    let mut bc = b.chunks_exact(16);
    for (aa, bb) in (&mut ac).zip(&mut bc) {
        for i in 0..16 {
            acc[i] = madd::<T, L>(aa[i], bb[i], acc[i]);
        }
    }
    let mut s = T::zero();
    for (aa, bb) in ac.remainder().iter().zip(bc.remainder()) {
        s = madd::<T, L>(*aa, *bb, s);
    }
    for i in 0..8 {
        acc[i] += acc[i + 8];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
}

/// `C = A B' + beta C` over column-major `C` (`m x n`) and `A` (`m x k`), where column `j` of
/// `B'` is read from `b` at `j * col_step`, its elements `elem_stride` apart: `B` itself
/// (`col_step = k`, stride 1) or `B^T` for a column-major `n x k` `B` (`col_step = 1`, stride
/// `n`).
///
/// Register-blocked: [`micro`] keeps a block of `C` (two vector registers of rows — 16 `f32`
/// or 8 `f64` at 256 bits, twice that at 512 — by four columns, or eight at 512) in registers
/// while the `K` loop runs innermost over it, so each element of `C` is loaded and stored once
/// per `K` block and every load of `A` serves all the block's columns. Every element of `C` is
/// still `beta * c` followed by one multiply-add per `p` in increasing order, so the result is
/// bit-identical to the column-at-a-time [`gemv_acc`] loop, which does the rows below a whole
/// block.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_strided<T: Float, const L: u8>(
    c: &mut [T],
    m: usize,
    n: usize,
    a: &[T],
    b: &[T],
    k: usize,
    beta: T,
    steps: (usize, usize),
) {
    debug_assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 {
        return;
    }
    for j in 0..n {
        scale(&mut c[j * m..(j + 1) * m], beta);
    }
    // One block of `C` is 8 vector registers at 256 bits (two per column, four columns) and
    // 16 of the 32 at 512 bits (two per column, eight columns).
    match (L == AVX512, std::mem::size_of::<T>() == 4) {
        (false, true) => gemm_blocked::<T, L, 8, 2, 4>(c, m, n, a, b, k, steps),
        (false, false) => gemm_blocked::<T, L, 4, 2, 4>(c, m, n, a, b, k, steps),
        (true, true) => gemm_blocked::<T, L, 16, 2, 8>(c, m, n, a, b, k, steps),
        (true, false) => gemm_blocked::<T, L, 8, 2, 8>(c, m, n, a, b, k, steps),
    }
}

/// `C += A B'` (see [`gemm_strided`]) in blocks of `MR = V C` rows (`C` vector registers of
/// `V` lanes) by `NR` columns, over `K` blocks of at most [`KB`]: the `MR x KB` panel of `A`
/// (16 KiB at most) stays in L1 while every column block of `C` takes its share of it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_blocked<T: Float, const L: u8, const V: usize, const C: usize, const NR: usize>(
    c: &mut [T],
    m: usize,
    n: usize,
    a: &[T],
    b: &[T],
    k: usize,
    (col_step, elem_stride): (usize, usize),
) {
    let mr = V * C;
    let m_full = m / mr * mr;
    let n_full = n / NR * NR;
    for p0 in (0..k).step_by(KB) {
        let kb = KB.min(k - p0);
        let bk = |j: usize| &b[j * col_step + p0 * elem_stride..];
        for i0 in (0..m_full).step_by(mr) {
            let ak = &a[p0 * m + i0..];
            for j0 in (0..n_full).step_by(NR) {
                micro::<T, L, V, C, NR>(
                    &mut c[j0 * m + i0..],
                    m,
                    ak,
                    m,
                    bk(j0),
                    col_step,
                    elem_stride,
                    kb,
                );
            }
            for j in n_full..n {
                micro::<T, L, V, C, 1>(
                    &mut c[j * m + i0..],
                    m,
                    ak,
                    m,
                    bk(j),
                    col_step,
                    elem_stride,
                    kb,
                );
            }
        }
        if m_full < m {
            for j in 0..n {
                gemv_acc::<T, L>(
                    &mut c[j * m + m_full..(j + 1) * m],
                    &a[p0 * m + m_full..],
                    m,
                    bk(j),
                    elem_stride,
                    kb,
                );
            }
        }
    }
}

/// Depth of a `K` block.
const KB: usize = 128;

/// `C[..MR, ..N] += A[..MR, ..kb] B'[..kb, ..N]`, `MR = V C`, with the `MR x N` block of `C`
/// in registers:
/// `C` column `q` at `c[q * ldc..]`, `A` column `p` at `a[p * lda..]`, `B'[p, q]` at
/// `b[q * col_step + p * elem_stride]`. Each sum runs over `p` in order.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn micro<T: Float, const L: u8, const V: usize, const C: usize, const N: usize>(
    c: &mut [T],
    ldc: usize,
    a: &[T],
    lda: usize,
    b: &[T],
    col_step: usize,
    elem_stride: usize,
    kb: usize,
) {
    let mr = V * C;
    if kb == 0 {
        return;
    }
    // Checked once here, so that the loop over `p` indexes without checks: a check there
    // (one per column of `B` per step) made LLVM store every accumulator after each
    // multiply-add, which halved the weight-gradient GEMM's rate.
    assert!(a.len() >= (kb - 1) * lda + mr);
    assert!(b.len() > (N - 1) * col_step + (kb - 1) * elem_stride);
    debug_assert!(c.len() >= (N - 1) * ldc + mr);
    // One `[T; V]` per vector register: LLVM keeps a block of that shape in registers at
    // every size, where a flat `[T; 32]` row block ends up on the stack at 512 bits.
    let mut acc = [[[T::zero(); V]; C]; N];
    for (q, accq) in acc.iter_mut().enumerate() {
        for (ch, v) in accq.iter_mut().enumerate() {
            let at = q * ldc + ch * V;
            v.copy_from_slice(&c[at..at + V]);
        }
    }
    for p in 0..kb {
        // SAFETY: `p < kb`, so `p * lda + mr <= (kb - 1) * lda + mr <= a.len()` (asserted).
        let ap = unsafe { a.get_unchecked(p * lda..p * lda + mr) };
        let mut av = [[T::zero(); V]; C];
        for (ch, v) in av.iter_mut().enumerate() {
            v.copy_from_slice(&ap[ch * V..(ch + 1) * V]);
        }
        for (q, accq) in acc.iter_mut().enumerate() {
            // SAFETY: `q < N` and `p < kb`, so the index is at most
            // `(N - 1) * col_step + (kb - 1) * elem_stride < b.len()` (asserted).
            let s = unsafe { *b.get_unchecked(q * col_step + p * elem_stride) };
            for (v, a) in accq.iter_mut().zip(&av) {
                for r in 0..V {
                    v[r] = madd::<T, L>(a[r], s, v[r]);
                }
            }
        }
    }
    for (q, accq) in acc.iter().enumerate() {
        for (ch, v) in accq.iter().enumerate() {
            let at = q * ldc + ch * V;
            c[at..at + V].copy_from_slice(v);
        }
    }
}

/// `C = A B + beta C`: `A` is `m x k`, `B` is `k x n`, `C` is `m x n`, all column-major.
#[inline(always)]
pub(crate) fn gemm_nn<T: Float, const L: u8>(
    c: &mut [T],
    m: usize,
    n: usize,
    a: &[T],
    b: &[T],
    k: usize,
    beta: T,
) {
    gemm_strided::<T, L>(c, m, n, a, b, k, beta, (k, 1));
}

/// `C = A B^T + beta C`: `A` is `m x k`, `B` is `n x k`, `C` is `m x n`, all column-major.
///
/// This is the shape of every weight gradient over a window: `dW = dA X^T`, a sum of `k`
/// outer products done as one product.
#[inline(always)]
pub(crate) fn gemm_nt<T: Float, const L: u8>(
    c: &mut [T],
    m: usize,
    n: usize,
    a: &[T],
    b: &[T],
    k: usize,
    beta: T,
) {
    gemm_strided::<T, L>(c, m, n, a, b, k, beta, (1, n));
}

/// `C = A^T B + beta C`: `A` is `k x m`, `B` is `k x n`, `C` is `m x n`, all column-major.
#[inline(always)]
pub(crate) fn gemm_tn<T: Float, const L: u8>(
    c: &mut [T],
    m: usize,
    n: usize,
    a: &[T],
    b: &[T],
    k: usize,
    beta: T,
) {
    debug_assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 {
        return;
    }
    if beta == T::zero() && (1..8).contains(&k) {
        // Shorter than one vector of `dot4`: its sums are then plain in-order multiply-adds
        // from zero, done here as `k` passes over each column of `C`, which vectorize over
        // the rows (the readout's gradient, `k = d_out`, runs this way), to the same bits.
        for (cj, bj) in c.chunks_exact_mut(m).take(n).zip(b.chunks_exact(k)) {
            cj.fill(T::zero());
            for (p, &bp) in bj.iter().enumerate() {
                for (ci, ai) in cj.iter_mut().zip(a[p..].iter().step_by(k)) {
                    *ci = madd::<T, L>(*ai, bp, *ci);
                }
            }
        }
        return;
    }
    for (cj, bj) in c.chunks_exact_mut(m).take(n).zip(b.chunks_exact(k.max(1))) {
        gemv_t::<T, L>(cj, a, &bj[..k], beta);
    }
}

/// `dst = src^T`: `src` is column-major `rows x cols`, `dst` column-major `cols x rows`. Tiles
/// of 8 x 8 keep both sides' cache lines in use. [`pack_transposed`] builds on it.
#[inline(always)]
pub(crate) fn transpose<T: Float>(dst: &mut [T], src: &[T], rows: usize, cols: usize) {
    debug_assert!(dst.len() >= rows * cols && src.len() >= rows * cols);
    const B: usize = 8;
    let (dst, src) = (&mut dst[..rows * cols], &src[..rows * cols]);
    for i0 in (0..rows).step_by(B) {
        let i1 = (i0 + B).min(rows);
        for j0 in (0..cols).step_by(B) {
            let j1 = (j0 + B).min(cols);
            if i1 - i0 == B && j1 - j0 == B {
                transpose_tile::<T, B>(
                    &mut dst[i0 * cols + j0..],
                    cols,
                    &src[j0 * rows + i0..],
                    rows,
                );
                continue;
            }
            for i in i0..i1 {
                let out = &mut dst[i * cols + j0..i * cols + j1];
                for (o, j) in out.iter_mut().zip(j0..j1) {
                    *o = src[j * rows + i];
                }
            }
        }
    }
}

/// One full `B x B` tile of [`transpose`]: `B` contiguous runs of a source column are read
/// into registers and written out as `B` runs of destination rows, with no per-element
/// bounds check (the tile's extent is checked once per run).
#[inline(always)]
fn transpose_tile<T: Float, const B: usize>(
    dst: &mut [T],
    ld_dst: usize,
    src: &[T],
    ld_src: usize,
) {
    let mut tile = [[T::zero(); B]; B];
    for (q, col) in tile.iter_mut().enumerate() {
        col.copy_from_slice(&src[q * ld_src..q * ld_src + B]);
    }
    for r in 0..B {
        let out: &mut [T; B] = (&mut dst[r * ld_dst..r * ld_dst + B])
            .try_into()
            .expect("B");
        for (q, o) in out.iter_mut().enumerate() {
            *o = tile[q][r];
        }
    }
}

/// `out = beta * out + row sums` of the column-major `m x n` matrix `a` (`m = out.len()`).
#[inline(always)]
pub(crate) fn row_sums<T: Float>(out: &mut [T], a: &[T], n: usize, beta: T) {
    let m = out.len();
    scale(out, beta);
    if m == 0 {
        return;
    }
    for col in a.chunks_exact(m).take(n) {
        for (o, v) in out.iter_mut().zip(col) {
            *o += *v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::simd::AVX2;
    use nalgebra::DMatrix;

    fn m(r: usize, c: usize, seed: f64) -> DMatrix<f64> {
        DMatrix::from_fn(r, c, |i, j| ((i * 7 + j * 3) as f64 * 0.37 + seed).sin())
    }

    fn close(a: &DMatrix<f64>, b: &[f64]) {
        for (x, y) in a.as_slice().iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
        assert_eq!(a.len(), b.len());
    }

    fn check<const L: u8>() {
        for &(mm, nn, kk) in &[
            (1, 1, 1),
            (5, 3, 9),
            (17, 11, 13),
            (24, 8, 33),
            (3, 0, 4),
            (70, 5, 40),
            (96, 3, 2),
        ] {
            let a = m(mm, kk, 0.1);
            let b = m(kk, nn, 0.2);
            let c0 = m(mm, nn, 0.3);
            let mut c = c0.clone();
            gemm_nn::<f64, L>(
                c.as_mut_slice(),
                mm,
                nn,
                a.as_slice(),
                b.as_slice(),
                kk,
                0.5,
            );
            close(&(&a * &b + &c0 * 0.5), c.as_slice());

            let bt = m(nn, kk, 0.4);
            let mut c = c0.clone();
            gemm_nt::<f64, L>(
                c.as_mut_slice(),
                mm,
                nn,
                a.as_slice(),
                bt.as_slice(),
                kk,
                1.0,
            );
            close(&(&a * bt.transpose() + &c0), c.as_slice());

            let at = m(kk, mm, 0.5);
            let mut c = c0.clone();
            gemm_tn::<f64, L>(
                c.as_mut_slice(),
                mm,
                nn,
                at.as_slice(),
                b.as_slice(),
                kk,
                0.0,
            );
            close(&(at.transpose() * &b), c.as_slice());

            let x = m(kk, 1, 0.6);
            let mut y = m(mm, 1, 0.7);
            let y0 = y.clone();
            gemv::<f64, L>(y.as_mut_slice(), a.as_slice(), x.as_slice(), -1.0);
            close(&(&a * &x - &y0), y.as_slice());

            let xt = m(mm, 1, 0.8);
            let mut yt = m(kk, 1, 0.9);
            let yt0 = yt.clone();
            gemv_t::<f64, L>(yt.as_mut_slice(), a.as_slice(), xt.as_slice(), 1.0);
            close(&(a.transpose() * &xt + &yt0), yt.as_slice());

            let mut tr = vec![0.0; mm * kk];
            transpose(&mut tr, a.as_slice(), mm, kk);
            close(&a.transpose(), &tr);

            let mut s = vec![1.0; mm];
            row_sums(&mut s, a.as_slice(), kk, 1.0);
            let want: Vec<f64> = (0..mm).map(|i| 1.0 + a.row(i).sum()).collect();
            close(&DMatrix::from_vec(mm, 1, want), &s);
        }
    }

    /// `C = A B' + beta C` the plain way: `beta * c` (zero when `beta` is zero), then one
    /// multiply-add per `p` in order, `B'[p, j]` at `b[j * cs + p * es]`.
    #[allow(clippy::too_many_arguments)]
    fn naive<T: Float, const L: u8>(
        c: &mut [T],
        m: usize,
        n: usize,
        a: &[T],
        b: &[T],
        k: usize,
        beta: T,
        (cs, es): (usize, usize),
    ) {
        for j in 0..n {
            for i in 0..m {
                let mut v = if beta == T::zero() {
                    T::zero()
                } else {
                    c[j * m + i] * beta
                };
                for p in 0..k {
                    v = madd::<T, L>(a[p * m + i], b[j * cs + p * es], v);
                }
                c[j * m + i] = v;
            }
        }
    }

    fn vals<T: Float>(len: usize, seed: f64) -> Vec<T> {
        (0..len)
            .map(|i| T::cast((i as f64 * 0.731 + seed).sin()))
            .collect()
    }

    /// The register-blocked GEMMs at odd sizes (below, at and past a block of rows, columns
    /// and `K`): bit-identical to the plain loop with the same order of multiply-adds, and
    /// within `tol * k` of the float64 product.
    #[inline(always)]
    fn blocked_against_naive<T: Float, const L: u8>(tol: f64) {
        let sizes = [1, 3, 7, 17, 33, 65];
        for &mm in &sizes {
            for &nn in &[1, 3, 5, 17] {
                for &kk in &[1, 7, 33, 129, 257] {
                    let a = vals::<T>(mm * kk, 0.1);
                    let c0 = vals::<T>(mm * nn, 0.3);
                    for (steps, b) in [
                        ((kk, 1), vals::<T>(kk * nn, 0.2)),
                        ((1, nn), vals::<T>(nn * kk, 0.4)),
                    ] {
                        for beta in [T::zero(), T::one(), T::cast(0.5)] {
                            let mut got = c0.clone();
                            if steps.1 == 1 {
                                gemm_nn::<T, L>(&mut got, mm, nn, &a, &b, kk, beta);
                            } else {
                                gemm_nt::<T, L>(&mut got, mm, nn, &a, &b, kk, beta);
                            }
                            let mut want = c0.clone();
                            naive::<T, L>(&mut want, mm, nn, &a, &b, kk, beta, steps);
                            let (g, w): (Vec<f64>, Vec<f64>) = got
                                .iter()
                                .zip(&want)
                                .map(|(g, w)| (g.as_f64(), w.as_f64()))
                                .unzip();
                            assert_eq!(g, w, "{mm}x{nn}x{kk} {steps:?}");
                            let mut exact: Vec<f64> =
                                c0.iter().map(|v| v.as_f64() * beta.as_f64()).collect();
                            let (a64, b64): (Vec<f64>, Vec<f64>) = (
                                a.iter().map(|v| v.as_f64()).collect(),
                                b.iter().map(|v| v.as_f64()).collect(),
                            );
                            naive::<f64, BASE>(&mut exact, mm, nn, &a64, &b64, kk, 1.0, steps);
                            for (g, e) in g.iter().zip(&exact) {
                                assert!(
                                    (g - e).abs() <= tol * kk as f64,
                                    "{mm}x{nn}x{kk}: {g} vs {e}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The packed gemv against the plain in-order loop, to the bit, with each panel shape, and
    /// the unpacked one likewise.
    fn packed_against_naive<T: Float, const L: u8>() {
        for &m in &[1, 3, 17, 63, 64, 65, 130, 200, 385] {
            for &n in &[1, 5, 64, 67] {
                let a = vals::<T>(m * n, 0.1);
                let mut at = vec![T::zero(); m * n];
                transpose(&mut at, &a, m, n);
                let mut packed = vec![T::zero(); m * n];
                pack_transposed::<T, L>(&mut packed, &a, m, n);
                let bits = |v: &[T]| v.iter().map(|x| x.as_f64()).collect::<Vec<_>>();
                for beta in [T::zero(), T::one(), T::cast(0.5)] {
                    // A^T x with A^T packed, then A x and A^T x unpacked.
                    let x = vals::<T>(m, 0.2);
                    let y0 = vals::<T>(n, 0.3);
                    let mut got = y0.clone();
                    gemv_packed::<T, L>(&mut got, &packed, &x, beta);
                    let mut want = y0.clone();
                    naive::<T, L>(&mut want, n, 1, &at, &x, m, beta, (m, 1));
                    assert_eq!(bits(&got), bits(&want), "{n}x{m} packed");
                    for (rows, cols, src) in [(m, n, &a), (n, m, &at)] {
                        let x = vals::<T>(cols, 0.2);
                        let y0 = vals::<T>(rows, 0.3);
                        let mut got = y0.clone();
                        gemv::<T, L>(&mut got, src, &x, beta);
                        let mut want = y0.clone();
                        naive::<T, L>(&mut want, rows, 1, src, &x, cols, beta, (cols, 1));
                        assert_eq!(bits(&got), bits(&want), "{rows}x{cols}");
                    }
                }
            }
        }
    }

    /// A check run at one kernel level, for both float types.
    trait AtLevel {
        fn run<const L: u8>();
    }

    /// Runs `C` at every level's block shapes as plain code and, where the CPU has them, in
    /// copies compiled for the AVX2 and AVX-512 instruction sets.
    fn at_every_level<C: AtLevel>() {
        C::run::<BASE>();
        C::run::<AVX2>();
        C::run::<AVX512>();
        #[cfg(target_arch = "x86_64")]
        {
            use crate::nn::simd::{level, Level};
            if level() >= Level::Avx2 {
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { compiled_avx2::<C>() };
            }
            if level() >= Level::Avx512 {
                // SAFETY: the CPU has AVX-512 F and VL.
                unsafe { compiled_avx512::<C>() };
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn compiled_avx2<C: AtLevel>() {
        C::run::<AVX2>();
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn compiled_avx512<C: AtLevel>() {
        C::run::<AVX512>();
    }

    struct Packed;
    impl AtLevel for Packed {
        fn run<const L: u8>() {
            packed_against_naive::<f32, L>();
            packed_against_naive::<f64, L>();
        }
    }

    struct Blocked;
    impl AtLevel for Blocked {
        fn run<const L: u8>() {
            blocked_against_naive::<f32, L>(1e-6);
            blocked_against_naive::<f64, L>(1e-14);
        }
    }

    #[test]
    fn packed_gemvs_equal_the_plain_loop_at_odd_sizes() {
        at_every_level::<Packed>();
    }

    #[test]
    fn blocked_gemms_equal_the_plain_loop_at_odd_sizes() {
        at_every_level::<Blocked>();
    }

    #[test]
    fn kernels_equal_nalgebra_products() {
        check::<BASE>();
        check::<AVX2>();
        check::<AVX512>();
    }
}
