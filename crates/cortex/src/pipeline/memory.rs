//! Stage 02: recall what is known about the customer — the facts most relevant to the message
//! and the most recent ones — and the conversation's recent history.

use cortex_llm::optimizer::RankedText;
use uuid::Uuid;

use super::text;
use crate::store::{MemoryStore, SqlStore, StoreResult};

/// How many facts are considered, and how many are kept.
const CANDIDATES: i64 = 200;
const KEEP: usize = 12;

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
    let q = text::words(message);
    let n = facts.len().max(1) as f32;
    let mut ranked: Vec<RankedText> = facts
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            // Newest first from the store: recency decays from 0.3 to 0.
            let recency = 0.3 * (1.0 - i as f32 / n);
            let relevance = text::similarity(&q, &text::words(&f.fact));
            RankedText::new(f.fact, relevance + recency + 0.1 * f.confidence as f32)
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    ranked.truncate(KEEP);
    Ok(ranked)
}
