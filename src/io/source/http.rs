//! The HTTP listener (axum on hyper, HTTP/1.1) for the monitoring protocols:
//!
//! | path | method | body |
//! | --- | --- | --- |
//! | `/write` | POST | InfluxDB 1 line protocol; `db` (ignored) and `precision` (`n`, `u`, `ms`, `s`, `m`, `h`) |
//! | `/api/v2/write` | POST | InfluxDB 2 line protocol; `bucket` and `org` (ignored), `precision` (`ns`, `us`, `ms`, `s`) |
//! | `/api/v1/write` | POST | Prometheus remote write: snappy-compressed protobuf `WriteRequest` |
//! | `/ping` | GET, HEAD | none; answered 204, as InfluxDB does |
//!
//! Line-protocol bodies may be gzip-compressed (`Content-Encoding: gzip`, as Telegraf sends
//! them). A body larger than the limit, as sent or once decompressed, is answered 413 without
//! decoding it; a body that cannot be read is answered 400 with the reason. A line-protocol
//! request with rejected lines is answered 400 naming the first (the other lines were taken:
//! InfluxDB's "partial write"), a remote-write request with rejected series likewise; every
//! rejection is also an item of the source, as for any other stream. Success is 204.
//!
//! Connections share the listener's slots (global and per-address limits, the longest-idle
//! one closed for a new one), and one that sends nothing for the idle timeout while no
//! request is in flight is closed, as for TCP; request headers must arrive within the same
//! timeout. Requests wait while the item channel is full (backpressure), so a sender is
//! slowed down, not dropped.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_stream::StreamExt;

use super::slots::{self, Slot, Slots};
use super::stream::{Ctx, Stop};
use super::tcp::{accept_failed, admit, log_panic};
use super::{Origin, Result, SourceError, SourceItem, SourceKind, SourceStats};
use crate::event::Event;
use crate::io::format::{
    Decoded, InfluxDecoder, ParseError, Position, Precision, RemoteWriteDecoder,
};
use crate::io::shutdown::Shutdown;

/// Binds `addr` (before returning, so that bind errors surface) and spawns the accept loop.
pub(crate) fn spawn(
    addr: SocketAddr,
    slots: Arc<Slots>,
    ctx: Ctx,
    max_body: usize,
) -> Result<(JoinHandle<Result<()>>, SocketAddr)> {
    let bind_error = |source| SourceError::Bind {
        addr: format!("http://{addr}"),
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let listener = TcpListener::from_std(listener).map_err(bind_error)?;
    tracing::info!(target: "tbptt::listening", "listening on http://{local}");
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        max_body,
    });
    Ok((tokio::spawn(run(listener, slots, ctx, shared)), local))
}

/// What every request handler needs.
#[derive(Debug)]
struct Shared {
    ctx: Ctx,
    max_body: usize,
}

/// One connection: its origin, slot, in-flight count and reused decoding state.
#[derive(Debug)]
struct Conn {
    origin: Origin,
    slot: Arc<Slot>,
    busy: AtomicUsize,
    state: tokio::sync::Mutex<ConnState>,
}

/// Buffers and decoders a connection reuses from request to request.
#[derive(Debug)]
struct ConnState {
    body: Vec<u8>,
    inflated: Vec<u8>,
    influx: InfluxDecoder,
    remote: RemoteWriteDecoder,
    event: Event,
    rejected: Vec<ParseError>,
    shutdown: Shutdown,
}

async fn run(
    listener: TcpListener,
    slots: Arc<Slots>,
    mut ctx: Ctx,
    shared: Arc<Shared>,
) -> Result<()> {
    let router = Router::new()
        .route("/ping", get(ping).head(ping))
        .route("/write", post(influx_v1))
        .route("/api/v2/write", post(influx_v2))
        .route("/api/v1/write", post(remote_write))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&shared),
            count_response,
        ))
        .with_state(Arc::clone(&shared));
    let mut conns = JoinSet::new();
    let mut next_peer = 0_u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    next_peer += 1;
                    let Some(slot) = admit(&slots, next_peer, Some(peer.ip()), &peer, &ctx) else {
                        continue;
                    };
                    let _ = socket.set_nodelay(true);
                    let origin = Origin::new(
                        SourceKind::Http,
                        format!("http {peer}"),
                        next_peer,
                        Position::Line(0),
                    );
                    let conn = Arc::new(Conn {
                        origin,
                        slot: Arc::new(slot),
                        busy: AtomicUsize::new(0),
                        state: tokio::sync::Mutex::new(ConnState {
                            body: Vec::new(),
                            inflated: Vec::new(),
                            influx: InfluxDecoder::new(
                                ctx.template.config().max_line_len,
                                Precision::Nanos,
                            ),
                            remote: RemoteWriteDecoder::new(shared.max_body),
                            event: Event::new(),
                            rejected: Vec::new(),
                            shutdown: ctx.shutdown.clone(),
                        }),
                    });
                    let service = router.clone().layer(Extension(Arc::clone(&conn)));
                    let conn_ctx = ctx.clone();
                    conns.spawn(serve(socket, conn, service, conn_ctx));
                }
                Err(e) => accept_failed(&e, &mut ctx).await,
            },
            Some(joined) = conns.join_next(), if !conns.is_empty() => log_panic(joined),
            () = ctx.shutdown.recv() => break,
        }
    }
    drop(listener);
    while let Some(joined) = conns.join_next().await {
        log_panic(joined);
    }
    Ok(())
}

/// Why a connection ended, for its log line and `Disconnected` item.
enum End {
    Closed,
    Failed(hyper::Error),
    TimedOut(Duration),
    Evicted,
    ClosedByConsumer,
    Shutdown,
}

/// Serves one connection until the peer closes it, it idles out, it is evicted or closed by
/// the consumer, or shutdown.
async fn serve(socket: tokio::net::TcpStream, conn: Arc<Conn>, service: Router, mut ctx: Ctx) {
    let stats = Arc::clone(&ctx.out.stats);
    SourceStats::add(&stats.connections, 1);
    stats.active_connections.fetch_add(1, Ordering::Relaxed);
    let connected = SourceItem::Connected(conn.origin.clone());
    if ctx.out.send(connected, &mut ctx.shutdown).await.is_err() {
        stats.active_connections.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let idle = ctx.idle_timeout;
    let io = TokioIo::new(Touching {
        inner: socket,
        slot: Arc::clone(&conn.slot),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    if let Some(t) = idle {
        builder.header_read_timeout(t);
    }
    let connection =
        builder.serve_connection(io, hyper_util::service::TowerToHyperService::new(service));
    tokio::pin!(connection);
    let check = idle.map_or(Duration::from_secs(3600), |t| {
        (t / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    });
    let mut tick = tokio::time::interval(check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut why: Option<End> = None;
    let end = loop {
        tokio::select! {
            done = connection.as_mut() => break match done {
                Ok(()) => why.take().unwrap_or(End::Closed),
                Err(_) if why.is_some() => why.take().unwrap_or(End::Closed),
                // Headers that did not arrive within the idle timeout.
                Err(e) if e.is_timeout() => End::TimedOut(idle.unwrap_or(check)),
                Err(e) => End::Failed(e),
            },
            () = ctx.shutdown.recv(), if why.is_none() => {
                why = Some(End::Shutdown);
                connection.as_mut().graceful_shutdown();
            }
            () = conn.slot.cancel.cancelled(), if why.is_none() => {
                why = Some(match conn.slot.why() {
                    slots::EVICTED => End::Evicted,
                    _ => End::ClosedByConsumer,
                });
                connection.as_mut().graceful_shutdown();
            }
            _ = tick.tick(), if why.is_none() && idle.is_some() => {
                let limit = idle.unwrap_or(check);
                if conn.busy.load(Ordering::Relaxed) == 0 && conn.slot.idle() >= limit {
                    why = Some(End::TimedOut(limit));
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    };
    stats.active_connections.fetch_sub(1, Ordering::Relaxed);
    let peer = &conn.origin.name;
    let count = |c: &std::sync::atomic::AtomicU64| c.fetch_add(1, Ordering::Relaxed) + 1;
    let reason = match &end {
        End::Closed => None,
        End::Failed(e) => {
            if slots::log_this(count(&stats.closed_on_error)) {
                tracing::warn!(%peer, error = %e, "http connection failed");
            }
            Some(e.to_string())
        }
        End::TimedOut(d) => {
            let n = count(&stats.timed_out_connections);
            if slots::log_this(n) {
                tracing::warn!(%peer, idle_secs = d.as_secs_f64(), n, "closing idle connection");
            }
            Some(format!("idle for {} s", d.as_secs_f64()))
        }
        End::Evicted => {
            let n = count(&stats.evicted_connections);
            if slots::log_this(n) {
                tracing::warn!(%peer, n, "closing the longest-idle connection to make room for a new one");
            }
            Some("closed to make room for a new connection".into())
        }
        End::ClosedByConsumer => Some("closed by the consumer".into()),
        End::Shutdown => Some("shutdown".into()),
    };
    let item = SourceItem::Disconnected {
        origin: conn.origin.clone(),
        reason,
    };
    match end {
        End::Shutdown => {
            let _ = ctx.out.try_send(item);
        }
        _ => {
            let _ = ctx.out.send(item, &mut ctx.shutdown).await;
        }
    }
}

/// A socket that marks its connection active on every byte read or written.
struct Touching {
    inner: tokio::net::TcpStream,
    slot: Arc<Slot>,
}

impl AsyncRead for Touching {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.slot.touch();
        }
        polled
    }
}

impl AsyncWrite for Touching {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.slot.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts every response, and the refused ones.
async fn count_response(State(shared): State<Arc<Shared>>, response: Response) -> Response {
    let stats = &shared.ctx.out.stats;
    SourceStats::add(&stats.http_requests, 1);
    if response.status().is_client_error() || response.status().is_server_error() {
        SourceStats::add(&stats.http_refused, 1);
    }
    response
}

/// `/ping`: InfluxDB's liveness probe.
async fn ping() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            ("X-Influxdb-Build", "tbptt"),
            ("X-Influxdb-Version", env!("CARGO_PKG_VERSION")),
        ],
    )
        .into_response()
}

/// The query parameters of InfluxDB's write endpoints (v1: `db`, `rp`, `u`, `p`; v2:
/// `bucket`, `org`); only `precision` matters here.
#[derive(Debug, Default, Deserialize)]
struct WriteParams {
    precision: Option<String>,
}

/// `/write` (InfluxDB 1).
async fn influx_v1(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Arc<Conn>>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    influx(shared, conn, params, headers, body, "/write").await
}

/// `/api/v2/write` (InfluxDB 2).
async fn influx_v2(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Arc<Conn>>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    influx(shared, conn, params, headers, body, "/api/v2/write").await
}

/// A response with an InfluxDB-style JSON error body.
fn influx_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Marks a request in flight for as long as it lives.
struct Busy<'a>(&'a Conn);

impl<'a> Busy<'a> {
    fn new(conn: &'a Conn) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        conn.slot.touch();
        Self(conn)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.slot.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn influx(
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    params: WriteParams,
    headers: HeaderMap,
    body: Body,
    path: &str,
) -> Response {
    let _busy = Busy::new(&conn);
    let precision = match params.precision.as_deref().map(str::parse::<Precision>) {
        None => Precision::Nanos,
        Some(Ok(p)) => p,
        Some(Err(e)) => return influx_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut guard = conn.state.lock().await;
    let state = &mut *guard;
    let gzip = match content_encoding(&headers) {
        Encoding::Identity => false,
        Encoding::Gzip => true,
        Encoding::Other(e) => {
            return influx_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("unsupported Content-Encoding `{e}`; send identity or gzip"),
            )
        }
    };
    if let Err(r) = read_body(body, &headers, shared.max_body, &mut state.body).await {
        return influx_error(r.0, &r.1);
    }
    let text: &[u8] = if gzip {
        if let Err(r) = gunzip(&state.body, shared.max_body, &mut state.inflated) {
            return influx_error(r.0, &r.1);
        }
        &state.inflated
    } else {
        &state.body
    };
    let ctx = &shared.ctx;
    let origin = Origin {
        name: format!("{} {path}", conn.origin.name).into(),
        ..conn.origin.clone()
    };
    state.influx.set_precision(precision);
    let (mut lines, mut rejected, mut first) = (0_u64, 0_u64, None::<String>);
    let strict = ctx.close_on_reject;
    for line in text.split(|b| *b == b'\n') {
        lines += 1;
        let pos = Position::Line(lines);
        let decoded = state.influx.decode_line(line, lines, &mut state.event);
        SourceStats::skipped(
            &ctx.out.stats,
            crate::io::format::Skipped {
                fields: state.influx.take_skipped(),
                ..Default::default()
            },
        );
        match decoded {
            Ok(Decoded::Event) => loop {
                let item = SourceItem::Event(super::Arrival {
                    event: ctx.out.pool.lend(&mut state.event),
                    origin: Origin {
                        position: pos,
                        ..origin.clone()
                    },
                    received: std::time::Instant::now(),
                });
                if let Err(stop) = ctx.out.send(item, &mut state.shutdown).await {
                    return stopped(stop);
                }
                if !state.influx.next_event(&mut state.event) {
                    break;
                }
            },
            Ok(_) => {}
            Err(error) => {
                rejected += 1;
                SourceStats::add(&ctx.out.stats.rejected, 1);
                first.get_or_insert_with(|| error.to_string());
                let item = SourceItem::Rejected {
                    origin: Origin {
                        position: pos,
                        ..origin.clone()
                    },
                    error,
                };
                if let Err(stop) = ctx.out.send(item, &mut state.shutdown).await {
                    return stopped(stop);
                }
                if strict {
                    break;
                }
            }
        }
    }
    match first {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(first) => influx_error(
            StatusCode::BAD_REQUEST,
            &format!("partial write: {rejected} of {lines} lines rejected; first: {first}"),
        ),
    }
}

/// `/api/v1/write`: Prometheus remote write.
async fn remote_write(
    State(shared): State<Arc<Shared>>,
    Extension(conn): Extension<Arc<Conn>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let _busy = Busy::new(&conn);
    match content_encoding(&headers) {
        Encoding::Other(e) if !e.eq_ignore_ascii_case("snappy") => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding `{e}`; remote write is snappy-compressed"),
            )
                .into_response()
        }
        _ => {}
    }
    let mut guard = conn.state.lock().await;
    let state = &mut *guard;
    if let Err(r) = read_body(body, &headers, shared.max_body, &mut state.body).await {
        return r.into_response();
    }
    state.rejected.clear();
    if let Err(e) = state.remote.decode(&state.body, &mut state.rejected) {
        let status = match e {
            crate::io::format::RemoteWriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        return (status, e.to_string()).into_response();
    }
    let ctx = &shared.ctx;
    SourceStats::skipped(&ctx.out.stats, state.remote.take_skipped());
    let origin = Origin {
        name: format!("{} /api/v1/write", conn.origin.name).into(),
        ..conn.origin.clone()
    };
    while state.remote.next_event(&mut state.event) {
        let item = SourceItem::Event(super::Arrival {
            event: ctx.out.pool.lend(&mut state.event),
            origin: origin.clone(),
            received: std::time::Instant::now(),
        });
        if let Err(stop) = ctx.out.send(item, &mut state.shutdown).await {
            return stopped(stop);
        }
    }
    let rejected = state.rejected.len();
    let first = state.rejected.first().map(ToString::to_string);
    for error in state.rejected.drain(..) {
        SourceStats::add(&ctx.out.stats.rejected, 1);
        let item = SourceItem::Rejected {
            origin: Origin {
                position: error.position().unwrap_or(Position::Series(0)),
                ..origin.clone()
            },
            error,
        };
        if let Err(stop) = ctx.out.send(item, &mut state.shutdown).await {
            return stopped(stop);
        }
    }
    match first {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(first) => (
            StatusCode::BAD_REQUEST,
            format!("{rejected} series rejected; first: {first}"),
        )
            .into_response(),
    }
}

/// The answer when events could not be handed on: the run is ending.
fn stopped(stop: Stop) -> Response {
    let why = match stop {
        Stop::Shutdown => "shutting down",
        Stop::Closed => "no longer reading input",
    };
    (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
}

enum Encoding {
    Identity,
    Gzip,
    Other(String),
}

fn content_encoding(headers: &HeaderMap) -> Encoding {
    match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => Encoding::Identity,
        Some(Ok(v)) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("identity") => {
            Encoding::Identity
        }
        Some(Ok(v)) if v.trim().eq_ignore_ascii_case("gzip") => Encoding::Gzip,
        Some(Ok(v)) => Encoding::Other(v.trim().to_owned()),
        Some(Err(_)) => Encoding::Other("(not text)".into()),
    }
}

/// Reads the whole body into `out` (cleared first), refusing more than `limit` bytes.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), (StatusCode, String)> {
    out.clear();
    let too_large = |n: u64| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body of {n} bytes or more exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        return Err(too_large(n));
    }
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_large((out.len() + chunk.len()) as u64));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(())
}

/// Inflates a gzip body into `out` (cleared first), refusing more than `limit` bytes.
fn gunzip(
    body: &[u8],
    limit: usize,
    out: &mut Vec<u8>,
) -> std::result::Result<(), (StatusCode, String)> {
    use std::io::Read;
    out.clear();
    let mut reader = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    reader.read_to_end(out).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not valid gzip: {e}"),
        )
    })?;
    if out.len() > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the gzip body inflates to more than the limit of {limit} bytes"),
        ));
    }
    Ok(())
}
