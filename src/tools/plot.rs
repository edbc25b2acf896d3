//! SVG plots (plotters): a run's forecast against the actual series with the anomaly score
//! under it, and a sweep's error and cost against the window `T`.
//!
//! - [`forecast_svg`] draws a [`ForecastTrace`] (the forecasts a run collected, decimated
//!   past a capacity, so the plot's title says by how much); [`error_vs_t_svg`],
//!   [`cost_vs_t_svg`] draw a sweep's results.
//!
//! # Example
//! ```
//! use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
//! use tbptt::detect::trace::ForecastTrace;
//! use tbptt::tools::plot::forecast_svg;
//! use tbptt::event::Event;
//!
//! let mut p = Pipeline::new(PipelineConfig::default())?;
//! let mut trace = ForecastTrace::new(100);
//! for t in 0..500 {
//!     let ev = Event { values: vec![(t as f64 * 0.3).sin()], ..Default::default() };
//!     let rec = p.process(&ev)?;
//!     trace.push(rec, &ev.values);
//! }
//! assert!(trace.points().len() <= 100 && trace.stride() == 8);
//! let path = std::env::temp_dir().join(format!("tbptt-plot-doc-{}.svg", std::process::id()));
//! forecast_svg(&trace, "sine", &path)?;
//! assert!(std::fs::read_to_string(&path)?.contains("forecast"));
//! std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::detect::trace::ForecastTrace;
use crate::tools::sweep::{RunResult, TAxis};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// Nothing to draw.
    #[error("nothing to plot: {0}")]
    Empty(&'static str),
    /// The drawing or the file failed.
    #[error("cannot write plot {path}: {reason}")]
    Write {
        /// The file.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// An axis tick: plain with up to 3 decimals, or in scientific notation when very large or
/// small.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// Draws the legend of `chart`'s labelled series: a white box with a black border at `pos`.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
    path: &Path,
) -> Result<(), PlotError>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(pos)
        .draw()
        .map_err(|e| write_err(path, e))
}

/// Draws a thin labelled line through `points` on a linear chart.
fn line<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: impl Iterator<Item = (f64, f64)>,
    color: RGBColor,
    label: &str,
    path: &Path,
) -> Result<(), PlotError> {
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(1)))
        .map_err(|e| write_err(path, e))?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
    Ok(())
}

/// Writes the forecast plot of a run to `path` (SVG): the actual series and the forecast on
/// top (legend `actual`, `forecast`), the anomaly score below (legend `anomaly score`, flagged
/// events as red dots).
///
/// # Errors
/// [`PlotError::Empty`] for a trace without points, [`PlotError::Write`] if the file cannot
/// be written.
pub fn forecast_svg(trace: &ForecastTrace, title: &str, path: &Path) -> Result<(), PlotError> {
    let pts = trace.points();
    if pts.is_empty() {
        return Err(PlotError::Empty("no event had a forecast"));
    }
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| write_err(path, e))?;
    let (top, bottom) = root.split_vertically(400);
    let x0 = pts[0].index as f64;
    let x1 = (pts[pts.len() - 1].index as f64).max(x0 + 1.0);
    let (y0, y1) = bounds(pts.iter().flat_map(|p| [p.actual, p.forecast]));
    let caption = if trace.stride() > 1 {
        format!("{title} (1 in {} events shown)", trace.stride())
    } else {
        title.to_string()
    };
    let mut chart = ChartBuilder::on(&top)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| write_err(path, e))?;
    chart
        .configure_mesh()
        .y_desc("value")
        .draw()
        .map_err(|e| write_err(path, e))?;
    line(
        &mut chart,
        pts.iter().map(|p| (p.index as f64, p.actual)),
        BLACK,
        "actual",
        path,
    )?;
    line(
        &mut chart,
        pts.iter().map(|p| (p.index as f64, p.forecast)),
        BLUE,
        "forecast",
        path,
    )?;
    legend(&mut chart, SeriesLabelPosition::UpperLeft, path)?;
    let (s0, s1) = bounds(pts.iter().map(|p| p.score));
    let mut lower = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, s0.min(0.0)..s1.max(1.0))
        .map_err(|e| write_err(path, e))?;
    lower
        .configure_mesh()
        .x_desc("event")
        .y_desc("score")
        .draw()
        .map_err(|e| write_err(path, e))?;
    line(
        &mut lower,
        pts.iter().map(|p| (p.index as f64, p.score)),
        RED,
        "anomaly score",
        path,
    )?;
    lower
        .draw_series(
            pts.iter()
                .filter(|p| p.anomaly)
                .map(|p| Circle::new((p.index as f64, p.score), 3, RED.filled())),
        )
        .map_err(|e| write_err(path, e))?;
    legend(&mut lower, SeriesLabelPosition::UpperLeft, path)?;
    root.present().map_err(|e| write_err(path, e))
}

/// The categories of the `T` axis: the fixed values ascending, then `full`; `auto` only
/// when there is nothing else (otherwise auto runs are placed at their mean `T`).
fn t_axis(runs: &[&RunResult]) -> Vec<TAxis> {
    let mut ts: Vec<TAxis> = runs
        .iter()
        .map(|r| r.spec.window)
        .filter(|t| *t != TAxis::Auto)
        .collect();
    if ts.is_empty() {
        ts.push(TAxis::Auto);
    }
    ts.sort_by_key(|t| match t {
        TAxis::Fixed(n) => (0, *n),
        TAxis::Auto => (1, 0),
        TAxis::Full => (2, 0),
    });
    ts.dedup();
    ts
}

/// The x position of an auto run's mean `T` on the categorical axis `ts`: interpolated on a
/// log scale between the neighbouring categories (`full` at the mean length full BPTT
/// backpropagated through), clamped to the axis.
fn auto_position(ts: &[TAxis], runs: &[&RunResult], mean: f64) -> f64 {
    let full_steps = runs
        .iter()
        .find(|r| r.spec.window == TAxis::Full)
        .map(|r| r.steps_per_update);
    let anchors: Vec<(f64, f64)> = ts
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match t {
            TAxis::Fixed(n) => Some((i as f64, *n as f64)),
            TAxis::Full => full_steps.filter(|s| *s > 0.0).map(|s| (i as f64, s)),
            TAxis::Auto => None,
        })
        .collect();
    let (Some(first), Some(last)) = (anchors.first(), anchors.last()) else {
        return 0.0;
    };
    if mean.is_nan() || mean <= first.1 {
        return first.0;
    }
    if mean >= last.1 {
        return last.0;
    }
    for w in anchors.windows(2) {
        let ((x0, t0), (x1, t1)) = (w[0], w[1]);
        if mean <= t1 && t1 > t0 {
            return x0 + (x1 - x0) * (mean / t0).ln() / (t1 / t0).ln();
        }
    }
    last.0
}

/// Legend text of the auto runs' markers.
const AUTO_LABEL: &str = "auto (at its mean T)";

/// One line per `k` of `y(run)` against the position of its `T` on the axis; auto runs are
/// triangles in their `k`'s colour at their mean `T`, not joined to the lines.
fn lines_vs_t(
    runs: &[&RunResult],
    title: &str,
    y_desc: &str,
    log_y: bool,
    y: impl Fn(&RunResult) -> f64,
    path: &Path,
) -> Result<(), PlotError> {
    if runs.is_empty() {
        return Err(PlotError::Empty("no run"));
    }
    let ts = t_axis(runs);
    let only_auto = ts == [TAxis::Auto];
    let pos = |r: &RunResult| match r.spec.window {
        TAxis::Auto if !only_auto => auto_position(
            &ts,
            runs,
            r.truncation.map_or(r.steps_per_update, |t| t.mean),
        ),
        t => ts.iter().position(|x| *x == t).unwrap_or(0) as f64,
    };
    let mut ks: Vec<usize> = runs.iter().map(|r| r.spec.every).collect();
    ks.sort_unstable();
    ks.dedup();
    let (mut y0, mut y1) = bounds(runs.iter().map(|r| y(r)));
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| write_err(path, e))?;
    let labels = ts.clone();
    let x_fmt = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
            labels[i as usize].to_string()
        } else {
            String::new()
        }
    };
    let xr = -0.3..(ts.len() as f64 - 0.7);
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_labels(ts.len() * 4)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&tick)
                .x_desc("T (window length)")
                .y_desc(y_desc)
                .draw()
                .map_err(|e| write_err(path, e))?;
            for (ci, &k) in ks.iter().enumerate() {
                let mut pts: Vec<(f64, f64)> = runs
                    .iter()
                    .filter(|r| r.spec.every == k && (only_auto || r.spec.window != TAxis::Auto))
                    .map(|r| (pos(r), y(r)))
                    .filter(|p| p.1.is_finite())
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let color = colors[ci % colors.len()];
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| write_err(path, e))?
                    .label(format!("k = {k}"))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| write_err(path, e))?;
            }
            let autos: Vec<(f64, f64, RGBColor)> = if only_auto {
                Vec::new()
            } else {
                runs.iter()
                    .filter(|r| r.spec.window == TAxis::Auto && y(r).is_finite())
                    .map(|r| {
                        let ci = ks.iter().position(|&k| k == r.spec.every).unwrap_or(0);
                        (pos(r), y(r), colors[ci % colors.len()])
                    })
                    .collect()
            };
            if !autos.is_empty() {
                chart
                    .draw_series(
                        autos
                            .iter()
                            .map(|&(x, v, c)| TriangleMarker::new((x, v), 7, c.filled())),
                    )
                    .map_err(|e| write_err(path, e))?
                    .label(AUTO_LABEL)
                    .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, BLACK.filled()));
            }
            legend(&mut chart, SeriesLabelPosition::UpperRight, path)?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70);
    if log_y {
        y0 = runs
            .iter()
            .map(|r| y(r))
            .filter(|v| *v > 0.0 && v.is_finite())
            .fold(f64::INFINITY, f64::min);
        if !y0.is_finite() {
            y0 = 1.0;
        }
        y0 /= 1.5;
        y1 = (y1 * 1.5).max(y0 * 2.0);
        draw!(builder
            .build_cartesian_2d(xr, (y0..y1).log_scale())
            .map_err(|e| write_err(path, e))?);
    } else {
        draw!(builder
            .build_cartesian_2d(xr, y0..y1)
            .map_err(|e| write_err(path, e))?);
    }
    root.present().map_err(|e| write_err(path, e))
}

/// Writes the sweep's error against `T` (MSE relative to the naive forecast), one line per
/// `k` (legend `k = K`), for the runs given (typically those of one cell and hidden size).
/// `auto` runs are triangles in their `k`'s colour, placed at the mean `T` they used (legend
/// `auto (at its mean T)`).
///
/// # Errors
/// As [`forecast_svg`].
pub fn error_vs_t_svg(runs: &[&RunResult], title: &str, path: &Path) -> Result<(), PlotError> {
    lines_vs_t(
        runs,
        title,
        "MSE / naive MSE (last 20%)",
        false,
        RunResult::rel_naive,
        path,
    )
}

/// Writes the sweep's training cost against `T` (multiply-adds per event, log scale), one
/// line per `k`; `auto` runs as in [`error_vs_t_svg`].
///
/// # Errors
/// As [`forecast_svg`].
pub fn cost_vs_t_svg(runs: &[&RunResult], title: &str, path: &Path) -> Result<(), PlotError> {
    lines_vs_t(
        runs,
        title,
        "multiply-adds per event",
        true,
        |r| r.madds_per_event,
        path,
    )
}

/// One named line of [`lines_svg`].
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Its legend text.
    pub label: String,
    /// Its points `(x, y)`; non-finite ones (and non-positive ones on a log axis) are left
    /// out.
    pub points: Vec<(f64, f64)>,
}

/// Writes lines `y(x)` with markers and a legend to `path` (SVG), with either axis on a log
/// scale.
///
/// # Errors
/// [`PlotError::Empty`] when no series has a point, [`PlotError::Write`] if the file cannot
/// be written.
pub fn lines_svg(
    series: &[Line],
    title: &str,
    x_desc: &str,
    y_desc: &str,
    (log_x, log_y): (bool, bool),
    path: &Path,
) -> Result<(), PlotError> {
    let ok = |(x, y): (f64, f64)| {
        x.is_finite() && y.is_finite() && (!log_x || x > 0.0) && (!log_y || y > 0.0)
    };
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| {
            (
                s.label.as_str(),
                s.points.iter().copied().filter(|p| ok(*p)).collect(),
            )
        })
        .collect();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    if all.is_empty() {
        return Err(PlotError::Empty("no finite point"));
    }
    let range = |v: Vec<f64>, log: bool| {
        if log {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo / 1.3, (hi * 1.3).max(lo * 2.0))
        } else {
            bounds(v.into_iter())
        }
    };
    let (x0, x1) = range(all.iter().map(|p| p.0).collect(), log_x);
    let (y0, y1) = range(all.iter().map(|p| p.1).collect(), log_y);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| write_err(path, e))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| write_err(path, e))?;
            chart
                .configure_mesh()
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .x_desc(x_desc)
                .y_desc(y_desc)
                .draw()
                .map_err(|e| write_err(path, e))?;
            for (i, (label, pts)) in series.iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| write_err(path, e))?
                    .label(*label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| write_err(path, e))?;
            }
            legend(&mut chart, SeriesLabelPosition::UpperLeft, path)?;
        }};
    }
    match (log_x, log_y) {
        (false, false) => draw!(builder.build_cartesian_2d(x0..x1, y0..y1)),
        (true, false) => draw!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1)),
        (false, true) => draw!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())),
        (true, true) => {
            draw!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()))
        }
    }
    root.present().map_err(|e| write_err(path, e))
}
