use async_trait::async_trait;
use uuid::Uuid;

use super::direct::{args, direct_row};
use super::knowledge::{decode_vector, encode_vector};
use super::{SqlStore, StoreResult, fmt_ts, new_id, now, one_row, parse_id};

/// A durable fact about a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub id: Uuid,
    pub fact: String,
    pub category: String,
    pub confidence: f64,
    pub agent_id: Option<Uuid>,
    /// The embedder's model id and the fact's vector (`None`: saved without one).
    pub embedding: Option<(String, Vec<f32>)>,
}

#[derive(Debug, Clone)]
pub struct NewFact {
    pub customer_id: String,
    pub agent_id: Option<Uuid>,
    pub fact: String,
    pub category: String,
    pub confidence: f64,
    pub source: String,
    pub embedding: Option<(String, Vec<f32>)>,
}

#[derive(sqlx::FromRow)]
struct FactRow {
    id: String,
    fact: String,
    category: String,
    confidence: f64,
    agent_id: Option<String>,
    model_id: Option<String>,
    vector: Option<Vec<u8>>,
}
direct_row!(FactRow {
    id,
    fact,
    category,
    confidence,
    agent_id,
    model_id,
    vector
});

impl FactRow {
    fn into_fact(self) -> StoreResult<Fact> {
        Ok(Fact {
            id: parse_id(&self.id)?,
            fact: self.fact,
            category: self.category,
            confidence: self.confidence,
            agent_id: self.agent_id.as_deref().map(parse_id).transpose()?,
            embedding: match (self.model_id, self.vector) {
                (Some(m), Some(v)) => Some((m, decode_vector(&v)?)),
                _ => None,
            },
        })
    }
}

/// Customer memory, scoped by company and customer (and optionally agent).
#[async_trait]
pub trait MemoryStore {
    async fn save_fact(&self, company_id: Uuid, fact: &NewFact) -> StoreResult<Uuid>;
    /// The customer's facts visible to `agent_id` (facts of no agent, or of that agent), newest first.
    async fn facts(
        &self,
        company_id: Uuid,
        customer_id: &str,
        agent_id: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Fact>>;
    /// Every fact of the customer (whichever agent it belongs to), newest first.
    async fn all_facts(
        &self,
        company_id: Uuid,
        customer_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<Fact>>;
    async fn delete_fact(&self, company_id: Uuid, fact_id: Uuid) -> StoreResult<()>;
    /// What the customer said most recently, in any conversation, newest first.
    async fn customer_messages(
        &self,
        company_id: Uuid,
        customer_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>>;
}

#[async_trait]
impl MemoryStore for SqlStore {
    async fn save_fact(&self, company_id: Uuid, f: &NewFact) -> StoreResult<Uuid> {
        let id = new_id();
        sqlx::query(
            "INSERT INTO memory_facts (id, company_id, customer_id, agent_id, fact, category, confidence, source, created_at, \
             model_id, vector) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id.to_string())
        .bind(company_id.to_string())
        .bind(&f.customer_id)
        .bind(f.agent_id.map(|a| a.to_string()))
        .bind(&f.fact)
        .bind(&f.category)
        .bind(f.confidence)
        .bind(&f.source)
        .bind(fmt_ts(now()))
        .bind(f.embedding.as_ref().map(|(m, _)| m.as_str()))
        .bind(f.embedding.as_ref().map(|(_, v)| encode_vector(v)))
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    async fn facts(
        &self,
        company_id: Uuid,
        customer_id: &str,
        agent_id: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Fact>> {
        let agent = agent_id.map(|a| a.to_string()).unwrap_or_default();
        self.fetch_rows::<FactRow>(
            "SELECT id, fact, category, confidence, agent_id, model_id, vector FROM memory_facts \
             WHERE company_id = $1 AND customer_id = $2 AND (agent_id IS NULL OR agent_id = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
            args![company_id.to_string(), customer_id, agent, limit],
        )
        .await?
        .into_iter()
        .map(FactRow::into_fact)
        .collect()
    }

    async fn all_facts(
        &self,
        company_id: Uuid,
        customer_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<Fact>> {
        sqlx::query_as::<_, FactRow>(
            "SELECT id, fact, category, confidence, agent_id, model_id, vector FROM memory_facts \
             WHERE company_id = $1 AND customer_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(company_id.to_string())
        .bind(customer_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(FactRow::into_fact)
        .collect()
    }

    async fn delete_fact(&self, company_id: Uuid, fact_id: Uuid) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM memory_facts WHERE company_id = $1 AND id = $2")
            .bind(company_id.to_string())
            .bind(fact_id.to_string())
            .execute(self.pool())
            .await?;
        one_row(done)
    }

    async fn customer_messages(
        &self,
        company_id: Uuid,
        customer_id: &str,
        limit: i64,
    ) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT content FROM conversation_messages \
             WHERE company_id = $1 AND customer_id = $2 AND role = 'user' \
             ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(company_id.to_string())
        .bind(customer_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
