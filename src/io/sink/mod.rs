//! Where output records go: the [`Sink`] trait, with [`RecordWriter`] (CSV or JSON lines to
//! any `io::Write`, without allocating per record; numbers in their shortest form that
//! parses back to the same value) and [`ChannelSink`] (records handed to another thread).
//!
//! Fields, in order (CSV header names):
//! - `index`: 0-based index of the accepted event;
//! - `time`: the event's time (seconds since the Unix epoch, or its raw numeric time), empty
//!   when the event had none;
//! - `key`: the event's series key, empty when none;
//! - `error`: mean squared error of the forecast made for this event, in the input's units
//!   (empty for the first event of a forecast stream);
//! - `score`: the anomaly score (0 during warm-up);
//! - `anomaly`: 1 when the score is above `--threshold`, else 0;
//! - `updates`: TBPTT updates applied so far;
//! - `residual_<i>`: actual − forecast for value `i`, in the input's units;
//! - `forecast_<i>`: the forecast of value `i` of the next event (or of this event's target),
//!   in the input's units.
//!
//! With [`RecordWriter::with_members`] and the default forecaster, each member's forecast
//! follows (`net_<i>`, `naive_<i>`, `seasonal_<i>`, `seasonal_change_<i>`), then the
//! combination's weights (`weight_net`, `weight_naive`, `weight_seasonal`,
//! `weight_seasonal_change`).
//!
//! JSON lines carry the same fields, `residual` and `forecast` as arrays and `time`/`error`
//! as `null` when absent; the members as `"members": {"net": [..], ..}` and the weights as
//! `"weights": {"net": .., ..}`.

pub mod graphite;
#[cfg(feature = "monitor")]
pub mod influx;
pub mod remote;

pub use remote::RemoteStats;

use crate::detect::forecast::MEMBER_NAMES;
use crate::detect::pipeline::OutputRecord;
use crate::io::format::{Columns, TimeStyle};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

/// Takes the output records of a run, one at a time (grep-searcher's `Sink` is the model).
///
/// An error of kind [`io::ErrorKind::BrokenPipe`] means the reader is gone: the run ends
/// normally ("output closed"); any other error fails it.
///
/// # Example
/// ```
/// use tbptt::detect::pipeline::OutputRecord;
/// use tbptt::io::sink::Sink;
///
/// /// Counts the flagged events.
/// struct Alarms(u64);
/// impl Sink for Alarms {
///     fn write(&mut self, record: &OutputRecord) -> std::io::Result<()> {
///         self.0 += u64::from(record.anomaly);
///         Ok(())
///     }
/// }
/// let mut sink = Alarms(0);
/// sink.write(&OutputRecord { anomaly: true, ..Default::default() })?;
/// assert_eq!(sink.0, 1);
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Sink {
    /// Learns the input's columns before the first record (when the input has any), to name
    /// output columns after them and write times as the input did. Default: ignored.
    ///
    /// # Errors
    /// As [`Sink::write`].
    fn begin(&mut self, columns: &Columns) -> io::Result<()> {
        let _ = columns;
        Ok(())
    }

    /// Takes one record.
    ///
    /// # Errors
    /// Why the record could not be taken; [`io::ErrorKind::BrokenPipe`] for a closed output.
    fn write(&mut self, record: &OutputRecord) -> io::Result<()>;

    /// Pushes buffered records out; called whenever the run's input is idle and at the end.
    ///
    /// # Errors
    /// As [`Sink::write`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Sink for RecordWriter<W> {
    fn begin(&mut self, columns: &Columns) -> io::Result<()> {
        RecordWriter::begin(self, columns);
        Ok(())
    }

    fn write(&mut self, record: &OutputRecord) -> io::Result<()> {
        RecordWriter::write(self, record)
    }

    fn flush(&mut self) -> io::Result<()> {
        RecordWriter::flush(self)
    }
}

/// Hands each record, as an owned copy, to a bounded channel (read it on another thread).
/// When the channel is full the run waits for the reader, as it would for a pipe; when the
/// reader is dropped the run ends as for a closed output. Each record is cloned, so this
/// sink allocates per record.
///
/// # Example
/// ```
/// use tbptt::detect::pipeline::OutputRecord;
/// use tbptt::io::sink::{ChannelSink, Sink};
///
/// let (mut sink, records) = ChannelSink::bounded(16);
/// sink.write(&OutputRecord { index: 7, ..Default::default() })?;
/// assert_eq!(records.recv().map(|r| r.index), Ok(7));
/// drop(records);
/// let closed = sink.write(&OutputRecord::default()).unwrap_err();
/// assert_eq!(closed.kind(), std::io::ErrorKind::BrokenPipe);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ChannelSink {
    tx: crossbeam_channel::Sender<OutputRecord>,
}

impl ChannelSink {
    /// A sink and the receiving end of its channel, which holds at most `cap` records.
    pub fn bounded(cap: usize) -> (ChannelSink, crossbeam_channel::Receiver<OutputRecord>) {
        let (tx, rx) = crossbeam_channel::bounded(cap);
        (ChannelSink { tx }, rx)
    }
}

impl Sink for ChannelSink {
    fn write(&mut self, record: &OutputRecord) -> io::Result<()> {
        self.tx.send(record.clone()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the receiver of the output channel is gone",
            )
        })
    }
}

/// Hands each record to several sinks in turn (records to a file and to InfluxDB, say). The
/// first error stops the record there and is returned.
///
/// # Example
/// ```
/// use tbptt::detect::pipeline::OutputRecord;
/// use tbptt::io::sink::{ChannelSink, Sink, Tee};
///
/// let (a, ra) = ChannelSink::bounded(4);
/// let (b, rb) = ChannelSink::bounded(4);
/// let mut tee = Tee::new(vec![Box::new(a), Box::new(b)]);
/// tee.write(&OutputRecord { index: 2, ..Default::default() })?;
/// assert_eq!((ra.len(), rb.len()), (1, 1));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Tee(Vec<Box<dyn Sink + Send>>);

impl Tee {
    /// A sink writing to each of `sinks`, in order.
    pub fn new(sinks: Vec<Box<dyn Sink + Send>>) -> Self {
        Tee(sinks)
    }
}

impl Sink for Tee {
    fn write(&mut self, record: &OutputRecord) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.write(record))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|s| s.flush())
    }
}

/// How output records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Comma-separated values with a header line (default).
    #[default]
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl FromStr for OutputFormat {
    type Err = crate::Error;

    /// `csv`, or `jsonl` / `json`.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "csv" => Ok(OutputFormat::Csv),
            "jsonl" | "json" | "jsonlines" => Ok(OutputFormat::Jsonl),
            _ => Err(crate::Error::config(
                "output_format",
                format!("unknown output format {s:?}; expected csv or jsonl"),
            )),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Csv => "csv",
            OutputFormat::Jsonl => "jsonl",
        })
    }
}

/// Writes output records in one format.
///
/// # Example
/// ```
/// use tbptt::detect::pipeline::OutputRecord;
/// use tbptt::io::sink::{OutputFormat, RecordWriter};
/// let mut w = RecordWriter::new(Vec::new(), OutputFormat::Csv);
/// let rec = OutputRecord { index: 3, forecast: vec![1.5], residual: vec![0.25], error: Some(0.0625), ..Default::default() };
/// w.write(&rec).unwrap();
/// let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
/// assert_eq!(text, "index,time,key,error,score,anomaly,updates,residual_0,forecast_0,onset_index,onset_time\n3,,,0.0625,0,0,0,0.25,1.5,,\n");
/// ```
pub struct RecordWriter<W: Write> {
    out: io::BufWriter<W>,
    format: OutputFormat,
    header_done: bool,
    members: bool,
    /// Names of the forecast columns (`forecast_<name>`); positions when empty.
    names: Vec<String>,
    time_style: TimeStyle,
    time_text: String,
}

impl<W: Write> RecordWriter<W> {
    /// A writer over `out` (buffered here).
    pub fn new(out: W, format: OutputFormat) -> Self {
        RecordWriter {
            out: io::BufWriter::with_capacity(64 * 1024, out),
            format,
            header_done: false,
            members: false,
            names: Vec::new(),
            time_style: TimeStyle::Number,
            time_text: String::new(),
        }
    }

    /// Names the value columns after the input's (`forecast_cpu` rather than `forecast_0`)
    /// and writes times as the input did (ISO text stays ISO text). Names that are empty or
    /// repeated fall back to positions. Call it before the first record.
    pub fn begin(&mut self, columns: &Columns) {
        let names = columns.forecast_names().unwrap_or_default();
        let unique = names
            .iter()
            .enumerate()
            .all(|(i, n)| !n.is_empty() && !names[..i].contains(n));
        self.names = if unique { names.to_vec() } else { Vec::new() };
        self.time_style = columns.time_style;
    }

    /// The name of value column `i`.
    fn name(&self, i: usize) -> Cow<'_, str> {
        match self.names.get(i) {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(i.to_string()),
        }
    }

    /// Formats time `t` as the input wrote it into `time_text`; `true` when that is text
    /// (to be quoted in JSON).
    fn format_time(&mut self, t: f64) -> bool {
        self.time_text.clear();
        // Writing into a String cannot fail.
        _ = self.time_style.write(t, &mut self.time_text);
        matches!(self.time_style, TimeStyle::Iso(_))
    }

    /// Also writes each forecast member and its weight (when records carry them).
    pub fn with_members(mut self, members: bool) -> Self {
        self.members = members;
        self
    }

    /// Writes one record (and the CSV header before the first).
    ///
    /// # Errors
    /// The underlying writer's error (e.g. a broken pipe).
    pub fn write(&mut self, r: &OutputRecord) -> io::Result<()> {
        match self.format {
            OutputFormat::Csv => self.write_csv(r),
            OutputFormat::Jsonl => self.write_json(r),
        }
    }

    fn write_header(&mut self, r: &OutputRecord) -> io::Result<()> {
        let mut header = String::from("index,time,key,error,score,anomaly,updates");
        let column = |header: &mut String, name: String| {
            header.push(',');
            let mut quoted = Vec::new();
            // Writing into a Vec cannot fail; names are UTF-8.
            _ = write_csv_field(&mut quoted, &name);
            header.push_str(&String::from_utf8_lossy(&quoted));
        };
        for prefix in ["residual", "forecast"] {
            for i in 0..r.forecast.len() {
                column(&mut header, format!("{prefix}_{}", self.name(i)));
            }
        }
        if self.members && !r.weights.is_empty() {
            for m in MEMBER_NAMES {
                for i in 0..r.forecast.len() {
                    column(&mut header, format!("{m}_{}", self.name(i)));
                }
            }
            for m in MEMBER_NAMES {
                column(&mut header, format!("weight_{m}"));
            }
        }
        header.push_str(",onset_index,onset_time\n");
        self.out.write_all(header.as_bytes())?;
        self.header_done = true;
        Ok(())
    }

    fn write_csv(&mut self, r: &OutputRecord) -> io::Result<()> {
        if !self.header_done {
            self.write_header(r)?;
        }
        if let Some(t) = r.time {
            self.format_time(t);
        }
        let o = &mut self.out;
        write!(o, "{},", r.index)?;
        if r.time.is_some() {
            write_csv_field(o, &self.time_text)?;
        }
        o.write_all(b",")?;
        write_csv_field(o, &r.key)?;
        o.write_all(b",")?;
        if let Some(e) = r.error {
            write!(o, "{e}")?;
        }
        write!(o, ",{},{},{}", r.score, u8::from(r.anomaly), r.updates)?;
        for i in 0..r.forecast.len() {
            match r.residual.get(i) {
                Some(v) => write!(o, ",{v}")?,
                None => o.write_all(b",")?,
            }
        }
        for v in &r.forecast {
            write!(o, ",{v}")?;
        }
        if self.members && !r.weights.is_empty() {
            for v in r.members.iter().chain(&r.weights) {
                write!(o, ",{v}")?;
            }
        }
        self.write_csv_onset(r)
    }

    /// The onset columns of a CSV row and its end: the episode's first event's index and
    /// time, empty when the record reports no episode.
    fn write_csv_onset(&mut self, r: &OutputRecord) -> io::Result<()> {
        if let Some(t) = r.onset_time {
            self.format_time(t);
        }
        let o = &mut self.out;
        o.write_all(b",")?;
        if let Some(i) = r.onset_index {
            write!(o, "{i}")?;
        }
        o.write_all(b",")?;
        if r.onset_time.is_some() {
            write_csv_field(o, &self.time_text)?;
        }
        o.write_all(b"\n")
    }

    /// The onset fields of a JSON line and its end (`null` when the record reports no
    /// episode).
    fn write_json_onset(&mut self, r: &OutputRecord) -> io::Result<()> {
        let text = r.onset_time.map(|t| self.format_time(t));
        let o = &mut self.out;
        o.write_all(b",\"onset_index\":")?;
        match r.onset_index {
            Some(i) => write!(o, "{i}")?,
            None => o.write_all(b"null")?,
        }
        o.write_all(b",\"onset_time\":")?;
        match (r.onset_time, text) {
            (Some(_), Some(true)) => write_json_str(o, &self.time_text)?,
            (Some(_), Some(false)) => o.write_all(self.time_text.as_bytes())?,
            (t, _) => write_opt(o, t)?,
        }
        o.write_all(b"}\n")
    }

    fn write_json(&mut self, r: &OutputRecord) -> io::Result<()> {
        let text = r.time.map(|t| self.format_time(t));
        let o = &mut self.out;
        write!(o, "{{\"index\":{},\"time\":", r.index)?;
        match (r.time, text) {
            (Some(_), Some(true)) => write_json_str(o, &self.time_text)?,
            // Event times are finite, so the number is valid JSON.
            (Some(_), Some(false)) => o.write_all(self.time_text.as_bytes())?,
            (t, _) => write_opt(o, t)?,
        }
        o.write_all(b",\"key\":")?;
        write_json_str(o, &r.key)?;
        o.write_all(b",\"error\":")?;
        write_opt(o, r.error)?;
        o.write_all(b",\"score\":")?;
        write_num(o, r.score)?;
        write!(
            o,
            ",\"anomaly\":{},\"updates\":{},\"residual\":[",
            r.anomaly, r.updates
        )?;
        for (i, v) in r.residual.iter().enumerate() {
            if i > 0 {
                o.write_all(b",")?;
            }
            write_num(o, *v)?;
        }
        o.write_all(b"],\"forecast\":[")?;
        for (i, v) in r.forecast.iter().enumerate() {
            if i > 0 {
                o.write_all(b",")?;
            }
            write_num(o, *v)?;
        }
        o.write_all(b"]")?;
        if self.members && !r.weights.is_empty() {
            let d = r.forecast.len();
            o.write_all(b",\"members\":{")?;
            for (m, name) in MEMBER_NAMES.iter().enumerate() {
                write!(o, "{}\"{name}\":[", if m > 0 { "," } else { "" })?;
                for (i, v) in r.members.iter().skip(m * d).take(d).enumerate() {
                    if i > 0 {
                        o.write_all(b",")?;
                    }
                    write_num(o, *v)?;
                }
                o.write_all(b"]")?;
            }
            o.write_all(b"},\"weights\":{")?;
            for (m, (name, w)) in MEMBER_NAMES.iter().zip(&r.weights).enumerate() {
                write!(o, "{}\"{name}\":", if m > 0 { "," } else { "" })?;
                write_num(o, *w)?;
            }
            o.write_all(b"}")?;
        }
        self.write_json_onset(r)
    }

    /// Flushes buffered output.
    ///
    /// # Errors
    /// The underlying writer's error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer (call [`RecordWriter::flush`] first to find every record in it).
    pub fn get_mut(&mut self) -> &mut W {
        self.out.get_mut()
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    /// The flush error.
    pub fn into_inner(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

fn write_num<W: Write>(o: &mut W, v: f64) -> io::Result<()> {
    if v.is_finite() {
        write!(o, "{v}")
    } else {
        o.write_all(b"null")
    }
}

fn write_opt<W: Write>(o: &mut W, v: Option<f64>) -> io::Result<()> {
    match v {
        Some(v) => write_num(o, v),
        None => o.write_all(b"null"),
    }
}

fn write_csv_field<W: Write>(o: &mut W, s: &str) -> io::Result<()> {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        o.write_all(b"\"")?;
        for part in s.split('"').enumerate() {
            if part.0 > 0 {
                o.write_all(b"\"\"")?;
            }
            o.write_all(part.1.as_bytes())?;
        }
        o.write_all(b"\"")
    } else {
        o.write_all(s.as_bytes())
    }
}

fn write_json_str<W: Write>(o: &mut W, s: &str) -> io::Result<()> {
    o.write_all(b"\"")?;
    for c in s.chars() {
        match c {
            '"' => o.write_all(b"\\\"")?,
            '\\' => o.write_all(b"\\\\")?,
            '\n' => o.write_all(b"\\n")?,
            '\r' => o.write_all(b"\\r")?,
            '\t' => o.write_all(b"\\t")?,
            c if (c as u32) < 0x20 => write!(o, "\\u{:04x}", c as u32)?,
            c => {
                let mut buf = [0u8; 4];
                o.write_all(c.encode_utf8(&mut buf).as_bytes())?
            }
        }
    }
    o.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> OutputRecord {
        OutputRecord {
            index: 7,
            time: Some(1.5e9),
            key: "a,\"b\"\n".into(),
            error: None,
            residual: vec![],
            score: 4.5,
            anomaly: true,
            forecast: vec![1.0, -2.25],
            updates: 9,
            members: vec![],
            weights: vec![],
            onset_index: None,
            onset_time: None,
        }
    }

    #[test]
    fn members_and_weights_are_written_on_request() {
        let mut r = rec();
        r.key = "k".into();
        r.forecast = vec![1.5];
        r.members = vec![1.0, 2.0, 3.0, 4.0];
        r.weights = vec![0.5, 0.25, 0.125, 0.125];
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Csv).with_members(true);
        w.write(&r).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let header = text.lines().next().unwrap();
        assert!(header.ends_with(
            ",forecast_0,net_0,naive_0,seasonal_0,seasonal_change_0,weight_net,weight_naive,\
             weight_seasonal,weight_seasonal_change,onset_index,onset_time"
        ));
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .ends_with(",1.5,1,2,3,4,0.5,0.25,0.125,0.125,,"));
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Jsonl).with_members(true);
        w.write(&r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&w.into_inner().unwrap()).unwrap();
        assert_eq!(v["members"]["seasonal_change"][0], 4.0);
        assert_eq!(v["weights"]["naive"], 0.25);
        // Without the option the record is unchanged.
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Csv);
        w.write(&r).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(text
            .lines()
            .next()
            .unwrap()
            .ends_with(",forecast_0,onset_index,onset_time"));
    }

    #[test]
    fn json_lines_parse_back() {
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Jsonl);
        w.write(&rec()).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["index"], 7);
        assert_eq!(v["key"], "a,\"b\"\n");
        assert_eq!(v["error"], serde_json::Value::Null);
        assert_eq!(v["anomaly"], true);
        assert_eq!(v["forecast"][1], -2.25);
        assert_eq!(v["time"], 1.5e9);
    }

    #[test]
    fn csv_quotes_keys_and_leaves_missing_fields_empty() {
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Csv);
        w.write(&rec()).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(lines[0], "index,time,key,error,score,anomaly,updates,residual_0,residual_1,forecast_0,forecast_1,onset_index,onset_time\n");
        assert_eq!(
            &text[lines[0].len()..],
            "7,1500000000,\"a,\"\"b\"\"\n\",,4.5,1,9,,,1,-2.25,,\n"
        );
    }

    #[test]
    fn the_onset_of_a_reported_episode_is_written_as_the_time_is() {
        let mut r = rec();
        r.onset_index = Some(2);
        r.onset_time = Some(1.5e9 - 300.0);
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Csv);
        w.write(&r).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(text.ends_with(",1,-2.25,2,1499999700\n"), "{text}");
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Jsonl);
        w.write(&r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&w.into_inner().unwrap()).unwrap();
        assert_eq!(v["onset_index"], 2);
        assert_eq!(v["onset_time"], 1499999700.0);
        r.onset_index = None;
        r.onset_time = None;
        let mut w = RecordWriter::new(Vec::new(), OutputFormat::Jsonl);
        w.write(&r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&w.into_inner().unwrap()).unwrap();
        assert_eq!(v["onset_index"], serde_json::Value::Null);
        assert_eq!(v["onset_time"], serde_json::Value::Null);
    }
}
