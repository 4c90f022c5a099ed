//! Small sources held in memory, searched without a database read.
//!
//! A source of a few chunks (a handbook, an FAQ page) is what most agents search, and on every
//! chat. Through the database that is three statements — the words' counts, the full-text
//! match, the vector hits' rows — each paying the full-text index's per-query set-up for a
//! handful of rows (~15 % of a chat's CPU). A source of at most
//! `knowledge.resident_chunks` chunks is instead read once and kept here with an inverted index
//! of its tokens; a search of it is an exact vector scan and a BM25 ranking in memory.
//!
//! **Freshness.** An entry is keyed by the source's stamp — `updated_at` (microseconds, moved by
//! every write of its chunks, on any node: see `touch_source`/`refresh_source`), chunk count and
//! model — read with the source row at each search. A source changed anywhere is read again at
//! its next search; nothing here is ever older than the row the search read.
//!
//! **Ranking.** The keyword side is the full-text index's own: unicode61 tokens (case and
//! diacritics folded, split at anything not a letter or digit; a code such as `SKU-1234` is the
//! phrase `sku 1234`) and BM25 (k1 = 1.2, b = 0.75, FTS5's IDF floor), with the source as the
//! corpus rather than every tenant's chunks — one tenant's documents no longer move another's
//! scores.
//!
//! **Memory.** Sources are evicted least recently used once the entries hold more than
//! [`BUDGET_CHUNKS`] chunks in all.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use hashlink::LruCache;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use uuid::Uuid;

use super::model::{Chunk, Source};
use crate::pipeline::text;

/// Chunks held in all entries at most (~5 KB each with a 384-dimensional vector).
pub const BUDGET_CHUNKS: usize = 16_384;
/// BM25 parameters, as FTS5's `bm25()` defaults.
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// What a resident copy was read for: a change to any of it is a change to the chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    updated_at: DateTime<Utc>,
    chunk_count: i64,
    model_id: Option<String>,
}

impl Stamp {
    fn of(source: &Source) -> Self {
        Self {
            updated_at: source.updated_at,
            chunk_count: source.chunk_count,
            model_id: source.model_id.clone(),
        }
    }
}

/// One source's chunks and their token index.
pub struct ResidentSource {
    stamp: Stamp,
    pub chunks: Vec<Chunk>,
    /// Each chunk's content words (as [`text::words`] gives them), for the share of the
    /// query's words it holds.
    words: Vec<HashSet<String>>,
    /// Each chunk's tokens, as ids into `vocabulary`.
    tokens: Vec<Vec<u32>>,
    vocabulary: HashMap<String, u32>,
    /// For each token id, where it occurs: (chunk, position), in order.
    postings: Vec<Vec<(u32, u32)>>,
    average_length: f32,
}

/// The tokens of a text as FTS5's `unicode61 remove_diacritics 2` tokenizer makes them:
/// letters and digits, case and diacritics folded; everything else separates.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_ascii() {
            if c.is_ascii_alphanumeric() {
                current.push(c.to_ascii_lowercase());
                continue;
            }
        } else if c.is_alphanumeric() {
            for d in c.nfd().filter(|d| !is_combining_mark(*d)) {
                current.extend(d.to_lowercase());
            }
            continue;
        } else if is_combining_mark(c) {
            // A mark on the letter before it: folded away, as remove_diacritics does.
            continue;
        }
        if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl ResidentSource {
    fn build(stamp: Stamp, chunks: Vec<Chunk>) -> Self {
        let mut vocabulary: HashMap<String, u32> = HashMap::new();
        let mut postings: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut all_tokens = Vec::with_capacity(chunks.len());
        let mut words = Vec::with_capacity(chunks.len());
        let mut total = 0usize;
        for (c, chunk) in chunks.iter().enumerate() {
            let ids: Vec<u32> = tokens(&chunk.content)
                .into_iter()
                .enumerate()
                .map(|(p, t)| {
                    let next = vocabulary.len() as u32;
                    let id = *vocabulary.entry(t).or_insert(next);
                    if id == next {
                        postings.push(Vec::new());
                    }
                    postings[id as usize].push((c as u32, p as u32));
                    id
                })
                .collect();
            total += ids.len();
            all_tokens.push(ids);
            words.push(text::words(&chunk.content));
        }
        let average_length = if chunks.is_empty() {
            1.0
        } else {
            (total as f32 / chunks.len() as f32).max(1.0)
        };
        Self {
            stamp,
            chunks,
            words,
            tokens: all_tokens,
            vocabulary,
            postings,
            average_length,
        }
    }

    /// The `k` chunks of `model_id` nearest to `query` (dot product of normalised vectors),
    /// best first: every chunk is scored.
    pub fn nearest(&self, query: &[f32], model_id: &str, k: usize) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> = self
            .chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.model_id == model_id && c.vector.len() == query.len())
            .map(|(i, c)| (i, cortex_embed::dot(&c.vector, query)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }

    /// How many times each chunk holds the phrase (consecutive tokens).
    fn phrase_counts(&self, phrase: &[String]) -> HashMap<u32, u32> {
        let mut counts = HashMap::new();
        let Some(ids) = phrase
            .iter()
            .map(|t| self.vocabulary.get(t).copied())
            .collect::<Option<Vec<u32>>>()
        else {
            return counts;
        };
        let Some(first) = ids.first() else {
            return counts;
        };
        for &(c, p) in &self.postings[*first as usize] {
            let chunk = &self.tokens[c as usize];
            let rest = &ids[1..];
            let at = p as usize + 1;
            if chunk.get(at..at + rest.len()) == Some(rest) {
                *counts.entry(c).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The chunks holding any of `phrases` (each the [`tokens`] of a word or code), ranked by
    /// BM25 over this source, best first, at most `limit`: (chunk index, score > 0).
    pub fn matching(&self, phrases: &[Vec<String>], limit: usize) -> Vec<(usize, f32)> {
        let n_total = self.chunks.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        for phrase in phrases {
            let counts = self.phrase_counts(phrase);
            if counts.is_empty() {
                continue;
            }
            let hits = counts.len() as f32;
            let idf = ((n_total - hits + 0.5) / (hits + 0.5)).ln();
            let idf = if idf <= 0.0 { 1e-6 } else { idf };
            for (c, tf) in counts {
                let tf = tf as f32;
                let length = self.tokens[c as usize].len() as f32;
                let norm = K1 * (1.0 - B + B * length / self.average_length);
                *scores.entry(c).or_insert(0.0) += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        let mut ranked: Vec<(usize, f32)> =
            scores.into_iter().map(|(c, s)| (c as usize, s)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit);
        ranked
    }

    /// Share of `query_words` that chunk `i` holds.
    pub fn keyword_share(&self, i: usize, query_words: &HashSet<String>) -> f32 {
        if query_words.is_empty() {
            return 0.0;
        }
        let found = query_words
            .iter()
            .filter(|w| self.words[i].contains(*w))
            .count();
        found as f32 / query_words.len() as f32
    }
}

/// The resident sources of this node.
pub struct Resident {
    /// Largest source held, in chunks (0: none is).
    max_chunks: usize,
    entries: Mutex<(LruCache<Uuid, Arc<ResidentSource>>, usize)>,
}

impl Resident {
    pub fn new(max_chunks: usize) -> Self {
        Self {
            max_chunks: max_chunks.min(BUDGET_CHUNKS),
            entries: Mutex::new((LruCache::new_unbounded(), 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (LruCache<Uuid, Arc<ResidentSource>>, usize)> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The chunks held for a source, if any (whether current or not).
    pub fn len(&self, source_id: Uuid) -> Option<usize> {
        self.lock().0.peek(&source_id).map(|r| r.chunks.len())
    }

    /// Whether the source is small enough to be held.
    pub fn holds(&self, source: &Source) -> bool {
        source.chunk_count > 0 && source.chunk_count as usize <= self.max_chunks
    }

    /// The held copy of the source, if it is current.
    pub fn get(&self, source: &Source) -> Option<Arc<ResidentSource>> {
        let mut entries = self.lock();
        let current = entries.0.get(&source.id)?;
        (current.stamp == Stamp::of(source)).then(|| current.clone())
    }

    /// Indexes `chunks`, read after `source`, and holds them when they agree with it (a write
    /// between the two reads leaves the copy unheld: the next search reads again).
    pub fn insert(&self, source: &Source, chunks: Vec<Chunk>) -> Arc<ResidentSource> {
        let agrees = chunks.len() as i64 == source.chunk_count;
        let resident = Arc::new(ResidentSource::build(Stamp::of(source), chunks));
        if agrees {
            let mut entries = self.lock();
            let (map, held) = &mut *entries;
            if let Some(old) = map.insert(source.id, resident.clone()) {
                *held -= old.chunks.len();
            }
            *held += resident.chunks.len();
            while *held > BUDGET_CHUNKS {
                match map.remove_lru() {
                    Some((_, old)) => *held -= old.chunks.len(),
                    None => break,
                }
            }
        }
        resident
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content: &str, vector: Vec<f32>) -> Chunk {
        Chunk {
            id: Uuid::new_v4(),
            source_id: Uuid::nil(),
            document_id: None,
            vec_id: 0,
            seq: 0,
            content: content.to_owned(),
            heading_path: vec![],
            page: None,
            locator: None,
            token_count: 0,
            model_id: "m".into(),
            dimension: vector.len(),
            vector,
        }
    }

    fn source(chunks: i64) -> Source {
        Source {
            id: Uuid::new_v4(),
            company_id: Uuid::nil(),
            name: "s".into(),
            kind: super::super::model::SourceKind::File,
            status: super::super::model::SourceStatus::Completed,
            embedding_model: Some("hash".into()),
            model_id: Some("m".into()),
            dimension: Some(2),
            chunk_count: chunks,
            document_count: 1,
            error: None,
            origin: None,
            agent_id: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn tokens_fold_case_and_diacritics_and_split_codes() {
        assert_eq!(
            tokens("Café SKU-1234, naïve_x"),
            ["cafe", "sku", "1234", "naive", "x"]
        );
        assert_eq!(tokens("مرحبا بكم"), ["مرحبا", "بكم"]);
        // Arabic short vowels are marks: folded away as FTS5 does.
        assert_eq!(tokens("مَرْحَبًا"), ["مرحبا"]);
    }

    #[test]
    fn phrases_match_consecutive_tokens_and_rank_by_bm25() {
        let s = ResidentSource::build(
            Stamp::of(&source(3)),
            vec![
                chunk("Order ORD-7731 is held at customs.", vec![1.0, 0.0]),
                chunk("Order 7731 ORD shipped; ord 12.", vec![0.0, 1.0]),
                chunk(
                    "Refunds refunds take five days; orders ship fast.",
                    vec![0.6, 0.8],
                ),
            ],
        );
        // The code is a phrase: only the chunk holding `ord 7731` in that order matches.
        let m = s.matching(&[tokens("ORD-7731")], 10);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, 0);
        assert!(m[0].1 > 0.0);
        // A word in one chunk of three outranks the same word where it is one of many.
        let m = s.matching(&[tokens("refunds"), tokens("customs")], 10);
        assert_eq!(m.iter().map(|(i, _)| *i).collect::<Vec<_>>().len(), 2);
        let m = s.matching(&[tokens("absent")], 10);
        assert!(m.is_empty());
        // Nearest: every chunk of the model, best first.
        let n = s.nearest(&[1.0, 0.0], "m", 2);
        assert_eq!(n.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 2]);
        assert!(s.nearest(&[1.0, 0.0], "other", 2).is_empty());
        let q = text::words("how long do refunds take");
        assert!(s.keyword_share(2, &q) > 0.0);
        assert_eq!(s.keyword_share(0, &q), 0.0);
    }

    #[test]
    fn a_copy_is_current_only_for_the_stamp_it_was_read_for() {
        let r = Resident::new(64);
        let mut s = source(1);
        assert!(r.get(&s).is_none());
        r.insert(&s, vec![chunk("a", vec![1.0, 0.0])]);
        assert!(r.get(&s).is_some());
        // Any write moves updated_at: the copy is stale.
        s.updated_at += chrono::Duration::microseconds(1);
        assert!(r.get(&s).is_none());
        // Chunks that disagree with the row (a write between the reads) are not held.
        let t = source(2);
        r.insert(&t, vec![chunk("a", vec![1.0, 0.0])]);
        assert!(r.get(&t).is_none());
        assert!(!Resident::new(0).holds(&t));
        assert!(r.holds(&t));
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used() {
        let r = Resident::new(BUDGET_CHUNKS);
        let big = source(BUDGET_CHUNKS as i64 / 2 + 1);
        let chunks = |n: i64| (0..n).map(|_| chunk("x", vec![1.0])).collect::<Vec<_>>();
        r.insert(&big, chunks(big.chunk_count));
        let other = source(BUDGET_CHUNKS as i64 / 2 + 1);
        r.insert(&other, chunks(other.chunk_count));
        assert!(r.get(&big).is_none());
        assert!(r.get(&other).is_some());
        assert!(r.lock().1 <= BUDGET_CHUNKS);
    }
}
