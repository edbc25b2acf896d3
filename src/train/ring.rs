//! The last-T window: a ring of (input, target, start state) pairs, stored as the columns of
//! preallocated matrices and indexed modulo `T`.
//!
//! Slot `i` holds the `i`-th pair pushed modulo `T`; the oldest pair is at `head`. Each pair
//! carries the live state *before* its input was consumed, so a window can be re-run from
//! the state saved at its first step.

use crate::Float;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// Largest accepted window length.
pub const MAX_WINDOW: usize = 1 << 20;

/// The contents of a [`Ring`], oldest pair first, for checkpoints ([`Ring::to_state`],
/// [`Ring::from_state`]). Buffers are column-major: pair `j` is `x[j·d_in..(j+1)·d_in]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingState<T> {
    /// Capacity `T`.
    pub capacity: usize,
    /// Input length.
    pub d_in: usize,
    /// Target length.
    pub d_out: usize,
    /// State length.
    pub state_len: usize,
    /// Inputs of the held pairs, oldest first.
    pub x: Vec<T>,
    /// Targets of the held pairs, oldest first.
    pub y: Vec<T>,
    /// Start states of the held pairs, oldest first.
    pub s: Vec<T>,
    /// Pairs ever pushed.
    pub pushed: u64,
}

/// Fixed-capacity ring of training pairs. Pushing never allocates.
///
/// # Example
/// ```
/// use tbptt::train::ring::Ring;
/// let mut r = Ring::<f64>::new(2, 1, 1, 1);
/// for t in 0..3 {
///     let v = t as f64;
///     r.push(&[v], &[v + 1.0], &[10.0 * v]);
/// }
/// assert_eq!(r.len(), 2);
/// assert_eq!(r.input(0), &[1.0]); // the oldest is pair 1
/// assert_eq!(r.state(0), &[10.0]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Ring<T: Float> {
    x: DMatrix<T>,
    y: DMatrix<T>,
    s: DMatrix<T>,
    head: usize,
    len: usize,
    pushed: u64,
}

impl<T: Float> Ring<T> {
    /// A ring of `capacity` pairs of inputs of length `d_in`, targets of length `d_out` and
    /// states of length `state_len`. `capacity` must be at least 1.
    pub fn new(capacity: usize, d_in: usize, d_out: usize, state_len: usize) -> Self {
        let cap = capacity.max(1);
        Ring {
            x: DMatrix::zeros(d_in, cap),
            y: DMatrix::zeros(d_out, cap),
            s: DMatrix::zeros(state_len, cap),
            head: 0,
            len: 0,
            pushed: 0,
        }
    }

    /// Capacity `T`.
    pub fn capacity(&self) -> usize {
        self.x.ncols()
    }

    /// Number of pairs held (at most the capacity).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no pair is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total number of pairs ever pushed.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Appends a pair, overwriting the oldest when full.
    ///
    /// # Panics
    /// If a slice length differs from the ring's shape (callers check once up front).
    pub fn push(&mut self, x: &[T], y: &[T], state: &[T]) {
        let cap = self.capacity();
        let slot = (self.head + self.len) % cap;
        self.x.column_mut(slot).copy_from_slice(x);
        self.y.column_mut(slot).copy_from_slice(y);
        self.s.column_mut(slot).copy_from_slice(state);
        if self.len < cap {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % cap;
        }
        self.pushed += 1;
    }

    fn slot(&self, i: usize) -> usize {
        debug_assert!(i < self.len);
        (self.head + i) % self.capacity()
    }

    /// Input of the `i`-th oldest pair.
    pub fn input(&self, i: usize) -> &[T] {
        let s = self.slot(i);
        let d = self.x.nrows();
        &self.x.as_slice()[s * d..(s + 1) * d]
    }

    /// Target of the `i`-th oldest pair.
    pub fn target(&self, i: usize) -> &[T] {
        let s = self.slot(i);
        let d = self.y.nrows();
        &self.y.as_slice()[s * d..(s + 1) * d]
    }

    /// Live state saved before the `i`-th oldest pair's input.
    pub fn state(&self, i: usize) -> &[T] {
        let s = self.slot(i);
        let d = self.s.nrows();
        &self.s.as_slice()[s * d..(s + 1) * d]
    }

    /// Copies the newest `n` pairs' inputs and targets, oldest first, into column-major
    /// buffers (`d_in x n`, `d_out x n`), and returns the start state of the first of them.
    ///
    /// # Panics
    /// If `n` exceeds [`Ring::len`] or a buffer is too short.
    pub fn copy_newest_to(&self, n: usize, xs: &mut [T], ys: &mut [T]) -> &[T] {
        assert!(n <= self.len, "copy_newest_to: only {} pairs", self.len);
        let (dx, dy) = (self.x.nrows(), self.y.nrows());
        let first = self.len - n;
        for j in 0..n {
            xs[j * dx..(j + 1) * dx].copy_from_slice(self.input(first + j));
            ys[j * dy..(j + 1) * dy].copy_from_slice(self.target(first + j));
        }
        self.state(first)
    }

    /// The held pairs, oldest first (allocates; for checkpoints).
    pub fn to_state(&self) -> RingState<T> {
        let (dx, dy, ds) = (self.x.nrows(), self.y.nrows(), self.s.nrows());
        let mut st = RingState {
            capacity: self.capacity(),
            d_in: dx,
            d_out: dy,
            state_len: ds,
            x: Vec::with_capacity(self.len * dx),
            y: Vec::with_capacity(self.len * dy),
            s: Vec::with_capacity(self.len * ds),
            pushed: self.pushed,
        };
        for i in 0..self.len {
            st.x.extend_from_slice(self.input(i));
            st.y.extend_from_slice(self.target(i));
            st.s.extend_from_slice(self.state(i));
        }
        st
    }

    /// Rebuilds a ring from [`Ring::to_state`], checking every length and value.
    ///
    /// # Errors
    /// A message naming the inconsistency: a shape other than `(capacity, d_in, d_out,
    /// state_len)`, buffers of different pair counts or more pairs than the capacity, a
    /// non-finite value, or fewer pairs pushed than held.
    pub fn from_state(
        st: &RingState<T>,
        capacity: usize,
        d_in: usize,
        d_out: usize,
        state_len: usize,
    ) -> crate::Result<Self> {
        let want = (capacity.max(1), d_in, d_out, state_len);
        let got = (st.capacity, st.d_in, st.d_out, st.state_len);
        if want != got {
            return Err(crate::Error::state(
                "ring",
                format!("ring shape (capacity, d_in, d_out, state) is {got:?}, expected {want:?}"),
            ));
        }
        let n = st.x.len().checked_div(d_in).unwrap_or(0);
        if st.x.len() != n * d_in || st.y.len() != n * d_out || st.s.len() != n * state_len {
            return Err(crate::Error::state(
                "ring",
                format!(
                    "ring buffers of {} / {} / {} values do not hold whole pairs",
                    st.x.len(),
                    st.y.len(),
                    st.s.len()
                ),
            ));
        }
        if n > want.0 || (n as u64) > st.pushed {
            return Err(crate::Error::state(
                "ring",
                format!(
                    "ring holds {n} pairs with capacity {} and {} pushed",
                    want.0, st.pushed
                ),
            ));
        }
        if !st.x.iter().chain(&st.y).chain(&st.s).all(|v| v.finite()) {
            return Err(crate::Error::state("ring", "ring holds a non-finite value"));
        }
        let mut r = Ring::new(capacity, d_in, d_out, state_len);
        for j in 0..n {
            r.push(
                &st.x[j * d_in..(j + 1) * d_in],
                &st.y[j * d_out..(j + 1) * d_out],
                &st.s[j * state_len..(j + 1) * state_len],
            );
        }
        r.pushed = st.pushed;
        Ok(r)
    }

    /// Forgets every pair (the capacity stays).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn inconsistent_states_are_refused() {
        let mut r = Ring::<f32>::new(3, 1, 1, 2);
        r.push(&[1.0], &[2.0], &[3.0, 4.0]);
        let good = r.to_state();
        assert!(Ring::from_state(&good, 3, 1, 1, 2).is_ok());
        assert!(Ring::from_state(&good, 4, 1, 1, 2)
            .unwrap_err()
            .to_string()
            .contains("shape"));
        let mut bad = good.clone();
        bad.s.pop();
        assert!(Ring::from_state(&bad, 3, 1, 1, 2)
            .unwrap_err()
            .to_string()
            .contains("whole pairs"));
        let mut bad = good.clone();
        bad.x[0] = f32::NAN;
        assert!(Ring::from_state(&bad, 3, 1, 1, 2)
            .unwrap_err()
            .to_string()
            .contains("non-finite"));
        let mut bad = good;
        bad.pushed = 0;
        assert!(Ring::from_state(&bad, 3, 1, 1, 2).is_err());
    }

    proptest! {
        #[test]
        fn ring_matches_vecdeque(cap in 1usize..9, values in proptest::collection::vec(-1e3f64..1e3, 0..60)) {
            let mut ring = Ring::<f64>::new(cap, 2, 1, 1);
            let mut model: VecDeque<(f64, f64)> = VecDeque::new();
            for v in &values {
                ring.push(&[*v, -*v], &[v * 2.0], &[v + 0.5]);
                model.push_back((*v, v * 2.0));
                if model.len() > cap { model.pop_front(); }
                prop_assert_eq!(ring.len(), model.len());
                for (i, (x, y)) in model.iter().enumerate() {
                    prop_assert_eq!(ring.input(i), &[*x, -*x][..]);
                    prop_assert_eq!(ring.target(i), &[*y][..]);
                    prop_assert_eq!(ring.state(i), &[*x + 0.5][..]);
                }
                let n = ring.len();
                let mut xs = vec![0.0; 2 * n];
                let mut ys = vec![0.0; n];
                let s0 = ring.copy_newest_to(n, &mut xs, &mut ys)[0];
                if let Some((x0, _)) = model.front() {
                    prop_assert_eq!(s0, x0 + 0.5);
                    prop_assert_eq!(xs[0], *x0);
                    prop_assert_eq!(ys[n - 1], model.back().unwrap().1);
                }
            }
            prop_assert_eq!(ring.pushed(), values.len() as u64);
            let back = Ring::from_state(&ring.to_state(), cap, 2, 1, 1).unwrap();
            prop_assert_eq!(back.to_state(), ring.to_state());
            for i in 0..ring.len() {
                prop_assert_eq!(back.input(i), ring.input(i));
                prop_assert_eq!(back.state(i), ring.state(i));
            }
        }
    }
}
