//! Shared server state: the script queue, the request log and counters.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::step::{Endpoint, Step};

/// Server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind (default `127.0.0.1:0`, an ephemeral port).
    pub bind: SocketAddr,
    /// Delay added before every model response (default zero).
    pub default_latency: Duration,
    /// Delay between streamed SSE events when the step does not set one (default zero).
    pub chunk_delay: Duration,
    /// Embedding dimension when the request has no `dimensions` (default 1536).
    pub embedding_dimensions: usize,
    /// Maximum number of requests kept in the log; the oldest are evicted first.
    /// `0` disables recording (default 100,000).
    pub max_recorded: usize,
    /// Print one line per model request to stderr (default off).
    pub log_requests: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            default_latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            embedding_dimensions: 1536,
            max_recorded: 100_000,
            log_requests: false,
        }
    }
}

/// One request received on a model endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers with lower-case names; repeated headers are joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The JSON body; a JSON string holding the raw text when the body was not JSON.
    pub body: Value,
}

impl RecordedRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The `model` field of the body.
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The `messages` array of the body (chat and Anthropic messages requests).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The `tools` array of the body.
    pub fn tools(&self) -> &[Value] {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Whether the request asked for a streamed response.
    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }
}

/// Counters and settings as reported by `GET /_admin/stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Model requests received since start or the last reset (including evicted ones).
    pub requests: u64,
    /// Requests currently held in the log.
    pub recorded: usize,
    /// Responses abandoned by the client before they were complete.
    pub disconnects: u64,
    /// Scripted steps not yet consumed.
    pub pending_steps: usize,
    /// Current default latency in milliseconds.
    pub default_latency_ms: u64,
    /// Current default embedding dimension.
    pub embedding_dimensions: usize,
}

struct Inner {
    script: VecDeque<Step>,
    records: VecDeque<RecordedRequest>,
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    config: Config,
    default_latency_ns: AtomicU64,
    embedding_dimensions: AtomicUsize,
    requests: AtomicU64,
    disconnects: AtomicU64,
    seq: AtomicU64,
    pub(crate) changed: Notify,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            inner: Mutex::new(Inner {
                script: VecDeque::new(),
                records: VecDeque::new(),
            }),
            default_latency_ns: AtomicU64::new(nanos(config.default_latency)),
            embedding_dimensions: AtomicUsize::new(config.embedding_dimensions.max(1)),
            config,
            requests: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// A process-unique sequence number for response ids.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn push(&self, step: Step) {
        self.lock().script.push_back(step);
    }

    pub(crate) fn push_all(&self, steps: Vec<Step>) -> usize {
        let mut inner = self.lock();
        inner.script.extend(steps);
        inner.script.len()
    }

    pub(crate) fn clear_script(&self) {
        self.lock().script.clear();
    }

    pub(crate) fn pending_steps(&self) -> usize {
        self.lock().script.len()
    }

    /// Takes the first step (in queue order) matching the endpoint and model.
    pub(crate) fn take_step(&self, endpoint: Endpoint, model: &str) -> Option<Step> {
        let mut inner = self.lock();
        if inner.script.is_empty() {
            return None;
        }
        let idx = inner
            .script
            .iter()
            .position(|s| s.matches(endpoint, model))?;
        let step = inner.script.get_mut(idx)?;
        if step.forever {
            return Some(step.clone());
        }
        if step.times > 1 {
            step.times -= 1;
            let mut taken = step.clone();
            taken.times = 1;
            return Some(taken);
        }
        inner.script.remove(idx)
    }

    pub(crate) fn record(&self, method: &str, path: &str, headers: &HeaderMap, body: Value) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.config.log_requests {
            let model = body.get("model").and_then(Value::as_str).unwrap_or("-");
            eprintln!("cortex-fakellm: {method} {path} model={model}");
        }
        let max = self.config.max_recorded;
        if max > 0 {
            let mut map: BTreeMap<String, String> = BTreeMap::new();
            for (name, value) in headers {
                let value = String::from_utf8_lossy(value.as_bytes());
                map.entry(name.as_str().to_owned())
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(&value);
                    })
                    .or_insert_with(|| value.into_owned());
            }
            let rec = RecordedRequest {
                method: method.to_owned(),
                path: path.to_owned(),
                headers: map,
                body,
            };
            let mut inner = self.lock();
            while inner.records.len() >= max {
                inner.records.pop_front();
            }
            inner.records.push_back(rec);
        }
        self.changed.notify_waiters();
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().records.iter().cloned().collect()
    }

    pub(crate) fn last_request(&self) -> Option<RecordedRequest> {
        self.lock().records.back().cloned()
    }

    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn add_disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    pub(crate) fn default_latency(&self) -> Duration {
        Duration::from_nanos(self.default_latency_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn set_default_latency(&self, d: Duration) {
        self.default_latency_ns.store(nanos(d), Ordering::Relaxed);
    }

    pub(crate) fn embedding_dimensions(&self) -> usize {
        self.embedding_dimensions.load(Ordering::Relaxed)
    }

    pub(crate) fn set_embedding_dimensions(&self, dims: usize) {
        self.embedding_dimensions
            .store(dims.max(1), Ordering::Relaxed);
    }

    /// Clears script, log and counters; restores the configured latency and dimension.
    pub(crate) fn reset(&self) {
        {
            let mut inner = self.lock();
            inner.script.clear();
            inner.records.clear();
        }
        self.requests.store(0, Ordering::Relaxed);
        self.disconnects.store(0, Ordering::Relaxed);
        self.set_default_latency(self.config.default_latency);
        self.set_embedding_dimensions(self.config.embedding_dimensions);
        self.changed.notify_waiters();
    }

    pub(crate) fn stats(&self) -> Stats {
        let (recorded, pending_steps) = {
            let inner = self.lock();
            (inner.records.len(), inner.script.len())
        };
        Stats {
            requests: self.request_count(),
            recorded,
            disconnects: self.disconnects(),
            pending_steps,
            default_latency_ms: u64::try_from(self.default_latency().as_millis())
                .unwrap_or(u64::MAX),
            embedding_dimensions: self.embedding_dimensions(),
        }
    }

    /// Waits until `cond` holds or `timeout` passes; returns whether it holds.
    pub(crate) async fn wait_until(&self, timeout: Duration, cond: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if cond(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return cond(self);
            }
        }
    }
}

/// Counts a disconnect when dropped while still armed (the response was abandoned).
pub(crate) struct DisconnectGuard {
    shared: std::sync::Arc<Shared>,
    armed: bool,
}

impl DisconnectGuard {
    pub(crate) fn new(shared: std::sync::Arc<Shared>) -> Self {
        Self {
            shared,
            armed: true,
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.add_disconnect();
        }
    }
}
