//! Prometheus remote write: bodies as sent, or snappy-compressed from the fuzzer's bytes.
#![no_main]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::remote_write(data));
