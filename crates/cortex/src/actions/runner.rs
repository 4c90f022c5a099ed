//! Runs actions over the guarded HTTP client: the network guard (no private, loopback,
//! link-local or metadata addresses unless configured, checked on the address connected to),
//! 15 s timeout, 50 KB response cap, retries, and the action's own rate limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cortex_net::{
    ActionAuth, ActionSpec, GuardedClient, HttpMethod, NetError, NetPolicy, OutboundRequest,
    RateLimiter, build_request, execute_action,
};
use serde_json::Value;

use super::{Action, ActionRunner, ResolvedAuth};
use crate::actions::tools::ToolOutcome;
use crate::config::NetworkConfig;

pub struct NetRunner {
    client: GuardedClient,
    limiter: RateLimiter,
    /// OAuth 2 access tokens from the client-credentials grant, per connection version.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// A token is renewed this long before the provider says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

impl NetRunner {
    pub fn new(network: &NetworkConfig) -> Result<Self, NetError> {
        let mut policy = NetPolicy::webhook().with_allow_private(network.allow_private);
        for host in &network.allowed_hosts {
            policy = policy.with_allowed_host(host.clone());
        }
        Ok(Self {
            client: GuardedClient::new(policy)?,
            limiter: RateLimiter::new(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The credentials as request auth; runs (or reuses) the client-credentials grant.
    async fn auth(&self, auth: ResolvedAuth) -> Result<ActionAuth, String> {
        let (cache_key, token_url, client_id, client_secret, scope) = match auth {
            ResolvedAuth::None => return Ok(ActionAuth::None),
            ResolvedAuth::Ready(a) => return Ok(a),
            ResolvedAuth::ClientCredentials {
                cache_key,
                token_url,
                client_id,
                client_secret,
                scope,
            } => (cache_key, token_url, client_id, client_secret, scope),
        };
        if let Ok(tokens) = self.tokens.lock()
            && let Some((token, until)) = tokens.get(&cache_key)
            && Instant::now() < *until
        {
            return Ok(ActionAuth::OAuth2 {
                access_token: token.clone(),
            });
        }
        let mut fields = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id.as_str()),
            ("client_secret", client_secret.as_str()),
        ];
        if let Some(scope) = &scope {
            fields.push(("scope", scope.as_str()));
        }
        let request = OutboundRequest::post_form(&token_url, &fields).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .fetch(request)
            .await
            .result
            .map_err(|e| format!("the OAuth 2 token request failed: {e}"))?;
        if !resp.is_success() {
            return Err(format!(
                "the OAuth 2 token endpoint answered HTTP {}",
                resp.status
            ));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let token: Token = serde_json::from_slice(&resp.body).map_err(|_| {
            "the OAuth 2 token endpoint answered without an access_token".to_owned()
        })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(300));
        if let Ok(mut tokens) = self.tokens.lock() {
            if tokens.len() > 10_000 {
                let now = Instant::now();
                tokens.retain(|_, (_, until)| *until > now);
            }
            tokens.insert(
                cache_key,
                (
                    token.access_token.clone(),
                    Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
                ),
            );
        }
        Ok(ActionAuth::OAuth2 {
            access_token: token.access_token,
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
    async fn run(&self, action: &Action, auth: ResolvedAuth, arguments: &Value) -> ToolOutcome {
        let refuse = |error: String| ToolOutcome {
            ok: false,
            content: format!("Error: {error}"),
            latency_ms: 0,
        };
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
        let mut spec = spec_of(action);
        spec.auth = match self.auth(auth).await {
            Ok(a) => a,
            Err(e) => return refuse(e),
        };
        let outcome = execute_action(&self.client, &spec, arguments).await;
        if !outcome.ok {
            tracing::info!(action = %action.def.name, error = ?outcome.error, status = ?outcome.status, "action failed");
        }
        ToolOutcome {
            ok: outcome.ok,
            content: outcome.to_tool_result(),
            latency_ms: outcome.latency_ms,
        }
    }

    fn preview(&self, action: &Action, arguments: &Value) -> Result<Value, String> {
        let request = build_request(&spec_of(action), arguments).map_err(|e| e.to_string())?;
        let mut headers = serde_json::Map::new();
        for (name, value) in &request.headers {
            headers.insert(
                name.as_str().to_owned(),
                Value::String(value.to_str().unwrap_or("").to_owned()),
            );
        }
        if action.def.auth_type != super::AuthType::None {
            // The credentials are attached when the request is sent; never shown.
            let name = match action.def.auth_type {
                super::AuthType::ApiKey => "(api key header)",
                _ => "authorization",
            };
            headers.insert(name.into(), Value::String("[redacted]".into()));
        }
        Ok(serde_json::json!({
            "method": request.method.as_str(),
            "url": request.url.as_str(),
            "headers": headers,
            "body": request.body.as_ref().map(|b| {
                serde_json::from_slice::<Value>(b)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
            }),
        }))
    }
}
