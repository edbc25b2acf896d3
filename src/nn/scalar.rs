//! The floating-point types the engine is generic over (`f32`, the default, and `f64`).

use nalgebra::RealField;
use serde::{de::DeserializeOwned, Serialize};

/// A floating-point scalar the engine computes in: `f32` (the default, fast) or `f64`
/// (gradient checks, golden tests).
///
/// # Example
/// ```
/// use tbptt::Float;
/// assert_eq!(<f32 as Float>::cast(0.5), 0.5f32);
/// assert_eq!(2.0f64.as_f64(), 2.0);
/// ```
pub trait Float:
    RealField + Copy + Default + Serialize + DeserializeOwned + Send + Sync + std::fmt::Debug + 'static
{
    /// Converts from `f64` (rounding for `f32`).
    fn cast(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn as_f64(self) -> f64;
    /// Converts from `usize` (rounding for large values).
    fn of_usize(n: usize) -> Self {
        Self::cast(n as f64)
    }
    /// `self * a + b` with one rounding (a fused multiply-add where the CPU has one).
    fn fma(self, a: Self, b: Self) -> Self;
    /// The logistic sigmoid `1 / (1 + exp(-x))`. For `f32` a branch-free polynomial
    /// evaluation (relative error below 1e-6); for `f64` the libm functions.
    fn sigmoid(self) -> Self;
    /// `tanh(x)`, with the same precision rules as [`Float::sigmoid`].
    fn tanh_act(self) -> Self;
    /// Whether the value is neither NaN nor infinite.
    fn finite(self) -> bool;
    /// Short name of the type, `"f32"` or `"f64"`.
    const NAME: &'static str;
}

impl Float for f32 {
    #[inline(always)]
    fn cast(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fma(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + exp_f32(-self))
    }
    #[inline(always)]
    fn tanh_act(self) -> Self {
        tanh_f32(self)
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
    const NAME: &'static str = "f32";
}

impl Float for f64 {
    #[inline(always)]
    fn cast(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn fma(self, a: Self, b: Self) -> Self {
        self.mul_add(a, b)
    }
    #[inline(always)]
    fn sigmoid(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
    #[inline(always)]
    fn tanh_act(self) -> Self {
        self.tanh()
    }
    #[inline(always)]
    fn finite(self) -> bool {
        self.is_finite()
    }
    const NAME: &'static str = "f64";
}

/// `exp(x)` for `f32` without a libm call, so that loops over gates vectorize: Cody-Waite
/// range reduction `x = n ln 2 + r` and a degree-6 polynomial for `exp(r)` (Cephes `expf`
/// coefficients), scaled by `2^n` through the exponent bits. Relative error about 2e-7;
/// the input is clamped to `[-87, 88]`, so the result is never 0, infinite or NaN for finite
/// input (NaN in gives NaN out).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let k = x * LOG2E + ROUND;
    let n = k - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // `k`'s low mantissa bits hold `n + 2^22` as an integer (|n| <= 127), so the exponent
    // field is built with integer arithmetic alone (no saturating float-to-int conversion).
    let bits = (k.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23;
    e * f32::from_bits(bits)
}

/// `tanh(x)` for `f32` without a libm call: an odd polynomial below |x| = 0.625 (Cephes
/// `tanhf`), `1 − 2 / (exp(2|x|) + 1)` above, both computed and selected without a branch.
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let s = x * x;
    let p = -5.704_988_7e-3_f32;
    let p = p * s + 2.063_909e-2;
    let p = p * s - 5.373_971_6e-2;
    let p = p * s + 1.333_144_2e-1;
    let p = p * s - 3.333_328e-1;
    let small = p * s * x + x;
    let big = 1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0);
    let big = big.copysign(x);
    if a < 0.625 {
        small
    } else {
        big
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_tanh_sigmoid_match_libm() {
        let mut worst = [0.0f64; 3];
        let mut x = -30.0f32;
        while x <= 30.0 {
            let xd = x as f64;
            let e = (exp_f32(x) as f64 - xd.exp()).abs() / xd.exp();
            let t = (tanh_f32(x) as f64 - xd.tanh()).abs() / xd.tanh().abs().max(1e-30);
            let sg = 1.0 / (1.0 + (-xd).exp());
            let g = (x.sigmoid() as f64 - sg).abs() / sg;
            worst = [worst[0].max(e), worst[1].max(t), worst[2].max(g)];
            x += 0.001_3;
        }
        assert!(
            worst[0] < 1e-6 && worst[1] < 1e-6 && worst[2] < 1e-6,
            "{worst:?}"
        );
        assert_eq!(tanh_f32(0.0), 0.0);
        assert_eq!(tanh_f32(100.0), 1.0);
        assert_eq!(tanh_f32(-100.0), -1.0);
        assert!(0f32.sigmoid() == 0.5 && 1000f32.sigmoid() == 1.0 && (-1000f32).sigmoid() > 0.0);
        assert!(tanh_f32(f32::NAN).is_nan() && f32::NAN.sigmoid().is_nan());
    }
}
