//! Input sources: stdin, files and sockets → one bounded channel of [`SourceItem`]s.
//!
//! # Brief overview
//!
//! - [`SourceSpec`]: where events come from, parsed from `-` (stdin), a path (a file),
//!   `tcp://ADDR`, `udp://ADDR`, `unix://PATH` (listeners, [`ListenAddr`]) or
//!   `connect://HOST:PORT` (a TCP client that reconnects with [`Backoff`]).
//! - [`SourceConfig`]: the spec, the [`DecoderConfig`], the channel capacity and the socket
//!   limits.
//! - [`spawn`] starts the source on the current tokio runtime and returns the receiving end of
//!   a bounded channel plus a [`SourceHandle`] (bound address, [`SourceStats`], outcome).
//! - [`SourceItem`]: a decoded [`Arrival`] (event, [`Origin`], arrival time), a rejected line or
//!   frame (with its [`ParseError`], to count, log and skip), or a peer's connect/disconnect.
//!
//! Each stream (stdin, the file, each TCP or Unix connection) has its own framer and decoder,
//! so each has its own CSV header and its own line numbers; datagrams of a UDP socket share
//! one decoder. Items of all streams go into the one channel in arrival order.
//!
//! **Backpressure.** A full channel makes stream readers wait, which slows the senders down
//! through TCP flow control: no event is dropped. UDP cannot push back: a datagram that finds
//! the channel full is dropped and counted in [`SourceStats::dropped_datagrams`].
//!
//! **End.** The channel closes (every sender dropped) when the source ends: at the end of
//! stdin or the file, when a connect source gives up, after a fatal [`ParseError`] (see
//! [`ParseError::is_fatal`]; stdin, file, UDP and connect sources stop on one), and when the
//! [`Shutdown`] signal fires. Listeners run until shutdown. [`SourceHandle::join`] then tells
//! how the source ended.
//!
//! # Example
//! ```
//! use tbptt::io::shutdown;
//! use tbptt::io::source::{self, SourceConfig, SourceItem};
//!
//! let path = std::env::temp_dir().join(format!("tbptt-source-doc-{}.csv", std::process::id()));
//! std::fs::write(&path, "cpu,mem\n0.5,2\n0.7,x\n0.9,4\n")?;
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let (values, rejected) = runtime.block_on(async {
//!     let (_trigger, shutdown) = shutdown::channel();
//!     let config = SourceConfig { spec: path.as_path().into(), ..Default::default() };
//!     let (mut items, handle) = source::spawn(config, shutdown)?;
//!     let (mut values, mut rejected) = (Vec::new(), Vec::new());
//!     while let Some(item) = items.recv().await {
//!         match item {
//!             SourceItem::Event(record) => values.push(record.event.values.clone()),
//!             SourceItem::Rejected { error, .. } => rejected.push(error.to_string()),
//!             _ => {}
//!         }
//!     }
//!     handle.join().await?;
//!     Ok::<_, source::SourceError>((values, rejected))
//! })?;
//! std::fs::remove_file(&path)?;
//! assert_eq!(values, [[0.5, 2.0], [0.9, 4.0]]);
//! assert_eq!(rejected, ["line 3: column `mem`: not a number: `x`"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::event::Event;
use crate::io::format::{Columns, Decoder, DecoderConfig, ParseError, Position};
use crate::io::shutdown::Shutdown;

mod connect;
mod file;
mod http;
mod slots;
mod stdin;
mod stream;
mod tcp;
mod udp;
mod unix;

use self::stream::{Ctx, Output, Template};

/// The result type of source operations.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// The largest UDP datagram read, in bytes (larger ones cannot exist over IPv4 or IPv6
/// without jumbograms).
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Where events come from.
///
/// Parses from (and displays as):
///
/// | text | source |
/// | --- | --- |
/// | `-` | standard input |
/// | `data.csv`, `file://data.csv` | a file |
/// | `tcp://127.0.0.1:9000` | a TCP listener ([`ListenAddr::Tcp`]) |
/// | `udp://127.0.0.1:9001` | a UDP socket ([`ListenAddr::Udp`]) |
/// | `unix:///tmp/x.sock`, `unix://relative/x.sock` | a Unix stream listener ([`ListenAddr::Unix`]) |
/// | `connect://host:9000` | a TCP client that reconnects with [`Backoff`] |
///
/// Schemes are case-insensitive; `localhost` stands for `127.0.0.1` in listen addresses.
///
/// # Example
/// ```
/// use tbptt::io::source::{ListenAddr, SourceSpec};
///
/// assert_eq!("-".parse::<SourceSpec>()?, SourceSpec::Stdin);
/// assert_eq!("data.csv".parse::<SourceSpec>()?, SourceSpec::File("data.csv".into()));
/// let spec: SourceSpec = "tcp://127.0.0.1:9000".parse()?;
/// assert_eq!(spec, SourceSpec::Listen(ListenAddr::Tcp("127.0.0.1:9000".parse()?)));
/// assert_eq!(spec.to_string(), "tcp://127.0.0.1:9000");
/// let err = "udp://127.0.0.1".parse::<SourceSpec>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid source `udp://127.0.0.1`: `127.0.0.1` is not an IP:port address \
///      (e.g. 127.0.0.1:9000)"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SourceSpec {
    /// Standard input, read on its own thread. The default.
    #[default]
    Stdin,
    /// A file, read to its end.
    File(PathBuf),
    /// A listening socket that accepts any number of senders.
    Listen(ListenAddr),
    /// A TCP server to connect to, as `host:port`; reconnects after failures and drops.
    Connect(String),
}

impl From<ListenAddr> for SourceSpec {
    fn from(addr: ListenAddr) -> Self {
        SourceSpec::Listen(addr)
    }
}

impl From<PathBuf> for SourceSpec {
    fn from(path: PathBuf) -> Self {
        SourceSpec::File(path)
    }
}

impl From<&Path> for SourceSpec {
    fn from(path: &Path) -> Self {
        SourceSpec::File(path.to_path_buf())
    }
}

/// The address of a listening socket.
///
/// Parses from `tcp://IP:PORT`, `udp://IP:PORT` or `unix://PATH`, see [`SourceSpec`]; a bare
/// `IP:PORT` (or `localhost:PORT`) is a TCP listener.
///
/// # Example
/// ```
/// use tbptt::io::source::ListenAddr;
///
/// let bare: ListenAddr = "127.0.0.1:9000".parse()?;
/// assert_eq!(bare, "tcp://127.0.0.1:9000".parse()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ListenAddr {
    /// A TCP listener; each connection is one stream.
    Tcp(SocketAddr),
    /// A UDP socket; each datagram holds one MessagePack record, or one or more lines.
    Udp(SocketAddr),
    /// A Unix stream socket at this path; each connection is one stream.
    Unix(PathBuf),
    /// An HTTP/1.1 listener for the monitoring protocols: InfluxDB `/write` and
    /// `/api/v2/write`, Prometheus remote write at `/api/v1/write`, and `/ping`. The paths
    /// choose the format, whatever the decoder's.
    Http(SocketAddr),
}

/// A source string that [`SourceSpec::from_str`] or [`ListenAddr::from_str`] rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid source `{spec}`: {reason}")]
pub struct SpecError {
    /// The text as given.
    pub spec: String,
    /// What is wrong with it, naming the bad part.
    pub reason: String,
}

impl SpecError {
    fn new(spec: &str, reason: impl Into<String>) -> Self {
        Self {
            spec: spec.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Splits `scheme://rest`, with the scheme lowercased.
fn split_scheme(s: &str) -> Option<(String, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

/// Parses the `IP:PORT` of a listen address (`localhost` means `127.0.0.1`).
fn socket_addr(spec: &str, addr: &str) -> Result<SocketAddr, SpecError> {
    let bad = || {
        SpecError::new(
            spec,
            format!("`{addr}` is not an IP:port address (e.g. 127.0.0.1:9000)"),
        )
    };
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            Ok(SocketAddr::from(([127, 0, 0, 1], port)))
        }
        _ => Err(bad()),
    }
}

impl FromStr for ListenAddr {
    type Err = SpecError;

    /// # Errors
    /// [`SpecError`] for a missing or unknown scheme, an address that is not `IP:PORT`, or an
    /// empty path.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let Some((scheme, rest)) = split_scheme(s) else {
            // The scheme defaults to tcp: `127.0.0.1:9000` is `tcp://127.0.0.1:9000`.
            return socket_addr(s, s).map(ListenAddr::Tcp).map_err(|_| {
                SpecError::new(
                    s,
                    "expected tcp://IP:PORT, udp://IP:PORT, unix://PATH, http://IP:PORT or IP:PORT \
                     (TCP)",
                )
            });
        };
        match scheme.as_str() {
            "tcp" => Ok(ListenAddr::Tcp(socket_addr(s, rest)?)),
            "udp" => Ok(ListenAddr::Udp(socket_addr(s, rest)?)),
            "unix" if rest.is_empty() => Err(SpecError::new(s, "the socket path is empty")),
            "unix" => Ok(ListenAddr::Unix(PathBuf::from(rest))),
            "http" => Ok(ListenAddr::Http(socket_addr(
                s,
                rest.trim_end_matches('/'),
            )?)),
            _ => Err(SpecError::new(
                s,
                format!("unknown scheme `{scheme}`; expected tcp, udp, unix or http"),
            )),
        }
    }
}

impl FromStr for SourceSpec {
    type Err = SpecError;

    /// # Errors
    /// [`SpecError`] for an empty string, an unknown scheme, or a bad address or path.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        if s.is_empty() {
            return Err(SpecError::new(
                s,
                "empty; use `-` for stdin, a path, or tcp://, udp://, unix://, connect://",
            ));
        }
        if s == "-" {
            return Ok(SourceSpec::Stdin);
        }
        let Some((scheme, rest)) = split_scheme(s) else {
            return Ok(SourceSpec::File(PathBuf::from(s)));
        };
        match scheme.as_str() {
            "tcp" | "udp" | "unix" | "http" => Ok(SourceSpec::Listen(s.parse()?)),
            "file" if rest.is_empty() => Err(SpecError::new(s, "the file path is empty")),
            "file" => Ok(SourceSpec::File(PathBuf::from(rest))),
            "connect" => {
                let port = rest.rsplit_once(':').and_then(|(host, port)| {
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    (!host.is_empty()).then(|| port.parse::<u16>().ok())?
                });
                match port {
                    Some(_) => Ok(SourceSpec::Connect(rest.to_owned())),
                    None => Err(SpecError::new(
                        s,
                        format!("`{rest}` is not a HOST:PORT address (e.g. 127.0.0.1:9000)"),
                    )),
                }
            }
            _ => Err(SpecError::new(
                s,
                format!(
                    "unknown scheme `{scheme}`; expected tcp, udp, unix, http, connect or file \
                     (or `-` for stdin, or a plain path)"
                ),
            )),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ListenAddr::Udp(a) => write!(f, "udp://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            ListenAddr::Http(a) => write!(f, "http://{a}"),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Stdin => f.write_str("-"),
            SourceSpec::File(p) => {
                let text = p.to_string_lossy();
                if text == "-" || text.contains("://") {
                    write!(f, "file://{text}")
                } else {
                    f.write_str(&text)
                }
            }
            SourceSpec::Listen(a) => a.fmt(f),
            SourceSpec::Connect(a) => write!(f, "connect://{a}"),
        }
    }
}

impl TryFrom<String> for SourceSpec {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Self, SpecError> {
        s.parse()
    }
}

impl From<SourceSpec> for String {
    fn from(spec: SourceSpec) -> Self {
        spec.to_string()
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Self, SpecError> {
        s.parse()
    }
}

impl From<ListenAddr> for String {
    fn from(addr: ListenAddr) -> Self {
        addr.to_string()
    }
}

/// Reconnection policy of a connect source: wait `initial` after the first failed attempt,
/// double the wait after each further one up to `max`, and give up after `max_attempts`
/// failed attempts in a row. A successful connection resets the count; after a connection
/// drops, the source waits `initial` before reconnecting.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use tbptt::io::source::Backoff;
///
/// let backoff = Backoff::default();
/// let waits: Vec<_> = (1..=8).map(|n| backoff.delay(n).as_millis()).collect();
/// assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    /// The first wait, in milliseconds when (de)serialized. Must be positive. Default: 100 ms.
    #[serde(rename = "initial_ms", with = "millis")]
    pub initial: Duration,
    /// The longest wait, in milliseconds when (de)serialized; at least `initial`.
    /// Default: 5 s.
    #[serde(rename = "max_ms", with = "millis")]
    pub max: Duration,
    /// Failed attempts in a row after which the source gives up and closes its channel;
    /// `None` retries forever. Must not be `Some(0)`. Default: `None`.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failed attempt in a row (counted from 1):
    /// `initial · 2^(failures − 1)`, at most `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Serde helper: an optional [`Duration`] as whole milliseconds or null.
mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|v| v.map(Duration::from_millis))
    }
}

/// Serde helper: a [`Duration`] as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Settings of a source; see [`spawn`].
///
/// # Example
/// ```
/// use tbptt::io::source::{SourceConfig, SourceSpec};
///
/// let config: SourceConfig =
///     serde_json::from_str(r#"{"spec": "udp://127.0.0.1:9001", "channel_capacity": 64}"#)?;
/// assert_eq!(config.spec, "udp://127.0.0.1:9001".parse::<SourceSpec>()?);
/// assert_eq!(config.max_connections, 64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// Where events come from. Default: [`SourceSpec::Stdin`].
    pub spec: SourceSpec,
    /// How bytes become events (format, columns, line and frame limits). Default: CSV with
    /// [`DecoderConfig::default`].
    pub decoder: DecoderConfig,
    /// Capacity of the item channel, in items; at least 1. Default: 1024.
    pub channel_capacity: usize,
    /// Bytes asked for per read of a stream (stdin, file, connection); at least 1.
    /// Default: 64 KiB (65536).
    pub read_buffer: usize,
    /// Most concurrent connections of a TCP or Unix listener; at least 1. When they are
    /// open, a new client makes the listener close the connection that has been idle longest,
    /// if it has been idle for at least `evict_idle` (counted in
    /// [`SourceStats::evicted_connections`]); otherwise the new client is closed at once
    /// (counted in [`SourceStats::refused_connections`]). Default: 64.
    pub max_connections: usize,
    /// Most concurrent connections of a TCP listener from one IP address; at least 1. At the
    /// limit, that address's own longest-idle connection makes room as above, or the new one
    /// is refused: one host cannot take every slot. Default: 16.
    pub max_connections_per_peer: usize,
    /// A TCP or Unix connection that sends nothing for this long is closed (counted in
    /// [`SourceStats::timed_out_connections`]); `None`: never. Waiting on a full channel
    /// does not count as idle. In milliseconds when (de)serialized. Default: 120 s.
    #[serde(rename = "idle_timeout_ms", with = "opt_millis")]
    pub idle_timeout: Option<Duration>,
    /// How long a connection must have been idle before a new client may take its slot; in
    /// milliseconds when (de)serialized. Default: 1 s.
    #[serde(rename = "evict_idle_ms", with = "millis")]
    pub evict_idle: Duration,
    /// Close a TCP or Unix connection at its first rejected record, instead of skipping the
    /// record (strict mode per connection: a bad peer costs itself its connection, never the
    /// others theirs). Default: false.
    pub close_on_reject: bool,
    /// Receive buffer asked of the kernel for a UDP socket (`SO_RCVBUF`), in bytes; at
    /// least 1. The kernel may grant less (Linux caps it at `net.core.rmem_max`, and reports
    /// twice the granted size); the size granted is [`SourceStats::udp_recv_buffer`].
    /// Default: 8 MiB (8388608).
    pub udp_recv_buffer: usize,
    /// Reconnection policy of a connect source. Default: [`Backoff::default`].
    pub reconnect: Backoff,
    /// Longest wait for one connection attempt of a connect source, in milliseconds when
    /// (de)serialized; a timeout counts as a failed attempt. Must be positive. Default: 10 s.
    #[serde(rename = "connect_timeout_ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Largest HTTP request body an HTTP listener accepts, in bytes, both as sent and once
    /// decompressed (gzip, snappy); a larger one is answered 413. At least 1. Default: 8 MiB
    /// (8388608).
    pub max_body: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            spec: SourceSpec::Stdin,
            decoder: DecoderConfig::default(),
            channel_capacity: 1024,
            read_buffer: 64 * 1024,
            max_connections: 64,
            max_connections_per_peer: 16,
            idle_timeout: Some(Duration::from_secs(120)),
            evict_idle: Duration::from_secs(1),
            close_on_reject: false,
            udp_recv_buffer: 8 << 20,
            reconnect: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            max_body: 8 << 20,
        }
    }
}

impl SourceConfig {
    /// A default config reading from `spec`.
    pub fn new(spec: impl Into<SourceSpec>) -> Self {
        Self {
            spec: spec.into(),
            ..Self::default()
        }
    }

    /// Checks the settings without starting anything (as [`spawn`] does first).
    ///
    /// # Errors
    /// [`SourceError::Config`] naming the first bad field: a zero capacity, buffer, connection
    /// limit or timeout, a bad [`Backoff`], or a bad [`DecoderConfig`].
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field, reason: &str| Err(SourceError::Config(crate::Error::config(field, reason)));
        if self.channel_capacity == 0 {
            return bad("channel_capacity", "must be at least 1");
        }
        if self.read_buffer == 0 {
            return bad("read_buffer", "must be at least 1 byte");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if self.max_connections_per_peer == 0 {
            return bad("max_connections_per_peer", "must be at least 1");
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return bad("idle_timeout", "must be positive (or None for no timeout)");
        }
        if self.udp_recv_buffer == 0 {
            return bad("udp_recv_buffer", "must be at least 1 byte");
        }
        if self.max_body == 0 {
            return bad("max_body", "must be at least 1 byte");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be positive");
        }
        if self.reconnect.initial.is_zero() {
            return bad("reconnect.initial", "must be positive");
        }
        if self.reconnect.max < self.reconnect.initial {
            return bad("reconnect.max", "must be at least reconnect.initial");
        }
        if self.reconnect.max_attempts == Some(0) {
            return bad(
                "reconnect.max_attempts",
                "must be at least 1 (or None to retry forever)",
            );
        }
        self.decoder.build()?;
        Ok(())
    }
}

/// The kind of source an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// Standard input.
    Stdin,
    /// A file.
    File,
    /// A connection accepted by a TCP listener.
    Tcp,
    /// A UDP datagram.
    Udp,
    /// A connection accepted by a Unix socket listener.
    Unix,
    /// A connection made by a connect source.
    Connect,
    /// A request to an HTTP listener.
    Http,
}

/// Where an item came from: the source, the peer (connection) and the record's position.
///
/// Displays as `tcp 127.0.0.1:53122, line 17`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The kind of source.
    pub kind: SourceKind,
    /// The peer, for logs: `stdin`, `file data.csv`, `tcp 127.0.0.1:53122`,
    /// `udp 127.0.0.1:40000`, `unix /tmp/x.sock #3`, `tcp example.org:9000` (connect).
    pub name: Arc<str>,
    /// The connection id: counted from 1 per source for each TCP/Unix connection and each
    /// (re)connection of a connect source, per sender address for UDP (up to 4096 remembered
    /// senders); 0 for stdin and files.
    pub peer: u64,
    /// The record's line number in its stream (CSV, JSON Lines) or its stream byte offset
    /// (MessagePack; UDP: the offset counted over all datagrams of the socket). In
    /// [`SourceItem::Connected`] it is line or byte 0; in [`SourceItem::Disconnected`] the
    /// position of the stream's last record.
    pub position: Position,
}

impl Origin {
    pub(crate) fn new(
        kind: SourceKind,
        name: impl Into<Arc<str>>,
        peer: u64,
        pos: Position,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            peer,
            position: pos,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.name, self.position)
    }
}

/// A decoded event and where and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// The event; it goes back to the source's [`EventPool`] when dropped.
    pub event: Pooled,
    /// Its source, peer and line number (or byte offset).
    pub origin: Origin,
    /// When the bytes that completed it were read.
    pub received: Instant,
}

/// One item a source delivers, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    /// A decoded event.
    Event(Arrival),
    /// A line or frame that could not be decoded. The consumer counts it, logs it
    /// (rate-limited) and skips it, or stops (strict mode). After a fatal error
    /// ([`ParseError::is_fatal`]) the stream stops: a listener closes that connection, other
    /// sources end.
    Rejected {
        /// Where the bad record is.
        origin: Origin,
        /// Why it was rejected; names the same position.
        error: ParseError,
    },
    /// A TCP or Unix client connected, or a connect source connected.
    Connected(Origin),
    /// A connection ended. Every `Connected` is followed by one `Disconnected`, unless the
    /// channel is full at shutdown.
    Disconnected {
        /// The peer, with the position of its last record.
        origin: Origin,
        /// Why, if not a clean end of stream: an I/O error, a fatal parse error, or
        /// `shutdown`.
        reason: Option<String>,
    },
}

impl SourceItem {
    /// The item's origin.
    pub fn origin(&self) -> &Origin {
        match self {
            SourceItem::Event(r) => &r.origin,
            SourceItem::Rejected { origin, .. }
            | SourceItem::Connected(origin)
            | SourceItem::Disconnected { origin, .. } => origin,
        }
    }
}

/// Counters of a running source, shared with its tasks; read them at any time.
#[derive(Debug, Default)]
pub struct SourceStats {
    events: AtomicU64,
    rejected: AtomicU64,
    dropped_datagrams: AtomicU64,
    connections: AtomicU64,
    active_connections: AtomicU64,
    refused_connections: AtomicU64,
    evicted_connections: AtomicU64,
    timed_out_connections: AtomicU64,
    closed_on_error: AtomicU64,
    kernel_dropped_datagrams: AtomicU64,
    udp_recv_buffer: AtomicU64,
    columns: std::sync::OnceLock<Columns>,
    skipped_fields: AtomicU64,
    stale_markers: AtomicU64,
    out_of_order: AtomicU64,
    non_finite_samples: AtomicU64,
    http_requests: AtomicU64,
    http_refused: AtomicU64,
}

impl SourceStats {
    /// The input's columns as the first decoded record fixed them (with several
    /// connections, the first one's); `None` until an event was decoded.
    pub fn columns(&self) -> Option<&Columns> {
        self.columns.get()
    }

    /// Keeps the decoder's columns if none are kept yet (one atomic load once they are).
    pub(crate) fn note_columns(&self, decoder: &Decoder) {
        if self.columns.get().is_none() {
            if let Some(c) = decoder.columns() {
                _ = self.columns.set(c);
            }
        }
    }

    /// Events delivered to the channel.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Lines or frames rejected (delivered as [`SourceItem::Rejected`], or dropped with their
    /// datagram).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// UDP datagrams (or their undelivered remainders) dropped because the channel was full.
    pub fn dropped_datagrams(&self) -> u64 {
        self.dropped_datagrams.load(Ordering::Relaxed)
    }

    /// Connections accepted (listeners) or made (connect), in total.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Ordering::Relaxed)
    }

    /// Clients closed at once because a connection limit was reached and no open
    /// connection had been idle long enough to make room.
    pub fn refused_connections(&self) -> u64 {
        self.refused_connections.load(Ordering::Relaxed)
    }

    /// Connections closed, having been idle longest, to make room for a new client.
    pub fn evicted_connections(&self) -> u64 {
        self.evicted_connections.load(Ordering::Relaxed)
    }

    /// Connections closed after sending nothing for the idle timeout.
    pub fn timed_out_connections(&self) -> u64 {
        self.timed_out_connections.load(Ordering::Relaxed)
    }

    /// Connections closed after a read error, a fatal parse error or (strict mode) a
    /// rejected record.
    pub fn closed_on_error(&self) -> u64 {
        self.closed_on_error.load(Ordering::Relaxed)
    }

    /// Datagrams the kernel dropped for the UDP socket before the source could read them
    /// (its receive buffer was full): the socket's `drops` in `/proc/net/udp` (Linux; 0
    /// elsewhere), read every second and when the source ends.
    pub fn kernel_dropped_datagrams(&self) -> u64 {
        self.kernel_dropped_datagrams.load(Ordering::Relaxed)
    }

    /// The UDP receive buffer the kernel granted, in bytes, as `SO_RCVBUF` reports it
    /// (Linux: twice the usable size); 0 for other sources.
    pub fn udp_recv_buffer(&self) -> u64 {
        self.udp_recv_buffer.load(Ordering::Relaxed)
    }

    /// String and boolean fields of InfluxDB line protocol, skipped (they are not series
    /// values).
    pub fn skipped_fields(&self) -> u64 {
        self.skipped_fields.load(Ordering::Relaxed)
    }

    /// Prometheus stale markers received by remote write, skipped.
    pub fn stale_markers(&self) -> u64 {
        self.stale_markers.load(Ordering::Relaxed)
    }

    /// Remote-write samples skipped because they were not newer than the one before them in
    /// their series.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order.load(Ordering::Relaxed)
    }

    /// Graphite values and remote-write samples skipped because they were NaN (not a stale
    /// marker) or infinite.
    pub fn non_finite_samples(&self) -> u64 {
        self.non_finite_samples.load(Ordering::Relaxed)
    }

    /// HTTP requests answered by an HTTP listener.
    pub fn http_requests(&self) -> u64 {
        self.http_requests.load(Ordering::Relaxed)
    }

    /// HTTP requests answered with an error status (400, 404, 405, 413, 415).
    pub fn http_refused(&self) -> u64 {
        self.http_refused.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds a decoder's counts of values skipped by design.
    pub(crate) fn skipped(&self, s: crate::io::format::Skipped) {
        for (counter, n) in [
            (&self.skipped_fields, s.fields),
            (&self.stale_markers, s.stale),
            (&self.out_of_order, s.out_of_order),
            (&self.non_finite_samples, s.non_finite),
        ] {
            if n > 0 {
                Self::add(counter, n);
            }
        }
    }
}

/// A running source: its bound address, its counters, and how it ended.
#[derive(Debug)]
pub struct SourceHandle {
    stats: Arc<SourceStats>,
    pool: EventPool,
    local_addr: Option<ListenAddr>,
    closer: Closer,
    task: JoinHandle<Result<()>>,
}

/// Closes single connections of a TCP or Unix listener by their [`Origin::peer`] id (a
/// strict consumer closes a connection whose record it rejects). Cloning shares it; for
/// other sources it closes nothing.
#[derive(Debug, Clone, Default)]
pub struct Closer(Option<Arc<slots::Slots>>);

impl Closer {
    /// Closes connection `peer` (it then ends with a `Disconnected` item); whether it was
    /// open.
    pub fn close(&self, peer: u64) -> bool {
        self.0.as_ref().is_some_and(|s| s.close(peer))
    }
}

impl SourceHandle {
    /// The counters.
    pub fn stats(&self) -> &Arc<SourceStats> {
        &self.stats
    }

    /// The pool the source decodes events into: hand each event back with
    /// [`EventPool::give`] once done with it, and decoding allocates nothing per event.
    pub fn pool(&self) -> &EventPool {
        &self.pool
    }

    /// The address a listener is bound to, with the actual port when the spec asked for
    /// port 0; `None` for stdin, files and connect sources.
    pub fn local_addr(&self) -> Option<&ListenAddr> {
        self.local_addr.as_ref()
    }

    /// A [`Closer`] for this source's connections.
    pub fn closer(&self) -> Closer {
        self.closer.clone()
    }

    /// Whether the source has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the source has ended (its channel then is closed, or about to be) and
    /// tells how.
    ///
    /// # Errors
    /// [`SourceError::Read`] if reading stdin or the file failed, [`SourceError::Parse`]
    /// after a fatal parse error (stdin, file, UDP, connect), [`SourceError::GaveUp`] when a
    /// connect source ran out of attempts, [`SourceError::Task`] if the task panicked or was
    /// cancelled.
    pub async fn join(self) -> Result<()> {
        self.task.await.map_err(SourceError::Task)?
    }
}

/// Why a source could not start, or how it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A bad source string.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A bad setting of [`SourceConfig`] or its [`DecoderConfig`].
    #[error(transparent)]
    Config(#[from] crate::Error),
    /// [`spawn`] was called outside a tokio runtime.
    #[error("a source must be started from within a tokio runtime")]
    NoRuntime,
    /// The file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A listener could not bind its address.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address, as in the spec.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The path of a Unix listener exists and is not a socket, so it is not removed.
    #[error("cannot bind unix://{}: the path exists and is not a socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Reading stdin or the file failed (or the stdin thread could not start).
    #[error("reading {name}: {source}")]
    Read {
        /// The stream, as in [`Origin::name`].
        name: String,
        /// The OS error.
        source: io::Error,
    },
    /// A fatal parse error (see [`ParseError::is_fatal`]) stopped the source.
    #[error("{name}: {error}")]
    Parse {
        /// The stream, as in [`Origin::name`].
        name: String,
        /// The error.
        error: ParseError,
    },
    /// A connect source failed `attempts` times in a row and gave up.
    #[error("giving up on {addr} after {attempts} failed connection attempts: {last}")]
    GaveUp {
        /// The address, as in the spec.
        addr: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// The last attempt's error.
        last: io::Error,
    },
    /// A source task panicked or was cancelled.
    #[error("source task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Spare events beyond the channel's capacity that a pool keeps.
const POOL_SLACK: usize = 64;

/// Events handed back by the consumer for the source to decode into again, so that a running
/// source allocates nothing per event: decoding clears an event and refills its buffers.
/// Events leave a pool as [`Pooled`], which go back when dropped.
/// Bounded: an event given to a full pool is dropped; a source finding the pool empty makes a
/// new one. Cloning shares the pool.
///
/// # Example
/// ```
/// use tbptt::io::source::EventPool;
/// let pool = EventPool::new(2);
/// let mut slot = pool.take(); // empty: a new event
/// slot.values.extend([1.0, 2.0]); // decoded into
/// let lent = pool.lend(&mut slot); // out to the consumer, a spare in its place
/// let at = lent.values.as_ptr();
/// assert_eq!(lent.values, [1.0, 2.0]);
/// drop(lent); // back to the pool
/// assert_eq!(pool.take().values.as_ptr(), at); // the same buffer again
/// ```
#[derive(Clone, Debug)]
pub struct EventPool {
    tx: crossbeam_channel::Sender<Event>,
    rx: crossbeam_channel::Receiver<Event>,
}

impl EventPool {
    /// A pool keeping at most `capacity` spare events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        EventPool { tx, rx }
    }

    /// A spare event (with its old contents, which decoding clears), or a new empty one.
    pub fn take(&self) -> Event {
        self.rx.try_recv().unwrap_or_default()
    }

    /// Hands `event` back; it is dropped if the pool is full.
    pub fn give(&self, event: Event) {
        let _ = self.tx.try_send(event);
    }

    /// Lends the event in `slot` out, putting a spare (or a new empty event) in its place:
    /// the decoded event leaves for the consumer, the decoder keeps a buffer to fill.
    pub fn lend(&self, slot: &mut Event) -> Pooled {
        Pooled {
            event: std::mem::replace(slot, self.take()),
            home: Some(self.tx.clone()),
        }
    }
}

/// An event lent by an [`EventPool`]: it reads as an [`Event`] (through `Deref`) and goes back
/// to its pool when dropped, so a consumer that just drops what it has read keeps the source
/// allocation-free. [`Pooled::into_event`] keeps the event instead. A clone goes back to the
/// same pool; an event made into a `Pooled` with `From` has no pool and is simply dropped.
pub struct Pooled {
    event: Event,
    home: Option<crossbeam_channel::Sender<Event>>,
}

impl Pooled {
    /// The event, no longer bound to return to its pool.
    pub fn into_event(mut self) -> Event {
        self.home = None;
        std::mem::take(&mut self.event)
    }
}

impl From<Event> for Pooled {
    fn from(event: Event) -> Self {
        Pooled { event, home: None }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            // An empty `Event` owns no buffer: taking it allocates nothing.
            let _ = home.try_send(std::mem::take(&mut self.event));
        }
    }
}

impl std::ops::Deref for Pooled {
    type Target = Event;
    fn deref(&self) -> &Event {
        &self.event
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Event {
        &mut self.event
    }
}

impl std::borrow::Borrow<Event> for Pooled {
    fn borrow(&self) -> &Event {
        &self.event
    }
}

impl Clone for Pooled {
    fn clone(&self) -> Self {
        Pooled {
            event: self.event.clone(),
            home: self.home.clone(),
        }
    }
}

impl PartialEq for Pooled {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
    }
}

impl PartialEq<Event> for Pooled {
    fn eq(&self, other: &Event) -> bool {
        self.event == *other
    }
}

impl fmt::Debug for Pooled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.event.fmt(f)
    }
}

/// Starts the source of `config` on the current tokio runtime.
///
/// Returns the receiving end of a bounded channel of `config.channel_capacity` items and a
/// handle. Listeners are bound (and files opened) before this returns, so their errors come
/// from here; the bound address is [`SourceHandle::local_addr`]. The source stops when
/// `shutdown` fires; see the [module docs](self) for backpressure and for when the channel
/// closes.
///
/// # Errors
/// [`SourceError::Config`] for bad settings, [`SourceError::NoRuntime`] outside a runtime,
/// [`SourceError::Open`], [`SourceError::Bind`] or [`SourceError::NotASocket`] when the file
/// or socket cannot be opened, [`SourceError::Read`] if the stdin thread cannot start.
pub fn spawn(
    config: SourceConfig,
    shutdown: Shutdown,
) -> Result<(mpsc::Receiver<SourceItem>, SourceHandle)> {
    config.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)?;
    let _entered = runtime.enter();
    let (ctx, rx, stats) = context(&config, shutdown)?;
    let ctx_pool = ctx.out.pool.clone();
    let limits = slots::Limits {
        max: config.max_connections,
        per_peer: config.max_connections_per_peer,
        evict_idle: config.evict_idle,
    };
    let mut closer = Closer::default();
    let (task, local_addr) = match config.spec {
        SourceSpec::Stdin => (stdin::spawn(ctx, &runtime)?, None),
        SourceSpec::File(path) => (file::spawn(&path, ctx)?, None),
        SourceSpec::Connect(addr) => (
            runtime.spawn(connect::run(
                addr,
                config.reconnect,
                config.connect_timeout,
                ctx,
            )),
            None,
        ),
        SourceSpec::Listen(ListenAddr::Tcp(addr)) => {
            let slots = slots::Slots::new(limits);
            closer = Closer(Some(Arc::clone(&slots)));
            let (task, local) = tcp::spawn(addr, slots, ctx)?;
            (task, Some(ListenAddr::Tcp(local)))
        }
        SourceSpec::Listen(ListenAddr::Udp(addr)) => {
            let (task, local) = udp::spawn(addr, config.udp_recv_buffer, ctx)?;
            (task, Some(ListenAddr::Udp(local)))
        }
        SourceSpec::Listen(ListenAddr::Http(addr)) => {
            let slots = slots::Slots::new(limits);
            closer = Closer(Some(Arc::clone(&slots)));
            let (task, local) = http::spawn(addr, slots, ctx, config.max_body)?;
            (task, Some(ListenAddr::Http(local)))
        }
        SourceSpec::Listen(ListenAddr::Unix(path)) => {
            let slots = slots::Slots::new(slots::Limits {
                per_peer: usize::MAX,
                ..limits
            });
            closer = Closer(Some(Arc::clone(&slots)));
            let task = unix::spawn(&path, slots, ctx)?;
            (task, Some(ListenAddr::Unix(path)))
        }
    };
    let handle = SourceHandle {
        stats,
        pool: ctx_pool,
        local_addr,
        closer,
        task,
    };
    Ok((rx, handle))
}

/// Starts a source that reads `reader` to its end, like a file source: for embedding, tests
/// (a [`std::io::Cursor`] works) or any byte stream. Items carry [`SourceKind::File`] and the
/// given `name`. `config.spec` is ignored.
///
/// # Errors
/// As [`spawn`], for the settings and the runtime.
pub fn spawn_reader<R>(
    reader: R,
    name: &str,
    config: &SourceConfig,
    shutdown: Shutdown,
) -> Result<(mpsc::Receiver<SourceItem>, SourceHandle)>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    config.validate()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)?;
    let (ctx, rx, stats) = context(config, shutdown)?;
    let ctx_pool = ctx.out.pool.clone();
    let origin = Origin::new(SourceKind::File, name, 0, Position::Line(0));
    let task = runtime.spawn(stream::read_to_end(reader, origin, ctx));
    let handle = SourceHandle {
        stats,
        pool: ctx_pool,
        local_addr: None,
        closer: Closer::default(),
        task,
    };
    Ok((rx, handle))
}

/// The channel, counters and shared state of a new source.
fn context(
    config: &SourceConfig,
    shutdown: Shutdown,
) -> Result<(Ctx, mpsc::Receiver<SourceItem>, Arc<SourceStats>)> {
    let (tx, rx) = mpsc::channel(config.channel_capacity);
    let stats = Arc::new(SourceStats::default());
    let pool = EventPool::new(config.channel_capacity + POOL_SLACK);
    let ctx = Ctx {
        out: Output {
            tx,
            stats: Arc::clone(&stats),
            pool: pool.clone(),
        },
        template: Template::new(&config.decoder, pool, Arc::clone(&stats))?,
        read_buffer: config.read_buffer,
        idle_timeout: config.idle_timeout,
        close_on_reject: config.close_on_reject,
        shutdown,
    };
    Ok((ctx, rx, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_events_go_home_when_dropped_and_stay_out_when_kept() {
        let pool = EventPool::new(4);
        let mut slot = Event::new();
        slot.values.extend([1.0, 2.0, 3.0]);
        let first = pool.lend(&mut slot);
        let buffer = first.values.as_ptr();
        let twin = first.clone();
        assert_eq!(first, twin);
        assert_eq!(
            pool.rx.len(),
            0,
            "lending took no spare: the pool was empty"
        );
        drop(first);
        drop(twin);
        assert_eq!(pool.rx.len(), 2, "the event and its clone went back");
        slot.values.clear();
        slot.values.push(4.0);
        let kept = pool.lend(&mut slot).into_event();
        assert_eq!(kept.values, [4.0]);
        assert_eq!(
            pool.rx.len(),
            1,
            "kept: it does not go back, a spare filled the slot"
        );
        assert_eq!(
            slot.values.as_ptr(),
            buffer,
            "the first event's buffer, reused"
        );
        drop(Pooled::from(kept));
        assert_eq!(
            pool.rx.len(),
            1,
            "an event from outside has no pool to go to"
        );
    }

    #[test]
    fn parses_and_displays_specs() {
        let cases = [
            ("-", SourceSpec::Stdin),
            ("data.csv", SourceSpec::File("data.csv".into())),
            ("/tmp/a b.csv", SourceSpec::File("/tmp/a b.csv".into())),
            ("file://-", SourceSpec::File("-".into())),
            (
                "tcp://127.0.0.1:9000",
                ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 9000))).into(),
            ),
            (
                "udp://[::1]:9001",
                ListenAddr::Udp("[::1]:9001".parse().unwrap()).into(),
            ),
            (
                "unix:///tmp/x.sock",
                ListenAddr::Unix("/tmp/x.sock".into()).into(),
            ),
            (
                "unix://relative/x.sock",
                ListenAddr::Unix("relative/x.sock".into()).into(),
            ),
            (
                "http://127.0.0.1:8086",
                ListenAddr::Http(SocketAddr::from(([127, 0, 0, 1], 8086))).into(),
            ),
            (
                "connect://example.org:9000",
                SourceSpec::Connect("example.org:9000".into()),
            ),
            (
                "connect://[::1]:9000",
                SourceSpec::Connect("[::1]:9000".into()),
            ),
        ];
        for (text, spec) in cases {
            assert_eq!(text.parse::<SourceSpec>().unwrap(), spec, "{text}");
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(
            "TCP://localhost:80".parse::<SourceSpec>().unwrap(),
            ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 80))).into()
        );
        assert_eq!(
            "file://x.csv".parse::<SourceSpec>().unwrap(),
            SourceSpec::File("x.csv".into())
        );
        assert_eq!(SourceSpec::File("a://b".into()).to_string(), "file://a://b");
    }

    #[test]
    fn errors_name_the_bad_part() {
        let err = |s: &str| s.parse::<SourceSpec>().unwrap_err().to_string();
        assert_eq!(
            err("ftp://x:1"),
            "invalid source `ftp://x:1`: unknown scheme `ftp`; expected tcp, udp, unix, http, \
             connect or file (or `-` for stdin, or a plain path)"
        );
        assert!(err("http://x:1").contains("`x:1` is not an IP:port"));
        assert!(err("tcp://127.0.0.1:99999").contains("`127.0.0.1:99999` is not an IP:port"));
        assert!(err("tcp://host:1").contains("`host:1` is not an IP:port"));
        assert!(err("unix://").contains("the socket path is empty"));
        assert!(err("connect://host").contains("`host` is not a HOST:PORT"));
        assert!(err("connect://:80").contains("`:80` is not a HOST:PORT"));
        assert!(err("").contains("empty"));
        assert!("data.csv"
            .parse::<ListenAddr>()
            .unwrap_err()
            .to_string()
            .contains("expected tcp://IP:PORT"));
        assert_eq!(
            "localhost:9000".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 9000)))
        );
        assert!("connect://h:1"
            .parse::<ListenAddr>()
            .unwrap_err()
            .to_string()
            .contains("unknown scheme `connect`"));
    }

    #[test]
    fn config_serde_and_validation() {
        let config: SourceConfig = serde_json::from_str(
            r#"{"spec": "connect://h:1", "reconnect": {"initial_ms": 50, "max_attempts": 3}}"#,
        )
        .unwrap();
        assert_eq!(config.spec, SourceSpec::Connect("h:1".into()));
        assert_eq!(config.reconnect.initial, Duration::from_millis(50));
        assert_eq!(config.reconnect.max, Duration::from_secs(5));
        assert_eq!(config.reconnect.max_attempts, Some(3));
        let back: SourceConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
        assert!(serde_json::from_str::<SourceConfig>(r#"{"spec": "ftp://x"}"#).is_err());
        assert!(serde_json::from_str::<SourceConfig>(r#"{"nope": 1}"#).is_err());

        config.validate().unwrap();
        let bad = |c: SourceConfig| c.validate().unwrap_err().to_string();
        assert!(bad(SourceConfig {
            channel_capacity: 0,
            ..SourceConfig::default()
        })
        .contains("channel_capacity"));
        assert!(bad(SourceConfig {
            reconnect: Backoff {
                max_attempts: Some(0),
                ..Backoff::default()
            },
            ..SourceConfig::default()
        })
        .contains("max_attempts"));
        assert!(bad(SourceConfig {
            reconnect: Backoff {
                initial: Duration::from_secs(10),
                ..Backoff::default()
            },
            ..SourceConfig::default()
        })
        .contains("reconnect.max"));
        let mut c = SourceConfig::default();
        c.decoder.max_line_len = 0;
        assert!(bad(c).contains("max_line_len"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(3),
            max: Duration::from_millis(20),
            max_attempts: None,
        };
        let waits: Vec<_> = (0..7).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, [3, 3, 6, 12, 20, 20, 20]);
        assert_eq!(b.delay(u32::MAX), Duration::from_millis(20));
        let huge = Backoff {
            initial: Duration::from_secs(u64::MAX / 2),
            max: Duration::MAX,
            max_attempts: None,
        };
        assert_eq!(huge.delay(40), Duration::MAX);
    }

    #[test]
    fn spawn_outside_a_runtime_is_an_error() {
        let (_t, s) = crate::io::shutdown::channel();
        let err = spawn(SourceConfig::default(), s).unwrap_err();
        assert!(matches!(err, SourceError::NoRuntime));
    }
}
