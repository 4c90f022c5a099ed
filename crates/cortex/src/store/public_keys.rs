use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError, StoreResult, fmt_ts, now, one_row, parse_id, parse_ts};

/// A public widget key: one agent, a list of allowed origins.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey {
    pub id: Uuid,
    pub company_id: Uuid,
    pub agent_id: Uuid,
    pub name: String,
    pub key: String,
    pub allowed_origins: Vec<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    company_id: String,
    agent_id: String,
    name: String,
    key: String,
    allowed_origins: String,
    revoked_at: Option<String>,
    created_at: String,
}

impl TryFrom<Row> for PublicKey {
    type Error = StoreError;
    fn try_from(r: Row) -> StoreResult<Self> {
        Ok(PublicKey {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            agent_id: parse_id(&r.agent_id)?,
            name: r.name,
            key: r.key,
            allowed_origins: serde_json::from_str(&r.allowed_origins)
                .map_err(|e| StoreError::Corrupt(format!("public key origins: {e}")))?,
            revoked_at: r.revoked_at.as_deref().map(parse_ts).transpose()?,
            created_at: parse_ts(&r.created_at)?,
        })
    }
}

macro_rules! public_key_columns {
    () => {
        "id, company_id, agent_id, name, key, allowed_origins, revoked_at, created_at"
    };
}

/// Public widget keys. `public_key_by_key` and `public_key_by_id` are authentication look-ups:
/// they establish the company, so they are not scoped by one.
#[async_trait]
pub trait PublicKeyStore {
    async fn create_public_key(&self, k: &PublicKey) -> StoreResult<()>;
    async fn list_public_keys(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<PublicKey>>;
    async fn public_key_by_key(&self, key: &str) -> StoreResult<Option<PublicKey>>;
    async fn public_key_by_id(&self, id: Uuid) -> StoreResult<Option<PublicKey>>;
    /// Revoke (not delete: sessions issued from it must fail from now on).
    async fn revoke_public_key(&self, company_id: Uuid, id: Uuid) -> StoreResult<()>;
}

#[async_trait]
impl PublicKeyStore for SqlStore {
    async fn create_public_key(&self, k: &PublicKey) -> StoreResult<()> {
        let origins = serde_json::to_string(&k.allowed_origins)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO public_keys (id, company_id, agent_id, name, key, allowed_origins, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(k.id.to_string())
        .bind(k.company_id.to_string())
        .bind(k.agent_id.to_string())
        .bind(&k.name)
        .bind(&k.key)
        .bind(origins)
        .bind(fmt_ts(k.created_at))
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::from_insert(e, "this public key"))?;
        Ok(())
    }

    async fn list_public_keys(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<PublicKey>> {
        self.company_page::<Row, PublicKey>(
            "SELECT COUNT(*) FROM public_keys WHERE company_id = $1",
            concat!(
                "SELECT ",
                public_key_columns!(),
                " FROM public_keys WHERE company_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            company_id,
            limit,
            offset,
        )
        .await
    }

    async fn public_key_by_key(&self, key: &str) -> StoreResult<Option<PublicKey>> {
        sqlx::query_as::<_, Row>(concat!(
            "SELECT ",
            public_key_columns!(),
            " FROM public_keys WHERE key = $1"
        ))
        .bind(key)
        .fetch_optional(self.pool())
        .await?
        .map(PublicKey::try_from)
        .transpose()
    }

    async fn public_key_by_id(&self, id: Uuid) -> StoreResult<Option<PublicKey>> {
        sqlx::query_as::<_, Row>(concat!(
            "SELECT ",
            public_key_columns!(),
            " FROM public_keys WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(PublicKey::try_from)
        .transpose()
    }

    async fn revoke_public_key(&self, company_id: Uuid, id: Uuid) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE public_keys SET revoked_at = $3 WHERE company_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(company_id.to_string())
        .bind(id.to_string())
        .bind(fmt_ts(now()))
        .execute(self.pool())
        .await?;
        one_row(done)
    }
}
