//! Anthropic Messages API client (`POST /v1/messages`), blocking and streaming.

use std::collections::BTreeMap;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::LlmError;
use crate::http::{self, HttpSettings};
use crate::provider::{ChatStream, Provider};
use crate::tokens;
use crate::types::{
    ChatRequest, ChatResponse, FinishReason, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};

/// The `anthropic-version` header sent by default.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` sent when the request sets none (the Messages API requires it).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// A client of the Anthropic Messages API (or a compatible gateway).
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    name: String,
    settings: HttpSettings,
    client: reqwest::Client,
}

impl AnthropicProvider {
    /// A client named `name` with `settings` (`base_url` is the host, e.g.
    /// `https://api.anthropic.com`; `/v1/messages` is appended) and the given
    /// `anthropic-version` ([`DEFAULT_ANTHROPIC_VERSION`] when `None`).
    pub fn new(
        name: impl Into<String>,
        settings: HttpSettings,
        anthropic_version: Option<&str>,
    ) -> Result<Self, LlmError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &settings.api_key {
            headers.insert("x-api-key", http::secret_header(key.expose_secret())?);
        }
        let version = anthropic_version.unwrap_or(DEFAULT_ANTHROPIC_VERSION);
        headers.insert(
            "anthropic-version",
            HeaderValue::from_str(version)
                .map_err(|e| LlmError::Config(format!("anthropic-version: {e}")))?,
        );
        let client = settings.build_client(headers)?;
        Ok(AnthropicProvider {
            name: name.into(),
            settings,
            client,
        })
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.settings.url("v1/messages"))
            .json(body)
    }
}

/// The JSON body of a `/v1/messages` request: system messages are joined into `system`, tool
/// results become `tool_result` blocks of a user turn, consecutive turns of one role are merged.
pub(crate) fn request_body(req: &ChatRequest, stream: bool) -> Value {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == Role::System && !m.content.is_empty())
        .map(|m| m.content.as_str())
        .collect();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in &req.messages {
        let (role, blocks) = match m.role {
            Role::System => continue,
            Role::User => ("user", text_block(&m.content).into_iter().collect()),
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                })],
            ),
            Role::Assistant => {
                let mut blocks: Vec<Value> = text_block(&m.content).into_iter().collect();
                for c in &m.tool_calls {
                    let input = serde_json::from_str::<Value>(&c.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name,
                                       "input": input}));
                }
                ("assistant", blocks)
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let schema = if t.parameters.is_null() {
                    json!({"type": "object", "properties": {}})
                } else {
                    t.parameters.clone()
                };
                json!({"name": t.name, "description": t.description, "input_schema": schema})
            })
            .collect();
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = json!({"type": match req.tool_choice {
            ToolChoice::Auto => "auto",
            ToolChoice::None => "none",
            ToolChoice::Required => "any",
        }});
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// A text block, or none for empty text (the API rejects empty text blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

// ---- response wire types (lenient) ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMessage {
    model: String,
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, server tool blocks and anything newer.
    #[default]
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(default)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// All prompt tokens (uncached + cache writes + cache reads), if any were reported.
    fn input(&self) -> Option<u64> {
        self.input_tokens.map(|n| {
            n + self.cache_creation_input_tokens.unwrap_or(0)
                + self.cache_read_input_tokens.unwrap_or(0)
        })
    }
}

fn input_json(input: &Value) -> String {
    match input {
        Value::Null => "{}".into(),
        v => v.to_string(),
    }
}

fn response_from_wire(req: &ChatRequest, wire: WireMessage) -> ChatResponse {
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in wire.content {
        match block {
            WireBlock::Text { text } => content.push_str(&text),
            WireBlock::ToolUse { id, name, input } => tool_calls.push(ToolCall {
                id,
                name,
                arguments: input_json(&input),
            }),
            WireBlock::Other => {}
        }
    }
    let estimate = || tokens::estimate_usage(req, &content, &tool_calls);
    let usage = match wire.usage {
        Some(u) => {
            let est = estimate();
            Usage {
                input_tokens: u.input().unwrap_or(est.input_tokens),
                output_tokens: u.output_tokens.unwrap_or(est.output_tokens),
            }
        }
        None => estimate(),
    };
    let finish_reason = match wire.stop_reason.as_deref() {
        Some(r) => FinishReason::from_anthropic(r),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    ChatResponse {
        model: if wire.model.is_empty() {
            req.model.clone()
        } else {
            wire.model
        },
        content,
        tool_calls,
        usage,
        finish_reason,
    }
}

// ---- streaming ----

#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        #[serde(default)]
        message: WireMessage,
    },
    ContentBlockStart {
        #[serde(default)]
        index: u32,
        #[serde(default)]
        content_block: WireBlock,
    },
    ContentBlockDelta {
        #[serde(default)]
        index: u32,
        #[serde(default)]
        delta: WireDelta,
    },
    ContentBlockStop {
        #[serde(default)]
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Error {
        #[serde(default)]
        error: Value,
    },
    /// `ping` and anything newer.
    #[default]
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    #[default]
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMessageDelta {
    stop_reason: Option<String>,
}

/// A tool_use block being streamed.
#[derive(Debug, Default)]
struct OpenTool {
    call: ToolCall,
    start_input: Value,
}

#[derive(Debug)]
struct StreamState {
    request: ChatRequest,
    model: String,
    content: String,
    open_tools: BTreeMap<u32, OpenTool>,
    tool_calls: Vec<ToolCall>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    stop_reason: Option<String>,
    finished: bool,
}

impl StreamState {
    fn new(request: ChatRequest) -> Self {
        StreamState {
            model: request.model.clone(),
            request,
            content: String::new(),
            open_tools: BTreeMap::new(),
            tool_calls: Vec::new(),
            input_tokens: None,
            output_tokens: None,
            stop_reason: None,
            finished: false,
        }
    }

    fn close_tool(&mut self, index: u32) -> Option<StreamEvent> {
        let mut open = self.open_tools.remove(&index)?;
        if open.call.arguments.trim().is_empty() {
            open.call.arguments = input_json(&open.start_input);
        }
        self.tool_calls.push(open.call.clone());
        Some(StreamEvent::ToolCall(open.call))
    }

    fn take_usage(&mut self, u: &WireUsage) {
        if let Some(i) = u.input() {
            self.input_tokens = Some(i);
        }
        if let Some(o) = u.output_tokens {
            self.output_tokens = Some(o);
        }
    }

    /// Applies one event's `data`, pushing the resulting stream events to `out`.
    fn apply(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        let event: WireEvent = serde_json::from_str(data)
            .map_err(|e| LlmError::Decode(format!("{e} in stream event {data:?}")))?;
        match event {
            WireEvent::MessageStart { message } => {
                if !message.model.is_empty() {
                    self.model = message.model;
                }
                if let Some(u) = &message.usage {
                    self.take_usage(u);
                }
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                WireBlock::Text { text } if !text.is_empty() => {
                    self.content.push_str(&text);
                    out.push(StreamEvent::TextDelta(text));
                }
                WireBlock::ToolUse { id, name, input } => {
                    self.open_tools.insert(
                        index,
                        OpenTool {
                            call: ToolCall {
                                id,
                                name,
                                arguments: String::new(),
                            },
                            start_input: input,
                        },
                    );
                }
                _ => {}
            },
            WireEvent::ContentBlockDelta { index, delta } => match delta {
                WireDelta::TextDelta { text } if !text.is_empty() => {
                    self.content.push_str(&text);
                    out.push(StreamEvent::TextDelta(text));
                }
                WireDelta::InputJsonDelta { partial_json } => {
                    if let Some(open) = self.open_tools.get_mut(&index) {
                        open.call.arguments.push_str(&partial_json);
                    }
                }
                _ => {}
            },
            WireEvent::ContentBlockStop { index } => out.extend(self.close_tool(index)),
            WireEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(u) = &usage {
                    self.take_usage(u);
                }
            }
            WireEvent::MessageStop => self.finish(out),
            WireEvent::Error { error } => {
                let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
                let status = match kind {
                    "overloaded_error" => 529,
                    "rate_limit_error" => 429,
                    "api_error" => 500,
                    "request_too_large" => 413,
                    "invalid_request_error" => 400,
                    _ => 500,
                };
                return Err(LlmError::Status {
                    status,
                    body: error.to_string(),
                    retry_after: None,
                });
            }
            WireEvent::Other => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let open: Vec<u32> = self.open_tools.keys().copied().collect();
        for index in open {
            out.extend(self.close_tool(index));
        }
        let est = tokens::estimate_usage(&self.request, &self.content, &self.tool_calls);
        let usage = Usage {
            input_tokens: self.input_tokens.unwrap_or(est.input_tokens),
            output_tokens: self.output_tokens.unwrap_or(est.output_tokens),
        };
        let finish_reason = match self.stop_reason.as_deref() {
            Some(r) => FinishReason::from_anthropic(r),
            None if !self.tool_calls.is_empty() => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        out.push(StreamEvent::Usage(usage));
        out.push(StreamEvent::Done(ChatResponse {
            content: std::mem::take(&mut self.content),
            tool_calls: std::mem::take(&mut self.tool_calls),
            usage,
            model: self.model.clone(),
            finish_reason,
        }));
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = request_body(req, false);
        let timeout = self.settings.timeout;
        let wire: WireMessage = http::retrying(&self.settings.retry, &self.name, || {
            http::send_for_json(self.post(&body), timeout)
        })
        .await?;
        Ok(response_from_wire(req, wire))
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, LlmError> {
        let body = request_body(req, true);
        let timeout = self.settings.timeout;
        let resp = http::retrying(&self.settings.retry, &self.name, || {
            http::send(self.post(&body), timeout)
        })
        .await?;
        let events = http::sse_events(resp, timeout);
        struct Run {
            events:
                futures::stream::BoxStream<'static, Result<eventsource_stream::Event, LlmError>>,
            state: StreamState,
            pending: std::collections::VecDeque<StreamEvent>,
            ended: bool,
        }
        let run = Run {
            events,
            state: StreamState::new(req.clone()),
            pending: Default::default(),
            ended: false,
        };
        let stream = futures::stream::unfold(run, |mut run| async move {
            loop {
                if let Some(ev) = run.pending.pop_front() {
                    return Some((Ok(ev), run));
                }
                if run.ended || run.state.finished {
                    return None;
                }
                let err = match run.events.next().await {
                    Some(Ok(event)) => {
                        let data = event.data.trim();
                        if data.is_empty() {
                            continue;
                        }
                        let mut out = Vec::new();
                        match run.state.apply(data, &mut out) {
                            Ok(()) => {
                                run.pending.extend(out);
                                continue;
                            }
                            Err(e) => e,
                        }
                    }
                    Some(Err(e)) => e,
                    None => LlmError::Interrupted("stream ended before message_stop".into()),
                };
                run.ended = true;
                return Some((Err(err), run));
            }
        });
        Ok(stream.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Message, ToolDef};

    #[test]
    fn maps_roles_system_and_tool_blocks() {
        let req = ChatRequest::new(
            "claude",
            vec![
                Message::system("You are Cortex."),
                Message::system("Dialect: Egyptian Arabic."),
                Message::user("where is order 7?"),
                Message::assistant_tool_calls(
                    "Let me check.",
                    vec![
                        ToolCall {
                            id: "t1".into(),
                            name: "get_order".into(),
                            arguments: "{\"id\":7}".into(),
                        },
                        ToolCall {
                            id: "t2".into(),
                            name: "track".into(),
                            arguments: "not json".into(),
                        },
                    ],
                ),
                Message::tool_result("t1", "get_order", "shipped"),
                Message::tool_result("t2", "track", "in Cairo"),
            ],
        )
        .with_tools(vec![ToolDef {
            name: "get_order".into(),
            description: "d".into(),
            parameters: Value::Null,
        }])
        .with_tool_choice(ToolChoice::Required);
        let body = request_body(&req, false);
        assert_eq!(
            body["system"],
            "You are Cortex.\n\nDialect: Egyptian Arabic."
        );
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        let msgs = body["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0]["role"], "user");
        assert_eq!(msgs[1]["content"][0]["text"], "Let me check.");
        assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
        assert_eq!(msgs[1]["content"][1]["input"]["id"], 7);
        assert_eq!(msgs[1]["content"][2]["input"], json!({}));
        // Both tool results in one user turn.
        assert_eq!(msgs[2]["role"], "user");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(msgs[2]["content"][1]["tool_use_id"], "t2");
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(body["tool_choice"]["type"], "any");
    }

    #[test]
    fn decodes_blocks_leniently() {
        let req = ChatRequest::new("claude", vec![Message::user("hi")]);
        let wire: WireMessage = serde_json::from_str(
            r#"{"id":"m","type":"message","model":"claude-x","content":[
                {"type":"thinking","thinking":"hmm"},
                {"type":"text","text":"Checking."},
                {"type":"tool_use","id":"tu","name":"f","input":{"a":1}}],
               "stop_reason":"tool_use",
               "usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":3}}"#,
        )
        .unwrap();
        let resp = response_from_wire(&req, wire);
        assert_eq!(resp.content, "Checking.");
        assert_eq!(resp.tool_calls[0].arguments, "{\"a\":1}");
        assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            resp.usage,
            Usage {
                input_tokens: 15,
                output_tokens: 3
            }
        );
        assert_eq!(resp.model, "claude-x");
    }

    #[test]
    fn stream_error_event_maps_to_status() {
        let mut st = StreamState::new(ChatRequest::new("c", vec![]));
        let mut out = Vec::new();
        let err = st
            .apply(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &mut out,
            )
            .unwrap_err();
        assert!(err.is_retryable());
        assert!(matches!(err, LlmError::Status { status: 529, .. }));
    }
}
