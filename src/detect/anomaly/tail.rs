//! The tail probability of a statistic judged against its own recent history.
//!
//! The last `capacity` values are kept twice: in arrival order (a ring, to forget the oldest)
//! and sorted (to rank a new value). With `n` values kept and `k = max(5, ⌈tail · n⌉)`, a new
//! value `x` gets
//!
//! - `p = (1 + #{kept ≥ x}) / (n + 1)` when `x` is at most `u`, the `k`-th largest kept value
//!   (the empirical tail);
//! - above it, a generalized Pareto tail fitted to the excesses of the `k` largest values over
//!   `u`, as in peaks-over-threshold (Siffer et al., "Anomaly detection in streams with extreme
//!   value theory", KDD 2017): with `m` and `v` the excesses' mean and variance, the
//!   method-of-moments shape is `ξ = ½ (1 − m²/v)` and scale `σ = ½ m (1 + m²/v)`, and
//!   `p = k / (n + 1) · (1 + ξ (x − u) / σ)^(−1/ξ)`. The shape is kept at or above 0: a tail
//!   lighter than exponential is taken as exponential, `p = k / (n + 1) · exp(−(x − u) / m)`,
//!   so that no value is impossible. A heavy tail (`ξ > 0`) makes far values less surprising
//!   than an exponential tail would.
//!
//! so `p` is continuous and keeps falling however far `x` goes beyond the largest value seen.
//! The surprise is `−log10 p`: 0 while fewer than [`MIN_HISTORY`] values are kept.

use super::ordered::Ordered;
use serde::{Deserialize, Serialize};

/// Values kept before a tail probability is given.
pub const MIN_HISTORY: usize = 30;

/// Smallest number of values in the fitted tail.
const MIN_TAIL: usize = 5;

/// A bounded history of one statistic and the tail probabilities it gives.
///
/// # Example
/// ```
/// use tbptt::detect::anomaly::Tail;
/// let mut t = Tail::new(1000, 0.02);
/// for i in 0..1000 {
///     t.push((i % 10) as f64);
/// }
/// assert_eq!(t.surprise(-1.0), 0.0); // everything kept is above: p = 1
/// assert!(t.surprise(30.0) > 10.0); // far beyond the largest value
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(from = "TailRepr")]
pub struct Tail {
    capacity: usize,
    tail: f64,
    sorted: Ordered,
    ring: Vec<f64>,
    head: usize,
}

/// How a tail is stored: its ring only, since the sorted copy follows from it and is rebuilt
/// on load. A `sorted` array, as written by earlier versions, is read as it is and checked
/// against the ring by [`Tail::validate`].
#[derive(Deserialize)]
struct TailRepr {
    capacity: usize,
    tail: f64,
    #[serde(default)]
    sorted: Option<Vec<f64>>,
    ring: Vec<f64>,
    head: usize,
}

impl From<TailRepr> for Tail {
    fn from(r: TailRepr) -> Self {
        let sorted = match r.sorted {
            Some(sorted) => Ordered::from_sorted(&sorted),
            None => {
                let mut sorted = r.ring.clone();
                sorted.sort_by(f64::total_cmp);
                Ordered::from_sorted(&sorted)
            }
        };
        Tail {
            capacity: r.capacity,
            tail: r.tail,
            sorted,
            ring: r.ring,
            head: r.head,
        }
    }
}

impl Serialize for Tail {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Stored<'a> {
            capacity: usize,
            tail: f64,
            ring: &'a [f64],
            head: usize,
        }
        Stored {
            capacity: self.capacity,
            tail: self.tail,
            ring: &self.ring,
            head: self.head,
        }
        .serialize(s)
    }
}

impl Tail {
    /// An empty history of at most `capacity` values (at least 1), fitting the largest
    /// fraction `tail` of them.
    pub fn new(capacity: usize, tail: f64) -> Self {
        Tail {
            capacity: capacity.max(1),
            tail,
            sorted: Ordered::default(),
            ring: Vec::new(),
            head: 0,
        }
    }

    /// Values kept.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// The most values kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values kept that are below `x`.
    pub fn count_below(&self, x: f64) -> usize {
        self.sorted.count_below(x)
    }

    /// Whether no value is kept.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// `−log10` of the tail probability of `x` (see the module docs); 0 for a non-finite `x`
    /// or while fewer than `MIN_HISTORY` values are kept.
    pub fn surprise(&self, x: f64) -> f64 {
        let n = self.sorted.len();
        if n < MIN_HISTORY || !x.is_finite() {
            return 0.0;
        }
        let k = ((self.tail * n as f64).ceil() as usize).clamp(MIN_TAIL, n);
        let top = || self.sorted.top(k);
        let u = top().next().unwrap_or(f64::INFINITY);
        let n1 = (n + 1) as f64;
        if x <= u {
            let above = n - self.sorted.count_below(x);
            return -((above + 1) as f64 / n1).log10();
        }
        let base = -(k as f64 / n1).log10();
        let m = top().sum::<f64>() / k as f64 - u;
        if !(m > 0.0 && m.is_finite()) {
            // No spread in the tail: anything beyond it is very surprising.
            let sigma = 1e-12 + u.abs() * 1e-9;
            return base + (x - u) / sigma / std::f64::consts::LN_10;
        }
        let v = top().map(|t| (t - u - m).powi(2)).sum::<f64>() / (k - 1) as f64;
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

    /// Adds `x` (non-finite values are ignored), forgetting the oldest value when full. Costs
    /// one block of the sorted copy (at most 1,024 values), not the whole history; no
    /// allocation once `capacity` values have been kept for a while.
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.ring.len() < self.capacity {
            if self.ring.capacity() == 0 {
                self.ring.reserve_exact(self.capacity.min(1 << 16));
            }
            self.ring.push(x);
        } else {
            let old = std::mem::replace(&mut self.ring[self.head], x);
            self.head = (self.head + 1) % self.capacity;
            self.sorted.remove(old);
        }
        self.sorted.insert(x);
    }

    /// Checks a deserialized history: sizes within the capacity, the sorted copy sorted and
    /// holding the same values as the ring, everything finite.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.capacity == 0 || !(self.tail > 0.0 && self.tail <= 1.0) {
            return Err("tail history has an invalid capacity or tail fraction".into());
        }
        if self.ring.len() != self.sorted.len()
            || self.ring.len() > self.capacity
            || (self.head != 0 && self.head >= self.ring.len())
            || (self.ring.len() < self.capacity && self.head != 0)
        {
            return Err("tail history has inconsistent sizes".into());
        }
        let sorted: Vec<f64> = self.sorted.iter().collect();
        if !sorted.iter().all(|v| v.is_finite()) || !sorted.windows(2).all(|w| w[0] <= w[1]) {
            return Err("tail history is not sorted or not finite".into());
        }
        let mut ring = self.ring.clone();
        ring.sort_by(f64::total_cmp);
        if ring != sorted {
            return Err("tail history's two copies differ".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With 99 values 1..=99 kept and k = 5: the value 50 has 50 kept values ≥ it, so
    /// p = 51/100 and the surprise is −log10 0.51 = 0.2924. The 5 largest are 95..=99, u = 95,
    /// σ = 97 − 95 = 2; x = 99 + 2 = 101 gives p = 5/100 · e^−3, surprise 1.301 + 3/ln 10.
    #[test]
    fn empirical_below_the_tail_exponential_above() {
        let mut t = Tail::new(1000, 0.02);
        for i in (1..100).rev() {
            t.push(i as f64);
        }
        assert!((t.surprise(50.0) - (-(0.51f64).log10())).abs() < 1e-12);
        let want = -(0.05f64).log10() + 3.0 / std::f64::consts::LN_10;
        assert!((t.surprise(101.0) - want).abs() < 1e-12);
        // Continuous at u: both forms give about k / (n + 1).
        assert!((t.surprise(95.0) - t.surprise(95.0 + 1e-9)).abs() < 0.1);
        assert!(t.validate().is_ok());
    }

    /// Deterministic uniform numbers in (0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Values from a generalized Pareto law with shape 0.3: the value exceeded with
    /// probability `q` is `(q^−ξ − 1) / ξ`. The fitted tail gives it a surprise near
    /// `−log10 q` beyond the largest values kept, where an exponential tail would give far
    /// more.
    #[test]
    fn a_heavy_tail_is_fitted_with_a_positive_shape() {
        let xi = 0.3;
        let quantile = |q: f64| (q.powf(-xi) - 1.0) / xi;
        let mut t = Tail::new(1 << 14, 0.02);
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1 << 14 {
            t.push(quantile(uniform(&mut s)));
        }
        for q in [1e-5f64, 1e-7] {
            let got = t.surprise(quantile(q));
            assert!((got + q.log10()).abs() < 0.6, "q {q}: surprise {got}");
        }
        // The largest kept value is about the 1/n quantile, so the exponential form (which
        // the same tail would give with ξ = 0) overshoots the 1e-7 quantile by decades.
        let n = t.len();
        let k = (0.02 * n as f64).ceil() as usize;
        let top: Vec<f64> = t.sorted.top(k).collect();
        let m = top.iter().sum::<f64>() / k as f64 - top[0];
        let exponential = -(k as f64 / (n + 1) as f64).log10()
            + (quantile(1e-7) - top[0]) / m / std::f64::consts::LN_10;
        assert!(exponential > 9.0, "{exponential}");
    }

    #[test]
    fn only_the_ring_is_stored_and_the_sorted_copy_is_rebuilt() {
        let mut t = Tail::new(300, 0.02);
        for i in 0..1000u64 {
            t.push(((i * 7919) % 613) as f64 / 3.0);
        }
        let bytes = rmp_serde::to_vec_named(&t).unwrap();
        let back: Tail = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, t);
        assert!(back.validate().is_ok());
        assert_eq!(back.surprise(150.0), t.surprise(150.0));
        // The ring alone: 300 values and a few fields, not 600 values.
        assert!(bytes.len() < 300 * 9 + 100, "{} bytes", bytes.len());
        // A state written with its sorted copy (earlier versions) reads the same.
        #[derive(Serialize)]
        struct Old<'a> {
            capacity: usize,
            tail: f64,
            sorted: Vec<f64>,
            ring: &'a [f64],
            head: usize,
        }
        let old = Old {
            capacity: 300,
            tail: 0.02,
            sorted: t.sorted.iter().collect(),
            ring: &t.ring,
            head: t.head,
        };
        let read: Tail = rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        assert_eq!(read, t);
        assert!(read.validate().is_ok());
        // ... and a sorted copy that disagrees with the ring is refused.
        let bad = Old {
            sorted: vec![0.0; 300],
            ..old
        };
        let read: Tail = rmp_serde::from_slice(&rmp_serde::to_vec_named(&bad).unwrap()).unwrap();
        assert!(read.validate().is_err());
    }

    #[test]
    fn the_ring_forgets_the_oldest_and_stays_consistent() {
        let mut t = Tail::new(50, 0.02);
        for i in 0..500 {
            t.push(((i * 37) % 101) as f64);
            assert!(t.len() <= 50);
        }
        assert!(t.validate().is_ok());
        let mut kept: Vec<f64> = (450..500).map(|i| ((i * 37) % 101) as f64).collect();
        kept.sort_by(f64::total_cmp);
        assert_eq!(t.sorted.iter().collect::<Vec<_>>(), kept);
        assert_eq!(
            Tail::new(10, 0.02).surprise(1e9),
            0.0,
            "no history, no surprise"
        );
    }
}
