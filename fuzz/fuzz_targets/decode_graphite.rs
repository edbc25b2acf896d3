//! Graphite plaintext: options from the first byte, the rest framed in chunks and decoded.
#![no_main]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::text(tbptt::io::format::Format::Graphite, data));
