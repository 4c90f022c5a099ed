//! Remote embedders: OpenAI-compatible `/embeddings` and Cohere `/v2/embed`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::registry::{CohereConfig, OpenAiConfig, resolve_api_key};
use crate::vector::l2_normalize;
use crate::{EmbedError, Embedder};

/// Longest error body kept in [`EmbedError::Provider`].
const MAX_ERROR_BODY: usize = 500;
/// Longest wait honoured from a `Retry-After` header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Dimension of well-known OpenAI embedding models (used when none is configured).
fn known_openai_dimension(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

/// Dimension of well-known Cohere embedding models (used when none is configured).
fn known_cohere_dimension(model: &str) -> Option<usize> {
    match model {
        "embed-english-v3.0" | "embed-multilingual-v3.0" => Some(1024),
        "embed-english-light-v3.0" | "embed-multilingual-light-v3.0" => Some(384),
        "embed-v4.0" => Some(1536),
        _ => None,
    }
}

/// Shared HTTP plumbing: client with timeouts, bearer auth, bounded retries.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    max_retries: u32,
}

impl Http {
    fn new(
        base_url: &str,
        path: &str,
        api_key: Option<String>,
        timeout_secs: u64,
        max_retries: u32,
    ) -> Result<Self, EmbedError> {
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EmbedError::Config(format!(
                "base_url must start with http:// or https://, got '{base_url}'"
            )));
        }
        let timeout = Duration::from_secs(timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            client,
            url: format!("{base}{path}"),
            api_key,
            max_retries,
        })
    }

    /// POSTs `body`, retrying transport errors, 429 and 5xx with exponential backoff.
    async fn post_json(&self, body: &Value) -> Result<Value, EmbedError> {
        let mut attempt = 0u32;
        loop {
            let mut req = self.client.post(&self.url).json(body);
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            let backoff = Duration::from_millis(250u64.saturating_mul(1 << attempt.min(6)));
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return resp.json::<Value>().await.map_err(|e| {
                            EmbedError::InvalidResponse(format!("response is not JSON: {e}"))
                        });
                    }
                    let retryable =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                    let text = resp.text().await.unwrap_or_default();
                    if retryable && attempt < self.max_retries {
                        tracing::warn!(url = %self.url, %status, attempt, "embedding request failed, retrying");
                        tokio::time::sleep(retry_after.unwrap_or(backoff)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(EmbedError::Provider {
                        status: status.as_u16(),
                        body: truncate(&text, MAX_ERROR_BODY),
                    });
                }
                Err(e) => {
                    if attempt < self.max_retries {
                        tracing::warn!(url = %self.url, error = %e, attempt, "embedding request failed, retrying");
                        tokio::time::sleep(backoff).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(EmbedError::Transport(format!("{}: {e}", self.url)));
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn check_and_normalize(
    mut vectors: Vec<Vec<f32>>,
    expected_count: usize,
    dimension: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if vectors.len() != expected_count {
        return Err(EmbedError::InvalidResponse(format!(
            "asked for {expected_count} embeddings, got {}",
            vectors.len()
        )));
    }
    for v in &mut vectors {
        if v.len() != dimension {
            return Err(EmbedError::DimensionMismatch {
                expected: dimension,
                actual: v.len(),
            });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(EmbedError::InvalidResponse(
                "embedding contains a non-finite value".to_owned(),
            ));
        }
        l2_normalize(v);
    }
    Ok(vectors)
}

/// What the OpenAI-compatible and Cohere clients share: the HTTP client, the model and its
/// dimension, and the batching.
#[derive(Clone)]
struct Remote {
    http: Http,
    model: String,
    model_id: String,
    dimension: usize,
    send_dimensions: bool,
    batch_size: usize,
}

struct RemoteSpec<'a> {
    kind: &'static str,
    path: &'static str,
    base_url: &'a str,
    api_key: Option<&'a str>,
    api_key_env: Option<&'a str>,
    model: &'a str,
    dimension: Option<usize>,
    known_dimension: fn(&str) -> Option<usize>,
    send_dimensions: bool,
    batch_size: usize,
    timeout_secs: u64,
    max_retries: u32,
}

impl Remote {
    fn new(spec: RemoteSpec<'_>) -> Result<Self, EmbedError> {
        let kind = spec.kind;
        if spec.model.trim().is_empty() {
            return Err(EmbedError::Config(format!("{kind} embedder needs a model")));
        }
        let dimension = spec
            .dimension
            .or_else(|| (spec.known_dimension)(spec.model))
            .ok_or_else(|| {
                EmbedError::Config(format!(
                    "{kind} embedder model '{}' needs a configured dimension",
                    spec.model
                ))
            })?;
        if dimension == 0 {
            return Err(EmbedError::Config("dimension must be positive".to_owned()));
        }
        let api_key = resolve_api_key(spec.api_key, spec.api_key_env)?;
        let http = Http::new(
            spec.base_url,
            spec.path,
            api_key,
            spec.timeout_secs,
            spec.max_retries,
        )?;
        Ok(Self {
            http,
            model: spec.model.to_owned(),
            model_id: format!("{kind}:{}", spec.model),
            dimension,
            send_dimensions: spec.send_dimensions,
            batch_size: spec.batch_size,
        })
    }

    fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("url", &self.http.url)
            .field("model_id", &self.model_id)
            .field("dimension", &self.dimension)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// An OpenAI-compatible `/embeddings` endpoint (`openai`): OpenAI, Azure-style proxies,
/// Hugging Face TEI, Ollama, vLLM, LiteLLM, ….
///
/// Texts are sent in batches of `batch_size` (default 64) as
/// `{"model", "input": [...], "encoding_format": "float"}` (plus `"dimensions"` when
/// `send_dimensions` is set); the answer's `data[].embedding` are put back in `index` order,
/// checked against the declared dimension and L2-normalised. Requests time out
/// (`timeout_secs`, default 30) and 429/5xx/transport failures are retried `max_retries`
/// times (default 2) with exponential backoff or the server's `Retry-After`.
///
/// The model id is `openai:{model}`.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    remote: Remote,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.remote.debug("OpenAiEmbedder", f)
    }
}

impl OpenAiEmbedder {
    /// Builds the client. The dimension comes from the configuration, or from the known
    /// OpenAI models (`text-embedding-3-small` 1536, `-3-large` 3072, `ada-002` 1536);
    /// any other model without a configured dimension is a configuration error.
    pub fn new(config: &OpenAiConfig) -> Result<Self, EmbedError> {
        let remote = Remote::new(RemoteSpec {
            kind: "openai",
            path: "/embeddings",
            base_url: &config.base_url,
            api_key: config.api_key.as_deref(),
            api_key_env: config.api_key_env.as_deref(),
            model: &config.model,
            dimension: config.dimension,
            known_dimension: known_openai_dimension,
            send_dimensions: config.send_dimensions,
            batch_size: config.batch_size.max(1),
            timeout_secs: config.timeout_secs,
            max_retries: config.max_retries,
        })?;
        Ok(Self { remote })
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut body = json!({
            "model": self.remote.model,
            "input": texts,
            "encoding_format": "float",
        });
        if self.remote.send_dimensions {
            body["dimensions"] = json!(self.remote.dimension);
        }
        let value = self.remote.http.post_json(&body).await?;
        let parsed: OpenAiResponse = serde_json::from_value(value)
            .map_err(|e| EmbedError::InvalidResponse(format!("unexpected shape: {e}")))?;
        let mut data = parsed.data;
        data.sort_by_key(|d| d.index);
        if data.iter().enumerate().any(|(i, d)| d.index != i) {
            return Err(EmbedError::InvalidResponse(
                "embedding indices are not 0..n".to_owned(),
            ));
        }
        check_and_normalize(
            data.into_iter().map(|d| d.embedding).collect(),
            texts.len(),
            self.remote.dimension,
        )
    }
}

#[derive(Deserialize)]
struct OpenAiResponse {
    data: Vec<OpenAiDatum>,
}

#[derive(Deserialize)]
struct OpenAiDatum {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.remote.model_id
    }

    fn dimension(&self) -> usize {
        self.remote.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.remote.batch_size) {
            out.extend(self.embed_batch(batch).await?);
        }
        Ok(out)
    }
}

/// Cohere's embed API v2 (`cohere`): `POST {base_url}/v2/embed`.
///
/// Documents are sent with `input_type: "search_document"`, queries
/// ([`Embedder::embed_queries`]) with `"search_query"`, always with
/// `embedding_types: ["float"]` and `truncate: "END"`, in batches of `batch_size` (default
/// 96, Cohere's maximum). `output_dimension` is sent when `send_dimensions` is set
/// (embed-v4.0). Timeouts and retries as for [`OpenAiEmbedder`].
///
/// The model id is `cohere:{model}`.
#[derive(Clone)]
pub struct CohereEmbedder {
    remote: Remote,
}

impl std::fmt::Debug for CohereEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.remote.debug("CohereEmbedder", f)
    }
}

impl CohereEmbedder {
    /// Builds the client. The dimension comes from the configuration, or from the known
    /// Cohere models (v3 1024, v3 light 384, v4 1536); any other model without a configured
    /// dimension is a configuration error.
    pub fn new(config: &CohereConfig) -> Result<Self, EmbedError> {
        let remote = Remote::new(RemoteSpec {
            kind: "cohere",
            path: "/v2/embed",
            base_url: &config.base_url,
            api_key: config.api_key.as_deref(),
            api_key_env: config.api_key_env.as_deref(),
            model: &config.model,
            dimension: config.dimension,
            known_dimension: known_cohere_dimension,
            send_dimensions: config.send_dimensions,
            batch_size: config.batch_size.clamp(1, 96),
            timeout_secs: config.timeout_secs,
            max_retries: config.max_retries,
        })?;
        Ok(Self { remote })
    }

    async fn embed_kind(
        &self,
        texts: &[String],
        input_type: &str,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.remote.batch_size) {
            let mut body = json!({
                "model": self.remote.model,
                "texts": batch,
                "input_type": input_type,
                "embedding_types": ["float"],
                "truncate": "END",
            });
            if self.remote.send_dimensions {
                body["output_dimension"] = json!(self.remote.dimension);
            }
            let value = self.remote.http.post_json(&body).await?;
            let parsed: CohereResponse = serde_json::from_value(value)
                .map_err(|e| EmbedError::InvalidResponse(format!("unexpected shape: {e}")))?;
            out.extend(check_and_normalize(
                parsed.embeddings.float,
                batch.len(),
                self.remote.dimension,
            )?);
        }
        Ok(out)
    }
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: CohereEmbeddings,
}

#[derive(Deserialize)]
struct CohereEmbeddings {
    float: Vec<Vec<f32>>,
}

#[async_trait]
impl Embedder for CohereEmbedder {
    fn model_id(&self) -> &str {
        &self.remote.model_id
    }

    fn dimension(&self) -> usize {
        self.remote.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_kind(texts, "search_document").await
    }

    async fn embed_queries(&self, queries: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_kind(queries, "search_query").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }

    #[test]
    fn wrong_count_and_dimension_are_errors() {
        assert!(matches!(
            check_and_normalize(vec![vec![1.0, 0.0]], 2, 2),
            Err(EmbedError::InvalidResponse(_))
        ));
        assert!(matches!(
            check_and_normalize(vec![vec![1.0, 0.0, 0.0]], 1, 2),
            Err(EmbedError::DimensionMismatch {
                expected: 2,
                actual: 3
            })
        ));
        let ok = check_and_normalize(vec![vec![3.0, 4.0]], 1, 2).unwrap();
        assert!((ok[0][0] - 0.6).abs() < 1e-6);
    }
}
