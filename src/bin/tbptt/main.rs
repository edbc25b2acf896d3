//! The `tbptt` command: parses flags, builds the configuration and calls [`tbptt::run::run`].

mod cli;
mod nab;
mod sweep;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use cli::{Cli, Command, Common, InspectArgs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tbptt::checkpoint::{self, Checkpoint};
use tbptt::format::{ColumnSpec, DecoderConfig, Format, Missing};
use tbptt::norm::NormMode;
use tbptt::pipeline::PipelineConfig;
use tbptt::run::{CheckpointConfig, OutputTarget, RunConfig, Speed, Summary};
use tbptt::source::{ListenAddr, SourceConfig, SourceSpec};
use tbptt::{LearnerConfig, Truncation};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let mut filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A listener announces its bound address at the default level.
    if cli.log_level == "warn" {
        if let Ok(d) = "tbptt::listening=info".parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    match real_main(cli, &sub) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tbptt: {e}");
            ExitCode::from(2)
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

fn real_main(cli: Cli, matches: &ArgMatches) -> Result<(), AnyError> {
    let (mut config, common) = match cli.command {
        Command::Inspect(a) => return inspect(&a),
        Command::Sweep(a) => return sweep::run(&a),
        Command::Nab(a) => return nab::run(&a),
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
            config.pipeline.background = !a.sync;
            config.record = a.record.clone();
            (config, a.common)
        }
        Command::Replay(a) => {
            let mut config = build(&a.common, SourceSpec::File(a.input.clone()))?;
            config.speed = a.speed.parse::<Speed>()?;
            if config.speed != Speed::Max && a.common.input.time.is_none() {
                tracing::info!("pacing by the detected time column");
            }
            config.pipeline.background = a.background;
            config.progress = !a.no_progress;
            config.progress_len = count_lines(&a.input);
            (config, a.common)
        }
    };
    setup_checkpoints(&mut config, &common, matches)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary: Summary = runtime.block_on(async move {
        let (trigger, shutdown) = tbptt::shutdown::channel();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            trigger.trigger();
        });
        tbptt::run::run(config, shutdown).await
    })?;
    if !common.quiet {
        eprintln!("{summary}");
    }
    if let Some(path) = &common.summary {
        let json = serde_json::to_string(&summary)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write summary {}: {e}", path.display()))?;
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn count_lines(path: &std::path::Path) -> Option<u64> {
    let data = std::fs::read(path).ok()?;
    Some(memchr_count(&data))
}

fn memchr_count(data: &[u8]) -> u64 {
    data.iter().filter(|b| **b == b'\n').count() as u64
}

/// The decoder the input flags describe.
fn decoder(c: &cli::InputArgs) -> Result<DecoderConfig, AnyError> {
    let format: Format = c.format.parse()?;
    let missing = match c.missing.as_str() {
        "skip" => Missing::Skip,
        "hold" => Missing::Hold,
        other => return Err(format!("--missing expects skip or hold, got {other:?}").into()),
    };
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
        delimiter: c.delimiter,
        header: None,
    })
}

fn build(c: &Common, spec: SourceSpec) -> Result<RunConfig, AnyError> {
    let decoder = decoder(&c.input)?;
    let mut source = SourceConfig::new(spec);
    source.decoder = decoder;
    source.validate()?;
    let (base, normalize) = c.train.learner()?;
    let mut learner = LearnerConfig {
        cell: c.cell.parse()?,
        d_hidden: c.hidden,
        every: c.every,
        ..base
    };
    learner.set_truncation(truncation(c)?);
    let mut pipeline = PipelineConfig {
        learner,
        normalize,
        ..Default::default()
    };
    pipeline.anomaly.kind = c.anomaly.parse()?;
    pipeline.anomaly.threshold = c
        .threshold
        .unwrap_or_else(|| pipeline.anomaly.kind.default_threshold());
    pipeline.anomaly.half_life = c.anomaly_halflife;
    if let Some(l) = c.likelihood {
        pipeline.anomaly.likelihood = l;
    }
    let output = match c.output.as_str() {
        "-" => OutputTarget::Stdout,
        "none" => OutputTarget::Discard,
        p => OutputTarget::File(p.into()),
    };
    Ok(RunConfig {
        source,
        pipeline,
        output,
        output_format: c.output_format.parse()?,
        strict: c.input.strict,
        speed: Speed::Max,
        progress: false,
        progress_len: None,
        max_events: c.input.max_events,
        checkpoint: None,
        resume: None,
        record: None,
        plot: c.plot.clone(),
    })
}

/// `-T` with the `--t-*` settings of `-T auto`.
fn truncation(c: &Common) -> Result<Truncation, AnyError> {
    match c.window.clone() {
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

/// Whether a flag was given on the command line (rather than left at its default).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.value_source(id), Some(ValueSource::CommandLine))
}

/// Sets the checkpoint schedule and, when resuming, the saved state: `--resume PATH`, or the
/// `--checkpoint` file when it exists (unless `--no-resume`). Model flags given on the
/// command line must match the checkpoint's settings; the anomaly threshold may change.
fn setup_checkpoints(
    config: &mut RunConfig,
    common: &Common,
    matches: &ArgMatches,
) -> Result<(), AnyError> {
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
    if given(matches, "cell") {
        r.cell = f.cell;
    }
    if given(matches, "hidden") {
        r.d_hidden = f.d_hidden;
    }
    if given(matches, "layers") {
        r.layers = f.layers;
    }
    // `-T auto` keeps a saved run's adaptive settings; --t-* flags given change them.
    let both_auto = f.auto_truncation.is_some() && r.auto_truncation.is_some();
    if given(matches, "window") && !both_auto {
        r.window = f.window;
        r.auto_truncation = f.auto_truncation.clone();
    }
    if let Some(a) = r.auto_truncation.take() {
        let a = common.auto.apply(a);
        r.window = a.max;
        r.auto_truncation = Some(a);
    }
    if given(matches, "every") {
        r.every = f.every;
    }
    if given(matches, "loss_steps") {
        r.loss_steps = f.loss_steps;
    }
    if given(matches, "loss") {
        r.loss = f.loss;
    }
    if given(matches, "opt") {
        r.optimizer = f.optimizer.clone();
    } else if let Some(lr) = common.train.lr {
        r.optimizer = r.optimizer.clone().with_lr(lr);
    }
    if given(matches, "clip") {
        r.clip = f.clip;
    }
    if given(matches, "seed") {
        r.seed = f.seed;
    }
    if given(matches, "no_normalize") || given(matches, "norm_halflife") {
        requested.normalize = flags.normalize;
    }
    if given(matches, "anomaly") {
        requested.anomaly.kind = flags.anomaly.kind;
    }
    if given(matches, "anomaly_halflife") {
        requested.anomaly.half_life = flags.anomaly.half_life;
    }
    if given(matches, "likelihood") {
        requested.anomaly.likelihood = flags.anomaly.likelihood;
    }
    checkpoint::check_compatible(&saved, &requested)
        .map_err(|e| format!("cannot resume from {}: {e}", from.display()))?;
    let mut state = ckp.state;
    state.config.background = flags.background;
    if given(matches, "threshold") {
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
fn inspect(a: &InspectArgs) -> Result<(), AnyError> {
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
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
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
    println!("checkpoint        {}", a.path.display());
    println!(
        "format            version {}, {} bytes, configuration hash {:016x}",
        c.version, c.size, c.config_hash
    );
    println!(
        "written           by {} at {:.0} (Unix seconds)",
        c.meta.written_by, c.meta.written_unix
    );
    println!("model             {} cell, {sizes}", lc.cell);
    println!(
        "training          TBPTT(k = {}, T = {}), loss {} on {} steps, {} lr {}, clip {}",
        lc.every,
        match (
            &lc.auto_truncation,
            learner.and_then(|l| l.trainer.truncation.as_ref())
        ) {
            (Some(a), Some(st)) => format!(
                "auto in {}..={} (tolerance {}), now {}",
                a.min, a.max, a.tolerance, st.current
            ),
            (Some(a), None) => format!("auto in {}..={} (tolerance {})", a.min, a.max, a.tolerance),
            (None, _) => lc.window.to_string(),
        },
        lc.loss,
        lc.loss_steps,
        lc.optimizer.name(),
        lc.optimizer.lr(),
        lc.clip.map_or("off".to_string(), |c| c.to_string())
    );
    let norm = match s.config.normalize {
        NormMode::Off => "off".to_string(),
        NormMode::Cumulative => "cumulative".to_string(),
        NormMode::Ewm { half_life } => format!("exponentially weighted, half-life {half_life}"),
    };
    println!("normalization     {norm}");
    println!("events seen       {}", s.events());
    println!(
        "updates           {updates} applied, {skipped} skipped, {rejected} rejected (non-finite); {steps} optimizer steps"
    );
    println!("mean loss         {mean_loss:.6}");
    println!("anomalies         {}", s.anomalies);
    Ok(())
}
