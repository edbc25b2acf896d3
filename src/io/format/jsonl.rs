//! JSON Lines: one JSON value per line.
//!
//! A record is one of
//! - an array of scalars `[1.0, 2.5, null]`: columns by position, as in a CSV row;
//! - a structured object `{"time": .., "key": "a", "values": [..], "target": [..]}` (also
//!   `"x"` for `"values"` and `"y"`/`"targets"` for `"target"`; the target may be a number);
//!   index selectors pick from `values`, named `time`/`key` selectors pick object fields;
//! - a flat object `{"ts": "2024-01-01T00:00:00Z", "cpu": 0.3, "mem": 0.5}`: each field is a
//!   column; by default the numeric fields of the first record, in their order.
//!
//! The first record fixes the shape and the columns. Numbers may also come as strings
//! (`"0.5"`); `null` and the missing-value strings (`""`, `"NA"`, ...) are missing values.
//!
//! Records are walked by serde visitors straight into the [`Event`]: no `serde_json::Value`
//! is built, and after the first record (whose field names are kept) decoding does not
//! allocate, with two exceptions that use serde_json's scratch buffer, allocated per record:
//! strings with escapes (`"a\"b"`), and containers nested two deep inside ignored fields.
//!
//! serde_json parses floats with its fast algorithm unless its `float_roundtrip` feature is
//! on; without it a few numbers with 16–17 significant digits may come out one ulp off.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::{DecoderConfig, Format};
//!
//! let mut decoder = DecoderConfig { format: Format::JsonLines, ..Default::default() }.build()?;
//! let mut event = Event::new();
//! let line = br#"{"ts": "2024-01-01T00:00:10Z", "host": "a", "cpu": 0.3, "mem": "0.5"}"#;
//! decoder.decode_line(line, 1, &mut event)?;
//! assert_eq!(event.time, Some(1704067210.0));
//! assert_eq!(event.values, [0.3, 0.5]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::de::DeserializeSeed;

use super::error::{ParseError, Position};
use super::fill::{Discover, Fill, FillState};
use super::{text_record, ColumnSpec, Decoded, Missing};
use crate::event::Event;

/// Decodes JSON Lines. Build it with [`DecoderConfig`](super::DecoderConfig).
#[derive(Debug, Clone)]
pub struct JsonLinesDecoder {
    pub(super) state: FillState,
    max_line_len: usize,
}

impl JsonLinesDecoder {
    pub(crate) fn new(spec: ColumnSpec, missing: Missing, max_line_len: usize) -> Self {
        Self {
            state: FillState::new(spec, missing),
            max_line_len,
        }
    }

    /// Decodes line number `line_no` (1-based, without its terminator) into `out`.
    ///
    /// # Errors
    /// [`ParseError::Malformed`] for invalid JSON or a record shaped unlike the first one, and
    /// the other record-level errors as for CSV; the fatal ones (see
    /// [`ParseError::is_fatal`]) come from the first record when the column selection does not
    /// fit it. On error `out` holds unspecified partial contents.
    pub fn decode_line(
        &mut self,
        line: &[u8],
        line_no: u64,
        out: &mut Event,
    ) -> Result<Decoded, ParseError> {
        self.decode_at(line, Position::Line(line_no), out)
    }

    pub(crate) fn decode_at(
        &mut self,
        line: &[u8],
        pos: Position,
        out: &mut Event,
    ) -> Result<Decoded, ParseError> {
        let Some(text) = text_record(line, pos, self.max_line_len)? else {
            return Ok(Decoded::Skip);
        };
        self.state.decode(
            pos,
            out,
            || {
                let mut de = serde_json::Deserializer::from_str(text);
                let first = Discover.deserialize(&mut de)?;
                de.end()?;
                Ok(first)
            },
            |filler| {
                let mut de = serde_json::Deserializer::from_str(text);
                Fill::top(filler).deserialize(&mut de)?;
                de.end()
            },
            |e| malformed(&e, pos),
        )?;
        Ok(Decoded::Event)
    }
}

/// serde_json's message without its own "at line 1 column 7" (the line is always 1 here).
fn malformed(e: &serde_json::Error, pos: Position) -> ParseError {
    let msg = e.to_string();
    let msg = msg
        .rsplit_once(" at line ")
        .map_or(msg.as_str(), |(m, _)| m);
    ParseError::Malformed {
        pos,
        reason: format!("{msg} at column {}", e.column()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::format::{Decoder, DecoderConfig, Format, Selector};

    fn json(spec: ColumnSpec, missing: Missing) -> Decoder {
        DecoderConfig {
            format: Format::JsonLines,
            columns: spec,
            missing,
            ..DecoderConfig::default()
        }
        .build()
        .unwrap()
    }

    fn run(d: &mut Decoder, text: &str) -> (Vec<Event>, Vec<String>) {
        let (mut evs, mut errs) = (Vec::new(), Vec::new());
        let mut ev = Event::new();
        for (i, line) in text.lines().enumerate() {
            match d.decode_line(line.as_bytes(), i as u64 + 1, &mut ev) {
                Ok(Decoded::Event) => evs.push(ev.clone()),
                Ok(_) => {}
                Err(e) => errs.push(e.to_string()),
            }
        }
        (evs, errs)
    }

    fn values(evs: &[Event]) -> Vec<Vec<f64>> {
        evs.iter().map(|e| e.values.clone()).collect()
    }

    #[test]
    fn arrays_of_numbers() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, errs) = run(
            &mut d,
            "[1.0, 2.5]\n\n# note\n[3, -4e2]\n[1]\n[1,2,3]\n{\"a\":1}",
        );
        assert_eq!(values(&evs), [[1.0, 2.5], [3.0, -400.0]]);
        assert_eq!(
            errs,
            [
                "line 5: expected 2 fields, got 1",
                "line 6: expected 2 fields, got 3",
                "line 7: malformed record: expected an array like the first record, found an object",
            ]
        );
    }

    #[test]
    fn arrays_by_index_with_target_time_and_key() {
        let spec = ColumnSpec::from_flags(Some("3"), Some("2"), Some("0"), Some("1")).unwrap();
        let mut d = json(spec, Missing::Skip);
        let (evs, errs) = run(&mut d, r#"["2022-03-20T11:00:00+01:00", "k1", 5, 6.5]"#);
        assert!(errs.is_empty(), "{errs:?}");
        let e = &evs[0];
        assert_eq!(
            (
                e.time,
                e.key.as_str(),
                e.values.as_slice(),
                e.targets.as_slice()
            ),
            (Some(1647770400.0), "k1", &[6.5][..], &[5.0][..])
        );
        // A leading timestamp string is the time by default.
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, _) = run(&mut d, r#"["1949-01", 112]"#);
        assert_eq!(
            (evs[0].time, evs[0].values.clone()),
            (Some(-662688000.0), vec![112.0])
        );
    }

    #[test]
    fn structured_objects() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, errs) = run(
            &mut d,
            concat!(
                r#"{"time": 10, "key": "a", "values": [1, 2], "target": [3]}"#,
                "\n",
                r#"{"y": 4.5, "x": [5, 6], "key": "b", "time": "1970-01-01T00:00:11Z", "extra": {"n": [1]}}"#,
                "\n",
                r#"{"time": 12, "values": [5], "target": [3]}"#,
                "\n",
                r#"{"time": 13, "values": [5, 6]}"#,
                "\n",
                r#"{"values": [5, 6], "target": 1}"#,
                "\n",
                r#"[5, 6]"#,
            ),
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(
            (
                evs[0].time,
                evs[0].key.as_str(),
                evs[0].values.as_slice(),
                evs[0].targets.as_slice()
            ),
            (Some(10.0), "a", &[1.0, 2.0][..], &[3.0][..])
        );
        // "x"/"y" are aliases only where the first record used them; here "values"/"target"
        // were fixed, so "x"/"y" are unknown fields.
        assert_eq!(
            errs,
            [
                "line 2: column `values[0]`: missing value",
                "line 3: expected 2 fields, got 1",
                "line 4: column `target[0]`: missing value",
                "line 5: column `time`: missing value",
                "line 6: malformed record: expected an object like the first record, found an array",
            ]
        );
    }

    #[test]
    fn structured_with_scalar_target_and_index_selection() {
        let spec = ColumnSpec::from_flags(Some("1"), None, None, None).unwrap();
        let mut d = json(spec, Missing::Skip);
        let (evs, errs) = run(&mut d, r#"{"x": [1, 2, 3], "y": 7}"#);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            (evs[0].values.clone(), evs[0].targets.clone()),
            (vec![2.0], vec![7.0])
        );
        let spec = ColumnSpec::from_flags(Some("cpu"), None, None, None).unwrap();
        let mut d = json(spec, Missing::Skip);
        let (_, errs) = run(&mut d, r#"{"x": [1, 2, 3]}"#);
        assert_eq!(errs, ["unknown column `cpu`; the input has: [0, 1, 2]"]);
    }

    #[test]
    fn flat_objects_default_numeric_fields_in_first_seen_order() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, errs) = run(
            &mut d,
            concat!(
                r#"{"zeta": 1, "ts": "2024-01-01", "host": "web", "alpha": 2, "ok": true}"#,
                "\n",
                r#"{"alpha": 4, "zeta": 3, "ts": "2024-01-02", "new": 9}"#,
                "\n",
                r#"{"alpha": 4, "ts": "2024-01-03"}"#,
            ),
        );
        assert_eq!(values(&evs), [[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(evs[1].time, Some(1704153600.0));
        assert_eq!(errs, ["line 3: column `zeta`: missing value"]);
    }

    #[test]
    fn flat_objects_by_name_with_key_and_hold() {
        let spec = ColumnSpec {
            inputs: vec![Selector::Name("mem".into()), Selector::Name("cpu".into())],
            targets: vec![Selector::Name("lat".into())],
            key: Some(Selector::Name("host".into())),
            ..ColumnSpec::default()
        };
        let mut d = json(spec, Missing::Hold);
        let (evs, errs) = run(
            &mut d,
            concat!(
                r#"{"host": "a", "cpu": 0.5, "mem": 0.25, "lat": 3}"#,
                "\n",
                r#"{"host": "b", "cpu": null, "mem": "NA", "lat": 4}"#,
                "\n",
                r#"{"host": "c", "cpu": 0.75, "lat": 5}"#,
            ),
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(values(&evs), [[0.25, 0.5], [0.25, 0.5], [0.25, 0.75]]);
        assert_eq!(evs[2].key, "c");
        assert_eq!(evs[2].targets, [5.0]);
    }

    #[test]
    fn key_field_detected_by_name() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, _) = run(&mut d, r#"{"key": "k\"1", "v": 2}"#);
        assert_eq!(
            (evs[0].key.as_str(), evs[0].values.as_slice()),
            ("k\"1", &[2.0][..])
        );
    }

    #[test]
    fn errors_name_their_line() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, errs) = run(
            &mut d,
            "{\"a\": 1, \"t\": 2}\n{\"a\": 1, \"t\": \"x\"}\n{\"a\": \"NaN\", \"t\": 1}\n{\"a\": 1e999}\n{\"a\": [1], \"t\": 1}\n{\"a\": 1, \"t\": 1} x\n{\"a\": 1",
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(
            errs,
            [
                "line 2: column `t`: not a number: `x`",
                "line 3: column `a`: non-finite number",
                "line 4: malformed record: number out of range at column 11",
                "line 5: malformed record: expected a number or string, found an array",
                "line 6: malformed record: trailing characters at column 18",
                "line 7: malformed record: EOF while parsing an object at column 7",
            ]
        );
        let mut ev = Event::new();
        let e = d.decode_line(b"{\"a\": \"\xff\"}", 8, &mut ev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 8: invalid UTF-8 at byte 7 of the record"
        );
        let e = d
            .decode_line(b"{\"a\": 1, \"t\": 1, \"t\": true}", 9, &mut ev)
            .unwrap_err();
        assert_eq!(e.to_string(), "line 9: column `t`: not a number: `true`");
    }

    #[test]
    fn bad_timestamp_and_scalar_record() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (_, errs) = run(
            &mut d,
            "{\"time\": 1, \"v\": 1}\n{\"time\": \"soon\", \"v\": 1}\n3",
        );
        assert_eq!(
            errs,
            [
                "line 2: bad timestamp `soon`",
                "line 3: malformed record: expected an array or an object, found a scalar",
            ]
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let (_, errs) = run(&mut d, &format!("{deep}\n{{\"a\": {deep}}}"));
        assert_eq!(errs.len(), 2);
        assert!(errs[0].starts_with("line 1: malformed record:"), "{errs:?}");
        assert!(errs[1].starts_with("line 2: malformed record:"), "{errs:?}");
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, errs) = run(
            &mut d,
            &format!("{{\"a\": 1, \"b\": {deep}}}\n{{\"a\": 2}}"),
        );
        assert_eq!(evs.len(), 2, "{errs:?}");
    }

    #[test]
    fn malformed_first_line_does_not_fix_the_layout() {
        let mut d = json(ColumnSpec::default(), Missing::Skip);
        let (evs, errs) = run(&mut d, "{oops\n[1, 2]");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("line 1: malformed record: key must be a string"),
            "{errs:?}"
        );
        assert_eq!(values(&evs), [[1.0, 2.0]]);
    }
}
