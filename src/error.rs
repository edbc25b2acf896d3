//! Errors of the engine: configuration and shape problems, detected once, up front, and the
//! failures of the background trainer thread. Errors of other concerns have their own enums
//! beside their code (`ParseError`, `SourceError`, `CheckpointError`, `RunError`, `NabError`,
//! `ReadError`, `PlotError`).

use std::sync::Arc;

/// The result type of fallible tbptt operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Every variant names the offending setting or value.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The setting at fault, e.g. `"k"`.
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A saved state (a checkpoint's or a store entry's) is inconsistent: a length, count or
    /// value that a running learner could not have produced, or settings that differ from
    /// the ones it is restored with.
    #[error("invalid state: {part}: {reason}")]
    State {
        /// The part of the state at fault, e.g. `"checkpoint.ring"`.
        part: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A vector or matrix has the wrong length or shape.
    #[error("shape mismatch in {op}: expected {expected}, got {got}")]
    Shape {
        /// The operation that checked the shape.
        op: &'static str,
        /// The expected length or shape.
        expected: String,
        /// The length or shape given.
        got: String,
    },
    /// An input value is NaN or infinite.
    #[error("non-finite value in {op} at position {index}")]
    NonFinite {
        /// The operation that rejected it.
        op: &'static str,
        /// Index of the first non-finite component.
        index: usize,
    },
    /// The background trainer thread could not be started.
    #[error("cannot start the trainer thread: {0}")]
    Spawn(#[source] SharedIoError),
    /// The background trainer thread panicked; the updates since its last published weights
    /// are lost.
    #[error("the trainer thread panicked")]
    TrainerPanicked,
}

/// An OS error shared behind an [`Arc`], so that [`Error`] stays `Clone`; two are equal when
/// their kind and message are.
#[derive(Debug, Clone)]
pub struct SharedIoError(pub Arc<std::io::Error>);

impl SharedIoError {
    /// The underlying error.
    pub fn get(&self) -> &std::io::Error {
        &self.0
    }
}

impl From<std::io::Error> for SharedIoError {
    fn from(e: std::io::Error) -> Self {
        SharedIoError(Arc::new(e))
    }
}

impl PartialEq for SharedIoError {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl std::fmt::Display for SharedIoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::State`].
    pub(crate) fn state(part: &'static str, reason: impl Into<String>) -> Self {
        Error::State {
            part,
            reason: reason.into(),
        }
    }

    /// The same problem, reported as a problem of `part` of a saved state: a validator's
    /// [`Error::State`] gets the caller's name for the part; other errors are unchanged.
    pub(crate) fn in_part(self, part: &'static str) -> Self {
        match self {
            Error::State { reason, .. } => Error::State { part, reason },
            other => other,
        }
    }

    /// Shorthand for [`Error::Shape`] with lengths.
    pub(crate) fn len(op: &'static str, expected: usize, got: usize) -> Self {
        Error::Shape {
            op,
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
}
