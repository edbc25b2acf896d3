//! What every byte-stream source shares: per-stream framing and decoding ([`Conn`]), sending
//! with backpressure ([`Output`]) and the read loop ([`pump`]).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::slots::{self, Slot};
use super::{EventPool, Origin, Result, SourceError, SourceItem, SourceKind, SourceStats};
use crate::event::Event;
use crate::io::format::{
    Decoded, Decoder, DecoderConfig, LineFramer, MsgPackFramer, ParseError, Position,
};
use crate::io::shutdown::Shutdown;

/// Why sending stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The shutdown signal fired.
    Shutdown,
    /// The receiver is gone.
    Closed,
}

/// The sending end of a source, with its counters.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) tx: mpsc::Sender<SourceItem>,
    pub(crate) stats: Arc<SourceStats>,
    /// Events handed back by the consumer, decoded into again.
    pub(crate) pool: EventPool,
}

impl Output {
    /// Sends `item`, waiting while the channel is full (backpressure) unless shutdown fires.
    pub(crate) async fn send(&self, item: SourceItem, shutdown: &mut Shutdown) -> Result<(), Stop> {
        let is_event = matches!(item, SourceItem::Event(_));
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Err(Stop::Closed),
            Err(TrySendError::Full(item)) => {
                tokio::select! {
                    sent = self.tx.send(item) => sent.map_err(|_| Stop::Closed)?,
                    () = shutdown.recv() => return Err(Stop::Shutdown),
                }
            }
        }
        if is_event {
            SourceStats::add(&self.stats.events, 1);
        }
        Ok(())
    }

    /// Sends `item` if there is room now.
    pub(crate) fn try_send(&self, item: SourceItem) -> Result<(), TrySendError<()>> {
        let is_event = matches!(item, SourceItem::Event(_));
        self.tx.try_send(item).map_err(|e| match e {
            TrySendError::Full(_) => TrySendError::Full(()),
            TrySendError::Closed(_) => TrySendError::Closed(()),
        })?;
        if is_event {
            SourceStats::add(&self.stats.events, 1);
        }
        Ok(())
    }
}

/// Cuts a stream into lines or MessagePack frames.
#[derive(Debug)]
pub(crate) enum Framer {
    Lines(LineFramer),
    Frames(MsgPackFramer),
}

/// Makes a fresh framer and decoder for each stream, so that each has its own header, layout
/// and line count.
///
/// Decoders are built anew rather than cloned: cloning a CSV decoder clones csv-core's
/// `Reader`, whose `Clone` (csv-core 0.1.13) drops most of its DFA, so the clone misreads
/// every line.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    config: DecoderConfig,
    pool: EventPool,
    stats: Arc<SourceStats>,
}

impl Template {
    /// Checks that `config` builds. Streams take their events from `pool`.
    pub(crate) fn new(
        config: &DecoderConfig,
        pool: EventPool,
        stats: Arc<SourceStats>,
    ) -> Result<Self> {
        config.build()?;
        Ok(Self {
            config: config.clone(),
            pool,
            stats,
        })
    }

    /// The decoder settings.
    pub(crate) fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// A new decoder.
    pub(crate) fn decoder(&self) -> Result<Decoder> {
        Ok(self.config.build()?)
    }

    /// The position of a stream's start: line 0 or byte 0.
    pub(crate) fn start(&self) -> Position {
        if self.config.format.is_line_based() {
            Position::Line(0)
        } else {
            Position::Offset(0)
        }
    }

    /// The decoding state of a new stream.
    pub(crate) fn conn(&self, mut origin: Origin) -> Result<Conn> {
        origin.position = self.start();
        let framer = if self.config.format.is_line_based() {
            Framer::Lines(self.config.line_framer())
        } else {
            Framer::Frames(self.config.msgpack_framer())
        };
        Ok(Conn {
            framer,
            decoder: self.decoder()?,
            event: Event::new(),
            pool: self.pool.clone(),
            stats: Arc::clone(&self.stats),
            origin,
            received: Instant::now(),
        })
    }
}

/// Everything a source task needs; cloned for each connection.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) out: Output,
    pub(crate) template: Template,
    /// Bytes per read.
    pub(crate) read_buffer: usize,
    /// Close a listener's connection that sends nothing for this long.
    pub(crate) idle_timeout: Option<Duration>,
    /// Close a listener's connection at its first rejected record (strict mode).
    pub(crate) close_on_reject: bool,
    pub(crate) shutdown: Shutdown,
}

/// The decoding state of one stream.
#[derive(Debug)]
pub(crate) struct Conn {
    framer: Framer,
    decoder: Decoder,
    event: Event,
    pool: EventPool,
    stats: Arc<SourceStats>,
    /// The stream's origin; its position is the last record's.
    pub(crate) origin: Origin,
    /// When the last chunk arrived.
    received: Instant,
}

impl Conn {
    /// Appends a chunk just read.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.received = Instant::now();
        match &mut self.framer {
            Framer::Lines(f) => f.push(bytes),
            Framer::Frames(f) => f.push(bytes),
        }
    }

    /// Marks the end of the stream: a last line without newline becomes a line. Returns the
    /// rejection of a truncated MessagePack frame. Call it once the items pending before it
    /// were taken.
    pub(crate) fn finish(&mut self) -> Option<SourceItem> {
        match &mut self.framer {
            Framer::Lines(f) => {
                f.finish();
                None
            }
            Framer::Frames(f) => {
                let error = f.finish().err()?;
                Some(self.rejected(error, None))
            }
        }
    }

    /// The next event or rejection; `None` when more input is needed. Headers, blank lines
    /// and comments are consumed silently.
    pub(crate) fn next_item(&mut self) -> Option<SourceItem> {
        loop {
            // A record with several events (a line-protocol line) hands out the rest first.
            if self.decoder.next_event(&mut self.event) {
                return Some(self.event_item());
            }
            let (pos, result) = match &mut self.framer {
                Framer::Lines(f) => match f.next_numbered()? {
                    Ok((n, line)) => (
                        Position::Line(n),
                        self.decoder.decode_line(line, n, &mut self.event),
                    ),
                    Err(e) => (Position::Line(f.line_no()), Err(e)),
                },
                Framer::Frames(f) => match f.next_frame() {
                    Ok(None) => return None,
                    Ok(Some((offset, frame))) => (
                        Position::Offset(offset),
                        self.decoder.decode_frame(frame, offset, &mut self.event),
                    ),
                    Err(e) => (self.origin.position, Err(e)),
                },
            };
            match result {
                Ok(Decoded::Event) => {
                    self.origin.position = pos;
                    self.stats.note_columns(&self.decoder);
                    return Some(self.event_item());
                }
                Ok(Decoded::Header | Decoded::Skip) => self.origin.position = pos,
                Err(error) => return Some(self.rejected(error, Some(pos))),
            }
        }
    }

    /// The event just decoded, as an item; the decoder gets a recycled event.
    fn event_item(&mut self) -> SourceItem {
        SourceItem::Event(super::Arrival {
            event: self.pool.lend(&mut self.event),
            origin: self.origin.clone(),
            received: self.received,
        })
    }

    /// Takes the decoder's counts of values skipped by design.
    pub(crate) fn take_skipped(&mut self) -> crate::io::format::Skipped {
        self.decoder.take_skipped()
    }

    /// A rejection at the error's own position (or `pos`), counted.
    fn rejected(&mut self, error: ParseError, pos: Option<Position>) -> SourceItem {
        if let Some(p) = error.position().or(pos) {
            self.origin.position = p;
        }
        SourceItem::Rejected {
            origin: self.origin.clone(),
            error,
        }
    }
}

/// How a stream ended.
#[derive(Debug)]
pub(crate) enum End {
    /// End of stream.
    Eof,
    /// The shutdown signal fired.
    Shutdown,
    /// The receiver is gone.
    Closed,
    /// A fatal parse error (already sent as a rejection).
    Fatal(ParseError),
    /// A read error.
    Io(io::Error),
    /// A listener's connection was rejected a record in strict mode (already sent).
    Strict(ParseError),
    /// No byte arrived for the idle timeout.
    TimedOut(Duration),
    /// Closed to make room for a new connection.
    Evicted,
    /// Closed by the consumer.
    ClosedByConsumer,
}

impl From<Stop> for End {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Shutdown => End::Shutdown,
            Stop::Closed => End::Closed,
        }
    }
}

impl End {
    /// The reason given in [`SourceItem::Disconnected`].
    pub(crate) fn reason(&self) -> Option<String> {
        match self {
            End::Eof | End::Closed => None,
            End::Shutdown => Some("shutdown".into()),
            End::Fatal(e) => Some(format!("fatal: {e}")),
            End::Io(e) => Some(e.to_string()),
            End::Strict(e) => Some(format!("strict mode: {e}")),
            End::TimedOut(d) => Some(format!("idle for {} s", d.as_secs_f64())),
            End::Evicted => Some("closed to make room for a new connection".into()),
            End::ClosedByConsumer => Some("closed by the consumer".into()),
        }
    }
}

/// Sends the items ready in `conn`, in order; stops after a fatal rejection.
/// Sends the items ready in `conn`, in order; stops after a fatal rejection, and after any
/// rejection on a listener's connection in strict mode.
pub(crate) async fn deliver(conn: &mut Conn, ctx: &mut Ctx) -> Result<(), End> {
    let strict =
        ctx.close_on_reject && matches!(conn.origin.kind, SourceKind::Tcp | SourceKind::Unix);
    while let Some(item) = conn.next_item() {
        ctx.out.stats.skipped(conn.take_skipped());
        let stop = match &item {
            SourceItem::Rejected { error, .. } => {
                SourceStats::add(&ctx.out.stats.rejected, 1);
                if error.is_fatal() {
                    Some(End::Fatal(error.clone()))
                } else if strict {
                    Some(End::Strict(error.clone()))
                } else {
                    None
                }
            }
            _ => None,
        };
        ctx.out.send(item, &mut ctx.shutdown).await?;
        if let Some(end) = stop {
            return Err(end);
        }
    }
    Ok(())
}

/// Reads `reader` to its end, sending its items, until shutdown, a read error, a fatal parse
/// error or the receiver's end. A partial last line is decoded at end of stream (not after a
/// read error).
pub(crate) async fn pump<R>(
    reader: &mut R,
    conn: &mut Conn,
    ctx: &mut Ctx,
    slot: Option<&Slot>,
) -> End
where
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0; ctx.read_buffer];
    // Without a timeout the timer is parked far away and never fires.
    let idle = slot.and(ctx.idle_timeout);
    let far = Duration::from_secs(86_400 * 365);
    let deadline = tokio::time::sleep(idle.unwrap_or(far));
    tokio::pin!(deadline);
    let never = tokio_util::sync::CancellationToken::new();
    let cancel = slot.map_or(&never, |s| &s.cancel);
    loop {
        // Counted from the end of the last delivery: waiting on a full channel is not idling.
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + idle.unwrap_or(far));
        let read = tokio::select! {
            read = reader.read(&mut buf) => read,
            () = ctx.shutdown.recv() => return End::Shutdown,
            () = cancel.cancelled() => {
                return match slot.map(Slot::why) {
                    Some(slots::EVICTED) => End::Evicted,
                    _ => End::ClosedByConsumer,
                };
            }
            () = &mut deadline, if idle.is_some() => {
                return End::TimedOut(idle.unwrap_or(far));
            }
        };
        match read {
            Ok(0) => break,
            Ok(n) => conn.push(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return End::Io(e),
        }
        if let Some(s) = slot {
            s.touch();
        }
        if let Err(end) = deliver(conn, ctx).await {
            return end;
        }
        if let Some(s) = slot {
            s.touch();
        }
    }
    let truncated = conn.finish();
    if let Err(end) = deliver(conn, ctx).await {
        return end;
    }
    if let Some(item) = truncated {
        SourceStats::add(&ctx.out.stats.rejected, 1);
        if let Err(stop) = ctx.out.send(item, &mut ctx.shutdown).await {
            return stop.into();
        }
    }
    End::Eof
}

/// Reads one whole stream (stdin, a file, [`super::spawn_reader`]), without connect and
/// disconnect items.
pub(crate) async fn read_to_end<R>(mut reader: R, origin: Origin, mut ctx: Ctx) -> Result<()>
where
    R: AsyncRead + Unpin,
{
    let mut conn = ctx.template.conn(origin)?;
    let end = pump(&mut reader, &mut conn, &mut ctx, None).await;
    end_of_stream(end, &conn.origin)
}

/// The outcome of a whole-stream source that ended with `end`.
pub(crate) fn end_of_stream(end: End, origin: &Origin) -> Result<()> {
    match end {
        End::Eof
        | End::Shutdown
        | End::Closed
        | End::TimedOut(_)
        | End::Evicted
        | End::ClosedByConsumer => Ok(()),
        End::Fatal(error) | End::Strict(error) => Err(SourceError::Parse {
            name: origin.name.to_string(),
            error,
        }),
        End::Io(source) => Err(SourceError::Read {
            name: origin.name.to_string(),
            source,
        }),
    }
}

/// Serves one connection, decoded by `conn`: `Connected`, its items, `Disconnected`.
/// `slot` is a listener's connection slot (its idle clock and the cancellation that closes
/// it); the connection's idle timeout applies only with one. Returns how it ended.
pub(crate) async fn serve<R>(
    mut reader: R,
    mut conn: Conn,
    ctx: &mut Ctx,
    slot: Option<Slot>,
) -> End
where
    R: AsyncRead + Unpin,
{
    let stats = Arc::clone(&ctx.out.stats);
    SourceStats::add(&stats.connections, 1);
    stats
        .active_connections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::debug!(peer = %conn.origin.name, id = conn.origin.peer, "connected");
    let end = match ctx
        .out
        .send(
            SourceItem::Connected(conn.origin.clone()),
            &mut ctx.shutdown,
        )
        .await
    {
        Ok(()) => pump(&mut reader, &mut conn, ctx, slot.as_ref()).await,
        Err(stop) => stop.into(),
    };
    drop(slot);
    stats
        .active_connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let reason = end.reason();
    let (peer, id) = (&conn.origin.name, conn.origin.peer);
    let count =
        |c: &std::sync::atomic::AtomicU64| c.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    match &end {
        End::Io(_) | End::Fatal(_) | End::Strict(_)
            if slots::log_this(count(&stats.closed_on_error)) =>
        {
            let n = stats.closed_on_error();
            match &end {
                End::Io(_) => {
                    tracing::warn!(%peer, id, error = %e_of(&end), n, "connection failed")
                }
                End::Strict(_) => {
                    tracing::warn!(%peer, id, error = %e_of(&end), n, "closing connection (strict mode)")
                }
                _ => tracing::warn!(%peer, id, error = %e_of(&end), n, "closing connection"),
            }
        }
        End::TimedOut(d) if slots::log_this(count(&stats.timed_out_connections)) => {
            let n = stats.timed_out_connections();
            tracing::warn!(%peer, id, idle_secs = d.as_secs_f64(), n, "closing idle connection");
        }
        End::Evicted if slots::log_this(count(&stats.evicted_connections)) => {
            let n = stats.evicted_connections();
            tracing::warn!(%peer, id, n, "closing the longest-idle connection to make room for a new one");
        }
        _ => tracing::debug!(%peer, id, "disconnected"),
    }
    let item = SourceItem::Disconnected {
        origin: conn.origin.clone(),
        reason,
    };
    match end {
        End::Closed => {}
        // Do not wait for room at shutdown.
        End::Shutdown => {
            let _ = ctx.out.try_send(item);
        }
        _ => {
            let _ = ctx.out.send(item, &mut ctx.shutdown).await;
        }
    }
    end
}

/// The error of an `Io`, `Fatal` or `Strict` end, for its log line.
fn e_of(end: &End) -> String {
    match end {
        End::Io(e) => e.to_string(),
        End::Fatal(e) | End::Strict(e) => e.to_string(),
        _ => String::new(),
    }
}
