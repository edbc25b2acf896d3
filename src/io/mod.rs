//! The I/O layer: decoders (bytes → [`Event`](crate::event::Event)), sources (stdin, files, sockets), sinks for
//! output records, recording for replay, checkpoints on disk and the shutdown signal the
//! source loops listen to. Builds on [`crate::detect`] and below.

pub mod checkpoint;
pub mod format;
pub mod labels;
pub mod record;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod store;
