//! The network layer: scalar types, dense kernels, recurrent cells, the model, losses and
//! optimizers. Imports nothing from the layers above.

pub mod cell;
pub(crate) mod linalg;
pub mod loss;
pub mod model;
pub mod optim;
pub mod scalar;
pub(crate) mod simd;

pub use simd::{kernel_name, set_kernel};
