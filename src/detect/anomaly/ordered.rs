//! A sorted multiset of `f64` in blocks, for the tails' order statistics.
//!
//! A tail keeps the last 16,384 values of a statistic sorted, and every event inserts one value
//! and removes the oldest. In one sorted `Vec` each of those moves half of it (64 KiB on
//! average); here the values are kept in sorted blocks of at most 1,024 values (a block that
//! grows past it is split in two; one that shrinks below 128 is merged into a neighbour when
//! both fit), so an insert or removal moves at most one block and finds it by binary search
//! over the blocks' last values. Ranks add up the lengths of the blocks before (a few dozen at
//! most). Blocks emptied by merges are kept and reused, so a history that stays the same size
//! stops allocating.
//!
//! The values are in the same order as in one sorted `Vec` (equal values are interchangeable),
//! so every rank and every sum over the largest values is the same, bit for bit.

/// Values a block is split at (into two halves).
const MAX_BLOCK: usize = 1024;
/// A block shorter than this after a removal is merged into a neighbour when both fit.
const MIN_BLOCK: usize = 128;

/// A sorted multiset of finite `f64` (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Ordered {
    blocks: Vec<Vec<f64>>,
    spare: Vec<Vec<f64>>,
    len: usize,
}

impl Ordered {
    /// Values kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first block whose last value is at least `x` (`blocks.len()` when none is).
    fn block_of(&self, x: f64) -> usize {
        self.blocks
            .partition_point(|b| b.last().is_some_and(|v| *v < x))
    }

    /// Values kept that are below `x`.
    pub fn count_below(&self, x: f64) -> usize {
        let i = self.block_of(x);
        let before: usize = self.blocks[..i].iter().map(Vec::len).sum();
        before
            + self
                .blocks
                .get(i)
                .map_or(0, |b| b.partition_point(|v| *v < x))
    }

    /// An empty block, reused if one is spare.
    fn new_block(&mut self) -> Vec<f64> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MAX_BLOCK + 1))
    }

    /// Adds `x`.
    pub fn insert(&mut self, x: f64) {
        if self.blocks.is_empty() {
            let mut b = self.new_block();
            b.push(x);
            self.blocks.push(b);
            self.len = 1;
            return;
        }
        let i = self.block_of(x).min(self.blocks.len() - 1);
        let b = &mut self.blocks[i];
        let at = b.partition_point(|v| *v < x);
        b.insert(at, x);
        self.len += 1;
        if b.len() > MAX_BLOCK {
            let mut upper = self.new_block();
            let b = &mut self.blocks[i];
            upper.extend_from_slice(&b[MAX_BLOCK / 2..]);
            b.truncate(MAX_BLOCK / 2);
            self.blocks.insert(i + 1, upper);
        }
    }

    /// Removes one value equal to `x`; returns whether there was one.
    pub fn remove(&mut self, x: f64) -> bool {
        let i = self.block_of(x);
        let Some(b) = self.blocks.get_mut(i) else {
            return false;
        };
        let at = b.partition_point(|v| *v < x);
        if b.get(at) != Some(&x) {
            return false;
        }
        b.remove(at);
        self.len -= 1;
        let left = b.len();
        if left == 0 {
            let empty = self.blocks.remove(i);
            self.spare.push(empty);
        } else if left < MIN_BLOCK {
            // Merge with the smaller neighbour when both fit in one block.
            let j = match (i.checked_sub(1), self.blocks.get(i + 1)) {
                (Some(p), Some(next)) if self.blocks[p].len() <= next.len() => p,
                (_, Some(_)) => i + 1,
                (Some(p), None) => p,
                (None, None) => return true,
            };
            let (lo, hi) = (i.min(j), i.max(j));
            if self.blocks[lo].len() + self.blocks[hi].len() <= MAX_BLOCK {
                let mut upper = self.blocks.remove(hi);
                self.blocks[lo].extend_from_slice(&upper);
                upper.clear();
                self.spare.push(upper);
            }
        }
        true
    }

    /// All values, ascending.
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.blocks.iter().flatten().copied()
    }

    /// The largest `k` values (at most `len`), ascending.
    pub fn top(&self, k: usize) -> impl Iterator<Item = f64> + '_ {
        let mut skip = self.len - k.min(self.len);
        let mut first = 0;
        for b in &self.blocks {
            if skip < b.len() {
                break;
            }
            skip -= b.len();
            first += 1;
        }
        self.blocks[first..].iter().flatten().skip(skip).copied()
    }

    /// Builds from values already sorted ascending (unsorted values are kept in the order
    /// given, for the owner's validation to refuse).
    pub fn from_sorted(values: &[f64]) -> Self {
        let mut o = Ordered::default();
        for chunk in values.chunks(MAX_BLOCK / 2) {
            let mut b = Vec::with_capacity(MAX_BLOCK + 1);
            b.extend_from_slice(chunk);
            o.blocks.push(b);
        }
        o.len = values.len();
        o
    }
}

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values with many repeats.
    fn value(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        ((*state >> 40) % 3000) as f64 / 7.0 - 100.0
    }

    /// A sliding window of 5,000 values, kept both here and in one sorted `Vec`: every rank,
    /// every top-k sum and the contents agree at every step, and blocks stay within bounds.
    #[test]
    fn agrees_with_one_sorted_vec_over_a_sliding_window() {
        let mut o = Ordered::default();
        let mut flat: Vec<f64> = Vec::new();
        let mut ring = std::collections::VecDeque::new();
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for step in 0..40_000 {
            let x = value(&mut s);
            if ring.len() == 5_000 {
                let old = ring.pop_front().unwrap();
                assert!(o.remove(old));
                let i = flat.partition_point(|v| *v < old);
                flat.remove(i);
            }
            ring.push_back(x);
            o.insert(x);
            let i = flat.partition_point(|v| *v < x);
            flat.insert(i, x);
            assert_eq!(o.len(), flat.len());
            if step % 97 == 0 {
                let probe = value(&mut s);
                assert_eq!(o.count_below(probe), flat.partition_point(|v| *v < probe));
                for k in [1, 5, 100, 1_500] {
                    let k = k.min(flat.len());
                    let want: f64 = flat[flat.len() - k..].iter().sum();
                    let got: f64 = o.top(k).sum();
                    assert_eq!(got.to_bits(), want.to_bits(), "top {k} at step {step}");
                }
                assert!(o.iter().eq(flat.iter().copied()));
                assert!(o
                    .blocks
                    .iter()
                    .all(|b| !b.is_empty() && b.len() <= MAX_BLOCK));
            }
        }
        assert!(!o.remove(1e9), "a value not kept is not removed");
        assert!(
            o.blocks.len() <= 5_000 / MIN_BLOCK + 2,
            "{} blocks",
            o.blocks.len()
        );
    }
}
