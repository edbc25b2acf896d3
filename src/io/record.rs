//! Recording a live stream for replay: every accepted event, with its arrival time, as one
//! JSON line that `tbptt replay --format jsonl` and `tbptt sweep --format jsonl` read back.
//!
//! Each line is a structured object (see [`crate::io::format::jsonl`]):
//! `{"time": T, "key": "K", "values": [...], "target": [...], "arrival": A}` where `time` is
//! the event's own time (`null` when it has none), `target` is present only with explicit
//! targets, and `arrival` is when the event arrived, in seconds since the Unix epoch. Replayed
//! as it is, the events are the same as live (values are written with the shortest
//! representation that reads back to the same `f64`), so a `--sync` run over the recording
//! gives the same output as the live `--sync` run. `--time arrival` paces a replay by the
//! arrival times instead (`--speed realtime`).
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::record::Recorder;
//!
//! let mut out = Vec::new();
//! let mut rec = Recorder::new(&mut out);
//! let ev = Event { time: Some(5.0), key: "a".into(), values: vec![0.1, 2.0], targets: vec![] };
//! rec.write(&ev, 1700000000.25)?;
//! rec.flush()?;
//! drop(rec);
//! assert_eq!(
//!     String::from_utf8(out)?,
//!     "{\"time\":5.0,\"key\":\"a\",\"values\":[0.1,2.0],\"arrival\":1700000000.25}\n"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::event::Event;
use serde::Serialize;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One recorded line, borrowed from the event.
#[derive(Serialize)]
struct Line<'a> {
    time: Option<f64>,
    key: &'a str,
    values: &'a [f64],
    #[serde(skip_serializing_if = "<[f64]>::is_empty")]
    target: &'a [f64],
    arrival: f64,
}

/// Writes events as JSON lines (buffered; nothing is allocated per event).
#[derive(Debug)]
pub struct Recorder<W: Write> {
    out: BufWriter<W>,
    written: u64,
}

impl Recorder<std::fs::File> {
    /// A recorder writing to a new file at `path` (truncated if it exists).
    ///
    /// # Errors
    /// The I/O error of creating the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Recorder::new(std::fs::File::create(path)?))
    }

    /// A recorder appending to the file at `path` (created if missing): a run resumed from a
    /// checkpoint continues the recording of the run before it.
    ///
    /// # Errors
    /// The I/O error of opening the file.
    pub fn append(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Recorder::new(file))
    }
}

impl<W: Write> Recorder<W> {
    /// A recorder writing to `out`.
    pub fn new(out: W) -> Self {
        Recorder {
            out: BufWriter::with_capacity(1 << 16, out),
            written: 0,
        }
    }

    /// Appends one event that arrived at `arrival` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// The I/O error of writing.
    pub fn write(&mut self, ev: &Event, arrival: f64) -> io::Result<()> {
        let line = Line {
            time: ev.time,
            key: &ev.key,
            values: &ev.values,
            target: &ev.targets,
            arrival,
        };
        serde_json::to_writer(&mut self.out, &line).map_err(io::Error::from)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Events written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes the buffer to the writer.
    ///
    /// # Errors
    /// The I/O error of writing.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Turns [`Instant`]s (as sources stamp records) into seconds since the Unix epoch, from one
/// reading of both clocks.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    instant: Instant,
    epoch: f64,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        WallClock {
            instant: Instant::now(),
            epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// `at` in seconds since the Unix epoch.
    pub fn epoch_of(&self, at: Instant) -> f64 {
        if at >= self.instant {
            self.epoch + (at - self.instant).as_secs_f64()
        } else {
            self.epoch - (self.instant - at).as_secs_f64()
        }
    }
}
