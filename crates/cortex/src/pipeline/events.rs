//! The one event type of the model/tool loop: what `/v1/chat/stream` and run streams carry, what
//! run events store. Serialised as `{"event": name, "data": {...}}`; on the wire the name is the
//! SSE `event:` and the data its `data:`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Something the loop (or a run around it) produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A run's status: `running` first, then one final `completed | failed | stopped`.
    Status {
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<String>,
    },
    /// Text of the answer as the model streams it.
    TextDelta { delta: String },
    /// A finished assistant message (its text, and the tools it asked for).
    Assistant {
        message_id: Uuid,
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<Value>>,
    },
    ToolCall {
        call_id: String,
        name: String,
        arguments: Value,
    },
    ToolResult {
        call_id: String,
        name: String,
        ok: bool,
        output: String,
        latency_ms: u64,
    },
    /// Tokens and cost of one model call (of the whole answer, on `/v1/chat/stream`).
    Usage {
        #[serde(rename = "inputTokens")]
        input_tokens: u64,
        #[serde(rename = "outputTokens")]
        output_tokens: u64,
        cost_usd: f64,
    },
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Status { .. } => "status",
            Event::TextDelta { .. } => "text_delta",
            Event::Assistant { .. } => "assistant",
            Event::ToolCall { .. } => "tool_call",
            Event::ToolResult { .. } => "tool_result",
            Event::Usage { .. } => "usage",
        }
    }

    /// The event's data object (the SSE `data:`).
    pub fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut m)) => m.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    pub fn status(status: &str, error: Option<String>, error_code: Option<String>) -> Event {
        Event::Status {
            status: status.to_owned(),
            error,
            error_code,
        }
    }
}

/// An event as stored and sent: its place in the run's gap-free sequence (from 1), its name and
/// its data already serialised, so fanning it out to many viewers costs no serialisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub seq: u64,
    pub name: String,
    pub data: String,
}

impl Frame {
    pub fn new(seq: u64, event: &Event) -> Frame {
        Frame {
            seq,
            name: event.name().to_owned(),
            data: event.data().to_string(),
        }
    }

    /// Whether this frame is a run's final status.
    pub fn is_final(&self) -> bool {
        self.name == "status"
            && serde_json::from_str::<Value>(&self.data)
                .ok()
                .and_then(|v| v["status"].as_str().map(|s| s != "running"))
                .unwrap_or(false)
    }
}
