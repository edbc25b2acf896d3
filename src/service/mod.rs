//! The service layer: the streaming runtime (a source, the pipeline on its own thread, a
//! sink) and the async stream adapter for embedding. Builds on [`crate::io`] and below.

pub mod keyed;
#[cfg(feature = "monitor")]
pub mod metrics;
pub mod run;
#[cfg(feature = "nats")]
pub mod scale;
pub mod stream;
