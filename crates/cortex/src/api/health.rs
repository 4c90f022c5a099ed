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

pub(crate) fn shutting_down(state: &AppState) -> ApiError {
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
    // Unsandboxed is the operator's choice, not a fault.
    let sandbox = state.sandbox.health();
    let sandbox_ok = sandbox == "ok" || sandbox == "unsandboxed";
    checks.insert("sandbox".into(), sandbox);
    let ok = checks
        .iter()
        .all(|(k, v)| v == "ok" || (k == "sandbox" && sandbox_ok))
        && !state.is_shutting_down();
    Json(DetailedHealth {
        status: if ok { "ok" } else { "degraded" }.into(),
        version: VERSION.into(),
        checks,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DebugHealth {
    pub instance_id: String,
    pub active_runs_on_instance: usize,
    pub is_shutting_down: bool,
    pub timestamp: chrono::DateTime<Utc>,
}

/// This node's runs and lifecycle (company admins).
#[utoipa::path(get, path = "/v1/health/debug", tag = "health", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DebugHealth), (status = 401), (status = 403)))]
pub async fn debug(
    State(state): State<AppState>,
    super::extract::Caller(caller): super::extract::Caller,
) -> ApiResult<Json<DebugHealth>> {
    super::extract::require_admin(&caller, "instance details")?;
    Ok(Json(DebugHealth {
        instance_id: state.instance_id.clone(),
        active_runs_on_instance: state.runs.local_count(),
        is_shutting_down: state.is_shutting_down(),
        timestamp: Utc::now(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedisPool {
    pub size: u32,
    pub in_use: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedisHealth {
    /// `ok`, `error` or `not_configured`.
    pub status: String,
    pub latency_ms: Option<f64>,
    pub pool: RedisPool,
    /// Pings that timed out since this node started.
    pub timeouts: u64,
    pub instance_id: String,
    pub timestamp: chrono::DateTime<Utc>,
}

/// A real PING to Redis from this node.
#[utoipa::path(get, path = "/v1/health/redis", tag = "health", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = RedisHealth), (status = 401)))]
pub async fn redis(State(state): State<AppState>) -> Json<RedisHealth> {
    let started = std::time::Instant::now();
    let ping = state.coord.ping().await;
    let latency = started.elapsed().as_secs_f64() * 1000.0;
    let (status, latency_ms, size) = match ping {
        None => ("not_configured", None, 0),
        Some(Ok(())) => ("ok", Some((latency * 1000.0).round() / 1000.0), 1),
        Some(Err(_)) => ("error", None, 1),
    };
    Json(RedisHealth {
        status: status.into(),
        latency_ms,
        // One multiplexed connection per node carries every command.
        pool: RedisPool { size, in_use: 0 },
        timeouts: crate::coord::ping_timeouts(),
        instance_id: state.instance_id.clone(),
        timestamp: Utc::now(),
    })
}
