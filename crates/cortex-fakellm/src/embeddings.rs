//! `POST /v1/embeddings`: deterministic lexical hash embeddings in OpenAI's shape.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::chat::{
    ConnKill, Flavor, bad_request, drop_connection, error_response, json_response, pause, words,
};
use crate::state::{DisconnectGuard, Shared};
use crate::step::{Action, Endpoint};

/// Largest accepted `dimensions`.
const MAX_DIMENSIONS: u64 = 65_536;
/// Features added per token.
const FEATURES_PER_TOKEN: usize = 8;

fn fnv1a(seed: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn add_features(v: &mut [f32], seed: u64) {
    let dims = v.len() as u64;
    let mut state = seed;
    for _ in 0..FEATURES_PER_TOKEN {
        let r = splitmix(&mut state);
        let idx = usize::try_from(r % dims).unwrap_or(0);
        let sign = if r >> 63 == 1 { -1.0 } else { 1.0 };
        if let Some(x) = v.get_mut(idx) {
            *x += sign;
        }
    }
}

/// The deterministic embedding of `text` served by the fake.
///
/// Lexical feature hashing: the text is split into tokens at every non-alphanumeric
/// character and lower-cased; each token's FNV-1a hash seeds a SplitMix64 generator that
/// adds ±1 at 8 pseudo-random coordinates; the sum is L2-normalised. Texts sharing words
/// therefore have a positive cosine similarity, identical token multisets give identical
/// vectors, and a text without tokens hashes as a whole. `dimensions` below 1 is taken as 1.
pub fn embed_text(text: &str, dimensions: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dimensions.max(1)];
    let mut any = false;
    let mut buf = [0u8; 4];
    for token in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        any = true;
        let mut h = FNV_OFFSET;
        for c in token.chars().flat_map(char::to_lowercase) {
            h = fnv1a(h, c.encode_utf8(&mut buf).bytes());
        }
        add_features(&mut v, h);
    }
    if !any {
        add_features(&mut v, fnv1a(FNV_OFFSET ^ 0x5eed, text.bytes()));
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    } else if let Some(first) = v.first_mut() {
        // Every feature cancelled out: fall back to a unit vector.
        *first = 1.0;
    }
    v
}

/// The request's inputs as texts (token-id inputs become their ids joined by spaces).
fn inputs(input: &Value) -> Result<Vec<String>, &'static str> {
    fn ids(items: &[Value]) -> Option<String> {
        let mut out = String::new();
        for item in items {
            let n = item.as_u64()?;
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&n.to_string());
        }
        Some(out)
    }
    const INVALID: &str = "'input' must be a string, an array of strings, or token ids";
    match input {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => Err("'input' must not be empty"),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            ids(items).map(|s| vec![s]).ok_or(INVALID)
        }
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_array().and_then(|a| ids(a)).ok_or(INVALID))
            .collect(),
        _ => Err(INVALID),
    }
}

struct EmbeddingRequest {
    model: String,
    texts: Vec<String>,
    dimensions: Option<usize>,
    base64: bool,
}

fn parse(body: &Value) -> Result<EmbeddingRequest, String> {
    let obj = body
        .as_object()
        .ok_or("request body must be a JSON object")?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or("you must provide a model parameter")?;
    let texts = inputs(obj.get("input").ok_or("'input' is a required property")?)?;
    let dimensions = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(d) => match d.as_u64() {
            Some(n) if (1..=MAX_DIMENSIONS).contains(&n) => usize::try_from(n).ok(),
            _ => {
                return Err(format!(
                    "'dimensions' must be between 1 and {MAX_DIMENSIONS}"
                ));
            }
        },
    };
    let base64 = match obj.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("unsupported encoding_format '{other}'")),
    };
    Ok(EmbeddingRequest {
        model: model.to_owned(),
        texts,
        dimensions,
        base64,
    })
}

/// Handler of `POST /v1/embeddings` and `POST /embeddings`.
pub(crate) async fn embeddings(
    State(shared): State<Arc<Shared>>,
    Extension(kill): Extension<ConnKill>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let raw = Value::String(String::from_utf8_lossy(&body).into_owned());
            shared.record(method.as_str(), uri.path(), &headers, raw);
            return bad_request(Flavor::OpenAi, &format!("invalid JSON body: {e}"));
        }
    };
    let parsed = parse(&value);
    shared.record(method.as_str(), uri.path(), &headers, value);
    let req = match parsed {
        Ok(r) => r,
        Err(msg) => return bad_request(Flavor::OpenAi, &msg),
    };
    let step = shared.take_step(Endpoint::Embeddings, &req.model);
    let mut guard = DisconnectGuard::new(Arc::clone(&shared));
    let step_delay = step.as_ref().map_or(0, |s| s.delay_ms);
    pause(shared.default_latency() + Duration::from_millis(step_delay)).await;
    guard.disarm();
    match step.map(|s| s.action) {
        Some(Action::Error {
            status,
            message,
            error_type,
            code,
            retry_after,
        }) => {
            return error_response(
                Flavor::OpenAi,
                status,
                message.as_deref(),
                error_type.as_deref(),
                code.as_deref(),
                retry_after,
            );
        }
        Some(Action::Drop { .. }) => {
            drop_connection(&kill).await;
        }
        _ => {}
    }
    let dims = req
        .dimensions
        .unwrap_or_else(|| shared.embedding_dimensions());
    let mut tokens = 0u64;
    let data: Vec<Value> = req
        .texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            tokens += words(text).max(1);
            let v = embed_text(text, dims);
            let embedding = if req.base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_normalised_and_lexical() {
        let a = embed_text("What are your opening hours?", 256);
        let b = embed_text("what are your OPENING hours", 256);
        let c = embed_text("completely unrelated banana", 256);
        assert_eq!(a.len(), 256);
        assert_eq!(a, b);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert!(cos(&a, &embed_text("opening hours", 256)) > 0.4);
        assert!(cos(&a, &c).abs() < 0.3);
        let empty = embed_text("", 8);
        assert!((cos(&empty, &empty) - 1.0).abs() < 1e-5);
        assert_eq!(embed_text("x", 0).len(), 1);
    }

    #[test]
    fn input_forms() {
        assert_eq!(inputs(&json!("a")).unwrap(), vec!["a"]);
        assert_eq!(inputs(&json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        assert_eq!(inputs(&json!([1, 2])).unwrap(), vec!["1 2"]);
        assert_eq!(inputs(&json!([[1], [2, 3]])).unwrap(), vec!["1", "2 3"]);
        assert!(inputs(&json!([])).is_err());
        assert!(inputs(&json!(3)).is_err());
        assert!(inputs(&json!([1, "a"])).is_err());
    }
}
