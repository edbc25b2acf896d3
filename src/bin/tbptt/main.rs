//! The `tbptt` command: parses flags, builds the configuration and calls [`tbptt::service::run::run`].

mod cli;
mod monitor;
mod nab;
mod observe;
mod scale;
mod sweep;

use clap::Parser;
use cli::{Cli, Command, Common, InspectArgs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tbptt::detect::norm::NormMode;
use tbptt::detect::pipeline::PipelineConfig;
use tbptt::io::checkpoint::{self, Checkpoint};
use tbptt::io::format::{ColumnSpec, DecoderConfig, Format, TimeStyle};
use tbptt::io::source::{ListenAddr, SourceConfig, SourceSpec};
use tbptt::io::store::Store;
use tbptt::service::keyed::KeyedConfig;
use tbptt::service::run::{CheckpointConfig, Keys, RunConfig, Runner, Speed, Summary};
use tbptt::{CellKind, LearnerConfig, TrainerConfig, Truncation};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A listener announces its bound address at the default level.
    if cli.log_level == "warn" {
        for d in ["tbptt::listening=info", "tbptt::announce=info"] {
            if let Ok(d) = d.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => ExitCode::from(130),
        Err(e) => {
            eprintln!("tbptt: {e}");
            ExitCode::from(2)
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

/// Ctrl-C ended an otherwise successful run: exit 130.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

fn real_main(cli: Cli) -> Result<(), AnyError> {
    let mut progress = None;
    let (mut config, common) = match cli.command {
        Command::Inspect(a) => return inspect(&a),
        Command::Sweep(a) => return sweep::run(&a),
        Command::Nab(a) => return nab::run(&a),
        Command::Worker(a) => return scale::worker(&a),
        Command::Publish(a) => return scale::publish(&a),
        Command::Learn(a) => {
            let spec = if let Some(l) = &a.listen {
                SourceSpec::Listen(l.parse::<ListenAddr>()?)
            } else if let Some(c) = &a.connect {
                let s = if c.contains("://") {
                    c.clone()
                } else {
                    format!("connect://{c}")
                };
                s.parse()?
            } else {
                match &a.input {
                    Some(p) if p.as_os_str() != "-" => SourceSpec::File(p.clone()),
                    _ => SourceSpec::Stdin,
                }
            };
            let mut config = build(&a.common, spec)?;
            a.listener.apply(&mut config.source)?;
            // Keyed series train inline on their workers.
            config.pipeline.background = !a.sync;
            // A stream that can wait is slowed to the trainer's pace rather than losing
            // updates, unless --lossy.
            config.pipeline.skip_busy_updates = a.lossy;
            config.record = a.record.clone();
            (config, a.common)
        }
        Command::Replay(a) => {
            let spec = if a.input.as_os_str() == "-" {
                SourceSpec::Stdin
            } else {
                SourceSpec::File(a.input.clone())
            };
            let stdin = spec == SourceSpec::Stdin;
            let mut config = build(&a.common, spec)?;
            config.speed = a.speed;
            if config.speed != Speed::Max && a.common.input.time.is_none() {
                tracing::info!("pacing by the detected time column");
            }
            config.pipeline.background = a.background;
            if !a.no_progress && !stdin {
                progress = observe::Progress::new(count_lines(&a.input));
            }
            (config, a.common)
        }
    };
    setup_checkpoints(&mut config, &common)?;
    let plot = common.plot.as_ref().map(|path| {
        let l = &config.pipeline.learner;
        let title = format!(
            "{} H={} T={} k={}: forecast and anomaly score",
            l.cell,
            l.d_hidden,
            l.max_window(),
            l.trainer.every
        );
        observe::Plot::new(path.clone(), title)
    });
    let read_as = (
        config.source.decoder.format,
        config.source.decoder.delimiter,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The metrics endpoint and the outputs to a time-series database run on this runtime.
    let (monitoring, sink) = {
        let _enter = runtime.enter();
        monitor::start(&common, &config)?
    };
    let mut runner = Runner::new(config);
    if let Some(sink) = sink {
        runner = runner.sink(sink);
    }
    if let Some(o) = monitoring.observer() {
        runner = runner.observer(o);
    }
    if let Some(p) = progress {
        runner = runner.observer(p);
    }
    if let Some(p) = plot {
        runner = runner.observer(p);
    }
    // A --summary file that cannot be written is found before the run, not after it.
    if let Some(path) = &common.summary {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot write summary {}: {e}", path.display()))?;
    }
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    let (mut summary, result): (Summary, _) = runtime.block_on(async move {
        let (trigger, shutdown) = tbptt::io::shutdown::channel();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            flag.store(
                signal == Signal::Interrupt,
                std::sync::atomic::Ordering::SeqCst,
            );
            tracing::info!("shutting down");
            trigger.trigger();
        });
        runner.run_summarized(shutdown).await
    });
    // The outputs to a time-series database have sent what they could by now (the run drops
    // its sink at its end).
    summary.outputs = monitoring.output_stats();
    monitoring.stop();
    // The summary is written on every exit, with the reason when the run failed.
    if !common.quiet {
        eprintln!("{summary}");
    }
    if let Some(path) = &common.summary {
        let json = serde_json::to_string(&summary)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write summary {}: {e}", path.display()))?;
    }
    result?;
    if summary.events == 0 && summary.rejected > 0 {
        return Err(nothing_accepted(&summary, &common, read_as).into());
    }
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        return Err(Box::new(Interrupted));
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// The error of a run that rejected every record, with the likely fixes.
fn nothing_accepted(s: &Summary, c: &Common, (format, delimiter): (Format, char)) -> String {
    let mut hint = format!(
        "no record was accepted ({} rejected; the first are shown above). The input was read \
         as {format}",
        s.rejected
    );
    if format == Format::Csv {
        hint.push_str(&format!(" with delimiter {delimiter:?}"));
    }
    hint.push_str(": check --format and --delimiter against its first line");
    if c.input.key.is_none() {
        hint.push_str(
            "; a column of names (a host, a metric) needs --key COL, or --columns to leave it out",
        );
    }
    hint
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() -> Signal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => Signal::Interrupt,
                    _ = term.recv() => Signal::Terminate,
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                Signal::Interrupt
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Interrupt
    }
}

/// Which signal stopped the run.
#[derive(Clone, Copy, PartialEq)]
enum Signal {
    /// Ctrl-C (SIGINT): the command exits with 130, as shells expect.
    Interrupt,
    /// SIGTERM: a service's normal stop, exit 0.
    Terminate,
}

fn count_lines(path: &std::path::Path) -> Option<u64> {
    let data = std::fs::read(path).ok()?;
    Some(memchr_count(&data))
}

fn memchr_count(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64
}

/// What a file's name and first line suggest when `--format` or `--delimiter` is not given.
#[derive(Default)]
struct Guess {
    format: Option<Format>,
    delimiter: Option<char>,
}

/// Guesses the format from a file's extension, then from its first line (a JSON object or
/// array), and the CSV delimiter from its first line (`;`, tab or `|` when it has no comma).
fn guess(path: &Path) -> Guess {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut g = Guess {
        format: match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Some(Format::JsonLines),
            Some("msgpack" | "mpk" | "msgp") => Some(Format::MsgPack),
            _ => None,
        },
        delimiter: None,
    };
    if g.format.is_some() || !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return g;
    }
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&head[..n]);
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return g;
    };
    let t = line.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        g.format = Some(Format::JsonLines);
    } else if !line.contains(',') {
        g.delimiter = [';', '\t', '|'].into_iter().find(|d| line.contains(*d));
    }
    g
}

/// The decoder the input flags describe; with a file, what `--format` and `--delimiter` do not
/// say is guessed from it (and said on stderr).
fn decoder(c: &cli::InputArgs, file: Option<&Path>) -> Result<DecoderConfig, AnyError> {
    let g = file
        .filter(|_| c.format.is_none() || c.delimiter.is_none())
        .map(guess)
        .unwrap_or_default();
    let format = match (c.format, g.format) {
        (Some(f), _) => f.into(),
        (None, Some(f)) => {
            tracing::info!(
                target: "tbptt::announce",
                "reading the input as {f} (from its name or first line; --format to choose)"
            );
            f
        }
        (None, None) => Format::Csv,
    };
    let delimiter = match (c.delimiter, g.delimiter) {
        (Some(d), _) => d,
        (None, Some(d)) if format == Format::Csv => {
            tracing::info!(
                target: "tbptt::announce",
                "CSV delimiter {d:?} (from the first line; --delimiter to choose)"
            );
            d
        }
        _ => ',',
    };
    let missing = c.missing.into();
    let columns = ColumnSpec::from_flags(
        c.columns.as_deref(),
        c.target.as_deref(),
        c.time.as_deref(),
        c.key.as_deref(),
    )?;
    Ok(DecoderConfig {
        format,
        columns,
        missing,
        max_line_len: c.max_line,
        max_frame_len: c.max_line,
        delimiter,
        header: None,
        precision: c.influx_precision.parse()?,
    })
}

fn build(c: &Common, spec: SourceSpec) -> Result<RunConfig, AnyError> {
    let file = match &spec {
        SourceSpec::File(p) => Some(p.clone()),
        _ => None,
    };
    let decoder = decoder(&c.input, file.as_deref())?;
    let keyed_input =
        decoder.format.is_keyed() || matches!(spec, SourceSpec::Listen(ListenAddr::Http(_)));
    let s = &c.series;
    if c.input.key.is_none()
        && !keyed_input
        && (s.shared_model || s.workers.is_some() || s.series_ttl.is_some() || s.store.is_some())
    {
        return Err(
            "--shared-model, --workers, --series-ttl and --store need keyed events: \
                    --key COL, or --format graphite|influx, or --listen http://"
                .into(),
        );
    }
    let mut source = SourceConfig::new(spec);
    source.decoder = decoder;
    source.validate()?;
    let (base, normalize) = c.train.learner()?;
    let learner = LearnerConfig {
        cell: c.cell.map_or(CellKind::Gru, CellKind::from),
        d_hidden: c.hidden.unwrap_or(32),
        trainer: TrainerConfig {
            truncation: truncation(c)?,
            every: c.every.unwrap_or(8),
            ..base.trainer
        },
        ..base
    };
    let mut pipeline = PipelineConfig {
        learner,
        normalize,
        forecast: c.train.forecast(),
        ..Default::default()
    };
    if let Some(a) = c.anomaly {
        pipeline.anomaly.kind = a.into();
    }
    pipeline.anomaly.threshold = c
        .threshold
        .unwrap_or_else(|| pipeline.anomaly.kind.default_threshold());
    pipeline.anomaly.half_life = c.anomaly_halflife.unwrap_or(1000.0);
    if let Some(l) = c.likelihood {
        pipeline.anomaly.likelihood = l;
    }
    let output = monitor::local_output(&c.output)?;
    Ok(RunConfig::new(source)
        .with_pipeline(pipeline)
        .with_output(output)
        .with_output_format(c.output_format.into())
        .with_members(c.members)
        .with_epoch_times(c.epoch_times)
        .with_strict(c.input.strict)
        .with_speed(Speed::Max)
        .with_max_events(c.input.max_events)
        .with_keys(keys(c)))
}

/// A pipeline per key: with `--key` (or when the first event has a key), unless
/// `--shared-model`.
fn keys(c: &Common) -> Keys {
    let s = &c.series;
    if s.shared_model {
        return Keys::Shared;
    }
    let mut k = KeyedConfig {
        max_series: usize::try_from(s.max_series).unwrap_or(usize::MAX),
        series_ttl: s.series_ttl,
        store: s.store.clone(),
        store_interval: s.store_interval,
        ..KeyedConfig::default()
    };
    if let Some(w) = s.workers {
        k.workers = w as usize;
    }
    if c.input.key.is_some() {
        Keys::PerKey(k)
    } else {
        Keys::Auto(k)
    }
}

/// `-T` with the `--t-*` settings of `-T auto`.
fn truncation(c: &Common) -> Result<Truncation, AnyError> {
    match c.window.clone().unwrap_or(Truncation::Fixed(32)) {
        Truncation::Fixed(t) => {
            if c.auto.any() {
                return Err(format!(
                    "--t-min, --t-max and --t-tolerance need -T auto (got -T {t})"
                )
                .into());
            }
            Ok(Truncation::Fixed(t))
        }
        Truncation::Auto(a) => Ok(Truncation::Auto(c.auto.apply(a))),
    }
}

/// Sets the checkpoint schedule and, when resuming, the saved state: `--resume PATH`, or the
/// `--checkpoint` file when it exists (unless `--no-resume`). Model flags given on the
/// command line must match the checkpoint's settings; the anomaly threshold may change.
/// A model flag counts as given when clap filled its `Option` (the defaults are applied in
/// [`build`], not by clap), so a flag and its merge cannot drift apart.
fn setup_checkpoints(config: &mut RunConfig, common: &Common) -> Result<(), AnyError> {
    let c = &common.checkpoint;
    if let Some(path) = &c.checkpoint {
        let interval = match c.checkpoint_interval {
            Some(s) if !(s > 0.0 && s.is_finite()) => {
                return Err(format!("--checkpoint-interval must be positive, got {s}").into())
            }
            Some(s) => Some(std::time::Duration::from_secs_f64(s)),
            None if c.checkpoint_every.is_none() => Some(std::time::Duration::from_secs(60)),
            None => None,
        };
        config.checkpoint = Some(CheckpointConfig {
            path: path.clone(),
            every: c.checkpoint_every,
            interval,
            keep: usize::try_from(c.checkpoint_keep).unwrap_or(3),
        });
    }
    let from: Option<PathBuf> = match (&c.resume, &c.checkpoint) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(p)) if !c.no_resume && p.exists() => Some(p.clone()),
        _ => None,
    };
    let Some(from) = from else { return Ok(()) };
    let ckp = load_for_resume(&from)?;
    let saved = ckp.state.config.clone();
    // What the command line asks for: the checkpoint's settings, with every flag given
    // explicitly taken from the command line.
    let flags = &config.pipeline;
    let mut requested = saved.clone();
    let (r, f) = (&mut requested.learner, &flags.learner);
    let (t, train) = (common, &common.train);
    if t.cell.is_some() {
        r.cell = f.cell;
    }
    if t.hidden.is_some() {
        r.d_hidden = f.d_hidden;
    }
    if train.layers.is_some() {
        r.layers = f.layers;
    }
    // `-T auto` keeps a saved run's adaptive settings; --t-* flags given change them.
    let both_auto = f.trainer.auto_truncation().is_some() && r.trainer.auto_truncation().is_some();
    if t.window.is_some() && !both_auto {
        r.trainer.truncation = f.trainer.truncation.clone();
    }
    if let Truncation::Auto(a) = &mut r.trainer.truncation {
        *a = common.auto.apply(a.clone());
    }
    if t.every.is_some() {
        r.trainer.every = f.trainer.every;
    }
    if train.loss_steps.is_some() {
        r.trainer.loss_steps = f.trainer.loss_steps;
    }
    if train.loss.is_some() {
        r.trainer.loss = f.trainer.loss;
    }
    if train.opt.is_some() {
        r.trainer.optimizer = f.trainer.optimizer.clone();
    } else if let Some(lr) = common.train.lr {
        r.trainer.optimizer = r.trainer.optimizer.clone().with_lr(lr);
    }
    if train.clip.is_some() {
        r.trainer.clip = f.trainer.clip;
    }
    if train.seed.is_some() {
        r.seed = f.seed;
    }
    if train.no_normalize || train.norm_halflife.is_some() {
        requested.normalize = flags.normalize;
    }
    if train.predict.is_some() || train.no_combine || train.forecast.is_some() {
        requested.forecast = flags.forecast;
    }
    if t.anomaly.is_some() {
        requested.anomaly.kind = flags.anomaly.kind;
    }
    if t.anomaly_halflife.is_some() {
        requested.anomaly.half_life = flags.anomaly.half_life;
    }
    if t.likelihood.is_some() {
        requested.anomaly.likelihood = flags.anomaly.likelihood;
    }
    checkpoint::check_compatible(&saved, &requested)
        .map_err(|e| format!("cannot resume from {}: {e}", from.display()))?;
    let mut state = ckp.state;
    state.config.background = flags.background;
    state.config.skip_busy_updates = flags.skip_busy_updates;
    if t.threshold.is_some() {
        state.config.anomaly.threshold = flags.anomaly.threshold;
    }
    tracing::info!(
        "resuming from {} ({} events seen)",
        from.display(),
        state.events()
    );
    config.pipeline = state.config.clone();
    config.resume = Some(Box::new(state));
    Ok(())
}

/// Reads a checkpoint to resume from; the error names the file and, when one exists, the
/// older checkpoint to fall back to.
fn load_for_resume(path: &Path) -> Result<Checkpoint, AnyError> {
    checkpoint::read(path).map_err(|e| {
        let older = checkpoint::rotated(path, 1);
        let hint = if older.exists() {
            format!(
                " (an older checkpoint is kept at {0}; pass --resume {0} to use it)",
                older.display()
            )
        } else {
            String::new()
        };
        match e {
            checkpoint::CheckpointError::Io { .. } => format!("cannot resume: {e}{hint}"),
            e => format!("cannot resume from {}: {e}{hint}", path.display()),
        }
        .into()
    })
}

/// `tbptt inspect PATH [--json]`.
/// Unix seconds as an RFC 3339 UTC time, `2026-12-01T22:33:47Z`.
fn utc(unix: f64) -> String {
    if !unix.is_finite() || unix.abs() > 1e13 {
        return format!("{unix} (not a date)");
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    _ = TimeStyle::rfc3339().write(unix.floor(), &mut out);
    out
}

/// `inspect STORE`: every series' key, events, updates, anomalies and size; each entry is
/// decoded, so a damaged one fails the command naming its key.
fn inspect_store(a: &InspectArgs) -> Result<(), AnyError> {
    let store = Store::open_existing(&a.path)?;
    let mut rows = Vec::new();
    store.for_each(|key, bytes| {
        let s = store.decode(key, bytes)?;
        let updates = s.inner.as_ref().map_or(0, |i| i.learner.trainer.updates);
        rows.push((
            key.to_string(),
            s.events(),
            updates,
            s.anomalies,
            bytes.len(),
        ));
        Ok(())
    })?;
    let total: usize = rows.iter().map(|r| r.4).sum();
    if a.json {
        let series: Vec<_> = rows
            .iter()
            .map(|(k, e, u, an, b)| {
                serde_json::json!({"key": k, "events": e, "updates": u, "anomalies": an, "bytes": b})
            })
            .collect();
        let v = serde_json::json!({
            "path": a.path,
            "series": rows.len(),
            "bytes": total,
            "settings": store.settings()?,
            "entries": series,
        });
        return print_stdout(&(serde_json::to_string_pretty(&v)? + "\n"));
    }
    use std::fmt::Write;
    let mut out = format!(
        "state store {}: {} series, {total} bytes of state\n{:<24} {:>10} {:>9} {:>9} {:>8}\n",
        a.path.display(),
        rows.len(),
        "key",
        "events",
        "updates",
        "anomalies",
        "bytes"
    );
    for (k, e, u, an, b) in &rows {
        writeln!(out, "{k:<24} {e:>10} {u:>9} {an:>9} {b:>8}")?;
    }
    print_stdout(&out)
}

fn inspect(a: &InspectArgs) -> Result<(), AnyError> {
    let mut head = [0u8; 8];
    // Only a regular file is sniffed (opening a FIFO would wait for a writer); the checkpoint
    // loader refuses the rest by name.
    let regular = std::fs::metadata(&a.path).is_ok_and(|m| m.is_file());
    if let Some(mut f) = regular.then(|| std::fs::File::open(&a.path).ok()).flatten() {
        use std::io::Read;
        if f.read(&mut head).is_ok_and(|n| n >= 4) && Store::sniff(&head) {
            return inspect_store(a);
        }
    }
    let c = checkpoint::read(&a.path).map_err(|e| match e {
        checkpoint::CheckpointError::Io { .. } => e.to_string(),
        e => format!("{}: {e}", a.path.display()),
    })?;
    let s = &c.state;
    let lc = s.learner_config();
    let learner = s.inner.as_ref().map(|i| &i.learner);
    let updates = learner.map_or(0, |l| l.trainer.updates);
    let rejected = learner.map_or(0, |l| l.trainer.rejected);
    let skipped = learner.map_or(0, |l| l.skipped);
    let steps = learner.map_or(0, |l| l.trainer.optimizer.steps());
    let mean_loss = match learner {
        Some(l) if l.trainer.updates > 0 => l.trainer.loss_sum / l.trainer.updates as f64,
        _ => 0.0,
    };
    if a.json {
        let v = serde_json::json!({
            "path": a.path,
            "version": c.version,
            "size": c.size,
            "config_hash": format!("{:016x}", c.config_hash),
            "written_by": c.meta.written_by,
            "written_unix": c.meta.written_unix,
            "written": utc(c.meta.written_unix),
            "events": s.events(),
            "updates": updates,
            "skipped_updates": skipped,
            "rejected_updates": rejected,
            "optimizer_steps": steps,
            "mean_loss": mean_loss,
            "anomalies": s.anomalies,
            "config": {
                "learner": lc,
                "normalize": s.config.normalize,
                "anomaly": s.config.anomaly,
            },
        });
        return print_stdout(&(serde_json::to_string_pretty(&v)? + "\n"));
    }
    use std::fmt::Write;
    let mut out = String::new();
    let layers = if lc.layers == 1 { "layer" } else { "layers" };
    let sizes = if s.inner.is_some() {
        format!(
            "D = {}, H = {}, {} {layers}, {} output values",
            lc.d_input,
            lc.d_hidden,
            lc.layers,
            lc.d_target.unwrap_or(lc.d_input)
        )
    } else {
        format!(
            "H = {}, {} {layers} (no event seen yet: D unknown)",
            lc.d_hidden, lc.layers
        )
    };
    writeln!(out, "checkpoint        {}", a.path.display())?;
    writeln!(
        out,
        "format            version {}, {} bytes, configuration hash {:016x}",
        c.version, c.size, c.config_hash
    )?;
    writeln!(
        out,
        "written           by {} at {} (Unix {:.0})",
        c.meta.written_by,
        utc(c.meta.written_unix),
        c.meta.written_unix
    )?;
    writeln!(out, "model             {} cell, {sizes}", lc.cell)?;
    writeln!(
        out,
        "training          TBPTT(k = {}, T = {}), loss {} on {} steps, {} lr {}, clip {}",
        lc.trainer.every,
        match (
            &lc.trainer.auto_truncation(),
            learner.and_then(|l| l.trainer.truncation.as_ref())
        ) {
            (Some(a), Some(st)) => format!(
                "auto in {}..={} (tolerance {}), now {}",
                a.min, a.max, a.tolerance, st.current
            ),
            (Some(a), None) => format!("auto in {}..={} (tolerance {})", a.min, a.max, a.tolerance),
            (None, _) => lc.max_window().to_string(),
        },
        lc.trainer.loss,
        lc.trainer.loss_steps,
        lc.trainer.optimizer.name(),
        lc.trainer.optimizer.lr(),
        lc.trainer.clip.map_or("off".to_string(), |c| c.to_string())
    )?;
    let norm = match s.config.normalize {
        NormMode::Off => "off".to_string(),
        NormMode::Cumulative => "cumulative".to_string(),
        NormMode::Ewm { half_life } => format!("exponentially weighted, half-life {half_life}"),
    };
    writeln!(out, "normalization     {norm}")?;
    writeln!(out, "events seen       {}", s.events())?;
    writeln!(
        out,
        "updates           {updates} applied, {skipped} skipped, {rejected} rejected (non-finite); {steps} optimizer steps"
    )?;
    writeln!(out, "mean loss         {mean_loss:.6}")?;
    writeln!(out, "anomalies         {}", s.anomalies)?;
    print_stdout(&out)
}

/// Writes `text` to stdout and flushes it. A closed pipe (`tbptt inspect ck.bin | head -1`)
/// is not an error: the reader has what it wanted, and the command exits 0 as a run whose
/// output closes does. Any other failure (a full disk) is an error (exit 2).
fn print_stdout(text: &str) -> Result<(), AnyError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(OutputError(e).into()),
    }
}

/// Standard output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write output: {0}")]
struct OutputError(#[source] std::io::Error);
