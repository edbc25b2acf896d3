//! Graphite's plaintext protocol: one `path value [timestamp]` per line, what carbon,
//! collectd's `write_graphite` and many agents send.
//!
//! Fields are separated by spaces or tabs. The path becomes the event's key as it is (a plain
//! key, see [`labels`](crate::io::labels)); the value is its one value; the timestamp, in
//! seconds since the Unix epoch (integer or decimal), its time. A line without a timestamp, or
//! with carbon's "now" marker `-1`, has no time. A value of `nan` or `inf` (collectd sends
//! `nan` for a rate it cannot compute yet), or one too large for a float, is no value: the
//! line is skipped and counted ([`Skipped::non_finite`](super::Skipped::non_finite)).
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::{Decoded, DecoderConfig, Format};
//!
//! let mut d = DecoderConfig { format: Format::Graphite, ..Default::default() }.build()?;
//! let mut e = Event::new();
//! assert_eq!(d.decode_line(b"host1.load.load.shortterm 0.42 1700000000", 1, &mut e)?, Decoded::Event);
//! assert_eq!((e.key.as_str(), e.values.as_slice(), e.time),
//!            ("host1.load.load.shortterm", &[0.42][..], Some(1.7e9)));
//! d.decode_line(b"servers.a.cpu 12", 2, &mut e)?;
//! assert_eq!(e.time, None);
//! let err = d.decode_line(b"servers.a.cpu twelve", 3, &mut e).unwrap_err();
//! assert_eq!(err.to_string(), "line 3: column `servers.a.cpu`: not a number: `twelve`");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::error::snippet;
use super::{text_record, Decoded, ParseError, Position};
use crate::event::Event;
use crate::io::labels::MAX_KEY_LEN;

/// Decodes Graphite plaintext lines; keeps no state between lines.
#[derive(Debug, Clone)]
pub struct GraphiteDecoder {
    max_line_len: usize,
    non_finite: u64,
}

impl GraphiteDecoder {
    /// A decoder of lines of at most `max_line_len` bytes.
    pub fn new(max_line_len: usize) -> Self {
        Self {
            max_line_len,
            non_finite: 0,
        }
    }

    /// Lines skipped so far because their value was NaN or infinite.
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    /// Takes the count of non-finite values, leaving 0.
    pub(crate) fn take_non_finite(&mut self) -> u64 {
        std::mem::take(&mut self.non_finite)
    }

    /// Decodes line `line_no` into `out`; a line whose value is NaN or infinite is
    /// [`Decoded::Skip`], and counted.
    ///
    /// # Errors
    /// [`ParseError::Malformed`] (naming the byte) for a line that is not `path value
    /// [timestamp]`, a path longer than [`MAX_KEY_LEN`] or holding `{`;
    /// [`ParseError::NotANumber`], [`ParseError::BadTimestamp`];
    /// the errors of every text format (too long, not UTF-8).
    pub fn decode_line(
        &mut self,
        line: &[u8],
        line_no: u64,
        out: &mut Event,
    ) -> Result<Decoded, ParseError> {
        self.decode_at(line, Position::Line(line_no), out)
    }

    /// As [`decode_line`](Self::decode_line), for a record at `pos`.
    ///
    /// # Errors
    /// As [`decode_line`](Self::decode_line).
    pub fn decode_at(
        &mut self,
        line: &[u8],
        pos: Position,
        out: &mut Event,
    ) -> Result<Decoded, ParseError> {
        let Some(text) = text_record(line, pos, self.max_line_len)? else {
            return Ok(Decoded::Skip);
        };
        let malformed = |reason: String| ParseError::Malformed { pos, reason };
        let mut fields = Fields::new(text);
        let (Some((_, path)), Some((_, value))) = (fields.next(), fields.next()) else {
            return Err(malformed(
                "expected `path value [timestamp]`, got one field".into(),
            ));
        };
        let time = fields.next();
        if let Some((at, extra)) = fields.next() {
            return Err(malformed(format!(
                "unexpected fourth field `{}` at byte {at}; expected `path value [timestamp]`",
                snippet(extra)
            )));
        }
        if path.len() > MAX_KEY_LEN {
            return Err(malformed(format!(
                "path of {} bytes is longer than {MAX_KEY_LEN} bytes",
                path.len()
            )));
        }
        if let Some(b) = path.find('{') {
            return Err(malformed(format!(
                "`{{` at byte {b} of the path: a Graphite path is a plain key"
            )));
        }
        let word = value.trim_start_matches(['-', '+']);
        let v = if ["nan", "inf", "infinity"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
        {
            f64::NAN
        } else {
            parse_number(value).ok_or_else(|| ParseError::NotANumber {
                pos,
                column: snippet(path),
                value: snippet(value),
            })?
        };
        let time = match time {
            None | Some((_, "-1")) => None,
            Some((_, t)) => match parse_number(t) {
                Some(t) if t.is_finite() => Some(t),
                _ => {
                    return Err(ParseError::BadTimestamp {
                        pos,
                        value: snippet(t),
                    })
                }
            },
        };
        if !v.is_finite() {
            self.non_finite += 1;
            return Ok(Decoded::Skip);
        }
        out.clear();
        out.key.push_str(path);
        out.values.push(v);
        out.time = time;
        Ok(Decoded::Event)
    }
}

/// A decimal number as carbon reads one: digits with an optional sign, point and exponent
/// (no `inf`, `nan` or hexadecimal).
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let digits = s.bytes().any(|b| b.is_ascii_digit());
    let alphabet = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !(digits && alphabet) {
        return None;
    }
    s.parse().ok()
}

/// The space- or tab-separated fields of a line, with their byte offsets.
struct Fields<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let blank = |b: u8| b == b' ' || b == b'\t';
        let bytes = self.text.as_bytes();
        while bytes.get(self.at).is_some_and(|b| blank(*b)) {
            self.at += 1;
        }
        let start = self.at;
        while bytes.get(self.at).is_some_and(|b| !blank(*b)) {
            self.at += 1;
        }
        (self.at > start).then(|| (start, self.text.get(start..self.at).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(line: &str) -> Result<(String, f64, Option<f64>), ParseError> {
        let mut d = GraphiteDecoder::new(1 << 20);
        let mut e = Event::new();
        assert_eq!(d.decode_line(line.as_bytes(), 7, &mut e)?, Decoded::Event);
        Ok((e.key.clone(), e.values[0], e.time))
    }

    /// The examples of Graphite's "Feeding in your data" page: `<metric path> <metric value>
    /// <metric timestamp>`, e.g. `local.random.diceroll 4 1699999999` (here with the `date
    /// +%s` of the page's shell example filled in).
    #[test]
    fn spec_examples_with_and_without_timestamps() {
        assert_eq!(
            decode("local.random.diceroll 4 1699999999").unwrap(),
            ("local.random.diceroll".into(), 4.0, Some(1_699_999_999.0))
        );
        assert_eq!(
            decode("foo.bar.baz 42 -1").unwrap(),
            ("foo.bar.baz".into(), 42.0, None)
        );
        assert_eq!(
            decode("foo.bar.baz\t-1.5e3").unwrap(),
            ("foo.bar.baz".into(), -1500.0, None)
        );
        assert_eq!(
            decode("  collectd.h.load.load.midterm  0.05  1700000000.5\r").unwrap(),
            (
                "collectd.h.load.load.midterm".into(),
                0.05,
                Some(1_700_000_000.5)
            )
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_what_is_wrong() {
        let msg = |l: &str| decode(l).unwrap_err().to_string();
        assert_eq!(
            msg("lonely"),
            "line 7: malformed record: expected `path value [timestamp]`, got one field"
        );
        assert_eq!(
            msg("a 1 2 3"),
            "line 7: malformed record: unexpected fourth field `3` at byte 6; expected `path value [timestamp]`"
        );
        assert_eq!(msg("a nan1 1"), "line 7: column `a`: not a number: `nan1`");
        assert_eq!(msg("a 1 yesterday"), "line 7: bad timestamp `yesterday`");
        assert!(msg("a{b=\"c\"} 1").contains("`{` at byte 1 of the path"));
        let long = format!("{} 1", "p".repeat(MAX_KEY_LEN + 1));
        assert!(msg(&long).contains("longer than 1024 bytes"));
    }

    #[test]
    fn nan_and_infinite_values_are_skipped_and_counted() {
        let mut d = GraphiteDecoder::new(100);
        let mut e = Event::new();
        for line in [
            "collectd.h.cpu-0.cpu-user nan 1700000000",
            "a -nan",
            "a INF 1",
            "a 1e999",
        ] {
            assert_eq!(
                d.decode_line(line.as_bytes(), 1, &mut e).unwrap(),
                Decoded::Skip
            );
        }
        assert_eq!(d.take_non_finite(), 4);
        assert_eq!(d.non_finite(), 0);
        assert!(d.decode_line(b"a nan yesterday", 1, &mut e).is_err());
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        let mut d = GraphiteDecoder::new(100);
        let mut e = Event::new();
        assert_eq!(d.decode_line(b"   ", 1, &mut e).unwrap(), Decoded::Skip);
        assert_eq!(d.decode_line(b"# x 1 2", 2, &mut e).unwrap(), Decoded::Skip);
    }
}
