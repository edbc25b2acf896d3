//! Integration tests of tbptt: golden comparisons with PyTorch, gradient checks, learning.

mod anomaly;
mod char_lm;
mod checkpoint;
mod cli;
mod forecast;
mod fuzz_corpus;
mod golden;
mod gradcheck;
mod hostile;
mod ingest;
mod keyed;
mod learning;
mod memory;
mod monitor;
mod nab;
mod stdout;
mod sweep;
mod truncation;
mod util;
