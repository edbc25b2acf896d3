//! The I/O layer: decoders (bytes → [`Event`](crate::event::Event)), sources (stdin, files, sockets), sinks for
//! output records, capturing a stream for replay ([`capture`]), checkpoints on disk and the shutdown signal the
//! source loops listen to. Builds on [`crate::detect`] and below.

pub mod capture;
pub mod checkpoint;
pub mod format;
pub mod labels;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod store;
