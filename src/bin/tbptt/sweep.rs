//! `tbptt sweep FILE`: a grid of TBPTT(k, T) configurations over one recorded log, a table
//! (or JSON), a recommendation and optional plots.

use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use tbptt::detect::pipeline::PipelineConfig;
use tbptt::detect::trace::ForecastTrace;
use tbptt::io::source::{SourceConfig, SourceSpec};
use tbptt::tools::plot;
use tbptt::tools::sweep::{self, Grid, Recommendation, RunResult, TAxis};
use tbptt::train::truncation::{AutoTruncation, Truncation};

type AnyError = Box<dyn std::error::Error>;

/// Flags of `sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The recorded log (CSV, JSON lines or MessagePack, as for replay).
    #[arg(value_name = "FILE")]
    pub input: PathBuf,

    // ---- grid
    /// Window lengths T to try, comma-separated; `auto` = adaptive truncation (see --t-min,
    /// --t-max, --t-tolerance); `full` = full BPTT through everything seen so far at every
    /// update (a reference, never recommended; on the first --full-max events only).
    #[arg(
        short = 'T',
        long = "window",
        default_value = "4,8,16,32,64,full",
        value_name = "LIST",
        help_heading = "Grid"
    )]
    pub window: String,
    /// Update periods k to try (combinations with k > T are left out).
    #[arg(
        short = 'k',
        long = "every",
        alias = "k",
        default_value = "1,4,8",
        value_name = "LIST",
        help_heading = "Grid"
    )]
    pub every: String,
    /// Cells to try: elman, gru, lstm.
    #[arg(
        long,
        default_value = "gru,lstm",
        value_name = "LIST",
        help_heading = "Grid"
    )]
    pub cell: String,
    /// Hidden sizes H to try.
    #[arg(
        long,
        default_value = "32,64",
        value_name = "LIST",
        help_heading = "Grid"
    )]
    pub hidden: String,
    /// Settings of auto in -T.
    #[command(flatten, next_help_heading = "Grid")]
    pub auto: crate::cli::AutoArgs,
    /// Season length in events: also compare with the seasonal-naive forecast (the value one
    /// season earlier).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Grid")]
    pub season: Option<u64>,
    /// Recommend the cheapest configuration whose MSE is within this fraction of the best.
    #[arg(
        long,
        default_value_t = 0.05,
        value_name = "FRACTION",
        help_heading = "Grid"
    )]
    pub tolerance: f64,
    /// Run `full` on at most the first N events: its work grows with the square of the
    /// length (k = 1 over 20,000 events would take hours). Its row is then scored on the last
    /// 20% of those N events.
    #[arg(
        long,
        default_value_t = sweep::DEFAULT_FULL_MAX as u64,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(10..),
        help_heading = "Grid"
    )]
    pub full_max: u64,
    /// Runs at a time (default: the number of cores).
    #[arg(long, value_name = "N", help_heading = "Grid")]
    pub threads: Option<usize>,

    // ---- output
    /// Print one JSON object instead of the table.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Write plots to this folder: error_vs_t.svg, cost_vs_t.svg and forecast.svg (the best
    /// configuration's forecast and anomaly score).
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, help_heading = "Output")]
    pub no_progress: bool,

    /// How events are read.
    #[command(flatten)]
    pub decode: crate::cli::InputArgs,

    // ---- fixed model settings
    /// Training settings, the same for every run.
    #[command(flatten)]
    pub train: crate::cli::TrainArgs,
    /// Anomaly threshold, for the forecast plot [default: 0.5, the likelihood's].
    #[arg(long, help_heading = "Model")]
    pub threshold: Option<f64>,
    /// Half-life of the anomaly score's residual statistics, in events.
    #[arg(
        long,
        default_value_t = 1000.0,
        value_name = "EVENTS",
        help_heading = "Model"
    )]
    pub anomaly_halflife: f64,
}

fn list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>, AnyError>
where
    T::Err: std::fmt::Display,
{
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<T>()
                .map_err(|e| format!("{flag}: cannot read {p:?}: {e}").into())
        })
        .collect()
}

fn grid(a: &SweepArgs) -> Result<Grid, AnyError> {
    let g = Grid {
        windows: list::<TAxis>("-T", &a.window)?,
        every: list::<usize>("-k", &a.every)?,
        cells: list::<tbptt::CellKind>("--cell", &a.cell)?,
        hidden: list::<usize>("--hidden", &a.hidden)?,
    };
    g.validate()?;
    Ok(g)
}

fn base_config(a: &SweepArgs) -> Result<PipelineConfig, AnyError> {
    let (mut learner, normalize) = a.train.learner()?;
    if a.auto.any() {
        learner.trainer.truncation = Truncation::Auto(a.auto.apply(AutoTruncation::default()));
    }
    let mut p = PipelineConfig {
        learner,
        normalize,
        forecast: a.train.forecast(),
        ..Default::default()
    };
    p.anomaly.threshold = a
        .threshold
        .unwrap_or_else(|| p.anomaly.kind.default_threshold());
    p.anomaly.half_life = a.anomaly_halflife;
    p.anomaly.validate()?;
    Ok(p)
}

fn source(a: &SweepArgs) -> Result<SourceConfig, AnyError> {
    let mut s = SourceConfig::new(SourceSpec::File(a.input.clone()));
    s.decoder = crate::decoder(&a.decode, Some(&a.input))?;
    s.validate()?;
    Ok(s)
}

/// `tbptt sweep`.
pub fn run(a: &SweepArgs) -> Result<(), AnyError> {
    if !(a.tolerance >= 0.0 && a.tolerance.is_finite()) {
        return Err(format!("--tolerance must be a fraction >= 0, got {}", a.tolerance).into());
    }
    let grid = grid(a)?;
    let base = base_config(a)?;
    let has_auto = grid.windows.contains(&TAxis::Auto);
    if base.learner.trainer.auto_truncation().is_some() && !has_auto {
        return Err(format!(
            "--t-min, --t-max and --t-tolerance need auto in -T (got -T {})",
            a.window
        )
        .into());
    }
    sweep::check_auto(&base, &grid.specs()).map_err(|e| match e {
        tbptt::Error::Config { field, reason } => {
            let flag = match field {
                "t_min" => "--t-min".to_string(),
                "t_max" => "--t-max".to_string(),
                "t_tolerance" => "--t-tolerance".to_string(),
                "loss_steps" => "--loss-steps".to_string(),
                other => other.replace('_', "-"),
            };
            AnyError::from(format!("{flag} (with -T auto): {reason}"))
        }
        e => e.into(),
    })?;
    let mut loaded = sweep::read_events(source(a)?, a.decode.strict)?;
    if let Some(m) = a.decode.max_events {
        loaded
            .events
            .truncate(usize::try_from(m).unwrap_or(usize::MAX));
    }
    let events = loaded.events;
    if events.len() < 10 {
        return Err(format!(
            "{}: {} events; a sweep needs at least 10",
            a.input.display(),
            events.len()
        )
        .into());
    }
    let season = a.season.map(|s| s as usize);
    let specs = grid.specs();
    let full_max = usize::try_from(a.full_max).unwrap_or(usize::MAX);
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, specs.len().max(1));
    // The bar counts estimated work (millions of multiply-adds), so that its time left is
    // an estimate of the work left, not of the runs left (the cheapest run first).
    let work = |s: &sweep::RunSpec| {
        (sweep::estimated_madds(&events, &base, s, full_max) / 1e6)
            .ceil()
            .max(1.0) as u64
    };
    let total: u64 = specs.iter().map(work).sum();
    let bar = (!a.no_progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {msg} (about {eta} left)",
        ) {
            b.set_style(style);
        }
        b.set_message(format!("0/{} runs", specs.len()));
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    });
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let done = |s: &sweep::RunSpec| {
        let n = finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if let Some(b) = &bar {
            b.set_message(format!("{n}/{} runs, last {s}", specs.len()));
            b.inc(work(s));
        }
    };
    let results = sweep::run_grid(&events, &base, &specs, season, full_max, threads, &done)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let rec = sweep::recommend(&results, a.tolerance).ok_or(
        "no truncated run (fixed T or auto) produced a finite error; nothing to recommend",
    )?;
    if let Some(dir) = &a.plot {
        plots(dir, &events, &base, &results, &rec, season)?;
    }
    let warning = warning(&results, &rec);
    let replay = replay_flags(&results[rec.chosen]);
    let text = if a.json {
        let b = sweep::baselines(&events, season);
        let v = serde_json::json!({
            "file": a.input,
            "events": events.len(),
            "scored": sweep::scored_events(events.len()),
            "rejected": loaded.rejected,
            "season": season,
            "tolerance": a.tolerance,
            "threads": threads,
            "full_max": full_max,
            "baselines": b,
            "runs": results,
            "best": rec.best,
            "best_truncated": rec.best_truncated,
            "recommended": rec.chosen,
            "recommendation": results[rec.chosen].spec,
            "replay_flags": replay,
            "worse_than_naive": rec.worse_than_naive,
            "warning": warning,
            "memory": "computed from buffer sizes",
        });
        serde_json::to_string_pretty(&v)? + "\n"
    } else {
        table(
            &a.input.display().to_string(),
            &events,
            loaded.rejected,
            season,
            threads,
            full_max,
            &results,
            &rec,
        )
    };
    crate::print_stdout(&text)
}

/// The `replay`/`learn` flags of a run's configuration.
fn replay_flags(r: &RunResult) -> String {
    format!(
        "-T {} -k {} --cell {} --hidden {}",
        r.spec.window, r.spec.every, r.spec.cell, r.spec.hidden
    )
}

/// The warning when the recommendation forecasts worse than the naive forecast (the last
/// value): because every truncated run does, or because the cheapest one within the
/// tolerance does.
fn warning(results: &[RunResult], rec: &Recommendation) -> Option<String> {
    let (best, chosen) = (&results[rec.best_truncated], &results[rec.chosen]);
    if rec.worse_than_naive {
        Some(format!(
            "every configuration forecasts worse than naive (repeat the last value) on the last 20%: the best, {}, has {:.3} times naive's MSE",
            best.spec,
            best.rel_naive()
        ))
    } else if chosen.mse > chosen.naive_mse {
        Some(format!(
            "the recommendation forecasts worse than naive ({:.3} times naive's MSE); {} does better at {:.3}",
            chosen.rel_naive(),
            best.spec,
            best.rel_naive()
        ))
    } else {
        None
    }
}

fn si(x: f64) -> String {
    let a = x.abs();
    if a >= 1e9 {
        format!("{:.1}G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1048576.0 {
        format!("{:.1} MiB", b / 1048576.0)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

fn sig(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let digits = (4 - 1 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.digits$}")
}

/// The table printed by `tbptt sweep`.
#[allow(clippy::too_many_arguments)]
fn table(
    file: &str,
    events: &[tbptt::event::Event],
    rejected: u64,
    season: Option<usize>,
    threads: usize,
    full_max: usize,
    results: &[RunResult],
    rec: &Recommendation,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let b = sweep::baselines(events, season);
    let scored = sweep::scored_events(events.len());
    let _ = writeln!(
        s,
        "tbptt sweep: {file}, {} events ({rejected} rejected), {} runs on {threads} threads",
        events.len(),
        results.len()
    );
    let _ = writeln!(
        s,
        "scored on the last 20% ({scored} events, as replay's summary); naive MSE {} MAE {}; over all {} events with a forecast: naive MSE {}",
        sig(b.naive_mse),
        sig(b.naive_mae),
        events.len().saturating_sub(1),
        sig(b.naive_mse_all)
    );
    if let (Some(season), Some(m), Some(a)) = (season, b.seasonal_mse, b.seasonal_mae) {
        let _ = writeln!(
            s,
            "seasonal naive (season {season}): MSE {} MAE {}",
            sig(m),
            sig(a)
        );
    }
    let _ = writeln!(s);
    let seasonal = season.is_some();
    let _ = write!(
        s,
        "{:<5} {:>4} {:>5} {:>3}  {:>10} {:>10} {:>6}",
        "cell", "H", "T", "k", "MSE", "MAE", "/naive"
    );
    if seasonal {
        let _ = write!(s, " {:>6}", "/seas");
    }
    let auto = results.iter().any(|r| r.truncation.is_some());
    let _ = write!(
        s,
        " {:>10} {:>6} {:>9} {:>10} {:>10} {:>9}",
        "MSE all", "/naive", "events/s", "madd/upd", "madd/event", "memory"
    );
    let _ = writeln!(
        s,
        "{}",
        if auto {
            format!(" {:>16}", "T used")
        } else {
            String::new()
        }
    );
    let whole = events.len() as u64;
    for (i, r) in results.iter().enumerate() {
        let mark = if i == rec.chosen {
            "  <- recommended"
        } else if i == rec.best {
            "  <- best"
        } else if i == rec.best_truncated {
            "  <- best truncated"
        } else {
            ""
        };
        let t = match r.spec.window {
            TAxis::Full if r.events < whole => "full*".to_string(),
            w => w.to_string(),
        };
        let _ = write!(
            s,
            "{:<5} {:>4} {:>5} {:>3}  {:>10} {:>10} {:>6.3}",
            r.spec.cell.to_string(),
            r.spec.hidden,
            t,
            r.spec.every,
            sig(r.mse),
            sig(r.mae),
            r.rel_naive()
        );
        if seasonal {
            let _ = write!(s, " {:>6.3}", r.rel_seasonal().unwrap_or(f64::NAN));
        }
        let used = match (&r.truncation, auto) {
            (Some(t), _) => format!(" {:>16}", format!("{:.1} ({}-{})", t.mean, t.min, t.max)),
            (None, true) => format!(" {:>16}", ""),
            (None, false) => String::new(),
        };
        let _ = writeln!(
            s,
            " {:>10} {:>6.3} {:>9.0} {:>10} {:>10} {:>9}{used}{mark}",
            sig(r.mse_all),
            ratio(r.mse_all, r.naive_mse_all),
            r.events_per_sec,
            si(r.madds_per_update),
            si(r.madds_per_event),
            bytes(r.buffer_bytes)
        );
    }
    let (best, truncated, chosen) = (
        &results[rec.best],
        &results[rec.best_truncated],
        &results[rec.chosen],
    );
    let _ = writeln!(s);
    if rec.best != rec.best_truncated {
        let _ = writeln!(
            s,
            "best:        {} (MSE {}, {:.3} of naive; full BPTT, the reference: replay does not run it)",
            best.spec,
            sig(best.mse),
            best.rel_naive()
        );
    }
    let _ = writeln!(
        s,
        "{} {} (MSE {}, {:.3} of naive)",
        if rec.best != rec.best_truncated {
            "best truncated:"
        } else {
            "best:       "
        },
        truncated.spec,
        sig(truncated.mse),
        truncated.rel_naive()
    );
    let _ = writeln!(
        s,
        "recommended: {} (MSE {}, {:.3} of the best truncated run; {} multiply-adds per event vs {}), the cheapest within {}% of it",
        chosen.spec,
        sig(chosen.mse),
        chosen.mse / truncated.mse,
        si(chosen.madds_per_event),
        si(truncated.madds_per_event),
        chosen_pct(rec.tolerance)
    );
    let _ = writeln!(
        s,
        "replay it:   tbptt replay {file} {} (with the same input and model flags)",
        replay_flags(chosen)
    );
    if let Some(w) = warning(results, rec) {
        let _ = writeln!(s, "warning:     {w}");
    }
    let _ = writeln!(
        s,
        "T = full: every update backpropagates through all events seen so far; a reference, never recommended (replay and learn do not run it: its memory and work per update grow with the stream). madd: multiply-adds of training, computed; memory: training buffers, computed from their sizes; events/s: measured, with {threads} runs at a time. MSE all: over every event with a forecast."
    );
    if results
        .iter()
        .any(|r| r.spec.window == TAxis::Full && r.events < whole)
    {
        let _ = writeln!(
            s,
            "T = full*: ran on the first {} events only (--full-max; its work grows with the square of the length), scored on the last 20% of those ({} events): compare its /naive, not its MSE, with the other rows.",
            full_max.min(events.len()),
            sweep::scored_events(full_max.min(events.len()))
        );
    }
    if let Some(a) = results.iter().find_map(|r| r.truncation.map(|_| r)) {
        let max = results
            .iter()
            .filter_map(|r| r.truncation.map(|_| r.buffer_bytes))
            .max()
            .unwrap_or(a.buffer_bytes);
        let _ = writeln!(
            s,
            "T = auto: T adapts to the measured gradient decay; T used: mean (min-max) over its updates. Its madd is computed from the mean T used; its memory ({}) is for the largest T allowed (--t-max), for which the buffers are allocated.",
            bytes(max)
        );
    }
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::INFINITY
    }
}

fn chosen_pct(t: f64) -> String {
    let p = t * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

fn plots(
    dir: &std::path::Path,
    events: &[tbptt::event::Event],
    base: &PipelineConfig,
    results: &[RunResult],
    rec: &Recommendation,
    season: Option<usize>,
) -> Result<(), AnyError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create plot folder {}: {e}", dir.display()))?;
    let best = &results[rec.best];
    let same: Vec<&RunResult> = results
        .iter()
        // Full BPTT on a prefix of the log was scored on other events: left out.
        .filter(|r| {
            r.spec.cell == best.spec.cell
                && r.spec.hidden == best.spec.hidden
                && r.events == events.len() as u64
        })
        .collect();
    let label = format!("{} H={}", best.spec.cell, best.spec.hidden);
    plot::error_vs_t_svg(
        &same,
        &format!("forecast error vs T ({label}; last 20%)"),
        &dir.join("error_vs_t.svg"),
    )?;
    plot::cost_vs_t_svg(
        &same,
        &format!("training cost vs T ({label})"),
        &dir.join("cost_vs_t.svg"),
    )?;
    let mut trace = ForecastTrace::new(tbptt::detect::trace::PLOT_POINTS);
    sweep::evaluate_traced(events, base, &best.spec, season, Some(&mut trace))?;
    plot::forecast_svg(
        &trace,
        &format!("best: {}: forecast and anomaly score", best.spec),
        &dir.join("forecast.svg"),
    )?;
    Ok(())
}
