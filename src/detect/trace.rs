//! The forecasts of a run, collected for a plot in bounded memory.
//!
//! [`ForecastTrace`] keeps `(index, actual, forecast, score)` of the first value of each event
//! as a run goes: past its capacity it keeps every other point and doubles its stride, so a
//! long run is drawn decimated. The SVG itself is drawn by the `plot` feature's
//! `tools::plot::forecast_svg`.
//!
//! # Example
//! ```
//! use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
//! use tbptt::detect::trace::ForecastTrace;
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
//! # Ok::<(), tbptt::Error>(())
//! ```

use crate::detect::pipeline::OutputRecord;

/// Most points the command's plots keep; a longer run is drawn decimated.
pub const PLOT_POINTS: usize = 20_000;

/// One plotted event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TracePoint {
    /// The event's index.
    pub index: u64,
    /// Its actual first value (or first target), in the input's units.
    pub actual: f64,
    /// The forecast made for it.
    pub forecast: f64,
    /// Its anomaly score.
    pub score: f64,
    /// Whether it was flagged.
    pub anomaly: bool,
}

/// The forecasts of a run, decimated beyond a capacity (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct ForecastTrace {
    cap: usize,
    stride: u64,
    seen: u64,
    points: Vec<TracePoint>,
    anomalies: u64,
}

impl ForecastTrace {
    /// An empty trace holding at most `cap` points (at least 2); the buffer is allocated
    /// now, so pushing never allocates.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(2);
        ForecastTrace {
            cap,
            stride: 1,
            seen: 0,
            points: Vec::with_capacity(cap),
            anomalies: 0,
        }
    }

    /// Records an event's output (`actual` = its values, or its targets with explicit
    /// targets). Events without a forecast (the first of a forecast stream) are skipped.
    pub fn push(&mut self, rec: &OutputRecord, actual: &[f64]) {
        let (Some(&a), Some(&r)) = (actual.first(), rec.residual.first()) else {
            return;
        };
        if rec.anomaly {
            self.anomalies += 1;
        }
        let keep = self.seen.is_multiple_of(self.stride);
        self.seen += 1;
        if !keep {
            return;
        }
        if self.points.len() == self.cap {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
            if !(self.seen - 1).is_multiple_of(self.stride) {
                return;
            }
        }
        self.points.push(TracePoint {
            index: rec.index,
            actual: a,
            forecast: a - r,
            score: rec.score,
            anomaly: rec.anomaly,
        });
    }

    /// The points kept.
    pub fn points(&self) -> &[TracePoint] {
        &self.points
    }

    /// Every how many forecast events a point is kept (1: all of them).
    pub fn stride(&self) -> u64 {
        self.stride
    }

    /// Events with a forecast seen.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Events flagged as anomalies, among all seen (not only those kept).
    pub fn anomalies(&self) -> u64 {
        self.anomalies
    }
}
