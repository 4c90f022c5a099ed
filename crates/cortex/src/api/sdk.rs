//! The embeddable widget: public keys (`pk_…`, admin-managed, one agent, allowed origins),
//! `POST /v1/sdk/init` (a public key and a matching `Origin` → a short-lived `sdk_…` session
//! token for the chat endpoints), `GET /v1/sdk/config/{agent_id}`, and the `/widget.js` script.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::cors::OriginPattern;
use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{
    ApiJson, Caller, Checks, PageInfo, Pagination, Validate, missing, path_id, require_admin,
};
use crate::state::AppState;
use crate::store::{AgentStore, PublicKey, PublicKeyStore};

pub const PUBLIC_PREFIX: &str = "pk_";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPublicKey {
    /// The agent the widget talks to.
    pub agent_id: String,
    /// 1–20 origins (`https://shop.example.com`, or `https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// A label, 1–100 characters (default `widget`).
    #[serde(default)]
    pub name: Option<String>,
}

impl Validate for NewPublicKey {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.check(
            Uuid::parse_str(self.agent_id.trim()).is_ok(),
            "agent_id",
            "agent_id must be a UUID",
            "uuid_parsing",
        );
        c.check(
            (1..=20).contains(&self.allowed_origins.len()),
            "allowed_origins",
            "allowed_origins holds 1 to 20 origins",
            "too_long",
        );
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if let Err(msg) = OriginPattern::parse(o) {
                c.push(FieldError {
                    loc: vec!["body".into(), "allowed_origins".into(), i.into()],
                    msg,
                    kind: "value_error".into(),
                });
            }
        }
        if let Some(name) = &self.name {
            c.len("name", name, 1, 100);
        }
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeyView {
    #[schema(value_type = String)]
    pub id: Uuid,
    /// Public by design: it goes into the page that embeds the widget.
    pub key: String,
    pub name: String,
    #[schema(value_type = String)]
    pub agent_id: Uuid,
    pub allowed_origins: Vec<String>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<PublicKey> for PublicKeyView {
    fn from(k: PublicKey) -> Self {
        Self {
            id: k.id,
            key: k.key,
            name: k.name,
            agent_id: k.agent_id,
            allowed_origins: k.allowed_origins,
            revoked_at: k.revoked_at,
            created_at: k.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeyList {
    pub success: bool,
    pub public_keys: Vec<PublicKeyView>,
    pub pagination: PageInfo,
}

/// Create a public widget key for one agent and a list of allowed origins.
#[utoipa::path(post, path = "/v1/public-keys", tag = "sdk", request_body = NewPublicKey, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = PublicKeyView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn create_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<NewPublicKey>,
) -> ApiResult<(StatusCode, Json<PublicKeyView>)> {
    require_admin(&caller, "public keys")?;
    let agent_id = path_id(body.agent_id.trim(), "Agent")?;
    state
        .store
        .get_agent(caller.company_id, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Agent"))?;
    let random = crate::auth::api_key::random_alphanumeric(32);
    let key = PublicKey {
        id: crate::store::new_id(),
        company_id: caller.company_id,
        agent_id,
        name: body.name.unwrap_or_else(|| "widget".into()),
        key: format!("{PUBLIC_PREFIX}{random}"),
        allowed_origins: body
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .collect(),
        revoked_at: None,
        created_at: crate::store::now(),
    };
    state.store.create_public_key(&key).await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

#[utoipa::path(get, path = "/v1/public-keys", tag = "sdk", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = PublicKeyList), (status = 401), (status = 422)))]
pub async fn list_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<PublicKeyList>> {
    let found = state
        .store
        .list_public_keys(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(PublicKeyList {
        success: true,
        public_keys: found.items.into_iter().map(Into::into).collect(),
        pagination: page.info(found.total),
    }))
}

/// Revoke a public key: `/v1/sdk/init` refuses it and its open sessions end at once.
#[utoipa::path(delete, path = "/v1/public-keys/{id}", tag = "sdk", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "Revoked"), (status = 401), (status = 403), (status = 404)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "public keys")?;
    let id = path_id(&id, "Public key")?;
    state
        .store
        .revoke_public_key(caller.company_id, id)
        .await
        .map_err(missing("Public key"))?;
    Ok(Json(json!({"success": true, "id": id, "revoked": true})))
}

/// The public key named by `header`, live, and the request's `Origin` among its allowed ones.
async fn widget_key(
    state: &AppState,
    headers: &HeaderMap,
    header_name: &str,
) -> ApiResult<(PublicKey, String)> {
    let raw = headers
        .get(header_name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| k.starts_with(PUBLIC_PREFIX))
        .ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "A public widget key (pk_…) is required in {header_name}"
            ))
        })?;
    let key = state
        .store
        .public_key_by_key(raw)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(ApiError::unauthorized)?;
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
        .ok_or_else(|| ApiError::Forbidden("An Origin header is required".into()))?;
    let allowed = key
        .allowed_origins
        .iter()
        .filter_map(|p| OriginPattern::parse(p).ok())
        .any(|p| p.matches(&origin));
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "Origin {origin} is not allowed for this key"
        )));
    }
    Ok((key, origin))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SdkSession {
    /// `sdk_…`: send it as `X-SDK-Token` to `/v1/chat` and `/v1/chat/stream`.
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    #[schema(value_type = String)]
    pub agent_id: Uuid,
    /// The `company_id` the chat requests carry.
    #[schema(value_type = String)]
    pub company_id: Uuid,
}

/// Exchange a public key (from an allowed origin) for a short-lived chat session token.
#[utoipa::path(post, path = "/v1/sdk/init", tag = "sdk",
    params(("X-Public-Key" = String, Header, description = "pk_…"), ("Origin" = String, Header)),
    responses((status = 200, body = SdkSession), (status = 401), (status = 403)))]
pub async fn init(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<SdkSession>> {
    let (key, origin) = widget_key(&state, &headers, "x-public-key").await?;
    let ttl = i64::try_from(state.config.sdk.token_ttl_seconds).unwrap_or(3600);
    let (token, claims) = state
        .jwt
        .issue_sdk(key.id, key.company_id, key.agent_id, &origin, ttl)
        .map_err(ApiError::internal)?;
    Ok(Json(SdkSession {
        token,
        expires_at: chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_default(),
        agent_id: key.agent_id,
        company_id: key.company_id,
    }))
}

/// The widget's public configuration of its agent.
#[utoipa::path(get, path = "/v1/sdk/config/{agent_id}", tag = "sdk",
    params(("agent_id" = String, Path), ("X-API-Key" = String, Header, description = "pk_…"), ("Origin" = String, Header)),
    responses((status = 200, body = Object), (status = 401), (status = 403), (status = 404)))]
pub async fn config(
    State(state): State<AppState>,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (key, _) = widget_key(&state, &headers, "x-api-key").await?;
    let agent_id = path_id(&agent_id, "Agent")?;
    if agent_id != key.agent_id {
        return Err(ApiError::not_found("Agent"));
    }
    let agent = state
        .store
        .get_agent(key.company_id, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Agent"))?;
    Ok(Json(json!({
        "agent_id": agent.id,
        "company_id": agent.company_id,
        "name": agent.spec.name,
        "channel": "web",
        "streaming": true,
        "endpoints": {"init": "/v1/sdk/init", "chat": "/v1/chat", "stream": "/v1/chat/stream"},
        "session_ttl_seconds": state.config.sdk.token_ttl_seconds,
    })))
}

/// The embeddable chat widget: `<script src="https://cortex.example.com/widget.js"
/// data-public-key="pk_…" data-agent-id="…" defer></script>`.
pub async fn widget_js() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../../assets/widget.js"),
    )
}
