//! `tbptt nab DATA_DIR OUT_DIR`: the anomaly detector over a NAB-style data tree, one fresh
//! learner per file, files in parallel, each learner inline (deterministic).

use crate::cli::NabArgs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tbptt::detect::pipeline::PipelineConfig;
use tbptt::tools::nab::{self, NabError};
use tbptt::{LearnerConfig, TrainerConfig};

/// Runs the detector over every CSV below `a.data_dir`, writing result files below
/// `a.out_dir`; prints the files, rows and wall time on stderr.
pub fn run(a: &NabArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = PipelineConfig {
        learner: LearnerConfig {
            cell: a.cell.into(),
            d_hidden: a.hidden,
            seed: a.seed,
            trainer: TrainerConfig {
                truncation: a.window.into(),
                every: a.every,
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    config.anomaly.kind = a.anomaly.into();
    config.anomaly.threshold = config.anomaly.kind.default_threshold();
    if let Some(l) = a.likelihood {
        config.anomaly.likelihood = l;
    }
    if let Some(f) = a.forecast {
        config.forecast = f;
    }
    // Checked once here rather than once per file.
    tbptt::detect::pipeline::Pipeline::new(config.clone())?;
    let files = nab::find_files(&a.data_dir)?;
    if files.is_empty() {
        return Err(format!("no .csv files below {}", a.data_dir.display()).into());
    }
    let jobs = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, files.len());
    let start = Instant::now();
    let bar = (!a.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        bar
    });
    let next = AtomicUsize::new(0);
    let rows = AtomicUsize::new(0);
    let failure: Mutex<Option<(PathBuf, NabError)>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(rel) = files.get(i) else { break };
                if failure.lock().map_or(true, |f| f.is_some()) {
                    break;
                }
                match nab::score_file(&config, &a.data_dir, &a.out_dir, rel) {
                    Ok(n) => {
                        rows.fetch_add(n, Ordering::Relaxed);
                        if let Some(b) = &bar {
                            b.set_message(rel.display().to_string());
                            b.inc(1);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert((rel.clone(), e));
                        }
                        break;
                    }
                }
            });
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some((_, e)) = failure.into_inner().ok().flatten() {
        return Err(e.into());
    }
    if !a.quiet {
        eprintln!(
            "tbptt nab: {} files, {} rows, anomaly score {}, {} threads, {:.2} s",
            files.len(),
            rows.load(Ordering::Relaxed),
            config.anomaly.kind,
            jobs,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
