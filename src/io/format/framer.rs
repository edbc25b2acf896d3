//! Splitting a chunked text stream into lines, with a cap on line length.

use std::collections::VecDeque;

use memchr::memchr;

use super::error::{ParseError, Position};

/// Cuts a text stream that arrives in chunks (socket reads, pipe reads) into lines.
///
/// [`push`](LineFramer::push) bytes as they arrive, then take lines with
/// [`next_line`](LineFramer::next_line) until it returns `None`; at the end of the input call
/// [`finish`](LineFramer::finish) to get a last line that has no newline. Lines come without
/// their `\n` or `\r\n`, and are counted from 1 ([`line_no`](LineFramer::line_no)).
///
/// A line longer than the limit is never held in memory: as soon as it is known to be too long
/// its buffered part is dropped, the rest is skipped up to the next newline, and
/// [`next_line`](LineFramer::next_line) reports it once, in order, as
/// [`ParseError::TooLong`]. The buffer therefore stays below the limit plus the size of one
/// pushed chunk. It is reused, so steady-state framing does not allocate.
///
/// # Example
/// ```
/// use tbptt::io::format::{LineFramer, ParseError};
///
/// let mut framer = LineFramer::new(8);
/// framer.push(b"1,2\r\n0123456");
/// framer.push(b"789abc\n3,4\n5,");
/// assert_eq!(framer.next_line().unwrap()?, b"1,2");
/// assert!(matches!(framer.next_line(), Some(Err(ParseError::TooLong { .. }))));
/// assert_eq!(framer.next_line().unwrap()?, b"3,4");
/// assert_eq!(framer.line_no(), 3);
/// assert!(framer.next_line().is_none()); // "5," waits for its newline
/// framer.push(b"6");
/// framer.finish();
/// assert_eq!(framer.next_line().unwrap()?, b"5,6");
/// assert!(framer.next_line().is_none());
/// # Ok::<(), ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LineFramer {
    /// Buffered bytes; `[start, tail)` holds complete lines, `[tail, len)` a partial one.
    buf: Vec<u8>,
    /// First byte not yet returned.
    start: usize,
    /// Start of the partial last line.
    tail: usize,
    /// Buffer positions at which an over-long line was dropped, in order.
    too_long: VecDeque<usize>,
    /// Skipping the rest of an over-long line up to its newline.
    discarding: bool,
    finished: bool,
    limit: usize,
    line_no: u64,
}

impl LineFramer {
    /// A framer that accepts lines of at most `max_line_len` bytes (not counting `\r\n`).
    pub fn new(max_line_len: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            tail: 0,
            too_long: VecDeque::new(),
            discarding: false,
            finished: false,
            limit: max_line_len,
            line_no: 0,
        }
    }

    /// The limit on line length, in bytes.
    pub fn max_line_len(&self) -> usize {
        self.limit
    }

    /// The number of the line (or over-long line) last returned by
    /// [`next_line`](LineFramer::next_line), counted from 1; 0 before the first.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Bytes buffered and not yet returned (complete lines and the partial last line).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends the next chunk of the stream.
    pub fn push(&mut self, mut bytes: &[u8]) {
        self.compact();
        if self.discarding {
            match memchr(b'\n', bytes) {
                None => return,
                Some(i) => {
                    self.discarding = false;
                    bytes = bytes.get(i + 1..).unwrap_or_default();
                }
            }
        }
        while let Some(i) = memchr(b'\n', bytes) {
            let (line, rest) = bytes.split_at(i);
            let partial = self.buf.len() - self.tail;
            let cr = match line.last() {
                Some(b) => *b == b'\r',
                None => partial > 0 && self.buf.last() == Some(&b'\r'),
            };
            if partial + line.len() - usize::from(cr) > self.limit {
                self.drop_tail();
            } else {
                self.buf.extend_from_slice(line);
                self.buf.push(b'\n');
            }
            self.tail = self.buf.len();
            bytes = rest.get(1..).unwrap_or_default();
        }
        // No newline left: the partial line may hold one more byte than the limit, as it may
        // be the `\r` of a `\r\n`.
        if self.buf.len() - self.tail + bytes.len() > self.limit.saturating_add(1) {
            self.drop_tail();
            self.discarding = true;
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Marks the end of the input: the partial last line, if any, becomes a line.
    pub fn finish(&mut self) {
        self.finished = true;
        self.discarding = false;
    }

    /// The next complete line, without its terminator; `None` when more input is needed (or,
    /// after [`finish`](LineFramer::finish), when the input is exhausted).
    ///
    /// The line's number is [`line_no`](LineFramer::line_no) once the line is no longer
    /// borrowed; [`next_numbered`](LineFramer::next_numbered) returns both at once.
    ///
    /// # Errors
    /// [`ParseError::TooLong`], once per over-long line, in its place among the lines. Keep
    /// calling after it.
    pub fn next_line(&mut self) -> Option<Result<&[u8], ParseError>> {
        Some(self.next_numbered()?.map(|(_, line)| line))
    }

    /// Like [`next_line`](LineFramer::next_line), with the line's number, for handing both to
    /// [`Decoder::decode_line`](super::Decoder::decode_line) while the line is borrowed.
    ///
    /// # Errors
    /// As [`next_line`](LineFramer::next_line).
    ///
    /// # Example
    /// ```
    /// use tbptt::io::format::LineFramer;
    ///
    /// let mut framer = LineFramer::new(80);
    /// framer.push(b"a\nb\n");
    /// assert_eq!(framer.next_numbered().unwrap()?, (1, &b"a"[..]));
    /// assert_eq!(framer.next_numbered().unwrap()?, (2, &b"b"[..]));
    /// # Ok::<(), tbptt::io::format::ParseError>(())
    /// ```
    pub fn next_numbered(&mut self) -> Option<Result<(u64, &[u8]), ParseError>> {
        let (start, end) = match self.advance()? {
            Ok(range) => range,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok((self.line_no, self.buf.get(start..end)?)))
    }

    /// Finds the next line's byte range (without terminator) and counts it.
    fn advance(&mut self) -> Option<Result<(usize, usize), ParseError>> {
        if self.too_long.front() == Some(&self.start) {
            self.too_long.pop_front();
            self.line_no += 1;
            return Some(Err(ParseError::TooLong {
                pos: Position::Line(self.line_no),
                limit: self.limit,
            }));
        }
        let start = self.start;
        let mut end = if start < self.tail {
            // [start, tail) ends with a newline.
            let nl = memchr(b'\n', self.buf.get(start..self.tail)?)?;
            self.start = start + nl + 1;
            start + nl
        } else if self.finished && start < self.buf.len() {
            // The last line, without newline, may hold one byte over the limit (a '\r' that
            // turned out not to precede a '\n').
            let end = self.buf.len();
            self.start = end;
            self.tail = end;
            let len = end - start - usize::from(self.buf.last() == Some(&b'\r'));
            if len > self.limit {
                self.line_no += 1;
                return Some(Err(ParseError::TooLong {
                    pos: Position::Line(self.line_no),
                    limit: self.limit,
                }));
            }
            end
        } else {
            return None;
        };
        self.line_no += 1;
        if end > start && self.buf.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        Some(Ok((start, end)))
    }

    /// Forgets all buffered input and the line count (to start a new stream).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.tail = 0;
        self.too_long.clear();
        self.discarding = false;
        self.finished = false;
        self.line_no = 0;
    }

    /// Drops the partial last line and records an over-long line in its place.
    fn drop_tail(&mut self) {
        self.buf.truncate(self.tail);
        self.too_long.push_back(self.tail);
    }

    /// Moves the unread bytes to the front of the buffer.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.drain(..self.start);
        self.tail -= self.start;
        for p in &mut self.too_long {
            *p -= self.start;
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(f: &mut LineFramer) -> Vec<Result<String, u64>> {
        let mut out = Vec::new();
        while let Some(r) = f.next_line() {
            out.push(match r {
                Ok(l) => Ok(String::from_utf8_lossy(l).into_owned()),
                Err(ParseError::TooLong { pos, .. }) => Err(pos.line().unwrap()),
                Err(e) => panic!("{e}"),
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let mut f = LineFramer::new(100);
        f.push(b"a,b\r\n1,2\n\n3");
        assert_eq!(
            drain(&mut f),
            [Ok("a,b".into()), Ok("1,2".into()), Ok(String::new())]
        );
        f.push(b",4\r");
        assert!(drain(&mut f).is_empty());
        f.push(b"\n");
        assert_eq!(drain(&mut f), [Ok("3,4".into())]);
        assert_eq!(f.line_no(), 4);
    }

    #[test]
    fn final_line_without_newline_needs_finish() {
        let mut f = LineFramer::new(100);
        f.push(b"1\n2");
        assert_eq!(drain(&mut f), [Ok("1".into())]);
        f.finish();
        assert_eq!(drain(&mut f), [Ok("2".into())]);
        assert_eq!(f.line_no(), 2);
        assert!(f.next_line().is_none());
        let mut f = LineFramer::new(100);
        f.push(b"1\n");
        f.finish();
        assert_eq!(drain(&mut f), [Ok("1".into())]);
    }

    #[test]
    fn long_line_across_many_pushes_is_reported_once_and_not_buffered() {
        let mut f = LineFramer::new(10);
        f.push(b"ok\n");
        for _ in 0..1000 {
            f.push(b"xxxxxxx");
            assert!(f.buffered() <= 11 + 3, "buffered {}", f.buffered());
        }
        f.push(b"xx\r\nnext,1\nlast");
        f.finish();
        assert_eq!(
            drain(&mut f),
            [
                Ok("ok".into()),
                Err(2),
                Ok("next,1".into()),
                Ok("last".into())
            ]
        );
    }

    #[test]
    fn long_lines_inside_one_push_keep_their_place() {
        let mut f = LineFramer::new(3);
        f.push(b"abc\nabcd\nab\r\nabcdefgh\nabcde\n\n");
        assert_eq!(
            drain(&mut f),
            [
                Ok("abc".into()),
                Err(2),
                Ok("ab".into()),
                Err(4),
                Err(5),
                Ok(String::new())
            ]
        );
    }

    #[test]
    fn limit_is_exact_and_crlf_does_not_count() {
        let mut f = LineFramer::new(3);
        f.push(b"abc\r");
        f.push(b"\nabcd\r");
        f.push(b"\n");
        assert_eq!(drain(&mut f), [Ok("abc".into()), Err(2)]);
        // A lone '\r' before the newline arrives on its own.
        f.push(b"abc");
        f.push(b"\r");
        f.push(b"\n");
        assert_eq!(drain(&mut f), [Ok("abc".into())]);
    }

    #[test]
    fn reset_forgets() {
        let mut f = LineFramer::new(3);
        f.push(b"abcdef");
        f.reset();
        f.push(b"1\n");
        assert_eq!(drain(&mut f), [Ok("1".into())]);
        assert_eq!(f.line_no(), 1);
    }

    #[test]
    fn final_line_is_checked_against_the_limit() {
        // Four bytes are buffered (the last might have been the '\r' of "\r\n"), but as a
        // final line "abc\r" is 3 bytes and "ab\rc" is 4.
        let mut f = LineFramer::new(3);
        f.push(b"abc\r");
        f.finish();
        assert_eq!(drain(&mut f), [Ok("abc".into())]);
        let mut f = LineFramer::new(3);
        f.push(b"ab\rc");
        f.finish();
        assert_eq!(drain(&mut f), [Err(1)]);
    }
}
