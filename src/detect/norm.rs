//! Online normalization: running mean and variance per column, so the network sees values
//! near unit scale whatever the input's units, and forecasts are reported back in them.
//!
//! Cumulative (Welford) by default; with a half-life, exponentially weighted so the scale
//! follows a drifting stream. `z = (x − mean) / std`, `x = mean + std · z`.
//!
//! **Hostile values.** Once [`WARMUP`] observations have been seen, a value enters the
//! statistics winsorized at `mean ± CLAMP_SIGMA · std`, so a burst of absurd values (`1e30`)
//! moves the scale by a bounded factor per event instead of poisoning it for good; a genuine
//! level shift is still followed, as the standard deviation grows geometrically while the
//! clamp binds. Normalized values handed to the network are limited to `±Z_LIMIT`.

use serde::{Deserialize, Serialize};

/// How the running statistics weigh the past.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum NormMode {
    /// No normalization: values pass through unchanged.
    Off,
    /// Mean and variance of everything seen so far (default).
    #[default]
    Cumulative,
    /// Exponentially weighted, the weight of an event halving every `half_life` events.
    Ewm {
        /// Half-life in events (> 0).
        half_life: f64,
    },
}

/// Observations after which values enter the statistics winsorized.
pub const WARMUP: u64 = 20;
/// Winsorizing bound, in standard deviations from the running mean.
pub const CLAMP_SIGMA: f64 = 10.0;
/// Largest magnitude of a normalized value (values with normalization off are limited to
/// `±1e30`, inside the range of `f32`).
pub const Z_LIMIT: f64 = 1e6;
/// Largest magnitude of a raw value passed through with normalization off.
const RAW_LIMIT: f64 = 1e30;

/// Running per-column statistics. Updating never allocates.
///
/// # Example
/// ```
/// use tbptt::detect::norm::{NormMode, Normalizer};
/// let mut n = Normalizer::new(1, NormMode::Cumulative);
/// for x in [1.0, 2.0, 3.0] {
///     n.observe(&[x]);
/// }
/// let mut z = [0.0f32];
/// n.normalize_to(&[3.0], &mut z);
/// assert!((z[0] - 1.0).abs() < 1e-6); // mean 2, std 1 (sample variance)
/// let mut x = [0.0];
/// n.denormalize_to(&z, &mut x);
/// assert!((x[0] - 3.0).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    mode: NormMode,
    count: u64,
    weight: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Normalizer {
    /// Statistics for `d` columns.
    pub fn new(d: usize, mode: NormMode) -> Self {
        Normalizer {
            mode,
            count: 0,
            weight: 0.0,
            mean: vec![0.0; d],
            m2: vec![0.0; d],
        }
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The mode.
    pub fn mode(&self) -> NormMode {
        self.mode
    }

    /// Adds one observation (a row of `dim()` finite values).
    pub fn observe(&mut self, x: &[f64]) {
        let warm = self.count >= WARMUP;
        let weight = match self.mode {
            NormMode::Off => {
                self.count += 1;
                return;
            }
            NormMode::Cumulative => self.weight + 1.0,
            NormMode::Ewm { half_life } => {
                let decay = 0.5f64.powf(1.0 / half_life.max(1e-9));
                self.weight * decay + 1.0
            }
        };
        let a = 1.0 / weight;
        for (i, v) in x.iter().enumerate().take(self.mean.len()) {
            // Winsorized against the statistics so far, and bounded so that `d * d` cannot
            // overflow.
            let limit = if warm {
                CLAMP_SIGMA * self.std(i)
            } else {
                f64::MAX
            };
            let (m, s) = (&mut self.mean[i], &mut self.m2[i]);
            let d = (v - *m).clamp(-limit, limit).clamp(-1e150, 1e150);
            *m += a * d;
            // West's weighted update; for a = 1/n it is Welford's.
            *s = (1.0 - a) * (*s + a * d * d);
        }
        self.weight = weight;
        self.count += 1;
    }

    /// Mean of column `i`.
    pub fn mean(&self, i: usize) -> f64 {
        if self.mode == NormMode::Off {
            return 0.0;
        }
        self.mean.get(i).copied().unwrap_or(0.0)
    }

    /// Standard deviation used for column `i`: the sample standard deviation (unbiased for the
    /// cumulative mode), floored at `1e-6 · max(1, |mean|)`; before two observations, or with
    /// normalization off, `max(1, |mean|)` resp. 1.
    pub fn std(&self, i: usize) -> f64 {
        if self.mode == NormMode::Off {
            return 1.0;
        }
        let m = self.mean(i).abs().max(1.0);
        if self.count < 2 {
            return m;
        }
        let var = self.m2.get(i).copied().unwrap_or(0.0);
        let var = match self.mode {
            NormMode::Cumulative => var * self.weight / (self.weight - 1.0),
            _ => var,
        };
        var.sqrt().max(1e-6 * m)
    }

    /// `out[i] = (x[i] − mean_i) / std_i`, limited to `±Z_LIMIT` (`±1e30` with
    /// normalization off), so every output is finite in `f32`.
    pub fn normalize_to<T: crate::Float>(&self, x: &[f64], out: &mut [T]) {
        let limit = if self.mode == NormMode::Off {
            RAW_LIMIT
        } else {
            Z_LIMIT
        };
        for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
            let z = (v - self.mean(i)) / self.std(i);
            *o = T::cast(if z.is_nan() {
                0.0
            } else {
                z.clamp(-limit, limit)
            });
        }
    }

    /// Checks a deserialized normalizer: `d` columns, finite non-negative statistics and a
    /// valid mode.
    ///
    /// # Errors
    /// A message naming the first problem.
    pub fn validate(&self, d: usize) -> crate::Result<()> {
        if self.mean.len() != d || self.m2.len() != d {
            return Err(crate::Error::state(
                "norm",
                format!(
                    "normalizer has {} / {} columns, expected {d}",
                    self.mean.len(),
                    self.m2.len()
                ),
            ));
        }
        if let NormMode::Ewm { half_life } = self.mode {
            if !(half_life > 0.0 && half_life.is_finite()) {
                return Err(crate::Error::state(
                    "norm",
                    format!("normalizer half-life {half_life} is not positive"),
                ));
            }
        }
        let finite = self.mean.iter().all(|v| v.is_finite())
            && self.m2.iter().all(|v| v.is_finite() && *v >= 0.0)
            && self.weight.is_finite()
            && self.weight >= 0.0;
        if !finite {
            return Err(crate::Error::state(
                "norm",
                "normalizer statistics are not finite",
            ));
        }
        Ok(())
    }

    /// `out[i] = mean_i + std_i · z[i]`.
    pub fn denormalize_to<T: crate::Float>(&self, z: &[T], out: &mut [f64]) {
        for (i, (o, v)) in out.iter_mut().zip(z).enumerate() {
            *o = self.mean(i) + self.std(i) * v.as_f64();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_matches_two_pass_statistics() {
        let xs = [3.0, -1.0, 4.0, 1.5, 9.0, 2.6];
        let mut n = Normalizer::new(1, NormMode::Cumulative);
        for x in xs {
            n.observe(&[x]);
        }
        let mean = xs.iter().sum::<f64>() / 6.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
        assert!((n.mean(0) - mean).abs() < 1e-12);
        assert!((n.std(0) - var.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn ewm_follows_a_level_shift() {
        let mut n = Normalizer::new(1, NormMode::Ewm { half_life: 10.0 });
        let mut c = Normalizer::new(1, NormMode::Cumulative);
        for t in 0..200 {
            let x = if t < 100 { 0.0 } else { 100.0 } + (t % 3) as f64;
            n.observe(&[x]);
            c.observe(&[x]);
        }
        assert!((n.mean(0) - 101.0).abs() < 1.0, "{}", n.mean(0));
        // The shift is 125 standard deviations: the cumulative statistics take it in
        // winsorized at 10σ per event while the scale grows, so they lag the plain mean (51)
        // a little: 48.4.
        assert!((c.mean(0) - 51.0).abs() < 4.0, "{}", c.mean(0));
        assert!(
            c.mean(0) > 45.0 && c.std(0) > 20.0,
            "{} {}",
            c.mean(0),
            c.std(0)
        );
    }

    #[test]
    fn a_burst_of_huge_values_inflates_the_scale_by_a_bounded_factor() {
        // Hand-derived: 1000 alternating ±1 give std ≈ 1; each clamped burst value raises the
        // variance by a factor of about 1 + (CLAMP_SIGMA² − 1) / n ≈ 1.1 at n ≈ 1000, so 20
        // values of 1e30 leave std below 1.1^10 ≈ 2.6 (instead of 1e29).
        let mut n = Normalizer::new(1, NormMode::Cumulative);
        for t in 0..1000 {
            n.observe(&[if t % 2 == 0 { 1.0 } else { -1.0 }]);
        }
        for _ in 0..20 {
            n.observe(&[1e30]);
        }
        assert!(n.std(0) < 3.0 && n.std(0) > 1.5, "std {}", n.std(0));
        assert!(n.mean(0).abs() < 5.0, "mean {}", n.mean(0));
        let mut z = [0.0f32];
        n.normalize_to(&[1e300], &mut z);
        assert_eq!(z[0], Z_LIMIT as f32);
        // Values near f64::MAX do not overflow the statistics either.
        for _ in 0..3 {
            n.observe(&[f64::MAX]);
        }
        assert!(n.validate(1).is_ok());
        // A genuine level shift is followed: the clamp stops binding as the scale grows.
        let mut s = Normalizer::new(1, NormMode::Ewm { half_life: 50.0 });
        for t in 0..1000 {
            s.observe(&[(t % 3) as f64]);
        }
        for t in 0..2000 {
            s.observe(&[1000.0 + (t % 3) as f64]);
        }
        assert!((s.mean(0) - 1001.0).abs() < 1.0, "mean {}", s.mean(0));
        assert!(s.std(0) < 10.0, "std {}", s.std(0));
    }

    #[test]
    fn off_passes_values_through_and_constant_columns_stay_finite() {
        let mut off = Normalizer::new(2, NormMode::Off);
        off.observe(&[5.0, 6.0]);
        let mut z = [0.0f64; 2];
        off.normalize_to(&[5.0, 6.0], &mut z);
        assert_eq!(z, [5.0, 6.0]);
        let mut n = Normalizer::new(1, NormMode::Cumulative);
        for _ in 0..10 {
            n.observe(&[7.0]);
        }
        n.normalize_to(&[7.5], &mut z[..1]);
        assert!(z[0].is_finite() && z[0] > 0.0);
    }
}
