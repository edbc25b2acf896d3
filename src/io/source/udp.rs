//! The UDP source: one MessagePack record per datagram, or one or more lines (CSV, JSON
//! Lines, Graphite, line protocol). All datagrams share one decoder. UDP cannot push back, so a datagram that finds
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

/// Binds `addr` with a receive buffer of `recv_buffer` bytes asked of the kernel, and spawns
/// the receive loop.
pub(crate) fn spawn(
    addr: SocketAddr,
    recv_buffer: usize,
    ctx: Ctx,
) -> Result<(JoinHandle<Result<()>>, SocketAddr)> {
    let bind_error = |source| SourceError::Bind {
        addr: format!("udp://{addr}"),
        source,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(bind_error)?;
    // Best effort: the kernel caps the size (and a failure leaves its default).
    if let Err(e) = socket.set_recv_buffer_size(recv_buffer) {
        tracing::warn!(error = %e, recv_buffer, "cannot set the udp receive buffer");
    }
    let granted = socket.recv_buffer_size().unwrap_or(0);
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    let socket: std::net::UdpSocket = socket.into();
    let local = socket.local_addr().map_err(bind_error)?;
    let drops = KernelDrops::of(&socket);
    let socket = UdpSocket::from_std(socket).map_err(bind_error)?;
    SourceStats::add(&ctx.out.stats.udp_recv_buffer, granted as u64);
    // Linux reports twice the size it grants (the rest is its bookkeeping).
    let usable = if cfg!(target_os = "linux") {
        granted / 2
    } else {
        granted
    };
    if usable < recv_buffer {
        tracing::warn!(
            "udp://{local}: the kernel granted a receive buffer of {usable} bytes of the \
             {recv_buffer} asked; raise net.core.rmem_max for more"
        );
    }
    tracing::info!(
        target: "tbptt::listening",
        "listening on udp://{local} (receive buffer {usable} bytes)"
    );
    Ok((tokio::spawn(run(socket, drops, ctx)), local))
}

/// The kernel's count of datagrams dropped for one socket: its `drops` column in
/// `/proc/net/udp` or `/proc/net/udp6`, found by the socket's inode (Linux only).
#[derive(Debug, Clone, Copy)]
struct KernelDrops {
    inode: Option<u64>,
}

impl KernelDrops {
    fn of(socket: &std::net::UdpSocket) -> Self {
        #[cfg(target_os = "linux")]
        let inode = rustix::fs::fstat(socket).ok().map(|st| st.st_ino);
        #[cfg(not(target_os = "linux"))]
        let inode = {
            let _ = socket;
            None
        };
        Self { inode }
    }

    /// The count now, if it can be read.
    fn read(&self) -> Option<u64> {
        let inode = self.inode?.to_string();
        ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .find_map(|table| {
                let text = std::fs::read_to_string(table).ok()?;
                text.lines().skip(1).find_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    if fields.get(9) != Some(&inode.as_str()) {
                        return None;
                    }
                    fields.get(12)?.parse().ok()
                })
            })
    }

    /// Stores the count in `stats`.
    fn update(&self, stats: &SourceStats) {
        if let Some(n) = self.read() {
            stats
                .kernel_dropped_datagrams
                .store(n, std::sync::atomic::Ordering::Relaxed);
        }
    }
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

async fn run(socket: UdpSocket, drops: KernelDrops, ctx: Ctx) -> Result<()> {
    let stats = std::sync::Arc::clone(&ctx.out.stats);
    let outcome = receive(&socket, drops, ctx).await;
    // Read while the socket is open: its line leaves the table with it.
    drops.update(&stats);
    outcome
}

async fn receive(socket: &UdpSocket, drops: KernelDrops, mut ctx: Ctx) -> Result<()> {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0; MAX_DATAGRAM];
    let mut decoder = ctx.template.decoder()?;
    let mut event = Event::new();
    let mut peers = Peers::default();
    let mut offset = 0_u64;
    let line_based = decoder.format() != Format::MsgPack;
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buf) => received,
            _ = tick.tick() => {
                drops.update(&ctx.out.stats);
                continue;
            }
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
        let decoded = self.decoder.decode_frame(frame, offset, self.event);
        SourceStats::skipped(&self.out.stats, self.decoder.take_skipped());
        let (item, fatal) = match decoded {
            Ok(Decoded::Event) => {
                self.out.stats.note_columns(self.decoder);
                // A line-protocol line holds one event per numeric field.
                loop {
                    let item = SourceItem::Event(super::Arrival {
                        event: self.out.pool.lend(self.event),
                        origin: self.origin.clone(),
                        received: std::time::Instant::now(),
                    });
                    match self.send(item) {
                        Flow::Go if self.decoder.next_event(self.event) => {}
                        flow => return flow,
                    }
                }
            }
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
        let flow = match self.send(item) {
            Flow::Stop(outcome) => return Flow::Stop(outcome),
            flow => flow,
        };
        match fatal {
            Some(error) => Flow::Stop(Err(SourceError::Parse {
                name: self.origin.name.to_string(),
                error,
            })),
            None => flow,
        }
    }

    /// Sends `item` without waiting.
    fn send(&mut self, item: SourceItem) -> Flow {
        match self.out.try_send(item) {
            Ok(()) => Flow::Go,
            Err(TrySendError::Closed(())) => Flow::Stop(Ok(())),
            Err(TrySendError::Full(())) => {
                // The rest of this datagram is dropped with it.
                SourceStats::add(&self.out.stats.dropped_datagrams, 1);
                Flow::SkipRest
            }
        }
    }
}
