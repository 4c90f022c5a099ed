//! Error types.

use std::path::PathBuf;

/// Why an embedding could not be produced, or an embedder could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The embedder's configuration is invalid (missing field, bad value, unknown alias target).
    #[error("invalid embedder configuration: {0}")]
    Config(String),
    /// A local model directory could not be loaded.
    #[error("cannot load model from {path}: {message}")]
    ModelLoad {
        /// The model directory or file that failed.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Tokenisation or the forward pass of a local model failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A remote provider answered with a non-success HTTP status.
    #[error("embedding provider answered HTTP {status}: {body}")]
    Provider {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (truncated).
        body: String,
    },
    /// A remote provider could not be reached or timed out.
    #[error("embedding request failed: {0}")]
    Transport(String),
    /// A provider's answer could not be understood (bad JSON, wrong count, missing vectors).
    #[error("invalid embedding response: {0}")]
    InvalidResponse(String),
    /// A vector had another dimension than the embedder declares.
    #[error("embedding dimension mismatch: expected {expected}, got {actual}")]
    DimensionMismatch {
        /// The declared dimension.
        expected: usize,
        /// The dimension received.
        actual: usize,
    },
}

/// A request named an embedding model that is not configured.
///
/// The API answers `400` with this message, which lists every configured name (models and
/// aliases), sorted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown embedding model '{name}'; configured: {}", configured.join(", "))]
pub struct UnknownEmbedder {
    /// The name that was asked for.
    pub name: String,
    /// Every configured name (models and aliases), sorted.
    pub configured: Vec<String>,
}

/// Errors of the vector index and the collection manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// A vector's length differs from the index's dimension.
    #[error("vector dimension mismatch: index has {expected}, got {actual}")]
    DimensionMismatch {
        /// The index's dimension.
        expected: usize,
        /// The length of the vector given.
        actual: usize,
    },
    /// A collection exists with another embedding model than the one asked for.
    #[error("collection '{collection}' holds vectors of model '{existing}', not '{requested}'")]
    ModelMismatch {
        /// The collection name.
        collection: String,
        /// The model recorded for the collection.
        existing: String,
        /// The model asked for.
        requested: String,
    },
    /// A vector contains NaN or infinity, or the dimension is zero.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// Reading or writing index files failed.
    #[error("index i/o error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An index file is not a valid index (wrong magic, truncated, inconsistent).
    #[error("corrupt index file {path}: {message}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The HNSW backend (usearch) reported an error.
    #[error("ann backend error: {0}")]
    Backend(String),
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
