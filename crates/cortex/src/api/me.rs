//! `GET /v1/me`: who is calling.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::Caller;
use crate::auth::Principal;

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub company_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub scopes: Vec<String>,
    /// `jwt` or `api_key`.
    pub auth: String,
}

/// The caller's identity as the server resolved it.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Me), (status = 401)))]
pub async fn me(Caller(id): Caller) -> Json<Me> {
    let (user_id, api_key_id, role, auth) = match id.principal {
        Principal::User { user_id, role } => {
            (Some(user_id), None, Some(role.as_str().to_string()), "jwt")
        }
        Principal::ApiKey { key_id } => (None, Some(key_id), None, "api_key"),
        // SDK sessions reach only the chat endpoints.
        Principal::Sdk { .. } => (None, None, None, "sdk"),
    };
    Json(Me {
        company_id: id.company_id,
        user_id,
        api_key_id,
        role,
        scopes: id.scopes,
        auth: auth.into(),
    })
}
