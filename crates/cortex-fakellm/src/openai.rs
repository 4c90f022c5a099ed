//! `POST /v1/chat/completions` in OpenAI's wire format.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::chat::{
    ChatRequest, ConnKill, EventStream, Flavor, Reply, Resolved, bad_request, content_text,
    json_response, resolve, split_fragments, split_words, unix_now, words_in_value,
};
use crate::state::Shared;
use crate::step::Endpoint;

/// Extracts the request summary, or the reason it is invalid.
fn parse(body: &Value) -> Result<ChatRequest, &'static str> {
    let obj = body
        .as_object()
        .ok_or("request body must be a JSON object")?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or("you must provide a model parameter")?;
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("'messages' is a required property")?;
    if messages.is_empty() {
        return Err("'messages' must contain at least one message");
    }
    let last_user_text = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    let prompt_tokens = messages.iter().map(|m| 3 + words_in_value(m)).sum();
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ChatRequest {
        model: model.to_owned(),
        stream,
        include_usage,
        last_user_text,
        prompt_tokens,
    })
}

/// Handler of `POST /v1/chat/completions` and `POST /chat/completions`.
pub(crate) async fn chat_completions(
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
            return bad_request(
                Flavor::OpenAi,
                &format!("We could not parse the JSON body of your request: {e}"),
            );
        }
    };
    let parsed = parse(&value);
    shared.record(method.as_str(), uri.path(), &headers, value);
    let req = match parsed {
        Ok(r) => r,
        Err(msg) => return bad_request(Flavor::OpenAi, msg),
    };
    let step = shared.take_step(Endpoint::Chat, &req.model);
    match resolve(&shared, &kill, &req, step, Flavor::OpenAi).await {
        Resolved::Error(resp) => resp,
        Resolved::Reply {
            reply,
            chunk_delay,
            cut_after,
            mut guard,
        } => {
            let id = format!("chatcmpl-fake{}", shared.next_seq());
            if req.stream {
                let events = stream_events(&id, &req, &reply);
                EventStream::new(events, chunk_delay, cut_after, guard).into_response()
            } else {
                guard.disarm();
                json_response(StatusCode::OK, &completion_body(&id, &req, &reply))
            }
        }
    }
}

fn call_id(id: &str, call: &crate::step::ToolCall, i: usize) -> String {
    call.id
        .clone()
        .unwrap_or_else(|| format!("call_{}_{i}", id.trim_start_matches("chatcmpl-")))
}

fn usage_json(reply: &Reply) -> Value {
    let u = reply.usage;
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// The non-streaming `chat.completion` object.
fn completion_body(id: &str, req: &ChatRequest, reply: &Reply) -> Value {
    let mut message = json!({
        "role": "assistant",
        "content": reply.text,
        "refusal": null,
    });
    if !reply.tool_calls.is_empty() {
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "id": call_id(id, c, i),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_text()},
                })
            })
            .collect();
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": req.model,
        "system_fingerprint": "fp_fakellm",
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": reply.finish_reason,
        }],
        "usage": usage_json(reply),
    })
}

/// Builds `data: {chunk}` events: role, content deltas, tool-call header and argument
/// fragments, the finish chunk, the usage chunk (when requested) and `data: [DONE]`.
fn stream_events(id: &str, req: &ChatRequest, reply: &Reply) -> Vec<Bytes> {
    let model = Value::String(req.model.clone()).to_string();
    let prefix = format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":{},"model":{model},"system_fingerprint":"fp_fakellm","choices":["#,
        unix_now()
    );
    let usage_null = if req.include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |delta: &str, finish: &str| -> Bytes {
        let mut s = String::with_capacity(prefix.len() + delta.len() + 96);
        s.push_str("data: ");
        s.push_str(&prefix);
        s.push_str(r#"{"index":0,"delta":"#);
        s.push_str(delta);
        s.push_str(r#","logprobs":null,"finish_reason":"#);
        s.push_str(finish);
        s.push_str("}]");
        s.push_str(usage_null);
        s.push_str("}\n\n");
        Bytes::from(s)
    };
    let mut events = Vec::new();
    let mut role_sent = false;
    let text = reply.text.as_deref().unwrap_or("");
    if !text.is_empty() || reply.tool_calls.is_empty() {
        events.push(chunk(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ));
        role_sent = true;
        for piece in split_words(text) {
            events.push(chunk(&json!({ "content": piece }).to_string(), "null"));
        }
    }
    for (i, call) in reply.tool_calls.iter().enumerate() {
        let header = json!({
            "index": i,
            "id": call_id(id, call, i),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        });
        let delta = if role_sent {
            json!({ "tool_calls": [header] })
        } else {
            role_sent = true;
            json!({"role": "assistant", "content": null, "tool_calls": [header], "refusal": null})
        };
        events.push(chunk(&delta.to_string(), "null"));
        let args = call.arguments_text();
        for frag in split_fragments(&args) {
            let delta = json!({"tool_calls": [{"index": i, "function": {"arguments": frag}}]});
            events.push(chunk(&delta.to_string(), "null"));
        }
    }
    let finish = Value::String(reply.finish_reason.clone()).to_string();
    events.push(chunk("{}", &finish));
    if req.include_usage {
        let s = format!("data: {prefix}],\"usage\":{}}}\n\n", usage_json(reply));
        events.push(Bytes::from(s));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::make_reply;
    use crate::step::{Action, ToolCall};

    fn req(body: Value) -> ChatRequest {
        parse(&body).unwrap()
    }

    #[test]
    fn parse_extracts_fields() {
        let r = req(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "hello there"},
                {"role": "assistant", "content": "hi"},
            ]
        }));
        assert_eq!(r.model, "m");
        assert!(r.stream && r.include_usage);
        assert_eq!(r.last_user_text, "hello there");
        assert_eq!(r.prompt_tokens, 3 * 3 + 2 + 2 + 1);
        assert!(parse(&json!({"model": "m", "messages": []})).is_err());
        assert!(parse(&json!({"messages": [{"role": "user", "content": "x"}]})).is_err());
    }

    #[test]
    fn stream_chunks_are_valid_json() {
        let r = req(
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "a b"}]}),
        );
        let reply = make_reply(
            &r,
            Action::ToolCalls {
                tool_calls: vec![ToolCall::new("f", json!({"x": 1}))],
                text: Some("ok".into()),
            },
            None,
        );
        let events = stream_events("chatcmpl-fake1", &r, &reply);
        let last = events.last().unwrap();
        assert_eq!(&last[..], b"data: [DONE]\n\n");
        for e in &events[..events.len() - 1] {
            let s = std::str::from_utf8(e).unwrap();
            let body = s
                .strip_prefix("data: ")
                .unwrap()
                .strip_suffix("\n\n")
                .unwrap();
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
        }
    }
}
