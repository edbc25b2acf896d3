//! The streaming runtime: a source on tokio, the pipeline on its own thread, output records
//! written as they come, a summary at the end.
//!
//! ```text
//! source (tokio tasks) --bounded mpsc--> predict thread: pipeline + writer
//!                                          |  every k events (background mode)
//!                                          v
//!                                   trainer thread (crossbeam, bounded)
//! ```
//! The predict thread never waits for training. It stops at the end of the input, on
//! shutdown (Ctrl-C, SIGTERM: the source closes, queued events are still processed), on a
//! closed output (a broken pipe, or a [`Sink`] whose reader is gone), or at the first bad
//! record with `strict`; [`Summary::ended_by`] says which ([`EndReason`]).
//!
//! [`run`] writes records as [`RunConfig::output`] says. A [`Runner`] takes any [`Sink`]
//! instead (a [`ChannelSink`](crate::io::sink::ChannelSink) hands them to another thread) and
//! [`Observer`]s that see every event as it passes, such as the command's progress bar and
//! plot.
//!
//! With [`RunConfig::checkpoint`], the predict thread snapshots and serializes the pipeline
//! every so many events or seconds and hands the bytes to a writer thread
//! ([`checkpoint::Writer`]); while an earlier checkpoint is still waiting for the writer, the
//! due one waits (counted as deferred) and is taken at the first event after that. A final
//! checkpoint is written, synchronously, whenever the run ends (also after a strict-mode
//! error or a closed output). [`RunConfig::resume`] starts from a saved state.

use crate::detect::pipeline::{OutputRecord, Pipeline, PipelineConfig, PipelineState};
use crate::event::Event;
use crate::io::capture::{Capture, WallClock};
use crate::io::checkpoint::{self, CheckpointError};
use crate::io::format::TimeStyle;
use crate::io::shutdown::Shutdown;
use crate::io::sink::{OutputFormat, RecordWriter, Sink};
use crate::io::source::{self, SourceConfig, SourceItem};
use crate::service::keyed::{Done, KeyedConfig, KeyedStats, SeriesError, Workers};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How fast a recorded log is replayed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Speed {
    /// As fast as possible (default).
    #[default]
    Max,
    /// Honour the events' timestamps: event `i` is processed `(t_i − t_0) / factor` seconds
    /// after the first. `Factor(1.0)` is real time.
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = crate::Error;

    /// `max`, `realtime` (= `1x`), or `Nx` / `N` for N times real time (N > 0).
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "max" => Ok(Speed::Max),
            "realtime" | "real-time" => Ok(Speed::Factor(1.0)),
            _ => {
                let n = s.strip_suffix('x').unwrap_or(s);
                match n.parse::<f64>() {
                    Ok(f) if f > 0.0 && f.is_finite() => Ok(Speed::Factor(f)),
                    _ => Err(crate::Error::config(
                        "speed",
                        format!("expected max, realtime or a factor like 10x, got {s:?}"),
                    )),
                }
            }
        }
    }
}

/// Where output records go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OutputTarget {
    /// Standard output (default).
    #[default]
    Stdout,
    /// A file (created or truncated).
    File(PathBuf),
    /// Nowhere (only the summary is wanted).
    Discard,
}

/// When and where checkpoints are written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The checkpoint file; older ones are kept as `PATH.1`, `PATH.2`, ...
    pub path: PathBuf,
    /// Write one every this many events (`None`: not by count).
    pub every: Option<u64>,
    /// Write one when this much time has passed since the last (`None`: not by time).
    pub interval: Option<Duration>,
    /// Files kept in all, the newest at `path` (at least 1). Default in the command: 3.
    pub keep: usize,
}

/// Everything `run` needs.
///
/// `#[non_exhaustive]`: made by [`RunConfig::new`] and then set field by field or with the
/// `with_*` setters, so that new fields (with their defaults) do not break callers.
///
/// # Example
/// ```
/// use tbptt::io::source::{SourceConfig, SourceSpec};
/// use tbptt::service::run::{OutputTarget, RunConfig};
/// let source = SourceConfig::new(SourceSpec::File("metrics.csv".into()));
/// let mut config = RunConfig::new(source)
///     .with_output(OutputTarget::Discard)
///     .with_max_events(Some(1_000));
/// config.strict = true;
/// assert_eq!(config.max_events, Some(1_000));
/// assert!(config.strict && config.checkpoint.is_none());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunConfig {
    /// The input.
    pub source: SourceConfig,
    /// Normalization, learner, anomaly score.
    pub pipeline: PipelineConfig,
    /// Where output records go.
    pub output: OutputTarget,
    /// Their format.
    pub output_format: OutputFormat,
    /// Also write each forecast member and its weight in the records.
    pub members: bool,
    /// Write record times as seconds since the Unix epoch, not as the input wrote them (ISO
    /// text, Unix milliseconds, ...).
    pub epoch_times: bool,
    /// Stop at the first rejected record instead of skipping it. With a TCP or Unix
    /// listener, strict mode applies per connection: the connection that sent the record is
    /// closed and the run goes on. Not with a UDP listener (a datagram has no connection to
    /// close): the run refuses it.
    pub strict: bool,
    /// Replay pacing.
    pub speed: Speed,
    /// Stop after this many accepted events.
    pub max_events: Option<u64>,
    /// Write checkpoints (`None`: never).
    pub checkpoint: Option<CheckpointConfig>,
    /// Continue from this state instead of starting fresh (its configuration is used; set
    /// its `config.background` and anomaly threshold as wanted).
    pub resume: Option<Box<PipelineState>>,
    /// Record every accepted event with its arrival time to this file, as JSON lines that
    /// replay reads back ([`crate::io::capture`]). A fresh run truncates it; a run resumed from a
    /// checkpoint appends to it.
    pub record: Option<PathBuf>,
    /// Whether each event key gets its own pipeline ([`crate::service::keyed`]). Default:
    /// [`Keys::Auto`].
    pub keys: Keys,
}

/// Whether events of different keys get their own pipelines. With one, the keyed settings'
/// `pipeline` is replaced by [`RunConfig::pipeline`] (trained inline on the workers), and
/// records come out in input order as with one pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Keys {
    /// One pipeline for every event, whatever its key.
    Shared,
    /// A pipeline per key, on worker threads. Not with `checkpoint` or `resume`: keyed series
    /// keep their state in [`KeyedConfig::store`].
    PerKey(KeyedConfig),
    /// A pipeline per key when the first event has a key, else one pipeline; one pipeline
    /// with `checkpoint` or `resume`.
    Auto(KeyedConfig),
}

impl RunConfig {
    /// A run of `source` with everything else at its default: the default pipeline, CSV
    /// records to stdout, skipping bad records, at full speed, without an event limit,
    /// checkpoints, resume or recording.
    pub fn new(source: SourceConfig) -> Self {
        RunConfig {
            source,
            pipeline: PipelineConfig::default(),
            output: OutputTarget::Stdout,
            output_format: OutputFormat::Csv,
            members: false,
            epoch_times: false,
            strict: false,
            speed: Speed::Max,
            max_events: None,
            checkpoint: None,
            resume: None,
            record: None,
            keys: Keys::Auto(KeyedConfig::default()),
        }
    }
    /// Sets `source`: the input.
    #[must_use]
    pub fn with_source(mut self, source: SourceConfig) -> Self {
        self.source = source;
        self
    }

    /// Sets `pipeline`: normalization, learner, anomaly score.
    #[must_use]
    pub fn with_pipeline(mut self, pipeline: PipelineConfig) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Sets `output`: where output records go.
    #[must_use]
    pub fn with_output(mut self, output: OutputTarget) -> Self {
        self.output = output;
        self
    }

    /// Sets `output_format`: their format.
    #[must_use]
    pub fn with_output_format(mut self, output_format: OutputFormat) -> Self {
        self.output_format = output_format;
        self
    }

    /// Sets `members`: whether records carry each forecast member and its weight.
    #[must_use]
    pub fn with_members(mut self, members: bool) -> Self {
        self.members = members;
        self
    }

    /// Sets `epoch_times`: whether record times are written as seconds since the Unix epoch.
    #[must_use]
    pub fn with_epoch_times(mut self, epoch_times: bool) -> Self {
        self.epoch_times = epoch_times;
        self
    }

    /// Sets `strict`: whether the first rejected record stops the run (see [`RunConfig::strict`]).
    #[must_use]
    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets `speed`: replay pacing.
    #[must_use]
    pub fn with_speed(mut self, speed: Speed) -> Self {
        self.speed = speed;
        self
    }

    /// Sets `max_events`: the event limit.
    #[must_use]
    pub fn with_max_events(mut self, max_events: Option<u64>) -> Self {
        self.max_events = max_events;
        self
    }

    /// Sets `checkpoint`: checkpoints to write.
    #[must_use]
    pub fn with_checkpoint(mut self, checkpoint: Option<CheckpointConfig>) -> Self {
        self.checkpoint = checkpoint;
        self
    }

    /// Sets `resume`: the state to continue from.
    #[must_use]
    pub fn with_resume(mut self, resume: Option<Box<PipelineState>>) -> Self {
        self.resume = resume;
        self
    }

    /// Sets `record`: the file accepted events are recorded to.
    #[must_use]
    pub fn with_record(mut self, record: Option<PathBuf>) -> Self {
        self.record = record;
        self
    }

    /// Sets `keys`: whether each event key gets its own pipeline.
    #[must_use]
    pub fn with_keys(mut self, keys: Keys) -> Self {
        self.keys = keys;
        self
    }
}

/// Why a run ended. Written in the summary as its text (`end of input`, `shutdown`,
/// `output closed`, `max events`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EndReason {
    /// The input ended (default).
    #[default]
    #[serde(rename = "end of input")]
    EndOfInput,
    /// The shutdown signal fired.
    #[serde(rename = "shutdown")]
    Shutdown,
    /// The output was closed: a broken pipe, or a sink whose reader is gone.
    #[serde(rename = "output closed")]
    OutputClosed,
    /// [`RunConfig::max_events`] events were accepted.
    #[serde(rename = "max events")]
    MaxEvents,
    /// The run failed ([`Summary::error`] says why).
    #[serde(rename = "error")]
    Error,
}

impl EndReason {
    /// The reason as the summary writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::EndOfInput => "end of input",
            EndReason::Shutdown => "shutdown",
            EndReason::OutputClosed => "output closed",
            EndReason::MaxEvents => "max events",
            EndReason::Error => "error",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error an [`Observer`] may end a run with.
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// Sees every event of a run as it passes, on the predict thread (a progress bar, a plot,
/// metrics). Every method has a default that does nothing; they must be quick, since the
/// next event waits for them.
pub trait Observer: Send {
    /// An event was accepted and predicted; `record` is what the sink was given.
    fn accepted(&mut self, event: &Event, record: &OutputRecord) {
        let _ = (event, record);
    }

    /// [`Observer::accepted`], with the instant the bytes that completed the event were read
    /// (for a latency from input to record). The run calls this one; by default it calls
    /// [`Observer::accepted`].
    fn accepted_at(&mut self, event: &Event, record: &OutputRecord, received: Instant) {
        let _ = received;
        self.accepted(event, record);
    }

    /// An input record was rejected and skipped.
    fn rejected(&mut self) {}

    /// [`Observer::rejected`], with why: a [`ParseError::reason`](crate::io::format::ParseError::reason)
    /// for a record that did not decode, or a [`SeriesError::reason`] (`refused` with one
    /// pipeline) for an event its pipeline refused. The run calls this one; by default it
    /// calls [`Observer::rejected`].
    fn rejected_for(&mut self, reason: &'static str) {
        let _ = reason;
        self.rejected();
    }

    /// Whether this observer wants [`Observer::status`] (about once a second). Default: no.
    fn wants_status(&self) -> bool {
        false
    }

    /// The run's state: when the engine starts, then about once a second while it runs (also
    /// while the input is idle), if [`Observer::wants_status`] says so.
    fn status(&mut self, status: &RunStatus<'_>) {
        let _ = status;
    }

    /// The run stopped reading input, whatever the reason (before the final checkpoint).
    fn stopped(&mut self) {}

    /// The run ended without error; the last step before the summary.
    ///
    /// # Errors
    /// Whatever the observer could not finish (the run then fails with
    /// [`RunError::Observer`]).
    fn finished(&mut self) -> Result<(), ObserverError> {
        Ok(())
    }
}

/// Values of the monitoring protocols that are skipped by design and counted: see
/// [`SourceStats`](source::SourceStats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SkippedValues {
    /// String and boolean fields of InfluxDB line protocol.
    pub fields: u64,
    /// Prometheus stale markers.
    pub stale_markers: u64,
    /// Remote-write samples not newer than the previous one of their series in the request.
    pub out_of_order: u64,
    /// Graphite values and remote-write samples that were NaN (not a stale marker) or
    /// infinite.
    pub non_finite: u64,
}

impl SkippedValues {
    fn total(&self) -> u64 {
        self.fields + self.stale_markers + self.out_of_order + self.non_finite
    }
}

/// What [`Observer::status`] sees: queue depths and counters of the running engine.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunStatus<'a> {
    /// Items the source has decoded that the predict thread has not taken yet.
    pub queued: usize,
    /// The source queue's capacity.
    pub queue_capacity: usize,
    /// Keyed events handed to the workers and not yet written.
    pub in_flight: usize,
    /// The source's counters (connections, dropped datagrams).
    pub source: &'a source::SourceStats,
    /// The keyed series' counters, with keyed series.
    pub series: Option<&'a KeyedStats>,
    /// Input records rejected so far.
    pub rejected: u64,
    /// TBPTT updates applied so far.
    pub updates: u64,
    /// Due updates skipped because the background trainer was busy.
    pub skipped_updates: u64,
}

/// Figures of a finished run, written to stderr and, as JSON, to `--summary FILE`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Events accepted and predicted.
    pub events: u64,
    /// TBPTT updates applied.
    pub updates: u64,
    /// Due updates skipped because the background trainer was busy.
    pub skipped_updates: u64,
    /// Updates rejected because the loss or a gradient was not finite.
    pub rejected_updates: u64,
    /// Input records rejected (malformed, wrong arity, NaN/Inf, too long, missing values).
    pub rejected: u64,
    /// The rejected records by reason ([`ParseError::reason`](crate::io::format::ParseError::reason),
    /// or `event` for an event its pipeline refused); only reasons that occurred.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rejected_by_reason: std::collections::BTreeMap<String, u64>,
    /// UDP datagrams dropped because the pipeline was behind.
    pub dropped_datagrams: u64,
    /// UDP datagrams the kernel dropped before they were read (the socket's receive buffer
    /// was full; Linux).
    #[serde(default)]
    pub kernel_dropped_datagrams: u64,
    /// Connections refused because a connection limit was reached.
    #[serde(default)]
    pub refused_connections: u64,
    /// Idle connections closed to make room for a new one.
    #[serde(default)]
    pub evicted_connections: u64,
    /// Connections closed after sending nothing for the idle timeout.
    #[serde(default)]
    pub timed_out_connections: u64,
    /// Values of the monitoring protocols skipped by design (they are not series values).
    #[serde(default)]
    pub skipped_values: SkippedValues,
    /// Events flagged as anomalies.
    pub anomalies: u64,
    /// Mean training loss over the applied updates (normalized units).
    pub mean_loss: f64,
    /// Mean squared forecast error over the last 20% of the events, in the input's units.
    pub mse_last20: f64,
    /// The same for the naive forecast (repeat the last value).
    pub naive_mse_last20: f64,
    /// Mean squared forecast error over every event with a forecast, in the input's units.
    #[serde(default)]
    pub mse_all: f64,
    /// The same for the naive forecast.
    #[serde(default)]
    pub naive_mse_all: f64,
    /// Accepted events per second of wall time.
    pub events_per_sec: f64,
    /// Wall time of the run, in seconds.
    pub wall_seconds: f64,
    /// Why the run ended: `end of input`, `shutdown`, `output closed`, `max events` or
    /// `error`.
    pub ended_by: EndReason,
    /// With `ended_by: error`: what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Events seen before this run, when it resumed from a checkpoint (its first output
    /// index).
    #[serde(default)]
    pub resumed_from: Option<u64>,
    /// Checkpoints written, the final one included.
    #[serde(default)]
    pub checkpoints: u64,
    /// Due checkpoints that waited because the writer was still busy.
    #[serde(default)]
    pub checkpoints_deferred: u64,
    /// Checkpoint writes that failed (each logged).
    #[serde(default)]
    pub checkpoint_failures: u64,
    /// With `-T auto`: the window length now and its min, mean and max over the updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<crate::train::truncation::TruncationReport>,
    /// With keyed series: their counters (series, evictions, restores, store writes, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<KeyedStats>,
    /// The outputs to a time-series database (InfluxDB, Graphite): lines written, retried and
    /// dropped. Filled by the caller that made them (the command), since they finish after
    /// the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<crate::io::sink::RemoteStats>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // With `ended_by: error` the error itself is the caller's to report (the command
        // prints it last); the JSON form carries it in `error`.
        writeln!(f, "tbptt summary ({})", self.ended_by)?;
        match self.resumed_from {
            Some(n) => writeln!(
                f,
                "  events            {} (resumed after {n}; {} in all)",
                self.events,
                n + self.events
            )?,
            None => writeln!(f, "  events            {}", self.events)?,
        }
        writeln!(
            f,
            "  updates           {} applied, {} skipped, {} rejected (non-finite)",
            self.updates, self.skipped_updates, self.rejected_updates
        )?;
        if self.skipped_updates > self.updates {
            writeln!(
                f,
                "  note              training fell behind the input; --sync trains on every window"
            )?;
        }
        write!(f, "  rejected input    {}", self.rejected)?;
        if !self.rejected_by_reason.is_empty() {
            let reasons: Vec<String> = self
                .rejected_by_reason
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        writeln!(f)?;
        if self.dropped_datagrams + self.kernel_dropped_datagrams > 0 {
            writeln!(
                f,
                "  dropped datagrams {} (pipeline behind), {} (kernel buffer full)",
                self.dropped_datagrams, self.kernel_dropped_datagrams
            )?;
        }
        if self.refused_connections + self.evicted_connections + self.timed_out_connections > 0 {
            writeln!(
                f,
                "  connections       {} refused, {} closed for new ones, {} timed out",
                self.refused_connections, self.evicted_connections, self.timed_out_connections
            )?;
        }
        let v = &self.skipped_values;
        if v.total() > 0 {
            writeln!(
                f,
                "  skipped values    {} string/boolean fields, {} stale markers, {} out of order, \
                 {} non-finite",
                v.fields, v.stale_markers, v.out_of_order, v.non_finite
            )?;
        }
        if let Some(k) = &self.series {
            writeln!(
                f,
                "  series            {} in memory: {} created, {} restored, {} evicted, {} \
                 expired, {} events refused (--max-series)",
                k.series, k.created, k.restored, k.evicted, k.expired, k.refused
            )?;
            if k.store_writes + k.store_failures > 0 {
                writeln!(
                    f,
                    "  store             {} writes, {} failed",
                    k.store_writes, k.store_failures
                )?;
            }
        }
        for o in &self.outputs {
            writeln!(
                f,
                "  output            {}: {} lines written in {} batches, {} retries, {} \
                 reconnects, {} lines dropped",
                o.target, o.written, o.batches, o.retries, o.reconnects, o.dropped
            )?;
        }
        writeln!(f, "  anomalies         {}", self.anomalies)?;
        if self.series.is_none() {
            writeln!(f, "  mean loss         {:.6}", self.mean_loss)?;
        }
        if let Some(t) = &self.truncation {
            writeln!(f, "  window            {t}")?;
        }
        if self.checkpoints + self.checkpoint_failures > 0 {
            writeln!(
                f,
                "  checkpoints       {} written, {} deferred, {} failed",
                self.checkpoints, self.checkpoints_deferred, self.checkpoint_failures
            )?;
        }
        let ratio = if self.naive_mse_last20 > 0.0 {
            format!(" ({:.3} of naive)", self.mse_last20 / self.naive_mse_last20)
        } else {
            String::new()
        };
        writeln!(
            f,
            "  MSE last 20%      {:.6} vs naive {:.6}{ratio}",
            self.mse_last20, self.naive_mse_last20
        )?;
        let ratio = if self.naive_mse_all > 0.0 {
            format!(" ({:.3} of naive)", self.mse_all / self.naive_mse_all)
        } else {
            String::new()
        };
        writeln!(
            f,
            "  MSE all events    {:.6} vs naive {:.6}{ratio}",
            self.mse_all, self.naive_mse_all
        )?;
        write!(
            f,
            "  throughput        {:.0} events/s over {:.3} s",
            self.events_per_sec, self.wall_seconds
        )
    }
}

impl Summary {
    /// The figures of one pipeline (events, wall time, end and the source's counters are
    /// the run's).
    fn of_pipeline(p: &Pipeline) -> Summary {
        let (mse_last20, naive_mse_last20) = p.last20();
        let (mse_all, naive_mse_all) = p.trail().all();
        let learner = p.learner();
        Summary {
            updates: learner.map_or(0, |l| l.updates()),
            skipped_updates: learner.map_or(0, |l| l.skipped_updates()),
            rejected_updates: learner.map_or(0, |l| l.rejected_updates()),
            anomalies: p.anomalies(),
            mean_loss: learner.map_or(0.0, |l| l.mean_loss()),
            mse_last20,
            naive_mse_last20,
            mse_all,
            naive_mse_all,
            truncation: learner.map(|l| l.truncation()).filter(|t| t.adaptive),
            ..Summary::default()
        }
    }

    /// The figures of keyed series: errors over every series' events, each against its own
    /// naive forecast.
    fn of_series(k: KeyedStats) -> Summary {
        let (mse_last20, naive_mse_last20) = k.mse_last20();
        let (mse_all, naive_mse_all) = k.mse_all();
        Summary {
            updates: k.updates,
            anomalies: k.anomalies,
            mse_last20,
            naive_mse_last20,
            mse_all,
            naive_mse_all,
            series: Some(k),
            ..Summary::default()
        }
    }
}

/// Why `run` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] crate::Error),
    /// The source could not start or failed.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A record was rejected in strict mode.
    #[error("{origin}: {reason} (strict mode)")]
    Strict {
        /// Where the record came from.
        origin: String,
        /// What was wrong with it: a [`ParseError`](crate::io::format::ParseError) or an
        /// engine [`Error`](crate::Error).
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record the source cannot read past (an unknown column, a stream that cannot be
    /// resynchronized): the run stops, `strict` or not.
    #[error("{origin}: {reason}")]
    Fatal {
        /// Where the record came from.
        origin: String,
        /// What was wrong with it.
        #[source]
        reason: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file the run writes (`output`, `record`) could not be created or opened.
    #[error("cannot open {} ({what}): {source}", path.display())]
    Open {
        /// Which file: `output` or `record`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The predict thread panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(#[source] tokio::task::JoinError),
    /// An [`Observer`] failed to finish (e.g. the command's plot could not be written).
    #[error(transparent)]
    Observer(ObserverError),
    /// The keyed series could not start (store, threads).
    #[error(transparent)]
    Series(#[from] SeriesError),
}

/// The recording of accepted events, when [`RunConfig::record`] asks for one.
struct Recording {
    recorder: Capture<std::fs::File>,
    clock: WallClock,
}

impl Recording {
    /// `resumed`: the run continues a checkpoint, so the recording is appended to.
    fn open(config: &RunConfig, resumed: bool) -> Result<Option<Self>, RunError> {
        let Some(p) = &config.record else {
            return Ok(None);
        };
        let recorder = if resumed {
            Capture::append(p)
        } else {
            Capture::create(p)
        }
        .map_err(|source| RunError::Open {
            what: "record",
            path: p.clone(),
            source,
        })?;
        Ok(Some(Recording {
            recorder,
            clock: WallClock::now(),
        }))
    }
}

/// Logs rejected records: the first 20 individually, then one line per 1000.
struct RejectLog {
    count: u64,
    /// Counts by [`ParseError::reason`](crate::io::format::ParseError::reason) (`event` for
    /// events a pipeline refused).
    by_reason: std::collections::BTreeMap<&'static str, u64>,
}

impl RejectLog {
    fn note(
        &mut self,
        origin: &dyn std::fmt::Display,
        kind: &'static str,
        reason: &dyn std::fmt::Display,
    ) {
        self.count += 1;
        *self.by_reason.entry(kind).or_insert(0) += 1;
        if self.count <= 20 {
            tracing::warn!("{origin}: {reason}; skipped");
        } else if self.count.is_multiple_of(1000) {
            tracing::warn!(
                "{} records rejected so far; latest: {origin}: {reason}",
                self.count
            );
        }
    }
}

/// Runs a source through a pipeline until the input ends or `shutdown` fires; writes output
/// records as [`RunConfig::output`] says and returns the summary. The same as
/// `Runner::new(config).run(shutdown)`; see [`Runner`] for another sink and observers.
///
/// # Errors
/// As [`Runner::run`].
pub async fn run(config: RunConfig, shutdown: Shutdown) -> Result<Summary, RunError> {
    Runner::new(config).run(shutdown).await
}

/// A run with its sink and observers chosen by the caller.
///
/// # Example
/// ```
/// use tbptt::io::sink::ChannelSink;
/// use tbptt::io::source::{SourceConfig, SourceSpec};
/// use tbptt::service::run::{EndReason, RunConfig, Runner};
///
/// let path = std::env::temp_dir().join(format!("tbptt-runner-doc-{}.csv", std::process::id()));
/// let text: String = (0..300).map(|t| format!("{}\n", (t as f64 * 0.3).sin())).collect();
/// std::fs::write(&path, format!("x\n{text}"))?;
/// let config = RunConfig::new(SourceConfig::new(SourceSpec::File(path.clone())));
/// let (sink, records) = ChannelSink::bounded(1024);
/// let (_trigger, shutdown) = tbptt::io::shutdown::channel();
/// let summary = tokio::runtime::Runtime::new()?
///     .block_on(Runner::new(config).sink(sink).run(shutdown))?;
/// assert_eq!(summary.ended_by, EndReason::EndOfInput);
/// assert_eq!(records.try_iter().count(), 300);
/// std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Runner {
    config: RunConfig,
    sink: Option<Box<dyn Sink + Send>>,
    observers: Vec<Box<dyn Observer>>,
}

impl Runner {
    /// A run of `config`, writing as [`RunConfig::output`] says, with no observer.
    pub fn new(config: RunConfig) -> Self {
        Runner {
            config,
            sink: None,
            observers: Vec::new(),
        }
    }

    /// Sends the output records to `sink` instead of [`RunConfig::output`].
    pub fn sink(mut self, sink: impl Sink + Send + 'static) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// Adds an observer; observers see each event in the order they were added.
    pub fn observer(mut self, observer: impl Observer + 'static) -> Self {
        self.observers.push(Box::new(observer));
        self
    }

    /// Runs until the input ends or `shutdown` fires. Must be called inside a tokio runtime
    /// (the source's tasks run on it); the pipeline runs on a dedicated thread.
    ///
    /// # Errors
    /// [`RunError`]: a bad configuration, a source that cannot start (bind, open), a rejected
    /// record with `strict`, an output error other than a closed output, an observer that
    /// failed to finish.
    pub async fn run(self, shutdown: Shutdown) -> Result<Summary, RunError> {
        let (summary, result) = self.run_summarized(shutdown).await;
        result.map(|()| summary)
    }

    /// [`Runner::run`], with the summary of what was done also when the run fails (its
    /// `ended_by` is then [`EndReason::Error`] and its `error` the error's message): what
    /// the command writes on every exit.
    pub async fn run_summarized(self, shutdown: Shutdown) -> (Summary, Result<(), RunError>) {
        match self.start(shutdown).await {
            Ok(x) => x,
            Err(e) => (
                Summary {
                    ended_by: EndReason::Error,
                    error: Some(e.to_string()),
                    ..Summary::default()
                },
                Err(e),
            ),
        }
    }

    async fn start(self, shutdown: Shutdown) -> Result<(Summary, Result<(), RunError>), RunError> {
        let Runner {
            mut config,
            sink,
            observers,
        } = self;
        if config.strict {
            match &config.source.spec {
                source::SourceSpec::Listen(source::ListenAddr::Udp(_)) => {
                    return Err(RunError::Config(crate::Error::config(
                        "strict",
                        "strict mode cannot apply to a udp:// listener: a datagram has no \
                         connection to close, and one bad datagram must not stop the service; \
                         without it bad records are counted and skipped",
                    )))
                }
                source::SourceSpec::Listen(_) => config.source.close_on_reject = true,
                _ => {}
            }
        }
        let resumed = config.resume.take();
        let resumed_from = resumed.as_ref().map(|s| s.events());
        let checkpointed = resumed.is_some() || config.checkpoint.is_some();
        let mut inline = config.pipeline.clone();
        inline.background = false;
        let keys = std::mem::replace(&mut config.keys, Keys::Shared);
        let engine = match (keys, resumed) {
            (Keys::Auto(mut k), None) if !checkpointed => {
                k.pipeline = inline;
                Engine::Pending(Box::new(k))
            }
            (Keys::PerKey(mut k), resumed) => {
                if resumed.is_some() || config.checkpoint.is_some() {
                    return Err(RunError::Config(crate::Error::config(
                        "checkpoint",
                        "keyed series keep their state in the store (--store), not in a \
                         checkpoint file; with --shared-model one pipeline serves every key \
                         and checkpoints work as usual",
                    )));
                }
                k.pipeline = inline;
                Engine::Keyed(Box::new(Workers::spawn(&k)?))
            }
            (_, Some(state)) => Engine::Single(Box::new(Pipeline::restore(*state)?)),
            (_, None) => Engine::Single(Box::new(Pipeline::new(config.pipeline.clone())?)),
        };
        let writer = match &config.checkpoint {
            Some(c) => Some(checkpoint::Writer::spawn(&c.path, c.keep)?),
            None => None,
        };
        let (rx, handle) = source::spawn(config.source.clone(), shutdown.clone())?;
        let stats = handle.stats().clone();
        let inbox = Inbox {
            rx,
            closer: handle.closer(),
            stats: stats.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let sink = match sink {
            Some(s) => s,
            None => Box::new(
                RecordWriter::new(writer_for(&config.output)?, config.output_format)
                    .with_members(config.members),
            ),
        };
        let worker = tokio::task::spawn_blocking(move || {
            let looper = EventLoop::new(config, engine, sink, observers, writer)?;
            Ok::<_, RunError>(looper.run(inbox, &shutdown))
        });
        let (mut summary, result) = worker.await.map_err(RunError::Internal)??;
        summary.resumed_from = resumed_from;
        // The predict loop may stop before the source ends (strict, max events, closed
        // output); the source then sees its channel closed and stops.
        let _ = tokio::time::timeout(Duration::from_secs(2), handle.join()).await;
        summary.dropped_datagrams = stats.dropped_datagrams();
        summary.kernel_dropped_datagrams = stats.kernel_dropped_datagrams();
        summary.refused_connections = stats.refused_connections();
        summary.evicted_connections = stats.evicted_connections();
        summary.timed_out_connections = stats.timed_out_connections();
        summary.skipped_values = SkippedValues {
            fields: stats.skipped_fields(),
            stale_markers: stats.stale_markers(),
            out_of_order: stats.out_of_order(),
            non_finite: stats.non_finite_samples(),
        };
        Ok((summary, result))
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.config)
            .field("sink", &self.sink.as_ref().map(|_| "custom"))
            .field("observers", &self.observers.len())
            .finish()
    }
}

/// The one place a sink's result is judged: a closed output (broken pipe) ends the run, any
/// other error fails it.
fn judge_output(r: std::io::Result<()>) -> Result<Option<EndReason>, RunError> {
    match r {
        Ok(()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Some(EndReason::OutputClosed)),
        Err(e) => Err(RunError::Output(e)),
    }
}

fn writer_for(output: &OutputTarget) -> Result<Box<dyn Write + Send>, RunError> {
    Ok(match output {
        OutputTarget::Stdout => Box::new(std::io::stdout()),
        OutputTarget::File(p) => {
            Box::new(std::fs::File::create(p).map_err(|source| RunError::Open {
                what: "output",
                path: p.clone(),
                source,
            })?)
        }
        OutputTarget::Discard => Box::new(std::io::sink()),
    })
}

/// The checkpoint schedule of a run.
struct Checkpoints {
    writer: checkpoint::Writer,
    every: Option<u64>,
    interval: Option<Duration>,
    last_events: u64,
    last_time: Instant,
    deferred: u64,
    waiting: bool,
    /// Inline training (deterministic): wait for the writer instead of deferring, so that
    /// checkpoints fall at exact event counts.
    wait: bool,
}

impl Checkpoints {
    /// After an event: if a checkpoint is due and the writer is free, snapshot, serialize
    /// and hand it over.
    fn after_event(&mut self, pipeline: &mut Pipeline) -> Result<(), RunError> {
        let events = pipeline.events();
        let due = self
            .every
            .is_some_and(|n| events >= self.last_events.saturating_add(n))
            || self.interval.is_some_and(|d| self.last_time.elapsed() >= d);
        if !due {
            return Ok(());
        }
        if !self.wait && !self.writer.is_idle() {
            if !self.waiting {
                self.waiting = true;
                self.deferred += 1;
            }
            return Ok(());
        }
        self.waiting = false;
        let bytes = checkpoint::encode(&pipeline.snapshot()?)?;
        if self.wait {
            self.writer.submit(bytes);
        } else {
            self.writer.try_submit(bytes);
        }
        self.last_events = events;
        self.last_time = Instant::now();
        Ok(())
    }
}

/// How often observers that want it see [`Observer::status`].
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// When the observers last saw a status, and what the next one needs.
struct StatusClock {
    source: std::sync::Arc<source::SourceStats>,
    runtime: tokio::runtime::Handle,
    last: Instant,
}

/// What the predict loop reads: the source's items (their events go back to the source's
/// pool when dropped).
struct Inbox {
    rx: tokio::sync::mpsc::Receiver<SourceItem>,
    /// Closes a listener's connection (strict mode per connection).
    closer: source::Closer,
    /// The source's counters (for [`Observer::status`]), and the input's columns once known.
    stats: std::sync::Arc<source::SourceStats>,
    /// The runtime, to wait for the source with a timeout when observers want a status.
    runtime: tokio::runtime::Handle,
}

/// What turns events into records: one pipeline, or a pipeline per key on workers.
enum Engine {
    Single(Box<Pipeline>),
    Keyed(Box<Workers<source::Arrival>>),
    /// Decided by the first event: keyed workers with these settings if it has a key, else
    /// one pipeline.
    Pending(Box<KeyedConfig>),
    /// After the keyed workers have stopped.
    Finished,
}

/// The predict thread's state: the pipeline, where its records go and what watches them.
struct EventLoop {
    config: RunConfig,
    engine: Engine,
    sink: Box<dyn Sink + Send>,
    observers: Vec<Box<dyn Observer>>,
    rejects: RejectLog,
    events: u64,
    checkpoints: Option<Checkpoints>,
    recording: Option<Recording>,
    /// Records written since the last flush.
    dirty: bool,
    /// Pacing: when the loop started and the first event's time.
    started: Instant,
    first_time: Option<f64>,
    /// Closes a listener's connection (strict mode per connection); set by `drain`.
    closer: Option<source::Closer>,
    /// The record buffer of the single pipeline, reused.
    out: OutputRecord,
    /// Events handed to keyed workers.
    submitted: u64,
    /// The source's counters (set by `drain`), to learn the input's columns from.
    source: Option<std::sync::Arc<source::SourceStats>>,
    /// Whether the columns were announced and handed to the sink.
    begun: bool,
    /// With observers that want a status: when they last saw one.
    status: Option<StatusClock>,
}

impl EventLoop {
    fn new(
        config: RunConfig,
        engine: Engine,
        sink: Box<dyn Sink + Send>,
        observers: Vec<Box<dyn Observer>>,
        ckpt_writer: Option<checkpoint::Writer>,
    ) -> Result<Self, RunError> {
        let (events_before, background) = match &engine {
            Engine::Single(p) => (p.events(), p.config().background),
            Engine::Keyed(_) | Engine::Pending(_) | Engine::Finished => (0, false),
        };
        let checkpoints = ckpt_writer.map(|writer| Checkpoints {
            writer,
            every: config.checkpoint.as_ref().and_then(|c| c.every),
            interval: config.checkpoint.as_ref().and_then(|c| c.interval),
            last_events: events_before,
            last_time: Instant::now(),
            deferred: 0,
            waiting: false,
            wait: !background,
        });
        let recording = Recording::open(&config, events_before > 0)?;
        Ok(EventLoop {
            config,
            engine,
            sink,
            observers,
            rejects: RejectLog {
                count: 0,
                by_reason: std::collections::BTreeMap::new(),
            },
            events: 0,
            checkpoints,
            recording,
            dirty: false,
            started: Instant::now(),
            first_time: None,
            closer: None,
            out: OutputRecord::default(),
            submitted: 0,
            source: None,
            begun: false,
            status: None,
        })
    }

    /// Processes the inbox until the run ends, then writes the final checkpoint and makes
    /// the summary.
    fn run(mut self, inbox: Inbox, shutdown: &Shutdown) -> (Summary, Result<(), RunError>) {
        let started = Instant::now();
        let mut error = None;
        let mut ended_by = match self.drain(inbox) {
            Ok(EndReason::EndOfInput) if shutdown.is_shutdown() => EndReason::Shutdown,
            Ok(end) => end,
            Err(e) => {
                note(&mut error, e);
                EndReason::Error
            }
        };
        let flushed = self.sink.flush();
        for o in &mut self.observers {
            o.stopped();
        }
        let (joined, keyed) = match std::mem::replace(&mut self.engine, Engine::Finished) {
            Engine::Single(mut p) => {
                let joined = p.finish();
                self.engine = Engine::Single(p);
                (joined, None)
            }
            Engine::Keyed(w) => (Ok(()), Some(w.finish())),
            Engine::Pending(_) | Engine::Finished => (Ok(()), None),
        };
        // The final checkpoint is written whatever ended the run: the state is consistent
        // after every event (a rejected record changes nothing).
        let (ck_stats, deferred) = self.final_checkpoint().unwrap_or_else(|e| {
            note(&mut error, e);
            Default::default()
        });
        if let Some(r) = self.recording.as_mut() {
            if let Err(e) = r.recorder.flush() {
                note(&mut error, RunError::Output(e));
            }
        }
        for o in &mut self.observers {
            if let Err(e) = o.finished() {
                note(&mut error, RunError::Observer(e));
            }
        }
        match judge_output(flushed) {
            Ok(Some(closed)) if error.is_none() => ended_by = closed,
            Ok(_) => {}
            Err(e) => note(&mut error, e),
        }
        if let Err(e) = joined {
            note(&mut error, e.into());
        }
        if error.is_some() {
            ended_by = EndReason::Error;
        }
        let wall = started.elapsed().as_secs_f64();
        let mut summary = match (&self.engine, keyed) {
            (_, Some(k)) => Summary::of_series(k),
            (Engine::Single(p), None) => Summary::of_pipeline(p),
            _ => Summary::default(),
        };
        let events = self.events;
        let summary = Summary {
            events,
            rejected: self.rejects.count,
            rejected_by_reason: self
                .rejects
                .by_reason
                .iter()
                .map(|(k, n)| ((*k).to_string(), *n))
                .collect(),
            events_per_sec: if wall > 0.0 {
                events as f64 / wall
            } else {
                0.0
            },
            wall_seconds: wall,
            ended_by,
            error: error.as_ref().map(|e| e.to_string()),
            resumed_from: None,
            checkpoints: ck_stats.written,
            checkpoints_deferred: deferred,
            checkpoint_failures: ck_stats.failed,
            ..std::mem::take(&mut summary)
        };
        (summary, error.map_or(Ok(()), Err))
    }

    /// Writes the final checkpoint, if the run writes checkpoints: the writer's figures and
    /// the checkpoints deferred.
    fn final_checkpoint(&mut self) -> Result<(checkpoint::WriterStats, u64), RunError> {
        let Some(c) = self.checkpoints.take() else {
            return Ok(Default::default());
        };
        let deferred = c.deferred;
        let Engine::Single(pipeline) = &mut self.engine else {
            let _ = c.writer.finish(None);
            return Ok((Default::default(), deferred));
        };
        let last = pipeline
            .snapshot()
            .map_err(RunError::from)
            .and_then(|s| checkpoint::encode(&s).map_err(RunError::from));
        match last {
            Ok(bytes) => Ok((c.writer.finish(Some(&bytes))?, deferred)),
            Err(e) => {
                let _ = c.writer.finish(None);
                Err(e)
            }
        }
    }

    /// Processes items until the input ends or the run must stop; returns why it ended.
    fn drain(&mut self, inbox: Inbox) -> Result<EndReason, RunError> {
        let Inbox {
            mut rx,
            closer,
            stats,
            runtime,
        } = inbox;
        self.closer = Some(closer);
        self.source = Some(std::sync::Arc::clone(&stats));
        if self.observers.iter().any(|o| o.wants_status()) {
            self.status = Some(StatusClock {
                source: stats,
                runtime,
                last: Instant::now(),
            });
            self.report_status(&rx);
        }
        let end = self.drain_items(&mut rx);
        // Keyed series: the records of the events still in flight (unless the output is
        // gone or the run failed).
        if matches!(end, Ok(EndReason::EndOfInput | EndReason::Shutdown)) {
            while let Some(d) = self.workers().and_then(|w| w.wait_done()) {
                if let Some(end) = self.done(d)? {
                    return Ok(end);
                }
            }
        }
        end
    }

    /// The next item from the source (`None` when it has ended). With observers that want a
    /// status, one is reported every [`STATUS_INTERVAL`] while the input is idle.
    fn wait_for_item(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<SourceItem>,
    ) -> Option<SourceItem> {
        let Some(runtime) = self.status.as_ref().map(|c| c.runtime.clone()) else {
            return rx.blocking_recv();
        };
        loop {
            match runtime.block_on(tokio::time::timeout(STATUS_INTERVAL, rx.recv())) {
                Ok(item) => return item,
                Err(_) => self.report_status(rx),
            }
        }
    }

    /// Shows the observers that want it the engine's state now.
    fn report_status(&mut self, rx: &tokio::sync::mpsc::Receiver<SourceItem>) {
        let Some(clock) = self.status.take() else {
            return;
        };
        let (in_flight, series) = match &self.engine {
            Engine::Keyed(w) => (w.in_flight(), Some(w.stats())),
            _ => (0, None),
        };
        let (updates, skipped_updates) = match (&self.engine, &series) {
            (_, Some(k)) => (k.updates, 0),
            (Engine::Single(p), None) => p
                .learner()
                .map_or((0, 0), |l| (l.updates(), l.skipped_updates())),
            _ => (0, 0),
        };
        let status = RunStatus {
            queued: rx.len(),
            queue_capacity: rx.max_capacity(),
            in_flight,
            source: &clock.source,
            series: series.as_ref(),
            rejected: self.rejects.count,
            updates,
            skipped_updates,
        };
        for o in &mut self.observers {
            if o.wants_status() {
                o.status(&status);
            }
        }
        self.status = Some(StatusClock {
            last: Instant::now(),
            ..clock
        });
    }

    fn workers(&mut self) -> Option<&mut Workers<source::Arrival>> {
        match &mut self.engine {
            Engine::Keyed(w) => Some(w),
            _ => None,
        }
    }

    fn drain_items(
        &mut self,
        rx: &mut tokio::sync::mpsc::Receiver<SourceItem>,
    ) -> Result<EndReason, RunError> {
        loop {
            let item = match rx.try_recv() {
                Ok(item) => item,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    // Nothing queued: take the keyed records in flight, flush what was
                    // written, then wait.
                    if let Some(d) = self.workers().and_then(|w| w.wait_done()) {
                        if let Some(end) = self.done(d)? {
                            return Ok(end);
                        }
                        continue;
                    }
                    if self.dirty {
                        if let Some(end) = judge_output(self.sink.flush())? {
                            return Ok(end);
                        }
                        self.dirty = false;
                    }
                    match self.wait_for_item(rx) {
                        Some(item) => item,
                        None => return Ok(EndReason::EndOfInput),
                    }
                }
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    return Ok(EndReason::EndOfInput)
                }
            };
            if self
                .status
                .as_ref()
                .is_some_and(|c| c.last.elapsed() >= STATUS_INTERVAL)
            {
                self.report_status(rx);
            }
            match item {
                SourceItem::Event(rec) => {
                    if let Some(end) = self.dispatch(rec)? {
                        return Ok(end);
                    }
                }
                SourceItem::Rejected { origin, error } => self.rejected(&origin, &error)?,
                SourceItem::Connected(origin) => tracing::info!("{origin}: connected"),
                SourceItem::Disconnected { origin, reason } => match reason {
                    Some(r) => tracing::info!("{origin}: disconnected ({r})"),
                    None => tracing::info!("{origin}: disconnected"),
                },
            }
        }
    }

    /// One decoded event: processed here with one pipeline, or handed to its series'
    /// worker (the records that are ready are then written). `Some` when the run ends.
    fn dispatch(&mut self, rec: source::Arrival) -> Result<Option<EndReason>, RunError> {
        if !self.begun {
            if let Some(end) = self.begin()? {
                return Ok(Some(end));
            }
        }
        pace(
            &self.config.speed,
            &rec.event,
            &mut self.first_time,
            self.started,
        );
        if let Engine::Pending(k) = &self.engine {
            self.engine = if rec.event.key.is_empty() {
                Engine::Single(Box::new(Pipeline::new(self.config.pipeline.clone())?))
            } else {
                tracing::info!(
                    target: "tbptt::announce",
                    "the events carry keys: a pipeline per key (--shared-model for one)"
                );
                Engine::Keyed(Box::new(Workers::spawn(k)?))
            };
        }
        if !matches!(self.engine, Engine::Keyed(_)) {
            return self.event(&rec);
        }
        while let Some(d) = self
            .workers()
            .filter(|w| !w.ready_for(&rec.event))
            .and_then(|w| w.wait_done())
        {
            if let Some(end) = self.done(d)? {
                return Ok(Some(end));
            }
        }
        if let Some(w) = self.workers() {
            w.submit(rec);
            self.submitted += 1;
        }
        while let Some(d) = self.workers().and_then(|w| w.try_done()) {
            if let Some(end) = self.done(d)? {
                return Ok(Some(end));
            }
        }
        if self.config.max_events.is_some_and(|m| self.submitted >= m) {
            while let Some(d) = self.workers().and_then(|w| w.wait_done()) {
                if let Some(end) = self.done(d)? {
                    return Ok(Some(end));
                }
            }
            return Ok(Some(EndReason::MaxEvents));
        }
        Ok(None)
    }

    /// A keyed event's result: written, observed, or rejected as with one pipeline.
    fn done(&mut self, d: Done<source::Arrival>) -> Result<Option<EndReason>, RunError> {
        let Done {
            item: rec,
            record,
            result,
        } = d;
        let end = match result {
            Ok(()) => self.accepted(&rec, &record),
            Err(e) => {
                let reason = e.reason();
                self.refused(&rec, e, reason).map(|()| None)
            }
        };
        if let Some(w) = self.workers() {
            w.recycle(record);
        }
        end
    }

    /// At the first event: says which columns are the time, key and values, and hands them to
    /// the sink and the recording.
    fn begin(&mut self) -> Result<Option<EndReason>, RunError> {
        self.begun = true;
        let Some(mut columns) = self.source.as_ref().and_then(|s| s.columns()).cloned() else {
            return Ok(None);
        };
        tracing::info!(target: "tbptt::announce", "input columns: {}", columns.describe());
        for c in &columns.epoch_inputs {
            tracing::warn!(
                target: "tbptt::announce",
                "column `{c}` looks like Unix times but is learned as a value \
                 (--time {c} takes it as the time)"
            );
        }
        if let Some(r) = self.recording.as_mut() {
            r.recorder.set_columns(&columns);
        }
        if self.config.epoch_times {
            columns.time_style = TimeStyle::Number;
        }
        judge_output(self.sink.begin(&columns))
    }

    /// One decoded event with one pipeline: predict, write, observe, checkpoint. `Some` when
    /// the run ends.
    fn event(&mut self, rec: &source::Arrival) -> Result<Option<EndReason>, RunError> {
        let Engine::Single(pipeline) = &mut self.engine else {
            return Ok(None);
        };
        let mut out = std::mem::take(&mut self.out);
        let result = pipeline.process_into(&rec.event, &mut out);
        let ok = result.is_ok();
        let end = match result {
            Ok(()) => self.accepted(rec, &out),
            Err(e) => self.refused(rec, e, "refused").map(|()| None),
        };
        self.out = out;
        let end = end?;
        if end.is_some() {
            return Ok(end);
        }
        if let (true, Some(c), Engine::Single(p)) =
            (ok, self.checkpoints.as_mut(), &mut self.engine)
        {
            c.after_event(p)?;
        }
        Ok(self
            .config
            .max_events
            .is_some_and(|m| self.events >= m)
            .then_some(EndReason::MaxEvents))
    }

    /// A processed event's record: recorded, observed, written.
    fn accepted(
        &mut self,
        rec: &source::Arrival,
        r: &OutputRecord,
    ) -> Result<Option<EndReason>, RunError> {
        if let Some(t) = self.recording.as_mut() {
            t.recorder
                .write(&rec.event, t.clock.epoch_of(rec.received))
                .map_err(RunError::Output)?;
        }
        for o in &mut self.observers {
            o.accepted_at(&rec.event, r, rec.received);
        }
        if let Some(end) = judge_output(self.sink.write(r))? {
            return Ok(Some(end));
        }
        self.dirty = true;
        self.events += 1;
        Ok(None)
    }

    /// An event its pipeline refused: fatal with `strict` (per connection with a listener),
    /// else logged, counted and skipped.
    fn refused(
        &mut self,
        rec: &source::Arrival,
        e: impl std::error::Error + Send + Sync + 'static,
        reason: &'static str,
    ) -> Result<(), RunError> {
        if self.per_connection(&rec.origin) {
            if let Some(c) = &self.closer {
                c.close(rec.origin.peer);
            }
        } else if self.config.strict {
            return Err(RunError::Strict {
                origin: rec.origin.to_string(),
                reason: Box::new(e),
            });
        }
        self.rejects.note(&rec.origin, reason, &e);
        for o in &mut self.observers {
            o.rejected_for(reason);
        }
        Ok(())
    }

    /// Strict mode with a listener: a bad record costs its connection, not the run.
    fn per_connection(&self, origin: &source::Origin) -> bool {
        self.config.strict && is_listener(origin)
    }

    /// A record the source could not decode: fatal with `strict` (or when the source says
    /// so), else logged, counted and skipped.
    fn rejected(
        &mut self,
        origin: &source::Origin,
        error: &crate::io::format::ParseError,
    ) -> Result<(), RunError> {
        // The parse error names its own line or byte; prefix only the source's name.
        let at = if error.position().is_some() {
            origin.name.to_string()
        } else {
            origin.to_string()
        };
        // A listener's connection that sent it is closed by the source.
        let closed = self.per_connection(origin) || (error.is_fatal() && is_listener(origin));
        if !closed && self.config.strict {
            return Err(RunError::Strict {
                origin: at,
                reason: Box::new(error.clone()),
            });
        }
        if !closed && error.is_fatal() {
            return Err(RunError::Fatal {
                origin: at,
                reason: Box::new(error.clone()),
            });
        }
        self.rejects.note(&at, error.reason(), error);
        for o in &mut self.observers {
            o.rejected_for(error.reason());
        }
        Ok(())
    }
}

/// Keeps the first error of the run's end.
fn note(first: &mut Option<RunError>, e: RunError) {
    if first.is_none() {
        *first = Some(e);
    } else {
        tracing::error!("{e}");
    }
}

/// Whether `origin` is a connection of a TCP or Unix listener.
fn is_listener(origin: &source::Origin) -> bool {
    matches!(
        origin.kind,
        source::SourceKind::Tcp | source::SourceKind::Unix | source::SourceKind::Http
    )
}

/// Sleeps until an event's time, scaled by the replay speed, is due.
fn pace(speed: &Speed, ev: &Event, first: &mut Option<f64>, started: Instant) {
    let Speed::Factor(f) = *speed else { return };
    let Some(t) = ev.time else {
        if first.is_none() {
            tracing::warn!(
                "cannot pace the replay: the events have no time (name the column with \
                 --time); replaying at full speed"
            );
            // Warned once: the first time is set to a value no timed event reaches.
            *first = Some(f64::NAN);
        }
        return;
    };
    let t0 = *first.get_or_insert(t);
    let due = ((t - t0) / f).max(0.0);
    if !due.is_finite() {
        return;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if due > elapsed {
        std::thread::sleep(Duration::from_secs_f64((due - elapsed).min(3600.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sink::ChannelSink;
    use crate::io::source::SourceSpec;

    /// A CSV file of `n` sine values under a fresh name.
    fn sine_file(tag: &str, n: usize) -> PathBuf {
        let path = std::env::temp_dir().join(format!("tbptt-run-{tag}-{}.csv", std::process::id()));
        let mut text = String::from("x\n");
        for t in 0..n {
            text.push_str(&format!("{}\n", (t as f64 * 0.3).sin()));
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run_with(runner: Runner) -> Result<Summary, RunError> {
        let (_trigger, shutdown) = crate::io::shutdown::channel();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
            .block_on(runner.run(shutdown))
    }

    /// Counts what an observer is shown.
    struct Count(std::sync::Arc<std::sync::Mutex<(u64, u64, bool)>>);

    impl Observer for Count {
        fn accepted(&mut self, _: &Event, _: &OutputRecord) {
            self.0.lock().unwrap().0 += 1;
        }
        fn rejected(&mut self) {
            self.0.lock().unwrap().1 += 1;
        }
        fn finished(&mut self) -> Result<(), ObserverError> {
            self.0.lock().unwrap().2 = true;
            Ok(())
        }
    }

    #[test]
    fn a_channel_sink_gets_every_record_and_observers_every_event() {
        let path = sine_file("channel", 200);
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "oops\n0.5\n",
        )
        .unwrap();
        let (sink, records) = ChannelSink::bounded(1024);
        let seen = std::sync::Arc::new(std::sync::Mutex::new((0, 0, false)));
        let config = RunConfig::new(SourceConfig::new(SourceSpec::File(path.clone())));
        let summary =
            run_with(Runner::new(config).sink(sink).observer(Count(seen.clone()))).unwrap();
        std::fs::remove_file(&path).unwrap();
        let got: Vec<OutputRecord> = records.try_iter().collect();
        assert_eq!(got.len(), 201);
        assert!(got.iter().enumerate().all(|(i, r)| r.index == i as u64));
        assert_eq!(summary.ended_by, EndReason::EndOfInput);
        assert_eq!((summary.events, summary.rejected), (201, 1));
        assert_eq!(*seen.lock().unwrap(), (201, 1, true));
        assert_eq!(
            serde_json::to_value(summary.ended_by).unwrap(),
            "end of input"
        );
    }

    #[test]
    fn a_sink_whose_reader_is_gone_ends_the_run_as_output_closed() {
        let path = sine_file("closed", 5_000);
        let (sink, records) = ChannelSink::bounded(4);
        drop(records);
        let config = RunConfig::new(SourceConfig::new(SourceSpec::File(path.clone())));
        let summary = run_with(Runner::new(config).sink(sink)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(summary.ended_by, EndReason::OutputClosed);
        assert_eq!(summary.ended_by.to_string(), "output closed");
        assert_eq!(summary.events, 0);
    }

    #[test]
    fn an_observer_that_cannot_finish_fails_the_run() {
        struct Fails;
        impl Observer for Fails {
            fn finished(&mut self) -> Result<(), ObserverError> {
                Err("no room for the plot".into())
            }
        }
        let path = sine_file("fails", 20);
        let mut config = RunConfig::new(SourceConfig::new(SourceSpec::File(path.clone())));
        config.output = OutputTarget::Discard;
        let e = run_with(Runner::new(config).observer(Fails)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(e, RunError::Observer(_)), "{e}");
        assert_eq!(e.to_string(), "no room for the plot");
    }
}
