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
//! broken output pipe, or at the first bad record with `strict`.
//!
//! With [`RunConfig::checkpoint`], the predict thread snapshots and serializes the pipeline
//! every so many events or seconds and hands the bytes to a writer thread
//! ([`checkpoint::Writer`]); while an earlier checkpoint is still waiting for the writer, the
//! due one waits (counted as deferred) and is taken at the first event after that, except
//! with inline training (not `background`), where the predict thread waits for the writer so
//! that the run stays deterministic. A final
//! checkpoint is written, synchronously, whenever the run ends (also after a strict-mode
//! error or a closed output). [`RunConfig::resume`] starts from a saved state.

use crate::checkpoint::{self, CheckpointError};
use crate::event::Event;
use crate::pipeline::{OutputRecord, Pipeline, PipelineConfig, PipelineState};
use crate::plot::ForecastTrace;
use crate::record::{Recorder, WallClock};
use crate::shutdown::Shutdown;
use crate::sink::{OutputFormat, RecordWriter};
use crate::source::{self, SourceConfig, SourceItem};
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
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The input.
    pub source: SourceConfig,
    /// Normalization, learner, anomaly score.
    pub pipeline: PipelineConfig,
    /// Where output records go.
    pub output: OutputTarget,
    /// Their format.
    pub output_format: OutputFormat,
    /// Stop at the first rejected record instead of skipping it. With a TCP or Unix
    /// listener, strict mode applies per connection: the connection that sent the record is
    /// closed and the run goes on. Not with a UDP listener (a datagram has no connection to
    /// close): [`run`] refuses it.
    pub strict: bool,
    /// Replay pacing.
    pub speed: Speed,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Expected number of input lines, for the progress bar (e.g. a file's line count).
    pub progress_len: Option<u64>,
    /// Stop after this many accepted events.
    pub max_events: Option<u64>,
    /// Write checkpoints (`None`: never).
    pub checkpoint: Option<CheckpointConfig>,
    /// Continue from this state instead of starting fresh (its configuration is used; set
    /// its `config.background` and anomaly threshold as wanted).
    pub resume: Option<Box<PipelineState>>,
    /// Record every accepted event with its arrival time to this file, as JSON lines that
    /// replay reads back ([`crate::record`]). A fresh run truncates it; a run resumed from a
    /// checkpoint appends to it.
    pub record: Option<PathBuf>,
    /// Draw the run's forecast against the actual series, with the anomaly score, to this
    /// SVG file at the end ([`crate::plot::forecast_svg`]; decimated past
    /// [`PLOT_POINTS`] points).
    pub plot: Option<PathBuf>,
}

/// Most points a `plot` keeps; a longer run is drawn decimated.
pub const PLOT_POINTS: usize = 20_000;

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
    /// Events flagged as anomalies.
    pub anomalies: u64,
    /// Mean training loss over the applied updates (normalized units).
    pub mean_loss: f64,
    /// Mean squared forecast error over the last 20% of the events, in the input's units.
    pub mse_last20: f64,
    /// The same for the naive forecast (repeat the last value).
    pub naive_mse_last20: f64,
    /// Accepted events per second of wall time.
    pub events_per_sec: f64,
    /// Wall time of the run, in seconds.
    pub wall_seconds: f64,
    /// Why the run ended: `end of input`, `shutdown`, `output closed`, `max events`.
    pub ended_by: String,
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
    pub truncation: Option<crate::truncation::TruncationReport>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
        writeln!(f, "  rejected input    {}", self.rejected)?;
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
        writeln!(f, "  anomalies         {}", self.anomalies)?;
        writeln!(f, "  mean loss         {:.6}", self.mean_loss)?;
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
        write!(
            f,
            "  throughput        {:.0} events/s over {:.3} s",
            self.events_per_sec, self.wall_seconds
        )
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
        /// What was wrong with it.
        reason: String,
    },
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// A checkpoint could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The predict thread failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The plot could not be written.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
}

/// What a run keeps besides its output: the recording and the plot's trace.
struct Taps {
    recorder: Option<(Recorder<std::fs::File>, WallClock)>,
    trace: Option<ForecastTrace>,
}

impl Taps {
    /// `resumed`: the run continues a checkpoint, so the recording is appended to.
    fn new(config: &RunConfig, resumed: bool) -> Result<Self, RunError> {
        let recorder = match &config.record {
            Some(p) => Some((
                if resumed {
                    Recorder::append(p)
                } else {
                    Recorder::create(p)
                }
                .map_err(|e| {
                    RunError::Config(crate::Error::config(
                        "record",
                        format!("cannot open {}: {e}", p.display()),
                    ))
                })?,
                WallClock::now(),
            )),
            None => None,
        };
        Ok(Taps {
            recorder,
            trace: config
                .plot
                .as_ref()
                .map(|_| ForecastTrace::new(PLOT_POINTS)),
        })
    }

    fn accepted(&mut self, rec: &source::Record, out: &OutputRecord) -> Result<(), RunError> {
        if let Some((r, clock)) = self.recorder.as_mut() {
            r.write(&rec.event, clock.epoch_of(rec.received))
                .map_err(RunError::Output)?;
        }
        if let Some(t) = self.trace.as_mut() {
            let ev = &rec.event;
            t.push(
                out,
                if ev.targets.is_empty() {
                    &ev.values
                } else {
                    &ev.targets
                },
            );
        }
        Ok(())
    }
}

/// Logs rejected records: the first 20 individually, then one line per 1000.
struct RejectLog {
    count: u64,
}

impl RejectLog {
    fn note(&mut self, origin: &dyn std::fmt::Display, reason: &dyn std::fmt::Display) {
        self.count += 1;
        if self.count <= 20 {
            tracing::warn!("{origin}: {reason}; skipped");
        } else if self.count % 1000 == 0 {
            tracing::warn!(
                "{} records rejected so far; latest: {origin}: {reason}",
                self.count
            );
        }
    }
}

/// Runs a source through a pipeline until the input ends or `shutdown` fires; writes output
/// records and returns the summary. Must be called inside a tokio runtime (the source's
/// tasks run on it); the pipeline runs on a dedicated thread.
///
/// # Errors
/// [`RunError`]: a bad configuration, a source that cannot start (bind, open), a rejected
/// record with `strict`, an output error other than a closed pipe.
pub async fn run(mut config: RunConfig, shutdown: Shutdown) -> Result<Summary, RunError> {
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
    let pipeline = match resumed {
        Some(state) => Pipeline::restore(*state)?,
        None => Pipeline::new(config.pipeline.clone())?,
    };
    let writer = match &config.checkpoint {
        Some(c) => Some(checkpoint::Writer::spawn(&c.path, c.keep)?),
        None => None,
    };
    let (rx, handle) = source::spawn(config.source.clone(), shutdown.clone())?;
    let stats = handle.stats().clone();
    let inbox = Inbox {
        rx,
        pool: handle.pool().clone(),
        closer: handle.closer(),
    };
    let cfg = config.clone();
    let out = writer_for(&config.output)?;
    let worker = tokio::task::spawn_blocking(move || {
        predict_loop(cfg, pipeline, inbox, out, writer, shutdown)
    });
    let result = worker
        .await
        .map_err(|e| RunError::Internal(e.to_string()))?;
    let mut summary = result?;
    summary.resumed_from = resumed_from;
    // The predict loop may stop before the source ends (strict, max events, closed output);
    // the source then sees its channel closed and stops.
    let _ = tokio::time::timeout(Duration::from_secs(2), handle.join()).await;
    summary.dropped_datagrams = stats.dropped_datagrams();
    summary.kernel_dropped_datagrams = stats.kernel_dropped_datagrams();
    summary.refused_connections = stats.refused_connections();
    summary.evicted_connections = stats.evicted_connections();
    summary.timed_out_connections = stats.timed_out_connections();
    Ok(summary)
}

fn writer_for(output: &OutputTarget) -> Result<Box<dyn Write + Send>, RunError> {
    Ok(match output {
        OutputTarget::Stdout => Box::new(std::io::stdout()),
        OutputTarget::File(p) => Box::new(std::fs::File::create(p).map_err(|e| {
            RunError::Config(crate::Error::config(
                "output",
                format!("cannot create {}: {e}", p.display()),
            ))
        })?),
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

/// What the predict loop reads: the source's items, and the pool their events go back to.
struct Inbox {
    rx: tokio::sync::mpsc::Receiver<SourceItem>,
    pool: source::EventPool,
    /// Closes a listener's connection (strict mode per connection).
    closer: source::Closer,
}

fn predict_loop(
    config: RunConfig,
    mut pipeline: Pipeline,
    inbox: Inbox,
    writer: Box<dyn Write + Send>,
    ckpt_writer: Option<checkpoint::Writer>,
    shutdown: Shutdown,
) -> Result<Summary, RunError> {
    let mut out = RecordWriter::new(writer, config.output_format);
    let mut rejects = RejectLog { count: 0 };
    let bar = progress_bar(&config);
    let started = Instant::now();
    let mut events = 0u64;
    let mut checkpoints = ckpt_writer.map(|writer| Checkpoints {
        writer,
        every: config.checkpoint.as_ref().and_then(|c| c.every),
        interval: config.checkpoint.as_ref().and_then(|c| c.interval),
        last_events: pipeline.events(),
        last_time: Instant::now(),
        deferred: 0,
        waiting: false,
        wait: !pipeline.config().background,
    });
    let mut taps = Taps::new(&config, pipeline.events() > 0)?;
    let result = event_loop(
        &config,
        &mut pipeline,
        inbox,
        &mut out,
        &mut rejects,
        &bar,
        &mut events,
        &mut checkpoints,
        &mut taps,
    );
    let mut ended_by = match &result {
        Ok(e) => *e,
        Err(_) => "error",
    };
    if shutdown.is_shutdown() && ended_by == "end of input" {
        ended_by = "shutdown";
    }
    let flushed = out.flush();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let joined = pipeline.finish();
    // The final checkpoint is written whatever ended the run: the state is consistent
    // after every event (a rejected record changes nothing).
    let mut ck_stats = checkpoint::WriterStats::default();
    let mut deferred = 0;
    if let Some(c) = checkpoints {
        deferred = c.deferred;
        let last = pipeline
            .snapshot()
            .map_err(RunError::from)
            .and_then(|s| checkpoint::encode(&s).map_err(RunError::from));
        match last {
            Ok(bytes) => ck_stats = c.writer.finish(Some(&bytes))?,
            Err(e) => {
                let _ = c.writer.finish(None);
                return Err(e);
            }
        }
    }
    result?;
    if let Some((r, _)) = taps.recorder.as_mut() {
        r.flush().map_err(RunError::Output)?;
    }
    if let (Some(path), Some(trace)) = (&config.plot, &taps.trace) {
        let title = format!(
            "{} H={} T={} k={}: forecast and anomaly score",
            config.pipeline.learner.cell,
            config.pipeline.learner.d_hidden,
            config.pipeline.learner.window,
            config.pipeline.learner.every
        );
        crate::plot::forecast_svg(trace, &title, path)?;
    }
    match flushed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ended_by = "output closed",
        Err(e) => return Err(RunError::Output(e)),
    }
    joined?;
    let wall = started.elapsed().as_secs_f64();
    let (mse, naive) = pipeline.last20();
    let learner = pipeline.learner();
    Ok(Summary {
        events,
        updates: learner.map_or(0, |l| l.updates()),
        skipped_updates: learner.map_or(0, |l| l.skipped_updates()),
        rejected_updates: learner.map_or(0, |l| l.rejected_updates()),
        rejected: rejects.count,
        dropped_datagrams: 0,
        kernel_dropped_datagrams: 0,
        refused_connections: 0,
        evicted_connections: 0,
        timed_out_connections: 0,
        anomalies: pipeline.anomalies(),
        mean_loss: learner.map_or(0.0, |l| l.mean_loss()),
        mse_last20: mse,
        naive_mse_last20: naive,
        events_per_sec: if wall > 0.0 {
            events as f64 / wall
        } else {
            0.0
        },
        wall_seconds: wall,
        ended_by: ended_by.to_string(),
        resumed_from: None,
        checkpoints: ck_stats.written,
        checkpoints_deferred: deferred,
        checkpoint_failures: ck_stats.failed,
        truncation: learner.map(|l| l.truncation()).filter(|t| t.adaptive),
    })
}

/// Processes items until the input ends or the run must stop; returns why it ended.
#[allow(clippy::too_many_arguments)]
fn event_loop(
    config: &RunConfig,
    pipeline: &mut Pipeline,
    inbox: Inbox,
    out: &mut RecordWriter<Box<dyn Write + Send>>,
    rejects: &mut RejectLog,
    bar: &Option<indicatif::ProgressBar>,
    events: &mut u64,
    checkpoints: &mut Option<Checkpoints>,
    taps: &mut Taps,
) -> Result<&'static str, RunError> {
    let Inbox {
        mut rx,
        pool,
        closer,
    } = inbox;
    // Strict mode with a listener: a bad record costs its connection, not the run.
    let per_connection = |origin: &source::Origin| {
        config.strict
            && matches!(
                origin.kind,
                source::SourceKind::Tcp | source::SourceKind::Unix
            )
    };
    let started = Instant::now();
    let mut first_time: Option<f64> = None;
    let mut ended_by = "end of input";
    let mut dirty = false;
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                // Nothing queued: flush what was written, then wait.
                if dirty {
                    if let Err(e) = out.flush() {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            ended_by = "output closed";
                            break;
                        }
                        return Err(RunError::Output(e));
                    }
                    dirty = false;
                }
                match rx.blocking_recv() {
                    Some(item) => item,
                    None => break,
                }
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
        };
        match item {
            SourceItem::Event(rec) => {
                pace(&config.speed, &rec.event, &mut first_time, started);
                match pipeline.process(&rec.event) {
                    Ok(r) => {
                        taps.accepted(&rec, r)?;
                        if let Err(e) = out.write(r) {
                            if e.kind() == std::io::ErrorKind::BrokenPipe {
                                ended_by = "output closed";
                                break;
                            }
                            return Err(RunError::Output(e));
                        }
                        dirty = true;
                        *events += 1;
                        if let Some(b) = bar {
                            b.inc(1);
                        }
                        if let Some(c) = checkpoints.as_mut() {
                            c.after_event(pipeline)?;
                        }
                    }
                    Err(e) => {
                        if per_connection(&rec.origin) {
                            closer.close(rec.origin.peer);
                        } else if config.strict {
                            return Err(RunError::Strict {
                                origin: rec.origin.to_string(),
                                reason: e.to_string(),
                            });
                        }
                        rejects.note(&rec.origin, &e);
                    }
                }
                pool.give(rec.event);
                if config.max_events.is_some_and(|m| *events >= m) {
                    ended_by = "max events";
                    break;
                }
            }
            SourceItem::Rejected { origin, error } => {
                // The parse error names its own line or byte; prefix only the source's name.
                let at = if error.position().is_some() {
                    origin.name.to_string()
                } else {
                    origin.to_string()
                };
                // A listener's connection that sent it is closed by the source.
                let closed = per_connection(&origin) || (error.is_fatal() && is_listener(&origin));
                if !closed && (config.strict || error.is_fatal()) {
                    return Err(RunError::Strict {
                        origin: at,
                        reason: error.to_string(),
                    });
                }
                rejects.note(&at, &error);
                if let Some(b) = bar {
                    b.inc(1);
                }
            }
            SourceItem::Connected(origin) => tracing::info!("{origin}: connected"),
            SourceItem::Disconnected { origin, reason } => match reason {
                Some(r) => tracing::info!("{origin}: disconnected ({r})"),
                None => tracing::info!("{origin}: disconnected"),
            },
        }
    }
    Ok(ended_by)
}

/// Whether `origin` is a connection of a TCP or Unix listener.
fn is_listener(origin: &source::Origin) -> bool {
    matches!(
        origin.kind,
        source::SourceKind::Tcp | source::SourceKind::Unix
    )
}

/// Sleeps until an event's time, scaled by the replay speed, is due.
fn pace(speed: &Speed, ev: &Event, first: &mut Option<f64>, started: Instant) {
    let Speed::Factor(f) = *speed else { return };
    let Some(t) = ev.time else { return };
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

fn progress_bar(config: &RunConfig) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !config.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match config.progress_len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} lines (eta {eta})",
    )
    .ok()?;
    bar.set_style(style);
    Some(bar)
}
