//! Developer portal: login and API key management.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::FieldError;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Caller, Checks, PageInfo, Pagination, Validate};
use crate::auth::{Identity, Principal, api_key, password};
use crate::state::AppState;
use crate::store::{ApiKey, ApiKeyStore, NewApiKey, UserStore};

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Checks::default()
            .len("email", &self.email, 3, 320)
            .len("password", &self.password, 1, 1024)
            .finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginUser {
    pub id: Uuid,
    pub email: String,
    pub company_id: Uuid,
    pub role: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    pub user: LoginUser,
}

/// Exchange email and password for a portal session token (HS256 JWT).
#[utoipa::path(post, path = "/portal/api/login", tag = "portal", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, description = "Invalid credentials"), (status = 422)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let user = state.store.find_user_by_email(&req.email).await?;
    // Unknown emails spend the same Argon2 time as wrong passwords.
    let phc = user.as_ref().map_or_else(
        || password::dummy_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let pw = req.password;
    let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &phc))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(u) if ok => u,
        _ => return Err(ApiError::Unauthorized("Invalid email or password".into())),
    };
    let token = state
        .jwt
        .issue(user.id, user.company_id, &user.email, user.role)
        .map_err(ApiError::internal)?;
    Ok(Json(LoginResponse {
        token,
        user: LoginUser {
            id: user.id,
            email: user.email,
            company_id: user.company_id,
            role: user.role.as_str().into(),
        },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKeyRequest {
    /// 1–100 characters.
    pub name: String,
    /// Defaults to `["*"]`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// 1–365; absent or null means the key never expires.
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

impl Validate for CreateKeyRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.len("name", &self.name, 1, 100);
        if let Some(days) = self.expires_in_days {
            c.check(
                (1..=365).contains(&days),
                "expires_in_days",
                "expires_in_days must be between 1 and 365",
                "int_range",
            );
        }
        if let Some(scopes) = &self.scopes {
            c.check(
                !scopes.is_empty() && scopes.len() <= 32,
                "scopes",
                "scopes must list 1 to 32 scopes",
                "list_length",
            );
            let valid = scopes.iter().all(|s| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b":*_-.".contains(&b)
                    })
            });
            c.check(
                valid,
                "scopes",
                "each scope is 1-64 characters of a-z, 0-9, ':', '*', '_', '-', '.'",
                "value_error",
            );
        }
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub id: Uuid,
    /// The raw key: shown only in this response.
    pub key: String,
    pub key_prefix: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    pub key_prefix: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            key_prefix: k.key_prefix,
            name: k.name,
            scopes: k.scopes,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            created_at: k.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub success: bool,
    pub keys: Vec<KeyView>,
    pub pagination: PageInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedKey {
    pub success: bool,
    pub id: Uuid,
    pub revoked: bool,
}

/// Key management is a portal action: a company admin with a session token.
fn portal_admin(caller: &Identity) -> ApiResult<Uuid> {
    match &caller.principal {
        Principal::User { user_id, .. } if caller.is_admin() => Ok(*user_id),
        Principal::User { .. } => Err(ApiError::Forbidden(
            "Only company admins can manage API keys".into(),
        )),
        Principal::ApiKey { .. } | Principal::Sdk { .. } => Err(ApiError::Forbidden(
            "API keys are managed with a portal session token, not with an API key".into(),
        )),
    }
}

/// Create an API key; the raw `ctx_` key is in this response only.
#[utoipa::path(post, path = "/portal/api/keys", tag = "portal", request_body = CreateKeyRequest,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedKey), (status = 401), (status = 403), (status = 422)))]
pub async fn create_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let user_id = portal_admin(&caller)?;
    let generated = api_key::generate();
    let expires_at = req.expires_in_days.map(|d| Utc::now() + Duration::days(d));
    let key = state
        .store
        .create_key(
            caller.company_id,
            NewApiKey {
                user_id: Some(user_id),
                name: req.name.trim().to_owned(),
                key_prefix: generated.prefix,
                key_hash: generated.hash,
                scopes: req.scopes.unwrap_or_else(|| vec!["*".into()]),
                expires_at,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            id: key.id,
            key: generated.raw,
            key_prefix: key.key_prefix,
            name: key.name,
            scopes: key.scopes,
            expires_at: key.expires_at,
            created_at: key.created_at,
        }),
    ))
}

/// The company's active keys (never the raw keys), newest first.
#[utoipa::path(get, path = "/portal/api/keys", tag = "portal", security(("bearer" = [])),
    params(("limit" = Option<i64>, Query, description = "1–200, default 50"), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = KeyList), (status = 401), (status = 403), (status = 422)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<KeyList>> {
    portal_admin(&caller)?;
    let keys = state
        .store
        .list_keys(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(KeyList {
        success: true,
        keys: keys.items.into_iter().map(KeyView::from).collect(),
        pagination: page.info(keys.total),
    }))
}

/// Revoke a key; it stops working immediately on every node.
#[utoipa::path(delete, path = "/portal/api/keys/{id}", tag = "portal", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses((status = 200, body = RevokedKey), (status = 401),
        (status = 403, description = "Keys are managed with a session, not with an API key"), (status = 404), (status = 422)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RevokedKey>> {
    portal_admin(&caller)?;
    let id = super::extract::path_id(&id, "API key")?;
    state
        .store
        .revoke_key(caller.company_id, id)
        .await
        .map_err(super::extract::missing("API key"))?;
    state.coord.revoke_key(&state.keys, id).await;
    Ok(Json(RevokedKey {
        success: true,
        id,
        revoked: true,
    }))
}
