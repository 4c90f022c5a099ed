use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqlStore, StoreResult, fmt_ts, new_id, now};

/// A cached question/answer pair of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub question: String,
    pub answer: String,
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    question: String,
    answer: String,
}

/// The answer cache of an agent's stage 05.
#[async_trait]
pub trait CacheStore {
    /// Live entries of an agent whose normalised question equals `normalized`.
    async fn cache_lookup(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        normalized: &str,
    ) -> StoreResult<Option<CacheEntry>>;
    /// Live entries of an agent, newest first (for similarity search).
    async fn cache_entries(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<CacheEntry>>;
    async fn cache_put(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        question: &str,
        normalized: &str,
        answer: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
}

#[async_trait]
impl CacheStore for SqlStore {
    async fn cache_lookup(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        normalized: &str,
    ) -> StoreResult<Option<CacheEntry>> {
        Ok(sqlx::query_as::<_, EntryRow>(
            "SELECT question, answer FROM cache_entries WHERE company_id = $1 AND agent_id = $2 AND normalized = $3 \
             AND expires_at > $4 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .bind(normalized)
        .bind(fmt_ts(now()))
        .fetch_optional(self.pool())
        .await?
        .map(|r| CacheEntry { question: r.question, answer: r.answer }))
    }

    async fn cache_entries(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<CacheEntry>> {
        Ok(sqlx::query_as::<_, EntryRow>(
            "SELECT question, answer FROM cache_entries WHERE company_id = $1 AND agent_id = $2 AND expires_at > $3 \
             ORDER BY created_at DESC LIMIT $4",
        )
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .bind(fmt_ts(now()))
        .bind(limit)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|r| CacheEntry { question: r.question, answer: r.answer })
        .collect())
    }

    async fn cache_put(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        question: &str,
        normalized: &str,
        answer: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO cache_entries (id, company_id, agent_id, question, normalized, answer, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_id().to_string())
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .bind(question)
        .bind(normalized)
        .bind(answer)
        .bind(fmt_ts(now()))
        .bind(fmt_ts(expires_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
