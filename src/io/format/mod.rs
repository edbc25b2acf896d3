//! Input formats: bytes → [`Event`].
//!
//! # Brief overview
//!
//! - [`Format`]: CSV, JSON Lines, MessagePack, Graphite plaintext or InfluxDB line protocol.
//! - [`ColumnSpec`]: which columns are inputs, targets, time and key ([`Selector`]s by name
//!   or 0-based index).
//! - [`DecoderConfig`] → [`Decoder`]: decodes one line ([`Decoder::decode_line`]) or one
//!   frame ([`Decoder::decode_frame`]) into a caller-owned [`Event`], reporting whether it
//!   was an event, a header or a line to skip ([`Decoded`]).
//! - [`LineFramer`] and [`MsgPackFramer`]: cut a chunked byte stream into lines or frames,
//!   with a size limit enforced before buffering.
//! - [`Reader`]: the framer and decoder over any `io::Read`, one event at a time, for
//!   files and other blocking input (the async sources use the same stack).
//! - [`ParseError`]: every error names the line (text) or byte offset (frames) of its record.
//! - [`GraphiteDecoder`], [`InfluxDecoder`] and [`RemoteWriteDecoder`]: the monitoring
//!   protocols, whose events are keyed series of one value each. A line-protocol line or a
//!   remote-write request holds several events: the decoder fills the first and hands out the
//!   others through [`Decoder::next_event`] (or [`RemoteWriteDecoder::next_event`]) from
//!   buffers it reuses. What they skip by design (string and boolean fields, stale markers) is
//!   counted ([`Decoder::take_skipped`]).
//! - [`Missing`]: what an empty / `NA` / `null` field does: reject the record or hold the
//!   column's last value.
//!
//! Data flows: chunk → framer → line/frame → decoder → `&mut Event`. After the first records
//! (header, layout) nothing is allocated per event.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::{Decoded, DecoderConfig, Missing};
//!
//! let config = DecoderConfig { missing: Missing::Hold, ..Default::default() };
//! let mut decoder = config.build()?;
//! let mut framer = config.line_framer();
//! let mut event = Event::new();
//! let mut seen = Vec::new();
//! let chunks = ["week_start,co2_ppm\n1958-03-29,31", "6.1\n1958-04-05,\n1958-04-12,317.6"];
//! for chunk in chunks.map(Some).into_iter().chain([None]) {
//!     match chunk {
//!         Some(bytes) => framer.push(bytes.as_bytes()),
//!         None => framer.finish(), // the last line has no newline
//!     }
//!     while let Some(line) = framer.next_numbered() {
//!         let (line_no, line) = line?;
//!         if decoder.decode_line(line, line_no, &mut event)? == Decoded::Event {
//!             seen.push((event.time.unwrap_or_default(), event.values[0]));
//!         }
//!     }
//! }
//! assert_eq!(seen, [(-371174400.0, 316.1), (-370569600.0, 316.1), (-369964800.0, 317.6)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::event::Event;

mod columns;
pub mod csv;
mod error;
mod fill;
mod framer;
pub mod graphite;
pub mod influx;
pub mod jsonl;
mod layout;
mod metric;
pub mod msgpack;
mod reader;
pub mod remote_write;
mod spec;
mod time;

pub use self::columns::Columns;
pub use self::csv::CsvDecoder;
pub use self::error::{ParseError, Position};
pub use self::framer::LineFramer;
pub use self::graphite::GraphiteDecoder;
pub use self::influx::{InfluxDecoder, Precision, Skipped, UnknownPrecision};
pub use self::jsonl::JsonLinesDecoder;
pub use self::metric::MAX_LABELS;
pub use self::msgpack::{encode_event, MsgPackDecoder, MsgPackFramer};
pub use self::reader::{LoadError, ReadError, Reader};
pub use self::remote_write::{RemoteWriteDecoder, RemoteWriteError};
pub use self::spec::{ColumnSpec, Selector, SelectorError};
pub use self::time::{parse_time, IsoStyle, TimeStyle, TimeUnit};

/// The wire format of an input stream.
///
/// Parses from `csv`, `jsonl` / `json` / `ndjson`, `msgpack` / `mpk`, `graphite`,
/// `influx` / `line-protocol` (case-insensitive); displays as `csv`, `jsonl`, `msgpack`,
/// `graphite`, `influx`.
///
/// # Example
/// ```
/// use tbptt::io::format::Format;
///
/// assert_eq!("json".parse::<Format>()?, Format::JsonLines);
/// assert_eq!(Format::MsgPack.to_string(), "msgpack");
/// assert!("xml".parse::<Format>().is_err());
/// # Ok::<(), tbptt::io::format::UnknownFormat>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma- (or tab-, semicolon-) separated values, one record per line.
    #[default]
    Csv,
    /// One JSON array or object per line.
    #[serde(rename = "jsonl", alias = "json", alias = "ndjson")]
    JsonLines,
    /// A stream of MessagePack values, one record each.
    #[serde(alias = "mpk")]
    MsgPack,
    /// Graphite plaintext, `path value [timestamp]` per line; the path is the key
    /// ([`graphite`]).
    Graphite,
    /// InfluxDB line protocol; each numeric field of a line is one keyed event ([`influx`]).
    #[serde(alias = "line-protocol")]
    Influx,
}

impl Format {
    /// Whether records are lines (CSV, JSON Lines) rather than binary frames (MessagePack).
    pub fn is_line_based(self) -> bool {
        !matches!(self, Format::MsgPack)
    }

    /// Whether events carry their own series key (Graphite paths, line-protocol measurements
    /// and tags), so that column selection does not apply.
    pub fn is_keyed(self) -> bool {
        matches!(self, Format::Graphite | Format::Influx)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
            Format::MsgPack => "msgpack",
            Format::Graphite => "graphite",
            Format::Influx => "influx",
        })
    }
}

/// A format name that [`Format::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown format `{0}`; expected csv, jsonl (json), msgpack (mpk), graphite or influx \
     (line-protocol)"
)]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// # Errors
    /// [`UnknownFormat`] for anything but the names listed on [`Format`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "jsonl" | "json" | "ndjson" => Ok(Format::JsonLines),
            "msgpack" | "mpk" => Ok(Format::MsgPack),
            "graphite" => Ok(Format::Graphite),
            "influx" | "line-protocol" => Ok(Format::Influx),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// What to do with a missing value: an empty field, `NA`, `N/A`, `null`, `NULL`, JSON `null`,
/// or a selected field absent from an object. (A literal NaN or infinity is not missing: it is
/// always rejected as [`ParseError::NonFinite`].)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Reject the record with [`ParseError::Missing`]; the caller counts and skips it.
    #[default]
    Skip,
    /// Reuse the column's last accepted value. A column with no earlier value still gives
    /// [`ParseError::Missing`]. Values of rejected records are not remembered.
    Hold,
}

/// What a successfully decoded line was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoded {
    /// The output event was filled.
    Event,
    /// The line was a CSV header; it fixed the column names. The event is untouched.
    Header,
    /// A blank line or a comment (first non-blank character `#`). The event is untouched.
    Skip,
}

/// Settings of a [`Decoder`].
///
/// # Example
/// ```
/// use tbptt::io::format::{DecoderConfig, Format};
///
/// let config: DecoderConfig = serde_json::from_str(r#"{"format": "jsonl", "missing": "hold"}"#)?;
/// assert_eq!(config.format, Format::JsonLines);
/// assert_eq!(config.max_line_len, 1 << 20);
/// let decoder = config.build()?;
/// assert_eq!(decoder.format(), Format::JsonLines);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderConfig {
    /// The wire format. Default: [`Format::Csv`].
    pub format: Format,
    /// Column selection. Default: all columns are inputs, a timestamp column is the time.
    pub columns: ColumnSpec,
    /// Missing-value policy. Default: [`Missing::Skip`].
    pub missing: Missing,
    /// Longest accepted line (CSV, JSON Lines), in bytes, not counting `\r\n`.
    /// Default: 1 MiB (1048576).
    pub max_line_len: usize,
    /// Largest accepted MessagePack frame, in bytes. Default: 1 MiB (1048576).
    pub max_frame_len: usize,
    /// CSV field delimiter, one ASCII character such as `,`, `\t` or `;`. Default: `,`.
    pub delimiter: char,
    /// Whether the first CSV line is a header: `Some(true)`, `Some(false)`, or `None` to
    /// detect it (a selected field that is not a number, missing marker or timestamp).
    /// Default: `None`.
    pub header: Option<bool>,
    /// The unit of InfluxDB line-protocol timestamps. Default: [`Precision::Nanos`].
    pub precision: Precision,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            format: Format::Csv,
            columns: ColumnSpec::default(),
            missing: Missing::Skip,
            max_line_len: 1 << 20,
            max_frame_len: 1 << 20,
            delimiter: ',',
            header: None,
            precision: Precision::Nanos,
        }
    }
}

impl DecoderConfig {
    /// Builds the decoder for [`format`](DecoderConfig::format).
    ///
    /// # Errors
    /// [`crate::Error::Config`] if `max_line_len` or `max_frame_len` is 0, the delimiter is
    /// not a single-byte ASCII character other than `"`, `#`, `\r` and `\n`, or columns are
    /// selected for a format whose events name their own series ([`Format::is_keyed`]).
    pub fn build(&self) -> crate::Result<Decoder> {
        if self.max_line_len == 0 {
            return Err(crate::Error::config(
                "max_line_len",
                "must be at least 1 byte",
            ));
        }
        if self.max_frame_len == 0 {
            return Err(crate::Error::config(
                "max_frame_len",
                "must be at least 1 byte",
            ));
        }
        let delimiter = u8::try_from(self.delimiter)
            .ok()
            .filter(|d| d.is_ascii() && !matches!(d, b'"' | b'#' | b'\r' | b'\n'))
            .ok_or_else(|| {
                crate::Error::config(
                    "delimiter",
                    format!(
                        "{:?} is not usable; use an ASCII character such as ',', '\\t' or ';'",
                        self.delimiter
                    ),
                )
            })?;
        if self.format.is_keyed() {
            let c = &self.columns;
            if !c.inputs.is_empty() || !c.targets.is_empty() || c.time.is_some() || c.key.is_some()
            {
                return Err(crate::Error::config(
                    "columns",
                    format!(
                        "{} input names its own series, values and times; \
                         columns, targets, time and key cannot be chosen",
                        self.format
                    ),
                ));
            }
        }
        let spec = self.columns.clone();
        Ok(match self.format {
            Format::Csv => Decoder::Csv(CsvDecoder::new(
                spec,
                self.missing,
                self.max_line_len,
                delimiter,
                self.header,
            )),
            Format::JsonLines => {
                Decoder::JsonLines(JsonLinesDecoder::new(spec, self.missing, self.max_line_len))
            }
            Format::MsgPack => {
                Decoder::MsgPack(MsgPackDecoder::new(spec, self.missing, self.max_frame_len))
            }
            Format::Graphite => Decoder::Graphite(GraphiteDecoder::new(self.max_line_len)),
            Format::Influx => {
                Decoder::Influx(InfluxDecoder::new(self.max_line_len, self.precision))
            }
        })
    }

    /// A [`LineFramer`] with this config's `max_line_len`.
    pub fn line_framer(&self) -> LineFramer {
        LineFramer::new(self.max_line_len)
    }

    /// A [`MsgPackFramer`] with this config's `max_frame_len`.
    pub fn msgpack_framer(&self) -> MsgPackFramer {
        MsgPackFramer::new(self.max_frame_len)
    }
}

/// A decoder for one input stream, of any [`Format`]. It keeps the stream's state: the CSV
/// header, the column layout fixed by the first record, and the held values of
/// [`Missing::Hold`]; use one decoder per stream.
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::io::format::{Decoded, DecoderConfig, Format};
///
/// let mut decoder = DecoderConfig { format: Format::JsonLines, ..Default::default() }.build()?;
/// let mut event = Event::new();
/// assert_eq!(decoder.decode_line(b"[1, 2.5]", 1, &mut event)?, Decoded::Event);
/// assert_eq!(event.values, [1.0, 2.5]);
/// let err = decoder.decode_line(b"[1, null]", 2, &mut event).unwrap_err();
/// assert_eq!(err.to_string(), "line 2: column `1`: missing value");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum Decoder {
    /// CSV lines.
    Csv(CsvDecoder),
    /// JSON Lines.
    JsonLines(JsonLinesDecoder),
    /// MessagePack frames.
    MsgPack(MsgPackDecoder),
    /// Graphite plaintext lines.
    Graphite(GraphiteDecoder),
    /// InfluxDB line protocol.
    Influx(InfluxDecoder),
}

impl Decoder {
    /// The format this decoder reads.
    pub fn format(&self) -> Format {
        match self {
            Decoder::Csv(_) => Format::Csv,
            Decoder::JsonLines(_) => Format::JsonLines,
            Decoder::MsgPack(_) => Format::MsgPack,
            Decoder::Graphite(_) => Format::Graphite,
            Decoder::Influx(_) => Format::Influx,
        }
    }

    /// Moves the next event of the last decoded record into `out`, for records that hold
    /// several (a line-protocol line with several numeric fields); `false` when none is left.
    /// Call it after each [`Decoded::Event`] until it returns `false`, before decoding the
    /// next record (which drops what was left).
    pub fn next_event(&mut self, out: &mut Event) -> bool {
        match self {
            Decoder::Influx(d) => d.next_event(out),
            _ => false,
        }
    }

    /// Takes the counts of values skipped by design since the last call (string and boolean
    /// line-protocol fields, Graphite's `nan`), leaving 0.
    pub fn take_skipped(&mut self) -> Skipped {
        match self {
            Decoder::Influx(d) => Skipped {
                fields: d.take_skipped(),
                ..Skipped::default()
            },
            Decoder::Graphite(d) => Skipped {
                non_finite: d.take_non_finite(),
                ..Skipped::default()
            },
            _ => Skipped::default(),
        }
    }

    /// The CSV header's names, once a header line was consumed (`None` before, and for the
    /// other formats).
    pub fn header(&self) -> Option<&[String]> {
        match self {
            Decoder::Csv(d) => d.header(),
            _ => None,
        }
    }

    /// The input's columns, once the first record has fixed them (`None` before).
    pub fn columns(&self) -> Option<Columns> {
        let layout = match self {
            Decoder::Csv(d) => d.layout.as_ref(),
            Decoder::JsonLines(d) => d.state.layout.as_ref(),
            Decoder::MsgPack(d) => d.state.layout.as_ref(),
            // One value per series, named by its key: no columns to name.
            Decoder::Graphite(_) | Decoder::Influx(_) => None,
        };
        layout.map(Columns::of)
    }

    /// Decodes line number `line_no` (1-based; the line without its `\n`, a trailing `\r` is
    /// ignored) into `out`, which is cleared first when an event is decoded.
    ///
    /// # Errors
    /// A [`ParseError`] naming `line_no`. Record-level errors reject this line only; see
    /// [`ParseError::is_fatal`] for the others. MessagePack is not line-based and always
    /// gives [`ParseError::Malformed`] here; use [`decode_frame`](Decoder::decode_frame).
    pub fn decode_line(
        &mut self,
        line: &[u8],
        line_no: u64,
        out: &mut Event,
    ) -> Result<Decoded, ParseError> {
        match self {
            Decoder::Csv(d) => d.decode_line(line, line_no, out),
            Decoder::JsonLines(d) => d.decode_line(line, line_no, out),
            Decoder::Graphite(d) => d.decode_line(line, line_no, out),
            Decoder::Influx(d) => d.decode_line(line, line_no, out),
            Decoder::MsgPack(_) => Err(ParseError::Malformed {
                pos: Position::Line(line_no),
                reason: "MessagePack is a binary format, not lines; decode frames".into(),
            }),
        }
    }

    /// Decodes one frame found at stream byte `offset` into `out`: a MessagePack value, or
    /// for CSV and JSON Lines one line (a datagram, say; a trailing `\n` or `\r\n` is
    /// ignored).
    ///
    /// # Errors
    /// A [`ParseError`] naming `offset`, as for [`decode_line`](Decoder::decode_line), plus
    /// [`ParseError::FrameTooLarge`] for MessagePack.
    pub fn decode_frame(
        &mut self,
        frame: &[u8],
        offset: u64,
        out: &mut Event,
    ) -> Result<Decoded, ParseError> {
        let pos = Position::Offset(offset);
        let line = frame.strip_suffix(b"\n").unwrap_or(frame);
        match self {
            Decoder::Csv(d) => d.decode_at(line, pos, out),
            Decoder::JsonLines(d) => d.decode_at(line, pos, out),
            Decoder::Graphite(d) => d.decode_at(line, pos, out),
            Decoder::Influx(d) => d.decode_at(line, pos, out),
            Decoder::MsgPack(d) => d.decode_frame(frame, offset, out),
        }
    }
}

/// The common start of text decoding: strips a trailing `\r` and a UTF-8 byte-order mark,
/// enforces the length limit, skips blank and comment lines, and checks UTF-8.
pub(crate) fn text_record(
    line: &[u8],
    pos: Position,
    limit: usize,
) -> Result<Option<&str>, ParseError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
    if line.len() > limit {
        return Err(ParseError::TooLong { pos, limit });
    }
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None | Some(b'#') => return Ok(None),
        Some(_) => {}
    }
    std::str::from_utf8(line)
        .map(Some)
        .map_err(|e| ParseError::NotUtf8 {
            pos,
            byte: e.valid_up_to(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        for (s, f) in [
            ("csv", Format::Csv),
            ("CSV", Format::Csv),
            ("jsonl", Format::JsonLines),
            ("json", Format::JsonLines),
            ("msgpack", Format::MsgPack),
            ("mpk", Format::MsgPack),
            ("graphite", Format::Graphite),
            ("influx", Format::Influx),
            ("line-protocol", Format::Influx),
        ] {
            assert_eq!(s.parse::<Format>(), Ok(f));
            assert_eq!(f.to_string().parse::<Format>(), Ok(f));
        }
        assert_eq!(
            "xml".parse::<Format>().unwrap_err().to_string(),
            "unknown format `xml`; expected csv, jsonl (json), msgpack (mpk), graphite or influx \
             (line-protocol)"
        );
        assert!(Format::Csv.is_line_based() && !Format::MsgPack.is_line_based());
        let f: Format = serde_json::from_str("\"mpk\"").unwrap();
        assert_eq!(f, Format::MsgPack);
        assert_eq!(
            serde_json::to_string(&Format::JsonLines).unwrap(),
            "\"jsonl\""
        );
    }

    #[test]
    fn config_validation() {
        let bad = |c: DecoderConfig| c.build().unwrap_err().to_string();
        assert!(bad(DecoderConfig {
            delimiter: '"',
            ..DecoderConfig::default()
        })
        .contains("delimiter"));
        assert!(bad(DecoderConfig {
            delimiter: 'é',
            ..DecoderConfig::default()
        })
        .contains("delimiter"));
        assert!(bad(DecoderConfig {
            max_line_len: 0,
            ..DecoderConfig::default()
        })
        .contains("max_line_len"));
        assert!(bad(DecoderConfig {
            max_frame_len: 0,
            ..DecoderConfig::default()
        })
        .contains("max_frame_len"));
        assert!(serde_json::from_str::<DecoderConfig>(r#"{"fromat": "csv"}"#).is_err());
        let c: DecoderConfig =
            serde_json::from_str(r#"{"delimiter": "\t", "columns": {"inputs": [1]}}"#).unwrap();
        assert_eq!(c.delimiter, '\t');
        assert_eq!(c.columns.inputs, [Selector::Index(1)]);
    }

    #[test]
    fn text_prelude() {
        let p = Position::Line(3);
        assert_eq!(text_record(b" # x", p, 10), Ok(None));
        assert_eq!(text_record(b"\r", p, 10), Ok(None));
        assert_eq!(text_record(b"1,2\r", p, 3), Ok(Some("1,2")));
        assert_eq!(
            text_record(b"1,2,", p, 3),
            Err(ParseError::TooLong { pos: p, limit: 3 })
        );
        assert_eq!(
            text_record(b"a\xc3", p, 10),
            Err(ParseError::NotUtf8 { pos: p, byte: 1 })
        );
    }
}
