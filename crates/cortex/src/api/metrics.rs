//! `GET /v1/metrics` (Prometheus text) and `GET /v1/metrics/dashboard` (JSON), and the layer
//! that counts every HTTP request by route template and status.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
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

/// Count the request by method, route template (never the raw path: ids would explode the
/// label set) and status, and time it to the response head.
pub async fn record_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("cortex_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("cortex_http_request_duration_ms", "route" => route)
        .record(started.elapsed().as_secs_f64() * 1000.0);
    resp
}
