//! The checkpoint decoder: arbitrary bytes give a checkpoint or an error, never a panic; a
//! checkpoint that decodes restores and keeps forecasting.
#![no_main]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::checkpoint(data));
