//! Actions: webhooks an agent's model may call as tools. Definitions live in the store; this
//! module turns an agent's linked actions into tool definitions and runs tool calls against them
//! through the guarded HTTP client (private addresses refused, 15 s timeout, 50 KB cap, retries,
//! per-action rate limits, arguments validated against the schema before any request).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cortex_llm::{ToolCall, ToolDef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::actions::tools::{Linked, ToolExecutor, ToolOutcome};
use crate::agents::Agent;
use crate::store::{ActionStore, SqlStore, StoreError};

mod runner;
pub mod tools;
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

/// The credentials of a connection. Which fields are required depends on the auth type:
/// `api_key` (+ `header_name`, default `X-API-Key`), `bearer` → `token`, `basic` → `username`
/// and `password`, `oauth2` → `access_token`, or `token_url` + `client_id` + `client_secret`
/// (+ `scope`) for the client-credentials grant. Sealed at rest; `Debug` shows no values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { [redacted] }")
    }
}

fn filled(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Credentials {
    /// What `auth_type` needs, as one message per missing or invalid field.
    pub fn problems(&self, auth_type: AuthType) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut need = |field: &'static str, v: &Option<String>| {
            if filled(v).is_none() {
                out.push((field, format!("{field} is required for this auth_type")));
            }
        };
        match auth_type {
            AuthType::None => {}
            AuthType::ApiKey => need("api_key", &self.api_key),
            AuthType::Bearer => need("token", &self.token),
            AuthType::Basic => {
                need("username", &self.username);
                need("password", &self.password);
            }
            AuthType::Oauth2 => {
                if filled(&self.access_token).is_none() {
                    need("token_url", &self.token_url);
                    need("client_id", &self.client_id);
                    need("client_secret", &self.client_secret);
                }
            }
        }
        if let Some(h) = filled(&self.header_name)
            && (h.len() > 100
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            out.push((
                "header_name",
                "header_name is a header name (letters, digits, '-', '_')".into(),
            ));
        }
        if let Some(u) = filled(&self.token_url)
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            out.push((
                "token_url",
                "token_url must be an absolute http(s) URL".into(),
            ));
        }
        out
    }

    /// The parts that may be shown: header name, user name, token URL, client id, scope.
    pub fn public(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("header_name", &self.header_name),
            ("username", &self.username),
            ("token_url", &self.token_url),
            ("client_id", &self.client_id),
            ("scope", &self.scope),
        ] {
            if let Some(v) = filled(v) {
                m.insert(k.into(), Value::String(v.to_owned()));
            }
        }
        Value::Object(m)
    }

    /// What a runner attaches to the request. `cache_key` names the credentials for a token
    /// cache (it changes when they change).
    pub fn resolve(&self, auth_type: AuthType, cache_key: String) -> ResolvedAuth {
        let s = |v: &Option<String>| filled(v).unwrap_or_default().to_owned();
        match auth_type {
            AuthType::None => ResolvedAuth::None,
            AuthType::ApiKey => ResolvedAuth::Ready(cortex_net::ActionAuth::ApiKey {
                header: filled(&self.header_name).unwrap_or("X-API-Key").to_owned(),
                value: s(&self.api_key),
            }),
            AuthType::Bearer => ResolvedAuth::Ready(cortex_net::ActionAuth::Bearer {
                token: s(&self.token),
            }),
            AuthType::Basic => ResolvedAuth::Ready(cortex_net::ActionAuth::Basic {
                user: s(&self.username),
                password: s(&self.password),
            }),
            AuthType::Oauth2 => match filled(&self.access_token) {
                Some(t) => ResolvedAuth::Ready(cortex_net::ActionAuth::OAuth2 {
                    access_token: t.to_owned(),
                }),
                None => ResolvedAuth::ClientCredentials {
                    cache_key,
                    token_url: s(&self.token_url),
                    client_id: s(&self.client_id),
                    client_secret: s(&self.client_secret),
                    scope: filled(&self.scope).map(str::to_owned),
                },
            },
        }
    }
}

/// Credentials ready for a request, or an OAuth 2 client-credentials grant still to run.
#[derive(Clone)]
pub enum ResolvedAuth {
    None,
    Ready(cortex_net::ActionAuth),
    ClientCredentials {
        cache_key: String,
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
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
    secrets: Option<Arc<crate::secrets::SecretBox>>,
    runner: Arc<dyn ActionRunner>,
}

/// Runs one action's webhook with validated arguments and its connection's credentials.
#[async_trait]
pub trait ActionRunner: Send + Sync {
    async fn run(&self, action: &Action, auth: ResolvedAuth, arguments: &Value) -> ToolOutcome;
    /// The request the action would send (credentials masked), for `/v1/actions/{id}/test`.
    fn preview(&self, action: &Action, arguments: &Value) -> Result<Value, String>;
}

/// The credentials of an action's connection, read from the store and opened. Errors are
/// messages for the tool result (never the secret values).
pub async fn resolve_auth(
    store: &SqlStore,
    secrets: Option<&crate::secrets::SecretBox>,
    action: &Action,
) -> Result<ResolvedAuth, String> {
    use crate::store::ConnectionStore;
    if action.def.auth_type == AuthType::None {
        return Ok(ResolvedAuth::None);
    }
    let id = action
        .def
        .connection_id
        .ok_or("the action has no connection for its credentials")?;
    let conn = store
        .get_connection(action.company_id, id)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "loading a connection");
            "the connection could not be loaded".to_owned()
        })?
        .ok_or("the action's connection no longer exists")?;
    if conn.auth_type != action.def.auth_type {
        return Err("the connection's auth_type does not match the action's".into());
    }
    let secrets =
        secrets.ok_or("credentials cannot be opened: secrets.encryption_key is not configured")?;
    let plain = secrets
        .open(&conn.sealed, &conn.id.to_string())
        .map_err(|e| {
            tracing::error!(error = %e, connection = %conn.id, "opening connection credentials");
            "the connection's credentials could not be opened".to_owned()
        })?;
    let creds: Credentials = serde_json::from_slice(&plain)
        .map_err(|_| "the connection's credentials are malformed".to_owned())?;
    Ok(creds.resolve(
        conn.auth_type,
        format!("{}:{}", conn.id, conn.updated_at.timestamp_micros()),
    ))
}

impl ActionTools {
    pub fn new(
        store: SqlStore,
        secrets: Option<Arc<crate::secrets::SecretBox>>,
        runner: Arc<dyn ActionRunner>,
    ) -> Self {
        Self {
            store,
            secrets,
            runner,
        }
    }

    /// Run one action now (a tool call, a post-response action, a test), credentials included.
    pub async fn run(&self, action: &Action, arguments: &Value) -> ToolOutcome {
        match resolve_auth(&self.store, self.secrets.as_deref(), action).await {
            Ok(auth) => self.runner.run(action, auth, arguments).await,
            Err(e) => ToolOutcome {
                ok: false,
                content: format!("Error: {e}"),
                latency_ms: 0,
            },
        }
    }

    pub fn runner(&self) -> &dyn ActionRunner {
        self.runner.as_ref()
    }

    /// Run the agent's linked `post_response` actions with the finished turn as arguments;
    /// returns each action's name and outcome. Failures are logged, never the client's concern.
    pub async fn post_response(&self, linked: &Linked, turn: &Value) -> Vec<(String, ToolOutcome)> {
        let mut out = Vec::new();
        for action in linked
            .0
            .iter()
            .filter(|a| a.def.trigger == Trigger::PostResponse)
        {
            let outcome = self.run(action, turn).await;
            if !outcome.ok {
                tracing::warn!(action = %action.def.name, result = %outcome.content, "post-response action failed");
            }
            metrics::counter!("cortex_tool_calls_total", "ok" => if outcome.ok { "true" } else { "false" }, "trigger" => "post_response").increment(1);
            out.push((action.def.name.clone(), outcome));
        }
        out
    }
}

#[async_trait]
impl ToolExecutor for ActionTools {
    async fn linked(&self, company_id: Uuid, agent: &Agent) -> Result<Linked, StoreError> {
        if agent.spec.action_ids.is_empty() {
            return Ok(Linked::default());
        }
        Ok(Linked(Arc::new(
            self.store
                .actions_by_ids(company_id, &agent.spec.action_ids)
                .await?,
        )))
    }

    async fn execute(&self, linked: &Linked, call: &ToolCall) -> ToolOutcome {
        let failed = |error: String| ToolOutcome {
            ok: false,
            content: format!("Error: {error}"),
            latency_ms: 0,
        };
        // Only this agent's linked tool actions can run; the model cannot name anything else.
        let Some(action) = linked
            .0
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
        self.run(action, &arguments).await
    }
}
