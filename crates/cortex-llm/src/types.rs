//! Provider-neutral request, response and streaming types.
//!
//! These types are what the rest of Cortex speaks; each provider module maps them to and from its
//! own wire format. Every field that a provider may omit has a default, so responses from lenient
//! OpenAI-compatible servers (vLLM, Ollama, LiteLLM, …) still decode.

use serde::{Deserialize, Serialize};

/// Who wrote a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model (the agent's identity and context).
    System,
    /// The end user (customer).
    #[default]
    User,
    /// The model.
    Assistant,
    /// The result of a tool call, answering an assistant's [`ToolCall`].
    Tool,
}

impl Role {
    /// The lowercase wire name (`"system"`, `"user"`, `"assistant"`, `"tool"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Message {
    /// Author of the message.
    pub role: Role,
    /// Text content (may be empty for an assistant message that only calls tools).
    pub content: String,
    /// Tool calls requested by an assistant message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a [`Role::Tool`] message: the id of the [`ToolCall`] it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Optional author name (for a tool message: the tool's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    fn with_role(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            ..Message::default()
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::with_role(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::with_role(Role::User, content)
    }

    /// An assistant text message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::with_role(Role::Assistant, content)
    }

    /// An assistant message that requests tool calls (content may be empty).
    pub fn assistant_tool_calls(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        Message {
            tool_calls,
            ..Self::with_role(Role::Assistant, content)
        }
    }

    /// A tool result answering the call `tool_call_id` of the tool `name`.
    pub fn tool_result(
        tool_call_id: impl Into<String>,
        name: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        Message {
            tool_call_id: Some(tool_call_id.into()),
            name: Some(name.into()),
            ..Self::with_role(Role::Tool, content)
        }
    }
}

/// A tool (function) the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ToolDef {
    /// Function name the model uses to call the tool.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// A complete tool call made by the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ToolCall {
    /// Provider-assigned id; a tool result refers to it.
    pub id: String,
    /// Name of the called tool.
    pub name: String,
    /// Arguments as a JSON text (as the model produced it; may be invalid JSON).
    pub arguments: String,
}

/// Whether and how the model may call tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must answer with text (used at the tool-round limit).
    None,
    /// The model must call at least one tool.
    Required,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChatRequest {
    /// Provider model name (a [`crate::ModelChain`] overwrites it per attempt).
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolDef>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Maximum number of output tokens.
    pub max_tokens: Option<u32>,
    /// Tool policy; only sent when `tools` is not empty.
    pub tool_choice: ToolChoice,
}

impl ChatRequest {
    /// A request for `model` with `messages`, no tools, provider defaults for sampling.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            ..ChatRequest::default()
        }
    }

    /// Sets the tools.
    #[must_use]
    pub fn with_tools(mut self, tools: Vec<ToolDef>) -> Self {
        self.tools = tools;
        self
    }

    /// Sets the tool choice.
    #[must_use]
    pub fn with_tool_choice(mut self, tool_choice: ToolChoice) -> Self {
        self.tool_choice = tool_choice;
        self
    }

    /// Sets the temperature.
    #[must_use]
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Sets the maximum number of output tokens.
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = Some(max_tokens);
        self
    }
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Usage {
    /// Prompt tokens (for Anthropic including cache reads and writes).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Input plus output tokens.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, rhs: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + rhs.input_tokens,
            output_tokens: self.output_tokens + rhs.output_tokens,
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        *self = *self + rhs;
    }
}

/// Why the model stopped, normalised across providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end of the answer (OpenAI `stop`, Anthropic `end_turn`/`stop_sequence`).
    #[default]
    Stop,
    /// Output token limit reached (OpenAI `length`, Anthropic `max_tokens`).
    Length,
    /// The model wants tool results (OpenAI `tool_calls`, Anthropic `tool_use`).
    ToolCalls,
    /// Output withheld by a content filter (OpenAI `content_filter`, Anthropic `refusal`).
    ContentFilter,
    /// Anything else a provider reported.
    #[serde(other)]
    Other,
}

impl FinishReason {
    /// Maps an OpenAI-style `finish_reason`.
    pub fn from_openai(reason: &str) -> Self {
        match reason {
            "stop" | "eos" | "end_turn" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "function_call" | "tool_use" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Other,
        }
    }

    /// Maps an Anthropic `stop_reason`.
    pub fn from_anthropic(reason: &str) -> Self {
        match reason {
            "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
            "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
            "tool_use" => FinishReason::ToolCalls,
            "refusal" => FinishReason::ContentFilter,
            _ => FinishReason::Other,
        }
    }
}

/// A complete (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ChatResponse {
    /// Text of the answer (empty when the model only called tools).
    pub content: String,
    /// Tool calls the model made, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Token usage, as reported by the provider or, when it reported none, counted locally.
    pub usage: Usage,
    /// Model name as the provider reported it (the requested name when it reported none).
    pub model: String,
    /// Why the model stopped.
    pub finish_reason: FinishReason,
}

impl ChatResponse {
    /// The assistant message to append to the conversation for the next round.
    pub fn to_message(&self) -> Message {
        Message::assistant_tool_calls(self.content.clone(), self.tool_calls.clone())
    }
}

/// One event of a streamed answer.
///
/// Order: any number of `TextDelta`s, then each complete `ToolCall`, then exactly one `Usage`,
/// then exactly one `Done` with the assembled [`ChatResponse`] (whose text is the concatenation
/// of the deltas). The stream ends after `Done`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A piece of answer text.
    TextDelta(String),
    /// A tool call, emitted once its arguments are complete.
    ToolCall(ToolCall),
    /// Token usage of the call (reported, or counted locally when the provider sent none).
    Usage(Usage),
    /// The whole answer; last event.
    Done(ChatResponse),
}
