//! HTTP: the only module that knows axum and the wire JSON. Routes, layers, the OpenAPI document.

pub mod actions;
pub mod agents;
pub mod auth;
pub mod cache;
pub mod chat;
pub mod connections;
pub mod cors;
pub mod error;
pub mod extract;
pub mod health;
pub mod knowledge;
pub mod limits;
pub mod me;
pub mod memory;
pub mod metrics;
pub mod portal;
pub mod runs;
pub mod sdk;
pub mod sse;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ApiResult, FieldError};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Cortex API", description = "Self-hosted, multi-tenant AI agent backend."),
    modifiers(&SecurityAddon),
    tags((name = "health"), (name = "auth"), (name = "portal"), (name = "agents"), (name = "actions"), (name = "chat"), (name = "knowledge"), (name = "memory"), (name = "cache"), (name = "sdk"), (name = "runs"))
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or ctx_ key")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// Every documented route, and the OpenAPI document generated from them.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::health_v1))
        .routes(routes!(health::detailed))
        .routes(routes!(me::me))
        .routes(routes!(metrics::prometheus))
        .routes(routes!(metrics::dashboard))
        .routes(routes!(portal::login))
        .routes(routes!(portal::create_key, portal::list_keys))
        .routes(routes!(portal::revoke_key))
        .routes(routes!(agents::create, agents::list))
        .routes(routes!(agents::get, agents::patch, agents::delete))
        .routes(routes!(agents::config))
        .routes(routes!(actions::create, actions::list))
        .routes(routes!(actions::get, actions::patch, actions::delete))
        .routes(routes!(actions::test))
        .routes(routes!(actions::import))
        .routes(routes!(connections::create, connections::list))
        .routes(routes!(
            connections::get,
            connections::patch,
            connections::delete
        ))
        .routes(routes!(chat::chat))
        .routes(routes!(chat::chat_stream))
        .routes(routes!(knowledge::create_source, knowledge::list_sources))
        .routes(routes!(knowledge::get_source, knowledge::delete_source))
        .routes(routes!(knowledge::list_documents))
        .routes(routes!(knowledge::delete_document))
        .routes(routes!(knowledge::ingest_file))
        .routes(routes!(knowledge::ingest_url))
        .routes(routes!(knowledge::ingest_documents))
        .routes(routes!(knowledge::reembed))
        .routes(routes!(knowledge::search))
        .routes(routes!(memory::query))
        .routes(routes!(memory::save))
        .routes(routes!(memory::delete_fact))
        .routes(routes!(cache::warm))
        .routes(routes!(cache::flush))
        .routes(routes!(cache::stats))
        .routes(routes!(sdk::create_key, sdk::list_keys))
        .routes(routes!(sdk::revoke_key))
        .routes(routes!(sdk::init))
        .routes(routes!(sdk::config))
        .routes(routes!(health::debug))
        .routes(routes!(health::redis))
        .routes(routes!(metrics::system))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::stop))
        .routes(routes!(runs::stream))
        .routes(routes!(runs::active))
        .routes(routes!(runs::thread_runs))
        .routes(routes!(runs::list_threads))
        .routes(routes!(
            runs::get_thread,
            runs::patch_thread,
            runs::delete_thread
        ))
        .routes(routes!(runs::thread_messages))
        .routes(routes!(runs::list_projects))
        .routes(routes!(runs::get_project, runs::delete_project))
        .routes(routes!(runs::list_files))
        .routes(routes!(runs::file_content))
        .routes(routes!(runs::billing))
        // Uploads are bounded by `limits.upload_bytes` in the handler, not by the JSON limit.
        .merge(
            OpenApiRouter::new()
                .routes(routes!(knowledge::upload))
                .routes(routes!(runs::start))
                .layer(DefaultBodyLimit::disable()),
        )
        .split_for_parts()
}

/// The OpenAPI document as served at `/openapi.json`.
pub fn openapi_json() -> String {
    document(&routes().1)
}

fn document(openapi: &utoipa::openapi::OpenApi) -> String {
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    merge_flattened_objects(&mut doc);
    document_scope_refusals(&mut doc);
    document_validation_errors(&mut doc);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Every operation of a scoped route family can answer `403` to an API key without the scope
/// (`auth::ROUTE_SCOPES`, checked by the authentication layer, not by the handler).
fn document_scope_refusals(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some((scope, _)) = auth::route_scope(path) else {
            continue;
        };
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(|r| r.as_object_mut())
            {
                responses.entry("403").or_insert_with(|| {
                    json!({"description": format!("The API key does not have the `{scope}` scope")})
                });
            }
        }
    }
}

/// Every operation that takes input (parameters or a body) can answer `422`: a malformed
/// parameter (`?limit=-1`), a body that does not validate, or text with a NUL character, which
/// `extract::reject_nul` refuses before any handler.
fn document_validation_errors(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let takes_input = operation
                .get("parameters")
                .and_then(|p| p.as_array())
                .is_some_and(|p| !p.is_empty())
                || operation.get("requestBody").is_some();
            if !takes_input {
                continue;
            }
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(|r| r.as_object_mut())
            {
                responses
                    .entry("422")
                    .or_insert_with(|| json!({"description": "Validation error"}));
            }
        }
    }
}

/// A response that flattens a request type (`ActionView` = `id` + `ActionDef` + timestamps) is
/// generated as `allOf` over the request's schema, which is closed (`additionalProperties:
/// false`, from `deny_unknown_fields`): no object can satisfy both parts. Such an `allOf` is
/// merged into one object schema with the properties and required fields of every part.
fn merge_flattened_objects(doc: &mut serde_json::Value) {
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(|s| s.as_object())
        .cloned()
    else {
        return;
    };
    let resolve = |part: &serde_json::Value| -> serde_json::Value {
        part.get("$ref")
            .and_then(|r| r.as_str())
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .and_then(|name| schemas.get(name))
            .cloned()
            .unwrap_or_else(|| part.clone())
    };
    let Some(targets) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    else {
        return;
    };
    for schema in targets.values_mut() {
        let Some(parts) = schema.get("allOf").and_then(|a| a.as_array()) else {
            continue;
        };
        let parts: Vec<serde_json::Value> = parts.iter().map(&resolve).collect();
        let closed = parts
            .iter()
            .any(|p| p.get("additionalProperties") == Some(&serde_json::Value::Bool(false)));
        if !closed || parts.iter().any(|p| p.get("properties").is_none()) {
            continue;
        }
        let mut properties = serde_json::Map::new();
        let mut required: Vec<serde_json::Value> = Vec::new();
        for part in &parts {
            if let Some(props) = part.get("properties").and_then(|p| p.as_object()) {
                properties.extend(props.clone());
            }
            for name in part
                .get("required")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
            {
                if !required.contains(name) {
                    required.push(name.clone());
                }
            }
        }
        let mut merged = json!({"type": "object", "properties": properties, "required": required});
        if let Some(description) = schema.get("description") {
            merged["description"] = description.clone();
        }
        *schema = merged;
    }
}

/// The complete application: routes, authentication, limits, CORS, request ids, logs.
pub fn router(state: AppState) -> Router {
    let (routes, openapi) = routes();
    let openapi = Arc::new(document(&openapi));
    let request_id = HeaderName::from_static("x-request-id");
    routes
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()) }
            }),
        )
        .route("/widget.js", axum::routing::get(sdk::widget_js))
        .route("/", axum::routing::get(ui::index))
        .route("/ui/{*path}", axum::routing::get(ui::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.limits.json_body_bytes))
        .layer(axum::middleware::from_fn(extract::reject_nul))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_auth))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::edge))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }).on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(cors::layer(&state.config.cors.allowed_origins)),
        )
        .with_state(state)
}

/// Serve the application on `listener` until `graceful` resolves (no new connections after it;
/// the caller bounds the drain of those in flight).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    graceful: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    axum::serve(
        // Small writes (SSE events) leave at once instead of waiting for Nagle's algorithm.
        listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(graceful)
    .await
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not found".into())
}

async fn method_not_allowed() -> Response {
    error::envelope(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed",
        json!("Method not allowed"),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked");
    ApiError::Internal("handler panicked".into()).into_response()
}
