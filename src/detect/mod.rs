//! The detection layer: online normalization, anomaly scores and the per-series pipeline that
//! turns events into output records. Builds on [`crate::train`] and [`crate::nn`].

pub mod anomaly;
pub mod forecast;
pub mod norm;
pub mod pipeline;
pub mod trace;
