//! CSV (and TSV, `;`-separated) lines into events.
//!
//! Fields are split by `csv-core` (quotes, doubled quotes inside quotes), one line at a time,
//! so a quoted field cannot span lines. The first non-blank line is a header when the column
//! selection uses names, when [`DecoderConfig::header`](super::DecoderConfig::header) says so,
//! or (auto) when one of its selected fields is neither a number, a missing-value marker nor a
//! timestamp. The header, or else the first row, fixes the number of fields.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::{Decoded, DecoderConfig};
//!
//! let mut decoder = DecoderConfig::default().build()?;
//! let mut event = Event::new();
//! for (n, line) in ["timestamp,value", "2014-04-01 00:05:00,\"20.5\""].iter().enumerate() {
//!     decoder.decode_line(line.as_bytes(), n as u64 + 1, &mut event)?;
//! }
//! assert_eq!(event.time, Some(1396310700.0));
//! assert_eq!(event.values, [20.5]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

use super::error::{ParseError, Position};
use super::fill::{Filler, Hold, Scalar};
use super::layout::{resolve, Auto, Kind, Layout};
use super::{text_record, ColumnSpec, Decoded, Missing, Selector};
use crate::event::Event;

/// Decodes CSV lines. Build it with [`DecoderConfig`](super::DecoderConfig).
#[derive(Debug)]
pub struct CsvDecoder {
    /// The delimiter the reader was built with (kept to rebuild it in `clone`).
    delimiter: u8,
    /// Boxed: csv-core's DFA tables make it large.
    reader: Box<Reader>,
    spec: ColumnSpec,
    missing: Missing,
    max_line_len: usize,
    header: Option<bool>,
    /// Header names once a header line was seen.
    names: Option<Vec<String>>,
    pub(super) layout: Option<Layout>,
    hold: Hold,
    /// Unescaped field bytes of the current line, and the end of each field.
    fields: Vec<u8>,
    ends: Vec<usize>,
}

impl Clone for CsvDecoder {
    /// A copy in the same state. The csv-core reader is rebuilt rather than cloned: its
    /// `Clone` copies only part of its state (csv-core 0.1.13), which breaks decoding.
    fn clone(&self) -> Self {
        let mut c = Self::new(
            self.spec.clone(),
            self.missing,
            self.max_line_len,
            self.delimiter,
            self.header,
        );
        c.names = self.names.clone();
        c.layout = self.layout.clone();
        c.hold = self.hold.clone();
        c
    }
}

impl CsvDecoder {
    pub(crate) fn new(
        spec: ColumnSpec,
        missing: Missing,
        max_line_len: usize,
        delimiter: u8,
        header: Option<bool>,
    ) -> Self {
        let reader = Box::new(
            ReaderBuilder::new()
                .delimiter(delimiter)
                .double_quote(true)
                .build(),
        );
        Self {
            delimiter,
            reader,
            spec,
            missing,
            max_line_len,
            header,
            names: None,
            layout: None,
            hold: Hold::default(),
            fields: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The header's column names, once a header line was consumed.
    pub fn header(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// Decodes line number `line_no` (1-based, without its terminator; a trailing `\r` is
    /// ignored) into `out`.
    ///
    /// # Errors
    /// The record-level [`ParseError`]s ([`Arity`](ParseError::Arity),
    /// [`NotANumber`](ParseError::NotANumber), [`Missing`](ParseError::Missing), ...) reject
    /// this line only; [`UnknownColumn`](ParseError::UnknownColumn) and the other fatal ones
    /// (see [`ParseError::is_fatal`]) mean the column selection does not fit the input.
    /// On error `out` holds unspecified partial contents.
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
        self.split(text.as_bytes());
        let n = self.ends.len();
        if self.layout.is_none() {
            if self.names.is_none() && self.is_header(pos)? {
                let mut names = Vec::with_capacity(n);
                for i in 0..n {
                    names.push(self.field(i, pos)?.trim().to_owned());
                }
                self.names = Some(names);
                return Ok(Decoded::Header);
            }
            let mut kinds = Vec::with_capacity(n);
            for i in 0..n {
                kinds.push(Kind::of_text(self.field(i, pos)?));
            }
            let auto = Auto {
                time_by_name: true,
                time_by_value: true,
                time_by_epoch: true,
                ..Auto::default()
            };
            self.layout = Some(resolve(&self.spec, self.names.as_deref(), &kinds, auto)?);
        }
        let Some(layout) = &self.layout else {
            return Ok(Decoded::Skip);
        };
        if n != layout.width {
            return Err(ParseError::Arity {
                pos,
                expected: layout.width,
                got: n,
            });
        }
        let mut filler = Filler::new(layout, out, pos);
        let mut start = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            let bytes = self.fields.get(start..end).unwrap_or_default();
            start = end;
            if layout
                .routes
                .get(i)
                .is_some_and(|r| *r == Default::default())
            {
                continue;
            }
            let s = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 {
                pos,
                byte: e.valid_up_to(),
            })?;
            filler.put_column(i, Scalar::Str(s))?;
        }
        filler.finish(&mut self.hold, self.missing)?;
        Ok(Decoded::Event)
    }

    /// Whether the first line (now in `self.fields`) is a header.
    fn is_header(&self, pos: Position) -> Result<bool, ParseError> {
        let spec = &self.spec;
        let named = |s: &Option<Selector>| matches!(s, Some(Selector::Name(_)));
        let any_named = spec
            .inputs
            .iter()
            .chain(&spec.targets)
            .any(|s| matches!(s, Selector::Name(_)))
            || named(&spec.time)
            || named(&spec.key);
        if let Some(h) = self.header {
            return Ok(h);
        }
        if any_named {
            return Ok(true);
        }
        let index = |s: &Option<Selector>| match s {
            Some(Selector::Index(i)) => Some(*i),
            _ => None,
        };
        let (time, key) = (index(&spec.time), index(&spec.key));
        let selected = |i: usize| {
            if Some(i) == time || Some(i) == key {
                return false;
            }
            if spec.inputs.is_empty() && spec.targets.is_empty() {
                return true;
            }
            spec.inputs
                .iter()
                .chain(&spec.targets)
                .any(|s| *s == Selector::Index(i))
        };
        for i in (0..self.ends.len()).filter(|&i| selected(i)) {
            if Kind::of_text(self.field(i, pos)?) == Kind::Text {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Field `i` of the current line as text.
    fn field(&self, i: usize, pos: Position) -> Result<&str, ParseError> {
        let start = match i.checked_sub(1) {
            Some(j) => self.ends.get(j).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        let bytes = self.fields.get(start..end).unwrap_or_default();
        std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 {
            pos,
            byte: e.valid_up_to(),
        })
    }

    /// Splits one line into `self.fields` / `self.ends` with csv-core.
    fn split(&mut self, line: &[u8]) {
        self.reader.reset();
        // Unescaping never lengthens a field, so the line's length always suffices; `ends`
        // is used as scratch space of its full capacity. Both keep their capacity.
        self.fields.clear();
        self.fields.resize(line.len(), 0);
        let cap = self.ends.capacity().max(8);
        self.ends.clear();
        self.ends.resize(cap, 0);
        let (mut input, mut nout, mut nends) = (line, 0, 0);
        loop {
            let was_empty = input.is_empty();
            let (res, nin, o, e) = self.reader.read_record(
                input,
                self.fields.get_mut(nout..).unwrap_or_default(),
                self.ends.get_mut(nends..).unwrap_or_default(),
            );
            input = input.get(nin..).unwrap_or_default();
            nout += o;
            nends += e;
            match res {
                // An empty input tells csv-core the line is over; it then ends the record.
                ReadRecordResult::InputEmpty if !was_empty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.fields.len().max(8);
                    self.fields.resize(len * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len().max(8);
                    self.ends.resize(len * 2, 0);
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::Record | ReadRecordResult::End => {
                    break
                }
            }
        }
        self.ends.truncate(nends);
        self.fields.truncate(nout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::format::{DecoderConfig, Format};

    fn decoder(cfg: DecoderConfig) -> CsvDecoder {
        match cfg.build().unwrap() {
            super::super::Decoder::Csv(d) => d,
            _ => unreachable!(),
        }
    }

    fn csv() -> CsvDecoder {
        decoder(DecoderConfig::default())
    }

    fn with_spec(spec: ColumnSpec) -> CsvDecoder {
        decoder(DecoderConfig {
            columns: spec,
            ..DecoderConfig::default()
        })
    }

    /// Decodes `text` line by line; returns the events and the errors (as strings).
    fn run(d: &mut CsvDecoder, text: &str) -> (Vec<Event>, Vec<String>, usize) {
        let (mut evs, mut errs, mut headers) = (Vec::new(), Vec::new(), 0);
        let mut ev = Event::new();
        for (i, line) in text.split('\n').enumerate() {
            match d.decode_line(line.as_bytes(), i as u64 + 1, &mut ev) {
                Ok(Decoded::Event) => evs.push(ev.clone()),
                Ok(Decoded::Header) => headers += 1,
                Ok(Decoded::Skip) => {}
                Err(e) => errs.push(e.to_string()),
            }
        }
        (evs, errs, headers)
    }

    fn values(evs: &[Event]) -> Vec<Vec<f64>> {
        evs.iter().map(|e| e.values.clone()).collect()
    }

    #[test]
    fn header_detected_and_timestamp_column_becomes_time() {
        let mut d = csv();
        let (evs, errs, headers) = run(
            &mut d,
            "timestamp,pace,distance\n2018-07-31 18:22:28,30.88072,0.0\n2018-07-31 18:22:33,24.263573,1.359811",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(headers, 1);
        assert_eq!(values(&evs), [[30.88072, 0.0], [24.263573, 1.359811]]);
        assert_eq!(evs[0].time, Some(1533061348.0));
        assert_eq!(evs[1].time, Some(1533061353.0));
        assert_eq!(d.header().unwrap(), ["timestamp", "pace", "distance"]);
    }

    #[test]
    fn no_header_when_first_row_is_data() {
        let mut d = csv();
        let (evs, errs, headers) = run(&mut d, "1871,1120\n1872,1160");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(headers, 0);
        assert_eq!(values(&evs), [[1871.0, 1120.0], [1872.0, 1160.0]]);
        assert_eq!(evs[0].time, None);

        // A leading timestamp does not make a header, and is the time.
        let mut d = csv();
        let (evs, _, headers) = run(&mut d, "1949-01,112\n1949-02,118");
        assert_eq!(headers, 0);
        assert_eq!(evs[0].time, Some(-662688000.0));
        assert_eq!(values(&evs), [[112.0], [118.0]]);
    }

    #[test]
    fn forced_header_setting() {
        let mut d = decoder(DecoderConfig {
            header: Some(true),
            ..DecoderConfig::default()
        });
        let (evs, _, headers) = run(&mut d, "1,2\n3,4");
        assert_eq!((headers, values(&evs)), (1, vec![vec![3.0, 4.0]]));
        let mut d = decoder(DecoderConfig {
            header: Some(false),
            ..DecoderConfig::default()
        });
        let (_, errs, headers) = run(&mut d, "a,b\n3,4");
        assert_eq!(headers, 0);
        assert_eq!(errs, ["line 1: column `0`: not a number: `a`"]);
    }

    #[test]
    fn select_by_name_and_index_with_target_time_key() {
        let text = "host,t,cpu,mem,load\nweb-1,100,0.5,0.25,3\nweb-2,101,0.75,0.5,4";
        let spec =
            ColumnSpec::from_flags(Some("mem,cpu"), Some("load"), Some("t"), Some("host")).unwrap();
        let (evs, errs, _) = run(&mut with_spec(spec), text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(values(&evs), [[0.25, 0.5], [0.5, 0.75]]);
        assert_eq!(evs[1].targets, [4.0]);
        assert_eq!(evs[1].time, Some(101.0));
        assert_eq!(evs[1].key, "web-2");

        let spec = ColumnSpec::from_flags(Some("3,2"), Some("4"), Some("1"), Some("0")).unwrap();
        let (evs2, errs, headers) = run(&mut with_spec(spec), text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(headers, 1, "selected field `mem` is not a number: header");
        assert_eq!(evs2, evs);
    }

    #[test]
    fn only_targets_chosen_makes_the_rest_inputs() {
        let spec = ColumnSpec::from_flags(None, Some("y"), None, None).unwrap();
        let (evs, errs, _) = run(&mut with_spec(spec), "a,y,b\n1,2,3");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            (evs[0].values.clone(), evs[0].targets.clone()),
            (vec![1.0, 3.0], vec![2.0])
        );
    }

    #[test]
    fn unknown_and_duplicate_columns_are_fatal() {
        let spec = ColumnSpec::from_flags(Some("cpu,disk"), None, None, None).unwrap();
        let mut d = with_spec(spec);
        let (_, errs, _) = run(&mut d, "cpu,mem\n1,2\n3,4");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0], "unknown column `disk`; the input has: [cpu, mem]");
        let spec = ColumnSpec::from_flags(Some("5"), None, None, None).unwrap();
        let mut ev = Event::new();
        let e = with_spec(spec).decode_line(b"1,2", 1, &mut ev).unwrap_err();
        assert_eq!(e.to_string(), "unknown column `5`; the input has: [0, 1]");
        assert!(e.is_fatal());
        let spec = ColumnSpec::from_flags(Some("0,0"), None, None, None).unwrap();
        let e = with_spec(spec).decode_line(b"1,2", 1, &mut ev).unwrap_err();
        assert_eq!(e.to_string(), "column `0` is selected twice");
        let e = csv().decode_line(b"2024-01-01", 1, &mut ev).unwrap_err();
        assert!(matches!(e, ParseError::NoColumns { .. }), "{e}");
    }

    #[test]
    fn quoted_fields_and_escaped_quotes() {
        let spec = ColumnSpec::from_flags(Some("v"), None, None, Some("name")).unwrap();
        let (evs, errs, _) = run(
            &mut with_spec(spec),
            "name,v\n\"a, \"\"quoted\"\" name\",\"1.5\"\n\"\",  2 ",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(evs[0].key, "a, \"quoted\" name");
        assert_eq!(values(&evs), [[1.5], [2.0]]);
        assert_eq!(evs[1].key, "");
    }

    #[test]
    fn crlf_and_bom_and_blank_and_comment_lines() {
        let mut d = csv();
        let mut ev = Event::new();
        assert_eq!(
            d.decode_line(b"\xef\xbb\xbfa,b\r", 1, &mut ev),
            Ok(Decoded::Header)
        );
        assert_eq!(d.header().unwrap(), ["a", "b"]);
        assert_eq!(d.decode_line(b"", 2, &mut ev), Ok(Decoded::Skip));
        assert_eq!(d.decode_line(b"  \t", 3, &mut ev), Ok(Decoded::Skip));
        assert_eq!(
            d.decode_line(b"# comment, 1", 4, &mut ev),
            Ok(Decoded::Skip)
        );
        assert_eq!(d.decode_line(b"1,2\r", 5, &mut ev), Ok(Decoded::Event));
        assert_eq!(ev.values, [1.0, 2.0]);
    }

    #[test]
    fn tab_and_semicolon_delimiters() {
        for (delim, text) in [('\t', "a\tb\n1\t2.5"), (';', "a;b\n1;2.5")] {
            let mut d = decoder(DecoderConfig {
                delimiter: delim,
                ..DecoderConfig::default()
            });
            let (evs, errs, _) = run(&mut d, text);
            assert!(errs.is_empty(), "{errs:?}");
            assert_eq!(values(&evs), [[1.0, 2.5]]);
        }
        let mut d = decoder(DecoderConfig {
            delimiter: ';',
            ..DecoderConfig::default()
        });
        let (evs, errs, _) = run(&mut d, "a;b\n1,5;2");
        assert_eq!(evs.len(), 0);
        assert_eq!(errs, ["line 2: column `a`: not a number: `1,5`"]);
    }

    #[test]
    fn every_error_names_its_line() {
        let mut d = csv();
        let (evs, errs, _) = run(
            &mut d,
            "a,b\n1,2\n1\n1,2,3\nx,2\nNaN,1\n1,inf\n,1\n1,NA\n1,null",
        );
        assert_eq!(evs.len(), 1);
        assert_eq!(
            errs,
            [
                "line 3: expected 2 fields, got 1",
                "line 4: expected 2 fields, got 3",
                "line 5: column `a`: not a number: `x`",
                "line 6: column `a`: non-finite number",
                "line 7: column `b`: non-finite number",
                "line 8: column `a`: missing value",
                "line 9: column `b`: missing value",
                "line 10: column `b`: missing value",
            ]
        );
        let mut ev = Event::new();
        let e = d.decode_line(b"1,\xff", 11, &mut ev).unwrap_err();
        assert_eq!(
            e,
            ParseError::NotUtf8 {
                pos: Position::Line(11),
                byte: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "line 11: invalid UTF-8 at byte 2 of the record"
        );
        let long = vec![b'1'; 2_000_000];
        let e = d.decode_line(&long, 12, &mut ev).unwrap_err();
        assert_eq!(e.to_string(), "line 12: line longer than 1048576 bytes");
    }

    #[test]
    fn bad_and_missing_timestamps() {
        let spec = ColumnSpec::from_flags(None, None, Some("t"), None).unwrap();
        let mut d = with_spec(spec);
        let (evs, errs, _) = run(&mut d, "t,v\n2024-01-01,1\n2024-13-01,2\n,3\nNA,4\n5,5");
        assert_eq!(
            errs,
            [
                "line 3: bad timestamp `2024-13-01`",
                "line 4: column `t`: missing value",
                "line 5: column `t`: missing value",
            ]
        );
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1].time, Some(5.0));
    }

    #[test]
    fn missing_hold_and_skip() {
        // co2-like series with gaps.
        let text =
            "week_start,co2_ppm\n1958-03-29,316.1\n1958-05-10,\n1958-05-17,317.5\n1958-05-31,NA";
        let mut skip = csv();
        let (evs, errs, _) = run(&mut skip, text);
        assert_eq!(values(&evs), [[316.1], [317.5]]);
        assert_eq!(
            errs,
            [
                "line 3: column `co2_ppm`: missing value",
                "line 5: column `co2_ppm`: missing value"
            ]
        );
        let mut hold = decoder(DecoderConfig {
            missing: Missing::Hold,
            ..DecoderConfig::default()
        });
        let (evs, errs, _) = run(&mut hold, text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(values(&evs), [[316.1], [316.1], [317.5], [317.5]]);
        // Hold without a previous value is still an error.
        let mut hold = decoder(DecoderConfig {
            missing: Missing::Hold,
            ..DecoderConfig::default()
        });
        let (_, errs, _) = run(&mut hold, "a,b\n1,\n2,3\n,");
        assert_eq!(errs, ["line 2: column `b`: missing value"]);
    }

    #[test]
    fn rejected_row_does_not_update_held_values() {
        let mut d = decoder(DecoderConfig {
            missing: Missing::Hold,
            ..DecoderConfig::default()
        });
        let (evs, errs, _) = run(&mut d, "a,b\n1,2\n5,x\n,");
        assert_eq!(errs.len(), 1);
        assert_eq!(values(&evs), [[1.0, 2.0], [1.0, 2.0]]);
    }

    #[test]
    fn many_fields_grow_the_buffers() {
        let row: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let text = format!("{}\n{}", row.join(","), row.join(","));
        let (evs, errs, _) = run(&mut csv(), &text);
        assert!(errs.is_empty());
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1].values.len(), 100);
        assert_eq!(evs[1].values[99], 99.0);
        assert_eq!(Format::Csv.to_string(), "csv");
    }

    #[test]
    fn decode_frame_reads_one_record_at_an_offset() {
        let mut d = super::super::Decoder::Csv(csv());
        let mut ev = Event::new();
        d.decode_frame(b"1,2\n", 0, &mut ev).unwrap();
        let e = d.decode_frame(b"1\r\n", 4, &mut ev).unwrap_err();
        assert_eq!(e.to_string(), "byte 4: expected 2 fields, got 1");
    }
}

#[cfg(test)]
mod clone_tests {
    use crate::event::Event;
    use crate::io::format::{Decoded, DecoderConfig};

    #[test]
    fn a_cloned_decoder_decodes_like_the_original() {
        let mut d = DecoderConfig::default().build().unwrap();
        let mut ev = Event::new();
        assert_eq!(d.decode_line(b"a,b", 1, &mut ev).unwrap(), Decoded::Header);
        let mut c = d.clone();
        assert_eq!(c.decode_line(b"0,0", 2, &mut ev).unwrap(), Decoded::Event);
        assert_eq!(ev.values, vec![0.0, 0.0]);
        assert_eq!(
            d.decode_line(b"1,\"2\"", 2, &mut ev).unwrap(),
            Decoded::Event
        );
        assert_eq!(ev.values, vec![1.0, 2.0]);
    }
}
