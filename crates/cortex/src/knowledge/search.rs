//! Hybrid retrieval: vector similarity (embedded index or pgvector) plus keyword scoring, so that
//! exact terms such as order numbers and product codes are found even when the embedding of the
//! question does not bring their chunk close.

use std::collections::HashMap;
use std::sync::Arc;

use cortex_embed::Embedder;
use uuid::Uuid;

use super::model::{Chunk, Source};
use super::{Knowledge, KnowledgeError, collection_name, resident};
use crate::pipeline::text;
use crate::store::{COMMON_WORD_ROWS, KnowledgeStore, SqlStore};

/// Weight of the vector similarity in the final score; the keyword score has the rest.
const VECTOR_WEIGHT: f32 = 0.7;
/// Chunks holding an exact code score above this, every other chunk at most this.
const EXACT_FLOOR: f32 = 0.9;
/// Most exact terms looked up by keyword per query.
const MAX_TERMS: usize = 6;
/// Most words of a query given to the full-text index.
const MAX_WORDS: usize = 12;

/// One retrieved chunk with its scores.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub chunk_id: Uuid,
    pub source_id: Uuid,
    pub source_name: String,
    pub document_id: Option<Uuid>,
    pub content: String,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub locator: Option<String>,
    pub model_id: String,
    /// The combined score used for ranking (0–1).
    pub score: f32,
    /// Cosine similarity of the chunk's vector and the query's (same model).
    pub vector_score: f32,
    /// Share of the query's words found in the chunk; 1 when an exact code matched.
    pub keyword_score: f32,
}

/// The terms of a query worth an exact look-up: words of three characters or more that hold a
/// digit or an inner `-`/`_` (`ORD-1234`, `SKU_77`, `x200`), or are written in capitals.
pub fn keyword_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for raw in query.split(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | '?' | '!' | '(' | ')' | '"' | '\'')
    }) {
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
        if word.chars().count() < 3 {
            continue;
        }
        let has_digit = word.chars().any(|c| c.is_ascii_digit());
        let inner_joiner = word.contains('-') || word.contains('_');
        let shouted = word.chars().all(|c| c.is_uppercase() || c.is_ascii_digit());
        if (has_digit || inner_joiner || shouted)
            && !terms.iter().any(|t| t.eq_ignore_ascii_case(word))
        {
            terms.push(word.to_owned());
        }
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    terms
}

/// Whether the text holds one of the exact terms (case-insensitive).
fn contains_term(terms: &[String], content: &str) -> bool {
    if terms.is_empty() {
        return false;
    }
    let lower = content.to_lowercase();
    terms.iter().any(|t| lower.contains(&t.to_lowercase()))
}

/// Share of the query's content words found in the text.
fn keyword_score(query_words: &std::collections::HashSet<String>, content: &str) -> f32 {
    if query_words.is_empty() {
        return 0.0;
    }
    // The content's words are looked up in the query's as they come (no set of the content's
    // words is built: this runs for every candidate chunk of every search).
    let normalized = text::normalize(content);
    let mut found: Vec<&str> = Vec::new();
    for w in normalized.split(' ').filter_map(text::content_word) {
        if query_words.contains(w) && !found.contains(&w) {
            found.push(w);
        }
    }
    found.len() as f32 / query_words.len() as f32
}

/// A candidate's final score and keyword score from its vector score; `keyword` (the keyword
/// score when no exact code matched) is computed only when needed.
fn fuse(
    terms: &[String],
    content: &str,
    vector_score: f32,
    keyword: impl FnOnce() -> f32,
) -> (f32, f32) {
    let exact = contains_term(terms, content);
    let keyword = if exact { 1.0 } else { keyword() };
    let fused = VECTOR_WEIGHT * vector_score.max(0.0) + (1.0 - VECTOR_WEIGHT) * keyword;
    // An exact code (an order number, a SKU) ranks above anything without it.
    let score = if exact {
        EXACT_FLOOR + (1.0 - EXACT_FLOOR) * fused
    } else {
        fused.min(EXACT_FLOOR)
    };
    (score, keyword)
}

fn hit(source: &Source, chunk: Chunk, score: f32, vector_score: f32, keyword: f32) -> SearchHit {
    SearchHit {
        chunk_id: chunk.id,
        source_id: source.id,
        source_name: source.name.clone(),
        document_id: chunk.document_id,
        content: chunk.content,
        heading_path: chunk.heading_path,
        page: chunk.page,
        locator: chunk.locator,
        model_id: chunk.model_id,
        score,
        vector_score,
        keyword_score: keyword,
    }
}

impl Knowledge {
    /// The `top_k` best chunks of `sources` for `query`. Each source is searched with the model
    /// that embedded it; a source whose model is no longer configured is skipped (logged).
    pub async fn search(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        sources: &[Source],
        query: &str,
        top_k: usize,
    ) -> Result<Vec<SearchHit>, KnowledgeError> {
        if top_k == 0 || query.trim().is_empty() {
            return Ok(Vec::new());
        }
        let candidates_per_source = (top_k * 4).max(20);
        let terms = keyword_terms(query);
        let query_words = text::words(query);
        // Counted once for all sources: how common a word is does not depend on the source.
        let searchable = |s: &&Source| s.company_id == company_id && s.chunk_count > 0;
        // The keyword side searches the words found in few chunks (a common word is left to
        // the vector side) and the exact terms found in any: a term in no chunk cannot match.
        let words = text::search_words(query, MAX_WORDS);
        let (search_words, live_terms) = if sources
            .iter()
            .any(|s| searchable(&s) && !self.resident.holds(s))
        {
            let asked: Vec<String> = words.iter().chain(&terms).cloned().collect();
            let counts = store.term_counts(&asked).await?;
            let (word_counts, term_counts) = counts.split_at(words.len().min(counts.len()));
            let rare = words
                .iter()
                .zip(word_counts)
                .filter(|(_, n)| (1..=COMMON_WORD_ROWS).contains(*n))
                .map(|(w, _)| w.clone())
                .collect();
            let found = terms
                .iter()
                .zip(term_counts)
                .filter(|(_, n)| **n > 0)
                .map(|(t, _)| t.clone())
                .collect();
            (rare, found)
        } else {
            (Vec::new(), Vec::new())
        };
        let keyword_side = !search_words.is_empty() || !live_terms.is_empty();
        // A resident source ranks every word and code of the query itself (its BM25 over the
        // source weighs common words down), so it needs no counts. Tokenised once for all.
        let resident_phrases: Vec<Vec<String>> = if sources
            .iter()
            .any(|s| searchable(&s) && self.resident.holds(s))
        {
            terms
                .iter()
                .chain(&words)
                .map(|p| resident::tokens(p))
                .collect()
        } else {
            Vec::new()
        };
        let mut query_vectors: HashMap<String, Vec<f32>> = HashMap::new();
        let mut hits: HashMap<Uuid, SearchHit> = HashMap::new();
        for source in sources.iter().filter(searchable) {
            let (Some(model_name), Some(model_id)) = (&source.embedding_model, &source.model_id)
            else {
                continue;
            };
            let embedder: Arc<dyn Embedder> = match self.registry.resolve(model_name) {
                Ok(e) if e.model_id() == model_id => e,
                _ => {
                    tracing::warn!(source_id = %source.id, model = %model_id,
                        "source embedded with a model that is not configured any more: skipped (reembed it)");
                    continue;
                }
            };
            let q = match query_vectors.get(model_id) {
                Some(v) => v.clone(),
                None => {
                    let v = embedder.embed_query(query).await.map_err(|e| {
                        KnowledgeError::Failed(format!("embedding the query with {model_id}: {e}"))
                    })?;
                    query_vectors.insert(model_id.clone(), v.clone());
                    v
                }
            };
            if self.resident.holds(source) {
                let resident = match self.resident.get(source) {
                    Some(r) => r,
                    None => {
                        let chunks = store.source_chunks(company_id, source.id).await?;
                        self.resident.insert(source, chunks)
                    }
                };
                // (vector score, keyword relevance scaled to the best match) by chunk.
                let mut candidates: HashMap<usize, (f32, f32)> = resident
                    .nearest(&q, model_id, candidates_per_source)
                    .into_iter()
                    .map(|(i, v)| (i, (v, 0.0)))
                    .collect();
                let matched = resident.matching(&resident_phrases, candidates_per_source);
                let best = matched.iter().map(|(_, r)| *r).fold(0.0f32, f32::max);
                for (i, rank) in matched {
                    let chunk = &resident.chunks[i];
                    let entry = candidates
                        .entry(i)
                        .or_insert_with(|| (cortex_embed::dot(&chunk.vector, &q), 0.0));
                    entry.1 = if best > 0.0 { rank / best } else { 0.0 };
                }
                for (i, (vector_score, relevance)) in candidates {
                    let chunk = &resident.chunks[i];
                    if chunk.model_id != *model_id || hits.contains_key(&chunk.id) {
                        continue;
                    }
                    let (score, keyword) = fuse(&terms, &chunk.content, vector_score, || {
                        relevance.max(resident.keyword_share(i, &query_words))
                    });
                    hits.insert(
                        chunk.id,
                        hit(source, chunk.clone(), score, vector_score, keyword),
                    );
                }
                continue;
            }
            let mut found: Vec<(Chunk, f32)> = match &self.collections {
                None => {
                    store
                        .pgvector_search(company_id, source, &q, candidates_per_source as i64)
                        .await?
                }
                Some(_) => {
                    self.embedded_search(store, company_id, source, &q, candidates_per_source)
                        .await?
                }
            };
            // Keyword candidates from the database's full-text index, with its relevance scaled
            // to the best of them (0–1).
            let matched = if keyword_side {
                store
                    .chunks_matching(
                        company_id,
                        source.id,
                        &search_words,
                        &live_terms,
                        candidates_per_source as i64,
                    )
                    .await?
            } else {
                Vec::new()
            };
            let best = matched.iter().map(|(_, r)| *r).fold(0.0f32, f32::max);
            let mut relevance: HashMap<Uuid, f32> = HashMap::new();
            for (chunk, rank) in matched {
                relevance.insert(chunk.id, if best > 0.0 { rank / best } else { 0.0 });
                let score = cortex_embed::dot(&chunk.vector, &q);
                found.push((chunk, score));
            }
            for (chunk, vector_score) in found {
                if chunk.model_id != *model_id || hits.contains_key(&chunk.id) {
                    continue;
                }
                let (score, keyword) = fuse(&terms, &chunk.content, vector_score, || {
                    relevance
                        .get(&chunk.id)
                        .copied()
                        .unwrap_or(0.0)
                        .max(keyword_score(&query_words, &chunk.content))
                });
                hits.insert(chunk.id, hit(source, chunk, score, vector_score, keyword));
            }
        }
        let mut hits: Vec<SearchHit> = hits.into_values().collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_id.cmp(&b.chunk_id))
        });
        hits.truncate(top_k);
        Ok(hits)
    }

    /// Nearest chunks from the source's embedded index, rebuilt from the rows first when it is
    /// missing, was not saved after its last change, or disagrees with the source.
    async fn embedded_search(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source: &Source,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<(Chunk, f32)>, KnowledgeError> {
        let Some(collections) = &self.collections else {
            return Ok(Vec::new());
        };
        let name = collection_name(company_id, source.id);
        let model_id = source.model_id.as_deref().unwrap_or_default();
        let current = collections.get(&name).ok().flatten().filter(|c| {
            !c.needs_rebuild()
                && c.info().model_id == model_id
                && c.len() as i64 == source.chunk_count
        });
        let collection = match current {
            Some(c) => c,
            None => {
                let lock = self.source_lock(source.id);
                let _writing = lock.lock().await;
                let chunks = store.source_chunks(company_id, source.id).await?;
                let dimension = chunks.first().map_or(query.len(), |c| c.dimension);
                tracing::info!(source_id = %source.id, chunks = chunks.len(), "rebuilding the vector index from the database");
                collections
                    .rebuild(
                        &name,
                        model_id,
                        dimension,
                        chunks
                            .iter()
                            .filter(|c| c.model_id == model_id)
                            .map(|c| (c.vec_id, c.vector.as_slice())),
                    )
                    .map_err(|e| {
                        KnowledgeError::Failed(format!("rebuilding the vector index: {e}"))
                    })?
            }
        };
        let nearest = collection
            .search(query, k)
            .map_err(|e| KnowledgeError::Failed(format!("vector search: {e}")))?;
        let scores: HashMap<u64, f32> = nearest.iter().copied().collect();
        let ids: Vec<u64> = nearest.iter().map(|(id, _)| *id).collect();
        let chunks = store.chunks_by_vec_ids(company_id, source.id, &ids).await?;
        Ok(chunks
            .into_iter()
            .map(|c| {
                let s = scores.get(&c.vec_id).copied().unwrap_or(0.0);
                (c, s)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_capitals_are_exact_terms() {
        assert_eq!(
            keyword_terms("Where is my order ORD-1234 for SKU_77?"),
            vec!["ORD-1234", "SKU_77"]
        );
        assert_eq!(
            keyword_terms("what about the NASA x200 plan"),
            vec!["NASA", "x200"]
        );
        assert!(keyword_terms("how do refunds work").is_empty());
    }

    #[test]
    fn keyword_score_prefers_exact_terms() {
        let q = text::words("status of ORD-1234");
        let terms = keyword_terms("status of ORD-1234");
        assert!(contains_term(&terms, "Order ord-1234 shipped"));
        assert!(!contains_term(&terms, "Order 1234 shipped"));
        assert!(keyword_score(&q, "the status page") > 0.0);
        assert_eq!(keyword_score(&q, "nothing here"), 0.0);
        // The share is of the query's words the content holds, each counted once, as the
        // content's word set would give it: a stop word of the content never matches, even
        // one that a query word folds to ("ands" -> "and").
        let q = text::words("refunds ands Orders");
        for content in [
            "Refunds and refund orders",
            "and and",
            "ORDERS, orders; refunds!",
        ] {
            let set = text::words(content);
            let expected = q.iter().filter(|w| set.contains(*w)).count() as f32 / q.len() as f32;
            assert_eq!(keyword_score(&q, content), expected, "{content}");
        }
    }
}
