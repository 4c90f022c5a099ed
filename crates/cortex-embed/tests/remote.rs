//! OpenAI-compatible and Cohere embedders against in-test fake servers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cortex_embed::{
    CohereConfig, CohereEmbedder, EmbedError, Embedder, EmbedderRegistry, EmbeddingsConfig,
    OpenAiConfig, OpenAiEmbedder, dot,
};
use serde_json::{Value, json};

const DIM: usize = 8;

/// What the fake server saw and how it should misbehave.
#[derive(Default)]
struct Fake {
    requests: Vec<Value>,
    auth: Vec<Option<String>>,
    /// Statuses to answer before answering normally.
    fail_with: Vec<u16>,
    /// Delay every answer by this much.
    delay: Option<Duration>,
    /// Answer vectors of this dimension instead of DIM.
    wrong_dim: Option<usize>,
    /// Drop the last vector of each answer.
    drop_one: bool,
}

type Shared = Arc<Mutex<Fake>>;

/// A deterministic unnormalised vector for `text`: component 0 is the text length, component
/// 1 is `tag`, the others are 1.
fn vector_for(text: &str, tag: f32, dim: usize) -> Vec<f32> {
    let mut v = vec![1.0; dim];
    v[0] = text.len() as f32;
    v[1] = tag;
    v
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// Records the request and returns the error response to send, if any.
async fn record(state: &Shared, headers: &HeaderMap, body: &Value) -> Option<Response> {
    let delay = {
        let mut fake = state.lock().unwrap();
        fake.requests.push(body.clone());
        fake.auth.push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
        fake.delay
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut fake = state.lock().unwrap();
    if !fake.fail_with.is_empty() {
        let status = fake.fail_with.remove(0);
        let status = StatusCode::from_u16(status).unwrap();
        return Some((status, Json(json!({"error": {"message": "fake failure"}}))).into_response());
    }
    None
}

async fn openai_handler(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(err) = record(&state, &headers, &body).await {
        return err;
    }
    let fake = state.lock().unwrap();
    let dim = fake.wrong_dim.unwrap_or(DIM);
    let inputs: Vec<String> = serde_json::from_value(body["input"].clone()).unwrap();
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_for(t, 0.0, dim)}))
        .collect();
    if fake.drop_one {
        data.pop();
    }
    // Answer out of order: the client must sort by index.
    data.reverse();
    Json(json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
        .into_response()
}

async fn cohere_handler(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(err) = record(&state, &headers, &body).await {
        return err;
    }
    if body["embedding_types"] != json!(["float"]) {
        return (
            StatusCode::BAD_REQUEST,
            "embedding_types must be [\"float\"]",
        )
            .into_response();
    }
    let tag = match body["input_type"].as_str() {
        Some("search_document") => 1.0,
        Some("search_query") => -1.0,
        _ => return (StatusCode::BAD_REQUEST, "bad input_type").into_response(),
    };
    let fake = state.lock().unwrap();
    let dim = fake.wrong_dim.unwrap_or(DIM);
    let texts: Vec<String> = serde_json::from_value(body["texts"].clone()).unwrap();
    let floats: Vec<Vec<f32>> = texts.iter().map(|t| vector_for(t, tag, dim)).collect();
    Json(json!({"id": "fake", "embeddings": {"float": floats}, "texts": texts, "meta": {}}))
        .into_response()
}

async fn start() -> (String, Shared) {
    let state: Shared = Arc::default();
    let router = Router::new()
        .route("/v1/embeddings", post(openai_handler))
        .route("/v2/embed", post(cohere_handler))
        .with_state(Arc::clone(&state));
    (serve(router).await, state)
}

fn openai_config(base: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new(format!("{base}/v1"), "fake-embed");
    c.api_key = Some("sk-test".to_owned());
    c.dimension = Some(DIM);
    c.batch_size = 2;
    c.max_retries = 0;
    c
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| "x".repeat(i + 1)).collect()
}

fn assert_matches_fake(v: &[f32], text: &str, tag: f32) {
    let mut expected = vector_for(text, tag, DIM);
    cortex_embed::l2_normalize(&mut expected);
    assert!(dot(v, &expected) > 0.99999, "{v:?} vs {expected:?}");
    assert!((dot(v, v) - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn openai_batches_orders_and_normalises() {
    let (base, state) = start().await;
    let e = OpenAiEmbedder::new(&openai_config(&base)).unwrap();
    assert_eq!(e.model_id(), "openai:fake-embed");
    assert_eq!(e.dimension(), DIM);
    let input = texts(5);
    let out = e.embed(&input).await.unwrap();
    assert_eq!(out.len(), 5);
    for (v, t) in out.iter().zip(&input) {
        assert_matches_fake(v, t, 0.0);
    }
    let fake = state.lock().unwrap();
    let sizes: Vec<usize> = fake
        .requests
        .iter()
        .map(|r| r["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert!(
        fake.auth
            .iter()
            .all(|a| a.as_deref() == Some("Bearer sk-test"))
    );
    assert_eq!(fake.requests[0]["model"], "fake-embed");
    assert_eq!(fake.requests[0]["encoding_format"], "float");
    assert!(fake.requests[0].get("dimensions").is_none());
}

#[tokio::test]
async fn openai_sends_dimensions_only_when_asked_and_no_auth_without_key() {
    let (base, state) = start().await;
    let mut config = openai_config(&base);
    config.send_dimensions = true;
    config.api_key = None;
    let e = OpenAiEmbedder::new(&config).unwrap();
    e.embed(&texts(1)).await.unwrap();
    let fake = state.lock().unwrap();
    assert_eq!(fake.requests[0]["dimensions"], json!(DIM));
    assert_eq!(fake.auth[0], None);
}

#[tokio::test]
async fn openai_retries_server_errors_then_succeeds() {
    let (base, state) = start().await;
    state.lock().unwrap().fail_with = vec![500, 429];
    let mut config = openai_config(&base);
    config.max_retries = 2;
    let e = OpenAiEmbedder::new(&config).unwrap();
    let out = e.embed(&texts(1)).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(state.lock().unwrap().requests.len(), 3);
}

#[tokio::test]
async fn openai_client_errors_are_not_retried() {
    let (base, state) = start().await;
    state.lock().unwrap().fail_with = vec![401];
    let mut config = openai_config(&base);
    config.max_retries = 3;
    let e = OpenAiEmbedder::new(&config).unwrap();
    let err = e.embed(&texts(1)).await.unwrap_err();
    match err {
        EmbedError::Provider { status, body } => {
            assert_eq!(status, 401);
            assert!(body.contains("fake failure"), "{body}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(state.lock().unwrap().requests.len(), 1);
}

#[tokio::test]
async fn openai_gives_up_after_max_retries() {
    let (base, state) = start().await;
    state.lock().unwrap().fail_with = vec![503, 503, 503];
    let mut config = openai_config(&base);
    config.max_retries = 1;
    let e = OpenAiEmbedder::new(&config).unwrap();
    let err = e.embed(&texts(1)).await.unwrap_err();
    assert!(
        matches!(err, EmbedError::Provider { status: 503, .. }),
        "{err}"
    );
    assert_eq!(state.lock().unwrap().requests.len(), 2);
}

#[tokio::test]
async fn openai_times_out() {
    let (base, state) = start().await;
    state.lock().unwrap().delay = Some(Duration::from_secs(5));
    let mut config = openai_config(&base);
    config.timeout_secs = 1;
    let e = OpenAiEmbedder::new(&config).unwrap();
    let started = Instant::now();
    let err = e.embed(&texts(1)).await.unwrap_err();
    assert!(matches!(err, EmbedError::Transport(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn openai_rejects_wrong_dimension_and_missing_vectors() {
    let (base, state) = start().await;
    state.lock().unwrap().wrong_dim = Some(DIM + 1);
    let e = OpenAiEmbedder::new(&openai_config(&base)).unwrap();
    let err = e.embed(&texts(1)).await.unwrap_err();
    assert!(
        matches!(err, EmbedError::DimensionMismatch { expected: DIM, actual } if actual == DIM + 1),
        "{err}"
    );
    {
        let mut fake = state.lock().unwrap();
        fake.wrong_dim = None;
        fake.drop_one = true;
    }
    let err = e.embed(&texts(2)).await.unwrap_err();
    assert!(matches!(err, EmbedError::InvalidResponse(_)), "{err}");
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error() {
    // Bind then drop a listener to get a local port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = OpenAiEmbedder::new(&openai_config(&format!("http://127.0.0.1:{port}"))).unwrap();
    let err = e.embed(&texts(1)).await.unwrap_err();
    assert!(matches!(err, EmbedError::Transport(_)), "{err}");
}

#[tokio::test]
async fn cohere_documents_and_queries_use_their_input_types() {
    let (base, state) = start().await;
    let mut config = CohereConfig::new(base.clone(), "embed-english-light-v3.0");
    config.api_key = Some("co-test".to_owned());
    config.dimension = Some(DIM);
    config.batch_size = 3;
    config.max_retries = 0;
    let e = CohereEmbedder::new(&config).unwrap();
    assert_eq!(e.model_id(), "cohere:embed-english-light-v3.0");
    let input = texts(4);
    let docs = e.embed(&input).await.unwrap();
    for (v, t) in docs.iter().zip(&input) {
        assert_matches_fake(v, t, 1.0);
    }
    let q = e.embed_query("xx").await.unwrap();
    assert_matches_fake(&q, "xx", -1.0);
    let fake = state.lock().unwrap();
    let kinds: Vec<&str> = fake
        .requests
        .iter()
        .map(|r| r["input_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["search_document", "search_document", "search_query"]
    );
    assert_eq!(fake.requests[0]["texts"].as_array().unwrap().len(), 3);
    assert_eq!(fake.requests[0]["model"], "embed-english-light-v3.0");
    assert!(fake.requests[0].get("output_dimension").is_none());
    assert!(
        fake.auth
            .iter()
            .all(|a| a.as_deref() == Some("Bearer co-test"))
    );
}

#[tokio::test]
async fn cohere_rejects_wrong_dimension() {
    let (base, state) = start().await;
    state.lock().unwrap().wrong_dim = Some(3);
    let mut config = CohereConfig::new(base, "embed-v4.0");
    config.send_dimensions = true;
    config.dimension = Some(256);
    config.max_retries = 0;
    let e = CohereEmbedder::new(&config).unwrap();
    let err = e.embed(&texts(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            EmbedError::DimensionMismatch {
                expected: 256,
                actual: 3
            }
        ),
        "{err}"
    );
    assert_eq!(
        state.lock().unwrap().requests[0]["output_dimension"],
        json!(256)
    );
}

#[tokio::test]
async fn registry_resolves_remote_embedders_by_name() {
    let (base, _state) = start().await;
    let config: EmbeddingsConfig = serde_json::from_value(json!({
        "default": "openai",
        "models": {
            "openai": {"kind": "openai", "base_url": format!("{base}/v1"), "model": "fake-embed",
                       "dimension": DIM, "api_key": "sk-test"},
            "cohere": {"kind": "cohere", "base_url": base, "model": "fake-co", "dimension": DIM}
        }
    }))
    .unwrap();
    let registry = EmbedderRegistry::from_config(&config).unwrap();
    let openai = registry.resolve("bge-m3").unwrap();
    assert_eq!(openai.model_id(), "openai:fake-embed");
    let v = openai.embed(&texts(3)).await.unwrap();
    assert_eq!(v.len(), 3);
    let cohere = registry.resolve("cohere").unwrap();
    assert_eq!(cohere.embed_query("q").await.unwrap().len(), DIM);
    let err = registry.resolve("local").unwrap_err();
    assert_eq!(err.configured, vec!["bge-m3", "cohere", "hash", "openai"]);
}

#[test]
fn invalid_base_url_is_a_config_error() {
    let err = OpenAiEmbedder::new(&OpenAiConfig::new(
        "localhost:8080",
        "text-embedding-3-small",
    ))
    .unwrap_err();
    assert!(matches!(err, EmbedError::Config(_)), "{err}");
}
