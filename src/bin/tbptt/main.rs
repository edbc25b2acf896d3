//! The `tbptt` command: parses flags, builds the configuration and calls [`tbptt::run::run`].

mod cli;

use clap::Parser;
use cli::{Cli, Command, Common};
use std::process::ExitCode;
use tbptt::format::{ColumnSpec, DecoderConfig, Format, Missing};
use tbptt::norm::NormMode;
use tbptt::pipeline::PipelineConfig;
use tbptt::run::{OutputTarget, RunConfig, Speed, Summary};
use tbptt::source::{SourceConfig, SourceSpec};
use tbptt::{LearnerConfig, OptimizerConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tbptt: {e}");
            ExitCode::from(2)
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

fn real_main(cli: Cli) -> Result<(), AnyError> {
    let (config, common) = match cli.command {
        Command::Learn(a) => {
            let spec = if let Some(l) = &a.listen {
                let spec: SourceSpec = l.parse()?;
                if !matches!(spec, SourceSpec::Listen(_)) {
                    return Err(
                        format!("--listen expects tcp://, udp:// or unix://, got {l:?}").into(),
                    );
                }
                spec
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
            config.pipeline.background = !a.sync;
            (config, a.common)
        }
        Command::Replay(a) => {
            let mut config = build(&a.common, SourceSpec::File(a.input.clone()))?;
            config.speed = a.speed.parse::<Speed>()?;
            if config.speed != Speed::Max && a.common.time.is_none() {
                tracing::info!("pacing by the detected time column");
            }
            config.pipeline.background = a.background;
            config.progress = !a.no_progress;
            config.progress_len = count_lines(&a.input);
            (config, a.common)
        }
    };
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

fn build(c: &Common, spec: SourceSpec) -> Result<RunConfig, AnyError> {
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
    let decoder = DecoderConfig {
        format,
        columns,
        missing,
        max_line_len: c.max_line,
        max_frame_len: c.max_line,
        delimiter: c.delimiter,
        header: None,
    };
    let mut source = SourceConfig::new(spec);
    source.decoder = decoder;
    source.validate()?;
    let mut optimizer: OptimizerConfig = c.opt.parse()?;
    if let Some(lr) = c.lr {
        optimizer = optimizer.with_lr(lr);
    }
    let learner = LearnerConfig {
        cell: c.cell.parse()?,
        d_hidden: c.hidden,
        layers: c.layers,
        window: c.window,
        every: c.every,
        loss_steps: c.loss_steps.parse()?,
        loss: c.loss.parse()?,
        optimizer,
        clip: (c.clip > 0.0).then_some(c.clip),
        seed: c.seed,
        ..Default::default()
    };
    let normalize = match (c.no_normalize, c.norm_halflife) {
        (true, _) => NormMode::Off,
        (false, Some(h)) => NormMode::Ewm { half_life: h },
        (false, None) => NormMode::Cumulative,
    };
    let mut pipeline = PipelineConfig {
        learner,
        normalize,
        ..Default::default()
    };
    pipeline.anomaly.threshold = c.threshold;
    pipeline.anomaly.half_life = c.anomaly_halflife;
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
        strict: c.strict,
        speed: Speed::Max,
        progress: false,
        progress_len: None,
        max_events: c.max_events,
    })
}
