//! The tool executor interface of stage 07: which tools an agent offers the model, and running a
//! call. The actions module implements it with webhooks.

use std::sync::Arc;

use async_trait::async_trait;
use cortex_llm::{ToolCall, ToolDef};
use uuid::Uuid;

use crate::agents::Agent;

/// What running one tool call produced; a failure is reported to the model, not to the client.
#[derive(Debug, Clone)]
pub struct ToolOutcome {
    pub ok: bool,
    /// What the model sees as the tool's result: the response body, or `Error: …`.
    pub content: String,
    pub latency_ms: u64,
}

/// An agent's linked actions, loaded once per chat (stage 01) and used by the tool loop and the
/// post-response step. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Linked(pub Arc<Vec<crate::actions::Action>>);

impl Linked {
    /// The tools the model is offered: the linked actions with trigger `tool`.
    pub fn tool_defs(&self) -> Vec<ToolDef> {
        self.0
            .iter()
            .filter(|a| a.def.trigger == crate::actions::Trigger::Tool)
            .map(crate::actions::Action::tool_def)
            .collect()
    }

    pub fn has_post_response(&self) -> bool {
        self.0
            .iter()
            .any(|a| a.def.trigger == crate::actions::Trigger::PostResponse)
    }
}

#[async_trait]
pub trait ToolExecutor: Send + Sync {
    /// The agent's linked actions (of its company).
    async fn linked(
        &self,
        company_id: Uuid,
        agent: &Agent,
    ) -> Result<Linked, crate::store::StoreError>;
    /// Run one call. Only the linked `tool` actions may run; anything else is a failed outcome.
    async fn execute(&self, linked: &Linked, call: &ToolCall) -> ToolOutcome;
}
