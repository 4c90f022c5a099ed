//! `POST /v1/messages` in Anthropic's wire format.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::chat::{
    ChatRequest, ConnKill, EventStream, Flavor, Reply, Resolved, bad_request, content_text,
    json_response, resolve, split_fragments, split_words, words_in_value,
};
use crate::state::Shared;
use crate::step::{Endpoint, ToolCall};

fn parse(body: &Value) -> Result<ChatRequest, &'static str> {
    let obj = body
        .as_object()
        .ok_or("request body must be a JSON object")?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model: Field required")?;
    if obj.get("max_tokens").and_then(Value::as_u64).is_none() {
        return Err("max_tokens: Field required");
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if messages.is_empty() {
        return Err("messages: at least one message is required");
    }
    let last_user_text = messages
        .iter()
        .rev()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .filter_map(|m| m.get("content").map(content_text))
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    let system_tokens = obj.get("system").map_or(0, words_in_value);
    let prompt_tokens = system_tokens + messages.iter().map(|m| 3 + words_in_value(m)).sum::<u64>();
    Ok(ChatRequest {
        model: model.to_owned(),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: true,
        last_user_text,
        prompt_tokens,
    })
}

/// Anthropic `stop_reason` for an OpenAI finish reason.
fn stop_reason(finish: &str) -> &str {
    match finish {
        "stop" => "end_turn",
        "tool_calls" => "tool_use",
        "length" => "max_tokens",
        other => other,
    }
}

fn tool_id(id: &str, call: &ToolCall, i: usize) -> String {
    call.id
        .clone()
        .unwrap_or_else(|| format!("toolu_{}_{i}", id.trim_start_matches("msg_")))
}

fn tool_input(call: &ToolCall) -> Value {
    match &call.arguments {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    }
}

/// Handler of `POST /v1/messages` and `POST /messages`.
pub(crate) async fn messages(
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
            return bad_request(Flavor::Anthropic, &format!("invalid JSON body: {e}"));
        }
    };
    let parsed = parse(&value);
    shared.record(method.as_str(), uri.path(), &headers, value);
    let req = match parsed {
        Ok(r) => r,
        Err(msg) => return bad_request(Flavor::Anthropic, msg),
    };
    let step = shared.take_step(Endpoint::Chat, &req.model);
    match resolve(&shared, &kill, &req, step, Flavor::Anthropic).await {
        Resolved::Error(resp) => resp,
        Resolved::Reply {
            reply,
            chunk_delay,
            cut_after,
            mut guard,
        } => {
            let id = format!("msg_fake{}", shared.next_seq());
            if req.stream {
                let events = stream_events(&id, &req, &reply);
                EventStream::new(events, chunk_delay, cut_after, guard).into_response()
            } else {
                guard.disarm();
                json_response(StatusCode::OK, &message_body(&id, &req, &reply))
            }
        }
    }
}

fn message_body(id: &str, req: &ChatRequest, reply: &Reply) -> Value {
    let mut content = Vec::new();
    let text = reply.text.as_deref().unwrap_or("");
    if !text.is_empty() || reply.tool_calls.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        content.push(json!({
            "type": "tool_use",
            "id": tool_id(id, call, i),
            "name": call.name,
            "input": tool_input(call),
        }));
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": content,
        "stop_reason": stop_reason(&reply.finish_reason),
        "stop_sequence": null,
        "usage": {
            "input_tokens": reply.usage.prompt_tokens,
            "output_tokens": reply.usage.completion_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    })
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// `message_start`, per block `content_block_start` / `content_block_delta`
/// (`text_delta` or `input_json_delta`) / `content_block_stop`, one `ping` after the first
/// block start, `message_delta` with the stop reason and usage, `message_stop`.
fn stream_events(id: &str, req: &ChatRequest, reply: &Reply) -> Vec<Bytes> {
    let mut events = vec![event(
        "message_start",
        &json!({
            "type": "message_start",
            "message": {
                "id": id, "type": "message", "role": "assistant", "model": req.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {
                    "input_tokens": reply.usage.prompt_tokens, "output_tokens": 1,
                    "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                },
            },
        }),
    )];
    let ping = || event("ping", &json!({"type": "ping"}));
    let mut index = 0usize;
    let text = reply.text.as_deref().unwrap_or("");
    if !text.is_empty() || reply.tool_calls.is_empty() {
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(ping());
        for piece in split_words(text) {
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        ));
        index = 1;
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        let block = index + i;
        events.push(event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": block,
                    "content_block": {"type": "tool_use", "id": tool_id(id, call, i),
                                      "name": call.name, "input": {}}}),
        ));
        if block == 0 {
            events.push(ping());
        }
        let args = call.arguments_text();
        let mut frags = vec![""];
        frags.extend(split_fragments(&args));
        for frag in frags {
            events.push(event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": block,
                        "delta": {"type": "input_json_delta", "partial_json": frag}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": block}),
        ));
    }
    events.push(event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(&reply.finish_reason), "stop_sequence": null},
                "usage": {"output_tokens": reply.usage.completion_tokens}}),
    ));
    events.push(event("message_stop", &json!({"type": "message_stop"})));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_requires_max_tokens_and_counts_system() {
        let body = json!({"model": "claude", "max_tokens": 10, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi you"}]}]});
        let r = parse(&body).unwrap();
        assert_eq!(r.last_user_text, "hi you");
        assert_eq!(r.prompt_tokens, 2 + 3 + 2);
        assert!(
            parse(&json!({"model": "c", "messages": [{"role": "user", "content": "x"}]})).is_err()
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason("stop"), "end_turn");
        assert_eq!(stop_reason("tool_calls"), "tool_use");
        assert_eq!(stop_reason("length"), "max_tokens");
    }
}
