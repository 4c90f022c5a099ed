use async_trait::async_trait;
use uuid::Uuid;

use super::{Page, SqlStore, StoreError, StoreResult, fmt_ts, new_id, now, parse_id, parse_ts};
use crate::agents::{Agent, AgentSpec};

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    company_id: String,
    config: String,
    created_at: String,
    updated_at: String,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> StoreResult<Self> {
        Ok(Agent {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            spec: serde_json::from_str(&r.config)
                .map_err(|e| StoreError::Corrupt(format!("agent config: {e}")))?,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }
}

fn encode(spec: &AgentSpec) -> StoreResult<String> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Agents of a company.
#[async_trait]
pub trait AgentStore {
    async fn create_agent(&self, company_id: Uuid, spec: &AgentSpec) -> StoreResult<Agent>;
    async fn get_agent(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<Option<Agent>>;
    async fn list_agents(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Agent>>;
    /// Replace the configuration; `NotFound` if the company has no such agent.
    async fn update_agent(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        spec: &AgentSpec,
    ) -> StoreResult<Agent>;
    async fn delete_agent(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<()>;
}

#[async_trait]
impl AgentStore for SqlStore {
    async fn create_agent(&self, company_id: Uuid, spec: &AgentSpec) -> StoreResult<Agent> {
        let at = now();
        let agent = Agent {
            id: new_id(),
            company_id,
            spec: spec.clone(),
            created_at: at,
            updated_at: at,
        };
        sqlx::query(
            "INSERT INTO agents (id, company_id, name, config, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(agent.id.to_string())
        .bind(company_id.to_string())
        .bind(&spec.name)
        .bind(encode(spec)?)
        .bind(fmt_ts(at))
        .execute(self.pool())
        .await?;
        Ok(agent)
    }

    async fn get_agent(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<Option<Agent>> {
        sqlx::query_as::<_, AgentRow>(
            "SELECT id, company_id, config, created_at, updated_at FROM agents WHERE company_id = $1 AND id = $2",
        )
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Agent::try_from)
        .transpose()
    }

    async fn list_agents(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Agent>> {
        self.company_page::<AgentRow, Agent>(
            "SELECT COUNT(*) FROM agents WHERE company_id = $1",
            "SELECT id, company_id, config, created_at, updated_at FROM agents WHERE company_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            company_id,
            limit,
            offset,
        )
        .await
    }

    async fn update_agent(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        spec: &AgentSpec,
    ) -> StoreResult<Agent> {
        let at = now();
        let done = sqlx::query("UPDATE agents SET name = $1, config = $2, updated_at = $3 WHERE company_id = $4 AND id = $5")
            .bind(&spec.name)
            .bind(encode(spec)?)
            .bind(fmt_ts(at))
            .bind(company_id.to_string())
            .bind(agent_id.to_string())
            .execute(self.pool())
            .await?
            .rows_affected();
        if done != 1 {
            return Err(StoreError::NotFound);
        }
        self.get_agent(company_id, agent_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn delete_agent(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query("DELETE FROM agents WHERE company_id = $1 AND id = $2")
            .bind(company_id.to_string())
            .bind(agent_id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done != 1 {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM cache_entries WHERE company_id = $1 AND agent_id = $2")
            .bind(company_id.to_string())
            .bind(agent_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
