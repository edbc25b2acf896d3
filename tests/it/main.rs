//! Integration tests of tbptt: golden comparisons with PyTorch, gradient checks, learning.

mod char_lm;
mod checkpoint;
mod cli;
mod fuzz_corpus;
mod golden;
mod gradcheck;
mod hostile;
mod learning;
mod memory;
mod truncation;
mod sweep;
mod util;
