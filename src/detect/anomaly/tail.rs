//! The tail probability of a statistic judged against its own recent history, from a bounded
//! summary of that history.
//!
//! # The summary
//!
//! A [`Tail`] keeps a histogram of the values pushed, on a fixed [`Grid`] (the statistics are
//! already logarithms, so equal bins there are the log bins of a DDSketch on the statistic
//! itself: a bin of 0.1 is a relative accuracy of about 5%; far beyond the usual values the
//! bins widen geometrically, so that the grid reaches the largest statistics), with exponential
//! forgetting: the value pushed `j` values ago weighs `e^(−j/τ)`, `τ` being the history. The
//! weights are kept as `f32` multiples of a growing scale (the newest value weighs the most;
//! all bins are divided by the scale once it passes 2^60, once every `41.6 τ` values), so a
//! push costs O(1) and forgetting costs nothing per value. The effective number of values kept,
//! `n = Σ_j e^(−j/τ)`, grows like the count at first and tends to `τ`. Values beyond the grid
//! are counted in its first or last bin. Within a bin the values are taken as spread evenly.
//!
//! The 222 bins of `f32` of a statistic are 888 bytes, whatever the history (an exact window
//! of 16,384 values kept twice, as earlier versions did, is 256 KiB).
//!
//! **Why not a crate.** `sketches-ddsketch` (log bins, `u64` counts in a `Vec` that grows
//! when a new extreme arrives, add and merge only), `tdigest` (centroids merged into a new
//! digest, which allocates) and `hdrhistogram` (integer values, `u64` counts, kilobytes per
//! histogram) all summarize everything seen, and none can forget the past, weigh values or
//! give the sums over the largest values that the fitted tail needs without walking it value
//! by value. The bins here are what such a sketch keeps, with the forgetting the detector needs
//! and `f32` weights, and the tail's sums are one pass over them.
//!
//! # The tail probability
//!
//! With `n` the effective count and `k = max(5, tail · n)` (at most `n`), let `u` be the value
//! with a weight of `k` above it (the `k`-th largest, interpolated within its bin). A value
//! `x` gets
//!
//! - `p = (1 + w(≥ x)) / (n + 1)` when `x` is at most `u`, `w(≥ x)` being the weight of the
//!   values at least `x` (the empirical tail);
//! - above it, a generalized Pareto tail fitted to the excesses over `u` of the top weight `k`,
//!   as in peaks-over-threshold (Siffer et al., "Anomaly detection in streams with extreme
//!   value theory", KDD 2017): with `m` and `v` the excesses' mean and variance, the
//!   method-of-moments shape is `ξ = ½ (1 − m²/v)` and scale `σ = ½ m (1 + m²/v)`, and
//!   `p = k / (n + 1) · (1 + ξ (x − u) / σ)^(−1/ξ)`. The shape is kept at or above 0: a tail
//!   lighter than exponential is taken as exponential, `p = k / (n + 1) · exp(−(x − u) / m)`,
//!   so that no value is impossible. A heavy tail (`ξ > 0`) makes far values less surprising
//!   than an exponential tail would.
//!
//! so `p` is continuous and keeps falling however far `x` goes beyond the largest value seen.
//! The surprise is `−log10 p`: 0 while fewer than [`MIN_HISTORY`] values have been pushed.
//! Computing it is one pass over the bins, and allocates nothing.
//!
//! Against the exact computation over a sliding window of the same length, on independent
//! values, the surprise agrees within 0.25 decades up to the 99.9th percentile and within 15%
//! beyond the largest value (see the tests).

use serde::{Deserialize, Serialize};

/// Values pushed before a tail probability is given.
pub const MIN_HISTORY: u64 = 30;

/// Smallest weight in the fitted tail.
const MIN_TAIL: f64 = 5.0;

/// Scale past which the weights are divided by it.
const RESCALE: f64 = (1u64 << 60) as f64;

/// Offset inside the logarithm of the likelihood's statistics (`ln(stat + FLOOR)`): the
/// smallest value of a [`Grid::Log`] statistic is `ln FLOOR`.
pub const FLOOR: f64 = 1e-3;

/// Bins of [`Grid::Log`] 0.1 wide, from `ln 10⁻³` to `ln 10⁻³ + 16` (a statistic of about
/// 8,900).
const LOG_FINE: usize = 160;
/// All bins of [`Grid::Log`]: beyond the fine ones, each is 10% wider than the one before, up
/// to `ln 10⁻³ + 370` (a statistic of `10^158`).
const LOG_BINS: usize = 222;
/// Bins of [`Grid::Decades`], 0.1 wide from 0 to 16.
const DECADES_BINS: usize = 160;

/// `ln 10⁻³`, the lower edge of [`Grid::Log`] (a test checks it against `FLOOR.ln()`).
const LN_FLOOR: f64 = -6.907755278982137;

/// The edges of `n` bins from `lo`: `fine` bins of 0.1, then each 10% wider than the last.
const fn edges<const N: usize>(lo: f64, fine: usize) -> [f64; N] {
    let mut e = [0.0; N];
    e[0] = lo;
    let (mut i, mut w) = (1, 0.1);
    while i < N {
        if i > fine {
            w *= 1.1;
        }
        e[i] = e[i - 1] + w;
        i += 1;
    }
    e
}

static LOG_EDGES: [f64; LOG_BINS + 1] = edges(LN_FLOOR, LOG_FINE);
static DECADES_EDGES: [f64; DECADES_BINS + 1] = edges(0.0, DECADES_BINS);

/// Where a tail's bins lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grid {
    /// Statistics in natural-log units, `ln(stat + 10⁻³)`: 160 bins of 0.1 from `ln 10⁻³`
    /// (−6.91) to a statistic of about 8,900, then 62 bins each 10% wider than the last, up to
    /// a statistic of `10^158`. 222 bins.
    Log,
    /// Surprises in decades of probability (or in any unit of that size): 160 bins of 0.1
    /// from 0 to 16.
    Decades,
}

impl Grid {
    /// The edges of the bins, ascending (one more than the bins).
    pub fn edges(self) -> &'static [f64] {
        match self {
            Grid::Log => &LOG_EDGES,
            Grid::Decades => &DECADES_EDGES,
        }
    }

    /// The lower edge of the first bin.
    pub fn lo(self) -> f64 {
        self.edges()[0]
    }

    /// The number of bins.
    pub fn bins(self) -> usize {
        self.edges().len() - 1
    }

    /// The bin of `x` (values beyond the grid go to its first or last bin).
    fn index(self, x: f64) -> usize {
        let e = self.edges();
        e.partition_point(|v| *v <= x)
            .saturating_sub(1)
            .min(e.len() - 2)
    }
}

/// A bounded summary of one statistic's recent history and the tail probabilities it gives
/// (see the module docs).
///
/// # Example
/// ```
/// use tbptt::detect::anomaly::Tail;
/// let mut t = Tail::new(1000, 0.02);
/// for i in 0..1000 {
///     t.push((i % 10) as f64 / 10.0);
/// }
/// assert_eq!(t.surprise(-7.0), 0.0); // everything kept is above: p = 1
/// assert!(t.surprise(3.0) > 10.0); // far beyond the largest value
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Tail {
    grid: Grid,
    history: f64,
    tail: f64,
    /// `e^(1/τ)`: the factor by which the next value outweighs this one.
    growth: f64,
    /// Weight the next value gets.
    scale: f64,
    /// Values pushed (saturating).
    count: u64,
    /// Empty until the first value.
    bins: Vec<f32>,
}

/// How a tail is stored: its settings, scale and count, and the span of bins from the first
/// to the last non-zero one (`first` is the index of the first).
#[derive(Serialize)]
struct Stored<'a> {
    grid: Grid,
    history: f64,
    tail: f64,
    scale: f64,
    count: u64,
    first: usize,
    bins: &'a [f32],
}

impl Serialize for Tail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let first = self.bins.iter().position(|b| *b != 0.0).unwrap_or(0);
        let last = self
            .bins
            .iter()
            .rposition(|b| *b != 0.0)
            .map_or(0, |i| i + 1);
        Stored {
            grid: self.grid,
            history: self.history,
            tail: self.tail,
            scale: self.scale,
            count: self.count,
            first,
            bins: self.bins.get(first..last).unwrap_or(&[]),
        }
        .serialize(s)
    }
}

/// A stored tail as read: the summary, or the exact history earlier versions wrote (its
/// values in a ring, `head` the oldest once full, and a sorted copy that is not needed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TailRepr {
    #[serde(default)]
    grid: Option<Grid>,
    #[serde(default)]
    history: Option<f64>,
    tail: f64,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    first: Option<usize>,
    #[serde(default)]
    bins: Option<Vec<f32>>,
    // The exact history of earlier versions.
    #[serde(default)]
    capacity: Option<usize>,
    #[serde(default)]
    #[allow(dead_code)]
    sorted: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    ring: Option<Vec<f64>>,
    #[serde(default)]
    head: Option<usize>,
}

impl TailRepr {
    /// The tail this represents. An exact history of earlier versions becomes a summary on
    /// `grid` (`legacy`, the grid its values were on) with a history of its capacity, its
    /// values pushed oldest first.
    ///
    /// # Errors
    /// A message naming what is missing or out of range (the summary itself is checked by
    /// [`Tail::validate`]).
    pub(crate) fn into_tail(self, legacy: Grid) -> crate::Result<Tail> {
        if let Some(grid) = self.grid {
            let (Some(history), Some(scale), Some(count), Some(bins)) =
                (self.history, self.scale, self.count, self.bins)
            else {
                return Err(crate::Error::state("tail", "tail summary misses a field"));
            };
            let first = self.first.unwrap_or(0);
            let mut t = Tail::with_grid(grid, 1, self.tail);
            if !(history >= 1.0 && history.is_finite()) {
                return Err(crate::Error::state(
                    "tail",
                    format!("tail history {history} is out of range"),
                ));
            }
            t.history = history;
            t.growth = (1.0 / history).exp();
            t.scale = scale;
            t.count = count;
            if !bins.is_empty() || count > 0 {
                if first.saturating_add(bins.len()) > grid.bins() {
                    return Err(crate::Error::state(
                        "tail",
                        "tail summary has bins beyond its grid",
                    ));
                }
                t.bins = vec![0.0; grid.bins()];
                t.bins[first..first + bins.len()].copy_from_slice(&bins);
            }
            return Ok(t);
        }
        let (Some(capacity), Some(ring)) = (self.capacity, self.ring) else {
            return Err(crate::Error::state(
                "tail",
                "tail state is neither a summary nor an exact history",
            ));
        };
        let head = self.head.unwrap_or(0);
        if capacity == 0 || ring.len() > capacity || (head != 0 && head >= ring.len()) {
            return Err(crate::Error::state(
                "tail",
                "tail history has inconsistent sizes",
            ));
        }
        let mut t = Tail::with_grid(legacy, capacity, self.tail);
        for x in ring[head..].iter().chain(&ring[..head]) {
            if !x.is_finite() {
                return Err(crate::Error::state("tail", "tail history is not finite"));
            }
            t.push(*x);
        }
        Ok(t)
    }
}

impl<'de> Deserialize<'de> for Tail {
    /// Reads a summary, or converts an exact history of earlier versions (taken to be on
    /// [`Grid::Log`]).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TailRepr::deserialize(d)?
            .into_tail(Grid::Log)
            .map_err(serde::de::Error::custom)
    }
}

impl Tail {
    /// An empty summary on [`Grid::Log`] with a history of `history` values (at least 1),
    /// fitting the largest fraction `tail` of them.
    pub fn new(history: usize, tail: f64) -> Self {
        Tail::with_grid(Grid::Log, history, tail)
    }

    /// An empty summary on `grid` with a history of `history` values (at least 1), fitting the
    /// largest fraction `tail` of them. Allocates nothing until the first value.
    pub fn with_grid(grid: Grid, history: usize, tail: f64) -> Self {
        let history = history.max(1) as f64;
        Tail {
            grid,
            history,
            tail,
            growth: (1.0 / history).exp(),
            scale: 1.0,
            count: 0,
            bins: Vec::new(),
        }
    }

    /// The grid.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// The history `τ`, in values: the time constant of the forgetting.
    pub fn history(&self) -> f64 {
        self.history
    }

    /// The fraction of the weight in the fitted tail.
    pub fn fraction(&self) -> f64 {
        self.tail
    }

    /// Values pushed (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The effective number of values kept, `Σ_j e^(−j/τ)` over the values pushed (the
    /// newest weighs 1): about the count at first, at most `τ + ½`.
    pub fn weight(&self) -> f64 {
        self.total() * self.growth / self.scale
    }

    /// Sum of the bins. Computed, not kept, so that a state read back gives the same
    /// figures to the last bit.
    fn total(&self) -> f64 {
        self.bins.iter().map(|b| f64::from(*b)).sum()
    }

    /// Whether no value was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Heap bytes held (the bins).
    pub fn heap_bytes(&self) -> usize {
        self.bins.capacity() * std::mem::size_of::<f32>()
    }

    /// The weight of the values kept that are at least `x` (in the same units as
    /// [`Tail::weight`]), the values of a bin taken as spread evenly over it; beyond the grid,
    /// the weight of its last bin (which holds the values beyond it).
    pub fn at_least(&self, x: f64) -> f64 {
        self.above(x) * self.growth / self.scale
    }

    /// Weight of the values at least `x`, in the bins' units.
    fn above(&self, x: f64) -> f64 {
        if self.bins.is_empty() || x.is_nan() {
            return 0.0;
        }
        let e = self.grid.edges();
        if x <= e[0] {
            return self.total();
        }
        let j = self.grid.index(x);
        if x >= e[e.len() - 1] {
            // Beyond the grid, where its last bin holds everything that went beyond it.
            return f64::from(self.bins[j]);
        }
        let share = ((e[j + 1] - x) / (e[j + 1] - e[j])).clamp(0.0, 1.0);
        let higher: f64 = self.bins[j + 1..].iter().map(|b| f64::from(*b)).sum();
        higher + f64::from(self.bins[j]) * share
    }

    /// `−log10` of the tail probability of `x` (see the module docs); 0 for a non-finite `x`
    /// or while fewer than [`MIN_HISTORY`] values have been pushed.
    pub fn surprise(&self, x: f64) -> f64 {
        if self.count < MIN_HISTORY || !x.is_finite() || self.bins.is_empty() {
            return 0.0;
        }
        // Bin units per effective value: the newest value weighs `scale / growth`.
        let unit = self.scale / self.growth;
        let n = self.total() / unit;
        if n.is_nan() || n <= 0.0 {
            return 0.0;
        }
        let k = (self.tail * n).max(MIN_TAIL).min(n);
        let kw = k * unit;
        let e = self.grid.edges();
        // From the top bin down: the weight above the current bin and the first two moments
        // of the values there, until the top weight `kw` is reached inside bin `j`. The
        // moments are those of the bins' midpoints (a smooth density's grouped moments: the
        // variance then exceeds the true one by about w²/12, which is small against the
        // excesses' own), taken for the partial bin at the midpoint of its part above `u`.
        let (mut above, mut s1, mut s2) = (0.0f64, 0.0f64, 0.0f64);
        let mut found = None;
        for (j, b) in self.bins.iter().enumerate().rev() {
            let c = f64::from(*b);
            let (hi, w) = (e[j + 1], e[j + 1] - e[j]);
            if c > 0.0 && above + c >= kw {
                let r = kw - above;
                let u = hi - w * r / c;
                let d = hi - u;
                // Σ (x − u) and Σ (x − u)² over the top weight: the bins above, and the upper
                // part [u, hi] of bin j holding weight r, at its midpoint.
                let m1 = s1 - u * above + r * d / 2.0;
                let m2 = s2 - 2.0 * u * s1 + u * u * above + r * d * d / 4.0;
                found = Some((u, m1, m2));
                break;
            }
            let mid = hi - w / 2.0;
            above += c;
            s1 += c * mid;
            s2 += c * mid * mid;
        }
        let lo = e[0];
        let (u, m1, m2) =
            found.unwrap_or((lo, s1 - lo * above, s2 - 2.0 * lo * s1 + lo * lo * above));
        let n1 = n + 1.0;
        if x <= u {
            return -((1.0 + self.above(x) / unit) / n1).log10();
        }
        let base = -(k / n1).log10();
        let m = m1 / kw;
        if !(m > 0.0 && m.is_finite()) {
            // No spread in the tail: anything beyond it is very surprising.
            let sigma = 1e-12 + u.abs() * 1e-9;
            return base + (x - u) / sigma / std::f64::consts::LN_10;
        }
        // The excesses' variance, with the sample correction k / (k − 1).
        let v = (m2 / kw - m * m).max(0.0) * k / (k - 1.0);
        let r = m * m / v;
        let xi = 0.5 * (1.0 - r);
        if v > 0.0 && xi > 1e-6 {
            let sigma = 0.5 * m * (1.0 + r);
            // log10 p = log10(k / (n + 1)) − log10(1 + ξ (x − u) / σ) / ξ
            return base + (xi * (x - u) / sigma).ln_1p() / xi / std::f64::consts::LN_10;
        }
        // log10 p = log10(k / (n + 1)) − (x − u) / m / ln 10
        base + (x - u) / m / std::f64::consts::LN_10
    }

    /// Adds `x` (non-finite values are ignored). O(1); allocates the bins at the first value
    /// only.
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.bins.is_empty() {
            self.bins = vec![0.0; self.grid.bins()];
        }
        let j = self.grid.index(x);
        self.bins[j] += self.scale as f32;
        self.scale *= self.growth;
        self.count = self.count.saturating_add(1);
        if self.scale > RESCALE {
            let inv = 1.0 / self.scale;
            for b in &mut self.bins {
                *b = (f64::from(*b) * inv) as f32;
            }
            self.scale = 1.0;
        }
    }

    /// Checks a deserialized summary: a history of at least 1, a tail fraction in `(0, 1]`, a
    /// scale in `[1, 2^60 · e^(1/τ)]`, all bins or none, finite and non-negative, and a total
    /// weight that the values pushed can have (at most the count, and at most `τ + 1`).
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.history >= 1.0 && self.history.is_finite() && self.tail > 0.0 && self.tail <= 1.0)
        {
            return Err(crate::Error::state(
                "tail",
                "tail summary has an invalid history or tail fraction",
            ));
        }
        if !(self.scale >= 1.0 && self.scale <= RESCALE * self.growth) {
            return Err(crate::Error::state(
                "tail",
                format!("tail summary has an invalid scale {}", self.scale),
            ));
        }
        if !(self.bins.is_empty() || self.bins.len() == self.grid.bins())
            || (self.bins.is_empty() && self.count > 0)
        {
            return Err(crate::Error::state(
                "tail",
                "tail summary has the wrong number of bins",
            ));
        }
        if !self.bins.iter().all(|b| b.is_finite() && *b >= 0.0) {
            return Err(crate::Error::state(
                "tail",
                "tail summary has a negative or non-finite bin",
            ));
        }
        let n = self.weight();
        let most = (self.count as f64).min(self.growth / (self.growth - 1.0));
        if n.is_nan() || n > most * (1.0 + 1e-3) + 1e-3 {
            return Err(crate::Error::state(
                "tail",
                format!(
                    "tail summary holds a weight of {n} values, more than the {} it can hold",
                    most
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The surprise of `x` against `kept` (any order), computed exactly as earlier versions
    /// did over their sliding window: with `n` values and `k = max(5, ⌈tail · n⌉)`, the
    /// empirical tail up to the `k`-th largest value `u`, the fitted tail beyond it.
    fn exact(kept: &[f64], tail: f64, x: f64) -> f64 {
        let n = kept.len();
        if n < MIN_HISTORY as usize {
            return 0.0;
        }
        let mut sorted = kept.to_vec();
        sorted.sort_by(f64::total_cmp);
        let k = ((tail * n as f64).ceil() as usize).clamp(5, n);
        let top = &sorted[n - k..];
        let u = top[0];
        let n1 = (n + 1) as f64;
        if x <= u {
            let above = n - sorted.partition_point(|v| *v < x);
            return -((above + 1) as f64 / n1).log10();
        }
        let base = -(k as f64 / n1).log10();
        let m = top.iter().sum::<f64>() / k as f64 - u;
        let v = top.iter().map(|t| (t - u - m).powi(2)).sum::<f64>() / (k - 1) as f64;
        let r = m * m / v;
        let xi = 0.5 * (1.0 - r);
        if v > 0.0 && xi > 1e-6 {
            let sigma = 0.5 * m * (1.0 + r);
            return base + (xi * (x - u) / sigma).ln_1p() / xi / std::f64::consts::LN_10;
        }
        base + (x - u) / m / std::f64::consts::LN_10
    }

    /// Deterministic uniform numbers in (0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal number (Box-Muller).
    fn normal(state: &mut u64) -> f64 {
        let (a, b) = (uniform(state), uniform(state));
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }

    /// With 99 values spread evenly over bins (one per bin centre) and no forgetting to speak
    /// of, the summary gives the exact answers up to the spread within a bin: 50 of 99 values
    /// at least the 50th gives −log10(51/100) = 0.29 (the summary counts half of the 50th's
    /// bin: −log10(50.5/100) = 0.297).
    #[test]
    fn empirical_below_the_tail_fitted_above() {
        let mut t = Tail::new(1 << 24, 0.02);
        let value = |i: usize| Grid::Log.lo() + (i as f64 + 0.5) * 0.1;
        let kept: Vec<f64> = (1..100).map(value).collect();
        for x in kept.iter().rev() {
            t.push(*x);
        }
        assert!((t.weight() - 99.0).abs() < 1e-3, "{}", t.weight());
        let mid = value(50);
        assert!((t.surprise(mid) - exact(&kept, 0.02, mid)).abs() < 0.01);
        // Beyond the largest value, the fitted tail: within 15% of the exact fit (the
        // summary takes each value as spread over its bin, so its `u` is half a bin lower and
        // the excesses half a bin longer).
        for x in [value(99) + 0.2, value(99) + 1.0] {
            let (got, want) = (t.surprise(x), exact(&kept, 0.02, x));
            assert!((got - want).abs() < 0.15 * want, "x {x}: {got} vs {want}");
        }
        assert!(t.validate().is_ok());
        assert_eq!(
            Tail::new(10, 0.02).surprise(1e9),
            0.0,
            "no history, no surprise"
        );
    }

    /// The largest differences between the summary and the exact computation over the same
    /// values, on the log of `|normal|` and of Pareto statistics (as the likelihood feeds
    /// them), at probes up to the 99.9th percentile and beyond the largest value: in decades
    /// where the exact surprise is at most 4, relative beyond. With `window` the exact one
    /// keeps the last `window` values and the summary has that history; without, both keep
    /// everything (the binning alone).
    fn worst_against_exact(window: Option<usize>) -> [(f64, f64); 2] {
        let history = window.unwrap_or(1 << 24);
        let mut out = [(0.0, 0.0); 2];
        for (o, draw) in out.iter_mut().zip([
            (|s: &mut u64| normal(s).abs()) as fn(&mut u64) -> f64,
            |s: &mut u64| uniform(s).powf(-0.3) - 1.0,
        ]) {
            let mut t = Tail::new(history, 0.02);
            let mut kept = std::collections::VecDeque::new();
            let mut s = 0x9e37_79b9_7f4a_7c15u64;
            for step in 0..20_000 {
                let x = (draw(&mut s) + FLOOR).ln();
                if kept.len() == history {
                    kept.pop_front();
                }
                kept.push_back(x);
                t.push(x);
                if step % 500 == 499 {
                    let kept: Vec<f64> = kept.iter().copied().collect();
                    let mut sorted = kept.clone();
                    sorted.sort_by(f64::total_cmp);
                    let max = sorted[sorted.len() - 1];
                    let probes = [0.5, 0.9, 0.99, 0.999]
                        .map(|q| sorted[(q * sorted.len() as f64) as usize])
                        .into_iter()
                        .chain([max + 0.5, max + 2.0]);
                    for x in probes {
                        let (got, want) = (t.surprise(x), exact(&kept, 0.02, x));
                        if want <= 4.0 {
                            o.0 = f64::max(o.0, (got - want).abs());
                        } else {
                            o.1 = f64::max(o.1, (got - want).abs() / want);
                        }
                    }
                }
            }
        }
        out
    }

    /// The summary against the exact computation, on random data: with the same values, the
    /// binning alone costs at most 0.15 decades up to the largest values and 10% beyond them;
    /// against a sliding window of the same length as the history (exponential forgetting
    /// instead of a window), 0.3 decades and 12%.
    #[test]
    fn matches_the_exact_computation_on_random_data() {
        let binned = worst_against_exact(None);
        let windowed = worst_against_exact(Some(4096));
        eprintln!("same values: {binned:?}; window of 4096: {windowed:?}");
        for (d, r) in binned {
            assert!(
                d < 0.15 && r < 0.1,
                "binning alone: {d} decades, {r} beyond"
            );
        }
        for (d, r) in windowed {
            assert!(
                d < 0.3 && r < 0.12,
                "against a window: {d} decades, {r} beyond"
            );
        }
    }

    /// Values from a generalized Pareto law with shape 0.3: the value exceeded with
    /// probability `q` is `(q^−ξ − 1) / ξ`. The fitted tail gives it a surprise near
    /// `−log10 q` beyond the largest values kept (in the widening bins of the grid), where an
    /// exponential tail would give far more.
    #[test]
    fn a_heavy_tail_is_fitted_with_a_positive_shape() {
        let xi = 0.3;
        let quantile = |q: f64| (q.powf(-xi) - 1.0) / xi;
        let mut t = Tail::new(1 << 14, 0.02);
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1 << 16 {
            t.push(quantile(uniform(&mut s)));
        }
        for q in [1e-5f64, 1e-7] {
            let got = t.surprise(quantile(q));
            assert!((got + q.log10()).abs() < 0.6, "q {q}: surprise {got}");
        }
    }

    /// The weight forgets: the total tends to `τ + ½`, and after `τ` values of a new kind the
    /// old kind weighs `e^−1` of what it weighed.
    #[test]
    fn old_values_are_forgotten_exponentially() {
        let tau = 1000;
        let mut t = Tail::new(tau, 0.02);
        for _ in 0..20 * tau {
            t.push(0.0);
        }
        assert!(
            (t.weight() - (tau as f64 + 0.5)).abs() < 1.0,
            "{}",
            t.weight()
        );
        for _ in 0..tau {
            t.push(5.0);
        }
        // The old values weigh e^−1 of what they weighed: τ e^−1 of about τ in all.
        let old = t.weight() - t.at_least(4.0);
        assert!(
            (old - tau as f64 / std::f64::consts::E).abs() < 2.0,
            "{old}"
        );
        // Long runs rescale the weights without drifting.
        for _ in 0..100 * tau {
            t.push(1.0);
        }
        assert!(
            (t.weight() - (tau as f64 + 0.5)).abs() < 1.0,
            "{}",
            t.weight()
        );
        assert!(t.validate().is_ok());
    }

    #[test]
    fn a_round_trip_keeps_the_summary_and_corrupt_ones_are_refused() {
        let mut t = Tail::new(300, 0.02);
        for i in 0..1000u64 {
            t.push(((i * 7919) % 613) as f64 / 100.0 - 3.0);
        }
        let bytes = rmp_serde::to_vec_named(&t).unwrap();
        let back: Tail = rmp_serde::from_slice(&bytes).unwrap();
        assert!(back.validate().is_ok());
        assert_eq!(back.surprise(2.5), t.surprise(2.5));
        assert_eq!(back.bins, t.bins);
        // Only the occupied bins: 61 of 160, and a few fields.
        assert!(bytes.len() < 61 * 5 + 120, "{} bytes", bytes.len());
        let empty: Tail =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&Tail::new(5, 0.02)).unwrap()).unwrap();
        assert_eq!(empty, Tail::new(5, 0.02));
        assert!(empty.validate().is_ok());
        // Corrupt states: refused by the reader or by validate, never a panic.
        let mut bad = t.clone();
        bad.bins[3] = -1.0;
        assert!(bad.validate().is_err());
        let mut bad = t.clone();
        bad.bins[3] = f32::NAN;
        assert!(bad.validate().is_err());
        let mut bad = t.clone();
        bad.bins[3] += 1e6 * bad.scale as f32;
        assert!(
            bad.validate().is_err(),
            "more weight than 300 values can have"
        );
        let mut bad = t.clone();
        bad.scale = 0.0;
        assert!(bad.validate().is_err());
        let mut bad = t.clone();
        bad.count = 3;
        assert!(bad.validate().is_err(), "more weight than values pushed");
        #[derive(Serialize)]
        struct Raw {
            grid: Grid,
            history: f64,
            tail: f64,
            scale: f64,
            count: u64,
            first: usize,
            bins: Vec<f32>,
        }
        let raw = |first: usize, bins: Vec<f32>, history: f64| Raw {
            grid: Grid::Log,
            history,
            tail: 0.02,
            scale: 1.0,
            count: 10,
            first,
            bins,
        };
        for r in [
            raw(220, vec![1.0; 5], 300.0),
            raw(usize::MAX, vec![1.0], 300.0),
            raw(0, vec![1.0], f64::NAN),
            raw(0, vec![1.0], 0.0),
        ] {
            let bytes = rmp_serde::to_vec_named(&r).unwrap();
            assert!(rmp_serde::from_slice::<Tail>(&bytes).is_err());
        }
    }

    #[test]
    fn the_grids_start_at_their_floor_and_ascend() {
        assert_eq!(Grid::Log.lo(), FLOOR.ln());
        assert_eq!(
            Grid::Log.index(FLOOR.ln()),
            0,
            "a statistic of 0 is in the first bin"
        );
        assert_eq!(Grid::Log.bins(), 222);
        assert!((Grid::Log.edges()[160] - (FLOOR.ln() + 16.0)).abs() < 1e-9);
        assert!(Grid::Log.edges()[222] > (1e158f64).ln());
        for g in [Grid::Log, Grid::Decades] {
            let e = g.edges();
            assert!(e.windows(2).all(|w| w[1] > w[0]));
            for (j, w) in e.windows(2).enumerate() {
                assert_eq!(g.index(w[0]), j);
                assert_eq!(g.index((w[0] + w[1]) / 2.0), j);
            }
            assert_eq!(g.index(f64::MAX), g.bins() - 1);
            assert_eq!(g.index(-f64::MAX), 0);
        }
    }

    #[test]
    fn an_exact_history_of_earlier_versions_becomes_a_summary() {
        #[derive(Serialize)]
        struct Old {
            capacity: usize,
            tail: f64,
            sorted: Vec<f64>,
            ring: Vec<f64>,
            head: usize,
        }
        // A full ring of 50 whose oldest value is at `head` 20.
        let values: Vec<f64> = (0..50).map(|i| (i % 7) as f64 / 10.0 - 2.0).collect();
        let mut ring = values[30..].to_vec();
        ring.extend_from_slice(&values[..30]);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let old = Old {
            capacity: 50,
            tail: 0.02,
            sorted,
            ring,
            head: 20,
        };
        let read: Tail = rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        let mut want = Tail::new(50, 0.02);
        values.iter().for_each(|x| want.push(*x));
        assert_eq!(read, want);
        assert!(read.validate().is_ok());
        let bad = Old { head: 60, ..old };
        assert!(rmp_serde::from_slice::<Tail>(&rmp_serde::to_vec_named(&bad).unwrap()).is_err());
    }
}
