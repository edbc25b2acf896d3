//! Tools over recorded data: the `T`/`k` sweep, SVG plots (`plot`, with the `plot` feature)
//! and the NAB runner. The top layer: nothing below imports it.

pub mod nab;
#[cfg(feature = "plot")]
pub mod plot;
pub mod sweep;
