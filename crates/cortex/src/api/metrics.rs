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
    responses((status = 200, content_type = "text/plain", description = "Prometheus text format 0.0.4"), (status = 403)))]
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
    responses((status = 200, body = Object, description = "config_loading, model_routing, agent_compilation"), (status = 403)))]
pub async fn dashboard(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Value>> {
    may_read(&caller)?;
    Ok(Json(state.dashboard.snapshot()))
}
