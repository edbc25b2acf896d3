//! InfluxDB line protocol: `measurement[,tag=value...] field=value[,field=value...]
//! [timestamp]`, what Telegraf, collectd's `write_influxdb_udp` and InfluxDB clients send.
//!
//! Each numeric field of a line is one event of one series, keyed as the influxdb_exporter
//! does: the metric name is `measurement_field` (the measurement alone for a field named
//! `value`), mapped into Prometheus' alphabet (other characters become `_`), and the tags are
//! its labels, in the canonical key of [`labels::canonical`](crate::io::labels::canonical):
//! `cpu,host=a,cpu=cpu0 usage_idle=98.5,usage_user=1.2` gives `cpu_usage_idle{cpu="cpu0",host="a"}`
//! and `cpu_usage_user{cpu="cpu0",host="a"}`.
//!
//! The syntax follows InfluxDB's reference:
//! - measurement names escape commas and spaces with `\`; tag keys, tag values and field keys
//!   also escape equals signs; `\\` is one backslash, and a backslash before any other
//!   character is itself;
//! - field values are floats (`1`, `-1.5e3`), signed integers (`1i`), unsigned integers
//!   (`1u`), booleans (`t`, `true`, `False`, ...) or double-quoted strings (with `\"` and `\\`
//!   escaped); strings and booleans are not series values: they are skipped and counted
//!   ([`InfluxDecoder::skipped_fields`]);
//! - the timestamp is an integer in the configured [`Precision`] (nanoseconds by default);
//!   a line without one has no time;
//! - a field named twice in a line keeps its last value; a tag named twice keeps its last.
//!
//! A line with an error anywhere is rejected whole, as InfluxDB rejects the point.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::{Decoded, Decoder, DecoderConfig, Format};
//!
//! let mut d = DecoderConfig { format: Format::Influx, ..Default::default() }.build()?;
//! let mut e = Event::new();
//! let line = br#"weather,location=us\ midwest temperature=82,humidity=71i,note="dry" 1465839830100400200"#;
//! assert_eq!(d.decode_line(line, 1, &mut e)?, Decoded::Event);
//! assert_eq!(e.key, r#"weather_temperature{location="us midwest"}"#);
//! assert_eq!((e.values.as_slice(), e.time), (&[82.0][..], Some(1465839830.1004002)));
//! assert!(d.next_event(&mut e)); // the line's second numeric field
//! assert_eq!((e.key.as_str(), e.values[0]), (r#"weather_humidity{location="us midwest"}"#, 71.0));
//! assert!(!d.next_event(&mut e));
//! assert_eq!(d.take_skipped().fields, 1); // the string field
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::snippet;
use super::metric::{key_to, push_label_name, push_metric_name, Pending, MAX_LABELS};
use super::{text_record, Decoded, ParseError, Position};
use crate::event::Event;

/// The unit of line-protocol timestamps.
///
/// Parses from `ns` (or `n`), `us` (or `u`, `µs`), `ms`, `s`, and InfluxDB 1's `m` and `h`;
/// displays as the first of each.
///
/// # Example
/// ```
/// use tbptt::io::format::Precision;
///
/// assert_eq!("u".parse::<Precision>()?, Precision::Micros);
/// assert_eq!(Precision::Nanos.to_string(), "ns");
/// assert_eq!(Precision::Millis.seconds(1_500), 1.5);
/// # Ok::<(), tbptt::io::format::UnknownPrecision>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Precision {
    /// Nanoseconds, the line protocol's default.
    #[default]
    Nanos,
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Seconds,
    /// Minutes (InfluxDB 1's `m`).
    Minutes,
    /// Hours (InfluxDB 1's `h`).
    Hours,
}

impl Precision {
    /// A timestamp of this unit in seconds since the Unix epoch.
    pub fn seconds(self, t: i64) -> f64 {
        let t = t as f64;
        match self {
            Precision::Nanos => t / 1e9,
            Precision::Micros => t / 1e6,
            Precision::Millis => t / 1e3,
            Precision::Seconds => t,
            Precision::Minutes => t * 60.0,
            Precision::Hours => t * 3600.0,
        }
    }
}

/// A precision name that [`Precision::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown timestamp precision `{0}`; expected ns, us, ms, s (or n, u, m, h)")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    /// # Errors
    /// [`UnknownPrecision`] for anything but the names listed on [`Precision`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "ns" | "n" => Precision::Nanos,
            "us" | "u" | "µs" => Precision::Micros,
            "ms" => Precision::Millis,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return Err(UnknownPrecision(s.to_owned())),
        })
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Nanos => "ns",
            Precision::Micros => "us",
            Precision::Millis => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        })
    }
}

impl TryFrom<String> for Precision {
    type Error = UnknownPrecision;
    fn try_from(s: String) -> Result<Self, UnknownPrecision> {
        s.parse()
    }
}

impl From<Precision> for String {
    fn from(p: Precision) -> Self {
        p.to_string()
    }
}

/// Values a decoder read and did not turn into events, by reason; see
/// [`Decoder::take_skipped`](super::Decoder::take_skipped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Skipped {
    /// String and boolean fields of line protocol.
    pub fields: u64,
    /// Prometheus stale markers.
    pub stale: u64,
    /// Remote-write samples not newer than the series' previous sample in the request.
    pub out_of_order: u64,
    /// Graphite values and remote-write samples that are NaN (other than stale markers) or
    /// infinite.
    pub non_finite: u64,
}

impl Skipped {
    /// The total.
    pub fn total(&self) -> u64 {
        self.fields + self.stale + self.out_of_order + self.non_finite
    }
}

/// Decodes line-protocol lines; each numeric field of a line is one event
/// ([`next_event`](InfluxDecoder::next_event) hands out the line's others).
#[derive(Debug, Clone)]
pub struct InfluxDecoder {
    max_line_len: usize,
    precision: Precision,
    /// Unescaped measurement, tag keys (as label names), tag values and field keys.
    text: String,
    raw: String,
    measurement: Range<usize>,
    tags: Vec<(Range<usize>, Range<usize>)>,
    /// Numeric fields: key in `text`, value.
    fields: Vec<(Range<usize>, f64)>,
    name: String,
    key: String,
    pending: Pending,
    skipped_fields: u64,
}

/// Where a parse stopped within a line.
struct Cursor<'a> {
    s: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
}

impl InfluxDecoder {
    /// A decoder of lines of at most `max_line_len` bytes whose timestamps are in `precision`.
    pub fn new(max_line_len: usize, precision: Precision) -> Self {
        Self {
            max_line_len,
            precision,
            text: String::new(),
            raw: String::new(),
            measurement: 0..0,
            tags: Vec::new(),
            fields: Vec::new(),
            name: String::new(),
            key: String::new(),
            pending: Pending::default(),
            skipped_fields: 0,
        }
    }

    /// The unit of timestamps.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Sets the unit of timestamps (an HTTP request's `precision` parameter).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// String and boolean fields skipped so far.
    pub fn skipped_fields(&self) -> u64 {
        self.skipped_fields
    }

    /// Takes the count of skipped fields, leaving 0.
    pub(crate) fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped_fields)
    }

    /// Decodes line `line_no` into `out` (its first numeric field); the line's further
    /// numeric fields come from [`next_event`](Self::next_event). A line whose fields are all
    /// strings or booleans is [`Decoded::Skip`].
    ///
    /// # Errors
    /// [`ParseError::Malformed`] naming the byte of the line where the syntax breaks, or a key
    /// longer than [`MAX_KEY_LEN`](crate::io::labels::MAX_KEY_LEN);
    /// [`ParseError::NotANumber`] and [`ParseError::NonFinite`] naming the field;
    /// [`ParseError::BadTimestamp`]; the errors of every text format.
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
        self.pending.clear();
        let Some(text) = text_record(line, pos, self.max_line_len)? else {
            return Ok(Decoded::Skip);
        };
        let skipped = self.skipped_fields;
        match self.parse(text, pos) {
            Ok(()) => {}
            Err(e) => {
                self.skipped_fields = skipped;
                self.pending.clear();
                return Err(e);
            }
        }
        Ok(if self.pending.pop_into(out) {
            Decoded::Event
        } else {
            Decoded::Skip
        })
    }

    /// Moves the next event of the last decoded line into `out`; `false` when none is left.
    pub fn next_event(&mut self, out: &mut Event) -> bool {
        self.pending.pop_into(out)
    }

    fn parse(&mut self, line: &str, pos: Position) -> Result<(), ParseError> {
        let malformed = |at: usize, what: &str| ParseError::Malformed {
            pos,
            reason: format!("{what} at byte {at}"),
        };
        self.text.clear();
        self.tags.clear();
        self.fields.clear();
        let mut c = Cursor {
            s: line.as_bytes(),
            at: 0,
        };
        // Measurement, up to an unescaped comma or space.
        let start = self.text.len();
        let stop = unescape(&mut c, b", ", &mut self.text);
        self.measurement = start..self.text.len();
        if self.measurement.is_empty() {
            return Err(malformed(c.at, "missing measurement"));
        }
        // Tags.
        let mut at_space = stop == Some(b' ');
        while stop.is_some() && !at_space {
            if self.tags.len() == MAX_LABELS {
                return Err(malformed(c.at, &format!("more than {MAX_LABELS} tags")));
            }
            c.at += 1; // the comma
            let key_at = c.at;
            self.raw.clear();
            match unescape(&mut c, b"=, ", &mut self.raw) {
                Some(b'=') => {}
                _ => return Err(malformed(c.at, "expected `=` after tag key")),
            }
            if self.raw.is_empty() {
                return Err(malformed(key_at, "empty tag key"));
            }
            let k0 = self.text.len();
            push_label_name(&self.raw, &mut self.text);
            let k = k0..self.text.len();
            c.at += 1; // the `=`
            let v0 = self.text.len();
            let value_at = c.at;
            let stop = unescape(&mut c, b", =", &mut self.text);
            if stop == Some(b'=') {
                return Err(malformed(c.at, "unescaped `=` in tag value"));
            }
            if self.text.len() == v0 {
                return Err(malformed(value_at, "empty tag value"));
            }
            self.tags.push((k, v0..self.text.len()));
            match stop {
                Some(b' ') => at_space = true,
                Some(_) => {}
                None => return Err(malformed(c.at, "missing fields")),
            }
        }
        if !at_space {
            return Err(malformed(c.at, "missing fields"));
        }
        skip_spaces(&mut c);
        // Fields.
        loop {
            let key_at = c.at;
            let k0 = self.text.len();
            match unescape(&mut c, b"=, ", &mut self.text) {
                Some(b'=') => {}
                _ => return Err(malformed(c.at, "expected `=` after field key")),
            }
            if self.text.len() == k0 {
                return Err(malformed(key_at, "empty field key"));
            }
            let key = k0..self.text.len();
            c.at += 1;
            let value_at = c.at;
            if c.peek() == Some(b'"') {
                skip_string(&mut c).ok_or_else(|| malformed(value_at, "unterminated string"))?;
                self.skipped_fields += 1;
            } else {
                let v0 = c.at;
                while c.peek().is_some_and(|b| b != b',' && b != b' ') {
                    c.at += 1;
                }
                let raw = line.get(v0..c.at).unwrap_or_default();
                let field = || snippet(self.text.get(key.clone()).unwrap_or_default());
                match field_value(raw) {
                    Value::Number(v) if v.is_finite() => self.fields.push((key, v)),
                    Value::Number(_) => {
                        return Err(ParseError::NonFinite {
                            pos,
                            column: field(),
                        })
                    }
                    Value::Bool => self.skipped_fields += 1,
                    Value::Empty => return Err(malformed(value_at, "missing field value")),
                    Value::Bad => {
                        return Err(ParseError::NotANumber {
                            pos,
                            column: field(),
                            value: snippet(raw),
                        })
                    }
                }
            }
            match c.peek() {
                Some(b',') => c.at += 1,
                Some(b' ') | None => break,
                Some(_) => return Err(malformed(c.at, "expected `,` or a space after a field")),
            }
        }
        // Timestamp.
        skip_spaces(&mut c);
        let rest = line.get(c.at..).unwrap_or_default().trim_end();
        let time = if rest.is_empty() {
            None
        } else {
            let t: i64 = rest.parse().map_err(|_| ParseError::BadTimestamp {
                pos,
                value: snippet(rest),
            })?;
            Some(self.precision.seconds(t))
        };
        self.queue(time, pos)
    }

    /// Queues one event per numeric field, keyed by the canonical key.
    fn queue(&mut self, time: Option<f64>, pos: Position) -> Result<(), ParseError> {
        let Self {
            text,
            measurement,
            tags,
            fields,
            name,
            key,
            pending,
            ..
        } = self;
        let mut pairs: [(&str, &str); MAX_LABELS] = [("", ""); MAX_LABELS];
        for (pair, (k, v)) in pairs.iter_mut().zip(tags.iter()) {
            *pair = (
                text.get(k.clone()).unwrap_or_default(),
                text.get(v.clone()).unwrap_or_default(),
            );
        }
        let pairs = pairs.get_mut(..tags.len()).unwrap_or_default();
        let m = text.get(measurement.clone()).unwrap_or_default();
        for (field, value) in fields.iter() {
            let field = text.get(field.clone()).unwrap_or_default();
            name.clear();
            push_metric_name(m, name);
            if field != "value" {
                name.push('_');
                push_metric_name(field, name);
            }
            key_to(name, pairs, key).map_err(|reason| ParseError::Malformed { pos, reason })?;
            match pending.find(key) {
                Some(i) => pending.set(i, *value, time),
                None => pending.push(key, *value, time),
            }
        }
        Ok(())
    }
}

fn skip_spaces(c: &mut Cursor<'_>) {
    while c.peek() == Some(b' ') {
        c.at += 1;
    }
}

/// Copies the text at `c` into `out` up to the first unescaped byte of `stops` (returned, not
/// consumed) or the end (`None`), resolving `\` before a stop byte and `\\`.
fn unescape(c: &mut Cursor<'_>, stops: &[u8], out: &mut String) -> Option<u8> {
    let start = c.at;
    let mut copied = start;
    let flush = |from: usize, to: usize, out: &mut String, s: &[u8]| {
        if let Some(chunk) = s.get(from..to).and_then(|b| std::str::from_utf8(b).ok()) {
            out.push_str(chunk);
        }
    };
    loop {
        match c.peek() {
            None => {
                flush(copied, c.at, out, c.s);
                return None;
            }
            Some(b'\\') => {
                let next = c.s.get(c.at + 1).copied();
                match next {
                    Some(n) if n == b'\\' || stops.contains(&n) => {
                        flush(copied, c.at, out, c.s);
                        c.at += 2;
                        copied = c.at - 1;
                    }
                    _ => c.at += 1,
                }
            }
            Some(b) if stops.contains(&b) => {
                flush(copied, c.at, out, c.s);
                return Some(b);
            }
            Some(_) => c.at += 1,
        }
    }
}

/// Moves past a double-quoted string at `c` (`\"` and `\\` escaped); `None` when it does not
/// end.
fn skip_string(c: &mut Cursor<'_>) -> Option<()> {
    c.at += 1;
    loop {
        match c.peek()? {
            b'\\' => c.at += 2,
            b'"' => {
                c.at += 1;
                return Some(());
            }
            _ => c.at += 1,
        }
    }
}

enum Value {
    Number(f64),
    Bool,
    Empty,
    Bad,
}

/// An unquoted field value: `1.5`, `-2i`, `3u`, a boolean.
fn field_value(raw: &str) -> Value {
    if raw.is_empty() {
        return Value::Empty;
    }
    if matches!(
        raw,
        "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
    ) {
        return Value::Bool;
    }
    let number = |digits: &str, sign: bool| {
        let d = digits.strip_prefix('-').filter(|_| sign).unwrap_or(digits);
        !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
    };
    if let Some(i) = raw.strip_suffix('i') {
        return match i.parse::<i64>() {
            Ok(v) if number(i, true) => Value::Number(v as f64),
            _ => Value::Bad,
        };
    }
    if let Some(u) = raw.strip_suffix('u') {
        return match u.parse::<u64>() {
            Ok(v) if number(u, false) => Value::Number(v as f64),
            _ => Value::Bad,
        };
    }
    match super::graphite::parse_number(raw) {
        Some(v) => Value::Number(v),
        None => Value::Bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event of one line, as (key, value, time).
    fn decode(
        d: &mut InfluxDecoder,
        line: &str,
    ) -> Result<Vec<(String, f64, Option<f64>)>, ParseError> {
        let mut e = Event::new();
        let mut got = Vec::new();
        if d.decode_line(line.as_bytes(), 3, &mut e)? == Decoded::Event {
            got.push((e.key.clone(), e.values[0], e.time));
            while d.next_event(&mut e) {
                got.push((e.key.clone(), e.values[0], e.time));
            }
        }
        Ok(got)
    }

    fn one(line: &str) -> Result<Vec<(String, f64, Option<f64>)>, ParseError> {
        decode(&mut InfluxDecoder::new(1 << 20, Precision::Nanos), line)
    }

    fn keys(line: &str) -> Vec<String> {
        one(line).unwrap().into_iter().map(|e| e.0).collect()
    }

    /// The line protocol reference's own examples (InfluxDB 1.8 "Line protocol reference" and
    /// 2.x "Line protocol", special characters).
    #[test]
    fn spec_examples_of_escaping() {
        // `weather,location=us-midwest temperature=82 1465839830100400200`
        assert_eq!(
            one("weather,location=us-midwest temperature=82 1465839830100400200").unwrap(),
            [(
                r#"weather_temperature{location="us-midwest"}"#.to_string(),
                82.0,
                Some(1_465_839_830.100_400_2)
            )]
        );
        // Spaces and commas in a measurement name: `wea\ ther` and `wea\,ther`.
        assert_eq!(keys(r"wea\,ther temperature=82"), ["wea_ther_temperature"]);
        assert_eq!(keys(r"wea\ ther temperature=82"), ["wea_ther_temperature"]);
        // An equals sign needs no escape in a measurement.
        assert_eq!(keys(r"wea=ther temperature=82"), ["wea_ther_temperature"]);
        // Tag keys and values escape spaces, commas and equals signs.
        assert_eq!(
            keys(r"weather,location\ place=us\,midwest temperature=82"),
            [r#"weather_temperature{location_place="us,midwest"}"#]
        );
        assert_eq!(
            keys(r"weather,location=us\ midwest,sea\=level=1\=2 temperature=82"),
            [r#"weather_temperature{location="us midwest",sea_level="1=2"}"#]
        );
        // Field keys escape them too.
        assert_eq!(
            keys(r"weather,location=us-midwest temp\=rature=82,temp\ high=1,temp\,low=2"),
            [
                r#"weather_temp_rature{location="us-midwest"}"#,
                r#"weather_temp_high{location="us-midwest"}"#,
                r#"weather_temp_low{location="us-midwest"}"#,
            ]
        );
        // A backslash before another character is itself; `\\` is one backslash.
        assert_eq!(
            keys(r#"m,path=C:\temp,dbl=a\\b value=1"#),
            [r#"m{dbl="a\\b",path="C:\\temp"}"#]
        );
        // Tag order does not change the key.
        assert_eq!(keys("m,b=2,a=1 value=1"), keys("m,a=1,b=2 value=1"));
    }

    #[test]
    fn quoted_string_fields_are_skipped_and_counted() {
        let mut d = InfluxDecoder::new(1 << 20, Precision::Nanos);
        // The reference's examples: `weather,location=us-midwest temperature="too warm"`,
        // and a string with an escaped quote, comma, space and equals sign.
        assert_eq!(
            decode(
                &mut d,
                r#"weather,location=us-midwest temperature="too warm""#
            )
            .unwrap(),
            []
        );
        let got = decode(
            &mut d,
            r#"weather,location=us-midwest temperature_string="too\"hot\", a=b c",temperature=82 1"#,
        )
        .unwrap();
        assert_eq!(
            got,
            [(
                r#"weather_temperature{location="us-midwest"}"#.into(),
                82.0,
                Some(1e-9)
            )]
        );
        assert_eq!(d.skipped_fields(), 2);
        // Strings with a backslash at the end: `"a\\"`.
        assert_eq!(decode(&mut d, r#"m s="a\\",value=2"#).unwrap().len(), 1);
        let err = decode(&mut d, r#"m s="never ends,value=2"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: malformed record: unterminated string at byte 4"
        );
        assert_eq!(d.take_skipped(), 3);
    }

    #[test]
    fn integers_unsigned_floats_and_booleans() {
        let mut d = InfluxDecoder::new(1 << 20, Precision::Nanos);
        let got = decode(
            &mut d,
            "m a=-12i,b=7u,c=1.5e3,d=-0.25,e=t,f=FALSE,g=True,h=1",
        )
        .unwrap();
        let values: Vec<f64> = got.iter().map(|e| e.1).collect();
        assert_eq!(values, [-12.0, 7.0, 1500.0, -0.25, 1.0]);
        assert_eq!(d.skipped_fields(), 3);
        let msg = |l: &str| one(l).unwrap_err().to_string();
        assert_eq!(msg("m a=-1u"), "line 3: column `a`: not a number: `-1u`");
        assert_eq!(msg("m a=1.5i"), "line 3: column `a`: not a number: `1.5i`");
        assert_eq!(
            msg("m a=99999999999999999999i"),
            "line 3: column `a`: not a number: `99999999999999999999i`"
        );
        assert_eq!(msg("m a=yes"), "line 3: column `a`: not a number: `yes`");
        assert_eq!(msg("m a=inf"), "line 3: column `a`: not a number: `inf`");
        assert_eq!(msg("m a=1e400"), "line 3: column `a`: non-finite number");
    }

    #[test]
    fn timestamps_in_each_precision() {
        let at = |p: Precision, line: &str| {
            decode(&mut InfluxDecoder::new(1 << 20, p), line).unwrap()[0].2
        };
        assert_eq!(
            at(Precision::Nanos, "m v=1 1700000000123456789"),
            Some(1_700_000_000.123_456_8)
        );
        assert_eq!(
            at(Precision::Micros, "m v=1 1700000000123456"),
            Some(1_700_000_000.123_456)
        );
        assert_eq!(
            at(Precision::Millis, "m v=1 1700000000123"),
            Some(1_700_000_000.123)
        );
        assert_eq!(
            at(Precision::Seconds, "m v=1 1700000000"),
            Some(1_700_000_000.0)
        );
        assert_eq!(at(Precision::Minutes, "m v=1 2"), Some(120.0));
        assert_eq!(at(Precision::Hours, "m v=1 -1"), Some(-3600.0));
        assert_eq!(at(Precision::Nanos, "m v=1"), None);
        assert_eq!(at(Precision::Nanos, "m v=1   5  "), Some(5e-9));
        assert_eq!(
            one("m v=1 12:00").unwrap_err().to_string(),
            "line 3: bad timestamp `12:00`"
        );
        assert!(one("m v=1 99999999999999999999").is_err());
    }

    #[test]
    fn the_field_named_value_is_the_measurement_and_duplicates_keep_the_last() {
        let got = one("collectd_load,host=h value=0.5,value=0.7").unwrap();
        assert_eq!(got, [(r#"collectd_load{host="h"}"#.into(), 0.7, None)]);
    }

    #[test]
    fn syntax_errors_name_the_byte() {
        let msg = |l: &str| one(l).unwrap_err().to_string();
        assert_eq!(
            msg("weather"),
            "line 3: malformed record: missing fields at byte 7"
        );
        assert_eq!(
            msg("weather,location=x"),
            "line 3: malformed record: missing fields at byte 18"
        );
        assert_eq!(
            msg(",a=b v=1"),
            "line 3: malformed record: missing measurement at byte 0"
        );
        assert_eq!(
            msg("m,a v=1"),
            "line 3: malformed record: expected `=` after tag key at byte 3"
        );
        assert_eq!(
            msg("m,=b v=1"),
            "line 3: malformed record: empty tag key at byte 2"
        );
        assert_eq!(
            msg("m,a= v=1"),
            "line 3: malformed record: empty tag value at byte 4"
        );
        assert_eq!(
            msg("m,a=b=c v=1"),
            "line 3: malformed record: unescaped `=` in tag value at byte 5"
        );
        assert_eq!(
            msg("m v"),
            "line 3: malformed record: expected `=` after field key at byte 3"
        );
        assert_eq!(
            msg("m =1"),
            "line 3: malformed record: empty field key at byte 2"
        );
        assert_eq!(
            msg("m v="),
            "line 3: malformed record: missing field value at byte 4"
        );
        assert_eq!(
            msg("m v=1,"),
            "line 3: malformed record: expected `=` after field key at byte 6"
        );
        assert_eq!(
            msg(r#"m v="x"y"#),
            "line 3: malformed record: expected `,` or a space after a field at byte 7"
        );
        let many: String = (0..=MAX_LABELS).map(|i| format!(",t{i}=x")).collect();
        assert!(msg(&format!("m{many} v=1")).contains("more than 128 tags"));
        let long = "x".repeat(1100);
        assert!(msg(&format!("m,t={long} v=1")).contains("longer than 1024 bytes"));
    }

    #[test]
    fn a_rejected_line_leaves_nothing_pending_and_counts_nothing() {
        let mut d = InfluxDecoder::new(1 << 20, Precision::Nanos);
        let mut e = Event::new();
        assert!(d.decode_line(br#"m a=1,s="x",b=oops"#, 1, &mut e).is_err());
        assert!(!d.next_event(&mut e));
        assert_eq!(d.skipped_fields(), 0);
    }

    #[test]
    fn precision_names() {
        for (s, p) in [
            ("ns", Precision::Nanos),
            ("n", Precision::Nanos),
            ("us", Precision::Micros),
            ("u", Precision::Micros),
            ("ms", Precision::Millis),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ] {
            assert_eq!(s.parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("d".parse::<Precision>().is_err());
    }
}
