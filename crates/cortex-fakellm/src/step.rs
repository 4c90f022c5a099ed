//! Script steps: what the fake answers to one model request.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which endpoint family a [`Step`] applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /v1/chat/completions` and `POST /v1/messages` (the default).
    #[default]
    Chat,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// Any model endpoint.
    Any,
}

/// One tool call the fake model makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id; generated (`call_…` / `toolu_…`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Function name.
    pub name: String,
    /// Arguments. A JSON string is sent verbatim as the arguments text (so malformed
    /// arguments can be scripted); any other JSON value is serialized compactly.
    pub arguments: Value,
}

impl ToolCall {
    /// A tool call with a generated id.
    pub fn new(name: impl Into<String>, arguments: Value) -> Self {
        Self {
            id: None,
            name: name.into(),
            arguments,
        }
    }

    /// Sets an explicit call id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The arguments as the text sent on the wire.
    pub fn arguments_text(&self) -> String {
        match &self.arguments {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Token counts reported in `usage`, overriding the computed ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
}

/// What a [`Step`] does. Serialized with a `type` tag (see the crate docs for the JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// The default behaviour (echo reply / hash embeddings), e.g. to only add a delay.
    Default,
    /// A plain text answer, `finish_reason: "stop"`.
    Text {
        /// The answer text.
        text: String,
    },
    /// One or more tool calls, `finish_reason: "tool_calls"`, optionally preceded by text.
    ToolCalls {
        /// The calls, in order.
        tool_calls: Vec<ToolCall>,
        /// Text content sent before the calls.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// An HTTP error with an OpenAI-style (or Anthropic-style on `/v1/messages`) error body.
    Error {
        /// HTTP status, 400–599.
        status: u16,
        /// Error message; a generic one per status when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// `error.type`; derived from the status when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_type: Option<String>,
        /// `error.code` (OpenAI only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Seconds sent in a `Retry-After` header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Close the connection. Without `after_chunks` (or on a non-streaming request) it is
    /// closed before any response byte; with `after_chunks: n` a streaming response sends
    /// its first `n` SSE events, then the connection is aborted.
    Drop {
        /// Number of SSE events to send before aborting a streaming response.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_chunks: Option<usize>,
    },
}

/// One scripted response. Build with the constructors and `with_*` methods, or send the
/// JSON form to `POST /_admin/script`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What to answer.
    #[serde(flatten)]
    pub action: Action,
    /// Only requests for this model consume the step (`None`: any model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Endpoint family the step applies to.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Delay before answering, in milliseconds (added to the default latency).
    #[serde(default)]
    pub delay_ms: u64,
    /// Delay between streamed SSE events, in milliseconds (overrides the configured one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_delay_ms: Option<u64>,
    /// How many requests this step answers before it is removed (at least 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Never removed: answers every matching request (`times` is then ignored).
    #[serde(default)]
    pub forever: bool,
    /// Overrides the computed `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Overrides the OpenAI `finish_reason` (e.g. `"length"`); mapped for Anthropic
    /// (`stop`→`end_turn`, `tool_calls`→`tool_use`, `length`→`max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

fn one() -> u32 {
    1
}

/// Every key a step's JSON object may have.
pub(crate) const STEP_KEYS: &[&str] = &[
    "type",
    "text",
    "tool_calls",
    "status",
    "message",
    "error_type",
    "code",
    "retry_after",
    "after_chunks",
    "model",
    "endpoint",
    "delay_ms",
    "chunk_delay_ms",
    "times",
    "forever",
    "usage",
    "finish_reason",
];

impl Step {
    /// A step performing `action` once, for any model, on chat endpoints.
    pub fn new(action: Action) -> Self {
        Self {
            action,
            model: None,
            endpoint: Endpoint::Chat,
            delay_ms: 0,
            chunk_delay_ms: None,
            times: 1,
            forever: false,
            usage: None,
            finish_reason: None,
        }
    }

    /// The default behaviour (useful with [`Step::with_delay`]).
    pub fn default_reply() -> Self {
        Self::new(Action::Default)
    }

    /// A text answer.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(Action::Text { text: text.into() })
    }

    /// A single tool call.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Self::tool_calls(vec![ToolCall::new(name, arguments)])
    }

    /// Several tool calls in one answer.
    pub fn tool_calls(calls: Vec<ToolCall>) -> Self {
        Self::new(Action::ToolCalls {
            tool_calls: calls,
            text: None,
        })
    }

    /// An HTTP error with the given status and message.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::new(Action::Error {
            status,
            message: Some(message.into()),
            error_type: None,
            code: None,
            retry_after: None,
        })
    }

    /// A `429` rate-limit error with a `Retry-After: <secs>` header.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(Action::Error {
            status: 429,
            message: None,
            error_type: None,
            code: None,
            retry_after: Some(retry_after_secs),
        })
    }

    /// Close the connection without answering.
    pub fn drop_connection() -> Self {
        Self::new(Action::Drop { after_chunks: None })
    }

    /// For a streaming request, send `chunks` SSE events then abort the connection.
    pub fn drop_mid_stream(chunks: usize) -> Self {
        Self::new(Action::Drop {
            after_chunks: Some(chunks),
        })
    }

    /// Restricts the step to requests for `model`.
    #[must_use]
    pub fn for_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the endpoint family.
    #[must_use]
    pub fn on(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Waits `delay` before answering.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay_ms = duration_ms(delay);
        self
    }

    /// Waits `delay` between streamed events.
    #[must_use]
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay_ms = Some(duration_ms(delay));
        self
    }

    /// Answers `n` requests (at least 1).
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = n.max(1);
        self
    }

    /// Answers every matching request.
    #[must_use]
    pub fn forever(mut self) -> Self {
        self.forever = true;
        self
    }

    /// Reports these token counts.
    #[must_use]
    pub fn with_usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        self.usage = Some(Usage {
            prompt_tokens,
            completion_tokens,
        });
        self
    }

    /// Overrides the finish reason.
    #[must_use]
    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        self.finish_reason = Some(reason.into());
        self
    }

    /// For a tool-call step, text content sent before the calls; for any other action the
    /// step becomes a text answer.
    #[must_use]
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        let text = text.into();
        match &mut self.action {
            Action::ToolCalls { text: t, .. } => *t = Some(text),
            other => *other = Action::Text { text },
        }
        self
    }

    /// Sets the error type and code of an error step (no effect on other actions).
    #[must_use]
    pub fn with_error_type(mut self, error_type: impl Into<String>, code: Option<String>) -> Self {
        if let Action::Error {
            error_type: t,
            code: c,
            ..
        } = &mut self.action
        {
            *t = Some(error_type.into());
            *c = code;
        }
        self
    }

    /// Checks the step is answerable: error status in 400–599, at least one tool call with
    /// a non-empty name, `times ≥ 1`.
    pub fn validate(&self) -> Result<(), String> {
        if self.times == 0 {
            return Err("times must be at least 1".to_owned());
        }
        match &self.action {
            Action::Error { status, .. } if !(400..=599).contains(status) => {
                Err(format!("error status {status} is not in 400-599"))
            }
            Action::ToolCalls { tool_calls, .. } if tool_calls.is_empty() => {
                Err("tool_calls must not be empty".to_owned())
            }
            Action::ToolCalls { tool_calls, .. }
                if tool_calls.iter().any(|c| c.name.is_empty()) =>
            {
                Err("tool call name must not be empty".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// Parses a step from its JSON form, rejecting unknown keys.
    pub fn from_json(value: Value) -> Result<Self, String> {
        let Value::Object(map) = &value else {
            return Err("a step must be a JSON object".to_owned());
        };
        if let Some(key) = map.keys().find(|k| !STEP_KEYS.contains(&k.as_str())) {
            return Err(format!("unknown step field `{key}`"));
        }
        let step: Step = serde_json::from_value(value).map_err(|e| format!("invalid step: {e}"))?;
        step.validate()?;
        Ok(step)
    }

    pub(crate) fn matches(&self, endpoint: Endpoint, model: &str) -> bool {
        let endpoint_ok = self.endpoint == Endpoint::Any || self.endpoint == endpoint;
        endpoint_ok && self.model.as_deref().is_none_or(|m| m == model)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip() {
        let step = Step::tool_call("get_weather", json!({"city": "Paris"}))
            .for_model("gpt")
            .with_delay(Duration::from_millis(5))
            .times(2);
        let v = serde_json::to_value(&step).unwrap();
        assert_eq!(v["type"], "tool_calls");
        assert_eq!(v["tool_calls"][0]["name"], "get_weather");
        assert_eq!(Step::from_json(v).unwrap(), step);
    }

    #[test]
    fn defaults_and_rejections() {
        let s = Step::from_json(json!({"type": "text", "text": "hi"})).unwrap();
        assert_eq!(s, Step::text("hi"));
        assert!(Step::from_json(json!({"type": "text", "text": "hi", "dealy_ms": 3})).is_err());
        assert!(Step::from_json(json!({"type": "error", "status": 200})).is_err());
        assert!(Step::from_json(json!({"type": "tool_calls", "tool_calls": []})).is_err());
        assert!(Step::from_json(json!({"type": "text", "text": "x", "times": 0})).is_err());
        assert!(Step::from_json(json!({"type": "nope"})).is_err());
    }

    #[test]
    fn matching() {
        let s = Step::text("x").for_model("a");
        assert!(s.matches(Endpoint::Chat, "a"));
        assert!(!s.matches(Endpoint::Chat, "b"));
        assert!(!s.matches(Endpoint::Embeddings, "a"));
        let any = Step::error(500, "x").on(Endpoint::Any);
        assert!(any.matches(Endpoint::Embeddings, "z"));
    }
}
