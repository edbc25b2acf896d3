//! A synchronous reader of events over any `io::Read`: the framer and decoder of a
//! [`DecoderConfig`], as the async sources use them, for files and other blocking input
//! (rust-csv's `Reader<R: io::Read>` is the model).

use super::error::{ParseError, Position};
use super::{Columns, Decoded, Decoder, DecoderConfig, LineFramer, MsgPackFramer};
use crate::event::Event;
use std::io::{self, Read};

/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;

/// Why [`Reader::read_event`] gave no event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A record was rejected (it names its line or byte). Unless it
    /// [is fatal](ParseError::is_fatal), reading may go on with the next record.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The input could not be read.
    #[error("read error: {0}")]
    Io(#[source] io::Error),
}

/// Why a whole input could not be loaded (`tools::sweep::read_events`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The input is not a file or stdin.
    #[error("only a file or stdin can be loaded, not {0}")]
    NotAFile(String),
    /// The decoder configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::Error),
    /// Reading failed.
    #[error("{name}: read error: {source}")]
    Read {
        /// The input (`file PATH`, `stdin`).
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A record was rejected, with `strict` or because the error is fatal.
    #[error("{at}: {error}")]
    Rejected {
        /// The input, and the position when the error does not name one.
        at: String,
        /// What was wrong.
        #[source]
        error: ParseError,
    },
}

enum Framer {
    Lines(LineFramer),
    Frames(MsgPackFramer),
}

/// Decodes events from `R`, one record at a time, into a caller-owned [`Event`]; blank lines,
/// comments and CSV headers are consumed silently. Nothing is allocated per event once the
/// layout is fixed.
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::io::format::{DecoderConfig, Reader};
///
/// let input = "t,x\n2024-01-01T00:00:00Z,1.5\n2024-01-01T00:01:00Z,oops\n2024-01-01T00:02:00Z,2";
/// let mut reader = Reader::new(input.as_bytes(), &DecoderConfig::default())?;
/// let mut event = Event::new();
/// assert!(reader.read_event(&mut event)?);
/// assert_eq!((event.time, event.values.as_slice()), (Some(1704067200.0), &[1.5][..]));
/// let bad = reader.read_event(&mut event).unwrap_err();
/// assert!(bad.to_string().starts_with("line 3"), "{bad}");
/// assert!(reader.read_event(&mut event)?);
/// assert_eq!(event.values, [2.0]);
/// assert!(!reader.read_event(&mut event)?); // end of input
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Reader<R> {
    input: R,
    framer: Framer,
    decoder: Decoder,
    buf: Vec<u8>,
    eof: bool,
    /// The position of the last record handed out or rejected.
    position: Position,
}

impl<R> std::fmt::Debug for Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("format", &self.decoder.format())
            .field("position", &self.position)
            .field("eof", &self.eof)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Reader<R> {
    /// A reader of `input` decoded as `config` says.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an unusable configuration ([`DecoderConfig::build`]).
    pub fn new(input: R, config: &DecoderConfig) -> crate::Result<Self> {
        let decoder = config.build()?;
        let (framer, position) = if config.format.is_line_based() {
            (Framer::Lines(config.line_framer()), Position::Line(0))
        } else {
            (Framer::Frames(config.msgpack_framer()), Position::Offset(0))
        };
        Ok(Reader {
            input,
            framer,
            decoder,
            buf: vec![0; CHUNK],
            eof: false,
            position,
        })
    }

    /// The input's columns (names, and how the time is written), once the first record or
    /// header has fixed them (`None` before).
    pub fn columns(&self) -> Option<Columns> {
        self.decoder.columns()
    }

    /// The CSV header's names, once a header line was consumed (`None` before, and for the
    /// other formats).
    pub fn header(&self) -> Option<&[String]> {
        self.decoder.header()
    }

    /// The position (line or byte offset) of the last record read or rejected.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Decodes the next event into `out`: `Ok(true)` when one was read, `Ok(false)` at the end
    /// of the input.
    ///
    /// # Errors
    /// [`ReadError::Parse`] for a rejected record (call again for the next one unless it is
    /// fatal), [`ReadError::Io`] when reading fails.
    pub fn read_event(&mut self, out: &mut Event) -> Result<bool, ReadError> {
        loop {
            if let Some(result) = self.next_decoded(out) {
                match result {
                    Ok(()) => return Ok(true),
                    Err(e) => return Err(ReadError::Parse(e)),
                }
            }
            if self.eof {
                return Ok(false);
            }
            self.fill()?;
        }
    }

    /// Reads one chunk into the framer, or marks the end of the input. A MessagePack frame
    /// cut off by the end is rejected here.
    fn fill(&mut self) -> Result<(), ReadError> {
        let n = loop {
            match self.input.read(&mut self.buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::Io(e)),
            }
        };
        let chunk = self.buf.get(..n).unwrap_or_default();
        match &mut self.framer {
            Framer::Lines(f) if n == 0 => f.finish(),
            Framer::Frames(f) if n == 0 => {
                self.eof = true;
                if let Err(e) = f.finish() {
                    if let Some(p) = e.position() {
                        self.position = p;
                    }
                    return Err(ReadError::Parse(e));
                }
            }
            Framer::Lines(f) => f.push(chunk),
            Framer::Frames(f) => f.push(chunk),
        }
        self.eof |= n == 0;
        Ok(())
    }

    /// The next event or rejection among the bytes buffered; `None` when more are needed.
    fn next_decoded(&mut self, out: &mut Event) -> Option<Result<(), ParseError>> {
        if self.decoder.next_event(out) {
            return Some(Ok(()));
        }
        loop {
            let (pos, result) = match &mut self.framer {
                Framer::Lines(f) => match f.next_numbered()? {
                    Ok((n, line)) => (Position::Line(n), self.decoder.decode_line(line, n, out)),
                    Err(e) => (Position::Line(f.line_no()), Err(e)),
                },
                Framer::Frames(f) => match f.next_frame() {
                    Ok(None) => return None,
                    Ok(Some((offset, frame))) => (
                        Position::Offset(offset),
                        self.decoder.decode_frame(frame, offset, out),
                    ),
                    Err(e) => (self.position, Err(e)),
                },
            };
            match result {
                Ok(Decoded::Event) => {
                    self.position = pos;
                    return Some(Ok(()));
                }
                Ok(Decoded::Header | Decoded::Skip) => self.position = pos,
                Err(e) => {
                    self.position = e.position().unwrap_or(pos);
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::format::{encode_event, Format};

    /// Reads everything, as `(values, rejected positions)`.
    fn read_all(input: &[u8], config: &DecoderConfig) -> (Vec<Vec<f64>>, Vec<String>) {
        let mut r = Reader::new(input, config).unwrap();
        let mut ev = Event::new();
        let (mut values, mut rejected) = (Vec::new(), Vec::new());
        loop {
            match r.read_event(&mut ev) {
                Ok(true) => values.push(ev.values.clone()),
                Ok(false) => break,
                Err(ReadError::Parse(e)) => rejected.push(e.to_string()),
                Err(e) => panic!("{e}"),
            }
        }
        (values, rejected)
    }

    /// A reader that hands out one byte per read, so every line crosses chunk boundaries.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn csv_lines_rejections_and_a_last_line_without_newline() {
        let (values, rejected) =
            read_all(b"a,b\n1,2\n# note\n\n3,x\n5,6", &DecoderConfig::default());
        assert_eq!(values, [vec![1.0, 2.0], vec![5.0, 6.0]]);
        assert_eq!(rejected.len(), 1);
        assert!(rejected[0].starts_with("line 5"), "{}", rejected[0]);
    }

    #[test]
    fn chunk_boundaries_do_not_change_the_events() {
        let text = b"x\n1\n2\n3\n";
        let mut r = Reader::new(Trickle(text), &DecoderConfig::default()).unwrap();
        let mut ev = Event::new();
        let mut got = Vec::new();
        while r.read_event(&mut ev).unwrap() {
            got.push(ev.values[0]);
        }
        assert_eq!(got, [1.0, 2.0, 3.0]);
        assert_eq!(r.position(), Position::Line(4));
    }

    #[test]
    fn msgpack_frames_and_a_truncated_last_frame() {
        let mut bytes = Vec::new();
        for v in [1.0, 2.0] {
            let ev = Event {
                values: vec![v],
                ..Default::default()
            };
            encode_event(&ev, &mut bytes);
        }
        let whole = bytes.len();
        let ev = Event {
            values: vec![3.0],
            ..Default::default()
        };
        encode_event(&ev, &mut bytes);
        bytes.truncate(whole + 2);
        let config = DecoderConfig {
            format: Format::MsgPack,
            ..Default::default()
        };
        let (values, rejected) = read_all(&bytes, &config);
        assert_eq!(values, [vec![1.0], vec![2.0]]);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
    }

    #[test]
    fn read_errors_are_not_parse_errors() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut r = Reader::new(Broken, &DecoderConfig::default()).unwrap();
        let e = r.read_event(&mut Event::new()).unwrap_err();
        assert!(matches!(e, ReadError::Io(_)), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
