//! Integration tests of tbptt: golden comparisons with PyTorch, gradient checks, learning.

mod golden;
mod gradcheck;
mod learning;
mod util;
