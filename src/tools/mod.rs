//! Tools over recorded data: the `T`/`k` sweep, SVG plots and the NAB runner. The top layer:
//! nothing below imports it.

pub mod nab;
pub mod plot;
pub mod sweep;
