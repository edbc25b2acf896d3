//! A worker's `/metrics` (and `/healthz`): its [`Counters`], read at each scrape and encoded
//! by [`prometheus_client`], served by [`axum`] as the single process's endpoint is.

use super::partition::Counters;
use crate::service::metrics::{counter, exposition, gauge};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Encodes the counters at each scrape (nothing is copied between scrapes).
#[derive(Debug)]
struct Collect(Arc<Counters>);

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.0;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let e = &mut enc;
        counter(e, "tbptt_worker_events", "Events applied.", n(&c.events))?;
        counter(
            e,
            "tbptt_worker_replayed_events_skipped",
            "Replayed events at or below a checkpoint's stream sequence, skipped.",
            n(&c.skipped),
        )?;
        counter(
            e,
            "tbptt_worker_events_refused",
            "Events refused.",
            n(&c.refused),
        )?;
        gauge(
            e,
            "tbptt_worker_partitions",
            "Partitions owned now.",
            n(&c.owned),
        )?;
        counter(
            e,
            "tbptt_worker_partitions_taken",
            "Partitions taken (leases acquired).",
            n(&c.taken),
        )?;
        counter(
            e,
            "tbptt_worker_partitions_restored",
            "Partitions restored from a checkpoint.",
            n(&c.restored),
        )?;
        counter(
            e,
            "tbptt_worker_leases_lost",
            "Leases lost (not renewed in time, or taken over).",
            n(&c.lost),
        )?;
        counter(
            e,
            "tbptt_worker_checkpoints",
            "Partition checkpoints written.",
            n(&c.checkpoints),
        )?;
        gauge(
            e,
            "tbptt_worker_checkpoint_bytes",
            "Size of the last checkpoint written, bytes.",
            n(&c.checkpoint_bytes),
        )?;
        counter(
            e,
            "tbptt_worker_checkpoint_microseconds",
            "Time spent encoding and storing checkpoints, microseconds.",
            n(&c.checkpoint_micros),
        )
    }
}

/// `/metrics` (Prometheus text, or OpenMetrics when the scraper asks for it) and `/healthz`
/// of a worker counting in `counters`.
pub fn router(counters: Arc<Counters>) -> axum::Router {
    use axum::http::HeaderMap;
    use axum::routing::get;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collect(counters)));
    let registry = Arc::new(registry);
    axum::Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let registry = registry.clone();
                async move { exposition(&registry, &headers) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}
