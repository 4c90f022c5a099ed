//! The error type of every conversion entry point.

use serde::{Deserialize, Serialize};

/// Why a document could not be converted.
///
/// Every entry point of this crate returns this type; panics of the underlying parsers are
/// caught and reported as [`IngestError::Panicked`], a worker process that died is reported as
/// [`IngestError::Crashed`]. The type is serialisable so that the isolation worker can send it
/// to its parent unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum IngestError {
    /// The format is not recognised or not supported.
    #[error("unsupported document: {reason}")]
    Unsupported {
        /// What was not recognised.
        reason: String,
    },
    /// The input, an archive member, the sheet or the converted output exceeds a [`crate::Limits`] bound.
    #[error("document too large: {what} exceeds the limit of {limit}")]
    TooLarge {
        /// Which quantity exceeded its bound (for example "input bytes").
        what: String,
        /// The bound in force.
        limit: u64,
    },
    /// An office archive was refused by the zip-bomb guard (entry count, decompressed size or ratio).
    #[error("archive refused by the zip-bomb guard: {reason}")]
    ZipBomb {
        /// Which guard tripped.
        reason: String,
    },
    /// The conversion did not finish within the wall-clock bound; the worker was killed.
    #[error("conversion timed out after {after_ms} ms")]
    Timeout {
        /// The bound that expired, in milliseconds.
        after_ms: u64,
    },
    /// The isolated worker process died (signal, memory or CPU limit, abort) without an answer.
    #[error("conversion worker crashed: {reason}")]
    Crashed {
        /// Exit status or signal and the last line the worker wrote to stderr.
        reason: String,
    },
    /// A parser panicked; the panic was contained.
    #[error("document parser panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The document is malformed (truncated, corrupt, not what its name says).
    #[error("could not parse document: {reason}")]
    Parse {
        /// The parser's explanation.
        reason: String,
    },
    /// The document parsed but holds no extractable text (for example a scanned PDF).
    #[error("document contains no extractable text: {reason}")]
    NoText {
        /// What was tried.
        reason: String,
    },
    /// The isolation worker could not be started or answered something unreadable.
    #[error("conversion worker failed: {reason}")]
    Worker {
        /// What went wrong.
        reason: String,
    },
}

impl IngestError {
    pub(crate) fn parse(reason: impl std::fmt::Display) -> Self {
        Self::Parse {
            reason: reason.to_string(),
        }
    }

    pub(crate) fn too_large(what: &str, limit: u64) -> Self {
        Self::TooLarge {
            what: what.to_string(),
            limit,
        }
    }

    pub(crate) fn zip_bomb(reason: impl std::fmt::Display) -> Self {
        Self::ZipBomb {
            reason: reason.to_string(),
        }
    }

    /// A stable, machine-readable name of the variant (`"zip_bomb"`, `"timeout"`, …), suitable
    /// for metrics labels and API error codes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unsupported { .. } => "unsupported",
            Self::TooLarge { .. } => "too_large",
            Self::ZipBomb { .. } => "zip_bomb",
            Self::Timeout { .. } => "timeout",
            Self::Crashed { .. } => "crashed",
            Self::Panicked { .. } => "panicked",
            Self::Parse { .. } => "parse",
            Self::NoText { .. } => "no_text",
            Self::Worker { .. } => "worker",
        }
    }
}
