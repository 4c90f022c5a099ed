//! The built-in lexical embedder: signed feature hashing of words and character n-grams.

use async_trait::async_trait;

use crate::vector::l2_normalize;
use crate::{EmbedError, Embedder};

/// The default dimension of [`HashEmbedder`] (the same as all-MiniLM-L6-v2).
pub const DEFAULT_HASH_DIMENSION: usize = 384;

/// Inputs larger than this (in bytes, summed) are hashed on the blocking pool.
const BLOCKING_THRESHOLD_BYTES: usize = 64 * 1024;

/// Weight of a word unigram.
const WORD_WEIGHT: f32 = 1.0;
/// Weight of a stop word unigram (stop words get no n-grams).
const STOPWORD_WEIGHT: f32 = 0.2;
/// Weight of a compound token such as `ord-1234` as a whole.
const COMPOUND_WEIGHT: f32 = 1.5;
/// Total (L2) weight of the character n-grams of one token.
const NGRAM_BLOCK_WEIGHT: f32 = 0.8;
/// Character n-gram lengths.
const NGRAM_MIN: usize = 3;
const NGRAM_MAX: usize = 4;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "do", "does", "for", "from",
    "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on", "or",
    "our", "so", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to",
    "was", "we", "were", "what", "when", "where", "which", "who", "why", "will", "with", "you",
    "your",
];

/// The built-in embedder (`hash`): no files, no network, deterministic across platforms and
/// releases.
///
/// Text is lower-cased and split into words (runs of letters and digits). Words joined by
/// `-`, `_`, `.`, `/`, `#` or `:` also form a compound token (so exact codes such as
/// `ORD-1234` or `SKU-77X` match as a whole), and every non-stop-word token contributes its
/// character 3- and 4-grams with boundary markers (so `ORD1234` still matches `ORD-1234`,
/// and inflections overlap). Each feature is hashed (FNV-1a + a 64-bit finaliser) to a
/// component and a sign; the sum is L2-normalised. Empty text yields the zero vector.
///
/// The model id is `hash-{dimension}`, so vectors of different dimensions never mix.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimension: usize,
    model_id: String,
}

impl Default for HashEmbedder {
    fn default() -> Self {
        Self {
            dimension: DEFAULT_HASH_DIMENSION,
            model_id: format!("hash-{DEFAULT_HASH_DIMENSION}"),
        }
    }
}

impl HashEmbedder {
    /// A hash embedder of the given dimension (at least 8).
    pub fn new(dimension: usize) -> Result<Self, EmbedError> {
        if dimension < 8 {
            return Err(EmbedError::Config(format!(
                "hash embedder dimension must be at least 8, got {dimension}"
            )));
        }
        Ok(Self {
            dimension,
            model_id: format!("hash-{dimension}"),
        })
    }

    /// Embeds one text synchronously (the work behind [`Embedder::embed`]).
    #[must_use]
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let mut out = vec![0.0f32; self.dimension];
        let lower = text.to_lowercase();
        let mut chars: Vec<char> = Vec::with_capacity(64);
        for compound in compounds(&lower) {
            let mut parts = 0usize;
            for word in compound.split(is_joiner).filter(|w| !w.is_empty()) {
                parts += 1;
                let stop = STOPWORDS.binary_search(&word).is_ok();
                let weight = if stop { STOPWORD_WEIGHT } else { WORD_WEIGHT };
                self.add_feature(&mut out, b'w', word.chars(), weight);
            }
            if parts > 1 {
                self.add_feature(&mut out, b'c', compound.chars(), COMPOUND_WEIGHT);
            } else if STOPWORDS.binary_search(&compound).is_ok() {
                continue;
            }
            // Character n-grams over the compound without its joiners, with boundaries.
            chars.clear();
            chars.push('<');
            chars.extend(compound.chars().filter(|c| !is_joiner(*c)));
            chars.push('>');
            let count = ngram_count(chars.len());
            if count == 0 {
                continue;
            }
            let weight = NGRAM_BLOCK_WEIGHT / (count as f32).sqrt();
            for n in NGRAM_MIN..=NGRAM_MAX {
                for window in chars.windows(n) {
                    self.add_feature(&mut out, b'n', window.iter().copied(), weight);
                }
            }
        }
        l2_normalize(&mut out);
        out
    }

    fn add_feature(
        &self,
        out: &mut [f32],
        kind: u8,
        chars: impl Iterator<Item = char>,
        weight: f32,
    ) {
        let mut h = Fnv::new();
        h.write(&[kind, 0x1f]);
        let mut buf = [0u8; 4];
        for c in chars {
            h.write(c.encode_utf8(&mut buf).as_bytes());
        }
        let x = mix64(h.0);
        // Both values come from different bits of the mixed hash.
        let slot = ((x >> 1) % self.dimension as u64) as usize;
        let sign = if x & 1 == 0 { 1.0 } else { -1.0 };
        out[slot] += sign * weight;
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let bytes: usize = texts.iter().map(String::len).sum();
        if bytes < BLOCKING_THRESHOLD_BYTES {
            return Ok(texts.iter().map(|t| self.embed_text(t)).collect());
        }
        let this = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || texts.iter().map(|t| this.embed_text(t)).collect())
            .await
            .map_err(|e| EmbedError::Inference(format!("hash embedding task failed: {e}")))
    }
}

fn is_joiner(c: char) -> bool {
    matches!(c, '-' | '_' | '.' | '/' | '#' | ':')
}

fn ngram_count(len: usize) -> usize {
    (NGRAM_MIN..=NGRAM_MAX)
        .map(|n| len.saturating_sub(n - 1))
        .sum()
}

/// Maximal runs of alphanumeric characters, where single joiners between two alphanumerics
/// are kept inside the run (`ord-1234`, `v1.2`, `a/b`). Trailing or doubled joiners end it.
fn compounds(text: &str) -> impl Iterator<Item = &str> {
    let bytes_len = text.len();
    let mut iter = text.char_indices().peekable();
    std::iter::from_fn(move || {
        // Skip to the first alphanumeric character.
        let start = loop {
            let (i, c) = iter.next()?;
            if c.is_alphanumeric() {
                break i;
            }
        };
        let mut end = bytes_len;
        while let Some(&(i, c)) = iter.peek() {
            if c.is_alphanumeric() {
                iter.next();
                continue;
            }
            if is_joiner(c) {
                // Keep the joiner only when an alphanumeric follows it directly.
                let mut look = iter.clone();
                look.next();
                if matches!(look.peek(), Some(&(_, n)) if n.is_alphanumeric()) {
                    iter.next();
                    continue;
                }
            }
            end = i;
            break;
        }
        Some(&text[start..end])
    })
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The splitmix64 finaliser: spreads FNV's weak low bits over the whole word.
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::dot;

    fn sim(e: &HashEmbedder, a: &str, b: &str) -> f32 {
        dot(&e.embed_text(a), &e.embed_text(b))
    }

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        let mut sorted = STOPWORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, STOPWORDS);
    }

    #[test]
    fn compounds_keep_inner_joiners_only() {
        let got: Vec<&str> = compounds("order ORD-1234, sku-77x. v1.2 -- end- a/b").collect();
        assert_eq!(
            got,
            vec!["order", "ORD-1234", "sku-77x", "v1.2", "end", "a/b"]
        );
    }

    #[test]
    fn output_is_unit_length_deterministic_and_sized() {
        let e = HashEmbedder::new(256).unwrap();
        let a = e.embed_text("The quick brown fox jumps over the lazy dog");
        assert_eq!(a.len(), 256);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(
            a,
            e.embed_text("The quick brown fox jumps over the lazy dog")
        );
        assert_eq!(e.model_id(), "hash-256");
    }

    #[test]
    fn vectors_are_stable_across_releases() {
        // Stored vectors must stay comparable: the hashing scheme is part of the contract of
        // the `hash-384` model id. This pins a few components.
        let v = HashEmbedder::default().embed_text("ORD-1234 refund");
        let nonzero = v.iter().filter(|x| **x != 0.0).count();
        assert!(nonzero > 10, "{nonzero}");
        let fingerprint: f32 = v.iter().enumerate().map(|(i, x)| x * i as f32).sum();
        assert!(
            (fingerprint - PINNED_FINGERPRINT).abs() < 1e-3,
            "fingerprint changed: {fingerprint}"
        );
    }
    const PINNED_FINGERPRINT: f32 = -2.808_834;

    #[test]
    fn empty_text_is_zero_vector() {
        let e = HashEmbedder::default();
        assert!(e.embed_text("").iter().all(|x| *x == 0.0));
        assert!(e.embed_text("  ,;  ").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn exact_codes_match() {
        let e = HashEmbedder::default();
        let doc_a = "Order ORD-1234 was shipped on Monday with SKU-77X inside.";
        let doc_b = "Order ORD-9876 was shipped on Monday with SKU-12Q inside.";
        let q = "where is ORD-1234";
        assert!(sim(&e, q, doc_a) > sim(&e, q, doc_b) + 0.05);
        let q2 = "sku-77x";
        assert!(sim(&e, q2, doc_a) > sim(&e, q2, doc_b) + 0.05);
        // The code typed without its dash still matches through character n-grams.
        assert!(sim(&e, "ord1234", doc_a) > sim(&e, "ord1234", doc_b));
    }

    #[test]
    fn lexical_overlap_ranks_above_unrelated_text() {
        let e = HashEmbedder::default();
        let q = "How do I reset my password?";
        let near = "Resetting your password: open settings and choose reset password.";
        let far = "Our office is closed on public holidays in France.";
        assert!(sim(&e, q, near) > sim(&e, q, far) + 0.2);
        // Inflections overlap through n-grams.
        assert!(sim(&e, "shipping", "shipped") > sim(&e, "shipping", "holiday"));
    }

    #[test]
    fn rejects_tiny_dimension() {
        assert!(matches!(HashEmbedder::new(4), Err(EmbedError::Config(_))));
    }

    #[tokio::test]
    async fn trait_embed_keeps_order_and_uses_blocking_pool_for_large_input() {
        let e = HashEmbedder::default();
        let small = vec!["alpha".to_owned(), "beta".to_owned()];
        let out = e.embed(&small).await.unwrap();
        assert_eq!(out[0], e.embed_text("alpha"));
        assert_eq!(out[1], e.embed_text("beta"));
        let big: Vec<String> = (0..2000)
            .map(|i| format!("document {i} with some words"))
            .collect();
        let out = e.embed(&big).await.unwrap();
        assert_eq!(out.len(), 2000);
        assert_eq!(out[1999], e.embed_text(&big[1999]));
        assert!(e.embed(&[]).await.unwrap().is_empty());
    }
}
