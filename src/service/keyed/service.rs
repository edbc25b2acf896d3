//! The embedding API of keyed series: a service a tokio application builds, feeds, reads,
//! inspects, snapshots and shuts down.

use super::{KeyedConfig, KeyedStats, SeriesError, SeriesStats, Workers};
use crate::detect::pipeline::OutputRecord;
use crate::event::Event;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

enum Cmd {
    Event(Event),
    Tick,
    Stats(oneshot::Sender<KeyedStats>),
    Series(String, oneshot::Sender<Option<SeriesStats>>),
    Snapshot(oneshot::Sender<()>),
    Shutdown,
}

/// Many keyed series behind a handle (see [the module](super)): events go in through
/// [`EventSender`]s, records come out of the [`RecordStream`] in input order.
///
/// The stream must be read: when its buffer (1,024 records) is full the service waits, and
/// so do the senders (back-pressure, nothing is dropped). Records and events are owned
/// values here; the command's own loop reuses them instead.
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::service::keyed::{KeyedConfig, KeyedService};
/// use tokio_stream::StreamExt;
///
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// let (service, mut records) = KeyedService::start(KeyedConfig { workers: 2, ..Default::default() })?;
/// let input = service.sender();
/// tokio::spawn(async move {
///     for t in 0..200 {
///         for host in ["a", "b"] {
///             let mut ev = Event::new();
///             ev.key.push_str(host);
///             ev.values.push(if host == "a" { (t as f64 * 0.3).sin() } else { t as f64 });
///             input.send(ev).await.unwrap();
///         }
///     }
/// });
/// let mut n = 0;
/// while n < 400 {
///     let record = records.next().await.unwrap()?;
///     assert_eq!(record.index, n / 2); // each series counts its own events
///     n += 1;
/// }
/// assert_eq!(service.series("b").await.unwrap().events, 200);
/// let stats = service.shutdown().await;
/// assert_eq!((stats.series, stats.events), (2, 400));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct KeyedService {
    cmds: mpsc::Sender<Cmd>,
    thread: Option<std::thread::JoinHandle<KeyedStats>>,
}

/// Sends events to a [`KeyedService`]; cloned freely.
#[derive(Clone, Debug)]
pub struct EventSender(mpsc::Sender<Cmd>);

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Event(_) => "Event",
            Cmd::Tick => "Tick",
            Cmd::Stats(_) => "Stats",
            Cmd::Series(..) => "Series",
            Cmd::Snapshot(_) => "Snapshot",
            Cmd::Shutdown => "Shutdown",
        })
    }
}

/// The service has shut down; the event is handed back.
#[derive(Debug, thiserror::Error)]
#[error("the keyed service has shut down")]
pub struct Closed(pub Event);

impl EventSender {
    /// Sends one event, waiting while the service is busy.
    ///
    /// # Errors
    /// [`Closed`] after shutdown.
    pub async fn send(&self, event: Event) -> Result<(), Closed> {
        self.0.send(Cmd::Event(event)).await.map_err(|e| match e.0 {
            Cmd::Event(ev) => Closed(ev),
            _ => Closed(Event::new()),
        })
    }

    /// [`EventSender::send`] from a thread outside the runtime.
    ///
    /// # Errors
    /// [`Closed`] after shutdown.
    pub fn blocking_send(&self, event: Event) -> Result<(), Closed> {
        self.0
            .blocking_send(Cmd::Event(event))
            .map_err(|e| match e.0 {
                Cmd::Event(ev) => Closed(ev),
                _ => Closed(Event::new()),
            })
    }
}

/// The records of a [`KeyedService`], in input order: `Err` for an event its series
/// refused (the record of a good event follows as usual). Ends after shutdown.
#[derive(Debug)]
pub struct RecordStream(ReceiverStream<Result<OutputRecord, SeriesError>>);

impl Stream for RecordStream {
    type Item = Result<OutputRecord, SeriesError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

impl KeyedService {
    /// Starts the workers, the store (when configured) and the dispatcher thread.
    ///
    /// # Errors
    /// As [`Workers::spawn`].
    pub fn start(config: KeyedConfig) -> Result<(KeyedService, RecordStream), SeriesError> {
        let workers = Workers::<Event>::spawn(&config)?;
        let (tx, rx) = mpsc::channel(1024);
        let (out_tx, out_rx) = mpsc::channel(1024);
        let thread = std::thread::Builder::new()
            .name("tbptt-dispatch".into())
            .spawn(move || dispatch(workers, rx, out_tx))
            .map_err(|source| SeriesError::Spawn {
                what: "dispatcher",
                source,
            })?;
        // The store interval ticks even when no event comes (idle series expire, changed
        // ones are written).
        let weak = tx.downgrade();
        let interval = config.store_interval;
        std::thread::Builder::new()
            .name("tbptt-tick".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                match weak.upgrade() {
                    Some(tx) => {
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Cmd::Tick) {
                            break;
                        }
                    }
                    None => break,
                }
            })
            .map_err(|source| SeriesError::Spawn {
                what: "tick",
                source,
            })?;
        Ok((
            KeyedService {
                cmds: tx,
                thread: Some(thread),
            },
            RecordStream(ReceiverStream::new(out_rx)),
        ))
    }

    /// A handle to send events with.
    pub fn sender(&self) -> EventSender {
        EventSender(self.cmds.clone())
    }

    /// The counters of every series, after the events sent before.
    pub async fn stats(&self) -> KeyedStats {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Stats(tx)).await.is_err() {
            return KeyedStats::default();
        }
        rx.await.unwrap_or_default()
    }

    /// One series' figures, if it is in memory.
    pub async fn series(&self, key: &str) -> Option<SeriesStats> {
        let (tx, rx) = oneshot::channel();
        self.cmds.send(Cmd::Series(key.into(), tx)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Hands every changed series to the store now (returns once the workers have encoded
    /// them; the store commits them right after). No-op without a store.
    pub async fn snapshot(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Snapshot(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Processes the events sent so far, writes every changed series to the store, stops
    /// the threads and returns the final counters. Events sent after this are refused.
    pub async fn shutdown(mut self) -> KeyedStats {
        let _ = self.cmds.send(Cmd::Shutdown).await;
        let thread = self.thread.take();
        tokio::task::spawn_blocking(move || thread.and_then(|t| t.join().ok()))
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

impl Drop for KeyedService {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.cmds.try_send(Cmd::Shutdown);
        }
    }
}

/// The dispatcher thread: commands in order, records out in input order.
fn dispatch(
    mut workers: Workers<Event>,
    mut rx: mpsc::Receiver<Cmd>,
    out: mpsc::Sender<Result<OutputRecord, SeriesError>>,
) -> KeyedStats {
    let deliver = |d: super::Done<Event>| {
        let item = d.result.map(|()| d.record);
        let _ = out.blocking_send(item);
    };
    loop {
        let cmd = match rx.try_recv() {
            Ok(c) => c,
            Err(mpsc::error::TryRecvError::Empty) => {
                if let Some(d) = workers.wait_done() {
                    deliver(d);
                    continue;
                }
                match rx.blocking_recv() {
                    Some(c) => c,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match cmd {
            Cmd::Event(ev) => {
                while !workers.ready_for(&ev) {
                    match workers.wait_done() {
                        Some(d) => deliver(d),
                        None => break,
                    }
                }
                workers.submit(ev);
                while let Some(d) = workers.try_done() {
                    deliver(d);
                }
            }
            Cmd::Tick => workers.flush(),
            Cmd::Stats(reply) => {
                let _ = reply.send(workers.stats());
            }
            Cmd::Series(key, reply) => {
                let _ = reply.send(workers.series(&key));
            }
            Cmd::Snapshot(reply) => {
                workers.flush();
                // The workers' answers come after the flush they queued before.
                let _ = workers.stats();
                let _ = reply.send(());
            }
            Cmd::Shutdown => break,
        }
    }
    while let Some(d) = workers.wait_done() {
        deliver(d);
    }
    workers.finish()
}
