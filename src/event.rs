//! One decoded input record: an optional timestamp, an optional key, the input values and
//! the (optional) target values.
//!
//! Decoders (the I/O layer's `format` module) *fill* a caller-owned [`Event`], the way csv's
//! `read_byte_record` fills a `ByteRecord`, so once its vectors have grown to the width of
//! the stream, decoding allocates nothing per event.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::{Decoded, DecoderConfig};
//!
//! let mut decoder = DecoderConfig::default().build()?;
//! let mut event = Event::new();
//! assert_eq!(decoder.decode_line(b"cpu,mem", 1, &mut event)?, Decoded::Header);
//! assert_eq!(decoder.decode_line(b"0.5,2", 2, &mut event)?, Decoded::Event);
//! assert_eq!(event.values, [0.5, 2.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};

/// One record of the input stream.
///
/// # Example
/// ```
/// use tbptt::event::Event;
///
/// let mut event = Event::new();
/// event.values.extend([1.0, 2.5]);
/// event.key.push_str("host-a");
/// let capacity = event.values.capacity();
/// event.clear();
/// assert!(event.values.is_empty() && event.key.is_empty() && event.time.is_none());
/// assert_eq!(event.values.capacity(), capacity);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When the event happened: seconds since the Unix epoch (UTC) for ISO-8601 timestamps, or
    /// the raw number when the time column is numeric (an epoch, a year, a step counter).
    /// `None` when the stream has no time column.
    pub time: Option<f64>,
    /// The series the event belongs to (for keyed streams); empty when there is none.
    pub key: String,
    /// The input values, in the order the column selection names them. Always finite.
    pub values: Vec<f64>,
    /// The target values, when the stream carries explicit targets; empty otherwise. Always
    /// finite.
    pub targets: Vec<f64>,
}

impl Event {
    /// An empty event (no time, no key, no values, no targets). Does not allocate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties the event but keeps the capacity of `key`, `values` and `targets`, so that
    /// refilling it does not allocate.
    pub fn clear(&mut self) {
        self.time = None;
        self.key.clear();
        self.values.clear();
        self.targets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_keeps_capacity_and_resets_everything() {
        let mut e = Event {
            time: Some(3.0),
            key: "k".into(),
            values: vec![1.0, 2.0, 3.0],
            targets: vec![4.0],
        };
        let (cv, ct, ck) = (e.values.capacity(), e.targets.capacity(), e.key.capacity());
        e.clear();
        assert_eq!(e, Event::new());
        assert_eq!(e.values.capacity(), cv);
        assert_eq!(e.targets.capacity(), ct);
        assert_eq!(e.key.capacity(), ck);
    }
}
