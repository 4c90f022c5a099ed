//! OpenAI-compatible `/chat/completions` client (OpenAI, vLLM, Ollama, LiteLLM, Groq, Together,
//! OpenRouter, …), blocking and streaming.

use std::collections::BTreeMap;

use futures::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::LlmError;
use crate::http::{self, HttpSettings};
use crate::provider::{ChatStream, Provider};
use crate::tokens;
use crate::types::{
    ChatRequest, ChatResponse, FinishReason, Message, Role, StreamEvent, ToolCall, ToolChoice,
    Usage,
};

/// A client of one OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    name: String,
    settings: HttpSettings,
    client: reqwest::Client,
}

impl OpenAiProvider {
    /// A client named `name` (for reports) with `settings`; the API key, when set, is sent as
    /// `Authorization: Bearer`.
    pub fn new(name: impl Into<String>, settings: HttpSettings) -> Result<Self, LlmError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &settings.api_key {
            headers.insert(
                AUTHORIZATION,
                http::secret_header(&format!("Bearer {}", key.expose_secret()))?,
            );
        }
        let client = settings.build_client(headers)?;
        Ok(OpenAiProvider {
            name: name.into(),
            settings,
            client,
        })
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(self.settings.url("chat/completions"))
            .json(body)
    }
}

/// The JSON body of a `/chat/completions` request.
pub(crate) fn request_body(req: &ChatRequest, stream: bool) -> Value {
    let messages: Vec<Value> = req.messages.iter().map(wire_message).collect();
    let mut body = json!({ "model": req.model, "messages": messages });
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let params = if t.parameters.is_null() {
                    json!({"type": "object", "properties": {}})
                } else {
                    t.parameters.clone()
                };
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": params}})
            })
            .collect();
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = json!(match req.tool_choice {
            ToolChoice::Auto => "auto",
            ToolChoice::None => "none",
            ToolChoice::Required => "required",
        });
    }
    let reasoning = is_reasoning_model(&req.model);
    if let (Some(t), false) = (req.temperature, reasoning) {
        body["temperature"] = json!(t);
    }
    if let Some(m) = req.max_tokens {
        let field = if reasoning {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[field] = json!(m);
    }
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// OpenAI reasoning models (o1, o3, o4-mini, gpt-5…) reject `max_tokens` (they take
/// `max_completion_tokens`) and any temperature but the default, so neither is sent to them.
pub(crate) fn is_reasoning_model(model: &str) -> bool {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let o_series = name.len() > 1
        && name.starts_with('o')
        && name[1..].starts_with(|c: char| c.is_ascii_digit());
    o_series || name.starts_with("gpt-5")
}

fn wire_message(m: &Message) -> Value {
    let mut v = json!({ "role": m.role.as_str() });
    if m.role == Role::Assistant && !m.tool_calls.is_empty() {
        v["content"] = if m.content.is_empty() {
            Value::Null
        } else {
            json!(m.content)
        };
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
        v["tool_calls"] = Value::Array(calls);
    } else {
        v["content"] = json!(m.content);
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    // OpenAI accepts `name` only on user/system/assistant messages.
    if let (Some(name), false) = (&m.name, m.role == Role::Tool) {
        v["name"] = json!(name);
    }
    v
}

// ---- response wire types (lenient: every field defaulted, unknown fields ignored) ----

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireResponse {
    model: String,
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireChoice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireMessage {
    content: Option<String>,
    tool_calls: Vec<WireToolCall>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireToolCall {
    index: Option<u32>,
    id: Option<String>,
    function: WireFunction,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, Clone, Copy)]
#[serde(default)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireChunk {
    model: String,
    choices: Vec<WireChunkChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireChunkChoice {
    delta: WireMessage,
    finish_reason: Option<String>,
}

fn api_error(error: &Value) -> LlmError {
    LlmError::Decode(format!("provider reported an error: {error}"))
}

fn response_from_wire(req: &ChatRequest, wire: WireResponse) -> Result<ChatResponse, LlmError> {
    if let Some(err) = &wire.error {
        return Err(api_error(err));
    }
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(LlmError::Decode("response has no choices".into()));
    };
    let mut merger = ToolCallMerger::default();
    for call in choice.message.tool_calls {
        merger.push(call);
    }
    let tool_calls = merger.finish();
    let content = choice.message.content.unwrap_or_default();
    let usage = match wire.usage {
        Some(u) => u.into(),
        None => tokens::estimate_usage(req, &content, &tool_calls),
    };
    let finish_reason = match choice.finish_reason.as_deref() {
        Some(r) => FinishReason::from_openai(r),
        None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None => FinishReason::Stop,
    };
    Ok(ChatResponse {
        content,
        tool_calls,
        usage,
        model: if wire.model.is_empty() {
            req.model.clone()
        } else {
            wire.model
        },
        finish_reason,
    })
}

/// Merges tool-call fragments by their `index` (falling back to the id when a server sends no
/// index), keeping first-seen order.
#[derive(Debug, Default)]
struct ToolCallMerger {
    calls: BTreeMap<u32, ToolCall>,
    last: Option<u32>,
}

impl ToolCallMerger {
    fn push(&mut self, frag: WireToolCall) {
        let index = match frag.index {
            Some(i) => i,
            None => {
                let same_as_last = self.last.is_some_and(|l| {
                    frag.id.as_deref().is_none_or(|id| {
                        self.calls
                            .get(&l)
                            .is_some_and(|c| c.id.is_empty() || c.id == id)
                    })
                });
                match self.last {
                    Some(l) if same_as_last => l,
                    _ => self.calls.keys().next_back().map_or(0, |k| k + 1),
                }
            }
        };
        self.last = Some(index);
        let call = self.calls.entry(index).or_default();
        if let Some(id) = frag.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(name) = frag.function.name.filter(|n| !n.is_empty()) {
            call.name = name;
        }
        if let Some(args) = frag.function.arguments {
            call.arguments.push_str(&args);
        }
    }

    fn finish(self) -> Vec<ToolCall> {
        self.calls
            .into_values()
            .enumerate()
            .map(|(i, mut c)| {
                if c.id.is_empty() {
                    c.id = format!("call_{i}");
                }
                if c.arguments.trim().is_empty() {
                    c.arguments = "{}".into();
                }
                c
            })
            .collect()
    }
}

/// Assembles a streamed answer from `/chat/completions` chunks.
#[derive(Debug)]
struct StreamState {
    request: ChatRequest,
    model: String,
    content: String,
    tools: ToolCallMerger,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamState {
    fn new(request: ChatRequest) -> Self {
        StreamState {
            model: request.model.clone(),
            request,
            content: String::new(),
            tools: ToolCallMerger::default(),
            finish: None,
            usage: None,
        }
    }

    /// Applies one `data:` payload; returns the text delta it carried, if any.
    fn apply(&mut self, data: &str) -> Result<Option<String>, LlmError> {
        let chunk: WireChunk = serde_json::from_str(data)
            .map_err(|e| LlmError::Decode(format!("{e} in stream chunk {data:?}")))?;
        if let Some(err) = &chunk.error {
            return Err(api_error(err));
        }
        if !chunk.model.is_empty() {
            self.model = chunk.model;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u.into());
        }
        let mut delta_text = String::new();
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content {
                delta_text.push_str(&text);
            }
            for frag in choice.delta.tool_calls {
                self.tools.push(frag);
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(FinishReason::from_openai(&reason));
            }
        }
        self.content.push_str(&delta_text);
        Ok((!delta_text.is_empty()).then_some(delta_text))
    }

    /// The closing events: each tool call, the usage, and `Done`.
    fn finish(self) -> Vec<StreamEvent> {
        let tool_calls = self.tools.finish();
        let usage = self
            .usage
            .unwrap_or_else(|| tokens::estimate_usage(&self.request, &self.content, &tool_calls));
        let finish_reason = match self.finish {
            Some(r) => r,
            None if !tool_calls.is_empty() => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        let mut out: Vec<StreamEvent> = tool_calls
            .iter()
            .cloned()
            .map(StreamEvent::ToolCall)
            .collect();
        out.push(StreamEvent::Usage(usage));
        out.push(StreamEvent::Done(ChatResponse {
            content: self.content,
            tool_calls,
            usage,
            model: self.model,
            finish_reason,
        }));
        out
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = request_body(req, false);
        let timeout = self.settings.timeout;
        let wire: WireResponse = http::retrying(&self.settings.retry, &self.name, || {
            http::send_for_json(self.post(&body), timeout)
        })
        .await?;
        response_from_wire(req, wire)
    }

    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, LlmError> {
        let body = request_body(req, true);
        let timeout = self.settings.timeout;
        let resp = http::retrying(&self.settings.retry, &self.name, || {
            http::send(self.post(&body), timeout)
        })
        .await?;
        let events = http::sse_events(resp, timeout);
        Ok(assemble_stream(events, StreamState::new(req.clone())))
    }
}

/// Drives `StreamState` over the SSE events, yielding [`StreamEvent`]s.
fn assemble_stream(
    events: futures::stream::BoxStream<'static, Result<eventsource_stream::Event, LlmError>>,
    state: StreamState,
) -> ChatStream {
    struct Run {
        events: futures::stream::BoxStream<'static, Result<eventsource_stream::Event, LlmError>>,
        state: Option<StreamState>,
        pending: std::collections::VecDeque<StreamEvent>,
    }
    let run = Run {
        events,
        state: Some(state),
        pending: Default::default(),
    };
    futures::stream::unfold(run, |mut run| async move {
        loop {
            if let Some(ev) = run.pending.pop_front() {
                return Some((Ok(ev), run));
            }
            let state = run.state.as_mut()?;
            match run.events.next().await {
                Some(Ok(event)) => {
                    let data = event.data.trim();
                    if data == "[DONE]" {
                        if let Some(state) = run.state.take() {
                            run.pending.extend(state.finish());
                        }
                        continue;
                    }
                    if data.is_empty() {
                        continue;
                    }
                    match state.apply(data) {
                        Ok(Some(text)) => return Some((Ok(StreamEvent::TextDelta(text)), run)),
                        Ok(None) => {}
                        Err(e) => {
                            run.state = None;
                            return Some((Err(e), run));
                        }
                    }
                }
                Some(Err(e)) => {
                    run.state = None;
                    return Some((Err(e), run));
                }
                None => {
                    // Some servers close without `[DONE]`; that is fine once a finish reason came.
                    let state = run.state.take()?;
                    if state.finish.is_some() {
                        run.pending.extend(state.finish());
                        continue;
                    }
                    return Some((
                        Err(LlmError::Interrupted(
                            "stream ended before the answer was finished".into(),
                        )),
                        run,
                    ));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolDef;

    #[test]
    fn request_body_shape() {
        let req = ChatRequest::new(
            "gpt-4o-mini",
            vec![
                Message::system("be brief"),
                Message::user("order 12?"),
                Message::assistant_tool_calls(
                    "",
                    vec![ToolCall {
                        id: "c1".into(),
                        name: "get_order".into(),
                        arguments: "{\"id\":12}".into(),
                    }],
                ),
                Message::tool_result("c1", "get_order", "{\"status\":\"shipped\"}"),
            ],
        )
        .with_tools(vec![ToolDef {
            name: "get_order".into(),
            description: "Look up an order".into(),
            parameters: json!({"type":"object","properties":{"id":{"type":"integer"}}}),
        }])
        .with_tool_choice(ToolChoice::None)
        .with_max_tokens(50);
        let body = request_body(&req, true);
        assert_eq!(body["model"], "gpt-4o-mini");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"id\":12}"
        );
        assert_eq!(body["messages"][3]["tool_call_id"], "c1");
        assert!(body["messages"][3].get("name").is_none());
        assert_eq!(body["tools"][0]["function"]["name"], "get_order");
        assert_eq!(body["tool_choice"], "none");
        assert_eq!(body["max_tokens"], 50);
        assert_eq!(body["stream_options"]["include_usage"], true);
        let plain = request_body(&ChatRequest::new("m", vec![Message::user("hi")]), false);
        assert!(plain.get("tools").is_none());
        assert!(plain.get("tool_choice").is_none());
        assert!(plain.get("stream").is_none());
    }

    #[test]
    fn reasoning_models_get_max_completion_tokens_and_no_temperature() {
        for model in ["o1", "o3-mini", "o4-mini", "gpt-5", "openai/gpt-5-mini"] {
            let req = ChatRequest::new(model, vec![Message::user("hi")])
                .with_max_tokens(100)
                .with_temperature(0.2);
            let body = request_body(&req, false);
            assert_eq!(body["max_completion_tokens"], 100, "{model}");
            assert!(body.get("max_tokens").is_none(), "{model}");
            assert!(body.get("temperature").is_none(), "{model}");
        }
        for model in ["gpt-4o", "llama3.1:8b", "ollama", "olmo-7b"] {
            let req = ChatRequest::new(model, vec![])
                .with_max_tokens(100)
                .with_temperature(0.2);
            let body = request_body(&req, false);
            assert_eq!(body["max_tokens"], 100, "{model}");
            assert!(body.get("temperature").is_some(), "{model}");
        }
    }

    #[test]
    fn lenient_response_decoding() {
        let req = ChatRequest::new("m", vec![Message::user("hi")]);
        let wire: WireResponse = serde_json::from_str(
            r#"{"choices":[{"message":{"role":"assistant","content":"hey","refusal":null,
                "annotations":[]},"finish_reason":"some_new_reason","logprobs":null}],
                "system_fingerprint":"x"}"#,
        )
        .unwrap();
        let resp = response_from_wire(&req, wire).unwrap();
        assert_eq!(resp.content, "hey");
        assert_eq!(resp.finish_reason, FinishReason::Other);
        assert_eq!(resp.model, "m");
        // No usage reported: counted locally.
        assert_eq!(resp.usage.output_tokens, tokens::count_tokens("hey") as u64);
        assert!(resp.usage.input_tokens > 0);
    }

    #[test]
    fn merges_tool_call_deltas_by_index() {
        let mut st = StreamState::new(ChatRequest::new("m", vec![]));
        for data in [
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{\"x\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":":2}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ] {
            assert_eq!(st.apply(data).unwrap(), None);
        }
        let events = st.finish();
        assert_eq!(
            events[0],
            StreamEvent::ToolCall(ToolCall {
                id: "a".into(),
                name: "f".into(),
                arguments: "{\"q\":1}".into()
            })
        );
        assert_eq!(
            events[1],
            StreamEvent::ToolCall(ToolCall {
                id: "b".into(),
                name: "g".into(),
                arguments: "{\"x\":2}".into()
            })
        );
        let StreamEvent::Done(done) = &events[3] else {
            panic!("{events:?}")
        };
        assert_eq!(done.finish_reason, FinishReason::ToolCalls);
    }

    #[test]
    fn merges_tool_calls_without_index() {
        let mut m = ToolCallMerger::default();
        for (id, name, args) in [
            (Some("a"), Some("f"), "{\"a\""),
            (None, None, ":1}"),
            (Some("b"), Some("g"), "{}"),
        ] {
            m.push(WireToolCall {
                index: None,
                id: id.map(Into::into),
                function: WireFunction {
                    name: name.map(Into::into),
                    arguments: Some(args.into()),
                },
            });
        }
        let calls = m.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, "{\"a\":1}");
        assert_eq!(calls[1].name, "g");
    }
}
