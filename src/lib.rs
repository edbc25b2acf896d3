//! # tbptt
//!
//! A streaming online learner: a recurrent network (Elman, GRU or LSTM, written with nalgebra)
//! that forecasts every event of a stream at once and keeps learning from it by truncated
//! backpropagation through time, TBPTT(k1, k2) in Williams & Peng's terms.
//!
//! ## Brief overview
//!
//! Data flows one way: source → parse → predict → ring → train → publish → sink.
//!
//! - [`Model`]: stacked cells and a linear readout, parameters flat in PyTorch's layout;
//!   [`Model::step_to`] is the live one-step forward, [`Window`] the forward and backward pass
//!   over a window.
//! - [`Learner`]: per event, scores the previous forecast, advances the live state, forecasts
//!   the next event, records the pair in the [`Ring`](train::ring::Ring) and every `k` events runs a
//!   [`Trainer`] update, inline or on a background thread ([`Learner::spawn_trainer`]).
//! - [`Loss`], [`Optimizer`]: MSE / Huber / cross-entropy; SGD, Adam, AdamW, RMSprop.
//! - [`Pipeline`]: the value-scale path (normalization, learner, residuals, anomaly score)
//!   from an [`Event`] to an [`OutputRecord`]; [`anomaly`](detect::anomaly) has the anomaly
//!   likelihood (the default score), the z-score and the raw error.
//! - [`io::format`], [`io::source`], [`io::sink`], [`io::checkpoint`]: decoders, async
//!   sources, output records, state on disk; [`service::run`] is the streaming runtime of the
//!   `tbptt` command and [`service::stream::predictions`] the adapter for async code.
//! - [`tools::sweep`], [`tools::nab`], and with the `plot` feature `tools::plot`: choosing `T`
//!   and `k` on a recorded log, the Numenta Anomaly Benchmark runner, SVG plots.
//!
//! ## Layers
//!
//! Each module imports only from its own layer or below; the everyday types are re-exported
//! here at the root.
//!
//! ```text
//! tools/    sweep, plot, nab              choosing T, SVG plots, the NAB runner
//! service/  run, stream                   the runtime: event loop, async adapter
//! io/       format, source, sink, capture, bytes -> Event, sockets and files,
//!           checkpoint, shutdown          records out, state on disk
//! detect/   norm, forecast, anomaly,      scale, the forecaster, score, the per-series
//!           pipeline, trace               pipeline
//! train/    ring, trainer, truncation,    last-T window, TBPTT(k1, k2), adaptive T,
//!           learner, background           predict/train/swap
//! nn/       scalar, linalg, simd, cell,   cells, model, losses, optimizers, kernels
//!           model, loss, optim
//! (root)    error, event                  Error/Result, the decoded input record
//! ```
//!
//! [`Pipeline`] is the API on the values' own scale (normalization, learner, anomaly score):
//!
//! ```
//! use tbptt::{Event, Pipeline, PipelineConfig};
//! let mut pipeline = Pipeline::new(PipelineConfig::default())?;
//! let mut event = Event::new();
//! let mut last = None;
//! for t in 0..600 {
//!     event.values.clear();
//!     event.values.push(5_000.0 + 300.0 * (t as f64 * 0.07).sin()); // raw values, any scale
//!     let out = pipeline.process(&event)?;
//!     last = Some((out.forecast[0], out.score));
//! }
//! let (forecast, score) = last.unwrap();
//! assert!((4_000.0..6_000.0).contains(&forecast) && (0.0..=1.0).contains(&score));
//! assert_eq!(pipeline.events(), 600);
//! # Ok::<(), tbptt::Error>(())
//! ```
//!
//! [`Learner`] is the network alone, on values of order one:
//!
//! ```
//! use tbptt::LearnerConfig;
//! let mut learner = LearnerConfig { d_hidden: 16, ..Default::default() }.build::<f32>()?;
//! let mut last_error = None;
//! for t in 0..2_000 {
//!     let p = learner.step(&[(t as f32 * 0.2).sin()])?;
//!     last_error = p.error;
//! }
//! assert!(learner.updates() > 200 && last_error.unwrap() < 0.05);
//! # Ok::<(), tbptt::Error>(())
//! ```
#![deny(missing_docs)]

pub mod detect;
pub mod error;
pub mod event;
pub mod io;
pub mod nn;
pub mod service;
pub mod tools;
pub mod train;

pub use detect::anomaly::AnomalyKind;
pub use detect::pipeline::{OutputRecord, Pipeline, PipelineConfig, PipelineState};
pub use error::{Error, Result};
pub use event::Event;
pub use nn::cell::CellKind;
pub use nn::loss::Loss;
pub use nn::model::{Model, ModelConfig, ParamName, StepWorkspace, Window};
pub use nn::optim::{Optimizer, OptimizerConfig};
pub use nn::scalar::Float;
pub use train::learner::{Learner, LearnerConfig, LearnerState, Prediction, Targets};
pub use train::trainer::{full_bptt, LossSteps, Trainer, TrainerConfig, UpdateStats};
pub use train::truncation::{AutoTruncation, Truncation, TruncationReport};
