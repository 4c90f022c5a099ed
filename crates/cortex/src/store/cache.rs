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
    /// Store `(question, normalized, answer)` pairs in one transaction (all or none).
    async fn cache_put_many(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        pairs: &[(String, String, String)],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Delete the company's entries (of one agent, or all); returns how many.
    async fn cache_flush(&self, company_id: Uuid, agent_id: Option<Uuid>) -> StoreResult<u64>;
    /// Delete entries that have expired (of one agent); returns how many.
    async fn cache_purge_expired(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<u64>;
    /// `(live entries, stored rows including expired ones)` of the company.
    async fn cache_counts(&self, company_id: Uuid) -> StoreResult<(u64, u64)>;
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
        let pair = (
            question.to_owned(),
            normalized.to_owned(),
            answer.to_owned(),
        );
        self.cache_put_many(company_id, agent_id, &[pair], expires_at)
            .await
            .map(drop)
    }

    async fn cache_put_many(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        pairs: &[(String, String, String)],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let (company, agent) = (company_id.to_string(), agent_id.to_string());
        let (created, expires) = (fmt_ts(now()), fmt_ts(expires_at));
        let _writer = self.writer().await;
        let mut tx = self.pool().begin().await?;
        for (question, normalized, answer) in pairs {
            sqlx::query(
                "INSERT INTO cache_entries (id, company_id, agent_id, question, normalized, answer, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(new_id().to_string())
            .bind(&company)
            .bind(&agent)
            .bind(question)
            .bind(normalized)
            .bind(answer)
            .bind(&created)
            .bind(&expires)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(pairs.len() as u64)
    }

    async fn cache_flush(&self, company_id: Uuid, agent_id: Option<Uuid>) -> StoreResult<u64> {
        let done = match agent_id {
            Some(agent) => {
                sqlx::query("DELETE FROM cache_entries WHERE company_id = $1 AND agent_id = $2")
                    .bind(company_id.to_string())
                    .bind(agent.to_string())
                    .execute(self.pool())
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM cache_entries WHERE company_id = $1")
                    .bind(company_id.to_string())
                    .execute(self.pool())
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    async fn cache_purge_expired(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM cache_entries WHERE company_id = $1 AND agent_id = $2 AND expires_at <= $3",
        )
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .bind(fmt_ts(now()))
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    async fn cache_counts(&self, company_id: Uuid) -> StoreResult<(u64, u64)> {
        let (live, total): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN expires_at > $2 THEN 1 ELSE 0 END), 0), COUNT(*) \
             FROM cache_entries WHERE company_id = $1",
        )
        .bind(company_id.to_string())
        .bind(fmt_ts(now()))
        .fetch_one(self.pool())
        .await?;
        Ok((live.max(0) as u64, total.max(0) as u64))
    }
}
