//! Truncation measured on real series, in two tables and two SVG plots:
//!
//! 1. **Cost per event as the log grows.** Training cost per event of TBPTT(k = 8, T) and of
//!    full BPTT (every update backpropagates through the whole log) at log length `n`, on the
//!    bundled NAB CPU series: one update's forward and backward pass, timed (the fastest of
//!    several batches), divided by `k`, and the multiply-adds it takes (computed).
//! 2. **How the truncated gradient approaches the full one.** On the bundled weekly CO2
//!    series (missing values held), a GRU and an LSTM trained online for 1,500 events; then,
//!    at 10 points of the rest of the series, the gradient of the loss on the newest 8 steps
//!    with respect to every parameter, backpropagated through the whole history from the
//!    first event (full BPTT) or through the last `T` steps only (TBPTT, the state before the
//!    window held fixed). Both use the same weights and the same forward pass; the table gives
//!    the relative error `|g_T − g_full| / |g_full|` and the angle between them, averaged over
//!    the points.
//!
//! Run: `cargo run --release --example truncation [-- OUT_DIR]` (plots go to `docs/` by
//! default). Timings depend on the machine and its load.

use std::path::{Path, PathBuf};
use std::time::Instant;
use tbptt::io::format::{DecoderConfig, Missing};
use tbptt::io::source::{SourceConfig, SourceSpec};
use tbptt::nn::model::{ModelConfig, StepWorkspace, Window};
use tbptt::tools::plot::{lines_svg, Line};
use tbptt::tools::sweep::{madds_per_step, read_events};
use tbptt::{CellKind, LearnerConfig, Loss, Model};

type AnyError = Box<dyn std::error::Error>;

const K: usize = 8;

/// The first value of every event of a bundled file, missing values held, standardized.
fn series(name: &str) -> Result<Vec<f64>, AnyError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name);
    let mut config = SourceConfig::new(SourceSpec::File(path));
    config.decoder = DecoderConfig {
        missing: Missing::Hold,
        ..Default::default()
    };
    let v: Vec<f64> = read_events(config, true)?
        .events
        .iter()
        .map(|e| e.values[0])
        .collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    Ok(v.iter().map(|x| (x - mean) / sd.max(1e-12)).collect())
}

fn model_config(cell: CellKind, h: usize) -> ModelConfig {
    ModelConfig {
        cell,
        d_input: 1,
        d_hidden: h,
        layers: 1,
        d_output: 1,
    }
}

/// Microseconds of one forward and backward pass over the newest `n` of `xs` (target = the
/// next value), the fastest of 5 batches.
fn time_update(model: &Model<f32>, xs: &[f64], n: usize) -> Result<f64, AnyError> {
    let mc = *model.config();
    let mut w = Window::new(&mc, n)?;
    let end = xs.len() - 1;
    let (wx, wy) = w.io_mut();
    for j in 0..n {
        wx[j] = xs[end - n + j] as f32;
        wy[j] = xs[end - n + j + 1] as f32;
    }
    let start = vec![0.0f32; mc.state_len()];
    let reps = (20_000 / n).clamp(2, 400);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(w.forward_backward(model, &start, n, Loss::Mse, K)?);
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e6 / reps as f64);
    }
    Ok(best)
}

fn cost_table(out: &Path) -> Result<(), AnyError> {
    let xs = series("nab_ec2_cpu_utilization_24ae8d.csv")?;
    let mc = model_config(CellKind::Gru, 32);
    let model = Model::<f32>::new(mc, 0)?;
    let per_step = madds_per_step(&mc);
    let windows = [8usize, 32];
    let t_cost: Vec<f64> = windows
        .iter()
        .map(|&t| time_update(&model, &xs, t).map(|us| us / K as f64))
        .collect::<Result<_, _>>()?;
    println!(
        "## Training cost per event as the log grows (GRU, H = 32, k = {K}, NAB CPU series)\n"
    );
    println!("| log length n | full BPTT µs/event | TBPTT T = 8 µs/event | TBPTT T = 32 µs/event | full / T = 32 | full madd/event | T = 32 madd/event |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut full_pts = Vec::new();
    for n in [64usize, 128, 256, 512, 1024, 2048, xs.len() - 1] {
        let full = time_update(&model, &xs, n)? / K as f64;
        full_pts.push((n as f64, full));
        println!(
            "| {n} | {full:.1} | {:.2} | {:.2} | {:.0}× | {:.0} | {:.0} |",
            t_cost[0],
            t_cost[1],
            full / t_cost[1],
            per_step * n as f64 / K as f64,
            per_step * 32.0 / K as f64
        );
    }
    let flat = |c: f64| full_pts.iter().map(|p| (p.0, c)).collect();
    lines_svg(
        &[
            Line {
                label: "full BPTT".into(),
                points: full_pts.clone(),
            },
            Line {
                label: "TBPTT T = 32".into(),
                points: flat(t_cost[1]),
            },
            Line {
                label: "TBPTT T = 8".into(),
                points: flat(t_cost[0]),
            },
        ],
        &format!("training cost per event vs log length (GRU H=32, k={K})"),
        "log length n (events)",
        "µs per event",
        (true, true),
        &out.join("truncation_cost.svg"),
    )?;
    Ok(())
}

/// Norm of `a − b` over the norm of `b`, and the angle between them in degrees.
fn compare(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (mut d, mut nb, mut na, mut dot) = (0.0, 0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        d += (x - y) * (x - y);
        nb += y * y;
        na += x * x;
        dot += x * y;
    }
    let cos = (dot / (na.sqrt() * nb.sqrt()).max(1e-300)).clamp(-1.0, 1.0);
    ((d / nb.max(1e-300)).sqrt(), cos.acos().to_degrees())
}

/// Mean relative error and angle of the TBPTT gradient for each `T` against full BPTT, for a
/// model trained online on the first `train` events.
fn gradient_errors(
    xs: &[f64],
    cell: CellKind,
    train: usize,
    windows: &[usize],
) -> Result<Vec<(f64, f64)>, AnyError> {
    let config = LearnerConfig {
        cell,
        d_hidden: 32,
        trainer: tbptt::TrainerConfig {
            truncation: 32.into(),
            every: K,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = config.build::<f64>()?;
    for &x in &xs[..train] {
        learner.step(&[x])?;
    }
    let model = learner.model().clone();
    let mc = *model.config();
    let ends: Vec<usize> = (0..10)
        .map(|i| train + 50 + i * (xs.len() - train - 60) / 10)
        .collect();
    let mut sums = vec![(0.0, 0.0); windows.len()];
    let mut ws = StepWorkspace::new(&mc);
    let mut y = vec![0.0; 1];
    for &e in &ends {
        // Steps 0..e: input xs[j], target xs[j + 1].
        let mut full = Window::new(&mc, e)?;
        let (wx, wy) = full.io_mut();
        wx.copy_from_slice(&xs[..e]);
        wy.copy_from_slice(&xs[1..=e]);
        let zero = vec![0.0; mc.state_len()];
        full.forward_backward(&model, &zero, e, Loss::Mse, K)?;
        let g_full = full.grads().to_vec();
        for (i, &t) in windows.iter().enumerate() {
            let mut s = zero.clone();
            for &x in &xs[..e - t] {
                model.step_to(&[x], &mut s, &mut ws, &mut y);
            }
            let mut w = Window::new(&mc, t)?;
            let (wx, wy) = w.io_mut();
            wx.copy_from_slice(&xs[e - t..e]);
            wy.copy_from_slice(&xs[e - t + 1..=e]);
            w.forward_backward(&model, &s, t, Loss::Mse, K)?;
            let (rel, angle) = compare(w.grads(), &g_full);
            sums[i].0 += rel / ends.len() as f64;
            sums[i].1 += angle / ends.len() as f64;
        }
    }
    Ok(sums)
}

/// An angle in degrees, three decimals, or in scientific notation when smaller.
fn degrees(a: f64) -> String {
    if a >= 1e-3 || a == 0.0 {
        format!("{a:.3}")
    } else {
        format!("{a:.1e}")
    }
}

fn gradient_table(out: &Path) -> Result<(), AnyError> {
    let xs = series("co2_mauna_loa_weekly.csv")?;
    let windows = [8usize, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024];
    let gru = gradient_errors(&xs, CellKind::Gru, 1500, &windows)?;
    let lstm = gradient_errors(&xs, CellKind::Lstm, 1500, &windows)?;
    println!("\n## TBPTT gradient against full BPTT (weekly CO2, H = 32, loss on the newest {K} steps, mean of 10 points after 1,500 events of online training)\n");
    println!("| T | GRU relative error | GRU angle (°) | LSTM relative error | LSTM angle (°) |");
    println!("|---:|---:|---:|---:|---:|");
    for (i, t) in windows.iter().enumerate() {
        println!(
            "| {t} | {:.2e} | {} | {:.2e} | {} |",
            gru[i].0,
            degrees(gru[i].1),
            lstm[i].0,
            degrees(lstm[i].1)
        );
    }
    let pts = |v: &[(f64, f64)]| {
        windows
            .iter()
            .zip(v)
            .map(|(&t, r)| (t as f64, r.0))
            .collect()
    };
    lines_svg(
        &[
            Line {
                label: "GRU".into(),
                points: pts(&gru),
            },
            Line {
                label: "LSTM".into(),
                points: pts(&lstm),
            },
        ],
        "|g_T - g_full| / |g_full| vs T (weekly CO2, H=32)",
        "T (window length)",
        "relative error of the TBPTT gradient",
        (true, true),
        &out.join("gradient_vs_t.svg"),
    )?;
    Ok(())
}

fn main() -> Result<(), AnyError> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("docs"));
    std::fs::create_dir_all(&out)?;
    cost_table(&out)?;
    gradient_table(&out)?;
    println!(
        "\nplots: {} and {}",
        out.join("truncation_cost.svg").display(),
        out.join("gradient_vs_t.svg").display()
    );
    Ok(())
}
