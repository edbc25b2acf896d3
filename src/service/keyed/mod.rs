//! Many keyed series in one process: a pipeline per key, spread over a fixed pool of worker
//! threads, bounded in number, saved in a state store.
//!
//! ```text
//!                         hash(key) % workers
//! events --> dispatcher ----------------------> worker 0: series a, c, ... (inline training)
//!   ^            |                              worker 1: series b, d, ...
//!   |            | records, in input order  <--      |  every interval: changed states
//!   |            v                                   v
//!   |          sink                            store writer thread --> redb file
//! ```
//!
//! - **A pipeline per key**, created on the key's first event from the template
//!   configuration ([`KeyedConfig::pipeline`]), with its own normalizer, learner, forecaster,
//!   anomaly state and naive baseline: a series' records are exactly those of a single-series
//!   run over that series' events alone.
//! - **Workers**: each owns the series whose key hashes to it, predicts and trains them
//!   inline (no thread per series), and lends one set of window buffers (the forward and
//!   backward pass's memory) to each series in turn, so a series keeps only its weights,
//!   optimizer moments, ring and statistics. Records come back in input order whatever the
//!   number of workers, so output is deterministic.
//! - **Bounds**: at most [`KeyedConfig::max_series`] series in memory. Past it the least
//!   recently seen series is evicted to the store and restored, learned state intact, on its
//!   next event; without a store new keys are refused (counted). Series not seen for
//!   [`KeyedConfig::series_ttl`] are forgotten, also in the store.
//! - **The store** ([`crate::io::store`]): every [`KeyedConfig::store_interval`] each worker
//!   encodes the series that changed and a writer thread commits them in one transaction, off
//!   the workers' threads. Series are restored from it on their first event.
//!
//! [`KeyedService`] is the embedding API; the command drives [`Workers`] from its event loop.

mod service;
pub(crate) mod shard;

pub use service::{Closed, EventSender, KeyedService, RecordStream};
pub use shard::SeriesError;

use crate::detect::pipeline::{OutputRecord, PipelineConfig};
use crate::event::Event;
use crate::io::source;
use crate::io::store::Store;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};
use shard::{Batch, Shard};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Settings of many keyed series.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedConfig {
    /// The template every series' pipeline is made from. Training is inline (a background
    /// trainer per series is refused).
    pub pipeline: PipelineConfig,
    /// Worker threads. Default: the number of cores.
    pub workers: usize,
    /// Series kept in memory at most (over all workers). Default: 100,000.
    pub max_series: usize,
    /// Series not seen for this long (wall-clock) are forgotten. Default: never.
    pub series_ttl: Option<Duration>,
    /// The state store file. Default: none.
    pub store: Option<PathBuf>,
    /// How often changed series are written to the store. Default: 10 s.
    pub store_interval: Duration,
    /// Blocks of each series' error trail (the summary's last-20% error). Default: 32
    /// (768 bytes; exact to within 1/16 of a series' length).
    pub trail_blocks: usize,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        KeyedConfig {
            pipeline: PipelineConfig::default(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_series: 100_000,
            series_ttl: None,
            store: None,
            store_interval: Duration::from_secs(10),
            trail_blocks: 32,
        }
    }
}

impl KeyedConfig {
    /// Checks the settings and the template.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the setting.
    pub fn validate(&self) -> crate::Result<()> {
        use crate::Error;
        if self.workers == 0 || self.workers > 1024 {
            return Err(Error::config("workers", "must be in 1..=1024"));
        }
        if self.max_series == 0 {
            return Err(Error::config("max_series", "must be at least 1"));
        }
        if self.pipeline.background {
            return Err(Error::config(
                "background",
                "keyed series train inline on their worker; a background trainer per series \
                 is not supported",
            ));
        }
        if self.store_interval.is_zero() {
            return Err(Error::config("store_interval", "must be positive"));
        }
        if self.series_ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::config("series_ttl", "must be positive"));
        }
        crate::detect::pipeline::Pipeline::new(self.pipeline.clone()).map(|_| ())
    }
}

/// Counters of keyed series (one worker's, or all of them added up).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyedStats {
    /// Series in memory now.
    pub series: u64,
    /// Series created (first seen, not in the store).
    pub created: u64,
    /// Series restored from the store (or from an eviction not yet written).
    pub restored: u64,
    /// Series evicted to the store to stay within `max_series`.
    pub evicted: u64,
    /// Series forgotten after the TTL.
    pub expired: u64,
    /// Events refused because `max_series` was reached without a store.
    pub refused: u64,
    /// Events processed.
    pub events: u64,
    /// Events flagged as anomalies.
    pub anomalies: u64,
    /// Updates applied.
    pub updates: u64,
    /// Store transactions committed.
    pub store_writes: u64,
    /// Store transactions that failed.
    pub store_failures: u64,
    /// Sums of squared forecast errors, model and naive, over the events scored.
    pub model_se: f64,
    /// See `model_se`.
    pub naive_se: f64,
    /// Events scored (each series' events after its first).
    pub scored: u64,
    /// The same sums over each series' last 20% (series in memory).
    pub model_se_last20: f64,
    /// See `model_se_last20`.
    pub naive_se_last20: f64,
    /// See `model_se_last20`.
    pub scored_last20: u64,
}

/// Kept for the shard's counters (the same fields).
pub(crate) type ShardStats = KeyedStats;

impl KeyedStats {
    fn add(&mut self, o: &KeyedStats) {
        self.series += o.series;
        self.created += o.created;
        self.restored += o.restored;
        self.evicted += o.evicted;
        self.expired += o.expired;
        self.refused += o.refused;
        self.events += o.events;
        self.anomalies += o.anomalies;
        self.updates += o.updates;
        self.store_writes += o.store_writes;
        self.store_failures += o.store_failures;
        self.model_se += o.model_se;
        self.naive_se += o.naive_se;
        self.scored += o.scored;
        self.model_se_last20 += o.model_se_last20;
        self.naive_se_last20 += o.naive_se_last20;
        self.scored_last20 += o.scored_last20;
    }

    /// Mean squared error of the model and of the naive forecast over every scored event:
    /// `(model, naive)`.
    pub fn mse_all(&self) -> (f64, f64) {
        mean2(self.model_se, self.naive_se, self.scored)
    }

    /// The same over each series' last 20%, weighted by events (series in memory).
    pub fn mse_last20(&self) -> (f64, f64) {
        mean2(
            self.model_se_last20,
            self.naive_se_last20,
            self.scored_last20,
        )
    }
}

fn mean2(a: f64, b: f64, n: u64) -> (f64, f64) {
    if n == 0 {
        (0.0, 0.0)
    } else {
        (a / n as f64, b / n as f64)
    }
}

/// One series' figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SeriesStats {
    /// Events processed.
    pub events: u64,
    /// Events flagged.
    pub anomalies: u64,
    /// Updates applied.
    pub updates: u64,
    /// Mean squared error over the last 20% of its events.
    pub mse_last20: f64,
    /// The naive forecast's, over the same events.
    pub naive_mse_last20: f64,
}

/// What the workers carry: something holding an event (the command's source records, or
/// bare events).
pub trait Carries: Send + 'static {
    /// The event.
    fn event(&self) -> &Event;
}

impl Carries for Event {
    fn event(&self) -> &Event {
        self
    }
}

impl Carries for source::Arrival {
    fn event(&self) -> &Event {
        &self.event
    }
}

enum Msg<X> {
    Event(X, OutputRecord),
    Flush,
    Stats(Sender<KeyedStats>),
    Series(String, Sender<Option<SeriesStats>>),
}

/// A processed item: what was sent, its record (or why it has none).
#[derive(Debug)]
pub struct Done<X> {
    /// The item sent.
    pub item: X,
    /// Its record (meaningful when `result` is `Ok`).
    pub record: OutputRecord,
    /// Whether the series processed it.
    pub result: Result<(), SeriesError>,
}

/// Items in flight per worker at most (queued, being processed, or done and not yet taken).
const IN_FLIGHT: usize = 256;

/// The worker pool: dispatches items by key, returns them processed in input order.
pub struct Workers<X: Carries> {
    txs: Vec<Sender<Msg<X>>>,
    rxs: Vec<Receiver<Done<X>>>,
    in_flight: Vec<usize>,
    order: VecDeque<usize>,
    spare: Vec<OutputRecord>,
    threads: Vec<JoinHandle<KeyedStats>>,
    writer: Option<JoinHandle<(u64, u64)>>,
    /// Store transactions committed and failed so far (the writer thread counts them).
    store_counts: Arc<[AtomicU64; 2]>,
    interval: Duration,
    last_flush: Instant,
}

impl<X: Carries> std::fmt::Debug for Workers<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.txs.len())
            .field("in_flight", &self.order.len())
            .finish()
    }
}

/// The worker a key belongs to (a stable hash: the same key, the same worker, every run).
pub fn worker_of(key: &str, workers: usize) -> usize {
    // FNV-1a, not the std hasher: its seed is fixed, so the assignment is the same in
    // every process (the store and logs can name a series' worker).
    let mut h = FnvHasher(0xcbf2_9ce4_8422_2325);
    key.hash(&mut h);
    (h.finish() % workers.max(1) as u64) as usize
}

struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl<X: Carries> Workers<X> {
    /// Starts the workers (and the store's writer thread with a store).
    ///
    /// # Errors
    /// [`SeriesError::Event`] for invalid settings, [`SeriesError::Store`] if the store
    /// cannot be opened.
    pub fn spawn(config: &KeyedConfig) -> Result<Self, SeriesError> {
        config.validate().map_err(SeriesError::Config)?;
        let store = match &config.store {
            Some(p) => Some(Arc::new(Store::open(p, &config.pipeline)?)),
            None => None,
        };
        let n = config.workers;
        let per_worker = config.max_series.div_ceil(n);
        let (batch_tx, batch_rx) = unbounded::<(usize, Batch)>();
        let committed: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::default()).collect();
        let mut txs = Vec::with_capacity(n);
        let mut rxs = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, c) in committed.iter().enumerate() {
            let (tx, rx) = bounded(IN_FLIGHT);
            let (dtx, drx) = bounded(IN_FLIGHT);
            let shard = Shard::new(config, per_worker, store.clone(), c.clone());
            let batches = store.as_ref().map(|_| batch_tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("tbptt-worker-{i}"))
                .spawn(move || work(i, shard, rx, dtx, batches))
                .map_err(|source| SeriesError::Spawn {
                    what: "worker",
                    source,
                })?;
            txs.push(tx);
            rxs.push(drx);
            threads.push(t);
        }
        drop(batch_tx);
        let store_counts: Arc<[AtomicU64; 2]> = Arc::default();
        let counts = store_counts.clone();
        let writer = match store {
            Some(s) => Some(
                std::thread::Builder::new()
                    .name("tbptt-store".into())
                    .spawn(move || write_batches(&s, batch_rx, &committed, &counts))
                    .map_err(|source| SeriesError::Spawn {
                        what: "store",
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(Workers {
            in_flight: vec![0; n],
            txs,
            rxs,
            order: VecDeque::with_capacity(n * IN_FLIGHT),
            spare: Vec::new(),
            threads,
            writer,
            store_counts,
            interval: config.store_interval,
            last_flush: Instant::now(),
        })
    }

    /// Whether `event` can be submitted now without exceeding its worker's in-flight bound;
    /// if not, take results with [`Workers::wait_done`] first.
    pub fn ready_for(&self, event: &Event) -> bool {
        self.in_flight[worker_of(&event.key, self.txs.len())] < IN_FLIGHT
    }

    /// Items in flight.
    pub fn in_flight(&self) -> usize {
        self.order.len()
    }

    /// Sends `item` to its series' worker. Call only when [`Workers::ready_for`] says so
    /// (else this may block until the worker has room). Every store interval it also asks
    /// each worker to hand its changed series to the store and to expire idle ones.
    pub fn submit(&mut self, item: X) {
        let w = worker_of(&item.event().key, self.txs.len());
        let record = self.spare.pop().unwrap_or_default();
        if self.txs[w].send(Msg::Event(item, record)).is_ok() {
            self.in_flight[w] += 1;
            self.order.push_back(w);
        }
        if self.last_flush.elapsed() >= self.interval {
            self.flush();
        }
    }

    /// Asks every worker to hand its changed series to the store now (and expire idle ones).
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        for tx in &self.txs {
            let _ = tx.send(Msg::Flush);
        }
    }

    /// The oldest item in flight, processed (waits for it); `None` when nothing is in flight
    /// or a worker is gone.
    pub fn wait_done(&mut self) -> Option<Done<X>> {
        let w = *self.order.front()?;
        let d = self.rxs[w].recv().ok()?;
        self.order.pop_front();
        self.in_flight[w] -= 1;
        Some(d)
    }

    /// The oldest item in flight if it is processed already.
    pub fn try_done(&mut self) -> Option<Done<X>> {
        let w = *self.order.front()?;
        let d = self.rxs[w].try_recv().ok()?;
        self.order.pop_front();
        self.in_flight[w] -= 1;
        Some(d)
    }

    /// Gives a record buffer back for reuse (so that nothing is allocated per event).
    pub fn recycle(&mut self, record: OutputRecord) {
        if self.spare.len() < self.txs.len() * IN_FLIGHT {
            self.spare.push(record);
        }
    }

    /// The counters of every worker, added up (waits for each worker to answer, after the
    /// items queued before).
    pub fn stats(&self) -> KeyedStats {
        let mut all = KeyedStats::default();
        for tx in &self.txs {
            let (rtx, rrx) = bounded(1);
            if tx.send(Msg::Stats(rtx)).is_ok() {
                if let Ok(s) = rrx.recv() {
                    all.add(&s);
                }
            }
        }
        all.store_writes = self.store_counts[0].load(Ordering::Relaxed);
        all.store_failures = self.store_counts[1].load(Ordering::Relaxed);
        all
    }

    /// One series' figures, if it is in memory.
    pub fn series(&self, key: &str) -> Option<SeriesStats> {
        let (rtx, rrx) = bounded(1);
        let w = worker_of(key, self.txs.len());
        self.txs[w].send(Msg::Series(key.to_string(), rtx)).ok()?;
        rrx.recv().ok().flatten()
    }

    /// Stops the workers after the items in flight (their results are dropped: take them
    /// with [`Workers::wait_done`] first), writes every changed series to the store, and returns
    /// the counters.
    pub fn finish(mut self) -> KeyedStats {
        self.txs.clear();
        self.rxs.clear();
        let mut all = KeyedStats::default();
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(s) => all.add(&s),
                Err(_) => tracing::error!("a worker thread panicked"),
            }
        }
        if let Some(w) = self.writer.take() {
            match w.join() {
                Ok((writes, failures)) => {
                    all.store_writes = writes;
                    all.store_failures = failures;
                }
                Err(_) => tracing::error!("the store thread panicked"),
            }
        }
        all
    }
}

/// A worker thread: processes its items in order until its channel closes, then writes its
/// changed series.
fn work<X: Carries>(
    index: usize,
    mut shard: Shard,
    rx: Receiver<Msg<X>>,
    tx: Sender<Done<X>>,
    batches: Option<Sender<(usize, Batch)>>,
) -> KeyedStats {
    let hand_over = |shard: &mut Shard| match shard.take_batch() {
        Ok(Some(b)) => {
            if let Some(tx) = &batches {
                let _ = tx.send((index, b));
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("worker {index}: {e}"),
    };
    for msg in rx {
        match msg {
            Msg::Event(item, mut record) => {
                let result = shard.process(item.event(), &mut record, Instant::now());
                if tx
                    .send(Done {
                        item,
                        record,
                        result,
                    })
                    .is_err()
                {
                    break;
                }
            }
            Msg::Flush => {
                shard.expire(Instant::now());
                hand_over(&mut shard);
            }
            Msg::Stats(reply) => {
                let _ = reply.send(current(&shard));
            }
            Msg::Series(key, reply) => {
                let _ = reply.send(shard.series_stats(&key));
            }
        }
    }
    if let Err(e) = shard.finish() {
        tracing::warn!("worker {index}: {e}");
    }
    hand_over(&mut shard);
    current(&shard)
}

fn current(shard: &Shard) -> KeyedStats {
    let mut s = shard.stats.clone();
    s.series = shard.len() as u64;
    shard.last20_into(&mut s);
    s
}

/// The store's writer thread: commits each batch in one transaction, then tells its worker.
fn write_batches(
    store: &Store,
    rx: Receiver<(usize, Batch)>,
    committed: &[Arc<AtomicU64>],
    counts: &[AtomicU64; 2],
) -> (u64, u64) {
    let (mut writes, mut failures) = (0, 0);
    // After a failed write a worker's evicted states stay in its memory for the rest of the
    // run: a later batch does not carry them again.
    let mut failed = vec![false; committed.len()];
    for (w, b) in rx {
        let puts = b.puts.iter().map(|(k, v)| (&**k, v.as_slice()));
        let removes = b.removes.iter().map(|k| &**k);
        match store.write(puts, removes) {
            Ok(()) => {
                writes += 1;
                counts[0].store(writes, Ordering::Relaxed);
                if !failed[w] {
                    committed[w].store(b.generation, Ordering::Release);
                }
            }
            Err(e) => {
                failures += 1;
                counts[1].store(failures, Ordering::Relaxed);
                failed[w] = true;
                if failures <= 10 || failures % 1000 == 0 {
                    tracing::error!("{e} ({failures} failed writes)");
                }
            }
        }
    }
    (writes, failures)
}
