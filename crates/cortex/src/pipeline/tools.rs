//! The tool executor interface of stage 07: which tools an agent offers the model, and running a
//! call. The actions module implements it with webhooks.

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

#[async_trait]
pub trait ToolExecutor: Send + Sync {
    /// The tools the agent offers (its linked actions with trigger `tool`).
    async fn tools(
        &self,
        company_id: Uuid,
        agent: &Agent,
    ) -> Result<Vec<ToolDef>, crate::store::StoreError>;
    /// Run one call. Only tools of this agent may run; anything else is a failed outcome.
    async fn execute(&self, company_id: Uuid, agent: &Agent, call: &ToolCall) -> ToolOutcome;
}
