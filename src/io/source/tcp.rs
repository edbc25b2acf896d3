//! The TCP listener: one task per connection, each with its own framer and decoder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use super::slots::{self, Refusal, Slot, Slots};
use super::stream::{self, Ctx};
use super::{Origin, Result, SourceError, SourceKind, SourceStats};

/// Binds `addr` (before returning, so that bind errors surface) and spawns the accept loop.
pub(crate) fn spawn(
    addr: SocketAddr,
    slots: Arc<Slots>,
    ctx: Ctx,
) -> Result<(JoinHandle<Result<()>>, SocketAddr)> {
    let bind_error = |source| SourceError::Bind {
        addr: format!("tcp://{addr}"),
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let listener = TcpListener::from_std(listener).map_err(bind_error)?;
    tracing::info!(target: "tbptt::listening", "listening on tcp://{local}");
    Ok((tokio::spawn(run(listener, slots, ctx)), local))
}

async fn run(listener: TcpListener, slots: Arc<Slots>, mut ctx: Ctx) -> Result<()> {
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
                    // Small writes from senders should not wait for Nagle; best effort.
                    let _ = socket.set_nodelay(true);
                    let origin = Origin::new(SourceKind::Tcp, format!("tcp {peer}"), next_peer, ctx.template.start());
                    serve_accepted(socket, origin, slot, &ctx, &mut conns);
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

/// A slot for connection `id` from `peer` (`None` for Unix clients), or `None` when it is
/// refused: counted, and logged at a limited rate.
pub(crate) fn admit(
    slots: &Arc<Slots>,
    id: u64,
    peer: Option<std::net::IpAddr>,
    name: &dyn std::fmt::Display,
    ctx: &Ctx,
) -> Option<Slot> {
    match slots.admit(id, peer) {
        Ok((slot, _)) => Some(slot),
        Err(refusal) => {
            let stats = &ctx.out.stats;
            SourceStats::add(&stats.refused_connections, 1);
            let n = stats.refused_connections();
            if slots::log_this(n) {
                let why = match refusal {
                    Refusal::Full => "every connection slot is taken by an active connection",
                    Refusal::PerPeer => "this address has its most connections open, all active",
                };
                tracing::warn!(peer = %name, refused = n, "refusing a connection: {why}");
            }
            None
        }
    }
}

/// Serves an accepted connection (TCP or Unix) on a task of `conns`, with its own framer and
/// decoder; its connection slot is freed when it ends. A connection whose decoder cannot be
/// built is closed at once.
pub(crate) fn serve_accepted<S>(
    socket: S,
    origin: Origin,
    slot: Slot,
    ctx: &Ctx,
    conns: &mut JoinSet<()>,
) where
    S: AsyncRead + Send + Unpin + 'static,
{
    let conn = match ctx.template.conn(origin) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "cannot decode a new connection; closing it");
            return;
        }
    };
    let mut conn_ctx = ctx.clone();
    conns.spawn(async move {
        stream::serve(socket, conn, &mut conn_ctx, Some(slot)).await;
    });
}

/// Logs a failed accept (out of file descriptors, say) and pauses briefly, as mini-redis's
/// server does, so that the loop does not spin.
pub(crate) async fn accept_failed(e: &std::io::Error, ctx: &mut Ctx) {
    tracing::warn!(error = %e, "accept failed");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(100)) => {}
        () = ctx.shutdown.recv() => {}
    }
}

/// Logs a connection task that panicked (none should).
pub(crate) fn log_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        tracing::error!(error = %e, "connection task failed");
    }
}
