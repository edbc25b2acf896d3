//! Parse errors of the input formats, each with the position of the offending record.

use std::fmt;

/// Where a record starts in the input: a 1-based line number for the text formats (CSV,
/// JSON Lines, Graphite, line protocol), a 0-based byte offset for framed input (MessagePack,
/// datagrams), or the 1-based index of a time series in a Prometheus remote-write request.
///
/// Displays as `line 17`, `byte 1024` or `series 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// A 1-based line number.
    Line(u64),
    /// A 0-based byte offset of the frame in the stream.
    Offset(u64),
    /// The 1-based index of a time series in a remote-write request.
    Series(u64),
}

impl Position {
    /// The line number, if this is a line position.
    pub fn line(self) -> Option<u64> {
        match self {
            Position::Line(n) => Some(n),
            Position::Offset(_) | Position::Series(_) => None,
        }
    }

    /// The byte offset, if this is a frame position.
    pub fn offset(self) -> Option<u64> {
        match self {
            Position::Line(_) | Position::Series(_) => None,
            Position::Offset(n) => Some(n),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Offset(n) => write!(f, "byte {n}"),
            Position::Series(n) => write!(f, "series {n}"),
        }
    }
}

/// Why a line or frame could not be turned into an [`Event`](crate::event::Event).
///
/// Record-level errors ([`is_fatal`](ParseError::is_fatal) is `false`) reject one record; the
/// caller counts it, logs it (rate-limited) and goes on with the next one. The decoder state is
/// unchanged by a rejected record, except that a CSV header or the first JSON/MessagePack
/// record fixes the column layout.
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::io::format::{DecoderConfig, ParseError, Position};
///
/// let mut decoder = DecoderConfig::default().build()?;
/// let mut event = Event::new();
/// decoder.decode_line(b"1,2,3", 16, &mut event)?;
/// let err = decoder.decode_line(b"4,5", 17, &mut event).unwrap_err();
/// assert_eq!(err.to_string(), "line 17: expected 3 fields, got 2");
/// assert!(matches!(err, ParseError::Arity { pos: Position::Line(17), expected: 3, got: 2 }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The record is not valid CSV/JSON/MessagePack, or has the wrong shape (an object where an
    /// array is expected, a nested value where a scalar is expected, ...).
    #[error("{pos}: malformed record: {reason}")]
    Malformed {
        /// Where the record starts.
        pos: Position,
        /// What is wrong, as precisely as the underlying parser says.
        reason: String,
    },
    /// The record has a different number of fields than the header (or the first record).
    #[error("{pos}: expected {expected} fields, got {got}")]
    Arity {
        /// Where the record starts.
        pos: Position,
        /// The number of fields of the header or first record.
        expected: usize,
        /// The number of fields of this record.
        got: usize,
    },
    /// A selected field holds a NaN or infinite number (always rejected, under any
    /// [`Missing`](super::Missing) policy).
    #[error("{pos}: column `{column}`: non-finite number")]
    NonFinite {
        /// Where the record starts.
        pos: Position,
        /// The column's name (or 0-based index).
        column: String,
    },
    /// A selected field is missing (empty, `NA`, `N/A`, `null`, or absent) and the policy is
    /// [`Missing::Skip`](super::Missing::Skip), or it is [`Missing::Hold`](super::Missing::Hold)
    /// but the column has no earlier value to hold. A missing time is always this error.
    #[error("{pos}: column `{column}`: missing value")]
    Missing {
        /// Where the record starts.
        pos: Position,
        /// The column's name (or 0-based index).
        column: String,
    },
    /// A selected field is neither a number nor a missing-value marker.
    #[error("{pos}: column `{column}`: not a number: `{value}`")]
    NotANumber {
        /// Where the record starts.
        pos: Position,
        /// The column's name (or 0-based index).
        column: String,
        /// The offending text, cut to 64 bytes.
        value: String,
    },
    /// A text record is not valid UTF-8.
    #[error("{pos}: invalid UTF-8 at byte {byte} of the record")]
    NotUtf8 {
        /// Where the record starts.
        pos: Position,
        /// 0-based offset of the first invalid byte within the line or frame.
        byte: usize,
    },
    /// A line is longer than the configured limit; it was discarded without being buffered.
    #[error("{pos}: line longer than {limit} bytes")]
    TooLong {
        /// Where the line starts.
        pos: Position,
        /// The limit, in bytes, not counting the line terminator.
        limit: usize,
    },
    /// A column selector names a column that the header (or first record) does not have.
    #[error("unknown column `{name}`; the input has: [{}]", header.join(", "))]
    UnknownColumn {
        /// The selector as given.
        name: String,
        /// The columns the input has (names, or 0-based indices when it has no header).
        header: Vec<String>,
    },
    /// The same column is selected twice for the same role.
    #[error("column `{name}` is selected twice")]
    DuplicateColumn {
        /// The selector as given.
        name: String,
    },
    /// The column selection leaves no input and no target column.
    #[error("no input or target column selected; the input has: [{}]", header.join(", "))]
    NoColumns {
        /// The columns the input has (names, or 0-based indices when it has no header).
        header: Vec<String>,
    },
    /// A MessagePack frame is larger than the configured limit; it was discarded without being
    /// buffered.
    #[error("byte {offset}: frame of at least {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Stream offset of the frame's first byte.
        offset: u64,
        /// The frame's length as far as known (a lower bound), in bytes.
        len: u64,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The time field is neither a number nor one of the accepted ISO-8601 forms.
    #[error("{pos}: bad timestamp `{value}`")]
    BadTimestamp {
        /// Where the record starts.
        pos: Position,
        /// The offending text, cut to 64 bytes.
        value: String,
    },
}

impl ParseError {
    /// Where the offending record starts, when the error concerns one record.
    pub fn position(&self) -> Option<Position> {
        match self {
            ParseError::Malformed { pos, .. }
            | ParseError::Arity { pos, .. }
            | ParseError::NonFinite { pos, .. }
            | ParseError::Missing { pos, .. }
            | ParseError::NotANumber { pos, .. }
            | ParseError::NotUtf8 { pos, .. }
            | ParseError::TooLong { pos, .. }
            | ParseError::BadTimestamp { pos, .. } => Some(*pos),
            ParseError::FrameTooLarge { offset, .. } => Some(Position::Offset(*offset)),
            ParseError::UnknownColumn { .. }
            | ParseError::DuplicateColumn { .. }
            | ParseError::NoColumns { .. } => None,
        }
    }

    /// The error's kind as a short name, for counting rejected input by reason (the `reason`
    /// label of `tbptt_rejected_total` and the summary's `rejected_by_reason`): `malformed`,
    /// `arity`, `non_finite`, `missing`, `not_a_number`, `not_utf8`, `too_long`,
    /// `frame_too_large`, `bad_timestamp`, `unknown_column`, `duplicate_column` or
    /// `no_columns`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Malformed { .. } => "malformed",
            ParseError::Arity { .. } => "arity",
            ParseError::NonFinite { .. } => "non_finite",
            ParseError::Missing { .. } => "missing",
            ParseError::NotANumber { .. } => "not_a_number",
            ParseError::NotUtf8 { .. } => "not_utf8",
            ParseError::TooLong { .. } => "too_long",
            ParseError::FrameTooLarge { .. } => "frame_too_large",
            ParseError::BadTimestamp { .. } => "bad_timestamp",
            ParseError::UnknownColumn { .. } => "unknown_column",
            ParseError::DuplicateColumn { .. } => "duplicate_column",
            ParseError::NoColumns { .. } => "no_columns",
        }
    }

    /// Whether the error concerns the configuration rather than one record, so that every
    /// further record would fail the same way ([`UnknownColumn`](ParseError::UnknownColumn),
    /// [`DuplicateColumn`](ParseError::DuplicateColumn), [`NoColumns`](ParseError::NoColumns)).
    /// A source should stop on these instead of skipping.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ParseError::UnknownColumn { .. }
                | ParseError::DuplicateColumn { .. }
                | ParseError::NoColumns { .. }
        )
    }
}

/// Cuts `s` to at most 64 bytes (on a char boundary) for an error message.
pub(crate) fn snippet(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", s.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_position() {
        let e = ParseError::Arity {
            pos: Position::Line(17),
            expected: 3,
            got: 2,
        };
        assert_eq!(e.to_string(), "line 17: expected 3 fields, got 2");
        assert_eq!(e.reason(), "arity");
        let e = ParseError::Malformed {
            pos: Position::Offset(1024),
            reason: "x".into(),
        };
        assert_eq!(e.to_string(), "byte 1024: malformed record: x");
        let e = ParseError::UnknownColumn {
            name: "z".into(),
            header: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.to_string(), "unknown column `z`; the input has: [a, b]");
        assert!(e.is_fatal());
        assert_eq!(e.position(), None);
    }

    #[test]
    fn snippet_cuts_on_char_boundary() {
        let s = "é".repeat(40); // 80 bytes
        let cut = snippet(&s);
        assert!(cut.ends_with("..."));
        assert_eq!(cut.len(), 64 + 3);
        assert_eq!(snippet("short"), "short");
    }
}
