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
//!   the next event, records the pair in the [`ring::Ring`] and every `k` events runs a
//!   [`Trainer`] update, inline or on a background thread ([`Learner::spawn_trainer`]).
//! - [`Loss`], [`Optimizer`]: MSE / Huber / cross-entropy; SGD, Adam, AdamW, RMSprop.
//! - [`format`](mod@format), [`source`], [`pipeline`], [`sink`], [`run`]: decoders, async sources,
//!   normalization and anomaly scores, output records, the streaming runtime of the `tbptt`
//!   command; [`stream::predictions`] for embedding in async code.
//! - [`sweep`], [`plot`], [`record`]: choosing `T` and `k` on a recorded log (a grid of runs,
//!   scored against naive baselines, and a recommendation), SVG plots, and recording a live
//!   stream for replay.
//! - [`anomaly`]: the anomaly likelihood (the default score), the z-score and the raw error;
//!   [`nab`](mod@nab) runs the detector over a Numenta Anomaly Benchmark data tree.
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

pub mod anomaly;
pub mod cell;
pub mod checkpoint;
pub mod error;
pub mod event;
pub mod forecast;
pub mod format;
pub mod learner;
pub(crate) mod linalg;
pub mod loss;
pub mod model;
pub mod nab;
pub mod norm;
pub mod optim;
pub mod pipeline;
pub mod plot;
pub mod record;
pub mod ring;
pub mod run;
pub mod scalar;
pub mod shutdown;
pub mod simd;
pub mod sink;
pub mod source;
pub mod stream;
pub mod sweep;
pub mod tbptt;
pub mod truncation;

pub use cell::CellKind;
pub use error::{Error, Result};
pub use learner::{Learner, LearnerConfig, Prediction, Targets};
pub use loss::Loss;
pub use model::{Model, ModelConfig, ParamName, StepWorkspace, Window};
pub use optim::{Optimizer, OptimizerConfig};
pub use scalar::Float;
pub use tbptt::{full_bptt, LossSteps, Trainer, TrainerConfig, UpdateStats};
pub use truncation::{AutoTruncation, Truncation, TruncationReport};
