//! Stage 02: recall what is known about the customer — the facts most relevant to the message
//! (by meaning: the embeddings of the message and of each fact, made by the server's default
//! embedding model), then the most recent and most confident — and the conversation's recent
//! history.
//!
//! A fact without an embedding of that model (saved before facts were embedded, or under another
//! default model) is compared by words instead, each word weighted by how rare it is among the
//! customer's facts: no stop-word list of any language.

use std::collections::{HashMap, HashSet};

use cortex_embed::Embedder;
use cortex_llm::optimizer::RankedText;
use uuid::Uuid;

use super::text;
use crate::store::{Fact, MemoryStore, SqlStore, StoreResult};

/// How many facts are considered, and how many are kept.
const CANDIDATES: i64 = 200;
const KEEP: usize = 12;
/// Weights of recency (newest 1, oldest 0) and confidence next to relevance (0–1).
const RECENCY: f32 = 0.1;
const CONFIDENCE: f32 = 0.05;

/// The categories a fact may have.
pub const CATEGORIES: &[&str] = &["preference", "history", "sentiment", "context", "general"];

/// A text's embedding by `embedder`, tagged with its model id; `None` (logged) when the
/// embedder fails: memory then works by words.
pub async fn embed(embedder: &dyn Embedder, text: &str) -> Option<(String, Vec<f32>)> {
    match embedder.embed(&[text.to_owned()]).await {
        Ok(mut v) if v.len() == 1 => Some((embedder.model_id().to_owned(), v.remove(0))),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "memory: embedding failed, facts are compared by words");
            None
        }
    }
}

/// The customer's facts ranked by relevance to `message`, recency and confidence.
pub async fn recall(
    store: &SqlStore,
    embedder: &dyn Embedder,
    company_id: Uuid,
    customer_id: &str,
    agent_id: Uuid,
    message: &str,
) -> StoreResult<Vec<RankedText>> {
    let facts = store
        .facts(company_id, customer_id, Some(agent_id), CANDIDATES)
        .await?;
    if facts.is_empty() {
        return Ok(Vec::new());
    }
    let query = query_embedding(embedder, message).await;
    let mut ranked: Vec<RankedText> = rank_facts(facts, message, query.as_ref())
        .into_iter()
        .map(|(f, score)| RankedText::new(f.fact, score))
        .collect();
    ranked.truncate(KEEP);
    Ok(ranked)
}

/// The message's embedding for ranking facts.
pub async fn query_embedding(embedder: &dyn Embedder, message: &str) -> Option<(String, Vec<f32>)> {
    match embedder.embed_query(message).await {
        Ok(v) => Some((embedder.model_id().to_owned(), v)),
        Err(e) => {
            tracing::warn!(error = %e, "memory: embedding the message failed, facts are ranked by words");
            None
        }
    }
}

/// Facts (newest first, as the store returns them) ordered by relevance to the query, recency
/// and confidence, best first, with their scores. Relevance is the cosine of the embeddings
/// when the fact has one of the query's model, else the rarity-weighted share of the query's
/// words it holds.
pub fn rank_facts(
    facts: Vec<Fact>,
    query: &str,
    query_vector: Option<&(String, Vec<f32>)>,
) -> Vec<(Fact, f32)> {
    let cosines: Vec<Option<f32>> = facts
        .iter()
        .map(|f| match (query_vector, &f.embedding) {
            (Some((qm, qv)), Some((fm, fv))) if qm == fm && qv.len() == fv.len() => {
                Some(cortex_embed::dot(qv, fv))
            }
            _ => None,
        })
        .collect();
    // Cosines are rescaled to span 0–1 among the customer's facts: each model has its own
    // scale (multilingual-e5-small puts every fact of a language between 0.75 and 0.9), and
    // recency and confidence must weigh the same against any of them.
    let (low, high) = cosines
        .iter()
        .flatten()
        .fold((f32::MAX, f32::MIN), |(lo, hi), c| (lo.min(*c), hi.max(*c)));
    let spread = high - low;
    // Words are compared only for facts without a comparable embedding (none, once every fact
    // is embedded by the default model): tokenising every fact costs a chat more than ranking.
    let lexical = cosines
        .iter()
        .any(Option::is_none)
        .then(|| Lexical::new(&facts, query));
    let n = facts.len().max(1) as f32;
    let mut ranked: Vec<(Fact, f32)> = facts
        .into_iter()
        .zip(cosines)
        .enumerate()
        .map(|(i, (f, cosine))| {
            let relevance = match cosine {
                Some(c) if spread > f32::EPSILON => (c - low) / spread,
                Some(c) => c.max(0.0),
                None => lexical.as_ref().map_or(0.0, |l| l.relevance(i)),
            };
            let recency = 1.0 - i as f32 / n;
            let score = relevance + RECENCY * recency + CONFIDENCE * f.confidence as f32;
            (f, score)
        })
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
}

/// Word overlap weighted by rarity among the facts (inverse document frequency), so that the
/// words every fact shares — in any language — count for little.
struct Lexical {
    query: Vec<(String, f32)>,
    facts: Vec<HashSet<String>>,
}

impl Lexical {
    fn new(facts: &[Fact], query: &str) -> Self {
        let sets: Vec<HashSet<String>> = facts.iter().map(|f| tokens(&f.fact)).collect();
        let mut df: HashMap<&str, usize> = HashMap::new();
        for set in &sets {
            for w in set {
                *df.entry(w.as_str()).or_default() += 1;
            }
        }
        let n = sets.len() as f32;
        let query = tokens(query)
            .into_iter()
            .map(|w| {
                let d = df.get(w.as_str()).copied().unwrap_or(0) as f32;
                let idf = ((n + 1.0) / (d + 0.5)).ln().max(0.0);
                (w, idf)
            })
            .collect();
        Self { query, facts: sets }
    }

    fn relevance(&self, i: usize) -> f32 {
        let total: f32 = self.query.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return 0.0;
        }
        let found: f32 = self
            .query
            .iter()
            .filter(|(w, _)| self.facts[i].contains(w))
            .map(|(_, w)| w)
            .sum();
        found / total
    }
}

/// The words of a text for the lexical fallback: normalised, one-letter words dropped, Arabic
/// letters folded and the article taken off, English plurals folded. No stop-word list.
pub fn tokens(s: &str) -> HashSet<String> {
    text::normalize(s)
        .split(' ')
        .filter(|w| w.chars().count() >= 2)
        .map(|w| {
            let w = super::terms::fold(w);
            if let Some(rest) = w.strip_prefix("ال").filter(|r| r.chars().count() >= 2) {
                return rest.to_owned();
            }
            if w.is_ascii() && w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
                return w[..w.len() - 1].to_owned();
            }
            w
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(text: &str, embedding: Option<(String, Vec<f32>)>) -> Fact {
        Fact {
            id: Uuid::new_v4(),
            fact: text.into(),
            category: "general".into(),
            confidence: 1.0,
            agent_id: None,
            embedding,
        }
    }

    #[test]
    fn words_shared_by_every_fact_count_for_little() {
        // Arabic, no stop-word list: "العميل" (the customer) is in every fact.
        let facts = vec![
            fact("العميل يفضل اللغة العربية", None),
            fact("العميل يسكن في جدة", None),
            fact("العميل لديه حساسية من الفول السوداني", None),
        ];
        let ranked = rank_facts(facts, "أين يسكن العميل؟", None);
        assert_eq!(ranked[0].0.fact, "العميل يسكن في جدة");
    }

    #[test]
    fn embeddings_of_the_same_model_rank_by_meaning() {
        let m = |v: Vec<f32>| Some(("m".to_owned(), v));
        let facts = vec![
            fact("Lives in Jeddah", m(vec![1.0, 0.0])),
            fact("Allergic to peanuts", m(vec![0.0, 1.0])),
        ];
        let q = ("m".to_owned(), vec![0.1, 0.99]);
        let ranked = rank_facts(facts, "Suggest a snack for my flight", Some(&q));
        assert_eq!(ranked[0].0.fact, "Allergic to peanuts");
        // Another model's vector is never compared: words decide.
        let facts = vec![
            fact("Lives in Jeddah", Some(("other".into(), vec![0.0, 1.0]))),
            fact(
                "Allergic to peanuts",
                Some(("other".into(), vec![1.0, 0.0])),
            ),
        ];
        let ranked = rank_facts(facts, "Which city does he live in? Jeddah?", Some(&q));
        assert_eq!(ranked[0].0.fact, "Lives in Jeddah");
    }
}
