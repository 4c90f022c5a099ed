use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::{SqlStore, StoreError, StoreResult, fmt_ts, new_id, parse_id, parse_ts};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Company {
    pub id: Uuid,
    pub name: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CompanyRow {
    id: String,
    name: String,
    plan: String,
    created_at: String,
}

impl TryFrom<CompanyRow> for Company {
    type Error = StoreError;
    fn try_from(r: CompanyRow) -> StoreResult<Self> {
        Ok(Company {
            id: parse_id(&r.id)?,
            name: r.name,
            plan: r.plan,
            created_at: parse_ts(&r.created_at)?,
        })
    }
}

/// Companies (tenants).
#[async_trait]
pub trait CompanyStore {
    async fn create_company(&self, name: &str, plan: &str) -> StoreResult<Company>;
    /// The company itself: the id is the scope.
    async fn get_company(&self, company_id: Uuid) -> StoreResult<Option<Company>>;
}

pub(super) async fn insert(
    conn: &mut AnyConnection,
    name: &str,
    plan: &str,
) -> StoreResult<Company> {
    let company = Company {
        id: new_id(),
        name: name.to_owned(),
        plan: plan.to_owned(),
        created_at: super::now(),
    };
    sqlx::query("INSERT INTO companies (id, name, plan, created_at) VALUES ($1, $2, $3, $4)")
        .bind(company.id.to_string())
        .bind(&company.name)
        .bind(&company.plan)
        .bind(fmt_ts(company.created_at))
        .execute(conn)
        .await
        .map_err(|e| StoreError::from_insert(e, "company"))?;
    Ok(company)
}

#[async_trait]
impl CompanyStore for SqlStore {
    async fn create_company(&self, name: &str, plan: &str) -> StoreResult<Company> {
        let mut conn = self.pool().acquire().await?;
        insert(&mut conn, name, plan).await
    }

    async fn get_company(&self, company_id: Uuid) -> StoreResult<Option<Company>> {
        sqlx::query_as::<_, CompanyRow>(
            "SELECT id, name, plan, created_at FROM companies WHERE id = $1",
        )
        .bind(company_id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Company::try_from)
        .transpose()
    }
}
