//! What a run exposes to Prometheus: per-series forecasts, residuals and anomaly scores, and
//! the engine's counters, in the Prometheus text format or OpenMetrics
//! ([`prometheus_client`]), served at `/metrics` with `/healthz` and `/ready` ([`axum`]).
//!
//! ```text
//! predict thread: Observer (MetricsObserver) --lock, O(1), no allocation--> series table (LRU, N)
//!                                                                              |
//! tokio: GET /metrics --> Collector encodes the table and the counters <-------+
//! ```
//!
//! **Per series**, for at most [`MetricsConfig::max_series`] series: `tbptt_forecast`,
//! `tbptt_residual`, `tbptt_anomaly_score` (gauges) and `tbptt_anomalies_total` (a counter
//! since the series entered the table). Each carries `series`: the key's metric name, or the
//! whole key when it is a plain key (a CSV `--key` value, a Graphite path), `tbptt` for an
//! unkeyed run; then the key's own labels ([`crate::io::labels`]). A label name Prometheus
//! would refuse is cleaned (characters other than letters, digits and `_` become `_`, a
//! leading digit gets a `_` before it, a leading `__` gets an `x` before it); a label that
//! would clash with one tbptt sets (`series`, `value`) is renamed `exported_NAME`, as
//! Prometheus renames clashing labels; of two labels that end up with the same name the
//! first is kept. With several values per event each gauge has one sample per value, labelled
//! `value="0"`, `value="1"`, ...
//!
//! **Which series**: the table keeps the series seen most recently. A series flagged as an
//! anomaly holds its place for [`MetricsConfig::hold`] after its last anomaly (so an alert
//! can fire and resolve on it): when a new series needs a place, up to 8 held series at the
//! least recent end are passed over. Series that leave the table are counted in
//! `tbptt_metrics_series_dropped_total`; every series still counts in the aggregates
//! (`tbptt_events_total`, `tbptt_anomalous_events_total`, ...).
//!
//! **Global**: events, updates applied and skipped, rejected input by reason, queue depths,
//! series in memory, created, restored, evicted, expired and refused, store writes and
//! failures, connections, dropped datagrams, the outputs' lines written and dropped, the
//! latency from input to record (all events, and those that ran an update), readiness and
//! build information.

use crate::detect::pipeline::OutputRecord;
use crate::event::Event;
use crate::io::labels;
use crate::io::sink::remote::RemoteCounters;
use crate::service::keyed::KeyedStats;
use crate::service::run::{Observer, RunStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder, NoLabelSet,
};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Settings of the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    /// Series exported one by one at most. Default: 1,000.
    pub max_series: usize,
    /// How long a series flagged as an anomaly keeps its place in the table. Default: 10 min.
    pub hold: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_series: 1_000,
            hold: Duration::from_secs(600),
        }
    }
}

/// The name of an unkeyed run's one series.
pub const UNKEYED: &str = crate::io::sink::graphite::UNKEYED;

/// Labels tbptt sets itself; a series label of the same name is renamed `exported_NAME`.
const OWN_LABELS: [&str; 2] = ["series", "value"];

/// Held series passed over at most when a place is needed.
const PASS_OVER: usize = 8;

/// The metrics of a run: hand [`Metrics::observer`] to the run, serve [`Metrics::router`]
/// (or call [`Metrics::encode`]). Cloning shares them.
///
/// # Example
/// ```
/// use tbptt::detect::pipeline::OutputRecord;
/// use tbptt::event::Event;
/// use tbptt::service::metrics::{Format, Metrics, MetricsConfig};
/// use tbptt::service::run::Observer;
///
/// let metrics = Metrics::new(MetricsConfig::default());
/// let mut observer = metrics.observer();
/// let record = OutputRecord {
///     key: r#"cpu{host="a"}"#.into(),
///     forecast: vec![0.5],
///     score: 0.25,
///     ..Default::default()
/// };
/// observer.accepted(&Event::new(), &record);
/// let mut text = String::new();
/// metrics.encode(Format::Prometheus, &mut text)?;
/// assert!(text.contains(r#"tbptt_anomaly_score{series="cpu",host="a"} 0.25"#));
/// # Ok::<(), std::fmt::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Metrics {
    data: Arc<Data>,
    registry: Arc<Registry>,
}

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it weighs
    /// `application/openmetrics-text` at least as high as `text/plain` (or a wildcard), else
    /// the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0f64, 0.0f64);
        for part in accept.unwrap_or("").split(',') {
            let mut params = part.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Debug)]
struct Data {
    table: Mutex<Table>,
    global: Mutex<Global>,
    ready: AtomicBool,
    events: AtomicU64,
    anomalous: AtomicU64,
    latency: Histogram,
    update_latency: Histogram,
    outputs: Mutex<Vec<Arc<RemoteCounters>>>,
}

/// The counters the status and the observer keep.
#[derive(Debug, Default)]
struct Global {
    rejected: Vec<(&'static str, u64)>,
    queued: usize,
    queue_capacity: usize,
    in_flight: usize,
    updates: u64,
    skipped_updates: u64,
    series: Option<KeyedStats>,
    connections: u64,
    active_connections: u64,
    refused_connections: u64,
    evicted_connections: u64,
    timed_out_connections: u64,
    dropped_datagrams: u64,
    kernel_dropped_datagrams: u64,
}

/// One exported series.
#[derive(Debug, Default)]
struct Entry {
    series: String,
    /// Cleaned label names and values; the first `labels` are in use (the rest keep their
    /// capacity for reuse).
    pairs: Vec<(String, String)>,
    labels: usize,
    forecast: Vec<f64>,
    residual: Vec<f64>,
    score: f64,
    anomalies: u64,
    updates: u64,
    /// Held in the table until then (after an anomaly).
    hold_until: Option<Instant>,
}

#[derive(Debug)]
struct Table {
    lru: lru::LruCache<String, Entry>,
    /// A key and entry to fill for the next new series (reused from the one it replaces).
    spare: Option<(String, Entry)>,
    scratch: String,
    dropped: u64,
    hold: Duration,
    /// The last `updates` of an unkeyed run (for the update latency).
    unkeyed_updates: Option<u64>,
}

impl Metrics {
    /// Empty metrics.
    pub fn new(config: MetricsConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_series).unwrap_or(NonZeroUsize::MIN);
        // Latency buckets from 10 µs to about 2.6 s, by factors of 4.
        let buckets = || prometheus_client::metrics::histogram::exponential_buckets(1e-5, 4.0, 10);
        let data = Arc::new(Data {
            table: Mutex::new(Table {
                lru: lru::LruCache::new(cap),
                spare: None,
                scratch: String::new(),
                dropped: 0,
                hold: config.hold,
                unkeyed_updates: None,
            }),
            global: Mutex::default(),
            ready: AtomicBool::new(false),
            events: AtomicU64::new(0),
            anomalous: AtomicU64::new(0),
            latency: Histogram::new(buckets()),
            update_latency: Histogram::new(buckets()),
            outputs: Mutex::default(),
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collect(data.clone(), cap.get())));
        Metrics {
            data,
            registry: Arc::new(registry),
        }
    }

    /// The observer that feeds these metrics from a run.
    pub fn observer(&self) -> MetricsObserver {
        MetricsObserver {
            data: self.data.clone(),
        }
    }

    /// Also exports the counters of a remote output (lines written, dropped, retries).
    pub fn add_output(&self, counters: Arc<RemoteCounters>) {
        lock(&self.data.outputs).push(counters);
    }

    /// Whether the run's source is bound and its engine running.
    pub fn is_ready(&self) -> bool {
        self.data.ready.load(Ordering::Relaxed)
    }

    /// Writes every metric to `out` in `format`.
    ///
    /// # Errors
    /// Only `out`'s.
    pub fn encode(&self, format: Format, out: &mut String) -> std::fmt::Result {
        encode_registry(&self.registry, format, out)
    }

    /// `/metrics`, `/healthz` (the process answers) and `/ready` (200 while the source is
    /// bound and the engine runs, else 503).
    pub fn router(&self) -> axum::Router {
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::get;
        let m = self.clone();
        let r = self.clone();
        axum::Router::new()
            .route(
                "/metrics",
                get(move |headers: HeaderMap| {
                    let m = m.clone();
                    async move { exposition(&m.registry, &headers) }
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/ready",
                get(move || {
                    let ready = r.is_ready();
                    async move {
                        if ready {
                            (StatusCode::OK, "ready\n")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                        }
                    }
                }),
            )
    }

    /// Serves [`Metrics::router`] on `listener` until `shutdown` fires.
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        mut shutdown: crate::io::shutdown::Shutdown,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.recv().await })
            .await
    }
}

/// Writes every metric of `registry` to `out` in `format`.
fn encode_registry(registry: &Registry, format: Format, out: &mut String) -> std::fmt::Result {
    match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(out, registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(out, registry),
    }
}

/// The `/metrics` response for `registry`, in the format the scraper's `Accept` asks for
/// (shared by a run's endpoint and a worker's).
pub(crate) fn exposition(
    registry: &Registry,
    headers: &axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let mut body = String::with_capacity(64 * 1024);
    match encode_registry(registry, format, &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, format.content_type())],
            body,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Feeds [`Metrics`] from a run ([`Observer`]).
#[derive(Debug)]
pub struct MetricsObserver {
    data: Arc<Data>,
}

impl Observer for MetricsObserver {
    fn accepted(&mut self, event: &Event, record: &OutputRecord) {
        self.record(event, record, None);
    }

    fn accepted_at(&mut self, event: &Event, record: &OutputRecord, received: Instant) {
        self.record(event, record, Some(received));
    }

    fn rejected_for(&mut self, reason: &'static str) {
        let mut g = lock(&self.data.global);
        match g.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => g.rejected.push((reason, 1)),
        }
    }

    fn wants_status(&self) -> bool {
        true
    }

    fn status(&mut self, s: &RunStatus<'_>) {
        self.data.ready.store(true, Ordering::Relaxed);
        let mut g = lock(&self.data.global);
        g.queued = s.queued;
        g.queue_capacity = s.queue_capacity;
        g.in_flight = s.in_flight;
        g.updates = s.updates;
        g.skipped_updates = s.skipped_updates;
        match (&mut g.series, s.series) {
            (Some(mine), Some(k)) => mine.clone_from(k),
            (mine, k) => *mine = k.cloned(),
        }
        g.connections = s.source.connections();
        g.active_connections = s.source.active_connections();
        g.refused_connections = s.source.refused_connections();
        g.evicted_connections = s.source.evicted_connections();
        g.timed_out_connections = s.source.timed_out_connections();
        g.dropped_datagrams = s.source.dropped_datagrams();
        g.kernel_dropped_datagrams = s.source.kernel_dropped_datagrams();
    }

    fn stopped(&mut self) {
        self.data.ready.store(false, Ordering::Relaxed);
    }
}

impl MetricsObserver {
    fn record(&mut self, _: &Event, r: &OutputRecord, received: Option<Instant>) {
        let d = &self.data;
        d.events.fetch_add(1, Ordering::Relaxed);
        if r.anomaly {
            d.anomalous.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        let latency = received.map(|t| now.saturating_duration_since(t).as_secs_f64());
        if let Some(l) = latency {
            d.latency.observe(l);
        }
        let ran_update = lock(&d.table).record(r, now);
        if let (true, Some(l)) = (ran_update, latency) {
            d.update_latency.observe(l);
        }
    }
}

impl Table {
    /// Updates (or admits) the record's series; whether the event ran an update.
    fn record(&mut self, r: &OutputRecord, now: Instant) -> bool {
        let hold = self.hold;
        let key = r.key.as_str();
        if r.key.is_empty() {
            let ran = self.unkeyed_updates.is_some_and(|u| r.updates > u);
            self.unkeyed_updates = Some(r.updates);
            if let Some(e) = self.lru.get_mut(key) {
                e.update(r, now, hold);
                return ran;
            }
        } else if let Some(e) = self.lru.get_mut(key) {
            let ran = r.updates > e.updates;
            e.update(r, now, hold);
            return ran;
        }
        // A new series: take the place of the least recent one not held (passing over at most
        // PASS_OVER held ones), reusing its key and entry.
        if self.lru.len() == self.lru.cap().get() {
            for _ in 0..PASS_OVER {
                let Some((k, e)) = self.lru.peek_lru() else {
                    break;
                };
                if e.hold_until.is_none_or(|t| t <= now) {
                    break;
                }
                self.scratch.clear();
                self.scratch.push_str(k);
                self.lru.promote(self.scratch.as_str());
            }
        }
        let (mut k, mut e) = self.spare.take().unwrap_or_default();
        k.clear();
        k.push_str(key);
        e.reset(key);
        e.update(r, now, hold);
        if let Some((old_k, old_e)) = self.lru.push(k, e) {
            self.dropped += 1;
            self.spare = Some((old_k, old_e));
        }
        false
    }
}

impl Entry {
    /// Refills the entry for series `key` (keeping the capacity of its strings).
    fn reset(&mut self, key: &str) {
        self.series.clear();
        self.labels = 0;
        self.anomalies = 0;
        self.hold_until = None;
        let Some((name, pairs)) = labels::split(key).filter(|_| !key.is_empty()) else {
            self.series
                .push_str(if key.is_empty() { UNKEYED } else { key });
            return;
        };
        self.series.push_str(name);
        for (k, v) in pairs {
            if self.labels == self.pairs.len() {
                self.pairs.push(Default::default());
            }
            let (done, rest) = self.pairs.split_at_mut(self.labels);
            let (name, value) = &mut rest[0];
            clean_label(k, name);
            // Of two labels with the same cleaned name, the first is kept.
            if done.iter().any(|(n, _)| n == name) {
                continue;
            }
            value.clear();
            value.extend(v.chars());
            self.labels += 1;
        }
    }

    fn update(&mut self, r: &OutputRecord, now: Instant, hold: Duration) {
        self.forecast.clear();
        self.forecast.extend_from_slice(&r.forecast);
        self.residual.clear();
        if r.error.is_some() {
            self.residual.extend_from_slice(&r.residual);
        }
        self.score = r.score;
        self.updates = r.updates;
        if r.anomaly {
            self.anomalies += 1;
            self.hold_until = Some(now + hold);
        }
    }
}

/// Writes the Prometheus form of label name `k` into `out`.
fn clean_label(k: &str, out: &mut String) {
    out.clear();
    if OWN_LABELS.contains(&k) {
        out.push_str("exported_");
    } else if k.starts_with("__") {
        out.push('x');
    } else if k.is_empty() || k.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(k.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

/// A series' labels as Prometheus sees them.
struct SeriesLabels<'a> {
    entry: &'a Entry,
    value: Option<usize>,
}

impl EncodeLabelSet for SeriesLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeLabel;
        ("series", self.entry.series.as_str()).encode(encoder.encode_label())?;
        for (k, v) in &self.entry.pairs[..self.entry.labels] {
            (k.as_str(), v.as_str()).encode(encoder.encode_label())?;
        }
        if let Some(i) = self.value {
            ("value", i as u64).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Encodes the table and the counters on each scrape.
#[derive(Debug)]
struct Collect(Arc<Data>, usize);

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let d = &self.0;
        {
            let t = lock(&d.table);
            let entries = || t.lru.iter().map(|(_, e)| e);
            let vector = |enc: &mut DescriptorEncoder,
                          name: &str,
                          help: &str,
                          pick: fn(&Entry) -> &[f64]|
             -> std::fmt::Result {
                let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for e in entries() {
                    let values = pick(e);
                    let multi = values.len() > 1;
                    for (i, v) in values.iter().enumerate() {
                        let labels = SeriesLabels {
                            entry: e,
                            value: multi.then_some(i),
                        };
                        m.encode_family(&labels)?.encode_gauge(v)?;
                    }
                }
                Ok(())
            };
            vector(
                &mut enc,
                "tbptt_forecast",
                "The forecast of the series' next value, in its units",
                |e| &e.forecast,
            )?;
            vector(
                &mut enc,
                "tbptt_residual",
                "Actual minus forecast of the series' last event, in its units",
                |e| &e.residual,
            )?;
            let mut m = enc.encode_descriptor(
                "tbptt_anomaly_score",
                "The anomaly score of the series' last event",
                None,
                MetricType::Gauge,
            )?;
            for e in entries() {
                let labels = SeriesLabels {
                    entry: e,
                    value: None,
                };
                m.encode_family(&labels)?.encode_gauge(&e.score)?;
            }
            let mut m = enc.encode_descriptor(
                "tbptt_anomalies",
                "Events of the series flagged as anomalies since it entered the exported table",
                None,
                MetricType::Counter,
            )?;
            for e in entries() {
                let labels = SeriesLabels {
                    entry: e,
                    value: None,
                };
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, f64>(&e.anomalies, None)?;
            }
            gauge(
                &mut enc,
                "tbptt_metrics_series",
                "Series exported one by one now",
                t.lru.len() as u64,
            )?;
            gauge(
                &mut enc,
                "tbptt_metrics_series_limit",
                "Series exported one by one at most (--metrics-series)",
                self.1 as u64,
            )?;
            counter(
                &mut enc,
                "tbptt_metrics_series_dropped",
                "Series that left the exported table for a more recent one",
                t.dropped,
            )?;
        }
        counter(
            &mut enc,
            "tbptt_events",
            "Events accepted and predicted, all series",
            d.events.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "tbptt_anomalous_events",
            "Events flagged as anomalies, all series",
            d.anomalous.load(Ordering::Relaxed),
        )?;
        let g = lock(&d.global);
        let k = g.series.clone().unwrap_or_default();
        counter(
            &mut enc,
            "tbptt_updates",
            "TBPTT updates applied",
            g.updates,
        )?;
        counter(
            &mut enc,
            "tbptt_updates_skipped",
            "Due updates skipped because the background trainer was busy",
            g.skipped_updates,
        )?;
        let mut m = enc.encode_descriptor(
            "tbptt_rejected",
            "Input records rejected, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in &g.rejected {
            m.encode_family(&[("reason", *reason)])?
                .encode_counter::<NoLabelSet, _, f64>(n, None)?;
        }
        let mut m = enc.encode_descriptor(
            "tbptt_queue_depth",
            "Items waiting: decoded by the source and not yet taken (source), or handed to the \
             series workers and not yet written (workers)",
            None,
            MetricType::Gauge,
        )?;
        m.encode_family(&[("queue", "source")])?
            .encode_gauge(&(g.queued as u64))?;
        m.encode_family(&[("queue", "workers")])?
            .encode_gauge(&(g.in_flight as u64))?;
        gauge(
            &mut enc,
            "tbptt_queue_capacity",
            "Capacity of the source's queue",
            g.queue_capacity as u64,
        )?;
        gauge(&mut enc, "tbptt_series", "Keyed series in memory", k.series)?;
        for (name, help, v) in [
            ("tbptt_series_created", "Series created", k.created),
            (
                "tbptt_series_restored",
                "Series restored from the store",
                k.restored,
            ),
            (
                "tbptt_series_evicted",
                "Series evicted to the store (--max-series)",
                k.evicted,
            ),
            (
                "tbptt_series_expired",
                "Series forgotten after --series-ttl",
                k.expired,
            ),
            (
                "tbptt_series_refused",
                "Events refused: --max-series reached without a store",
                k.refused,
            ),
            (
                "tbptt_store_writes",
                "State store transactions committed",
                k.store_writes,
            ),
            (
                "tbptt_store_write_failures",
                "State store transactions that failed",
                k.store_failures,
            ),
            (
                "tbptt_connections",
                "Connections accepted or made",
                g.connections,
            ),
            (
                "tbptt_connections_refused",
                "Connections refused at a connection limit",
                g.refused_connections,
            ),
            (
                "tbptt_connections_evicted",
                "Idle connections closed for new ones",
                g.evicted_connections,
            ),
            (
                "tbptt_connections_timed_out",
                "Connections closed after the idle timeout",
                g.timed_out_connections,
            ),
        ] {
            counter(&mut enc, name, help, v)?;
        }
        gauge(
            &mut enc,
            "tbptt_connections_open",
            "Connections open now",
            g.active_connections,
        )?;
        let mut m = enc.encode_descriptor(
            "tbptt_datagrams_dropped",
            "UDP datagrams dropped: the pipeline was behind, or the kernel's buffer was full",
            None,
            MetricType::Counter,
        )?;
        m.encode_family(&[("by", "pipeline")])?
            .encode_counter::<NoLabelSet, _, f64>(&g.dropped_datagrams, None)?;
        m.encode_family(&[("by", "kernel")])?
            .encode_counter::<NoLabelSet, _, f64>(&g.kernel_dropped_datagrams, None)?;
        drop(g);
        let outputs: Vec<_> = lock(&d.outputs).iter().map(|o| o.snapshot()).collect();
        let mut m = enc.encode_descriptor(
            "tbptt_output_lines",
            "Lines of the outputs to a time-series database, written or dropped",
            None,
            MetricType::Counter,
        )?;
        for o in &outputs {
            for (result, n) in [("written", o.written), ("dropped", o.dropped)] {
                m.encode_family(&[("output", o.target.as_str()), ("result", result)])?
                    .encode_counter::<NoLabelSet, _, f64>(&n, None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "tbptt_output_retries",
            "Attempts repeated by the outputs to a time-series database",
            None,
            MetricType::Counter,
        )?;
        for o in &outputs {
            m.encode_family(&[("output", o.target.as_str())])?
                .encode_counter::<NoLabelSet, _, f64>(&o.retries, None)?;
        }
        let mut m = enc.encode_descriptor(
            "tbptt_output_reconnects",
            "Connections the outputs made again",
            None,
            MetricType::Counter,
        )?;
        for o in &outputs {
            m.encode_family(&[("output", o.target.as_str())])?
                .encode_counter::<NoLabelSet, _, f64>(&o.reconnects, None)?;
        }
        let m = enc.encode_descriptor(
            "tbptt_event_latency_seconds",
            "Time from reading an event to its record, every event",
            None,
            MetricType::Histogram,
        )?;
        d.latency.encode(m)?;
        let m = enc.encode_descriptor(
            "tbptt_update_latency_seconds",
            "Time from reading an event to its record, events that ran a TBPTT update inline",
            None,
            MetricType::Histogram,
        )?;
        d.update_latency.encode(m)?;
        gauge(
            &mut enc,
            "tbptt_ready",
            "1 while the source is bound and the engine runs",
            u64::from(d.ready.load(Ordering::Relaxed)),
        )?;
        let mut m =
            enc.encode_descriptor("tbptt_build", "The build of tbptt", None, MetricType::Info)?;
        m.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

pub(crate) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> std::fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

pub(crate) fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> std::fmt::Result {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, f64>(&v, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, score: f64, anomaly: bool) -> OutputRecord {
        OutputRecord {
            key: key.into(),
            error: Some(0.01),
            residual: vec![0.1],
            forecast: vec![1.5],
            score,
            anomaly,
            ..Default::default()
        }
    }

    fn text(m: &Metrics, format: Format) -> String {
        let mut s = String::new();
        m.encode(format, &mut s).unwrap();
        s
    }

    #[test]
    fn labels_are_escaped_cleaned_and_renamed() {
        let m = Metrics::new(MetricsConfig::default());
        let mut o = m.observer();
        let mut key = String::new();
        labels::canonical(
            "cpu",
            &mut [
                ("host", "a \"b\" \\c\nd"),
                ("series", "x"),
                ("0bad", "1"),
                ("__x", "2"),
                ("a.b", "3"),
                ("a_b", "4"),
            ],
            &mut key,
        );
        o.accepted(&Event::new(), &rec(&key, 0.25, false));
        let t = text(&m, Format::Prometheus);
        let line = t
            .lines()
            .find(|l| l.starts_with("tbptt_anomaly_score{"))
            .unwrap();
        assert_eq!(
            line,
            r#"tbptt_anomaly_score{series="cpu",_0bad="1",x__x="2",a_b="3",host="a \"b\" \\c\nd",exported_series="x"} 0.25"#
        );
    }

    #[test]
    fn plain_and_unkeyed_series_and_several_values() {
        let m = Metrics::new(MetricsConfig::default());
        let mut o = m.observer();
        o.accepted(&Event::new(), &rec("collectd.h.load", 0.5, true));
        let mut r = rec("", 0.0, false);
        r.forecast = vec![1.0, 2.0];
        r.error = None;
        o.accepted(&Event::new(), &r);
        let t = text(&m, Format::Prometheus);
        assert!(
            t.contains("tbptt_forecast{series=\"collectd.h.load\"} 1.5\n"),
            "{t}"
        );
        assert!(t.contains("tbptt_anomalies_total{series=\"collectd.h.load\"} 1\n"));
        assert!(
            t.contains("tbptt_forecast{series=\"tbptt\",value=\"1\"} 2.0\n"),
            "{t}"
        );
        // No residual for an event without an error.
        assert!(!t.contains("tbptt_residual{series=\"tbptt\""));
        assert!(t.contains("tbptt_events_total 2\n"));
        assert!(t.contains("tbptt_anomalous_events_total 1\n"));
    }

    #[test]
    fn the_table_keeps_the_most_recent_and_holds_anomalous_series() {
        let m = Metrics::new(MetricsConfig {
            max_series: 3,
            hold: Duration::from_secs(600),
        });
        let mut o = m.observer();
        o.accepted(&Event::new(), &rec("hot", 0.9, true));
        for k in ["a", "b", "c", "d", "e"] {
            o.accepted(&Event::new(), &rec(k, 0.1, false));
        }
        let t = text(&m, Format::Prometheus);
        let series: Vec<&str> = t
            .lines()
            .filter_map(|l| l.strip_prefix("tbptt_anomaly_score{series=\""))
            .map(|l| &l[..l.find('"').unwrap()])
            .collect();
        // The held series stays, with the two most recent.
        assert_eq!(series.len(), 3, "{t}");
        assert!(series.contains(&"hot") && series.contains(&"e") && series.contains(&"d"));
        assert!(t.contains("tbptt_metrics_series 3\n"));
        assert!(t.contains("tbptt_metrics_series_dropped_total 3\n"));
        assert!(t.contains("tbptt_events_total 6\n"));
        // Without a hold the least recent goes first.
        let m = Metrics::new(MetricsConfig {
            max_series: 2,
            hold: Duration::ZERO,
        });
        let mut o = m.observer();
        for k in ["hot", "a", "b"] {
            o.accepted(&Event::new(), &rec(k, 0.9, true));
        }
        assert!(!text(&m, Format::Prometheus).contains("series=\"hot\""));
    }

    #[test]
    fn openmetrics_when_the_scraper_asks_for_it() {
        // What Prometheus 2.42 sends.
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9, application/openmetrics-text;q=0.5")),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0")),
            Format::Prometheus
        );
        let m = Metrics::new(MetricsConfig::default());
        m.observer().accepted(&Event::new(), &rec("x", 0.5, true));
        let om = text(&m, Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE tbptt_anomalies counter\n"));
        assert!(om.contains("tbptt_build_info{version=\""));
        let p = text(&m, Format::Prometheus);
        assert!(!p.contains("# EOF"));
        assert!(p.contains("# TYPE tbptt_anomalies_total counter\n"), "{p}");
        assert!(p.contains("tbptt_anomalies_total{series=\"x\"} 1\n"));
    }

    #[test]
    fn readiness_follows_the_status_and_the_stop() {
        let m = Metrics::new(MetricsConfig::default());
        let mut o = m.observer();
        assert!(!m.is_ready());
        let source = crate::io::source::SourceStats::default();
        o.status(&RunStatus {
            queued: 3,
            queue_capacity: 1024,
            in_flight: 0,
            source: &source,
            series: None,
            rejected: 0,
            updates: 7,
            skipped_updates: 1,
        });
        o.rejected_for("arity");
        o.rejected_for("arity");
        assert!(m.is_ready());
        let t = text(&m, Format::Prometheus);
        assert!(t.contains("tbptt_queue_depth{queue=\"source\"} 3\n"), "{t}");
        assert!(t.contains("tbptt_updates_total 7\n"));
        assert!(t.contains("tbptt_rejected_total{reason=\"arity\"} 2\n"));
        assert!(t.contains("tbptt_ready 1\n"));
        o.stopped();
        assert!(!m.is_ready());
    }
}
