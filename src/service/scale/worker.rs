//! A worker: heartbeats, takes and renews the leases of its share of the partitions, runs
//! each owned partition as a task, and hands partitions over when the set of live workers
//! changes.

use super::lease::{assignment, heartbeat_key, Lease};
use super::partition::{Counters, Partition};
use super::{buckets, connect, Buckets, ScaleConfig, ScaleError};
use async_nats::jetstream;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

/// A worker's counters at its end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WorkerStats {
    /// Events applied.
    pub events: u64,
    /// Replayed events skipped (at or below a checkpoint's sequence).
    pub skipped: u64,
    /// Events refused.
    pub refused: u64,
    /// Partitions taken (leases acquired).
    pub taken: u64,
    /// Partitions restored from a checkpoint.
    pub restored: u64,
    /// Leases lost (not renewed in time or taken over).
    pub lost: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Size of the last checkpoint, bytes.
    pub checkpoint_bytes: u64,
    /// Mean time to encode and store a checkpoint, ms.
    pub checkpoint_ms: f64,
}

struct Held {
    lease: Lease,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ScaleError>>,
    leaving: bool,
}

struct Worker {
    config: ScaleConfig,
    js: jetstream::Context,
    b: Buckets,
    held: HashMap<usize, Held>,
    counters: Arc<Counters>,
}

/// Runs a worker until `shutdown` completes: connects (retrying with backoff), creates the
/// streams and buckets if missing, then every TTL/4 renews its heartbeat and leases and takes
/// or hands over partitions. It counts in `counters` as it goes (read them at any time, for
/// example with [`super::metrics::router`]). At shutdown each partition writes a last checkpoint and its
/// lease is released.
///
/// # Errors
/// [`ScaleError::Config`] for invalid settings, [`ScaleError::Nats`] if the buckets cannot be
/// made. A partition's failure is logged and the partition given up, not fatal.
pub async fn run_worker(
    mut config: ScaleConfig,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()>,
) -> Result<WorkerStats, ScaleError> {
    config.validate()?;
    config.keyed.pipeline.background = false;
    tokio::pin!(shutdown);
    let ready = async {
        let client = connect(&config.url, None).await?;
        let js = jetstream::new(client);
        let b = setup(&js, &config).await?;
        Ok::<_, ScaleError>((js, b))
    };
    let (js, b) = tokio::select! {
        r = ready => r?,
        () = &mut shutdown => return Ok(WorkerStats::default()),
    };
    // The bucket's max_age is the TTL every worker obeys.
    if let Ok(s) = b.leases.status().await {
        if s.max_age() >= std::time::Duration::from_secs(1) {
            config.lease_ttl = s.max_age();
        }
    }
    tracing::info!(
        "worker {} on {}: {} partitions, lease TTL {:?}",
        config.id,
        config.url,
        config.partitions,
        config.lease_ttl
    );
    let mut w = Worker {
        config,
        js,
        b,
        held: HashMap::new(),
        counters,
    };
    let mut tick = tokio::time::interval(w.config.lease_ttl / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                let began = std::time::Instant::now();
                w.round().await;
                let took = began.elapsed();
                // A round longer than the TTL's margin lets leases lapse before renewal.
                if took > w.config.lease_ttl / 4 {
                    tracing::warn!(
                        "a lease round took {took:?} (renewals are due every {:?})",
                        w.config.lease_ttl / 4
                    );
                }
            }
        }
    }
    w.stop().await;
    Ok(w.stats())
}

/// The streams and buckets, retried with backoff (workers starting together on a new
/// cluster race to create them, and a replicated creation can time out).
async fn setup(js: &jetstream::Context, config: &ScaleConfig) -> Result<Buckets, ScaleError> {
    super::retry("set up the streams and buckets", || buckets(js, config)).await
}

impl Worker {
    /// One round: heartbeat, renew, reap finished tasks, rebalance.
    async fn round(&mut self) {
        let id = self.config.id.clone();
        if let Err(e) = self
            .b
            .leases
            .put(heartbeat_key(&id), Bytes::from_static(b"1"))
            .await
        {
            tracing::warn!("heartbeat not written: {e}");
        }
        self.renew().await;
        self.reap().await;
        let live = self.live().await;
        let want = assignment(&live, &id, self.config.partitions);
        for (p, h) in &mut self.held {
            if !want.contains(p) && !h.leaving {
                tracing::info!("partition {p}: handing over");
                h.leaving = true;
                let _ = h.stop.send(true);
            }
        }
        for p in want {
            if !self.held.contains_key(&p) {
                self.take(p).await;
            }
        }
        let owned = self.held.values().filter(|h| !h.leaving).count() as u64;
        self.counters.owned.store(owned, Ordering::Relaxed);
    }

    /// Renews every held lease at once: one round trip for all of them, so a round on a
    /// loaded cluster does not outlast the leases renewed at its end.
    async fn renew(&mut self) {
        let (id, kv) = (&self.config.id, &self.b.leases);
        let renewed =
            futures_util::future::join_all(self.held.values_mut().map(|h| h.lease.renew(kv, id)))
                .await;
        for ((p, h), ok) in self.held.iter_mut().zip(renewed) {
            if !ok && !h.leaving {
                tracing::warn!("partition {p}: lease lost; stopping it");
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                h.leaving = true;
                let _ = h.stop.send(true);
            }
        }
    }

    /// Joins the partition tasks that ended and releases their leases.
    async fn reap(&mut self) {
        let done: Vec<usize> = self
            .held
            .iter()
            .filter(|(_, h)| h.task.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for p in done {
            let Some(h) = self.held.remove(&p) else {
                continue;
            };
            match h.task.await {
                Ok(Ok(())) => {}
                Ok(Err(ScaleError::LeaseLost { partition })) => {
                    tracing::warn!("partition {partition}: lease lost; stopped writing for it");
                }
                Ok(Err(e)) => tracing::error!("partition {p}: {e}; giving it up"),
                Err(e) => tracing::error!("partition {p}: task failed: {e}"),
            }
            h.lease.release(&self.b.leases).await;
        }
    }

    /// The live workers: those with a heartbeat key (and this one).
    async fn live(&self) -> Vec<String> {
        let mut live = vec![self.config.id.clone()];
        match self.b.leases.keys().await {
            Ok(mut keys) => {
                while let Some(Ok(k)) = keys.next().await {
                    if let Some(id) = k.strip_prefix("w.") {
                        live.push(id.to_string());
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list workers: {e}"),
        }
        live
    }

    /// Takes partition `p` if its lease is free, and starts its task.
    async fn take(&mut self, p: usize) {
        let c = &self.config;
        let lease = match Lease::acquire(&self.b.leases, p, &c.id, c.lease_ttl).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("partition {p}: {e}");
                return;
            }
        };
        tracing::info!("partition {p}: taken");
        self.counters.taken.fetch_add(1, Ordering::Relaxed);
        let (stop, rx) = watch::channel(false);
        let deadline = lease.deadline();
        let (js, b, config, counters) = (
            self.js.clone(),
            self.b.clone(),
            self.config.clone(),
            self.counters.clone(),
        );
        let interval = config.checkpoint_interval;
        let task = tokio::spawn(async move {
            let part = Partition::restore(p, &b, &config, counters).await?;
            part.run(&js, &b, &deadline, rx, interval).await
        });
        self.held.insert(
            p,
            Held {
                lease,
                stop,
                task,
                leaving: false,
            },
        );
    }

    /// Stops every partition (each writes a last checkpoint), releases the leases and the
    /// heartbeat.
    async fn stop(&mut self) {
        for h in self.held.values() {
            let _ = h.stop.send(true);
        }
        for (p, mut h) in std::mem::take(&mut self.held) {
            // Keep the lease while the last checkpoint is written.
            let result = loop {
                tokio::select! {
                    r = &mut h.task => break r,
                    () = tokio::time::sleep(self.config.lease_ttl / 4) => {
                        h.lease.renew(&self.b.leases, &self.config.id).await;
                    }
                }
            };
            if let Ok(Err(e)) = result {
                tracing::warn!("partition {p}: {e}");
            }
            h.lease.release(&self.b.leases).await;
        }
        let _ = self.b.leases.delete(heartbeat_key(&self.config.id)).await;
        self.counters.owned.store(0, Ordering::Relaxed);
    }

    fn stats(&self) -> WorkerStats {
        let c = &self.counters;
        let n = c.checkpoints.load(Ordering::Relaxed);
        WorkerStats {
            events: c.events.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            taken: c.taken.load(Ordering::Relaxed),
            restored: c.restored.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            checkpoints: n,
            checkpoint_bytes: c.checkpoint_bytes.load(Ordering::Relaxed),
            checkpoint_ms: if n == 0 {
                0.0
            } else {
                c.checkpoint_micros.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
            },
        }
    }
}
