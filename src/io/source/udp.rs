//! The UDP source: one MessagePack record per datagram, or one or more lines (CSV, JSON
//! Lines). All datagrams share one decoder. UDP cannot push back, so a datagram that finds
//! the channel full is dropped and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use memchr::memchr;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;

use super::stream::{Ctx, Output};
use super::{Origin, Result, SourceError, SourceItem, SourceKind, SourceStats, MAX_DATAGRAM};
use crate::event::Event;
use crate::io::format::{Decoded, Decoder, Format, Position};

/// Sender addresses remembered for their peer ids; the table is cleared when full.
const MAX_PEERS: usize = 4096;

/// Binds `addr` and spawns the receive loop.
pub(crate) fn spawn(addr: SocketAddr, ctx: Ctx) -> Result<(JoinHandle<Result<()>>, SocketAddr)> {
    let bind_error = |source| SourceError::Bind {
        addr: format!("udp://{addr}"),
        source,
    };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    let local = socket.local_addr().map_err(bind_error)?;
    let socket = UdpSocket::from_std(socket).map_err(bind_error)?;
    tracing::info!(addr = %local, "listening on udp");
    Ok((tokio::spawn(run(socket, ctx)), local))
}

/// Peer ids and names of senders.
#[derive(Debug, Default)]
struct Peers {
    known: HashMap<SocketAddr, (u64, Arc<str>)>,
    next: u64,
}

impl Peers {
    fn get(&mut self, addr: SocketAddr) -> (u64, Arc<str>) {
        if let Some((id, name)) = self.known.get(&addr) {
            return (*id, Arc::clone(name));
        }
        if self.known.len() >= MAX_PEERS {
            self.known.clear();
        }
        self.next += 1;
        let name: Arc<str> = format!("udp {addr}").into();
        self.known.insert(addr, (self.next, Arc::clone(&name)));
        (self.next, name)
    }
}

/// Whether to go on after a record.
enum Flow {
    /// Next record.
    Go,
    /// The channel was full: drop the rest of the datagram.
    SkipRest,
    /// End the source with this outcome.
    Stop(Result<()>),
}

async fn run(socket: UdpSocket, mut ctx: Ctx) -> Result<()> {
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut decoder = ctx.template.decoder()?;
    let mut event = Event::new();
    let mut peers = Peers::default();
    let mut offset = 0_u64;
    let line_based = decoder.format() != Format::MsgPack;
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            () = ctx.shutdown.recv() => return Ok(()),
        };
        let (n, from) = match received {
            Ok(r) => r,
            Err(e) => {
                // Errors of earlier sends (ICMP) and the like; the socket itself goes on.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let datagram = buf.get(..n).unwrap_or_default();
        let (peer, name) = peers.get(from);
        let mut origin = Origin::new(SourceKind::Udp, name, peer, Position::Offset(offset));
        let mut datagram_ctx = Datagram {
            out: &ctx.out,
            decoder: &mut decoder,
            event: &mut event,
            origin: &mut origin,
        };
        let flow = if line_based {
            let mut rest = datagram;
            let mut at = offset;
            let mut flow = Flow::Go;
            while !rest.is_empty() {
                let end = memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                let (line, tail) = rest.split_at(end);
                flow = datagram_ctx.decode(line, at);
                if !matches!(flow, Flow::Go) {
                    break;
                }
                at += end as u64;
                rest = tail;
            }
            flow
        } else {
            datagram_ctx.decode(datagram, offset)
        };
        offset += n as u64;
        if let Flow::Stop(outcome) = flow {
            return outcome;
        }
    }
}

/// Decodes the records of one datagram.
struct Datagram<'a> {
    out: &'a Output,
    decoder: &'a mut Decoder,
    event: &'a mut Event,
    origin: &'a mut Origin,
}

impl Datagram<'_> {
    /// Decodes one record at stream byte `offset` and sends it without waiting.
    fn decode(&mut self, frame: &[u8], offset: u64) -> Flow {
        self.origin.position = Position::Offset(offset);
        let (item, fatal) = match self.decoder.decode_frame(frame, offset, self.event) {
            Ok(Decoded::Event) => (
                SourceItem::Event(super::Record {
                    event: std::mem::replace(self.event, self.out.pool.take()),
                    origin: self.origin.clone(),
                    received: std::time::Instant::now(),
                }),
                None,
            ),
            Ok(Decoded::Header | Decoded::Skip) => return Flow::Go,
            Err(error) => {
                SourceStats::add(&self.out.stats.rejected, 1);
                let fatal = error.is_fatal().then(|| error.clone());
                let item = SourceItem::Rejected {
                    origin: self.origin.clone(),
                    error,
                };
                (item, fatal)
            }
        };
        let flow = match self.out.try_send(item) {
            Ok(()) => Flow::Go,
            Err(TrySendError::Closed(())) => return Flow::Stop(Ok(())),
            Err(TrySendError::Full(())) => {
                // The rest of this datagram is dropped with it.
                SourceStats::add(&self.out.stats.dropped_datagrams, 1);
                Flow::SkipRest
            }
        };
        match fatal {
            Some(error) => Flow::Stop(Err(SourceError::Parse {
                name: self.origin.name.to_string(),
                error,
            })),
            None => flow,
        }
    }
}
