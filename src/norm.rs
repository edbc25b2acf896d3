//! Online normalization: running mean and variance per column, so the network sees values
//! near unit scale whatever the input's units, and forecasts are reported back in them.
//!
//! Cumulative (Welford) by default; with a half-life, exponentially weighted so the scale
//! follows a drifting stream. `z = (x − mean) / std`, `x = mean + std · z`.

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

/// Running per-column statistics. Updating never allocates.
///
/// # Example
/// ```
/// use tbptt::norm::{NormMode, Normalizer};
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
        self.count += 1;
        let a = match self.mode {
            NormMode::Off => return,
            NormMode::Cumulative => {
                self.weight += 1.0;
                1.0 / self.weight
            }
            NormMode::Ewm { half_life } => {
                let decay = 0.5f64.powf(1.0 / half_life.max(1e-9));
                self.weight = self.weight * decay + 1.0;
                1.0 / self.weight
            }
        };
        for ((m, s), v) in self.mean.iter_mut().zip(self.m2.iter_mut()).zip(x) {
            let d = v - *m;
            *m += a * d;
            // West's weighted update; for a = 1/n it is Welford's.
            *s = (1.0 - a) * (*s + a * d * d);
        }
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

    /// `out[i] = (x[i] − mean_i) / std_i`.
    pub fn normalize_to<T: crate::Float>(&self, x: &[f64], out: &mut [T]) {
        for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
            *o = T::cast((v - self.mean(i)) / self.std(i));
        }
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
        assert!((c.mean(0) - 51.0).abs() < 1.0, "{}", c.mean(0));
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
