//! Adaptive truncation (`-T auto`): the window length `T` follows the measured decay of the
//! backpropagated gradient, after Aicher, Foti & Fox (2019), "Adaptively truncating
//! backpropagation through time to control gradient bias".
//!
//! After every update the trainer reads the gradient norm of each step of the window
//! ([`crate::Window::step_grad_norms_to`]). Before the `L` loss steps these are purely
//! backpropagated gradients, `g_j` at lag `j` behind the oldest loss step. If they decay
//! geometrically, `g_j ≈ g_0 β^j`, the part of the gradient cut off by a depth of `d` steps is
//! bounded, relative to `g_0`, by the geometric tail
//!
//! ```text
//! Σ_{j ≥ d} β^j = β^d / (1 − β)
//! ```
//!
//! Each update fits `ln β` by least squares on `(j, ln g_j)` over the window's `T − L`
//! pre-loss steps; the rate used is the median of the last [`AutoTruncation::history`] fits
//! (robust to the odd window). The next `T` is the smallest one that gives the oldest loss step
//! a depth `d` with `β^d / (1 − β) <= tolerance`: `T = L − 1 + d`, clamped to
//! `[min, max]` (`T = max` when `β >= 1`). Buffers (ring, window) are allocated once at `max`:
//! changing `T` allocates nothing.
//!
//! # Example
//! ```
//! use tbptt::train::truncation::{AutoTruncation, Truncation};
//! use tbptt::{LearnerConfig, TrainerConfig};
//! let auto = Truncation::Auto(AutoTruncation { min: 8, max: 64, ..Default::default() });
//! let trainer = TrainerConfig { truncation: auto, every: 4, ..Default::default() };
//! let config = LearnerConfig { d_hidden: 8, trainer, ..Default::default() };
//! assert_eq!(config.max_window(), 64); // buffers are sized for the largest T
//! let mut learner = config.build::<f32>()?;
//! for t in 0..400 {
//!     learner.step(&[(t as f32 * 0.3).sin()])?;
//! }
//! let r = learner.truncation();
//! assert!(r.adaptive && (8..=64).contains(&r.current) && r.min <= r.max);
//! # Ok::<(), tbptt::Error>(())
//! ```

use crate::{Error, Float, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Settings of adaptive truncation. Fields state their default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoTruncation {
    /// Smallest window length `T`; it must leave at least 2 steps before the loss steps, where
    /// the decay is measured (`min >= L + 2`). Default: 16.
    pub min: usize,
    /// Largest window length `T`; ring and window buffers are allocated for it once. Default:
    /// 256.
    pub max: usize,
    /// Largest accepted truncation bias, relative to the gradient at the oldest loss step:
    /// the geometric tail `β^d / (1 − β)`, in `(0, 1)`. Default: 0.01.
    pub tolerance: f64,
    /// Number of recent updates whose decay estimates are pooled (median). Default: 32.
    pub history: usize,
}

impl Default for AutoTruncation {
    fn default() -> Self {
        AutoTruncation {
            min: 16,
            max: 256,
            tolerance: 0.01,
            history: 32,
        }
    }
}

/// Largest accepted [`AutoTruncation::history`].
pub const MAX_HISTORY: usize = 4096;

impl AutoTruncation {
    /// Checks the settings against the update period `k` and the number of loss steps `l`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field: `min` below `k`, below `l + 2` or above `max`,
    /// `max` above [`crate::train::ring::MAX_WINDOW`], a tolerance outside `(0, 1)`, a history
    /// outside `1..=MAX_HISTORY`.
    pub fn validate(&self, k: usize, l: usize) -> Result<()> {
        let max_window = crate::train::ring::MAX_WINDOW;
        if self.max == 0 || self.max > max_window {
            return Err(Error::config(
                "t_max",
                format!("must be in 1..={max_window}, got {}", self.max),
            ));
        }
        if self.min > self.max {
            return Err(Error::config(
                "t_min",
                format!("must not exceed t_max = {}, got {}", self.max, self.min),
            ));
        }
        if self.min < k {
            return Err(Error::config(
                "t_min",
                format!("must be at least k = {k} (k1 <= k2), got {}", self.min),
            ));
        }
        if self.min < l + 2 {
            return Err(Error::config(
                "t_min",
                format!(
                    "must exceed the {l} loss steps by at least 2 (the gradient decay is \
                     measured on the steps before them), got {}",
                    self.min
                ),
            ));
        }
        if !(self.tolerance > 0.0 && self.tolerance < 1.0) {
            return Err(Error::config(
                "t_tolerance",
                format!("must be in (0, 1), got {}", self.tolerance),
            ));
        }
        if self.history == 0 || self.history > MAX_HISTORY {
            return Err(Error::config(
                "t_history",
                format!("must be in 1..={MAX_HISTORY}, got {}", self.history),
            ));
        }
        Ok(())
    }

    /// The window length for a decay rate `beta` with `loss_steps` loss steps: `L − 1 + d`
    /// for the smallest depth `d >= 1` with `β^d / (1 − β) <= tolerance`, clamped to
    /// `[min, max]`; `max` when `β >= 1` or is not finite.
    ///
    /// # Example
    /// ```
    /// use tbptt::train::truncation::AutoTruncation;
    /// let a = AutoTruncation { min: 4, max: 100, tolerance: 0.01, ..Default::default() };
    /// // 0.5^d / 0.5 <= 0.01  <=>  d >= log2(200) = 7.6: d = 8, T = 1 - 1 + 8
    /// assert_eq!(a.window_for(0.5, 1), 8);
    /// assert_eq!(a.window_for(0.5, 2), 9);
    /// assert_eq!(a.window_for(0.01, 1), 4); // clamped to min
    /// assert_eq!(a.window_for(1.0, 1), 100); // no decay: max
    /// ```
    pub fn window_for(&self, beta: f64, loss_steps: usize) -> usize {
        if !(beta.is_finite() && beta < 1.0) {
            return self.max;
        }
        let depth = if beta <= 0.0 {
            1.0
        } else {
            ((self.tolerance * (1.0 - beta)).ln() / beta.ln())
                .ceil()
                .max(1.0)
        };
        let t = (loss_steps.saturating_sub(1) as f64 + depth).min(self.max as f64);
        (t as usize).clamp(self.min, self.max)
    }
}

/// How the window length is chosen: a fixed `T`, or adapted online ([`AutoTruncation`]).
///
/// Parses from `"auto"` (default settings) or a number; a number converts into a fixed `T`
/// (`16.into()`). It is [`crate::TrainerConfig::truncation`].
///
/// # Example
/// ```
/// use tbptt::train::truncation::Truncation;
/// assert_eq!("32".parse::<Truncation>()?, Truncation::Fixed(32));
/// assert!(matches!("auto".parse::<Truncation>()?, Truncation::Auto(_)));
/// assert_eq!(Truncation::Fixed(8).to_string(), "8");
/// assert!("x".parse::<Truncation>().is_err());
/// # Ok::<(), tbptt::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// A fixed window length `T`.
    Fixed(usize),
    /// A window length adapted online between `min` and `max`.
    Auto(AutoTruncation),
}

impl From<usize> for Truncation {
    /// A fixed window of `t` steps.
    fn from(t: usize) -> Self {
        Truncation::Fixed(t)
    }
}

impl FromStr for Truncation {
    type Err = Error;

    /// `auto` or a positive number of steps.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(Truncation::Auto(AutoTruncation::default())),
            n => match n.parse::<usize>() {
                Ok(t) if t > 0 => Ok(Truncation::Fixed(t)),
                _ => Err(Error::config(
                    "window",
                    format!("expected a positive number of steps or auto, got {s:?}"),
                )),
            },
        }
    }
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Truncation::Fixed(t) => write!(f, "{t}"),
            Truncation::Auto(_) => f.write_str("auto"),
        }
    }
}

/// The window lengths a learner has used ([`crate::Learner::truncation`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TruncationReport {
    /// Whether `T` adapts (`-T auto`).
    pub adaptive: bool,
    /// The `T` the next update uses.
    pub current: usize,
    /// Smallest `T` an update has used (`current` before the first update).
    pub min: usize,
    /// Mean `T` over the updates (`current` before the first update).
    pub mean: f64,
    /// Largest `T` an update has used (`current` before the first update).
    pub max: usize,
    /// Updates counted.
    pub updates: u64,
    /// The pooled gradient decay rate per step `β` (adaptive only, once measured).
    pub beta: Option<f64>,
}

impl TruncationReport {
    /// The report of a fixed window `t` after `updates` updates.
    pub fn fixed(t: usize, updates: u64) -> Self {
        TruncationReport {
            adaptive: false,
            current: t,
            min: t,
            mean: t as f64,
            max: t,
            updates,
            beta: None,
        }
    }
}

impl fmt::Display for TruncationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.adaptive {
            return write!(f, "T = {}", self.current);
        }
        write!(
            f,
            "T = auto: now {}, min {}, mean {:.1}, max {} over {} updates",
            self.current, self.min, self.mean, self.max, self.updates
        )?;
        if let Some(b) = self.beta {
            write!(f, "; gradient decay {b:.3} per step")?;
        }
        Ok(())
    }
}

/// What adaptive truncation carries from update to update, for checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruncationState {
    /// The `T` of the next update.
    pub current: usize,
    /// The recent per-update estimates of `ln β`, oldest first.
    pub estimates: Vec<f64>,
    /// Updates counted in the statistics.
    pub updates: u64,
    /// Sum of the `T`s used.
    pub sum: u64,
    /// Smallest `T` used (0 before the first update).
    pub min_used: usize,
    /// Largest `T` used (0 before the first update).
    pub max_used: usize,
}

/// The estimator: per-step norms in, window length out. Buffers are allocated once.
#[derive(Clone, Debug)]
pub(crate) struct Adaptive<T> {
    config: AutoTruncation,
    loss_steps: usize,
    /// Per-step gradient norms of the last window (`max` long).
    pub(crate) norms: Vec<T>,
    /// Ring of the last `history` estimates of `ln β`.
    hist: Vec<f64>,
    pos: usize,
    filled: usize,
    scratch: Vec<f64>,
    current: usize,
    updates: u64,
    sum: u64,
    min_used: usize,
    max_used: usize,
}

impl<T: Float> Adaptive<T> {
    /// An estimator starting at `T = min`. The configuration must be valid.
    pub(crate) fn new(config: AutoTruncation, loss_steps: usize) -> Self {
        Adaptive {
            norms: vec![T::zero(); config.max],
            hist: vec![0.0; config.history],
            scratch: vec![0.0; config.history],
            pos: 0,
            filled: 0,
            current: config.min,
            updates: 0,
            sum: 0,
            min_used: 0,
            max_used: 0,
            loss_steps,
            config,
        }
    }

    /// The `T` of the next update.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// Takes the norms of an `n`-step window in `self.norms[..n]` (the window's `T` was used
    /// by an update): records its decay estimate and chooses the next `T`.
    pub(crate) fn observe(&mut self, n: usize) {
        self.updates += 1;
        self.sum += n as u64;
        if self.updates == 1 {
            self.min_used = n;
            self.max_used = n;
        } else {
            self.min_used = self.min_used.min(n);
            self.max_used = self.max_used.max(n);
        }
        if let Some(slope) = self.fit(n) {
            self.hist[self.pos] = slope;
            self.pos = (self.pos + 1) % self.hist.len();
            self.filled = (self.filled + 1).min(self.hist.len());
        }
        if let Some(b) = self.beta() {
            self.current = self.config.window_for(b, self.loss_steps);
        }
    }

    /// Least-squares slope of `ln g` against the lag over the pre-loss steps of an `n`-step
    /// window; `None` when fewer than 2 steps precede the loss or a norm is 0 or not finite.
    fn fit(&self, n: usize) -> Option<f64> {
        let m = n.checked_sub(self.loss_steps)?;
        if m < 2 {
            return None;
        }
        let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
        for (i, g) in self.norms[..m].iter().enumerate() {
            let g = g.as_f64();
            if !(g > 0.0 && g.is_finite()) {
                return None;
            }
            let (x, y) = ((m - i) as f64, g.ln());
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let mf = m as f64;
        let den = mf * sxx - sx * sx;
        let slope = (mf * sxy - sx * sy) / den;
        slope.is_finite().then_some(slope)
    }

    /// The pooled decay rate: `exp` of the median recent estimate of `ln β`.
    fn beta(&mut self) -> Option<f64> {
        if self.filled == 0 {
            return None;
        }
        let s = &mut self.scratch[..self.filled];
        s.copy_from_slice(&self.hist[..self.filled]);
        let mid = self.filled / 2;
        let (_, m, _) = s.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
        Some(m.exp())
    }

    /// The window lengths used so far.
    pub(crate) fn report(&self) -> TruncationReport {
        let (min, mean, max) = if self.updates == 0 {
            (self.current, self.current as f64, self.current)
        } else {
            (
                self.min_used,
                self.sum as f64 / self.updates as f64,
                self.max_used,
            )
        };
        let beta = if self.filled == 0 {
            None
        } else {
            let mut s = self.hist[..self.filled].to_vec();
            let mid = s.len() / 2;
            let (_, m, _) = s.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
            Some(m.exp())
        };
        TruncationReport {
            adaptive: true,
            current: self.current,
            min,
            mean,
            max,
            updates: self.updates,
            beta,
        }
    }

    /// The state to carry over (allocates; for checkpoints).
    pub(crate) fn to_state(&self) -> TruncationState {
        let cap = self.hist.len();
        let start = (self.pos + cap - self.filled) % cap;
        let estimates = (0..self.filled)
            .map(|i| self.hist[(start + i) % cap])
            .collect();
        TruncationState {
            current: self.current,
            estimates,
            updates: self.updates,
            sum: self.sum,
            min_used: self.min_used,
            max_used: self.max_used,
        }
    }

    /// Continues from `state`, checking it against the configuration.
    ///
    /// # Errors
    /// [`Error::State`] (`checkpoint.truncation`) naming the inconsistency.
    pub(crate) fn restore(&mut self, st: &TruncationState) -> Result<()> {
        let c = &self.config;
        let bad = |reason: String| Err(Error::state("checkpoint.truncation", reason));
        if !(c.min..=c.max).contains(&st.current) {
            return bad(format!(
                "current T = {} outside {}..={}",
                st.current, c.min, c.max
            ));
        }
        if st.estimates.len() > c.history {
            return bad(format!(
                "{} estimates, more than the history of {}",
                st.estimates.len(),
                c.history
            ));
        }
        if !st.estimates.iter().all(|v| v.is_finite()) {
            return bad("non-finite decay estimate".into());
        }
        let used_ok = if st.updates == 0 {
            st.sum == 0 && st.min_used == 0 && st.max_used == 0
        } else {
            st.min_used <= st.max_used
                && st.max_used <= c.max
                && st.min_used >= 1
                && (st.updates as u128) * (st.min_used as u128) <= st.sum as u128
                && st.sum as u128 <= (st.updates as u128) * (st.max_used as u128)
        };
        if !used_ok {
            return bad(format!(
                "inconsistent statistics: {} updates, sum {}, min {}, max {}",
                st.updates, st.sum, st.min_used, st.max_used
            ));
        }
        self.hist.fill(0.0);
        self.hist[..st.estimates.len()].copy_from_slice(&st.estimates);
        self.filled = st.estimates.len();
        self.pos = self.filled % self.hist.len();
        self.current = st.current;
        self.updates = st.updates;
        self.sum = st.sum;
        self.min_used = st.min_used;
        self.max_used = st.max_used;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimator(min: usize, max: usize, l: usize) -> Adaptive<f64> {
        let c = AutoTruncation {
            min,
            max,
            tolerance: 0.01,
            history: 5,
        };
        c.validate(l, l).unwrap();
        Adaptive::new(c, l)
    }

    /// Norms `g_j = 3 β^j` at lag `j` behind the loss steps: the fit recovers `ln β`
    /// exactly, and the chosen `T` is the closed form's (`β = 0.8`, `L = 2`:
    /// `0.8^d / 0.2 <= 0.01` gives `d = ⌈ln 0.002 / ln 0.8⌉ = 28`, `T = 29`).
    #[test]
    fn a_geometric_decay_is_recovered() {
        let mut a = estimator(4, 64, 2);
        let n = 10;
        for i in 0..n - 2 {
            a.norms[i] = 3.0 * 0.8f64.powi((n - 2 - i) as i32);
        }
        a.norms[n - 2] = 5.0;
        a.norms[n - 1] = 7.0;
        assert!((a.fit(n).unwrap() - 0.8f64.ln()).abs() < 1e-12);
        a.observe(n);
        assert_eq!(a.current(), 29);
        let r = a.report();
        assert_eq!((r.min, r.max, r.updates), (10, 10, 1));
        assert!((r.beta.unwrap() - 0.8).abs() < 1e-12);
    }

    /// The median ignores a minority of wild estimates.
    #[test]
    fn the_pooled_rate_is_a_median() {
        let mut a = estimator(4, 1000, 1);
        for beta in [0.5, 0.5, 0.999, 0.5, 0.01] {
            for i in 0..9 {
                a.norms[i] = f64::powi(beta, (9 - i) as i32);
            }
            a.norms[9] = 1.0;
            a.observe(10);
        }
        assert!((a.report().beta.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(a.current(), a.config.window_for(0.5, 1));
    }

    #[test]
    fn zero_or_short_windows_give_no_estimate() {
        let mut a = estimator(4, 64, 2);
        assert_eq!(a.fit(3), None); // one pre-loss step
        a.norms[..8].fill(0.0);
        a.observe(8);
        assert_eq!((a.current(), a.report().beta), (4, None));
        assert_eq!(a.report().updates, 1);
    }

    #[test]
    fn state_round_trips_and_bad_states_are_refused() {
        let mut a = estimator(4, 64, 2);
        for (k, n) in [10usize, 12, 9, 11, 10, 13, 12].into_iter().enumerate() {
            for i in 0..n {
                a.norms[i] = 0.7f64.powi((n - i) as i32) * (1.0 + 0.1 * k as f64);
            }
            a.observe(n);
        }
        let st = a.to_state();
        assert_eq!(st.estimates.len(), 5);
        let mut b = estimator(4, 64, 2);
        b.restore(&st).unwrap();
        assert_eq!(b.to_state(), st);
        assert_eq!(b.report(), a.report());
        for i in 0..10 {
            a.norms[i] = 0.9f64.powi(10 - i as i32);
            b.norms[i] = a.norms[i];
        }
        a.observe(10);
        b.observe(10);
        assert_eq!(a.to_state(), b.to_state());
        for bad in [
            TruncationState {
                current: 65,
                ..st.clone()
            },
            TruncationState {
                estimates: vec![0.0; 6],
                ..st.clone()
            },
            TruncationState {
                estimates: vec![f64::NAN],
                ..st.clone()
            },
            TruncationState {
                sum: 1,
                ..st.clone()
            },
        ] {
            assert!(b.restore(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let ok = AutoTruncation::default();
        assert!(ok.validate(8, 8).is_ok());
        let e = |a: AutoTruncation, k: usize, l: usize| match a.validate(k, l) {
            Err(Error::Config { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            e(
                AutoTruncation {
                    min: 9,
                    ..ok.clone()
                },
                8,
                8
            ),
            "t_min"
        );
        assert_eq!(
            e(
                AutoTruncation {
                    min: 4,
                    ..ok.clone()
                },
                8,
                1
            ),
            "t_min"
        );
        assert_eq!(
            e(
                AutoTruncation {
                    min: 300,
                    ..ok.clone()
                },
                8,
                8
            ),
            "t_min"
        );
        assert_eq!(
            e(
                AutoTruncation {
                    max: 0,
                    ..ok.clone()
                },
                8,
                8
            ),
            "t_max"
        );
        for tolerance in [0.0, 1.0, f64::NAN] {
            let a = AutoTruncation {
                tolerance,
                ..ok.clone()
            };
            assert_eq!(e(a, 8, 8), "t_tolerance");
        }
        assert_eq!(e(AutoTruncation { history: 0, ..ok }, 8, 8), "t_history");
    }
}
