//! Records to Graphite (carbon's plaintext protocol over TCP), reconnecting when the
//! connection fails or the server closes it.
//!
//! Each record becomes one line per figure, `PATH.tbptt.FIGURE VALUE TIMESTAMP`:
//! - `PATH` is the series' name with its labels flattened into it, each as two components
//!   `LABEL.VALUE` in key order: `cpu{host="a.b",cpu="0"}` gives `cpu.cpu.0.host.a_b`. A plain
//!   key (a Graphite path, a CSV `--key` value) keeps its dots; an unkeyed run is `tbptt`.
//!   Characters other than ASCII letters, digits, `_` and `-` become `_` (and so do dots in
//!   label names and values), so a path never breaks the protocol.
//! - `FIGURE` is `forecast`, `residual`, `score` or `anomaly` (1 or 0); with several values
//!   per event, `forecast_0`, `residual_0`, ... A figure that is not finite is left out, and so
//!   is the residual of a series' first event.
//! - `TIMESTAMP` is the event's time in whole seconds when it is a Unix time (2001 to 2286),
//!   else the time of writing.
//!
//! Lines are batched and queued as [`remote`] describes. Before each batch the
//! connection is checked for a close by the server, so a restarted carbon loses nothing that
//! was written after it closed; a batch whose write fails is sent again on a new connection.

use super::remote::{self, Backend, Remote, RemoteConfig, RemoteCounters, SendError};
use super::Sink;
use crate::detect::pipeline::OutputRecord;
use crate::io::labels;
use std::io::{self, Write};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The name of an unkeyed run's one series, in paths and measurements.
pub const UNKEYED: &str = "tbptt";

/// Writes records to a Graphite server.
///
/// # Example
/// ```no_run
/// use tbptt::io::sink::graphite::GraphiteSink;
/// use tbptt::io::sink::remote::RemoteConfig;
///
/// let rt = tokio::runtime::Runtime::new()?;
/// let _enter = rt.enter();
/// let sink = GraphiteSink::start("127.0.0.1:2003", RemoteConfig::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct GraphiteSink {
    remote: Remote,
    line: Vec<u8>,
}

impl GraphiteSink {
    /// A sink to `addr` (`HOST:PORT`), sending from a task on the current tokio runtime. The
    /// first connection is made when the first batch is due.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for an address without a port, invalid settings, or outside
    /// a tokio runtime.
    pub fn start(addr: &str, config: RemoteConfig) -> crate::Result<Self> {
        let ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            return Err(crate::Error::config(
                "output",
                format!("graphite://HOST:PORT expected, got graphite://{addr}"),
            ));
        }
        let backend = Carbon {
            addr: addr.to_string(),
            stream: None,
            connected: false,
        };
        let remote = Remote::start(&format!("graphite://{addr}"), config, backend)?;
        Ok(GraphiteSink {
            remote,
            line: Vec::with_capacity(1024),
        })
    }

    /// The sink's counters (lines written, retries, reconnections, drops).
    pub fn counters(&self) -> Arc<RemoteCounters> {
        self.remote.counters().clone()
    }
}

impl Sink for GraphiteSink {
    fn write(&mut self, record: &OutputRecord) -> io::Result<()> {
        self.line.clear();
        let ts = match remote::epoch_seconds(record.time) {
            Some(t) => t.floor() as i64,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        };
        let n = format_record(&mut self.line, record, ts)?;
        self.remote.push(&self.line, n);
        Ok(())
    }
}

/// Writes the lines of `r` to `out`; returns how many.
fn format_record(out: &mut Vec<u8>, r: &OutputRecord, ts: i64) -> io::Result<usize> {
    let multi = r.forecast.len() > 1;
    let mut n = 0;
    let mut line = |out: &mut Vec<u8>, figure: &str, i: Option<usize>, v: f64| {
        if !v.is_finite() {
            return Ok(());
        }
        write_path(out, &r.key);
        out.extend_from_slice(b".tbptt.");
        out.extend_from_slice(figure.as_bytes());
        if let Some(i) = i.filter(|_| multi) {
            write!(out, "_{i}")?;
        }
        writeln!(out, " {v} {ts}")?;
        n += 1;
        Ok::<(), io::Error>(())
    };
    for (i, v) in r.forecast.iter().enumerate() {
        line(out, "forecast", Some(i), *v)?;
    }
    if r.error.is_some() {
        for (i, v) in r.residual.iter().enumerate() {
            line(out, "residual", Some(i), *v)?;
        }
    }
    line(out, "score", None, r.score)?;
    line(out, "anomaly", None, f64::from(u8::from(r.anomaly)))?;
    Ok(n)
}

/// The series' path: its name, then each label's name and value, cleaned.
fn write_path(out: &mut Vec<u8>, key: &str) {
    if key.is_empty() {
        out.extend_from_slice(UNKEYED.as_bytes());
        return;
    }
    match labels::split(key) {
        Some((name, pairs)) => {
            clean(out, name.chars(), true);
            for (k, v) in pairs {
                out.push(b'.');
                clean(out, k.chars(), false);
                out.push(b'.');
                clean(out, v.chars(), false);
            }
        }
        None => clean(out, key.chars(), true),
    }
}

/// Appends `chars` with everything but ASCII letters, digits, `_`, `-` (and `.` in a name)
/// replaced by `_`; an empty component becomes `_`.
fn clean(out: &mut Vec<u8>, chars: impl Iterator<Item = char>, dots: bool) {
    let start = out.len();
    for c in chars {
        let keep = c.is_ascii_alphanumeric() || c == '_' || c == '-' || (dots && c == '.');
        out.push(if keep { c as u8 } else { b'_' });
    }
    if out.len() == start {
        out.push(b'_');
    }
}

/// The connection to carbon.
struct Carbon {
    addr: String,
    stream: Option<TcpStream>,
    /// Whether a connection was made before (the next one is a reconnection).
    connected: bool,
}

impl Carbon {
    /// Forgets the connection if the server has closed it (or it failed).
    fn check(&mut self) {
        let Some(s) = &self.stream else { return };
        let mut buf = [0u8; 256];
        match s.try_read(&mut buf) {
            // Carbon sends nothing: end of stream is a close, data is ignored.
            Ok(0) => self.stream = None,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.stream = None,
        }
    }
}

impl Backend for Carbon {
    async fn send(&mut self, body: &[u8], counters: &RemoteCounters) -> Result<(), SendError> {
        self.check();
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| SendError::Transient(Box::new(e)))?;
            let _ = s.set_nodelay(true);
            if self.connected {
                counters.reconnected();
                tracing::info!("{}: reconnected", counters.target());
            }
            self.connected = true;
            self.stream = Some(s);
        }
        let Some(s) = self.stream.as_mut() else {
            return Err(SendError::Refused("no connection".into()));
        };
        match s.write_all(body).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stream = None;
                Err(SendError::Transient(Box::new(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &OutputRecord) -> String {
        let mut out = Vec::new();
        format_record(&mut out, r, 1_700_000_000).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn labels_are_flattened_into_the_path_and_cleaned() {
        let r = OutputRecord {
            key: r#"cpu usage{host="a.example com",x="\"q\""}"#.into(),
            error: Some(0.25),
            residual: vec![0.5],
            forecast: vec![1.25],
            score: 0.75,
            anomaly: true,
            ..Default::default()
        };
        assert_eq!(
            lines(&r),
            "cpu_usage.host.a_example_com.x._q_.tbptt.forecast 1.25 1700000000\n\
             cpu_usage.host.a_example_com.x._q_.tbptt.residual 0.5 1700000000\n\
             cpu_usage.host.a_example_com.x._q_.tbptt.score 0.75 1700000000\n\
             cpu_usage.host.a_example_com.x._q_.tbptt.anomaly 1 1700000000\n"
        );
    }

    #[test]
    fn plain_keys_keep_their_dots_and_unkeyed_runs_are_tbptt() {
        let r = OutputRecord {
            key: "collectd.host-1.load.shortterm".into(),
            forecast: vec![1.0, f64::NAN],
            ..Default::default()
        };
        // No residual for a first event, a non-finite figure is left out.
        assert_eq!(
            lines(&r),
            "collectd.host-1.load.shortterm.tbptt.forecast_0 1 1700000000\n\
             collectd.host-1.load.shortterm.tbptt.score 0 1700000000\n\
             collectd.host-1.load.shortterm.tbptt.anomaly 0 1700000000\n"
        );
        let r = OutputRecord {
            forecast: vec![2.0],
            ..Default::default()
        };
        assert!(lines(&r).starts_with("tbptt.tbptt.forecast 2 "));
    }

    #[test]
    fn an_address_needs_a_port() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _enter = rt.enter();
        assert!(GraphiteSink::start("localhost", RemoteConfig::default()).is_err());
        assert!(GraphiteSink::start("localhost:2003", RemoteConfig::default()).is_ok());
    }
}
