//! Embeddings and vector search for Cortex.
//!
//! This leaf crate turns text into vectors and finds the nearest ones again:
//!
//! * [`Embedder`] is the object-safe async trait every embedding model implements. Each
//!   embedder reports a stable [`Embedder::model_id`] and a [`Embedder::dimension`]; callers
//!   store both next to every vector so that search never mixes models.
//! * [`HashEmbedder`] (`hash`) is the built-in lexical embedder: feature hashing of word
//!   unigrams and character n-grams. It needs no files and is the zero-configuration default.
//! * [`LocalEmbedder`] (`local`) runs a BERT sentence-transformer (such as all-MiniLM-L6-v2)
//!   in-process with candle, from a directory holding `config.json`, `model.safetensors` and
//!   `tokenizer.json`.
//! * [`OpenAiEmbedder`] (`openai`) calls an OpenAI-compatible `/embeddings` endpoint (OpenAI,
//!   TEI, Ollama, vLLM, …) and [`CohereEmbedder`] (`cohere`) calls Cohere's `/v2/embed`.
//! * [`EmbedderRegistry`] resolves request names (`bge-m3`, `openai`, `local`, `hash`, …)
//!   through [`EmbeddingsConfig`]; an unknown name is an [`UnknownEmbedder`] error naming the
//!   configured ones.
//! * [`VectorIndex`] is an in-process nearest-neighbour index (exact below a threshold, HNSW
//!   above it) that persists to disk and can be rebuilt from `(id, vector)` rows, and
//!   [`Collections`] manages one index per named collection under a directory, refusing to mix
//!   models or dimensions.
//!
//! Every vector an embedder returns is L2-normalised, so cosine similarity is a dot product.

mod collections;
mod error;
mod hash;
mod index;
mod local;
mod memo;
mod registry;
mod remote;
mod vector;

pub use collections::{Collection, CollectionInfo, Collections};
pub use error::{EmbedError, IndexError, UnknownEmbedder};
pub use hash::{DEFAULT_HASH_DIMENSION, HashEmbedder};
pub use index::{GraphPrecision, IndexOptions, VectorIndex};
pub use local::{LocalEmbedder, LocalOptions};
pub use memo::{DEFAULT_MEMO_QUERIES, Memoized};
pub use registry::{
    CohereConfig, DOCUMENTS_DEFAULT_NAME, EmbedderConfig, EmbedderRegistry, EmbeddingsConfig,
    HASH_NAME, HashConfig, LocalConfig, OpenAiConfig,
};
pub use remote::{CohereEmbedder, OpenAiEmbedder};
pub use vector::{dot, l2_normalize};

use async_trait::async_trait;

/// An embedding model: turns texts into L2-normalised vectors of a fixed dimension.
///
/// The trait is object safe; the registry hands out `Arc<dyn Embedder>`.
#[async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug {
    /// A stable identifier of the model that produced the vectors, recorded next to every
    /// stored vector, e.g. `hash-384`, `local:all-MiniLM-L6-v2`,
    /// `openai:text-embedding-3-small`, `cohere:embed-english-v3.0`.
    ///
    /// Two embedders with the same id produce comparable vectors; vectors with different ids
    /// must never be compared.
    fn model_id(&self) -> &str;

    /// Number of components of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// Embeds documents (passages to be stored and searched).
    ///
    /// Returns one L2-normalised vector of length [`Embedder::dimension`] per input text, in
    /// input order. An empty input returns an empty output without any work. A text with no
    /// content at all may yield the zero vector (the hash embedder does so for empty text).
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// Embeds search queries (texts compared with documents, or with other queries).
    ///
    /// Models that distinguish queries from documents (Cohere's `input_type`) override this;
    /// the default embeds queries like documents.
    async fn embed_queries(&self, queries: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed(queries).await
    }

    /// Embeds one search query (see [`Embedder::embed_queries`]).
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed_queries(&[query.to_owned()]).await?;
        match vectors.pop() {
            Some(vector) if vectors.is_empty() => Ok(vector),
            _ => Err(EmbedError::InvalidResponse(
                "expected exactly one vector for one query".to_owned(),
            )),
        }
    }
}
