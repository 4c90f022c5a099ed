//! Router, admin API and the accept loop.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::chat::{ConnKill, json_response};
use crate::state::Shared;
use crate::step::Step;

/// Largest accepted request body.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(crate::openai::chat_completions),
        )
        .route("/chat/completions", post(crate::openai::chat_completions))
        .route("/v1/messages", post(crate::anthropic::messages))
        .route("/messages", post(crate::anthropic::messages))
        .route("/v1/embeddings", post(crate::embeddings::embeddings))
        .route("/embeddings", post(crate::embeddings::embeddings))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/health", get(health))
        .route("/_admin/script", post(admin_script))
        .route("/_admin/reset", post(admin_reset))
        .route("/_admin/requests", get(admin_requests))
        .route("/_admin/stats", get(admin_stats))
        .route("/_admin/config", post(admin_config))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

async fn models() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": [
            {"id": "fake", "object": "model", "created": 0, "owned_by": "cortex-fakellm"}
        ]}),
    )
}

fn admin_error(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"message": message, "type": "invalid_request_error"}}),
    )
}

/// Parses the body of `POST /_admin/script`: an array of steps, `{"steps": [...]}`, or a
/// single step object.
pub(crate) fn parse_script(body: &[u8]) -> Result<Vec<Step>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut map) if map.contains_key("steps") => {
            if map.len() != 1 {
                return Err("a script object must only have `steps`".to_owned());
            }
            match map.remove("steps") {
                Some(Value::Array(items)) => items,
                _ => return Err("`steps` must be an array".to_owned()),
            }
        }
        obj @ Value::Object(_) => vec![obj],
        _ => return Err("expected an array of steps or {\"steps\": [...]}".to_owned()),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| Step::from_json(v).map_err(|e| format!("step {i}: {e}")))
        .collect()
}

async fn admin_script(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_script(&body) {
        Ok(steps) => {
            let queued = steps.len();
            let pending = shared.push_all(steps);
            json_response(
                StatusCode::OK,
                &json!({"queued": queued, "pending_steps": pending}),
            )
        }
        Err(e) => admin_error(&e),
    }
}

async fn admin_reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.reset();
    json_response(StatusCode::OK, &json!({"ok": true}))
}

async fn admin_requests(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &json!(shared.requests()))
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &json!(shared.stats()))
}

async fn admin_config(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let map = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        _ => return admin_error("expected a JSON object"),
    };
    if let Some(key) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "default_latency_ms" | "embedding_dimensions"))
    {
        return admin_error(&format!("unknown config field `{key}`"));
    }
    let latency = match map.get("default_latency_ms") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(ms) => Some(Duration::from_millis(ms)),
            None => return admin_error("`default_latency_ms` must be a non-negative integer"),
        },
    };
    let dims = match map.get("embedding_dimensions") {
        None => None,
        Some(v) => match v.as_u64().and_then(|d| usize::try_from(d).ok()) {
            Some(d) if (1..=65_536).contains(&d) => Some(d),
            _ => return admin_error("`embedding_dimensions` must be between 1 and 65536"),
        },
    };
    if let Some(l) = latency {
        shared.set_default_latency(l);
    }
    if let Some(d) = dims {
        shared.set_embedding_dimensions(d);
    }
    json_response(StatusCode::OK, &json!(shared.stats()))
}

/// Accepts connections until `shutdown` is cancelled. Each connection gets a kill switch
/// (a [`ConnKill`] request extension) that handlers use to drop it.
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors or similar: back off briefly.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        // Best effort: small SSE writes must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let kill = CancellationToken::new();
            let ext = ConnKill(kill.clone());
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ext.clone());
                router.clone().oneshot(req)
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = kill.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_body_forms() {
        let one = br#"{"type":"text","text":"a"}"#;
        assert_eq!(parse_script(one).unwrap().len(), 1);
        let arr = br#"[{"type":"text","text":"a"},{"type":"error","status":503,"model":"bad","forever":true}]"#;
        let steps = parse_script(arr).unwrap();
        assert_eq!(steps.len(), 2);
        assert!(steps[1].forever);
        let obj = br#"{"steps":[{"type":"drop"}]}"#;
        assert_eq!(parse_script(obj).unwrap().len(), 1);
        assert!(parse_script(br#"{"steps":[{"type":"drop"}],"x":1}"#).is_err());
        assert!(parse_script(br#"[{"type":"text"}]"#).is_err());
        assert!(parse_script(b"nope").is_err());
    }
}
