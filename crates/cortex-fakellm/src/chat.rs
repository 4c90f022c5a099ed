//! Shared machinery of the chat endpoints: request summary, reply planning, delays,
//! SSE event streams, connection drops and error bodies.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_core::Stream;
use serde_json::{Value, json};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::state::{DisconnectGuard, Shared};
use crate::step::{Action, Step, ToolCall, Usage};

/// Per-connection kill switch: cancelling it closes the TCP connection at once.
#[derive(Clone)]
pub(crate) struct ConnKill(pub(crate) CancellationToken);

/// Wire dialect of a chat endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    OpenAi,
    Anthropic,
}

/// What the handlers extract from a chat request before it is recorded.
#[derive(Debug)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) last_user_text: String,
    pub(crate) prompt_tokens: u64,
}

/// A resolved answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) text: Option<String>,
    pub(crate) tool_calls: Vec<ToolCall>,
    /// OpenAI finish reason (`stop`, `tool_calls`, `length`, …).
    pub(crate) finish_reason: String,
    pub(crate) usage: Usage,
}

/// Prefix of the default reply.
pub const ECHO_PREFIX: &str = "Echo: ";

/// Whitespace-separated word count.
pub(crate) fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Words in every string leaf of `v`, skipping structural keys.
pub(crate) fn words_in_value(v: &Value) -> u64 {
    match v {
        Value::String(s) => words(s),
        Value::Array(items) => items.iter().map(words_in_value).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "role" | "type" | "id" | "tool_call_id" | "tool_use_id" | "cache_control"
                )
            })
            .map(|(_, v)| words_in_value(v))
            .sum(),
        _ => 0,
    }
}

/// Text of a message `content`: a string, or the `text` of its parts joined by a space.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let mut out = String::new();
            for text in parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
            {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(text);
            }
            out
        }
        _ => String::new(),
    }
}

/// Splits text into word-sized pieces (each with its leading whitespace); the pieces
/// concatenate back to the text.
pub(crate) fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_ws = true;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        // A piece ends where whitespace follows a word; the whitespace leads the next piece.
        if ws && !prev_ws && !text[i..].trim().is_empty() {
            pieces.push(&text[start..i]);
            start = i;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Splits tool arguments into up to four fragments at char boundaries.
pub(crate) fn split_fragments(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let size = text.len().div_ceil(4).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds the reply for a non-error action.
pub(crate) fn make_reply(req: &ChatRequest, action: Action, step: Option<&Step>) -> Reply {
    let (text, tool_calls) = match action {
        Action::Text { text } => (Some(text), Vec::new()),
        Action::ToolCalls { tool_calls, text } => (text, tool_calls),
        Action::Default | Action::Error { .. } | Action::Drop { .. } => {
            let mut t = String::with_capacity(ECHO_PREFIX.len() + req.last_user_text.len());
            t.push_str(ECHO_PREFIX);
            t.push_str(&req.last_user_text);
            (Some(t), Vec::new())
        }
    };
    let completion = text.as_deref().map_or(0, words)
        + tool_calls
            .iter()
            .map(|c| 1 + words(&c.arguments_text()))
            .sum::<u64>();
    let usage = step.and_then(|s| s.usage).unwrap_or(Usage {
        prompt_tokens: req.prompt_tokens,
        completion_tokens: completion,
    });
    let finish_reason = step
        .and_then(|s| s.finish_reason.clone())
        .unwrap_or_else(|| {
            if tool_calls.is_empty() {
                "stop".to_owned()
            } else {
                "tool_calls".to_owned()
            }
        });
    Reply {
        text,
        tool_calls,
        finish_reason,
        usage,
    }
}

/// Outcome of the common pre-answer phase.
pub(crate) enum Resolved {
    /// Produce this reply; `cut_after` aborts a stream after that many events.
    Reply {
        reply: Reply,
        chunk_delay: Duration,
        cut_after: Option<usize>,
        guard: DisconnectGuard,
    },
    /// Answer with this error response.
    Error(Response),
}

/// Applies delays and resolves the step; never returns when the step drops the connection.
pub(crate) async fn resolve(
    shared: &Arc<Shared>,
    kill: &ConnKill,
    req: &ChatRequest,
    step: Option<Step>,
    flavor: Flavor,
) -> Resolved {
    let mut guard = DisconnectGuard::new(Arc::clone(shared));
    let step_delay = step.as_ref().map_or(0, |s| s.delay_ms);
    pause(shared.default_latency() + Duration::from_millis(step_delay)).await;
    let chunk_delay = step
        .as_ref()
        .and_then(|s| s.chunk_delay_ms)
        .map_or(shared.config().chunk_delay, Duration::from_millis);
    let action = step.as_ref().map_or(Action::Default, |s| s.action.clone());
    let mut cut_after = None;
    match &action {
        Action::Error {
            status,
            message,
            error_type,
            code,
            retry_after,
        } => {
            guard.disarm();
            return Resolved::Error(error_response(
                flavor,
                *status,
                message.as_deref(),
                error_type.as_deref(),
                code.as_deref(),
                *retry_after,
            ));
        }
        Action::Drop { after_chunks } => match after_chunks {
            Some(n) if req.stream => cut_after = Some(*n),
            _ => {
                guard.disarm();
                drop_connection(kill).await;
            }
        },
        Action::Default | Action::Text { .. } | Action::ToolCalls { .. } => {}
    }
    let reply = make_reply(req, action, step.as_ref());
    Resolved::Reply {
        reply,
        chunk_delay,
        cut_after,
        guard,
    }
}

/// Sleeps unless `d` is zero.
pub(crate) async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// Closes the connection; the handler future is dropped with it, so this never returns.
pub(crate) async fn drop_connection(kill: &ConnKill) {
    kill.0.cancel();
    std::future::pending::<()>().await;
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn default_error_type(flavor: Flavor, status: u16) -> &'static str {
    match (flavor, status) {
        (_, 400) => "invalid_request_error",
        (_, 401) => "authentication_error",
        (_, 403) => "permission_error",
        (_, 404) => "not_found_error",
        (Flavor::Anthropic, 413) => "request_too_large",
        (_, 429) => "rate_limit_error",
        (Flavor::Anthropic, 529) => "overloaded_error",
        (Flavor::Anthropic, 500..) => "api_error",
        (Flavor::OpenAi, 500..) => "server_error",
        _ => "invalid_request_error",
    }
}

fn default_error_message(status: u16) -> String {
    match status {
        429 => "Rate limit reached for requests. Please try again later.".to_owned(),
        500..=599 => "The server had an error while processing your request.".to_owned(),
        _ => StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Request failed")
            .to_owned(),
    }
}

/// An error response in the flavor's format: OpenAI
/// `{"error":{"message","type","param":null,"code"}}` or Anthropic
/// `{"type":"error","error":{"type","message"}}`.
pub(crate) fn error_response(
    flavor: Flavor,
    status: u16,
    message: Option<&str>,
    error_type: Option<&str>,
    code: Option<&str>,
    retry_after: Option<u64>,
) -> Response {
    let message = message.map_or_else(|| default_error_message(status), str::to_owned);
    let error_type = error_type.unwrap_or_else(|| default_error_type(flavor, status));
    let code = code.map(str::to_owned).or_else(|| {
        (status == 429 && flavor == Flavor::OpenAi).then(|| "rate_limit_exceeded".to_owned())
    });
    let body = match flavor {
        Flavor::OpenAi => json!({
            "error": {"message": message, "type": error_type, "param": null, "code": code}
        }),
        Flavor::Anthropic => json!({
            "type": "error",
            "error": {"type": error_type, "message": message}
        }),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(status, &body);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// A `400` for a malformed request.
pub(crate) fn bad_request(flavor: Flavor, message: &str) -> Response {
    error_response(flavor, 400, Some(message), None, None, None)
}

/// Pause between the last event and the abort of a scripted mid-stream drop.
const CUT_GRACE: Duration = Duration::from_millis(5);

/// Pre-built SSE events streamed with an optional delay between them; counts a
/// disconnect when dropped before the last event was handed out.
pub(crate) struct EventStream {
    events: std::vec::IntoIter<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    sent: usize,
    cut_after: Option<usize>,
    cut_done: bool,
    guard: DisconnectGuard,
}

impl EventStream {
    pub(crate) fn new(
        events: Vec<Bytes>,
        delay: Duration,
        cut_after: Option<usize>,
        guard: DisconnectGuard,
    ) -> Self {
        Self {
            events: events.into_iter(),
            delay,
            sleep: None,
            sent: 0,
            cut_after,
            cut_done: false,
            guard,
        }
    }

    /// The streaming HTTP response.
    pub(crate) fn into_response(self) -> Response {
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            Body::from_stream(self),
        )
            .into_response()
    }
}

impl Stream for EventStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(cut) = this.cut_after
            && this.sent >= cut
        {
            this.guard.disarm();
            if this.cut_done {
                return Poll::Ready(None);
            }
            // Let hyper flush the events already handed out before the abort.
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_GRACE)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
            this.cut_done = true;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "scripted connection drop",
            ))));
        }
        if this.sent > 0 && !this.delay.is_zero() && this.events.len() > 0 {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.delay)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        match this.events.next() {
            Some(event) => {
                this.sent += 1;
                if this.events.len() == 0 && this.cut_after.is_none_or(|c| c > this.sent) {
                    this.guard.disarm();
                }
                Poll::Ready(Some(Ok(event)))
            }
            None => {
                this.guard.disarm();
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_words_round_trips() {
        for text in [
            "",
            "a",
            "Echo: hello  world ",
            "  lead",
            "x\ny z",
            "héllo wörld",
        ] {
            let pieces = split_words(text);
            assert_eq!(pieces.concat(), text);
        }
        assert_eq!(
            split_words("Echo: hi there"),
            vec!["Echo:", " hi", " there"]
        );
    }

    #[test]
    fn fragments_round_trip() {
        for text in ["", "{}", r#"{"city":"Paris","days":3}"#, "éééééééé"] {
            let f = split_fragments(text);
            assert_eq!(f.concat(), text);
            assert!(f.len() <= 4);
        }
        assert_eq!(split_fragments(r#"{"city":"Paris","days":3}"#).len(), 4);
    }

    #[test]
    fn counting() {
        assert_eq!(words("  a b\tc\n"), 3);
        let msg = json!({"role": "user", "content": [{"type": "text", "text": "one two"}]});
        assert_eq!(words_in_value(&msg), 2);
        assert_eq!(content_text(&msg["content"]), "one two");
    }
}
