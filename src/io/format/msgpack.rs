//! MessagePack frames into events, and events into MessagePack.
//!
//! A frame is one MessagePack value, shaped like a JSON Lines record (see
//! [`jsonl`](super::jsonl)): an array of scalars, a structured map
//! `{"time", "key", "values", "target"}`, or a flat map of named columns. MessagePack values
//! are self-delimiting, so a stream needs no length prefix: [`MsgPackFramer`] finds where each
//! value ends by walking its headers (without decoding it), which also lets it reject an
//! over-large frame from its declared sizes before buffering it.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::{encode_event, DecoderConfig, Format, MsgPackFramer};
//!
//! let sent = Event { time: Some(5.0), key: "a".into(), values: vec![1.5, 2.0], targets: vec![] };
//! let mut wire = Vec::new();
//! encode_event(&sent, &mut wire);
//! encode_event(&sent, &mut wire);
//!
//! let mut decoder = DecoderConfig { format: Format::MsgPack, ..Default::default() }.build()?;
//! let mut framer = MsgPackFramer::new(1 << 20);
//! let mut got = Event::new();
//! framer.push(&wire[..7]);
//! assert!(framer.next_frame()?.is_none()); // partial frame: need more
//! framer.push(&wire[7..]);
//! let mut n = 0;
//! while let Some((offset, frame)) = framer.next_frame()? {
//!     decoder.decode_frame(frame, offset, &mut got)?;
//!     assert_eq!(got, sent);
//!     n += 1;
//! }
//! assert_eq!(n, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;

use serde::de::DeserializeSeed;

use super::error::{ParseError, Position};
use super::fill::{Discover, Fill, FillState};
use super::{ColumnSpec, Decoded, Missing};
use crate::event::Event;

/// Decodes MessagePack frames. Build it with [`DecoderConfig`](super::DecoderConfig).
#[derive(Debug, Clone)]
pub struct MsgPackDecoder {
    pub(super) state: FillState,
    max_frame_len: usize,
}

impl MsgPackDecoder {
    pub(crate) fn new(spec: ColumnSpec, missing: Missing, max_frame_len: usize) -> Self {
        Self {
            state: FillState::new(spec, missing),
            max_frame_len,
        }
    }

    /// Decodes one frame, which must hold exactly one MessagePack value, found at stream byte
    /// `offset`, into `out`. Always returns [`Decoded::Event`] on success.
    ///
    /// # Errors
    /// [`ParseError::FrameTooLarge`] beyond the configured limit;
    /// [`ParseError::Malformed`] for a truncated frame, trailing bytes, invalid MessagePack or
    /// a record shaped unlike the first; the other record-level errors as for JSON Lines.
    /// On error `out` holds unspecified partial contents.
    pub fn decode_frame(
        &mut self,
        frame: &[u8],
        offset: u64,
        out: &mut Event,
    ) -> Result<Decoded, ParseError> {
        let pos = Position::Offset(offset);
        if frame.len() > self.max_frame_len {
            return Err(ParseError::FrameTooLarge {
                offset,
                len: frame.len() as u64,
                limit: self.max_frame_len,
            });
        }
        let mut scan = Scan::new();
        match scan.feed(frame, usize::MAX) {
            (used, Status::Done) if used == frame.len() => {}
            (used, Status::Done) => {
                return Err(ParseError::Malformed {
                    pos,
                    reason: format!("{} trailing bytes after the value", frame.len() - used),
                })
            }
            (_, Status::NeedMore | Status::TooLarge) => {
                return Err(ParseError::Malformed {
                    pos,
                    reason: "truncated MessagePack value".into(),
                })
            }
            (used, Status::Invalid) => {
                return Err(invalid_marker(pos, used.saturating_sub(1)));
            }
        }
        self.state.decode(
            pos,
            out,
            || Discover.deserialize(&mut deserializer(frame)),
            |filler| Fill::top(filler).deserialize(&mut deserializer(frame)),
            |e| ParseError::Malformed {
                pos,
                reason: e.to_string(),
            },
        )?;
        Ok(Decoded::Event)
    }
}

/// Records need a nesting depth of 3; ignored fields may nest deeper, up to this limit. (The
/// visitors recurse, and rmp-serde's default of 1024 levels overflows a 2 MiB thread stack in
/// debug builds.)
const MAX_DEPTH: usize = 64;

fn deserializer(
    frame: &[u8],
) -> rmp_serde::Deserializer<rmp_serde::decode::ReadRefReader<'_, [u8]>> {
    let mut de = rmp_serde::Deserializer::from_read_ref(frame);
    de.set_max_depth(MAX_DEPTH);
    de
}

fn invalid_marker(pos: Position, at: usize) -> ParseError {
    ParseError::Malformed {
        pos,
        reason: format!("invalid MessagePack marker 0xc1 at byte {at} of the frame"),
    }
}

/// Writes `event` as one MessagePack map: `{"time": f64, "key": str, "values": [f64..],
/// "target": [f64..]}`, leaving out `time` when it is `None`, `key` when empty and `target`
/// when empty. [`MsgPackDecoder`] reads it back exactly (with the default column selection).
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::io::format::encode_event;
///
/// let mut buf = Vec::new();
/// encode_event(&Event { values: vec![1.0], ..Event::default() }, &mut buf);
/// assert_eq!(buf, [0x81, 0xa6, b'v', b'a', b'l', b'u', b'e', b's', 0x91,
///                  0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
/// ```
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    let n = 1
        + usize::from(event.time.is_some())
        + usize::from(!event.key.is_empty())
        + usize::from(!event.targets.is_empty());
    out.push(0x80 | n as u8); // fixmap, n <= 4
    if let Some(t) = event.time {
        write_str(out, "time");
        write_f64(out, t);
    }
    if !event.key.is_empty() {
        write_str(out, "key");
        write_str(out, &event.key);
    }
    write_str(out, "values");
    write_f64s(out, &event.values);
    if !event.targets.is_empty() {
        write_str(out, "target");
        write_f64s(out, &event.targets);
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xd9, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xda);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        // Longer than u32::MAX is not representable; such a key is cut (never in practice).
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        out.push(0xdb);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(s.as_bytes().get(..n as usize).unwrap_or_default());
        return;
    }
    out.extend_from_slice(s.as_bytes());
}

fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_be_bytes());
}

fn write_f64s(out: &mut Vec<u8>, vs: &[f64]) {
    let n = vs.len();
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xdc);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        out.push(0xdd);
        out.extend_from_slice(&n.to_be_bytes());
    }
    for &v in vs.iter().take(u32::MAX as usize) {
        write_f64(out, v);
    }
}

/// Outcome of feeding bytes to a [`Scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// The value is complete.
    Done,
    /// All given bytes were consumed and the value is not complete.
    NeedMore,
    /// The value is known to be longer than the limit; stopped before reading past it.
    TooLarge,
    /// Byte 0xc1, which MessagePack never uses (consumed).
    Invalid,
}

/// Finds the end of one MessagePack value by walking its headers, resumable across chunks.
/// No recursion: nested arrays and maps just add to the count of values still to come.
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// Values still to read (an array of n adds n, a map of n adds 2n).
    items: u64,
    /// Payload bytes (of a str, bin, ext or number) still to skip.
    skip: u64,
    /// The header being read: marker and length bytes.
    hdr: [u8; 6],
    hdr_len: u8,
    hdr_need: u8,
    /// Bytes consumed so far.
    consumed: u64,
}

impl Scan {
    fn new() -> Self {
        Self {
            items: 1,
            skip: 0,
            hdr: [0; 6],
            hdr_len: 0,
            hdr_need: 0,
            consumed: 0,
        }
    }

    /// A lower bound of the value's total length.
    fn min_len(&self) -> u64 {
        let pending_hdr = u64::from(self.hdr_need.saturating_sub(self.hdr_len));
        self.consumed
            .saturating_add(self.skip)
            .saturating_add(pending_hdr)
            .saturating_add(self.items.saturating_sub(u64::from(self.hdr_need > 0)))
    }

    /// Consumes bytes of the value from `bytes`; returns how many and the status. Stops with
    /// [`Status::TooLarge`] as soon as the value is known to exceed `limit` bytes.
    fn feed(&mut self, bytes: &[u8], limit: usize) -> (usize, Status) {
        let limit = limit as u64;
        let mut i = 0;
        loop {
            if self.min_len() > limit {
                return (i, Status::TooLarge);
            }
            if self.skip > 0 {
                let avail = (bytes.len() - i) as u64;
                let n = self.skip.min(avail);
                i += n as usize;
                self.skip -= n;
                self.consumed += n;
                if self.skip > 0 {
                    return (i, Status::NeedMore);
                }
                continue;
            }
            if self.hdr_need > 0 && self.hdr_len < self.hdr_need {
                let Some(&b) = bytes.get(i) else {
                    return (i, Status::NeedMore);
                };
                if let Some(slot) = self.hdr.get_mut(usize::from(self.hdr_len)) {
                    *slot = b;
                }
                self.hdr_len += 1;
                i += 1;
                self.consumed += 1;
                if self.hdr_len == self.hdr_need {
                    self.header_done();
                }
                continue;
            }
            if self.items == 0 {
                return (i, Status::Done);
            }
            let Some(&m) = bytes.get(i) else {
                return (i, Status::NeedMore);
            };
            i += 1;
            self.consumed += 1;
            if m == 0xc1 {
                return (i, Status::Invalid);
            }
            let extra = header_extra(m);
            if extra == 0 {
                self.hdr[0] = m;
                self.hdr_len = 1;
                self.hdr_need = 1;
                self.header_done();
            } else {
                self.hdr[0] = m;
                self.hdr_len = 1;
                self.hdr_need = 1 + extra;
            }
        }
    }

    /// A complete header in `hdr`: count the value, add its children and payload.
    fn header_done(&mut self) {
        let [m, a, b, c, d, _] = self.hdr;
        let be16 = u64::from(u16::from_be_bytes([a, b]));
        let be32 = u64::from(u32::from_be_bytes([a, b, c, d]));
        let (children, payload) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (2 * u64::from(m & 0x0f), 0),
            0x90..=0x9f => (u64::from(m & 0x0f), 0),
            0xa0..=0xbf => (0, u64::from(m & 0x1f)),
            0xc4 | 0xd9 => (0, u64::from(a)),
            0xc5 | 0xda => (0, be16),
            0xc6 | 0xdb => (0, be32),
            // ext: length, then a type byte (in the header), then the data.
            0xc7 => (0, u64::from(a)),
            0xc8 => (0, be16),
            0xc9 => (0, be32),
            0xca => (0, 4),
            0xcb => (0, 8),
            0xcc | 0xd0 => (0, 1),
            0xcd | 0xd1 => (0, 2),
            0xce | 0xd2 => (0, 4),
            0xcf | 0xd3 => (0, 8),
            // fixext: the type byte is in the header.
            0xd4 => (0, 1),
            0xd5 => (0, 2),
            0xd6 => (0, 4),
            0xd7 => (0, 8),
            0xd8 => (0, 16),
            0xdc => (be16, 0),
            0xdd => (be32, 0),
            0xde => (2 * be16, 0),
            0xdf => (2 * be32, 0),
            // 0xc1 never reaches here.
            _ => (0, 0),
        };
        self.items = self.items.saturating_sub(1).saturating_add(children);
        self.skip = payload;
        self.hdr_len = 0;
        self.hdr_need = 0;
        self.hdr = [0; 6];
    }
}

/// Header bytes after the marker: length fields, plus the type byte of ext values.
fn header_extra(m: u8) -> u8 {
    match m {
        0xc4 | 0xd9 => 1,
        0xc5 | 0xda | 0xdc | 0xde => 2,
        0xc6 | 0xdb | 0xdd | 0xdf => 4,
        0xc7 => 2,
        0xc8 => 3,
        0xc9 => 5,
        0xd4..=0xd8 => 1,
        _ => 0,
    }
}

/// What [`MsgPackFramer::next_frame`] hands out next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A frame at `buf[start..end]`, found at stream byte `offset`.
    Frame {
        start: usize,
        end: usize,
        offset: u64,
    },
    /// A frame over the limit, dropped.
    TooLarge { offset: u64, len: u64 },
    /// Invalid marker byte at stream byte `at`; the frame so far was dropped.
    Invalid { offset: u64, at: u64 },
}

/// Cuts a MessagePack byte stream that arrives in chunks into frames (one value each), like
/// mini-redis's `Connection::parse_frame`: [`push`](MsgPackFramer::push) bytes, then take frames
/// with [`next_frame`](MsgPackFramer::next_frame) until it returns `Ok(None)` (need more).
///
/// A frame known to exceed the limit (from its declared sizes, or its length so far) is
/// dropped at once, before any byte it claims is consumed, and reported, in order, as
/// [`ParseError::FrameTooLarge`]; framing resumes at the byte after the header that
/// exceeded the limit. So a header claiming gigabytes costs that one frame, never the rest
/// of the stream (the bytes of a genuinely over-long frame are then read as further,
/// mostly rejected, frames). The byte 0xc1, which
/// MessagePack never uses, drops the frame it occurs in and is reported as
/// [`ParseError::Malformed`]; framing resumes at the next byte. The buffer is reused.
///
/// # Example
/// ```
/// use tbptt::io::format::{MsgPackFramer, ParseError};
///
/// let mut framer = MsgPackFramer::new(16);
/// framer.push(&[0x92, 0x01]); // [1, 2], incomplete
/// assert_eq!(framer.next_frame()?, None);
/// framer.push(&[0x02, 0xc4, 0xff]); // ..2] then the header of 255 bytes of binary
/// assert_eq!(framer.next_frame()?, Some((0, &[0x92, 0x01, 0x02][..])));
/// assert!(matches!(framer.next_frame(), Err(ParseError::FrameTooLarge { offset: 3, .. })));
/// # Ok::<(), ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MsgPackFramer {
    buf: Vec<u8>,
    /// First byte not yet handed out.
    start: usize,
    /// Start of the frame being scanned (in `buf`).
    frame_start: usize,
    /// Stream offset of the frame being scanned.
    frame_offset: u64,
    /// Stream offset just past the last byte pushed.
    stream_len: u64,
    scan: Scan,
    ready: VecDeque<Item>,
    limit: usize,
}

impl MsgPackFramer {
    /// A framer that accepts frames of at most `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            frame_start: 0,
            frame_offset: 0,
            stream_len: 0,
            scan: Scan::new(),
            ready: VecDeque::new(),
            limit: max_frame_len,
        }
    }

    /// The limit on frame size, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.limit
    }

    /// Bytes buffered and not yet handed out (complete frames and the partial last one).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends the next chunk of the stream.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.compact();
        while !bytes.is_empty() {
            let (used, status) = self.scan.feed(bytes, self.limit);
            let (taken, rest) = bytes.split_at(used.min(bytes.len()));
            self.buf.extend_from_slice(taken);
            self.stream_len += taken.len() as u64;
            bytes = rest;
            match status {
                Status::NeedMore => {}
                Status::Done => {
                    self.ready.push_back(Item::Frame {
                        start: self.frame_start,
                        end: self.buf.len(),
                        offset: self.frame_offset,
                    });
                    self.next_frame_starts();
                }
                Status::TooLarge => {
                    // Stop at the header that made the frame too large, without consuming
                    // the bytes it claims: a hostile length costs its own frame, not the rest
                    // of the stream. Framing resumes at the next byte.
                    self.ready.push_back(Item::TooLarge {
                        offset: self.frame_offset,
                        len: self.scan.min_len(),
                    });
                    self.buf.truncate(self.frame_start);
                    self.next_frame_starts();
                }
                Status::Invalid => {
                    self.ready.push_back(Item::Invalid {
                        offset: self.frame_offset,
                        at: self.stream_len - 1,
                    });
                    self.buf.truncate(self.frame_start);
                    self.next_frame_starts();
                }
            }
        }
    }

    /// The next complete frame and its stream offset; `Ok(None)` when more input is needed.
    ///
    /// # Errors
    /// [`ParseError::FrameTooLarge`] or [`ParseError::Malformed`] (invalid marker), once per
    /// bad frame, in its place among the frames. Keep calling after an error.
    pub fn next_frame(&mut self) -> Result<Option<(u64, &[u8])>, ParseError> {
        match self.ready.pop_front() {
            None => Ok(None),
            Some(Item::Frame { start, end, offset }) => {
                self.start = end;
                Ok(self.buf.get(start..end).map(|f| (offset, f)))
            }
            Some(Item::TooLarge { offset, len }) => Err(ParseError::FrameTooLarge {
                offset,
                len,
                limit: self.limit,
            }),
            Some(Item::Invalid { offset, at }) => Err(invalid_marker(
                Position::Offset(offset),
                (at - offset) as usize,
            )),
        }
    }

    /// Ends the input.
    ///
    /// # Errors
    /// [`ParseError::Malformed`] if a partial frame is left (it is dropped).
    pub fn finish(&mut self) -> Result<(), ParseError> {
        let partial = self.scan.consumed;
        let offset = self.frame_offset;
        self.buf.truncate(self.frame_start);
        self.next_frame_starts();
        if partial > 0 {
            return Err(ParseError::Malformed {
                pos: Position::Offset(offset),
                reason: format!("input ends inside a frame after {partial} bytes"),
            });
        }
        Ok(())
    }

    /// Forgets all buffered input and the stream offset.
    pub fn reset(&mut self) {
        *self = Self::new(self.limit);
    }

    fn next_frame_starts(&mut self) {
        self.scan = Scan::new();
        self.frame_start = self.buf.len();
        self.frame_offset = self.stream_len;
    }

    /// Moves the bytes not yet handed out to the front of the buffer.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        let n = self.start;
        self.buf.drain(..n);
        self.frame_start -= n;
        for item in &mut self.ready {
            if let Item::Frame { start, end, .. } = item {
                *start -= n;
                *end -= n;
            }
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::format::{Decoder, DecoderConfig, Format};

    fn decoder() -> Decoder {
        DecoderConfig {
            format: Format::MsgPack,
            max_frame_len: 4096,
            ..DecoderConfig::default()
        }
        .build()
        .unwrap()
    }

    fn scan_len(bytes: &[u8]) -> (usize, Status) {
        Scan::new().feed(bytes, usize::MAX)
    }

    #[test]
    fn scanner_knows_every_marker() {
        let cases: &[&[u8]] = &[
            &[0x05],
            &[0xe0],
            &[0xc0],
            &[0xc3],
            &[0xa2, b'h', b'i'],
            &[0xc4, 2, 0, 0],
            &[0xc5, 0, 1, 9],
            &[0xc6, 0, 0, 0, 1, 9],
            &[0xc7, 1, 7, 9],
            &[0xc8, 0, 1, 7, 9],
            &[0xc9, 0, 0, 0, 1, 7, 9],
            &[0xca, 0, 0, 0, 0],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xcc, 1],
            &[0xcd, 1, 2],
            &[0xce, 1, 2, 3, 4],
            &[0xcf, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0xd0, 1],
            &[0xd3, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0xd4, 7, 1],
            &[
                0xd8, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            ],
            &[0xd9, 1, b'x'],
            &[0xda, 0, 1, b'x'],
            &[0xdb, 0, 0, 0, 1, b'x'],
            &[0x92, 0x01, 0x92, 0x02, 0xa1, b'x'],
            &[0xdc, 0, 2, 1, 2],
            &[0xdd, 0, 0, 0, 1, 0xc0],
            &[0x81, 0xa1, b'k', 0x90],
            &[0xde, 0, 1, 1, 2],
            &[0xdf, 0, 0, 0, 1, 1, 2],
            &[0x80],
        ];
        for c in cases {
            assert_eq!(scan_len(c), (c.len(), Status::Done), "{c:x?}");
            // Followed by more bytes, it still stops at the end of the value.
            let mut more = c.to_vec();
            more.extend_from_slice(&[0x01, 0x02]);
            assert_eq!(scan_len(&more), (c.len(), Status::Done), "{c:x?}");
            // Every proper prefix needs more, fed whole or byte by byte.
            for cut in 0..c.len() {
                assert_eq!(
                    scan_len(&c[..cut]),
                    (cut, Status::NeedMore),
                    "{c:x?} cut {cut}"
                );
            }
            let mut s = Scan::new();
            for (i, b) in c.iter().enumerate() {
                let (used, status) = s.feed(std::slice::from_ref(b), usize::MAX);
                assert_eq!(used, 1);
                let want = if i + 1 == c.len() {
                    Status::Done
                } else {
                    Status::NeedMore
                };
                assert_eq!(status, want, "{c:x?} byte {i}");
            }
        }
        assert_eq!(scan_len(&[0x92, 0xc1]), (2, Status::Invalid));
    }

    #[test]
    fn scanner_stops_at_the_limit_from_declared_sizes() {
        let mut s = Scan::new();
        let (used, status) = s.feed(&[0xdb, 0x7f, 0xff, 0xff, 0xff, b'a'], 100);
        assert_eq!(status, Status::TooLarge);
        assert_eq!(used, 5);
        let mut s = Scan::new();
        assert_eq!(s.feed(&[0xdd, 0, 1, 0, 0], 100).1, Status::TooLarge);
        let mut s = Scan::new();
        assert_eq!(s.feed(&[0x93, 1, 2, 3], 4).1, Status::Done);
        let mut s = Scan::new();
        assert_eq!(s.feed(&[0x93, 1, 2, 3], 3).1, Status::TooLarge);
    }

    #[test]
    fn round_trip_encode_decode() {
        let mut d = decoder();
        let events = [
            Event {
                time: Some(1647770400.25),
                key: "sensor-7".into(),
                values: vec![1.5, -2.0, 1e-300],
                targets: vec![0.125],
            },
            Event {
                time: Some(-1.0),
                key: "k".repeat(40),
                values: vec![0.1, 0.2, 0.3],
                targets: vec![1e300],
            },
        ];
        let mut ev = Event::new();
        for (i, sent) in events.iter().enumerate() {
            let mut buf = Vec::new();
            encode_event(sent, &mut buf);
            assert_eq!(d.decode_frame(&buf, i as u64, &mut ev), Ok(Decoded::Event));
            assert_eq!(&ev, sent);
        }
        let mut buf = Vec::new();
        let long = Event {
            values: (0..70_000).map(f64::from).collect(),
            ..Event::default()
        };
        encode_event(&long, &mut buf);
        let mut d = DecoderConfig {
            format: Format::MsgPack,
            ..DecoderConfig::default()
        }
        .build()
        .unwrap();
        d.decode_frame(&buf, 0, &mut ev).unwrap();
        assert_eq!(ev, long);
    }

    #[test]
    fn rmp_serde_arrays_and_maps() {
        let mut d = decoder();
        let mut ev = Event::new();
        let frame = rmp_serde::to_vec(&(1u8, -2i32, 2.5f32, "4", ())).unwrap();
        let e = d.decode_frame(&frame, 0, &mut ev).unwrap_err();
        assert_eq!(e.to_string(), "byte 0: column `4`: missing value");
        let frame = rmp_serde::to_vec(&(1u8, -2i32, 2.5f32, "4", 5u64)).unwrap();
        d.decode_frame(&frame, 10, &mut ev).unwrap();
        assert_eq!(ev.values, [1.0, -2.0, 2.5, 4.0, 5.0]);
        let frame = rmp_serde::to_vec(&(1u8, f64::NAN, 2.5f32, "4", 5u64)).unwrap();
        let e = d.decode_frame(&frame, 20, &mut ev).unwrap_err();
        assert_eq!(e.to_string(), "byte 20: column `1`: non-finite number");
        let e = d.decode_frame(&[0x93, 1, 2, 3], 30, &mut ev).unwrap_err();
        assert_eq!(e.to_string(), "byte 30: expected 5 fields, got 3");

        #[derive(serde::Serialize)]
        struct Flat {
            ts: &'static str,
            cpu: f64,
            mem: f32,
        }
        let mut d = decoder();
        let frame = rmp_serde::to_vec_named(&Flat {
            ts: "2022-03-20T11:00:00+01:00",
            cpu: 0.5,
            mem: 0.25,
        })
        .unwrap();
        d.decode_frame(&frame, 0, &mut ev).unwrap();
        assert_eq!(
            (ev.time, ev.values.as_slice()),
            (Some(1647770400.0), &[0.5, 0.25][..])
        );
        let e = d.decode_frame(&[0x92, 1, 2], 7, &mut ev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 7: malformed record: expected an object like the first record, found an array"
        );
    }

    #[test]
    fn frame_errors() {
        let mut d = decoder();
        let mut ev = Event::new();
        let e = d.decode_frame(&[0x92, 1], 3, &mut ev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 3: malformed record: truncated MessagePack value"
        );
        let e = d.decode_frame(&[0x91, 1, 2], 3, &mut ev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 3: malformed record: 1 trailing bytes after the value"
        );
        let e = d.decode_frame(&[0x92, 1, 0xc1], 3, &mut ev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 3: malformed record: invalid MessagePack marker 0xc1 at byte 2 of the frame"
        );
        let e = d.decode_frame(&[0; 5000], 3, &mut ev).unwrap_err();
        assert_eq!(
            e.to_string(),
            "byte 3: frame of at least 5000 bytes exceeds the limit of 4096 bytes"
        );
        let e = d.decode_frame(&[0xa1, b'x'], 3, &mut ev).unwrap_err();
        assert!(
            e.to_string().starts_with("byte 3: malformed record:"),
            "{e}"
        );
        let e = d.decode_frame(&[0x81, 0x01, 0x02], 3, &mut ev).unwrap_err();
        assert!(
            e.to_string().starts_with("byte 3: malformed record:"),
            "{e}"
        );
        let e = d
            .decode_frame(&[0x92, 0xa1, 0xff, 1], 3, &mut ev)
            .unwrap_err();
        assert!(
            e.to_string().starts_with("byte 3: malformed record:"),
            "{e}"
        );
        let mut ev = Event::new();
        assert!(decoder().decode_line(b"[1]", 1, &mut ev).is_err());
    }

    fn frames(f: &mut MsgPackFramer) -> Vec<Result<(u64, Vec<u8>), String>> {
        let mut out = Vec::new();
        loop {
            match f.next_frame() {
                Ok(None) => return out,
                Ok(Some((o, b))) => out.push(Ok((o, b.to_vec()))),
                Err(e) => out.push(Err(e.to_string())),
            }
        }
    }

    #[test]
    fn framer_partial_frames_need_more() {
        let mut wire = Vec::new();
        let ev = Event {
            time: Some(1.0),
            key: "a".into(),
            values: vec![1.0, 2.0],
            targets: vec![3.0],
        };
        encode_event(&ev, &mut wire);
        let len = wire.len();
        encode_event(&ev, &mut wire);
        let mut f = MsgPackFramer::new(1024);
        let mut got = Vec::new();
        for b in &wire {
            f.push(std::slice::from_ref(b));
            got.extend(frames(&mut f));
        }
        assert_eq!(
            got,
            [
                Ok((0, wire[..len].to_vec())),
                Ok((len as u64, wire[len..].to_vec()))
            ]
        );
        assert_eq!(f.buffered(), 0);
        assert_eq!(f.finish(), Ok(()));
        f.push(&wire[..5]);
        assert_eq!(frames(&mut f), []);
        let e = f.finish().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "byte {}: malformed record: input ends inside a frame after 5 bytes",
                2 * len
            )
        );
    }

    #[test]
    fn framer_drops_oversized_frames_without_consuming_what_they_claim() {
        let mut f = MsgPackFramer::new(8);
        f.push(&[0x91, 0x01, 0xdc, 0x01, 0x00]); // [1], then a header claiming 256 items
        assert_eq!(f.buffered(), 2);
        f.push(&[0x92, 0x03, 0x04]);
        assert_eq!(
            frames(&mut f),
            [
                Ok((0, vec![0x91, 0x01])),
                Err("byte 2: frame of at least 259 bytes exceeds the limit of 8 bytes".into()),
                Ok((5, vec![0x92, 0x03, 0x04])),
            ]
        );
        // An array of 10 is known too large from its header; its items become frames.
        f.push(&[0x9a, 0, 0, 0x90]);
        assert_eq!(
            frames(&mut f),
            [
                Err("byte 8: frame of at least 11 bytes exceeds the limit of 8 bytes".into()),
                Ok((9, vec![0])),
                Ok((10, vec![0])),
                Ok((11, vec![0x90])),
            ]
        );
    }

    /// Issue 16, item 5: a header claiming 4 GiB (array, map, str, bin) costs its own frame;
    /// the records after it are framed at their offsets.
    #[test]
    fn r16_huge_claimed_lengths_resynchronize_at_once() {
        for marker in [0xdd, 0xdf, 0xdb, 0xc6] {
            let mut f = MsgPackFramer::new(64);
            let mut stream = vec![0x91, 0x01, marker, 0xff, 0xff, 0xff, 0xff];
            stream.extend([0x91, 0x02, 0x91, 0x03]);
            // Byte by byte: nothing of the claimed length is waited for.
            for b in &stream {
                f.push(&[*b]);
            }
            let got = frames(&mut f);
            assert_eq!(got.len(), 4, "{marker:#x}: {got:?}");
            assert_eq!(got[0], Ok((0, vec![0x91, 0x01])));
            assert!(
                got[1]
                    .as_ref()
                    .is_err_and(|e| e.starts_with("byte 2: frame of at least")),
                "{marker:#x}: {got:?}"
            );
            assert_eq!(got[2], Ok((7, vec![0x91, 0x02])), "{marker:#x}");
            assert_eq!(got[3], Ok((9, vec![0x91, 0x03])), "{marker:#x}");
            assert!(f.finish().is_ok());
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut d = DecoderConfig {
            format: Format::MsgPack,
            ..DecoderConfig::default()
        }
        .build()
        .unwrap();
        let mut ev = Event::new();
        let mut frame = vec![0x91; 200_000];
        frame.push(0x01);
        let e = d.decode_frame(&frame, 0, &mut ev).unwrap_err();
        assert!(
            e.to_string().starts_with("byte 0: malformed record:"),
            "{e}"
        );
        let mut f = MsgPackFramer::new(1 << 20);
        f.push(&frame);
        assert_eq!(
            f.next_frame().unwrap().map(|(_, b)| b.len()),
            Some(frame.len())
        );
    }

    #[test]
    fn framer_resyncs_after_invalid_marker() {
        let mut f = MsgPackFramer::new(64);
        f.push(&[0x92, 0x01, 0xc1, 0x91, 0x02]);
        assert_eq!(
            frames(&mut f),
            [
                Err("byte 0: malformed record: invalid MessagePack marker 0xc1 at byte 2 of the frame".into()),
                Ok((3, vec![0x91, 0x02])),
            ]
        );
    }
}
