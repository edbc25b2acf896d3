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
use tbptt::train::truncation::AutoTruncation;

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
    /// update.
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
    /// Anomaly threshold (for the forecast plot).
    #[arg(long, default_value_t = 4.0, help_heading = "Model")]
    pub threshold: f64,
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
        learner.auto_truncation = Some(a.auto.apply(AutoTruncation::default()));
    }
    let mut p = PipelineConfig {
        learner,
        normalize,
        ..Default::default()
    };
    p.anomaly.threshold = a.threshold;
    p.anomaly.half_life = a.anomaly_halflife;
    p.anomaly.validate()?;
    Ok(p)
}

fn source(a: &SweepArgs) -> Result<SourceConfig, AnyError> {
    let mut s = SourceConfig::new(SourceSpec::File(a.input.clone()));
    s.decoder = crate::decoder(&a.decode)?;
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
    if base.learner.auto_truncation.is_some() && !has_auto {
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
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, specs.len().max(1));
    let bar = (!a.no_progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(specs.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} runs (eta {eta}) {msg}",
        ) {
            b.set_style(style);
        }
        b
    });
    let done = |s: &sweep::RunSpec| {
        if let Some(b) = &bar {
            b.set_message(s.to_string());
            b.inc(1);
        }
    };
    let results = sweep::run_grid(&events, &base, &specs, season, threads, &done)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let rec = sweep::recommend(&results, a.tolerance)
        .ok_or("no run produced a finite error; nothing to recommend")?;
    if let Some(dir) = &a.plot {
        plots(dir, &events, &base, &results, &rec, season)?;
    }
    if a.json {
        let b = sweep::baselines(&events, season);
        let v = serde_json::json!({
            "file": a.input,
            "events": events.len(),
            "rejected": loaded.rejected,
            "season": season,
            "tolerance": a.tolerance,
            "threads": threads,
            "baselines": b,
            "runs": results,
            "best": rec.best,
            "recommended": rec.chosen,
            "recommendation": results[rec.chosen].spec,
            "memory": "computed from buffer sizes",
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!(
            "{}",
            table(
                &a.input.display().to_string(),
                &events,
                loaded.rejected,
                season,
                threads,
                &results,
                &rec
            )
        );
    }
    Ok(())
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
fn table(
    file: &str,
    events: &[tbptt::event::Event],
    rejected: u64,
    season: Option<usize>,
    threads: usize,
    results: &[RunResult],
    rec: &Recommendation,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let b = sweep::baselines(events, season);
    let scored = results.first().map_or(0, |r| r.scored);
    let _ = writeln!(
        s,
        "tbptt sweep: {file}, {} events ({rejected} rejected), {} runs on {threads} threads",
        events.len(),
        results.len()
    );
    let _ = writeln!(
        s,
        "scored on the last 20% ({scored} events); naive MSE {} MAE {}",
        sig(b.naive_mse),
        sig(b.naive_mae)
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
        " {:>9} {:>10} {:>10} {:>9}",
        "events/s", "madd/upd", "madd/event", "memory"
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
    for (i, r) in results.iter().enumerate() {
        let mark = if i == rec.chosen {
            "  <- recommended"
        } else if i == rec.best {
            "  <- best"
        } else {
            ""
        };
        let _ = write!(
            s,
            "{:<5} {:>4} {:>5} {:>3}  {:>10} {:>10} {:>6.3}",
            r.spec.cell.to_string(),
            r.spec.hidden,
            r.spec.window.to_string(),
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
            " {:>9.0} {:>10} {:>10} {:>9}{used}{mark}",
            r.events_per_sec,
            si(r.madds_per_update),
            si(r.madds_per_event),
            bytes(r.buffer_bytes)
        );
    }
    let (best, chosen) = (&results[rec.best], &results[rec.chosen]);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "best:        {} (MSE {}, {:.3} of naive)",
        best.spec,
        sig(best.mse),
        best.rel_naive()
    );
    let _ = writeln!(
        s,
        "recommended: {} (MSE {}, {:.3} of the best; {} multiply-adds per event vs {}), the cheapest within {}% of the best",
        chosen.spec,
        sig(chosen.mse),
        chosen.mse / best.mse,
        si(chosen.madds_per_event),
        si(best.madds_per_event),
        chosen_pct(rec.tolerance)
    );
    let _ = writeln!(
        s,
        "T = full: every update backpropagates through all events seen so far. madd: multiply-adds of training, computed; memory: training buffers, computed from their sizes; events/s: measured, with {threads} runs at a time."
    );
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
        .filter(|r| r.spec.cell == best.spec.cell && r.spec.hidden == best.spec.hidden)
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
