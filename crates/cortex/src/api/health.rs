//! Health: liveness (`/health`, `/v1/health`) and dependency checks (`/health/detailed`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult};
use crate::state::AppState;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DetailedHealth {
    /// `ok` or `degraded`.
    pub status: String,
    pub version: String,
    /// Per dependency: `ok` or `error: …`.
    pub checks: BTreeMap<String, String>,
}

fn shutting_down(state: &AppState) -> ApiError {
    ApiError::ServiceUnavailable {
        message: "Server is shutting down".into(),
        detail: Some(json!({
            "status": "shutting_down",
            "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "instance_id": state.instance_id,
        })),
    }
}

/// Liveness; `503` with a `shutting_down` detail once the node is draining.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, description = "Shutting down")))]
pub async fn health(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    if state.is_shutting_down() {
        return Err(shutting_down(&state));
    }
    Ok(Json(Health {
        status: "ok".into(),
        version: VERSION.into(),
    }))
}

/// Same as `/health`.
#[utoipa::path(get, path = "/v1/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, description = "Shutting down")))]
pub async fn health_v1(state: State<AppState>) -> ApiResult<Json<Health>> {
    health(state).await
}

/// A real round trip to each dependency, each with a short timeout; `200` also when degraded.
#[utoipa::path(get, path = "/health/detailed", tag = "health", responses((status = 200, body = DetailedHealth)))]
pub async fn detailed(State(state): State<AppState>) -> Json<DetailedHealth> {
    let mut checks = BTreeMap::new();
    let db = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("error: {e}"),
        Err(_) => "error: timed out".to_string(),
    };
    checks.insert(state.store.backend().name().to_string(), db);
    if let Some(redis) = state.coord.ping().await {
        checks.insert(
            "redis".into(),
            redis.map_or_else(|e| format!("error: {e}"), |()| "ok".into()),
        );
    }
    let ok = checks.values().all(|v| v == "ok") && !state.is_shutting_down();
    Json(DetailedHealth {
        status: if ok { "ok" } else { "degraded" }.into(),
        version: VERSION.into(),
        checks,
    })
}
