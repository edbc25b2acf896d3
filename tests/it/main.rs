//! Integration tests of tbptt: golden comparisons with PyTorch, gradient checks, learning.

mod cli;
mod golden;
mod gradcheck;
mod learning;
mod util;
