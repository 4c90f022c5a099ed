//! `GET /v1/metrics` (Prometheus text) and `GET /v1/metrics/dashboard` (JSON).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use crate::auth::Identity;
use crate::state::AppState;
use crate::store::RunStore;

/// The figures are node-wide (every company's traffic, without tenant labels): admins and keys
/// with the `metrics` scope only.
fn may_read(caller: &Identity) -> ApiResult<()> {
    if caller.is_admin()
        || matches!(caller.principal, crate::auth::Principal::ApiKey { .. })
            && caller.has_scope("metrics")
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "Metrics are for company admins and keys with the metrics scope".into(),
        ))
    }
}

/// Prometheus text exposition of every `cortex_*` metric of this node.
#[utoipa::path(get, path = "/v1/metrics", tag = "health", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format 0.0.4"), (status = 401), (status = 403)))]
pub async fn prometheus(Caller(caller): Caller) -> ApiResult<Response> {
    may_read(&caller)?;
    let text = crate::telemetry::prometheus()
        .map(|h| h.render())
        .unwrap_or_default();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This node's config loading, model routing and agent compilation figures.
#[utoipa::path(get, path = "/v1/metrics/dashboard", tag = "health", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Object, description = "config_loading, model_routing, agent_compilation"), (status = 401), (status = 403)))]
pub async fn dashboard(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    may_read(&caller)?;
    Ok(Json(state.dashboard.snapshot()))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SystemMetrics {
    /// Running agent runs across all nodes.
    pub active_agent_runs: i64,
    /// Run event streams live in Redis (without Redis: the running runs, whose streams are
    /// served from their nodes and the database).
    pub active_stream_keys: i64,
    /// Streams in Redis whose run no longer exists in the database (should be 0).
    pub orphaned_streams: i64,
}

/// Runs and streams across every node.
#[utoipa::path(get, path = "/v1/metrics/system", tag = "health", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SystemMetrics), (status = 401), (status = 403)))]
pub async fn system(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<SystemMetrics>> {
    may_read(&caller)?;
    let running = state.store.running_total().await?;
    if !state.coord.is_redis() {
        return Ok(Json(SystemMetrics {
            active_agent_runs: running,
            active_stream_keys: running,
            orphaned_streams: 0,
        }));
    }
    let ids = state.coord.run_stream_ids().await;
    let known = state.store.existing_run_ids(&ids).await?;
    Ok(Json(SystemMetrics {
        active_agent_runs: running,
        active_stream_keys: ids.len() as i64,
        orphaned_streams: (ids.len() - known) as i64,
    }))
}
