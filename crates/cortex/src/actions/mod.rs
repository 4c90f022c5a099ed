//! Actions: webhooks an agent's model may call as tools. Definitions live in the store; this
//! module turns an agent's linked actions into tool definitions and runs tool calls against them
//! through the guarded HTTP client (private addresses refused, 15 s timeout, 50 KB cap, retries,
//! per-action rate limits, arguments validated against the schema before any request).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cortex_llm::{ToolCall, ToolDef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::agents::Agent;
use crate::pipeline::tools::{ToolExecutor, ToolOutcome};
use crate::store::{ActionStore, SqlStore, StoreError};

mod runner;
pub use runner::NetRunner;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    #[default]
    CustomFunction,
    Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    #[default]
    None,
    ApiKey,
    Bearer,
    Oauth2,
    Basic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Offered to the model as a tool.
    #[default]
    Tool,
    /// Run after the model's final answer.
    PostResponse,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RateLimit {
    pub max_calls: u32,
    pub window_seconds: u32,
}

/// An action as defined by the company.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionDef {
    /// The tool name the model uses: letters, digits, `_` and `-`, 1–64 characters.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub source_type: SourceType,
    pub webhook_url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub auth_type: AuthType,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub connection_id: Option<Uuid>,
    /// JSON Schema of the arguments (sent to the model).
    #[serde(default = "empty_object_schema")]
    #[schema(value_type = Object)]
    pub parameters_schema: Value,
    #[serde(default)]
    pub path_template: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub query_schema: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub body_schema: Option<Value>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    #[serde(default)]
    pub trigger: Trigger,
}

fn default_method() -> String {
    "POST".into()
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// A stored action.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub id: Uuid,
    pub company_id: Uuid,
    pub def: ActionDef,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Action {
    pub fn tool_def(&self) -> ToolDef {
        ToolDef {
            name: self.def.name.clone(),
            description: self.def.description.clone(),
            parameters: self.def.parameters_schema.clone(),
        }
    }
}

/// The tool executor backed by the company's actions.
pub struct ActionTools {
    store: SqlStore,
    runner: Arc<dyn ActionRunner>,
}

/// Runs one action's webhook with validated arguments.
#[async_trait]
pub trait ActionRunner: Send + Sync {
    async fn run(&self, action: &Action, arguments: &Value) -> ToolOutcome;
}

impl ActionTools {
    pub fn new(store: SqlStore, runner: Arc<dyn ActionRunner>) -> Self {
        Self { store, runner }
    }

    async fn linked(&self, company_id: Uuid, agent: &Agent) -> Result<Vec<Action>, StoreError> {
        if agent.spec.action_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .actions_by_ids(company_id, &agent.spec.action_ids)
            .await
    }
}

#[async_trait]
impl ToolExecutor for ActionTools {
    async fn tools(&self, company_id: Uuid, agent: &Agent) -> Result<Vec<ToolDef>, StoreError> {
        Ok(self
            .linked(company_id, agent)
            .await?
            .iter()
            .filter(|a| a.def.trigger == Trigger::Tool)
            .map(Action::tool_def)
            .collect())
    }

    async fn execute(&self, company_id: Uuid, agent: &Agent, call: &ToolCall) -> ToolOutcome {
        let started = Instant::now();
        let failed = |error: String| ToolOutcome {
            ok: false,
            content: format!("Error: {error}"),
            latency_ms: started.elapsed().as_millis() as u64,
        };
        let linked = match self.linked(company_id, agent).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "loading actions");
                return failed("the tool could not be loaded".into());
            }
        };
        // Only this agent's linked tool actions can run; the model cannot name anything else.
        let Some(action) = linked
            .iter()
            .find(|a| a.def.name == call.name && a.def.trigger == Trigger::Tool)
        else {
            return failed(format!("unknown tool {:?}", call.name));
        };
        let arguments: Value = match serde_json::from_str(if call.arguments.trim().is_empty() {
            "{}"
        } else {
            &call.arguments
        }) {
            Ok(v) => v,
            Err(e) => return failed(format!("the arguments are not valid JSON: {e}")),
        };
        self.runner.run(action, &arguments).await
    }
}
