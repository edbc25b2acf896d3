//! Errors of the engine: configuration and shape problems, detected once, up front.

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
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            field,
            reason: reason.into(),
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
