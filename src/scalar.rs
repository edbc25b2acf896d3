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
    /// The logistic sigmoid `1 / (1 + exp(-x))`.
    fn sigmoid(self) -> Self;
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
        1.0 / (1.0 + (-self).exp())
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
    fn finite(self) -> bool {
        self.is_finite()
    }
    const NAME: &'static str = "f64";
}
