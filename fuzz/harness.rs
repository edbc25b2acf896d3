//! What every fuzz target does with one input, shared by `fuzz/fuzz_targets/*.rs` and the
//! root test `tests/fuzz_corpus.rs` (which replays the saved corpus without a fuzzer).
//!
//! Text targets: the first byte picks the options (missing-value policy, header detection,
//! delimiter, line limit, chunk size), the rest is pushed through the [`LineFramer`] in
//! chunks and every line is decoded; whole inputs also go through `decode_frame` (datagram
//! mode). Any input must give events or errors, never a panic, and every event must hold
//! finite values.
#![allow(dead_code)]

use tbptt::event::Event;
use tbptt::io::format::{Decoded, DecoderConfig, Format, Missing};

fn config(format: Format, opts: u8) -> DecoderConfig {
    DecoderConfig {
        format,
        missing: if opts & 1 == 0 {
            Missing::Skip
        } else {
            Missing::Hold
        },
        header: match (opts >> 1) & 3 {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        },
        delimiter: if opts & 8 == 0 { ',' } else { ';' },
        max_line_len: if opts & 16 == 0 { 64 } else { 4096 },
        max_frame_len: if opts & 16 == 0 { 64 } else { 4096 },
        ..Default::default()
    }
}

fn check(event: &Event) {
    assert!(event.values.iter().all(|v| v.is_finite()), "{event:?}");
    assert!(event.targets.iter().all(|v| v.is_finite()), "{event:?}");
    assert!(
        event.key.len() <= tbptt::io::labels::MAX_KEY_LEN,
        "{event:?}"
    );
}

/// Checks `event` and every further event of the same record (line protocol holds one per
/// numeric field).
fn check_all(decoder: &mut tbptt::io::format::Decoder, event: &mut Event) {
    check(event);
    while decoder.next_event(event) {
        check(event);
    }
}

fn chunk_size(opts: u8) -> usize {
    1 + usize::from(opts >> 5) * 7
}

/// CSV, JSON lines, Graphite or InfluxDB line protocol.
pub fn text(format: Format, data: &[u8]) {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let config = config(format, opts);
    let Ok(mut decoder) = config.build() else {
        return;
    };
    let mut framer = config.line_framer();
    let mut event = Event::new();
    for chunk in rest.chunks(chunk_size(opts)) {
        framer.push(chunk);
        while let Some(line) = framer.next_numbered() {
            if let Ok((no, line)) = line {
                assert!(line.len() <= config.max_line_len + 1);
                if let Ok(Decoded::Event) = decoder.decode_line(line, no, &mut event) {
                    check_all(&mut decoder, &mut event);
                }
            }
        }
    }
    framer.finish();
    while let Some(line) = framer.next_numbered() {
        if let Ok((no, line)) = line {
            if let Ok(Decoded::Event) = decoder.decode_line(line, no, &mut event) {
                check_all(&mut decoder, &mut event);
            }
        }
    }
    // Datagram mode: the whole input as one frame, with a fresh decoder.
    if let Ok(mut d) = config.build() {
        if let Ok(Decoded::Event) = d.decode_frame(rest, 0, &mut event) {
            check_all(&mut d, &mut event);
        }
    }
}

/// Prometheus remote write. The first byte picks the mode: even, the rest is the body as
/// sent; odd, the rest is snappy-compressed first, so that mutations reach the protobuf
/// decoder and the series' checks. Events must be finite with keys within the bound, and
/// every rejected series names its index.
pub fn remote_write(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let body = if mode & 1 == 1 {
        snap::raw::Encoder::new()
            .compress_vec(rest)
            .unwrap_or_default()
    } else {
        rest.to_vec()
    };
    let mut decoder = tbptt::io::format::RemoteWriteDecoder::new(1 << 16);
    let mut rejected = Vec::new();
    if decoder.decode(&body, &mut rejected).is_err() {
        return;
    }
    let mut event = Event::new();
    while decoder.next_event(&mut event) {
        check(&event);
        assert!(tbptt::io::labels::parse(&event.key).is_some(), "{event:?}");
    }
    for e in rejected {
        assert!(
            matches!(e.position(), Some(tbptt::io::format::Position::Series(n)) if n >= 1),
            "{e}"
        );
    }
}

/// MessagePack frames.
pub fn msgpack(data: &[u8]) {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let config = config(Format::MsgPack, opts);
    let Ok(mut decoder) = config.build() else {
        return;
    };
    let mut framer = config.msgpack_framer();
    let mut event = Event::new();
    for chunk in rest.chunks(chunk_size(opts)) {
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some((offset, frame))) => {
                    assert!(frame.len() <= config.max_frame_len);
                    if let Ok(Decoded::Event) = decoder.decode_frame(frame, offset, &mut event) {
                        check(&event);
                    }
                }
                Ok(None) => break,
                // A framing error drops the buffered bytes; keep reading.
                Err(_) => continue,
            }
        }
    }
    let _ = framer.finish();
    if let Ok(mut d) = config.build() {
        if let Ok(Decoded::Event) = d.decode_frame(rest, 0, &mut event) {
            check(&event);
        }
    }
}

/// The checkpoint decoder: arbitrary bytes give a checkpoint or an error; a checkpoint that
/// decodes restores, and the restored pipeline processes events with finite outputs.
///
/// The first byte picks the mode. Even: the rest is decoded as it is, which exercises the
/// header checks. Odd: the rest gets a correct payload length and both checksums first,
/// so mutations reach the MessagePack decoder and the state's validation.
pub fn checkpoint(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= tbptt::io::checkpoint::HEADER_LEN {
        let h = tbptt::io::checkpoint::HEADER_LEN;
        let len = (bytes.len() - h) as u64;
        bytes[18..26].copy_from_slice(&len.to_le_bytes());
        let pcrc = tbptt::io::checkpoint::crc32(&bytes[h..]);
        bytes[26..30].copy_from_slice(&pcrc.to_le_bytes());
        let hcrc = tbptt::io::checkpoint::crc32(&bytes[..30]);
        bytes[30..34].copy_from_slice(&hcrc.to_le_bytes());
    }
    let Ok(c) = tbptt::io::checkpoint::decode(&bytes) else {
        return;
    };
    let mut state = c.state;
    state.config.background = false;
    let d = state.inner.as_ref().map_or(1, |i| i.learner.config.d_input);
    // Guard the fuzzer's time, not correctness: huge models are valid but slow.
    if state.learner_config().d_hidden > 64 || d > 16 || state.learner_config().max_window() > 64 {
        return;
    }
    let mut p =
        tbptt::detect::pipeline::Pipeline::restore(state).expect("a decoded checkpoint restores");
    let mut ev = Event::new();
    let explicit = p
        .learner()
        .is_some_and(|l| l.config().targets == tbptt::Targets::Explicit);
    let dy = p.learner().map_or(1, |l| l.config().d_target.unwrap_or(d));
    for t in 0..20 {
        ev.values.clear();
        ev.targets.clear();
        ev.values.extend((0..d).map(|i| (t + i) as f64));
        if explicit {
            ev.targets.extend((0..dy).map(|i| (t * i) as f64));
        }
        if let Ok(out) = p.process(&ev) {
            assert!(out.forecast.iter().all(|v| v.is_finite()), "{out:?}");
        }
    }
}
