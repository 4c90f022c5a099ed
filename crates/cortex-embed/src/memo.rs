//! [`Memoized`]: an embedder that remembers the vectors of recent queries.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_trait::async_trait;
use hashlink::LruCache;

use crate::{EmbedError, Embedder};

/// Queries remembered by default (a MiniLM vector is 1.5 KiB: 1,024 of them 1.5 MiB).
pub const DEFAULT_MEMO_QUERIES: usize = 1024;

/// Wraps an embedder so that a query embedded once is not embedded again while it is among
/// the most recently used: one chat message is a query of the answer cache, the customer's
/// memory and the knowledge base, and of the cache's store after the model answered — four
/// forward passes of a local model, or four HTTP calls, for the same vector. Documents
/// ([`Embedder::embed`]) pass through: they are embedded once each anyway.
#[derive(Debug)]
pub struct Memoized<E> {
    inner: E,
    memo: Mutex<LruCache<String, Vec<f32>>>,
}

impl<E: Embedder> Memoized<E> {
    /// Remembers up to `capacity` queries (at least one).
    pub fn new(inner: E, capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner,
            memo: Mutex::new(LruCache::new(capacity.get())),
        }
    }

    /// The wrapped embedder.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    fn remembered(&self, query: &str) -> Option<Vec<f32>> {
        self.memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(query)
            .cloned()
    }

    fn remember(&self, query: &str, vector: &[f32]) {
        self.memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(query.to_owned(), vector.to_vec());
    }
}

#[async_trait]
impl<E: Embedder> Embedder for Memoized<E> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.inner.embed(texts).await
    }

    async fn embed_queries(&self, queries: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out: Vec<Option<Vec<f32>>> = queries.iter().map(|q| self.remembered(q)).collect();
        let missing: Vec<String> = queries
            .iter()
            .zip(&out)
            .filter(|(_, v)| v.is_none())
            .map(|(q, _)| q.clone())
            .collect();
        if !missing.is_empty() {
            let vectors = self.inner.embed_queries(&missing).await?;
            if vectors.len() != missing.len() {
                return Err(EmbedError::InvalidResponse(format!(
                    "{} vectors for {} queries",
                    vectors.len(),
                    missing.len()
                )));
            }
            let mut fresh = missing.iter().zip(vectors);
            for slot in out.iter_mut().filter(|v| v.is_none()) {
                if let Some((query, vector)) = fresh.next() {
                    self.remember(query, &vector);
                    *slot = Some(vector);
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::HashEmbedder;

    /// Counts the texts its inner embedder was asked for.
    #[derive(Debug, Default)]
    struct Counting {
        inner: HashEmbedder,
        texts: AtomicUsize,
    }

    #[async_trait]
    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            self.inner.model_id()
        }
        fn dimension(&self) -> usize {
            self.inner.dimension()
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            self.inner.embed(texts).await
        }
    }

    #[tokio::test]
    async fn a_query_is_embedded_once_while_remembered() {
        let memo = Memoized::new(Counting::default(), 2);
        let direct = HashEmbedder::default();
        let a = memo.embed_query("opening hours").await.unwrap();
        let again = memo.embed_query("opening hours").await.unwrap();
        assert_eq!(a, again);
        assert_eq!(a, direct.embed_query("opening hours").await.unwrap());
        assert_eq!(memo.inner().texts.load(Ordering::SeqCst), 1);

        // A batch embeds only what it does not remember, and keeps the order.
        let qs = ["refund policy", "opening hours", "delivery time"].map(String::from);
        let batch = memo.embed_queries(&qs).await.unwrap();
        assert_eq!(memo.inner().texts.load(Ordering::SeqCst), 3);
        for (q, v) in qs.iter().zip(&batch) {
            assert_eq!(v, &direct.embed_query(q).await.unwrap(), "{q}");
        }

        // The least recently used query is forgotten past the capacity (2).
        memo.embed_query("opening hours").await.unwrap();
        assert_eq!(memo.inner().texts.load(Ordering::SeqCst), 4);

        // Documents are never remembered.
        memo.embed(&["delivery time".to_owned()]).await.unwrap();
        assert_eq!(memo.inner().texts.load(Ordering::SeqCst), 5);
    }
}
