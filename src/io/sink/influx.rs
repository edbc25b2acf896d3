//! Records to InfluxDB: line protocol POSTed over HTTP (hyper's client), batched, retried
//! with backoff, from a bounded queue ([`remote`]).
//!
//! Each record becomes one line, `MEASUREMENT,TAGS FIELDS TIMESTAMP`:
//! - `MEASUREMENT` is the series' metric name (a plain key as it is; `tbptt` for an unkeyed
//!   run), `TAGS` its labels, in key order;
//! - `FIELDS` are `forecast`, `residual`, `score` and `anomaly` (a boolean); with several
//!   values per event `forecast_0`, `residual_0`, ... A figure that is not finite is left out,
//!   and so is the residual of a series' first event;
//! - `TIMESTAMP` is the event's time in nanoseconds when it is a Unix time (2001 to 2286);
//!   otherwise there is none and InfluxDB stamps the line when it arrives.
//!
//! Measurement names escape commas and spaces, tag keys and values also equals signs; a
//! newline in a value is written as the two characters `\n` and a trailing backslash is
//! dropped (the protocol cannot carry either).
//!
//! A 2xx answer counts the batch as written; 429, 5xx and transport errors are retried; any
//! other answer (a database that does not exist, a line InfluxDB refuses) drops the batch,
//! counted and logged with InfluxDB's message.

use super::remote::{self, Backend, Remote, RemoteConfig, RemoteCounters, SendError};
use super::Sink;
use crate::detect::pipeline::OutputRecord;
use crate::io::labels;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::io::{self, Write};
use std::sync::Arc;

/// Writes records to InfluxDB.
///
/// # Example
/// ```no_run
/// use tbptt::io::sink::influx::InfluxSink;
/// use tbptt::io::sink::remote::RemoteConfig;
///
/// let rt = tokio::runtime::Runtime::new()?;
/// let _enter = rt.enter();
/// let sink = InfluxSink::start("http://127.0.0.1:8086/write?db=tbptt", RemoteConfig::default())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct InfluxSink {
    remote: Remote,
    line: Vec<u8>,
}

impl InfluxSink {
    /// A sink that POSTs to `url` (`http://HOST:PORT/write?db=NAME`, or `/api/v2/write?...`),
    /// sending from a task on the current tokio runtime.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for a URL that is not `http://` (TLS is not built in: put a
    /// proxy in front), has a `precision` other than `ns`, invalid settings, or outside a
    /// tokio runtime.
    pub fn start(url: &str, config: RemoteConfig) -> crate::Result<Self> {
        let bad = |why: &str| crate::Error::config("output", format!("influx+{url}: {why}"));
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad(
                "only http:// is supported (put a TLS-terminating proxy in front for https)",
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        let query = uri.query().unwrap_or("");
        if query
            .split('&')
            .any(|p| p.starts_with("precision=") && p != "precision=ns")
        {
            return Err(bad(
                "timestamps are written in nanoseconds: leave out precision or set precision=ns",
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let backend = Http { client, uri };
        let remote = Remote::start(&format!("influx+{url}"), config, backend)?;
        Ok(InfluxSink {
            remote,
            line: Vec::with_capacity(1024),
        })
    }

    /// The sink's counters (lines written, retries, drops).
    pub fn counters(&self) -> Arc<RemoteCounters> {
        self.remote.counters().clone()
    }
}

impl Sink for InfluxSink {
    fn write(&mut self, record: &OutputRecord) -> io::Result<()> {
        self.line.clear();
        format_line(&mut self.line, record)?;
        self.remote.push(&self.line, 1);
        Ok(())
    }
}

/// Writes the line of `r` to `out`.
fn format_line(out: &mut Vec<u8>, r: &OutputRecord) -> io::Result<()> {
    if r.key.is_empty() {
        out.extend_from_slice(super::graphite::UNKEYED.as_bytes());
    } else {
        match labels::split(&r.key) {
            Some((name, pairs)) => {
                escape(out, name.chars(), b", ");
                for (k, v) in pairs {
                    out.push(b',');
                    escape(out, k.chars(), b", =");
                    out.push(b'=');
                    escape(out, v.chars(), b", =");
                }
            }
            None => escape(out, r.key.chars(), b", "),
        }
    }
    let multi = r.forecast.len() > 1;
    let mut first = true;
    let mut field = |out: &mut Vec<u8>, name: &str, i: Option<usize>, v: f64| {
        if !v.is_finite() {
            return Ok(());
        }
        out.push(if first { b' ' } else { b',' });
        first = false;
        out.extend_from_slice(name.as_bytes());
        if let Some(i) = i.filter(|_| multi) {
            write!(out, "_{i}")?;
        }
        write!(out, "={v}")
    };
    for (i, v) in r.forecast.iter().enumerate() {
        field(out, "forecast", Some(i), *v)?;
    }
    if r.error.is_some() {
        for (i, v) in r.residual.iter().enumerate() {
            field(out, "residual", Some(i), *v)?;
        }
    }
    field(out, "score", None, r.score)?;
    out.push(if first { b' ' } else { b',' });
    write!(out, "anomaly={}", r.anomaly)?;
    if let Some(t) = remote::epoch_seconds(r.time) {
        write!(out, " {}", (t * 1e9).round() as i64)?;
    }
    out.push(b'\n');
    Ok(())
}

/// Appends `chars`, backslash-escaping those in `special`; a newline becomes `\n` and a
/// trailing backslash is dropped.
fn escape(out: &mut Vec<u8>, chars: impl Iterator<Item = char>, special: &[u8]) {
    let start = out.len();
    let mut buf = [0u8; 4];
    for c in chars {
        if c == '\n' {
            out.extend_from_slice(b"\\n");
            continue;
        }
        if c.is_ascii() && special.contains(&(c as u8)) {
            out.push(b'\\');
        }
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    while out.len() > start && out.last() == Some(&b'\\') {
        out.pop();
    }
}

/// The HTTP client and where it posts.
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
}

impl Backend for Http {
    async fn send(&mut self, body: &[u8], _: &RemoteCounters) -> Result<(), SendError> {
        let request = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| SendError::Refused(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| SendError::Transient(Box::new(e)))?;
        let status = response.status();
        if status.is_success() {
            // Read the (empty) body so the connection is reused.
            let _ = response.into_body().collect().await;
            return Ok(());
        }
        let text = match response.into_body().collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
            Err(_) => String::new(),
        };
        let message = format!("InfluxDB answered {status}: {}", cut(&text));
        if status.is_server_error() || status == hyper::StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Transient(message.into()))
        } else {
            Err(SendError::Refused(message))
        }
    }
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(r: &OutputRecord) -> String {
        let mut out = Vec::new();
        format_line(&mut out, r).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn measurement_tags_fields_and_time() {
        let r = OutputRecord {
            key: r#"cpu usage,x{host="a b",k="v=1,2",n="x\ny"}"#.into(),
            time: Some(1_700_000_000.5),
            error: Some(0.25),
            residual: vec![-0.5],
            forecast: vec![1.25],
            score: 0.75,
            anomaly: true,
            ..Default::default()
        };
        assert_eq!(
            line(&r),
            "cpu\\ usage\\,x,host=a\\ b,k=v\\=1\\,2,n=x\\ny \
             forecast=1.25,residual=-0.5,score=0.75,anomaly=true 1700000000500000000\n"
        );
    }

    #[test]
    fn several_values_plain_keys_and_no_time() {
        let r = OutputRecord {
            key: "collectd.host.load".into(),
            time: Some(1999.0),
            forecast: vec![1.0, f64::INFINITY],
            score: 0.0,
            ..Default::default()
        };
        assert_eq!(
            line(&r),
            "collectd.host.load forecast_0=1,score=0,anomaly=false\n"
        );
        let r = OutputRecord {
            forecast: vec![3.0],
            ..Default::default()
        };
        assert_eq!(line(&r), "tbptt forecast=3,score=0,anomaly=false\n");
    }

    #[test]
    fn a_trailing_backslash_is_dropped() {
        let mut out = Vec::new();
        escape(&mut out, "ab\\".chars(), b", =");
        assert_eq!(out, b"ab");
    }

    /// A loopback HTTP server that answers request `i` with `statuses[i]` (204 past the end)
    /// and keeps every request's body.
    fn server(
        statuses: Vec<u16>,
    ) -> (
        String,
        Arc<std::sync::Mutex<Vec<String>>>,
        std::thread::JoinHandle<()>,
    ) {
        use std::io::{BufRead, Read};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/write?db=x", l.local_addr().unwrap());
        let bodies: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let got = bodies.clone();
        let t = std::thread::spawn(move || {
            for i in 0..=statuses.len() {
                let Ok((conn, _)) = l.accept() else { return };
                let mut r = std::io::BufReader::new(conn);
                let mut len = 0;
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                got.lock().unwrap().push(String::from_utf8(body).unwrap());
                let status = statuses.get(i).copied().unwrap_or(204);
                let text = if status == 404 {
                    "{\"error\":\"database not found: \\\"x\\\"\"}"
                } else {
                    ""
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = r.get_mut().write_all(answer.as_bytes());
            }
        });
        (url, bodies, t)
    }

    fn quick() -> RemoteConfig {
        RemoteConfig {
            flush_interval: std::time::Duration::from_millis(20),
            backoff: std::time::Duration::from_millis(5),
            close_timeout: std::time::Duration::from_secs(5),
            ..RemoteConfig::default()
        }
    }

    fn send_three(url: &str, config: RemoteConfig) -> super::remote::RemoteStats {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _enter = rt.enter();
        let mut sink = InfluxSink::start(url, config).unwrap();
        for i in 0..3 {
            let r = OutputRecord {
                key: format!("m{{i=\"{i}\"}}"),
                forecast: vec![i as f64],
                ..Default::default()
            };
            sink.write(&r).unwrap();
        }
        let counters = sink.counters();
        drop(sink);
        counters.snapshot()
    }

    #[test]
    fn server_errors_are_retried_with_backoff_and_counted() {
        let (url, bodies, t) = server(vec![503, 500]);
        let s = send_three(&url, quick());
        t.join().unwrap();
        assert_eq!((s.written, s.batches, s.retries, s.dropped), (3, 1, 2, 0));
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies.len(), 3);
        assert!(bodies.iter().all(|b| b == &bodies[0]));
        assert_eq!(bodies[0].lines().count(), 3);
        assert!(bodies[0].starts_with("m,i=0 forecast=0,score=0,anomaly=false\n"));
    }

    #[test]
    fn a_refused_batch_is_dropped_at_once_and_a_dead_server_after_its_attempts() {
        let (url, bodies, t) = server(vec![404]);
        let s = send_three(&url, quick());
        assert_eq!((s.written, s.retries, s.dropped), (0, 0, 3));
        assert_eq!(bodies.lock().unwrap().len(), 1);
        drop(t);
        // Nobody listens: every attempt fails to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RemoteConfig {
            max_attempts: 4,
            ..quick()
        };
        let s = send_three(&format!("http://127.0.0.1:{port}/write?db=x"), config);
        assert_eq!((s.written, s.retries, s.dropped), (0, 3, 3));
    }

    #[test]
    fn only_http_and_nanoseconds() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _enter = rt.enter();
        let c = RemoteConfig::default;
        assert!(InfluxSink::start("https://h:8086/write?db=a", c()).is_err());
        assert!(InfluxSink::start("http://h:8086/write?db=a&precision=s", c()).is_err());
        assert!(InfluxSink::start("http://h:8086/write?db=a&precision=ns", c()).is_ok());
    }
}
