//! One worker's series: a pipeline per key, created on first sight from the template,
//! bounded in number, evicted to the store and brought back.

use super::{KeyedConfig, SeriesStats, ShardStats};
use crate::detect::pipeline::{OutputRecord, Pipeline, PipelineConfig};
use crate::event::Event;
use crate::io::checkpoint;
use crate::io::store::{Store, StoreError};
use crate::nn::model::Window;
use lru::LruCache;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a keyed event was not processed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeriesError {
    /// The series' pipeline refused the event (wrong arity, a non-finite value, ...).
    #[error("series {key:?}: {source}")]
    Event {
        /// The series.
        key: String,
        /// The pipeline's error.
        #[source]
        source: crate::Error,
    },
    /// A new series would exceed `max_series` and there is no store to evict to.
    #[error(
        "series {key:?} refused: {max} series are already tracked (--max-series) and there is \
         no --store to evict the least recently seen one to"
    )]
    Full {
        /// The refused series.
        key: String,
        /// The bound.
        max: usize,
    },
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A series' state could not be encoded for the store.
    #[error("series {key:?}: cannot encode its state: {source}")]
    Encode {
        /// The series.
        key: String,
        /// The encoder's error.
        #[source]
        source: crate::io::checkpoint::CheckpointError,
    },
    /// A series' saved state could not be decoded.
    #[error("series {key:?}: cannot decode its saved state: {source}")]
    Decode {
        /// The series.
        key: String,
        /// The decoder's error.
        #[source]
        source: crate::io::checkpoint::CheckpointError,
    },
    /// The settings are invalid.
    #[error(transparent)]
    Config(crate::Error),
    /// A worker or the store's thread could not be started.
    #[error("cannot start the {what} thread")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl SeriesError {
    /// The error's kind as a short name, for counting refused events by reason: `refused`
    /// (the pipeline refused the event), `series_full` (`max_series` without a store),
    /// `store`, `encode`, `decode`, `config` or `spawn`.
    pub fn reason(&self) -> &'static str {
        match self {
            SeriesError::Event { .. } => "refused",
            SeriesError::Full { .. } => "series_full",
            SeriesError::Store(_) => "store",
            SeriesError::Encode { .. } => "encode",
            SeriesError::Decode { .. } => "decode",
            SeriesError::Config(_) => "config",
            SeriesError::Spawn { .. } => "spawn",
        }
    }
}

/// A series in memory.
struct Entry {
    pipeline: Pipeline,
    seen: Instant,
    /// Changed since its state was last handed to the store.
    dirty: bool,
}

/// A series' key and encoded state.
#[cfg(feature = "nats")]
pub(crate) type Encoded = (Box<str>, Vec<u8>);

/// A batch for the store: states to put, series to remove. Applied in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) generation: u64,
    pub(crate) puts: Vec<(Box<str>, Vec<u8>)>,
    pub(crate) removes: Vec<Box<str>>,
}

/// One worker's series (see the module docs).
pub(crate) struct Shard {
    template: PipelineConfig,
    trail_blocks: usize,
    series: LruCache<Box<str>, Entry>,
    max: usize,
    ttl: Option<Duration>,
    /// Window buffers lent to each series in turn, one per model shape.
    windows: Vec<Window<f32>>,
    store: Option<Arc<Store>>,
    /// States of evicted series not yet known to be committed, by the batch that carries
    /// them: a series coming back before its batch is committed is restored from here.
    unsaved: HashMap<Box<str>, (u64, Vec<u8>)>,
    /// The next batch.
    batch: Batch,
    /// The newest batch the store has committed.
    committed: Arc<AtomicU64>,
    pub(crate) stats: ShardStats,
}

impl Shard {
    pub(crate) fn new(
        config: &KeyedConfig,
        max: usize,
        store: Option<Arc<Store>>,
        committed: Arc<AtomicU64>,
    ) -> Self {
        Shard {
            template: config.pipeline.clone(),
            trail_blocks: config.trail_blocks,
            series: LruCache::unbounded(),
            max: max.max(1),
            ttl: config.series_ttl,
            windows: Vec::new(),
            store,
            unsaved: HashMap::new(),
            batch: Batch {
                generation: 1,
                ..Batch::default()
            },
            committed,
            stats: ShardStats::default(),
        }
    }

    /// Processes `ev` with its series' pipeline, writing the record into `out`.
    pub(crate) fn process(
        &mut self,
        ev: &Event,
        out: &mut OutputRecord,
        now: Instant,
    ) -> Result<(), SeriesError> {
        if !self.series.contains(ev.key.as_str()) {
            self.admit(&ev.key)?;
        }
        let Some(entry) = self.series.get_mut(ev.key.as_str()) else {
            return Err(SeriesError::Event {
                key: ev.key.clone(),
                source: crate::Error::config("series", "admitted but not found"),
            });
        };
        entry.seen = now;
        let p = &mut entry.pipeline;
        // Lend the worker's buffers of this shape, when it has them.
        let slot = lend(&mut self.windows, p);
        let before = (p.trail().sums(), p.learner().map_or(0, |l| l.updates()));
        let result = p.process_into(ev, out);
        if let Some(w) = p.take_window().filter(|w| w.capacity() > 0) {
            // The worker's lent buffers come back; a new series' own buffers become the
            // worker's set of their shape if it has none yet (otherwise they are freed).
            if slot.is_some()
                || !self
                    .windows
                    .iter()
                    .any(|k| k.model_config() == w.model_config())
            {
                self.windows.push(w);
            }
        }
        if let Err(source) = result {
            return Err(SeriesError::Event {
                key: ev.key.clone(),
                source,
            });
        }
        entry.dirty = true;
        let after = p.trail().sums();
        let s = &mut self.stats;
        s.events += 1;
        s.anomalies += u64::from(out.anomaly);
        s.updates += out.updates.saturating_sub(before.1);
        s.model_se += after.0 - before.0 .0;
        s.naive_se += after.1 - before.0 .1;
        s.scored += after.2 - before.0 .2;
        Ok(())
    }

    /// Makes room for and creates (or restores) series `key`.
    fn admit(&mut self, key: &str) -> Result<(), SeriesError> {
        if self.series.len() >= self.max {
            if self.store.is_none() {
                self.stats.refused += 1;
                return Err(SeriesError::Full {
                    key: key.to_string(),
                    max: self.max,
                });
            }
            self.evict_lru()?;
        }
        let restored = match self.unsaved.remove(key) {
            Some((_, bytes)) => Some(bytes),
            None => match &self.store {
                Some(s) => s.get_bytes(key)?,
                None => None,
            },
        };
        let pipeline = match restored {
            Some(bytes) => {
                // Evicted states exist only with a store, which decodes its own entries.
                let Some(store) = &self.store else {
                    return Err(SeriesError::Config(crate::Error::config(
                        "store",
                        "a saved series state without a store",
                    )));
                };
                let state = store.decode(key, &bytes)?;
                self.stats.restored += 1;
                Pipeline::restore(state).map_err(|source| SeriesError::Event {
                    key: key.to_string(),
                    source,
                })?
            }
            None => {
                let mut p =
                    Pipeline::new(self.template.clone()).map_err(|source| SeriesError::Event {
                        key: key.to_string(),
                        source,
                    })?;
                p.set_trail_blocks(self.trail_blocks);
                self.stats.created += 1;
                p
            }
        };
        self.install(key, pipeline);
        Ok(())
    }

    /// Puts `pipeline` in memory as series `key`.
    fn install(&mut self, key: &str, mut pipeline: Pipeline) {
        // A restored series hands its own buffers over (or frees them): the worker's set is
        // lent to it per event.
        if let Some(w) = pipeline.take_window().filter(|w| w.capacity() > 0) {
            if !self
                .windows
                .iter()
                .any(|k| k.model_config() == w.model_config())
            {
                self.windows.push(w);
            }
        }
        self.series.put(
            key.into(),
            Entry {
                pipeline,
                seen: Instant::now(),
                dirty: false,
            },
        );
    }

    /// Every series' encoded state, in key order (a partition's checkpoint).
    #[cfg(feature = "nats")]
    pub(crate) fn encode_all(&mut self) -> Result<Vec<Encoded>, SeriesError> {
        let mut all = Vec::with_capacity(self.series.len());
        for (key, e) in self.series.iter_mut() {
            all.push((key.clone(), encode(key, &mut e.pipeline)?));
        }
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    /// Brings series `key` back from a state [`Shard::encode_all`] encoded.
    #[cfg(feature = "nats")]
    pub(crate) fn insert_encoded(&mut self, key: &str, bytes: &[u8]) -> Result<(), SeriesError> {
        let c = checkpoint::decode(bytes).map_err(|source| SeriesError::Decode {
            key: key.to_string(),
            source,
        })?;
        let p = Pipeline::restore(c.state).map_err(|source| SeriesError::Event {
            key: key.to_string(),
            source,
        })?;
        self.stats.restored += 1;
        self.install(key, p);
        Ok(())
    }

    /// Moves the least recently seen series to the next store batch.
    fn evict_lru(&mut self) -> Result<(), SeriesError> {
        let Some((key, mut entry)) = self.series.pop_lru() else {
            return Ok(());
        };
        let bytes = encode(&key, &mut entry.pipeline)?;
        self.unsaved
            .insert(key.clone(), (self.batch.generation, bytes.clone()));
        self.batch.removes.retain(|k| *k != key);
        self.batch.puts.push((key, bytes));
        self.stats.evicted += 1;
        Ok(())
    }

    /// Forgets the series not seen for the TTL (also in the store).
    pub(crate) fn expire(&mut self, now: Instant) {
        let Some(ttl) = self.ttl else { return };
        while let Some((_, e)) = self.series.peek_lru() {
            if now.saturating_duration_since(e.seen) < ttl {
                break;
            }
            if let Some((key, _)) = self.series.pop_lru() {
                self.unsaved.remove(&key);
                self.batch.puts.retain(|(k, _)| *k != key);
                if self.store.is_some() {
                    self.batch.removes.push(key);
                }
                self.stats.expired += 1;
            }
        }
    }

    /// The batch of everything changed since the last one: the states of the series that
    /// changed, the evicted ones and the removals. `None` without a store or when nothing
    /// changed.
    pub(crate) fn take_batch(&mut self) -> Result<Option<Batch>, SeriesError> {
        if self.store.is_none() {
            return Ok(None);
        }
        let committed = self.committed.load(Ordering::Acquire);
        self.unsaved.retain(|_, (g, _)| *g > committed);
        for (key, e) in self.series.iter_mut() {
            if e.dirty {
                let bytes = encode(key, &mut e.pipeline)?;
                self.batch.puts.push((key.clone(), bytes));
                e.dirty = false;
            }
        }
        if self.batch.puts.is_empty() && self.batch.removes.is_empty() {
            return Ok(None);
        }
        let next = self.batch.generation + 1;
        let batch = std::mem::replace(
            &mut self.batch,
            Batch {
                generation: next,
                ..Batch::default()
            },
        );
        Ok(Some(batch))
    }

    /// Series in memory.
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// One series' figures, if it is in memory.
    pub(crate) fn series_stats(&self, key: &str) -> Option<SeriesStats> {
        self.series.peek(key).map(|e| stats_of(&e.pipeline))
    }

    /// Adds the live series' last-20% error sums to `stats` (for the summary).
    pub(crate) fn last20_into(&self, stats: &mut ShardStats) {
        for (_, e) in self.series.iter() {
            let (m, n, c) = e.pipeline.trail().last20_sums();
            stats.model_se_last20 += m;
            stats.naive_se_last20 += n;
            stats.scored_last20 += c;
        }
    }

    /// Finishes every series' pipeline (joins background trainers, none by default).
    pub(crate) fn finish(&mut self) -> crate::Result<()> {
        for (_, e) in self.series.iter_mut() {
            e.pipeline.finish()?;
        }
        Ok(())
    }
}

/// Lends `p` the worker's buffers of its shape: returns the empty place holder they were
/// swapped with, to be swapped back after the event; `None` when the worker has no buffers of
/// that shape.
fn lend(windows: &mut Vec<Window<f32>>, p: &mut Pipeline) -> Option<Window<f32>> {
    let shape = *p.learner()?.model().config();
    let i = windows.iter().position(|w| *w.model_config() == shape)?;
    let mut w = windows.swap_remove(i);
    if p.swap_window(&mut w) {
        Some(w)
    } else {
        windows.push(w);
        None
    }
}

fn encode(key: &str, p: &mut Pipeline) -> Result<Vec<u8>, SeriesError> {
    let state = p.snapshot().map_err(|source| SeriesError::Event {
        key: key.to_string(),
        source,
    })?;
    checkpoint::encode(&state).map_err(|source| SeriesError::Encode {
        key: key.to_string(),
        source,
    })
}

fn stats_of(p: &Pipeline) -> SeriesStats {
    let (mse, naive) = p.last20();
    SeriesStats {
        events: p.events(),
        anomalies: p.anomalies(),
        updates: p.learner().map_or(0, |l| l.updates()),
        mse_last20: mse,
        naive_mse_last20: naive,
    }
}
