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
//! When the input's value columns have names ([`Capture::set_columns`]), each line is a flat
//! object instead, `{"time": T, "key": "K", "cpu": 0.1, "mem": 2.0, "arrival": A}`, so the
//! replay names its output columns as the live run did (`forecast_cpu`); `time` and `key` are
//! then left out when the event has none, and a flat object's `arrival` field is never an
//! input. Names
//! that clash with those fields (or with the time, key and target names the decoder knows)
//! keep the structured form.
//!
//! # Example
//! ```
//! use tbptt::event::Event;
//! use tbptt::io::capture::Capture;
//!
//! let mut out = Vec::new();
//! let mut rec = Capture::new(&mut out);
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

use crate::io::format::{Columns, TimeStyle};

/// Whether a column name cannot be a field of a flat recorded line: the recording's own
/// fields and the names the decoder reads as time, key, values or targets.
fn is_reserved(name: &str) -> bool {
    const RESERVED: [&str; 13] = [
        "arrival",
        "time",
        "timestamp",
        "ts",
        "date",
        "datetime",
        "year",
        "key",
        "values",
        "x",
        "target",
        "targets",
        "y",
    ];
    RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// One recorded line, borrowed from the event.
#[derive(Serialize)]
struct Line<'a> {
    time: Option<Time<'a>>,
    key: &'a str,
    values: &'a [f64],
    #[serde(skip_serializing_if = "<[f64]>::is_empty")]
    target: &'a [f64],
    arrival: f64,
}

/// A recorded time: a number, or ISO text when the input wrote its times so.
#[derive(Serialize)]
#[serde(untagged)]
enum Time<'a> {
    Number(f64),
    Text(&'a str),
}

/// Writes events as JSON lines (buffered; nothing is allocated per event once warmed up).
#[derive(Debug)]
pub struct Capture<W: Write> {
    out: BufWriter<W>,
    written: u64,
    style: TimeStyle,
    time_text: String,
    /// The input columns' names, when lines are written as flat objects.
    names: Vec<String>,
    /// Appending to a structured recording: keep its form.
    structured_only: bool,
}

impl Capture<std::fs::File> {
    /// A recorder writing to a new file at `path` (truncated if it exists).
    ///
    /// # Errors
    /// The I/O error of creating the file.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(Capture::new(std::fs::File::create(path)?))
    }

    /// A recorder appending to the file at `path` (created if missing): a run resumed from a
    /// checkpoint continues the recording of the run before it. When the file's first line is
    /// in the structured form, new lines keep that form (and times in seconds), so that the
    /// whole file replays with one layout.
    ///
    /// # Errors
    /// The I/O error of opening or reading the file.
    pub fn append(path: &Path) -> io::Result<Self> {
        use std::io::{BufRead, Read};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut first = Vec::new();
        io::BufReader::new((&file).take(1 << 20)).read_until(b'\n', &mut first)?;
        let mut rec = Capture::new(file);
        rec.structured_only = memchr::memmem::find(&first, b"\"values\":").is_some();
        Ok(rec)
    }
}

impl<W: Write> Capture<W> {
    /// A recorder writing to `out`.
    pub fn new(out: W) -> Self {
        Capture {
            out: BufWriter::with_capacity(1 << 16, out),
            written: 0,
            style: TimeStyle::Number,
            time_text: String::new(),
            names: Vec::new(),
            structured_only: false,
        }
    }

    /// Writes times as the input did, and values under the input's column names when they
    /// have names (see the module documentation), so that a replay reads the events the same
    /// way and writes the same output. Default: seconds as numbers, the structured form.
    pub fn set_columns(&mut self, columns: &Columns) {
        if self.structured_only {
            return;
        }
        self.style = columns.time_style;
        let names = columns.forecast_names().unwrap_or_default();
        let flat = columns.named
            && columns.targets.is_empty()
            && !names.is_empty()
            && names
                .iter()
                .enumerate()
                .all(|(i, n)| !n.is_empty() && !names[..i].contains(n) && !is_reserved(n));
        self.names = if flat { names.to_vec() } else { Vec::new() };
    }

    /// Appends one event that arrived at `arrival` (seconds since the Unix epoch).
    ///
    /// # Errors
    /// The I/O error of writing.
    pub fn write(&mut self, ev: &Event, arrival: f64) -> io::Result<()> {
        if !self.names.is_empty() && self.names.len() == ev.values.len() && ev.targets.is_empty() {
            return self.write_flat(ev, arrival);
        }
        let time = match (ev.time, self.style) {
            (None, _) => None,
            (Some(t), TimeStyle::Iso(_)) => {
                self.time_text.clear();
                // Writing into a String cannot fail.
                _ = self.style.write(t, &mut self.time_text);
                Some(Time::Text(&self.time_text))
            }
            (Some(t), style) => Some(Time::Number(t * style.per_second())),
        };
        let line = Line {
            time,
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

    /// One event as a flat object keyed by the input's column names.
    fn write_flat(&mut self, ev: &Event, arrival: f64) -> io::Result<()> {
        let o = &mut self.out;
        o.write_all(b"{")?;
        if let Some(t) = ev.time {
            o.write_all(b"\"time\":")?;
            if matches!(self.style, TimeStyle::Iso(_)) {
                self.time_text.clear();
                // Writing into a String cannot fail.
                _ = self.style.write(t, &mut self.time_text);
                serde_json::to_writer(&mut *o, &self.time_text)?;
            } else {
                serde_json::to_writer(&mut *o, &(t * self.style.per_second()))?;
            }
            o.write_all(b",")?;
        }
        if !ev.key.is_empty() {
            o.write_all(b"\"key\":")?;
            serde_json::to_writer(&mut *o, &ev.key)?;
            o.write_all(b",")?;
        }
        for (name, v) in self.names.iter().zip(&ev.values) {
            serde_json::to_writer(&mut *o, name)?;
            o.write_all(b":")?;
            serde_json::to_writer(&mut *o, v)?;
            o.write_all(b",")?;
        }
        o.write_all(b"\"arrival\":")?;
        serde_json::to_writer(&mut *o, &arrival)?;
        o.write_all(b"}\n")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_keeps_the_form_of_the_recording_it_continues() {
        let dir = std::env::temp_dir().join(format!("tbptt-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec.jsonl");
        let ev = Event {
            time: Some(1396310400.0),
            key: String::new(),
            values: vec![1.5],
            targets: vec![],
        };
        let named = Columns {
            time: Some("timestamp".into()),
            time_style: TimeStyle::of("2014-04-01 00:00:00"),
            inputs: vec!["cpu".into()],
            named: true,
            ..Columns::default()
        };
        let write = |rec: &mut Capture<std::fs::File>| {
            rec.set_columns(&named);
            rec.write(&ev, 2.0).unwrap();
            rec.flush().unwrap();
        };
        // A structured recording (no names when it started) stays structured.
        let mut first = Capture::create(&path).unwrap();
        first.write(&ev, 1.0).unwrap();
        first.flush().unwrap();
        write(&mut Capture::append(&path).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().all(|l| l.contains("\"values\":[1.5]")),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2);
        // A flat one stays flat.
        write(&mut Capture::create(&path).unwrap());
        write(&mut Capture::append(&path).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(
            text.lines()
                .all(|l| l.starts_with("{\"time\":\"2014-04-01 00:00:00\",\"cpu\":1.5,")),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
