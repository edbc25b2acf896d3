//! Property tests of the input formats: decoders and framers never panic on arbitrary bytes,
//! framers agree with a naive model under any chunking, well-formed rows round-trip exactly,
//! and steady-state decoding allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use tbptt::event::Event;
use tbptt::io::format::{
    encode_event, ColumnSpec, Decoded, Decoder, DecoderConfig, Format, LineFramer, Missing,
    MsgPackFramer, ParseError, Selector, TimeUnit,
};

// ---------------------------------------------------------------------------------------
// Allocation counting (per thread, so parallel tests do not disturb each other).

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    (ALLOCS.with(Cell::get) - before, r)
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn config(format: Format) -> DecoderConfig {
    DecoderConfig {
        format,
        max_line_len: 256,
        max_frame_len: 256,
        ..DecoderConfig::default()
    }
}

fn decoder(cfg: &DecoderConfig) -> Decoder {
    cfg.build().unwrap()
}

/// Decodes every line of `text`; returns the events.
fn decode_lines(d: &mut Decoder, text: &str) -> Result<Vec<Event>, ParseError> {
    let mut out = Vec::new();
    let mut ev = Event::new();
    let mut framer = LineFramer::new(1 << 20);
    framer.push(text.as_bytes());
    framer.finish();
    while let Some(line) = framer.next_numbered() {
        let (n, line) = line?;
        if d.decode_line(line, n, &mut ev)? == Decoded::Event {
            out.push(ev.clone());
        }
    }
    Ok(out)
}

/// The line framer's expected output: split at '\n', strip one '\r', over-long lines are
/// errors, a last line without newline counts only if non-empty.
fn model_lines(input: &[u8], limit: usize) -> Vec<Result<Vec<u8>, u64>> {
    let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    if parts.last().is_some_and(|l| l.is_empty()) {
        parts.pop();
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            if l.len() > limit {
                Err(i as u64 + 1)
            } else {
                Ok(l.to_vec())
            }
        })
        .collect()
}

/// Cuts `bytes` at the given (sorted, deduplicated) positions.
fn chunks<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for c in cuts {
        out.push(&bytes[prev..c]);
        prev = c;
    }
    out.push(&bytes[prev..]);
    out
}

/// A finite f64 whose shortest decimal form has at most 13 significant digits, so that
/// serde_json's default (fast, not always correctly rounded) float parser reads it exactly.
fn json_safe_f64() -> impl Strategy<Value = f64> {
    (-1_000_000_000_000i64..1_000_000_000_000, 0i32..9).prop_map(|(i, k)| i as f64 / 10f64.powi(k))
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |v| v.is_finite())
}

/// A finite number that does not look like an integer Unix time in any unit: the decoders read
/// such a number in a headerless first column, or as an event's time, as a time in its unit
/// (`TimeUnit::of_epoch` and the `r16_unix_times_*` tests pin that), so a round trip of
/// arbitrary numbers leaves them out.
fn finite_non_epoch_f64() -> impl Strategy<Value = f64> {
    finite_f64().prop_filter("not epoch-like", |&v| TimeUnit::of_epoch(v).is_none())
}

fn specs() -> impl Strategy<Value = ColumnSpec> {
    let sel = prop_oneof![
        (0usize..4).prop_map(Selector::Index),
        "[a-c]".prop_map(Selector::Name),
    ];
    (
        proptest::collection::vec(sel.clone(), 0..3),
        proptest::collection::vec(sel.clone(), 0..2),
        proptest::option::of(sel.clone()),
        proptest::option::of(sel),
        any::<bool>(),
    )
        .prop_map(|(inputs, targets, time, key, auto_time)| ColumnSpec {
            inputs,
            targets,
            time,
            key,
            auto_time,
        })
}

// ---------------------------------------------------------------------------------------
// Never panic.

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(
        prefix in proptest::collection::vec(
            prop_oneof![
                Just(&b"a,b,c"[..]),
                Just(&b"1,2,3"[..]),
                Just(&b"2024-01-01,1,x"[..]),
                Just(&br#"{"a": 1, "b": "2", "ts": "2024-01-01"}"#[..]),
                Just(&br#"{"values": [1, 2], "target": 3, "key": "k"}"#[..]),
                Just(&b"[1, 2, 3]"[..]),
            ],
            0..3,
        ),
        lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        spec in specs(),
        hold in any::<bool>(),
        header in proptest::option::of(any::<bool>()),
        delim in prop_oneof![Just(','), Just('\t'), Just(';')],
    ) {
        for format in [Format::Csv, Format::JsonLines, Format::MsgPack] {
            let cfg = DecoderConfig {
                columns: spec.clone(),
                missing: if hold { Missing::Hold } else { Missing::Skip },
                header,
                delimiter: delim,
                ..config(format)
            };
            let mut d = decoder(&cfg);
            let mut ev = Event::new();
            for (i, line) in prefix.iter().copied().chain(lines.iter().map(Vec::as_slice)).enumerate() {
                let n = i as u64 + 1;
                match d.decode_line(line, n, &mut ev) {
                    Ok(Decoded::Event) => {
                        prop_assert!(ev.values.iter().chain(&ev.targets).all(|v| v.is_finite()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Every record-level error names its line.
                        if let Some(p) = e.position() {
                            prop_assert_eq!(p.line(), Some(n), "{}", e);
                        }
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
                let _ = d.decode_frame(line, 0, &mut ev);
            }
        }
    }

    #[test]
    fn msgpack_decoder_never_panics_on_mutated_frames(
        events in proptest::collection::vec((proptest::option::of(finite_f64()),
            proptest::collection::vec(finite_f64(), 0..4)), 1..4),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut d = decoder(&config(Format::MsgPack));
        let mut ev = Event::new();
        for (time, values) in events {
            let mut buf = Vec::new();
            encode_event(&Event { time, key: "k".into(), values, targets: vec![] }, &mut buf);
            for (at, byte) in &flips {
                let i = at % buf.len();
                buf[i] = *byte;
            }
            let end = cut % (buf.len() + 1);
            let _ = d.decode_frame(&buf, 0, &mut ev);
            let _ = d.decode_frame(&buf[..end], 0, &mut ev);
        }
    }

    #[test]
    fn msgpack_framer_never_panics_and_bounds_its_buffer(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        limit in 1usize..64,
    ) {
        let mut f = MsgPackFramer::new(limit);
        let mut d = decoder(&config(Format::MsgPack));
        let mut ev = Event::new();
        let mut last_offset = None;
        for chunk in chunks(&bytes, &cuts) {
            f.push(chunk);
            prop_assert!(f.buffered() <= limit + chunk.len());
            loop {
                match f.next_frame() {
                    Ok(None) => break,
                    Ok(Some((offset, frame))) => {
                        prop_assert!(frame.len() <= limit);
                        prop_assert!(last_offset.is_none_or(|o| offset > o));
                        last_offset = Some(offset);
                        prop_assert_eq!(&bytes[offset as usize..offset as usize + frame.len()], frame);
                        let _ = d.decode_frame(frame, offset, &mut ev);
                    }
                    Err(e) => prop_assert!(e.position().is_some()),
                }
            }
        }
        let _ = f.finish();
    }

    #[test]
    fn line_framer_matches_the_naive_model_under_any_chunking(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b','), any::<u8>()], 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        limit in 0usize..12,
    ) {
        let mut f = LineFramer::new(limit);
        let mut got: Vec<Result<Vec<u8>, u64>> = Vec::new();
        let drain = |f: &mut LineFramer, got: &mut Vec<_>| {
            while let Some(r) = f.next_numbered() {
                match r {
                    Ok((n, l)) => {
                        assert_eq!(n, got.len() as u64 + 1);
                        got.push(Ok(l.to_vec()));
                    }
                    Err(ParseError::TooLong { pos, .. }) => got.push(Err(pos.line().unwrap())),
                    Err(e) => panic!("{e}"),
                }
            }
        };
        for chunk in chunks(&input, &cuts) {
            f.push(chunk);
            // The partial line is never longer than the limit (+1 for a pending '\r').
            prop_assert!(f.buffered() <= input.len());
            drain(&mut f, &mut got);
            prop_assert!(f.buffered() <= limit + 1);
        }
        f.finish();
        drain(&mut f, &mut got);
        prop_assert_eq!(got, model_lines(&input, limit));
    }
}

// ---------------------------------------------------------------------------------------
// Round trips.

fn csv_field(v: f64, quote: bool) -> String {
    if quote {
        format!("\"{v}\"")
    } else {
        format!("{v}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn csv_rows_round_trip_exactly(
        rows in proptest::collection::vec(proptest::collection::vec(finite_non_epoch_f64(), 3), 1..20),
        times in proptest::collection::vec(0i64..4_000_000_000, 20),
        with_header in any::<bool>(),
        with_time in any::<bool>(),
        crlf in any::<bool>(),
        quote in any::<bool>(),
        delim in prop_oneof![Just(','), Just('\t'), Just(';')],
    ) {
        let sep = delim.to_string();
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        if with_header {
            text += &["t", "a", "b", "c"][usize::from(!with_time)..].join(&sep);
            text += eol;
        }
        for (row, t) in rows.iter().zip(&times) {
            let mut fields: Vec<String> = row.iter().map(|&v| csv_field(v, quote)).collect();
            if with_time {
                let days = t / 86_400;
                let secs = t % 86_400;
                // Civil date of `days` after the epoch, through the decoder's inverse.
                let date = civil_from_days(days);
                fields.insert(0, format!("{date} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60));
            }
            text += &fields.join(&sep);
            text += eol;
        }
        let mut d = decoder(&DecoderConfig { delimiter: delim, ..DecoderConfig::default() });
        let events = decode_lines(&mut d, &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(events.len(), rows.len());
        for ((ev, row), t) in events.iter().zip(&rows).zip(&times) {
            prop_assert_eq!(&ev.values, row);
            prop_assert_eq!(ev.time, with_time.then_some(*t as f64));
        }
    }

    #[test]
    fn json_rows_round_trip_exactly(
        rows in proptest::collection::vec(proptest::collection::vec(json_safe_f64(), 3), 1..20),
        shape in 0u8..3,
    ) {
        let mut text = String::new();
        for (i, row) in rows.iter().enumerate() {
            let line = match shape {
                0 => serde_json::to_string(row).unwrap(),
                1 => format!(r#"{{"ts": {i}, "c": {}, "a": {}, "b": {}}}"#, row[0], row[1], row[2]),
                _ => format!(r#"{{"key": "k{i}", "values": {}, "time": {i}}}"#,
                    serde_json::to_string(row).unwrap()),
            };
            text += &line;
            text += "\n";
        }
        let mut d = decoder(&DecoderConfig { format: Format::JsonLines, ..DecoderConfig::default() });
        let events = decode_lines(&mut d, &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(events.len(), rows.len());
        for (i, (ev, row)) in events.iter().zip(&rows).enumerate() {
            prop_assert_eq!(&ev.values, row);
            if shape > 0 {
                prop_assert_eq!(ev.time, Some(i as f64));
            }
            if shape == 2 {
                prop_assert_eq!(&ev.key, &format!("k{i}"));
            }
        }
    }

    #[test]
    fn msgpack_events_round_trip_exactly_through_the_framer(
        events in proptest::collection::vec(
            (proptest::option::of(finite_non_epoch_f64()), "[a-z]{0,40}",
             proptest::collection::vec(finite_f64(), 2),
             proptest::collection::vec(finite_f64(), 1)),
            1..10),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        // The first event fixes the layout, so all events carry a time if the first does.
        let with_time = events[0].0.is_some();
        let events: Vec<Event> = events
            .into_iter()
            .map(|(t, key, values, targets)| Event {
                time: if with_time { Some(t.unwrap_or(0.0)) } else { None },
                key: if key.is_empty() { "k".into() } else { key },
                values,
                targets,
            })
            .collect();
        let mut wire = Vec::new();
        for e in &events {
            encode_event(e, &mut wire);
        }
        let mut f = MsgPackFramer::new(1024);
        let mut d = decoder(&config(Format::MsgPack));
        let mut ev = Event::new();
        let mut got = Vec::new();
        for chunk in chunks(&wire, &cuts) {
            f.push(chunk);
            while let Some((offset, frame)) = f.next_frame().map_err(|e| TestCaseError::fail(e.to_string()))? {
                d.decode_frame(frame, offset, &mut ev).map_err(|e| TestCaseError::fail(e.to_string()))?;
                got.push(ev.clone());
            }
        }
        prop_assert_eq!(f.finish(), Ok(()));
        prop_assert_eq!(got, events);
    }
}

/// Howard Hinnant's `civil_from_days`, the inverse of the decoder's `days_from_civil`, as
/// `YYYY-MM-DD`.
fn civil_from_days(z: i64) -> String {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

// ---------------------------------------------------------------------------------------
// Steady state allocates nothing.

#[test]
fn steady_state_decoding_does_not_allocate() {
    let key = ColumnSpec {
        key: Some(Selector::Name("host".into())),
        ..ColumnSpec::default()
    };
    let cases: [(Format, ColumnSpec, &str, &str); 4] = [
        (
            Format::Csv,
            key,
            "timestamp,host,cpu,mem\n",
            "2024-01-01T00:00:00Z,\"web, 1\",0.25,3e2\n",
        ),
        (
            Format::JsonLines,
            ColumnSpec::default(),
            "",
            "{\"ts\": \"2024-01-01 00:00:00\", \"key\": \"web-1\", \"cpu\": 0.25, \"mem\": \"300\", \"skip\": [1, \"x\", null]}\n",
        ),
        (
            Format::JsonLines,
            ColumnSpec::default(),
            "",
            "[1.5, 2, -3e-3, \"4\"]\n",
        ),
        (
            Format::JsonLines,
            ColumnSpec::default(),
            "",
            "{\"time\": 5, \"key\": \"k\", \"values\": [1, 2], \"target\": [3]}\n",
        ),
    ];
    for (format, columns, header, row) in cases {
        let mut d = decoder(&DecoderConfig {
            missing: Missing::Hold,
            columns,
            ..config(format)
        });
        let mut framer = LineFramer::new(1024);
        framer.push(header.as_bytes());
        let mut ev = Event::new();
        let mut run = |n: usize| {
            let mut events = 0;
            for _ in 0..n {
                framer.push(row.as_bytes());
                while let Some(line) = framer.next_numbered() {
                    let (no, line) = line.unwrap();
                    if d.decode_line(line, no, &mut ev).unwrap() == Decoded::Event {
                        events += 1;
                    }
                }
            }
            events
        };
        assert_eq!(run(3), 3, "{format}");
        let (allocs, events) = allocations(|| run(1000));
        assert_eq!(events, 1000);
        assert_eq!(allocs, 0, "{format}: {row}");
    }

    // MessagePack, through the framer.
    let mut d = decoder(&config(Format::MsgPack));
    let mut f = MsgPackFramer::new(1024);
    let mut wire = Vec::new();
    encode_event(
        &Event {
            time: Some(1.0),
            key: "sensor".into(),
            values: vec![1.0, 2.0, 3.0],
            targets: vec![4.0],
        },
        &mut wire,
    );
    let mut ev = Event::new();
    let mut run = |n: usize| {
        for _ in 0..n {
            f.push(&wire[..5]);
            f.push(&wire[5..]);
            while let Some((offset, frame)) = f.next_frame().unwrap() {
                d.decode_frame(frame, offset, &mut ev).unwrap();
            }
        }
    };
    run(3);
    let (allocs, ()) = allocations(|| run(1000));
    assert_eq!(allocs, 0, "msgpack");
    assert_eq!(ev.values, [1.0, 2.0, 3.0]);
}

// ---------------------------------------------------------------------------------------
// The monitoring protocols.

/// Pieces that line protocol and Graphite lines are made of, so that random lines often come
/// close to valid ones.
fn monitoring_piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("cpu"),
        Just(","),
        Just(" "),
        Just("="),
        Just("\\"),
        Just("\""),
        Just("host"),
        Just("a\\ b"),
        Just("1.5"),
        Just("-2i"),
        Just("3u"),
        Just("t"),
        Just("1700000000"),
        Just("\t"),
        Just("\"x\\\"y\""),
        Just("value"),
        Just("é"),
        Just("{"),
        Just("nan"),
        Just("1e999"),
        Just("#"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    /// Graphite and line protocol: any line gives events with finite values and canonical keys
    /// within the bound, or an error that names its line (and, for syntax errors, the byte
    /// within it, inside the line).
    #[test]
    fn monitoring_decoders_never_panic_and_errors_name_the_byte(
        pieces in proptest::collection::vec(monitoring_piece(), 0..24),
        noise in proptest::collection::vec(any::<u8>(), 0..16),
        at in any::<usize>(),
    ) {
        let mut line: Vec<u8> = pieces.concat().into_bytes();
        let cut = at % (line.len() + 1);
        if at % 3 == 0 {
            line.splice(cut..cut, noise.iter().copied());
        }
        for format in [Format::Graphite, Format::Influx] {
            let mut d = decoder(&config(format));
            let mut ev = Event::new();
            match d.decode_line(&line, 7, &mut ev) {
                Ok(Decoded::Event) => loop {
                    prop_assert_eq!(ev.values.len(), 1);
                    prop_assert!(ev.values[0].is_finite());
                    prop_assert!(ev.key.len() <= tbptt::io::labels::MAX_KEY_LEN);
                    prop_assert!(tbptt::io::labels::parse(&ev.key).is_some(), "{}", ev.key);
                    if !d.next_event(&mut ev) {
                        break;
                    }
                },
                Ok(_) => prop_assert!(!d.next_event(&mut ev)),
                Err(e) => {
                    prop_assert_eq!(e.position().and_then(|p| p.line()), Some(7), "{}", e);
                    let msg = e.to_string();
                    if let Some(i) = msg.rfind(" at byte ") {
                        let byte: usize = msg[i + 9..].split(|c: char| !c.is_ascii_digit()).next()
                            .and_then(|b| b.parse().ok()).expect("a byte offset");
                        prop_assert!(byte <= line.len(), "{} for {:?}", msg, String::from_utf8_lossy(&line));
                    }
                    prop_assert!(!d.next_event(&mut ev));
                }
            }
        }
    }

    /// Remote write: arbitrary bodies, raw or snappy-compressed, give events or errors.
    #[test]
    fn remote_write_decoder_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..256),
        compress in any::<bool>(),
    ) {
        let body = if compress {
            snap::raw::Encoder::new().compress_vec(&body).unwrap()
        } else {
            body
        };
        let mut d = tbptt::io::format::RemoteWriteDecoder::new(1 << 16);
        let mut rejected = Vec::new();
        if d.decode(&body, &mut rejected).is_ok() {
            let mut ev = Event::new();
            while d.next_event(&mut ev) {
                prop_assert!(ev.values[0].is_finite());
                prop_assert!(ev.key.len() <= tbptt::io::labels::MAX_KEY_LEN);
            }
            for e in &rejected {
                prop_assert!(matches!(e.position(), Some(tbptt::io::format::Position::Series(n)) if n >= 1), "{}", e);
            }
        }
    }
}

#[test]
fn steady_state_monitoring_decoding_does_not_allocate() {
    // Line protocol: three events per line, from buffers reused line after line.
    for (format, row, per_row) in [
        (
            Format::Influx,
            "cpu,host=web\\ 1,cpu=cpu0 usage_idle=98.5,usage_user=1.25,usage_system=3i,note=\"x\" 1700000000000000000\n",
            3,
        ),
        (Format::Graphite, "collectd.web-1.load.load.shortterm 0.42 1700000000\n", 1),
    ] {
        let mut d = decoder(&config(format));
        let mut framer = LineFramer::new(1024);
        let mut ev = Event::new();
        let mut run = |n: usize| {
            let mut events = 0;
            for _ in 0..n {
                framer.push(row.as_bytes());
                while let Some(line) = framer.next_numbered() {
                    let (no, line) = line.unwrap();
                    if d.decode_line(line, no, &mut ev).unwrap() == Decoded::Event {
                        events += 1;
                        while d.next_event(&mut ev) {
                            events += 1;
                        }
                    }
                }
            }
            events
        };
        assert_eq!(run(3), 3 * per_row, "{format}");
        let (allocs, events) = allocations(|| run(1000));
        assert_eq!(events, 1000 * per_row);
        assert_eq!(allocs, 0, "{format}: {row}");
    }
}
