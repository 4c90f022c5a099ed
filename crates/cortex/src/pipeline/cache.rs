//! Stage 05: the answer cache. A message whose normalised form was answered before — or whose
//! words are at least `cache_threshold` similar to a cached question — gets the cached answer.
//! Only answers that used neither the customer's memory nor a tool result are ever stored.

use uuid::Uuid;

use super::text;
use crate::store::{CacheStore, SqlStore, StoreResult};

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

/// Store one answer for `ttl`, dropping the agent's expired entries on the way.
pub async fn store_answer(
    store: &SqlStore,
    company_id: Uuid,
    agent_id: Uuid,
    question: &str,
    answer: &str,
    ttl: chrono::Duration,
) -> StoreResult<()> {
    store.cache_purge_expired(company_id, agent_id).await?;
    let normalized = text::normalize(question);
    store
        .cache_put(
            company_id,
            agent_id,
            question,
            &normalized,
            answer,
            crate::store::now() + ttl,
        )
        .await
}

/// Pre-warm an agent's cache: every pair with a non-empty question and answer is stored (in
/// one transaction); returns `(stored, errored)`.
pub async fn warm(
    store: &SqlStore,
    company_id: Uuid,
    agent_id: Uuid,
    pairs: &[(String, String)],
    ttl: chrono::Duration,
) -> StoreResult<(u64, u64)> {
    let valid: Vec<(String, String, String)> = pairs
        .iter()
        .filter_map(|(q, a)| {
            let (q, a) = (q.trim(), a.trim());
            let normalized = text::normalize(q);
            (!normalized.is_empty() && !a.is_empty())
                .then(|| (q.to_owned(), normalized, a.to_owned()))
        })
        .collect();
    let errored = (pairs.len() - valid.len()) as u64;
    store.cache_purge_expired(company_id, agent_id).await?;
    let stored = store
        .cache_put_many(company_id, agent_id, &valid, crate::store::now() + ttl)
        .await?;
    Ok((stored, errored))
}

/// A knowledge source changed: drop the cached answers of every agent that searches it, so no
/// answer outlives the knowledge it was drawn from. Returns how many entries were dropped.
pub async fn invalidate_for_source(
    store: &SqlStore,
    company_id: Uuid,
    source_id: Uuid,
) -> StoreResult<u64> {
    use crate::store::AgentStore;
    const PAGE: i64 = 200;
    let mut dropped = 0;
    let mut offset = 0;
    loop {
        let page = store.list_agents(company_id, PAGE, offset).await?;
        for agent in &page.items {
            if agent.spec.knowledge_source_ids.contains(&source_id) {
                dropped += store.cache_flush(company_id, Some(agent.id)).await?;
            }
        }
        offset += PAGE;
        if page.items.len() < PAGE as usize {
            return Ok(dropped);
        }
    }
}
