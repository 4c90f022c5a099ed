use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::direct::{args, direct_row};
use super::{
    Page, SqlStore, StoreError, StoreResult, fmt_ts, new_id, one_row, parse_id, parse_opt_ts,
    parse_ts,
};

/// An API key as stored: never the raw secret, only its SHA-256.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: Uuid,
    pub company_id: Uuid,
    pub user_id: Option<Uuid>,
    pub name: String,
    pub key_prefix: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What the caller decides when creating a key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub user_id: Option<Uuid>,
    pub name: String,
    pub key_prefix: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    company_id: String,
    user_id: Option<String>,
    name: String,
    key_prefix: String,
    key_hash: String,
    scopes: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
    created_at: String,
}
direct_row!(ApiKeyRow {
    id,
    company_id,
    user_id,
    name,
    key_prefix,
    key_hash,
    scopes,
    expires_at,
    revoked_at,
    last_used_at,
    created_at
});

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> StoreResult<Self> {
        Ok(ApiKey {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            user_id: r.user_id.as_deref().map(parse_id).transpose()?,
            name: r.name,
            key_prefix: r.key_prefix,
            key_hash: r.key_hash,
            scopes: serde_json::from_str(&r.scopes)
                .map_err(|e| StoreError::Corrupt(format!("scopes: {e}")))?,
            expires_at: parse_opt_ts(r.expires_at.as_deref())?,
            revoked_at: parse_opt_ts(r.revoked_at.as_deref())?,
            last_used_at: parse_opt_ts(r.last_used_at.as_deref())?,
            created_at: parse_ts(&r.created_at)?,
        })
    }
}

macro_rules! key_columns {
    () => {
        "id, company_id, user_id, name, key_prefix, key_hash, scopes, expires_at, revoked_at, last_used_at, created_at"
    };
}

/// API keys of a company.
#[async_trait]
pub trait ApiKeyStore {
    async fn create_key(&self, company_id: Uuid, key: NewApiKey) -> StoreResult<ApiKey>;
    /// Keys that are not revoked, newest first.
    async fn list_keys(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<ApiKey>>;
    /// Revoke a key of this company; `NotFound` if it has no such (unrevoked) key.
    async fn revoke_key(&self, company_id: Uuid, key_id: Uuid) -> StoreResult<()>;
    /// Authentication look-up by the SHA-256 of the secret: the company is not known yet.
    async fn find_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Record use, unless another request (on any node) already did within the interval.
    async fn touch_key(
        &self,
        company_id: Uuid,
        key_id: Uuid,
        now: DateTime<Utc>,
        interval: chrono::Duration,
    ) -> StoreResult<()>;
}

#[async_trait]
impl ApiKeyStore for SqlStore {
    async fn create_key(&self, company_id: Uuid, key: NewApiKey) -> StoreResult<ApiKey> {
        let row = ApiKey {
            id: new_id(),
            company_id,
            user_id: key.user_id,
            name: key.name,
            key_prefix: key.key_prefix,
            key_hash: key.key_hash,
            scopes: key.scopes,
            expires_at: key.expires_at.map(super::to_stored),
            revoked_at: None,
            last_used_at: None,
            created_at: super::now(),
        };
        let scopes =
            serde_json::to_string(&row.scopes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9)"
        ))
        .bind(row.id.to_string())
        .bind(company_id.to_string())
        .bind(row.user_id.map(|u| u.to_string()))
        .bind(&row.name)
        .bind(&row.key_prefix)
        .bind(&row.key_hash)
        .bind(scopes)
        .bind(row.expires_at.map(fmt_ts))
        .bind(fmt_ts(row.created_at))
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::from_insert(e, "api key"))?;
        Ok(row)
    }

    async fn list_keys(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<ApiKey>> {
        self.company_page::<ApiKeyRow, ApiKey>(
            "SELECT COUNT(*) FROM api_keys WHERE company_id = $1 AND revoked_at IS NULL",
            concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE company_id = $1 AND revoked_at IS NULL \
                 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            company_id,
            limit,
            offset,
        )
        .await
    }

    async fn revoke_key(&self, company_id: Uuid, key_id: Uuid) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE company_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(fmt_ts(super::now()))
        .bind(company_id.to_string())
        .bind(key_id.to_string())
        .execute(self.pool())
        .await?;
        one_row(done)
    }

    async fn find_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        self.fetch_rows::<ApiKeyRow>(
            concat!(
                "SELECT ",
                key_columns!(),
                " FROM api_keys WHERE key_hash = $1"
            ),
            args![key_hash],
        )
        .await?
        .pop()
        .map(ApiKey::try_from)
        .transpose()
    }

    async fn touch_key(
        &self,
        company_id: Uuid,
        key_id: Uuid,
        now: DateTime<Utc>,
        interval: chrono::Duration,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1 WHERE company_id = $2 AND id = $3 \
             AND (last_used_at IS NULL OR last_used_at < $4)",
        )
        .bind(fmt_ts(now))
        .bind(company_id.to_string())
        .bind(key_id.to_string())
        .bind(fmt_ts(now - interval))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
