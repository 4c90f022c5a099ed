use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Page, SqlStore, StoreError, StoreResult, fmt_ts, now, one_row, parse_id, parse_ts};
use crate::actions::AuthType;

/// A named set of credentials, as stored: the secrets sealed, the rest readable.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: Uuid,
    pub company_id: Uuid,
    pub name: String,
    pub auth_type: AuthType,
    /// The non-secret parts (header name, user name, token URL, client id, scope).
    pub public: serde_json::Value,
    /// `SecretBox::seal` of the credentials JSON, bound to the connection's id.
    pub sealed: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    company_id: String,
    name: String,
    auth_type: String,
    public: String,
    sealed: String,
    created_at: String,
    updated_at: String,
}

impl TryFrom<Row> for Connection {
    type Error = StoreError;
    fn try_from(r: Row) -> StoreResult<Self> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("connection: {e}"));
        Ok(Connection {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            name: r.name,
            auth_type: serde_json::from_value(serde_json::Value::String(r.auth_type))
                .map_err(corrupt)?,
            public: serde_json::from_str(&r.public).map_err(corrupt)?,
            sealed: r.sealed,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }
}

fn auth_type_text(t: AuthType) -> StoreResult<String> {
    match serde_json::to_value(t) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(StoreError::Corrupt("auth type".into())),
    }
}

macro_rules! connection_columns {
    () => {
        "id, company_id, name, auth_type, public, sealed, created_at, updated_at"
    };
}

/// Connections of a company; names are unique per company.
#[async_trait]
pub trait ConnectionStore {
    /// Insert a connection whose id the caller chose (the sealed value is bound to it).
    async fn create_connection(&self, c: &Connection) -> StoreResult<()>;
    async fn get_connection(&self, company_id: Uuid, id: Uuid) -> StoreResult<Option<Connection>>;
    async fn list_connections(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Connection>>;
    /// Replace name, public part and sealed credentials.
    async fn update_connection(&self, c: &Connection) -> StoreResult<()>;
    async fn delete_connection(&self, company_id: Uuid, id: Uuid) -> StoreResult<()>;
}

#[async_trait]
impl ConnectionStore for SqlStore {
    async fn create_connection(&self, c: &Connection) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO connections (id, company_id, name, auth_type, public, sealed, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(c.id.to_string())
        .bind(c.company_id.to_string())
        .bind(&c.name)
        .bind(auth_type_text(c.auth_type)?)
        .bind(c.public.to_string())
        .bind(&c.sealed)
        .bind(fmt_ts(c.created_at))
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::from_insert(e, "a connection with this name"))?;
        Ok(())
    }

    async fn get_connection(&self, company_id: Uuid, id: Uuid) -> StoreResult<Option<Connection>> {
        sqlx::query_as::<_, Row>(concat!(
            "SELECT ",
            connection_columns!(),
            " FROM connections WHERE company_id = $1 AND id = $2"
        ))
        .bind(company_id.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Connection::try_from)
        .transpose()
    }

    async fn list_connections(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Connection>> {
        self.company_page::<Row, Connection>(
            "SELECT COUNT(*) FROM connections WHERE company_id = $1",
            concat!(
                "SELECT ",
                connection_columns!(),
                " FROM connections WHERE company_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            company_id,
            limit,
            offset,
        )
        .await
    }

    async fn update_connection(&self, c: &Connection) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE connections SET name = $3, public = $4, sealed = $5, updated_at = $6 \
             WHERE company_id = $1 AND id = $2",
        )
        .bind(c.company_id.to_string())
        .bind(c.id.to_string())
        .bind(&c.name)
        .bind(c.public.to_string())
        .bind(&c.sealed)
        .bind(fmt_ts(now()))
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::from_insert(e, "a connection with this name"))?;
        one_row(done)
    }

    async fn delete_connection(&self, company_id: Uuid, id: Uuid) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM connections WHERE company_id = $1 AND id = $2")
            .bind(company_id.to_string())
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        one_row(done)
    }
}
