//! Runs actions over the guarded HTTP client: the network guard (no private, loopback,
//! link-local or metadata addresses unless configured, checked on the address connected to),
//! 15 s timeout, 50 KB response cap, retries, and the action's own rate limit.

use std::time::Duration;

use async_trait::async_trait;
use cortex_net::{
    ActionSpec, GuardedClient, HttpMethod, NetError, NetPolicy, RateLimiter, execute_action,
};
use serde_json::Value;

use super::{Action, ActionRunner, AuthType};
use crate::config::NetworkConfig;
use crate::pipeline::tools::ToolOutcome;

pub struct NetRunner {
    client: GuardedClient,
    limiter: RateLimiter,
}

impl NetRunner {
    pub fn new(network: &NetworkConfig) -> Result<Self, NetError> {
        let mut policy = NetPolicy::webhook().with_allow_private(network.allow_private);
        for host in &network.allowed_hosts {
            policy = policy.with_allowed_host(host.clone());
        }
        Ok(Self {
            client: GuardedClient::new(policy)?,
            limiter: RateLimiter::new(),
        })
    }
}

/// The wire-level spec of a stored action.
pub fn spec_of(action: &Action) -> ActionSpec {
    let def = &action.def;
    let method = match def.method.as_str() {
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    };
    let mut spec = ActionSpec::new(def.name.clone(), method, def.webhook_url.clone());
    spec.description = Some(def.description.clone());
    spec.path_template = def.path_template.clone();
    spec.headers = def.headers.clone();
    spec.parameters_schema = def.parameters_schema.clone();
    spec.query_schema = def.query_schema.clone();
    spec.body_schema = def.body_schema.clone();
    spec
}

#[async_trait]
impl ActionRunner for NetRunner {
    async fn run(&self, action: &Action, arguments: &Value) -> ToolOutcome {
        let refuse = |error: String| ToolOutcome {
            ok: false,
            content: format!("Error: {error}"),
            latency_ms: 0,
        };
        if action.def.auth_type != AuthType::None {
            // Saving such an action is refused until connections exist; older rows fail safe here.
            return refuse(
                "this action needs credentials from a connection, which is not configured".into(),
            );
        }
        if let Some(limit) = &action.def.rate_limit {
            let key = format!("{}:{}", action.company_id, action.id);
            if let Err(wait) = self.limiter.check(
                &key,
                limit.max_calls,
                Duration::from_secs(u64::from(limit.window_seconds)),
            ) {
                return refuse(format!(
                    "rate limit of {} calls per {} s reached; retry in {} s",
                    limit.max_calls,
                    limit.window_seconds,
                    wait.seconds()
                ));
            }
        }
        let outcome = execute_action(&self.client, &spec_of(action), arguments).await;
        if !outcome.ok {
            tracing::info!(action = %action.def.name, error = ?outcome.error, status = ?outcome.status, "action failed");
        }
        ToolOutcome {
            ok: outcome.ok,
            content: outcome.to_tool_result(),
            latency_ms: outcome.latency_ms,
        }
    }
}
