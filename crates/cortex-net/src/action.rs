//! Actions: tool-call webhooks described by an [`ActionSpec`], built into requests from the
//! model's arguments and executed through a [`GuardedClient`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use crate::client::{GuardedClient, OutboundRequest};

/// Characters left as they are in a substituted path parameter (RFC 3986 unreserved).
const PATH_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Static headers an action may not set (they belong to the HTTP layer).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
];

/// HTTP method of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET`: arguments not used in the path go to the query string.
    #[default]
    #[serde(alias = "get", alias = "Get")]
    Get,
    /// `POST`: JSON body.
    #[serde(alias = "post", alias = "Post")]
    Post,
    /// `PUT`: JSON body.
    #[serde(alias = "put", alias = "Put")]
    Put,
    /// `PATCH`: JSON body.
    #[serde(alias = "patch", alias = "Patch")]
    Patch,
    /// `DELETE`: arguments not used in the path go to the query string.
    #[serde(alias = "delete", alias = "Delete")]
    Delete,
}

impl HttpMethod {
    /// The `http` crate method.
    pub fn as_method(self) -> Method {
        match self {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Patch => Method::PATCH,
            HttpMethod::Delete => Method::DELETE,
        }
    }

    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// Whether the method carries the JSON body (POST, PUT, PATCH).
    pub fn has_body(self) -> bool {
        matches!(self, HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch)
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HttpMethod {
    type Err = ActionError;

    /// Case-insensitive `GET|POST|PUT|PATCH|DELETE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "GET" => Ok(HttpMethod::Get),
            "POST" => Ok(HttpMethod::Post),
            "PUT" => Ok(HttpMethod::Put),
            "PATCH" => Ok(HttpMethod::Patch),
            "DELETE" => Ok(HttpMethod::Delete),
            _ => Err(ActionError::InvalidMethod(s.to_string())),
        }
    }
}

/// Credentials of an action, loaded by the caller from its database (never from model output).
/// `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionAuth {
    /// No credentials.
    #[default]
    None,
    /// An API key sent in the named header.
    ApiKey {
        /// Header name, e.g. `X-API-Key`.
        header: String,
        /// The key.
        value: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// An OAuth 2 access token, sent as `Authorization: Bearer <access_token>`.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// The access token (refreshing it is the caller's business).
        access_token: String,
    },
}

impl fmt::Debug for ActionAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionAuth::None => f.write_str("None"),
            ActionAuth::ApiKey { header, .. } => f
                .debug_struct("ApiKey")
                .field("header", header)
                .field("value", &"<redacted>")
                .finish(),
            ActionAuth::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
            ActionAuth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            ActionAuth::OAuth2 { .. } => f
                .debug_struct("OAuth2")
                .field("access_token", &"<redacted>")
                .finish(),
        }
    }
}

/// An executable action (tool): where and how to call it, and the schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// Function name the model calls.
    pub name: String,
    /// Description for the model (not used to build requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// HTTP method.
    #[serde(default)]
    pub method: HttpMethod,
    /// Absolute http(s) URL; its path (and query) may contain `{name}` placeholders.
    pub webhook_url: String,
    /// Path appended to `webhook_url`, with `{name}` placeholders (e.g. `/orders/{order_id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_template: Option<String>,
    /// Static headers (an auth header of the same name is set after them and wins).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Credentials.
    #[serde(default)]
    pub auth: ActionAuth,
    /// JSON Schema of all arguments (path, query and body together); `null` or `{}` accept anything.
    #[serde(default)]
    pub parameters_schema: Value,
    /// JSON Schema whose `properties` name the arguments sent in the query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_schema: Option<Value>,
    /// JSON Schema of the request body. When it does not describe an object (no `properties`,
    /// `type` other than `object`), the body is the argument named `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_schema: Option<Value>,
}

impl ActionSpec {
    /// A spec with no headers, no auth and an accept-anything schema.
    pub fn new(
        name: impl Into<String>,
        method: HttpMethod,
        webhook_url: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            description: None,
            method,
            webhook_url: webhook_url.into(),
            path_template: None,
            headers: BTreeMap::new(),
            auth: ActionAuth::None,
            parameters_schema: Value::Null,
            query_schema: None,
            body_schema: None,
        }
    }
}

/// Why an action request could not be built. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The arguments do not match `parameters_schema`; each entry names a location and the problem.
    #[error("invalid arguments for action {action}: {}", .errors.join("; "))]
    InvalidArguments {
        /// Action name.
        action: String,
        /// One message per violation, `"<json pointer>: <problem>"`.
        errors: Vec<String>,
    },
    /// A schema of the action is not a valid JSON Schema.
    #[error("invalid schema for action {action}: {message}")]
    InvalidSchema {
        /// Action name.
        action: String,
        /// The schema compiler's message.
        message: String,
    },
    /// A `{placeholder}` of the URL has no argument.
    #[error("missing path parameter {0:?}")]
    MissingPathParameter(String),
    /// A path argument cannot be used in a path (object/array/null, empty, `.` or `..`).
    #[error("invalid value for path parameter {name:?}: {reason}")]
    InvalidPathParameter {
        /// Parameter name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The webhook URL or path template is malformed.
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    /// A static or auth header name/value is invalid or not allowed.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// Header name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The credentials are incomplete (e.g. an empty token).
    #[error("invalid credentials: {0}")]
    InvalidAuth(String),
    /// Unknown HTTP method name.
    #[error("unsupported HTTP method {0:?} (GET, POST, PUT, PATCH or DELETE)")]
    InvalidMethod(String),
}

/// Validates `arguments` against the action's `parameters_schema` and builds the request:
/// path placeholders substituted (percent-encoded), query parameters (the `query_schema`
/// properties, or for GET/DELETE every argument not used in the path) in the query string,
/// the remaining arguments as the JSON body of POST/PUT/PATCH, static headers then auth headers.
///
/// Arguments never become headers, so they cannot override credentials. `null` arguments
/// count as `{}`; anything else that is not an object is refused.
pub fn build_request(spec: &ActionSpec, arguments: &Value) -> Result<OutboundRequest, ActionError> {
    let empty = Value::Object(Map::new());
    let arguments = if arguments.is_null() {
        &empty
    } else {
        arguments
    };
    validate_arguments(spec, arguments)?;
    let Some(args) = arguments.as_object() else {
        return Err(ActionError::InvalidArguments {
            action: spec.name.clone(),
            errors: vec!["(root): arguments must be a JSON object".to_string()],
        });
    };

    let mut used = BTreeSet::new();
    let mut url = build_url(spec, args, &mut used)?;

    let query_keys: Vec<&String> = if spec.method.has_body() {
        match spec.query_schema.as_ref().and_then(schema_properties) {
            Some(props) => args
                .keys()
                .filter(|k| props.contains_key(k.as_str()) && !used.contains(k.as_str()))
                .collect(),
            None => Vec::new(),
        }
    } else {
        args.keys().filter(|k| !used.contains(k.as_str())).collect()
    };
    {
        let mut pairs = Vec::new();
        for key in &query_keys {
            push_query_value(&mut pairs, key, &args[key.as_str()]);
        }
        if !pairs.is_empty() {
            let mut qp = url.query_pairs_mut();
            for (k, v) in &pairs {
                qp.append_pair(k, v);
            }
        }
    }
    used.extend(query_keys.iter().map(|k| k.to_string()));

    let body = if spec.method.has_body() {
        let rest: Map<String, Value> = args
            .iter()
            .filter(|(k, _)| !used.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let value = match &spec.body_schema {
            Some(schema) if !describes_object(schema) => {
                rest.get("body").cloned().unwrap_or(Value::Object(rest))
            }
            _ => Value::Object(rest),
        };
        let bytes = serde_json::to_vec(&value).map_err(|e| ActionError::InvalidArguments {
            action: spec.name.clone(),
            errors: vec![format!("(root): cannot serialise body: {e}")],
        })?;
        Some(Bytes::from(bytes))
    } else {
        None
    };

    let headers = build_headers(spec, body.is_some())?;
    Ok(OutboundRequest {
        method: spec.method.as_method(),
        url,
        headers,
        body,
    })
}

/// Validates `arguments` against `parameters_schema` (remote `$ref`s are not fetched).
pub fn validate_arguments(spec: &ActionSpec, arguments: &Value) -> Result<(), ActionError> {
    let schema = &spec.parameters_schema;
    if schema.is_null() || schema.as_object().is_some_and(Map::is_empty) {
        return Ok(());
    }
    let validator = jsonschema::validator_for(schema).map_err(|e| ActionError::InvalidSchema {
        action: spec.name.clone(),
        message: e.to_string(),
    })?;
    let errors: Vec<String> = validator
        .iter_errors(arguments)
        .map(|e| {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "(root)".to_string()
            } else {
                path
            };
            format!("{path}: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ActionError::InvalidArguments {
            action: spec.name.clone(),
            errors,
        })
    }
}

fn schema_properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn describes_object(schema: &Value) -> bool {
    if schema_properties(schema).is_some() {
        return true;
    }
    match schema.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(_) => false,
        None => schema.get("items").is_none(),
    }
}

fn build_url(
    spec: &ActionSpec,
    args: &Map<String, Value>,
    used: &mut BTreeSet<String>,
) -> Result<Url, ActionError> {
    let raw = spec.webhook_url.trim();
    let raw = raw.split('#').next().unwrap_or_default();
    let (base, query) = match raw.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (raw, None),
    };
    let scheme_end = base
        .find("://")
        .ok_or_else(|| ActionError::InvalidUrl(format!("{raw:?} is not an absolute URL")))?;
    let authority_end = base[scheme_end + 3..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + 3 + i);
    let (origin, base_path) = base.split_at(authority_end);
    if origin.contains('{') || origin.contains('}') {
        return Err(ActionError::InvalidUrl(
            "placeholders are only allowed in the path and query".to_string(),
        ));
    }
    let mut path = base_path.to_string();
    if let Some(template) = spec.path_template.as_deref().map(str::trim)
        && !template.is_empty()
    {
        if template.contains("://") || template.starts_with("//") {
            return Err(ActionError::InvalidUrl(format!(
                "path template {template:?} must be a path"
            )));
        }
        while path.ends_with('/') {
            path.pop();
        }
        if !template.starts_with('/') {
            path.push('/');
        }
        path.push_str(template);
    }
    let mut text = format!("{origin}{}", substitute(&path, args, used)?);
    if let Some(q) = query {
        text.push('?');
        text.push_str(&substitute(q, args, used)?);
    }
    let url = Url::parse(&text).map_err(|e| ActionError::InvalidUrl(format!("{text:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(ActionError::InvalidUrl(format!(
            "scheme {other:?} is not allowed (only http and https)"
        ))),
    }
}

/// Replaces `{name}` placeholders with the percent-encoded argument.
fn substitute(
    template: &str,
    args: &Map<String, Value>,
    used: &mut BTreeSet<String>,
) -> Result<String, ActionError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(ActionError::InvalidUrl(format!(
                "unbalanced '}}' in {template:?}"
            )));
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| ActionError::InvalidUrl(format!("unclosed '{{' in {template:?}")))?;
        let name = after[..close].trim();
        if name.is_empty() || name.contains('{') {
            return Err(ActionError::InvalidUrl(format!(
                "invalid placeholder in {template:?}"
            )));
        }
        let value = args
            .get(name)
            .ok_or_else(|| ActionError::MissingPathParameter(name.to_string()))?;
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return Err(ActionError::MissingPathParameter(name.to_string())),
            Value::Array(_) | Value::Object(_) => {
                return Err(ActionError::InvalidPathParameter {
                    name: name.to_string(),
                    reason: "must be a string, number or boolean".to_string(),
                });
            }
        };
        if text.is_empty() || text == "." || text == ".." {
            return Err(ActionError::InvalidPathParameter {
                name: name.to_string(),
                reason: format!("{text:?} is not a usable path segment"),
            });
        }
        out.extend(utf8_percent_encode(&text, PATH_VALUE));
        used.insert(name.to_string());
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Query serialisation: scalars as text, arrays as repeated keys, objects as JSON, null omitted.
fn push_query_value(pairs: &mut Vec<(String, String)>, key: &str, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => pairs.push((key.to_string(), s.clone())),
        Value::Number(n) => pairs.push((key.to_string(), n.to_string())),
        Value::Bool(b) => pairs.push((key.to_string(), b.to_string())),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(_) | Value::Object(_) => {
                        pairs.push((key.to_string(), item.to_string()));
                    }
                    scalar => push_query_value(pairs, key, scalar),
                }
            }
        }
        Value::Object(_) => pairs.push((key.to_string(), value.to_string())),
    }
}

fn header_name(name: &str) -> Result<HeaderName, ActionError> {
    HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| ActionError::InvalidHeader {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

fn secret_value(name: &str, value: &str) -> Result<HeaderValue, ActionError> {
    let mut v = HeaderValue::from_str(value).map_err(|e| ActionError::InvalidHeader {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn non_empty<'a>(what: &str, value: &'a str) -> Result<&'a str, ActionError> {
    if value.trim().is_empty() {
        Err(ActionError::InvalidAuth(format!("{what} is empty")))
    } else {
        Ok(value)
    }
}

fn build_headers(spec: &ActionSpec, json_body: bool) -> Result<HeaderMap, ActionError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/plain;q=0.9, */*;q=0.5"),
    );
    for (name, value) in &spec.headers {
        let parsed = header_name(name)?;
        if FORBIDDEN_HEADERS.contains(&parsed.as_str()) {
            return Err(ActionError::InvalidHeader {
                name: name.clone(),
                reason: "this header is set by the HTTP client".to_string(),
            });
        }
        let value = HeaderValue::from_str(value).map_err(|e| ActionError::InvalidHeader {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        headers.insert(parsed, value);
    }
    if json_body {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    match &spec.auth {
        ActionAuth::None => {}
        ActionAuth::ApiKey {
            header: name,
            value,
        } => {
            let parsed = header_name(name)?;
            if FORBIDDEN_HEADERS.contains(&parsed.as_str()) {
                return Err(ActionError::InvalidHeader {
                    name: name.clone(),
                    reason: "cannot carry an API key".to_string(),
                });
            }
            let value = secret_value(name, non_empty("API key", value)?)?;
            headers.insert(parsed, value);
        }
        ActionAuth::Bearer { token } => {
            let token = non_empty("bearer token", token)?;
            headers.insert(
                header::AUTHORIZATION,
                secret_value("Authorization", &format!("Bearer {}", token.trim()))?,
            );
        }
        ActionAuth::OAuth2 { access_token } => {
            let token = non_empty("OAuth2 access token", access_token)?;
            headers.insert(
                header::AUTHORIZATION,
                secret_value("Authorization", &format!("Bearer {}", token.trim()))?,
            );
        }
        ActionAuth::Basic { user, password } => {
            non_empty("basic auth user", user)?;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.insert(
                header::AUTHORIZATION,
                secret_value("Authorization", &format!("Basic {encoded}"))?,
            );
        }
    }
    Ok(headers)
}

/// The result of running an action once, ready to be reported to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// Whether a 2xx response was received.
    pub ok: bool,
    /// Final HTTP status, if a response was received.
    pub status: Option<u16>,
    /// Response body as received (UTF-8 lossy), cut at the response cap.
    pub body: String,
    /// Whether `body` was cut at the cap.
    pub truncated: bool,
    /// Wall time of the call in milliseconds, retries included.
    pub latency_ms: u64,
    /// What went wrong, when `ok` is false.
    pub error: Option<String>,
    /// Attempts made (0 when the request could not even be built).
    pub attempts: u32,
}

impl ActionOutcome {
    /// The text to give the model as the tool result: the body on success, otherwise the error
    /// followed by any response body.
    pub fn to_tool_result(&self) -> String {
        if self.ok {
            return self.body.clone();
        }
        let error = self.error.as_deref().unwrap_or("action failed");
        if self.body.is_empty() {
            format!("Error: {error}")
        } else {
            format!("Error: {error}\n{}", self.body)
        }
    }
}

/// Builds and sends the action's request through `client` (whose policy gives the guard, the
/// 15 s timeout, the 50 KB cap and the retries). Never fails: a refused, invalid or failed call
/// is an outcome with `ok: false` and an `error` for the model.
pub async fn execute_action(
    client: &GuardedClient,
    spec: &ActionSpec,
    arguments: &Value,
) -> ActionOutcome {
    let started = Instant::now();
    let request = match build_request(spec, arguments) {
        Ok(r) => r,
        Err(e) => {
            return ActionOutcome {
                ok: false,
                status: None,
                body: String::new(),
                truncated: false,
                latency_ms: elapsed_ms(started),
                error: Some(e.to_string()),
                attempts: 0,
            };
        }
    };
    let report = client.fetch(request).await;
    let outcome = match report.result {
        Ok(resp) => {
            let ok = resp.is_success();
            let error = (!ok).then(|| {
                let reason = http::StatusCode::from_u16(resp.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                format!("HTTP {} {reason}", resp.status)
                    .trim_end()
                    .to_string()
            });
            ActionOutcome {
                ok,
                status: Some(resp.status),
                body: resp.text_lossy(),
                truncated: resp.truncated,
                latency_ms: elapsed_ms(started),
                error,
                attempts: report.attempts,
            }
        }
        Err(e) => ActionOutcome {
            ok: false,
            status: None,
            body: String::new(),
            truncated: false,
            latency_ms: elapsed_ms(started),
            error: Some(e.to_string()),
            attempts: report.attempts,
        },
    };
    tracing::debug!(
        action = %spec.name,
        ok = outcome.ok,
        status = ?outcome.status,
        attempts = outcome.attempts,
        latency_ms = outcome.latency_ms,
        "action executed"
    );
    outcome
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
