//! Prometheus remote write 1.0: a snappy block-compressed protobuf `WriteRequest` of time
//! series, each a label set with samples, what a Prometheus server's `remote_write` sends.
//!
//! Each label set is one series, keyed by [`labels::canonical`](crate::io::labels::canonical)
//! with `__name__` as the metric name (names are mapped into Prometheus' alphabet, which leaves
//! every name Prometheus itself sends unchanged). Each sample is one event: its value, and its
//! timestamp (milliseconds on the wire) as the time in seconds.
//!
//! What the specification asks of a receiver, and what this decoder does:
//! - **stale markers** (the NaN with bits `0x7ff0000000000002`, sent when a series
//!   disappears) are not values: skipped and counted ([`Skipped::stale`]); other NaNs and
//!   infinities are skipped and counted as [`Skipped::non_finite`];
//! - **several samples per series** are events of that series in the order sent;
//! - **out of order**: senders must send each series' samples in timestamp order. A sample not
//!   newer than the one before it in the same series of the request is skipped and counted
//!   ([`Skipped::out_of_order`]); order across requests is the sender's, as the protocol keeps
//!   no state between messages;
//! - a series with no `__name__`, more than [`MAX_LABELS`] labels or a key longer than
//!   [`MAX_KEY_LEN`](crate::io::labels::MAX_KEY_LEN) is rejected (a [`ParseError`] at
//!   [`Position::Series`]); the request's other series are kept;
//! - a body that is not snappy, not a `WriteRequest` or larger than the limit once
//!   decompressed is a [`RemoteWriteError`], and nothing of it is kept.
//!
//! Exemplars, native histograms and metadata are ignored.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::format::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
//! use tbptt::io::format::RemoteWriteDecoder;
//!
//! let request = WriteRequest {
//!     timeseries: vec![TimeSeries {
//!         labels: vec![Label::new("__name__", "up"), Label::new("job", "node")],
//!         samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
//!     }],
//! };
//! let body = remote_write::encode(&request);
//! let mut decoder = RemoteWriteDecoder::new(1 << 20);
//! let mut rejected = Vec::new();
//! decoder.decode(&body, &mut rejected)?;
//! let mut e = Event::new();
//! assert!(decoder.next_event(&mut e));
//! assert_eq!((e.key.as_str(), e.values[0], e.time), (r#"up{job="node"}"#, 1.0, Some(1.7e9)));
//! assert!(!decoder.next_event(&mut e) && rejected.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use prost::Message;

use super::metric::{key_to, push_label_name, push_metric_name, Pending, MAX_LABELS};
use super::{ParseError, Position, Skipped};
use crate::event::Event;

/// The bit pattern of Prometheus' stale marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// `prometheus.WriteRequest` (`prompb/remote.proto`), the fields remote write 1.0 uses.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (`prompb/types.proto`): labels and float samples.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// The label set, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// The label's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

impl Label {
    /// A label `name="value"`.
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Encodes `request` as remote write sends it: protobuf, then snappy's block format.
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

/// Why a remote-write body was refused as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteWriteError {
    /// The body is not snappy block-compressed data.
    #[error("the body is not snappy-compressed: {0}")]
    Snappy(#[source] snap::Error),
    /// The body decompresses to more than the limit.
    #[error("the body decompresses to {len} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Its decompressed length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The decompressed body is not a protobuf `WriteRequest`.
    #[error("the body is not a remote-write WriteRequest: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

/// Decodes remote-write bodies into keyed events; reuses its buffers from request to request.
#[derive(Debug, Clone)]
pub struct RemoteWriteDecoder {
    max_len: usize,
    raw: Vec<u8>,
    text: String,
    name: String,
    key: String,
    pending: Pending,
    skipped: Skipped,
}

impl RemoteWriteDecoder {
    /// A decoder of bodies that decompress to at most `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            max_len,
            raw: Vec::new(),
            text: String::new(),
            name: String::new(),
            key: String::new(),
            pending: Pending::default(),
            skipped: Skipped::default(),
        }
    }

    /// Decodes one request body; its events then come from [`next_event`](Self::next_event)
    /// (those of an earlier body not yet taken are dropped). Rejected series are appended to
    /// `rejected`.
    ///
    /// # Errors
    /// [`RemoteWriteError`] when the body is refused as a whole.
    pub fn decode(
        &mut self,
        body: &[u8],
        rejected: &mut Vec<ParseError>,
    ) -> Result<(), RemoteWriteError> {
        self.pending.clear();
        let len = snap::raw::decompress_len(body).map_err(RemoteWriteError::Snappy)?;
        if len > self.max_len {
            return Err(RemoteWriteError::TooLarge {
                len,
                limit: self.max_len,
            });
        }
        self.raw.clear();
        self.raw.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(body, &mut self.raw)
            .map_err(RemoteWriteError::Snappy)?;
        let request = WriteRequest::decode(self.raw.get(..n).unwrap_or_default())
            .map_err(RemoteWriteError::Protobuf)?;
        for (i, series) in request.timeseries.iter().enumerate() {
            let pos = Position::Series(i as u64 + 1);
            if let Err(reason) = self.series(series) {
                rejected.push(ParseError::Malformed { pos, reason });
            }
        }
        Ok(())
    }

    /// Queues the events of one series.
    fn series(&mut self, series: &TimeSeries) -> Result<(), String> {
        if series.labels.len() > MAX_LABELS + 1 {
            return Err(format!(
                "{} labels; at most {MAX_LABELS} besides __name__",
                series.labels.len()
            ));
        }
        let Self {
            text,
            name,
            key,
            pending,
            skipped,
            ..
        } = self;
        text.clear();
        name.clear();
        let mut ranges = [(0, 0); MAX_LABELS];
        let mut n = 0;
        for label in &series.labels {
            if label.name == "__name__" {
                push_metric_name(&label.value, name);
                continue;
            }
            let Some(slot) = ranges.get_mut(n) else {
                return Err(format!("more than {MAX_LABELS} labels besides __name__"));
            };
            let start = text.len();
            push_label_name(&label.name, text);
            *slot = (start, text.len());
            n += 1;
        }
        if name.is_empty() {
            return Err("no __name__ label".into());
        }
        let mut pairs: [(&str, &str); MAX_LABELS] = [("", ""); MAX_LABELS];
        let values = series.labels.iter().filter(|l| l.name != "__name__");
        for ((pair, (start, end)), label) in pairs.iter_mut().zip(&ranges[..n]).zip(values) {
            *pair = (
                text.get(*start..*end).unwrap_or_default(),
                label.value.as_str(),
            );
        }
        let pairs = pairs.get_mut(..n).unwrap_or_default();
        key_to(name, pairs, key)?;
        let mut last = None;
        for s in &series.samples {
            if last.is_some_and(|t| s.timestamp <= t) {
                skipped.out_of_order += 1;
                continue;
            }
            last = Some(s.timestamp);
            if s.value.to_bits() == STALE_NAN {
                skipped.stale += 1;
            } else if !s.value.is_finite() {
                skipped.non_finite += 1;
            } else {
                pending.push(key, s.value, Some(s.timestamp as f64 / 1e3));
            }
        }
        Ok(())
    }

    /// Moves the next event of the last body into `out`; `false` when none is left.
    pub fn next_event(&mut self, out: &mut Event) -> bool {
        self.pending.pop_into(out)
    }

    /// Events of the last body not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes the counts of samples skipped since the last call, leaving 0.
    pub fn take_skipped(&mut self) -> Skipped {
        std::mem::take(&mut self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| Label::new(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
        }
    }

    fn decode_all(
        d: &mut RemoteWriteDecoder,
        request: &WriteRequest,
    ) -> (Vec<(String, f64, f64)>, Vec<String>) {
        let mut rejected = Vec::new();
        d.decode(&encode(request), &mut rejected).unwrap();
        let mut e = Event::new();
        let mut got = Vec::new();
        while d.next_event(&mut e) {
            got.push((e.key.clone(), e.values[0], e.time.unwrap()));
        }
        (got, rejected.iter().map(ToString::to_string).collect())
    }

    /// The specification's example series
    /// (`http_requests_total{job="prometheus",instance="localhost:9090"}`), with labels out
    /// of order, several samples per series, an out-of-order sample and stale markers.
    #[test]
    fn several_samples_out_of_order_and_stale_markers() {
        let request = WriteRequest {
            timeseries: vec![
                series(
                    &[
                        ("job", "prometheus"),
                        ("__name__", "http_requests_total"),
                        ("instance", "localhost:9090"),
                    ],
                    &[
                        (1.0, 1000),
                        (2.0, 2000),
                        (1.5, 1500),
                        (2.0, 2000),
                        (3.0, 3000),
                        (f64::from_bits(STALE_NAN), 4000),
                    ],
                ),
                series(
                    &[("__name__", "up")],
                    &[(1.0, 1000), (f64::NAN, 2000), (f64::INFINITY, 3000)],
                ),
            ],
        };
        let mut d = RemoteWriteDecoder::new(1 << 20);
        let (got, rejected) = decode_all(&mut d, &request);
        let k = r#"http_requests_total{instance="localhost:9090",job="prometheus"}"#;
        assert_eq!(
            got,
            [
                (k.into(), 1.0, 1.0),
                (k.into(), 2.0, 2.0),
                (k.into(), 3.0, 3.0),
                ("up".into(), 1.0, 1.0)
            ]
        );
        assert!(rejected.is_empty());
        let s = d.take_skipped();
        assert_eq!((s.out_of_order, s.stale, s.non_finite), (2, 1, 2));
        assert_eq!(d.take_skipped(), Skipped::default());
    }

    #[test]
    fn bad_series_are_rejected_and_the_others_kept() {
        let long = "x".repeat(1100);
        let many: Vec<(String, String)> = (0..=MAX_LABELS)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        let mut many_refs: Vec<(&str, &str)> =
            many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        many_refs.push(("__name__", "m"));
        let request = WriteRequest {
            timeseries: vec![
                series(&[("job", "x")], &[(1.0, 1)]),
                series(&[("__name__", "m"), ("a", &long)], &[(1.0, 1)]),
                series(&many_refs, &[(1.0, 1)]),
                series(&[("__name__", "ok"), ("a", "")], &[(4.0, 1)]),
            ],
        };
        let (got, rejected) = decode_all(&mut RemoteWriteDecoder::new(1 << 20), &request);
        assert_eq!(got, [("ok".into(), 4.0, 0.001)]);
        assert_eq!(rejected.len(), 3);
        assert_eq!(rejected[0], "series 1: malformed record: no __name__ label");
        assert!(
            rejected[1].starts_with("series 2: ") && rejected[1].contains("longer than 1024"),
            "{}",
            rejected[1]
        );
        assert!(
            rejected[2].starts_with("series 3: ") && rejected[2].contains("labels"),
            "{}",
            rejected[2]
        );
    }

    #[test]
    fn bodies_that_are_not_snappy_protobuf_or_too_large_are_refused() {
        let mut d = RemoteWriteDecoder::new(64);
        let mut rejected = Vec::new();
        let e = d
            .decode(b"\xff\xff\xff\xff\xff\xff", &mut rejected)
            .unwrap_err();
        assert!(matches!(e, RemoteWriteError::Snappy(_)), "{e}");
        let garbage = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff")
            .unwrap();
        let e = d.decode(&garbage, &mut rejected).unwrap_err();
        assert!(matches!(e, RemoteWriteError::Protobuf(_)), "{e}");
        let big = snap::raw::Encoder::new().compress_vec(&[0u8; 65]).unwrap();
        let e = d.decode(&big, &mut rejected).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the body decompresses to 65 bytes, more than the limit of 64 bytes"
        );
        assert!(rejected.is_empty());
    }
}
