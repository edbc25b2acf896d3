//! # tbptt
//!
//! A streaming online learner: a recurrent network (Elman, GRU or LSTM, written with nalgebra)
//! that predicts every event of a stream at once and learns from it by truncated
//! backpropagation through time, TBPTT(k1, k2) in Williams & Peng's terms.
#![deny(missing_docs)]

pub mod error;
pub mod loss;
pub mod optim;
pub mod scalar;

pub use error::{Error, Result};
pub use scalar::Float;
pub mod cell;
pub mod event;
pub mod format;
pub(crate) mod linalg;
pub mod model;

pub use cell::CellKind;
pub use loss::Loss;
pub use model::{Model, ModelConfig, ParamName, StepWorkspace, Window};
pub mod learner;
pub mod ring;
pub mod tbptt;

pub use learner::{Learner, LearnerConfig, Prediction, Targets};
pub use optim::{Optimizer, OptimizerConfig};
pub use tbptt::{full_bptt, LossSteps, Trainer, TrainerConfig, UpdateStats};
pub mod anomaly;
pub mod norm;
pub mod pipeline;
pub mod run;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod stream;
