//! The connect source: a TCP client that reads events like an accepted connection and
//! reconnects with exponential backoff after failures and drops.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use super::stream::{self, Ctx, End};
use super::{Backoff, Origin, Result, SourceError, SourceKind};

/// Connects to `addr` (`host:port`) until shutdown, a fatal parse error, the receiver's end,
/// or `backoff.max_attempts` failed attempts in a row.
pub(crate) async fn run(
    addr: String,
    backoff: Backoff,
    connect_timeout: Duration,
    mut ctx: Ctx,
) -> Result<()> {
    let name = format!("tcp {addr}");
    let mut failures = 0_u32;
    let mut peer = 0_u64;
    loop {
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(connect_timeout, TcpStream::connect(addr.as_str())) => attempt,
            () = ctx.shutdown.recv() => return Ok(()),
        };
        let attempt = attempt.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {connect_timeout:?}"),
            ))
        });
        let wait = match attempt {
            Ok(socket) => {
                failures = 0;
                peer += 1;
                let _ = socket.set_nodelay(true);
                let origin = Origin::new(
                    SourceKind::Connect,
                    name.as_str(),
                    peer,
                    ctx.template.start(),
                );
                tracing::info!(%addr, id = peer, "connected");
                let conn = ctx.template.conn(origin)?;
                match stream::serve(socket, conn, &mut ctx, None).await {
                    End::Shutdown | End::Closed => return Ok(()),
                    End::Fatal(error) | End::Strict(error) => {
                        return Err(SourceError::Parse { name, error })
                    }
                    End::Eof
                    | End::Io(_)
                    | End::TimedOut(_)
                    | End::Evicted
                    | End::ClosedByConsumer => {}
                }
                backoff.initial
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if backoff.max_attempts.is_some_and(|max| failures >= max) {
                    tracing::warn!(%addr, attempts = failures, error = %e, "giving up");
                    return Err(SourceError::GaveUp {
                        addr,
                        attempts: failures,
                        last: e,
                    });
                }
                let wait = backoff.delay(failures);
                tracing::warn!(%addr, attempts = failures, error = %e, ?wait, "cannot connect; retrying");
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.shutdown.recv() => return Ok(()),
        }
    }
}
