//! Stage 02: recall what is known about the customer — the facts most relevant to the message
//! and the most recent ones — and the conversation's recent history.

use cortex_llm::optimizer::RankedText;
use uuid::Uuid;

use super::text;
use crate::store::{Fact, MemoryStore, SqlStore, StoreResult};

/// How many facts are considered, and how many are kept.
const CANDIDATES: i64 = 200;
const KEEP: usize = 12;

/// The categories a fact may have.
pub const CATEGORIES: &[&str] = &["preference", "history", "sentiment", "context", "general"];

/// The customer's facts ranked by relevance to `message`, recency breaking ties.
pub async fn recall(
    store: &SqlStore,
    company_id: Uuid,
    customer_id: &str,
    agent_id: Uuid,
    message: &str,
) -> StoreResult<Vec<RankedText>> {
    let facts = store
        .facts(company_id, customer_id, Some(agent_id), CANDIDATES)
        .await?;
    let mut ranked: Vec<RankedText> = rank_facts(facts, message)
        .into_iter()
        .map(|(f, score)| RankedText::new(f.fact, score))
        .collect();
    ranked.truncate(KEEP);
    Ok(ranked)
}

/// Facts (newest first, as the store returns them) ordered by relevance to `query`, recency
/// and confidence, best first, with their scores.
pub fn rank_facts(facts: Vec<Fact>, query: &str) -> Vec<(Fact, f32)> {
    let q = text::words(query);
    let n = facts.len().max(1) as f32;
    let mut ranked: Vec<(Fact, f32)> = facts
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            // Recency decays from 0.3 (newest) to 0.
            let recency = 0.3 * (1.0 - i as f32 / n);
            let relevance = text::similarity(&q, &text::words(&f.fact));
            let score = relevance + recency + 0.1 * f.confidence as f32;
            (f, score)
        })
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked
}
