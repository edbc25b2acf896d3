//! The training layer: the last-`T` window, TBPTT(k1, k2) updates, adaptive truncation and the
//! online learner with its background trainer thread. Builds on [`crate::nn`] only.

mod background;
pub mod learner;
pub mod ring;
pub mod trainer;
pub mod truncation;
