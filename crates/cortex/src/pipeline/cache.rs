//! Stage 05: the answer cache. A message whose normalised form was answered before — or whose
//! words are at least `cache_threshold` similar to a cached question — gets the cached answer.
//! Only answers that used neither the customer's memory nor a tool result are ever stored.

use uuid::Uuid;

use super::text;
use crate::store::{CacheStore, SqlStore, StoreResult};

/// How long a cached answer lives.
pub const TTL: chrono::Duration = chrono::Duration::days(7);
/// How many recent entries the similarity search looks at.
const SCAN: i64 = 500;

pub async fn lookup(
    store: &SqlStore,
    company_id: Uuid,
    agent_id: Uuid,
    message: &str,
    threshold: f32,
) -> StoreResult<Option<String>> {
    let normalized = text::normalize(message);
    if let Some(hit) = store
        .cache_lookup(company_id, agent_id, &normalized)
        .await?
    {
        return Ok(Some(hit.answer));
    }
    let q = text::words(message);
    let best = store
        .cache_entries(company_id, agent_id, SCAN)
        .await?
        .into_iter()
        .map(|e| (text::similarity(&q, &text::words(&e.question)), e))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    Ok(best
        .filter(|(score, _)| *score >= threshold)
        .map(|(_, e)| e.answer))
}

pub async fn store_answer(
    store: &SqlStore,
    company_id: Uuid,
    agent_id: Uuid,
    question: &str,
    answer: &str,
) -> StoreResult<()> {
    let normalized = text::normalize(question);
    store
        .cache_put(
            company_id,
            agent_id,
            question,
            &normalized,
            answer,
            crate::store::now() + TTL,
        )
        .await
}
