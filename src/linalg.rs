//! Dense kernels over column-major slices, written so that they never allocate.
//!
//! nalgebra's matrices are the storage everywhere; these loops are what the hot path calls on
//! their slices (`as_slice`), because the generic `gemm` of nalgebra hands larger products to
//! `matrixmultiply`, which allocates a packing buffer on every call. Shapes are checked by the
//! callers once; here they are only `debug_assert!`ed.

use crate::Float;

/// `y = alpha * A x + beta * y`, `A` column-major `m x n` (leading dimension `m`).
/// With `beta == 0`, `y` is not read.
#[inline]
pub(crate) fn gemv<T: Float>(y: &mut [T], alpha: T, a: &[T], x: &[T], beta: T) {
    let m = y.len();
    let n = x.len();
    debug_assert!(a.len() >= m * n);
    if beta == T::zero() {
        y.fill(T::zero());
    } else if beta != T::one() {
        y.iter_mut().for_each(|v| *v *= beta);
    }
    if m == 0 {
        return;
    }
    // Four columns per pass: y is loaded and stored once per four columns.
    let mut cols = a.chunks_exact(4 * m).take(n / 4);
    let mut xs = x.chunks_exact(4);
    for (block, xq) in (&mut cols).zip(&mut xs) {
        let (c0, rest) = block.split_at(m);
        let (c1, rest) = rest.split_at(m);
        let (c2, c3) = rest.split_at(m);
        let (s0, s1, s2, s3) = (alpha * xq[0], alpha * xq[1], alpha * xq[2], alpha * xq[3]);
        for ((((yi, a0), a1), a2), a3) in y.iter_mut().zip(c0).zip(c1).zip(c2).zip(c3) {
            *yi += (s0 * *a0 + s1 * *a1) + (s2 * *a2 + s3 * *a3);
        }
    }
    let done = (n / 4) * 4;
    for (col, &xj) in a[done * m..].chunks_exact(m).zip(&x[done..n]) {
        axpy(y, alpha * xj, col);
    }
}

/// `y = alpha * A^T x + beta * y`, `A` column-major `m x n`, `x` of length `m`, `y` of `n`.
#[inline]
pub(crate) fn gemv_t<T: Float>(y: &mut [T], alpha: T, a: &[T], x: &[T], beta: T) {
    let m = x.len();
    debug_assert!(a.len() >= m * y.len());
    if m == 0 {
        y.iter_mut().for_each(|v| *v *= beta);
        return;
    }
    for (yj, col) in y.iter_mut().zip(a.chunks_exact(m)) {
        let d = dot(col, x);
        *yj = if beta == T::zero() {
            alpha * d
        } else {
            alpha * d + beta * *yj
        };
    }
}

/// `y += s * x`.
#[inline(always)]
pub(crate) fn axpy<T: Float>(y: &mut [T], s: T, x: &[T]) {
    debug_assert_eq!(y.len(), x.len());
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    let mut yc = y.chunks_exact_mut(8);
    let mut xc = x.chunks_exact(8);
    for (yy, xx) in (&mut yc).zip(&mut xc) {
        for i in 0..8 {
            yy[i] += s * xx[i];
        }
    }
    for (yy, xx) in yc.into_remainder().iter_mut().zip(xc.remainder()) {
        *yy += s * *xx;
    }
}

/// Dot product with eight independent accumulators (vectorizes, and is deterministic).
#[inline(always)]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [T::zero(); 8];
    let mut ac = a.chunks_exact(8);
    let mut bc = b.chunks_exact(8);
    for (aa, bb) in (&mut ac).zip(&mut bc) {
        for i in 0..8 {
            acc[i] += aa[i] * bb[i];
        }
    }
    let mut s = T::zero();
    for (aa, bb) in ac.remainder().iter().zip(bc.remainder()) {
        s += *aa * *bb;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s
}

/// `C = A B + beta C`: `A` is `m x k`, `B` is `k x n`, `C` is `m x n`, all column-major.
pub(crate) fn gemm_nn<T: Float>(
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
    for (cj, bj) in c.chunks_exact_mut(m).take(n).zip(b.chunks_exact(k.max(1))) {
        if beta == T::zero() {
            cj.fill(T::zero());
        } else if beta != T::one() {
            cj.iter_mut().for_each(|v| *v *= beta);
        }
        if k == 0 {
            continue;
        }
        for (ap, &bpj) in a.chunks_exact(m).take(k).zip(bj) {
            axpy(cj, bpj, ap);
        }
    }
}

/// `C = A B^T + beta C`: `A` is `m x k`, `B` is `n x k`, `C` is `m x n`, all column-major.
///
/// This is the shape of every weight gradient over a window: `dW = dA X^T`, a sum of `k`
/// outer products done as one product.
pub(crate) fn gemm_nt<T: Float>(
    c: &mut [T],
    m: usize,
    n: usize,
    a: &[T],
    b: &[T],
    k: usize,
    beta: T,
) {
    debug_assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= n * k);
    if m == 0 {
        return;
    }
    for (j, cj) in c.chunks_exact_mut(m).take(n).enumerate() {
        if beta == T::zero() {
            cj.fill(T::zero());
        } else if beta != T::one() {
            cj.iter_mut().for_each(|v| *v *= beta);
        }
        for (p, ap) in a.chunks_exact(m).take(k).enumerate() {
            axpy(cj, b[p * n + j], ap);
        }
    }
}

/// `C = A^T B + beta C`: `A` is `k x m`, `B` is `k x n`, `C` is `m x n`, all column-major.
pub(crate) fn gemm_tn<T: Float>(
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
    for (cj, bj) in c.chunks_exact_mut(m).take(n).zip(b.chunks_exact(k.max(1))) {
        gemv_t(cj, T::one(), a, &bj[..k], beta);
    }
}

/// Adds the sum of the `n` columns of the column-major `m x n` matrix `a` into `out`
/// (`out = beta * out + row sums`).
pub(crate) fn row_sums<T: Float>(out: &mut [T], a: &[T], n: usize, beta: T) {
    let m = out.len();
    if beta == T::zero() {
        out.fill(T::zero());
    } else if beta != T::one() {
        out.iter_mut().for_each(|v| *v *= beta);
    }
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

    #[test]
    fn kernels_equal_nalgebra_products() {
        for &(mm, nn, kk) in &[(1, 1, 1), (5, 3, 9), (17, 11, 13), (24, 8, 33), (3, 0, 4)] {
            let a = m(mm, kk, 0.1);
            let b = m(kk, nn, 0.2);
            let c0 = m(mm, nn, 0.3);
            let mut c = c0.clone();
            gemm_nn(
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
            gemm_nt(
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
            gemm_tn(
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
            gemv(y.as_mut_slice(), 2.0, a.as_slice(), x.as_slice(), -1.0);
            close(&(&a * &x * 2.0 - &y0), y.as_slice());

            let xt = m(mm, 1, 0.8);
            let mut yt = m(kk, 1, 0.9);
            let yt0 = yt.clone();
            gemv_t(yt.as_mut_slice(), 1.0, a.as_slice(), xt.as_slice(), 1.0);
            close(&(a.transpose() * &xt + &yt0), yt.as_slice());

            let mut s = vec![1.0; mm];
            row_sums(&mut s, a.as_slice(), kk, 1.0);
            let want: Vec<f64> = (0..mm).map(|i| 1.0 + a.row(i).sum()).collect();
            close(&DMatrix::from_vec(mm, 1, want), &s);
        }
    }
}
