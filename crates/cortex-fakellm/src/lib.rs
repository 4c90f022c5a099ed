//! `cortex-fakellm`: a scripted, OpenAI-compatible (and Anthropic-compatible) fake LLM
//! server for integration tests (in-process, through [`FakeLlm`]) and benchmarks (as the
//! `cortex-fakellm` binary, scripted through the admin HTTP API).
//!
//! # Endpoints
//! - `POST /v1/chat/completions` (also `/chat/completions`): OpenAI chat completions,
//!   blocking JSON or `stream: true` SSE (`data: {chunk}` events, `data: [DONE]`,
//!   `choices[0].delta.content`, `delta.tool_calls[{index, id, type, function{name,
//!   arguments}}]` with arguments split over several chunks, a final `usage` chunk with
//!   `choices: []` when `stream_options.include_usage` is true).
//! - `POST /v1/messages` (also `/messages`): Anthropic Messages, blocking or streaming
//!   (`message_start`, `content_block_start`/`_delta`/`_stop`, `ping`, `message_delta`,
//!   `message_stop`); `model`, `max_tokens` and `messages` are required.
//! - `POST /v1/embeddings` (also `/embeddings`): [`embed_text`] vectors; `input` is a
//!   string, an array of strings or token ids; honours `dimensions` and
//!   `encoding_format: "base64"`.
//! - `GET /v1/models`, `GET /health` (`{"status":"ok"}`).
//! - Admin: `POST /_admin/script`, `POST /_admin/reset`, `GET /_admin/requests`,
//!   `GET /_admin/stats`, `POST /_admin/config` (see below).
//!
//! # Default behaviour
//! With no matching scripted step a chat request is answered with
//! `"Echo: " + <text of the last user message>` (`finish_reason: "stop"`), streamed one
//! word per delta. Usage: `prompt_tokens` = Σ over messages (3 + whitespace-separated words
//! in every string value except under the keys `role`, `type`, `id`, `tool_call_id`,
//! `tool_use_id`, `cache_control`), plus the words of `system` for Anthropic;
//! `completion_tokens` = words of the text + Σ over tool calls (1 + words of the arguments).
//! Every model response waits the default latency first ([`Config::default_latency`],
//! [`Handle::set_default_latency`], `--latency-ms`).
//!
//! # Scripting
//! A script is a queue of [`Step`]s. A request consumes the **first step in queue order**
//! whose `model` is absent or equal to the request's `model`, and whose `endpoint` matches
//! (`chat` covers chat completions and messages; `embeddings`; `any`). A step with
//! `times: n` answers n requests; `forever: true` is never removed. Without a match the
//! default behaviour answers. Invalid requests (bad JSON, missing fields) get a `400` and
//! consume nothing.
//!
//! Step JSON (the [`Step`] serde form; `type` selects the [`Action`]):
//! ```json
//! {"type": "text", "text": "Hello"}
//! {"type": "tool_calls", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_1"}], "text": "optional text first"}
//! {"type": "error", "status": 429, "message": "slow down", "error_type": "rate_limit_error", "code": "rate_limit_exceeded", "retry_after": 2}
//! {"type": "drop"}
//! {"type": "drop", "after_chunks": 3}
//! {"type": "default"}
//! ```
//! with the optional common fields `"model": "gpt-x"`, `"endpoint": "chat" | "embeddings" |
//! "any"` (default `chat`), `"delay_ms": 0`, `"chunk_delay_ms": 0`, `"times": 1`,
//! `"forever": false`, `"usage": {"prompt_tokens": 10, "completion_tokens": 5}`,
//! `"finish_reason": "length"`. Unknown fields are rejected. Tool-call `arguments` given as
//! a JSON string are sent verbatim (so malformed arguments can be scripted). On the
//! embeddings endpoint only `error`, `drop` and the delays have an effect.
//!
//! # Admin HTTP API
//! - `POST /_admin/script` — body: an array of steps, `{"steps": [...]}` or one step
//!   object; appended to the queue (all or nothing) → `{"queued": n, "pending_steps": m}`,
//!   `400 {"error": {"message", "type"}}` on an invalid step.
//! - `POST /_admin/reset` → `{"ok": true}`: clears script, request log and counters, and
//!   restores the configured latency and embedding dimension.
//! - `GET /_admin/requests` → JSON array of [`RecordedRequest`]
//!   (`{"method", "path", "headers": {lower-case name: value}, "body"}`), oldest first.
//! - `GET /_admin/stats` → [`Stats`] (`{"requests", "recorded", "disconnects",
//!   "pending_steps", "default_latency_ms", "embedding_dimensions"}`).
//! - `POST /_admin/config` `{"default_latency_ms"?: u64, "embedding_dimensions"?: u64}` →
//!   the stats after the change.
//!
//! # Example
//! ```no_run
//! use cortex_fakellm::{FakeLlm, Step};
//! use serde_json::json;
//! # async fn demo() {
//! let llm = FakeLlm::start().await;
//! llm.push(Step::tool_call("lookup_order", json!({"order_id": "A1"})));
//! llm.push(Step::text("Your order has shipped."));
//! llm.push_for_model("bad", Step::error(503, "unavailable").forever());
//! // ... point the code under test at llm.base_url() ...
//! assert_eq!(llm.requests().len(), 0);
//! # }
//! ```

mod anthropic;
mod chat;
mod embeddings;
mod openai;
mod server;
mod state;
mod step;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use chat::ECHO_PREFIX;
pub use embeddings::embed_text;
pub use state::{Config, RecordedRequest, Stats};
pub use step::{Action, Endpoint, Step, ToolCall, Usage};

use state::Shared;

/// A running fake server. Shuts down (listener and open connections) when dropped.
///
/// Dereferences to [`Handle`], which carries every scripting and inspection method.
pub struct FakeLlm {
    handle: Handle,
    shutdown: CancellationToken,
}

/// A cloneable control handle to a running fake server (it does not keep it alive).
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
}

impl FakeLlm {
    /// Starts a server on `127.0.0.1:0` with the default [`Config`] on the current tokio
    /// runtime.
    ///
    /// # Panics
    /// If no local port can be bound (use [`FakeLlm::start_with`] to handle that).
    pub async fn start() -> FakeLlm {
        match Self::start_with(Config::default()).await {
            Ok(llm) => llm,
            Err(e) => panic!("cortex-fakellm: cannot bind 127.0.0.1:0: {e}"),
        }
    }

    /// Starts a server with `config` on the current tokio runtime.
    pub async fn start_with(config: Config) -> std::io::Result<FakeLlm> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let shutdown = CancellationToken::new();
        let router = server::router(Arc::clone(&shared));
        tokio::spawn(server::serve(listener, router, shutdown.clone()));
        Ok(FakeLlm {
            handle: Handle {
                shared,
                addr,
                base_url: format!("http://{addr}/v1"),
            },
            shutdown,
        })
    }

    /// A cloneable control handle.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the server now (same as dropping it).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Deref for FakeLlm {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Handle {
    /// The OpenAI-style base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` + `path` (e.g. `url("/_admin/requests")`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Appends a step to the script.
    ///
    /// # Panics
    /// If the step is invalid (see [`Step::validate`]).
    pub fn push(&self, step: Step) {
        if let Err(e) = step.validate() {
            panic!("cortex-fakellm: invalid step: {e}");
        }
        self.shared.push(step);
    }

    /// Appends a step that only requests for `model` consume.
    ///
    /// # Panics
    /// If the step is invalid (see [`Step::validate`]).
    pub fn push_for_model(&self, model: impl Into<String>, step: Step) {
        self.push(step.for_model(model));
    }

    /// Appends several steps in order.
    ///
    /// # Panics
    /// If a step is invalid (see [`Step::validate`]); then none is appended.
    pub fn push_all(&self, steps: impl IntoIterator<Item = Step>) {
        let steps: Vec<Step> = steps.into_iter().collect();
        for step in &steps {
            if let Err(e) = step.validate() {
                panic!("cortex-fakellm: invalid step: {e}");
            }
        }
        self.shared.push_all(steps);
    }

    /// Number of scripted steps not consumed yet (a `forever` step counts as one).
    pub fn pending_steps(&self) -> usize {
        self.shared.pending_steps()
    }

    /// Removes every scripted step (the log and counters are kept).
    pub fn clear_script(&self) {
        self.shared.clear_script();
    }

    /// Sets the delay added before every model response.
    pub fn set_default_latency(&self, latency: Duration) {
        self.shared.set_default_latency(latency);
    }

    /// The current default latency.
    pub fn default_latency(&self) -> Duration {
        self.shared.default_latency()
    }

    /// Sets the embedding dimension used when a request has no `dimensions` (min 1).
    pub fn set_embedding_dimensions(&self, dimensions: usize) {
        self.shared.set_embedding_dimensions(dimensions);
    }

    /// Every recorded model request (chat, messages, embeddings), oldest first. Admin,
    /// health and models requests are not recorded.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Recorded requests to the chat endpoints (`…/chat/completions`, `…/messages`).
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/chat/completions") || r.path.ends_with("/messages"))
            .collect()
    }

    /// Recorded requests to the embeddings endpoint.
    pub fn embedding_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/embeddings"))
            .collect()
    }

    /// The most recent recorded request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.last_request()
    }

    /// Model requests received since start or the last reset (including any evicted from
    /// the log by [`Config::max_recorded`]).
    pub fn request_count(&self) -> u64 {
        self.shared.request_count()
    }

    /// Responses abandoned by the client before completion: a disconnect during the
    /// pre-answer delay or in the middle of a stream. Scripted drops do not count.
    pub fn disconnects(&self) -> u64 {
        self.shared.disconnects()
    }

    /// Waits until at least `n` model requests were received; returns `false` on timeout.
    pub async fn wait_for_requests(&self, n: u64, timeout: Duration) -> bool {
        self.shared
            .wait_until(timeout, |s| s.request_count() >= n)
            .await
    }

    /// Waits until at least `n` disconnects were observed; returns `false` on timeout.
    pub async fn wait_for_disconnects(&self, n: u64, timeout: Duration) -> bool {
        self.shared
            .wait_until(timeout, |s| s.disconnects() >= n)
            .await
    }

    /// Counters and settings.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Clears the script, the request log and the counters, and restores the configured
    /// default latency and embedding dimension.
    pub fn reset(&self) {
        self.shared.reset();
    }
}
