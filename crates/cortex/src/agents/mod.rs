//! Agents: what an agent is (its configuration), how it is validated, and the config cache that
//! stage 01 of the pipeline and `GET /v1/agents/{id}/config` share.

pub mod template;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// How long a loaded configuration is served from memory.
pub const CONFIG_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Personality {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dialect {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub primary_language: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FaqEntry {
    pub question: String,
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub trigger: String,
    #[serde(default)]
    pub instructions: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KnowledgeDocument {
    pub title: String,
    pub content: String,
}

/// Per-agent behaviour. Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    /// Pin a tier (`speed`, `nano`, `sonnet`, `complex`, `search`) instead of routing.
    pub tier: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Context budget of the token optimizer.
    pub token_budget: u32,
    pub rag_top_k: u32,
    pub memory_enabled: bool,
    pub cache_enabled: bool,
    /// Similarity at or above which a cached answer is served (0–1).
    pub cache_threshold: f32,
    /// Tool-call rounds per message (0–5).
    pub max_tool_rounds: u32,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            tier: None,
            temperature: None,
            max_tokens: None,
            token_budget: 8000,
            rag_top_k: 5,
            memory_enabled: true,
            cache_enabled: true,
            cache_threshold: 0.75,
            max_tool_rounds: 5,
        }
    }
}

/// Everything an agent is, as stored (one JSON document per agent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct AgentSpec {
    pub name: String,
    /// A Jinja2 template; variables: agent, personality, dialect, customer, memory, knowledge,
    /// faqs, scenarios, channel, metadata, now.
    pub system_prompt: String,
    pub personality: Personality,
    pub dialect: Dialect,
    pub workflow_faqs: Vec<FaqEntry>,
    pub scenarios: Vec<Scenario>,
    #[schema(value_type = Vec<String>)]
    pub knowledge_source_ids: Vec<Uuid>,
    #[schema(value_type = Vec<String>)]
    pub action_ids: Vec<Uuid>,
    pub knowledge_documents: Vec<KnowledgeDocument>,
    pub settings: AgentSettings,
    /// The company's default agent for runs started without `agent_id` (the most recently
    /// updated one marked so; else the oldest agent).
    pub is_default: bool,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: Uuid,
    pub company_id: Uuid,
    pub spec: AgentSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A loaded agent with its compiled prompt template, as the pipeline uses it.
pub struct LoadedAgent {
    pub agent: Agent,
    pub template: template::PromptTemplate,
}

/// In-process cache of loaded agents (TTL 5 minutes). Updates and deletes invalidate the entry
/// on this node directly and on other nodes through the coordination channel.
#[derive(Default)]
pub struct ConfigCache {
    entries: Mutex<HashMap<Uuid, (Instant, Arc<LoadedAgent>)>>,
}

impl ConfigCache {
    pub fn get(&self, agent_id: Uuid) -> Option<Arc<LoadedAgent>> {
        let map = self.entries.lock().ok()?;
        map.get(&agent_id)
            .filter(|(at, _)| at.elapsed() < CONFIG_TTL)
            .map(|(_, a)| a.clone())
    }

    pub fn put(&self, loaded: Arc<LoadedAgent>) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() > 10_000 {
                map.retain(|_, (at, _)| at.elapsed() < CONFIG_TTL);
            }
            map.insert(loaded.agent.id, (Instant::now(), loaded));
        }
    }

    pub fn invalidate(&self, agent_id: Uuid) {
        if let Ok(mut map) = self.entries.lock() {
            map.remove(&agent_id);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.lock() {
            map.clear();
        }
    }
}

/// The agent's configuration in the shape of `GET /v1/agents/{id}/config`.
pub fn config_view(agent: &Agent, actions: Vec<Value>) -> Value {
    let s = &agent.spec;
    serde_json::json!({
        "id": agent.id,
        "company_id": agent.company_id,
        "name": s.name,
        "system_prompt": s.system_prompt,
        "personality": s.personality,
        "dialect": s.dialect,
        "action_definitions": actions,
        "action_ids": s.action_ids,
        "knowledge_source_ids": s.knowledge_source_ids,
        "workflow_faqs": s.workflow_faqs,
        "scenarios": s.scenarios,
        "knowledge_documents": s.knowledge_documents,
        "settings": s.settings,
        "created_at": agent.created_at,
        "updated_at": agent.updated_at,
    })
}
