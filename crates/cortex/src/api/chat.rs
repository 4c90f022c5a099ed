//! `POST /v1/chat` and `POST /v1/chat/stream`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{ApiJson, Caller, Checks, Validate, own_company, path_id};
use crate::auth::Identity;
use crate::limits::Subject;
use crate::pipeline::{self, ChatInput, ChatReply, Event, Frame, PipelineError};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatBody {
    /// Must be the caller's company.
    pub company_id: String,
    pub agent_id: String,
    pub conversation_id: String,
    pub customer_id: String,
    /// 1–16,000 characters.
    pub message: String,
    /// `whatsapp` (default), `web`, `instagram`, `email`, …
    #[serde(default)]
    pub channel: Option<String>,
    /// At most 20 keys.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

impl Validate for ChatBody {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        for (field, value) in [
            ("company_id", &self.company_id),
            ("agent_id", &self.agent_id),
            ("conversation_id", &self.conversation_id),
        ] {
            c.check(
                Uuid::parse_str(value).is_ok(),
                field,
                &format!("{field} must be a UUID"),
                "uuid_parsing",
            );
        }
        c.len("customer_id", &self.customer_id, 1, 256);
        c.len("message", &self.message, 1, 16_000);
        if let Some(channel) = &self.channel {
            c.check(
                !channel.is_empty()
                    && channel.len() <= 32
                    && channel
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "channel",
                "channel is 1-32 characters of letters, digits, '_' or '-'",
                "value_error",
            );
        }
        if let Some(metadata) = &self.metadata {
            c.check(
                metadata.len() <= 20,
                "metadata",
                "metadata may have at most 20 keys",
                "too_long",
            );
        }
        c.finish()
    }
}

impl ChatBody {
    /// The pipeline's input; another company's id answers like a missing agent.
    fn into_input(self, caller: &Identity) -> ApiResult<ChatInput> {
        if !caller.has_scope("chat") {
            return Err(ApiError::Forbidden(
                "This API key does not have the chat scope".into(),
            ));
        }
        let company_id = own_company(caller, &self.company_id, "Agent")?;
        let agent_id = path_id(&self.agent_id, "Agent")?;
        let conversation_id = path_id(&self.conversation_id, "Agent")?;
        // A widget session talks to its own agent only.
        if let crate::auth::Principal::Sdk { agent_id: own, .. } = caller.principal
            && own != agent_id
        {
            return Err(ApiError::not_found("Agent"));
        }
        Ok(ChatInput {
            company_id,
            agent_id,
            conversation_id,
            customer_id: self.customer_id,
            message: self.message,
            channel: self.channel.unwrap_or_else(|| "whatsapp".into()),
            metadata: self.metadata.unwrap_or_default(),
        })
    }
}

/// Count the message against its conversation's rate (429 beyond it); a metered company out of
/// credits is refused (402) before any work.
async fn admit(state: &AppState, input: ChatInput) -> ApiResult<ChatInput> {
    if state.is_out_of_credits(input.company_id).await? {
        return Err(ApiError::insufficient_credits());
    }
    let subject = Subject::Conversation {
        company_id: input.company_id,
        conversation_id: input.conversation_id,
    };
    match state
        .rate
        .hit(subject, state.config.limits.conversation_rate())
        .await
    {
        Some(q) if !q.allowed => {
            metrics::counter!("cortex_rate_limited_total", "limit" => "conversation").increment(1);
            Err(ApiError::RateLimited {
                message: "Conversation message rate limit exceeded".into(),
                retry_after_ms: q.retry_after_ms,
                quota: Some(q),
            })
        }
        _ => Ok(input),
    }
}

/// Process a message through the eight-stage pipeline.
#[utoipa::path(post, path = "/v1/chat", tag = "chat", request_body = ChatBody, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ChatReply), (status = 401), (status = 404), (status = 422), (status = 429), (status = 503), (status = 504)))]
pub async fn chat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<ChatBody>,
) -> ApiResult<Json<ChatReply>> {
    let input = admit(&state, body.into_input(&caller)?).await?;
    // A client that goes away drops this future, and with it the model call.
    let cancel = CancellationToken::new();
    let reply = pipeline::run(&state, input, None, &cancel)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(reply))
}

fn complete_of(reply: &ChatReply) -> Value {
    let mut v = json!({
        "inputTokens": reply.tokens.input,
        "outputTokens": reply.tokens.output,
        "totalTokens": reply.tokens.input + reply.tokens.output,
        "latencyMs": reply.latency_ms,
    });
    if let (Value::Object(target), Ok(Value::Object(fields))) =
        (&mut v, serde_json::to_value(reply))
    {
        target.extend(fields);
    }
    v
}

struct StreamState {
    events: mpsc::Receiver<Event>,
    done: Option<oneshot::Receiver<Result<ChatReply, PipelineError>>>,
    seq: u64,
    /// Cancels the pipeline (and the model call) when the client goes away.
    _guard: tokio_util::sync::DropGuard,
}

/// The same pipeline, streamed as Server-Sent Events: `text_delta`, `tool_call`, `tool_result`,
/// `usage`, then `complete` (or `error`); `: heartbeat` every 15 s.
#[utoipa::path(post, path = "/v1/chat/stream", tag = "chat", request_body = ChatBody, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "text_delta, tool_call, tool_result, usage, complete | error"),
        (status = 401), (status = 404), (status = 422), (status = 429)))]
pub async fn chat_stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<ChatBody>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let input = admit(&state, body.into_input(&caller)?).await?;
    // Errors that precede any output keep their HTTP status.
    pipeline::load_agent(&state, input.company_id, input.agent_id)
        .await
        .map_err(ApiError::from)?;
    let (tx, rx) = mpsc::channel(64);
    let (done_tx, done_rx) = oneshot::channel();
    let cancel = CancellationToken::new();
    let (st, token) = (state.clone(), cancel.clone());
    // The pipeline's spans stay children of this request's span.
    state.tasks.spawn(
        async move {
            let result = pipeline::run(&st, input, Some(tx), &token).await;
            let _ = done_tx.send(result);
        }
        .in_current_span(),
    );
    let init = StreamState {
        events: rx,
        done: Some(done_rx),
        seq: 0,
        _guard: cancel.drop_guard(),
    };
    let frames = futures::stream::unfold(init, |mut s| async move {
        let (name, data) = match s.events.recv().await {
            Some(e) => (e.name(), e.data()),
            None => {
                let done = s.done.take()?;
                match done.await {
                    Ok(Ok(reply)) => ("complete", complete_of(&reply)),
                    Ok(Err(e)) => {
                        let err = ApiError::from(e);
                        let (code, message) = err.code_and_message();
                        ("error", json!({"code": code, "message": message}))
                    }
                    Err(_) => (
                        "error",
                        json!({"code": "INTERNAL_ERROR", "message": "Internal server error"}),
                    ),
                }
            }
        };
        s.seq += 1;
        let frame = Frame {
            seq: s.seq,
            name: name.to_owned(),
            data: data.to_string(),
        };
        Some((Arc::new(frame), s))
    });
    Ok(super::sse::respond(&state, frames, None))
}
