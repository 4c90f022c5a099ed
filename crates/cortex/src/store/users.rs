use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::{SqlStore, StoreError, StoreResult, fmt_ts, new_id, parse_id, parse_ts};

/// What a user may do inside their company.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages keys, agents and actions.
    Admin,
    /// Uses them.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub company_id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    company_id: String,
    email: String,
    password_hash: String,
    role: String,
    created_at: String,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> StoreResult<Self> {
        Ok(User {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            role: Role::parse(&r.role)
                .ok_or_else(|| StoreError::Corrupt(format!("role {:?}", r.role)))?,
            email: r.email,
            password_hash: r.password_hash,
            created_at: parse_ts(&r.created_at)?,
        })
    }
}

macro_rules! user_columns {
    () => {
        "id, company_id, email, password_hash, role, created_at"
    };
}

/// Portal users. Emails are unique across the installation and stored lower-cased.
#[async_trait]
pub trait UserStore {
    async fn create_user(
        &self,
        company_id: Uuid,
        email: &str,
        password_hash: &str,
        role: Role,
    ) -> StoreResult<User>;
    async fn get_user(&self, company_id: Uuid, user_id: Uuid) -> StoreResult<Option<User>>;
    /// Authentication look-up: the company is not known yet.
    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
}

pub(super) async fn insert(
    conn: &mut AnyConnection,
    company_id: Uuid,
    email: &str,
    password_hash: &str,
    role: Role,
) -> StoreResult<User> {
    let user = User {
        id: new_id(),
        company_id,
        email: email.trim().to_lowercase(),
        password_hash: password_hash.to_owned(),
        role,
        created_at: super::now(),
    };
    sqlx::query(
        "INSERT INTO users (id, company_id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user.id.to_string())
    .bind(company_id.to_string())
    .bind(&user.email)
    .bind(&user.password_hash)
    .bind(role.as_str())
    .bind(fmt_ts(user.created_at))
    .execute(conn)
    .await
    .map_err(|e| StoreError::from_insert(e, "user with this email"))?;
    Ok(user)
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(
        &self,
        company_id: Uuid,
        email: &str,
        password_hash: &str,
        role: Role,
    ) -> StoreResult<User> {
        let mut conn = self.pool().acquire().await?;
        insert(&mut conn, company_id, email, password_hash, role).await
    }

    async fn get_user(&self, company_id: Uuid, user_id: Uuid) -> StoreResult<Option<User>> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE company_id = $1 AND id = $2"
        ))
        .bind(company_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(User::try_from)
        .transpose()
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        sqlx::query_as::<_, UserRow>(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = $1"
        ))
        .bind(email.trim().to_lowercase())
        .fetch_optional(self.pool())
        .await?
        .map(User::try_from)
        .transpose()
    }
}
