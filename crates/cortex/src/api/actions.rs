//! `/v1/actions`: the company's webhooks that agents may call as tools.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{
    ApiJson, Caller, Checks, JsonPatch, PageInfo, Pagination, Validate, missing, path_id,
    require_admin,
};
use crate::actions::{Action, ActionDef};
use crate::state::AppState;
use crate::store::ActionStore;

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionView {
    #[schema(value_type = String)]
    pub id: Uuid,
    #[serde(flatten)]
    pub def: ActionDef,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Action> for ActionView {
    fn from(a: Action) -> Self {
        Self {
            id: a.id,
            def: a.def,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActionList {
    pub success: bool,
    pub actions: Vec<ActionView>,
    pub pagination: PageInfo,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

impl Validate for ActionDef {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.check(
            !self.name.is_empty()
                && self.name.len() <= 64
                && self
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
            "name",
            "name is 1-64 characters of letters, digits, '_' or '-' (it is the model's tool name)",
            "value_error",
        );
        c.check(
            self.description.chars().count() <= 2000,
            "description",
            "description is limited to 2000 characters",
            "string_length",
        );
        let url_ok = url_is_http(&self.webhook_url);
        c.check(
            url_ok,
            "webhook_url",
            "webhook_url must be an absolute http(s) URL",
            "url_parsing",
        );
        c.check(
            METHODS.contains(&self.method.as_str()),
            "method",
            "method must be one of GET, POST, PUT, PATCH, DELETE",
            "value_error",
        );
        c.check(
            self.headers.len() <= 50,
            "headers",
            "at most 50 headers",
            "too_long",
        );
        c.check(
            self.parameters_schema.get("type").and_then(Value::as_str) == Some("object"),
            "parameters_schema",
            "parameters_schema must be a JSON Schema of type object",
            "value_error",
        );
        if let Some(rl) = &self.rate_limit {
            c.check(
                rl.max_calls >= 1 && (1..=86_400).contains(&rl.window_seconds),
                "rate_limit",
                "rate_limit needs max_calls >= 1 and window_seconds in 1..86400",
                "value_error",
            );
        }
        if let Some(p) = &self.path_template {
            c.check(
                p.starts_with('/'),
                "path_template",
                "path_template must start with '/'",
                "value_error",
            );
        }
        c.finish()
    }
}

fn url_is_http(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

#[utoipa::path(post, path = "/v1/actions", tag = "actions", request_body = ActionDef, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = ActionView), (status = 401), (status = 403), (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(def): ApiJson<ActionDef>,
) -> ApiResult<(StatusCode, Json<ActionView>)> {
    require_admin(&caller, "actions")?;
    super::connections::check_connection(&state, caller.company_id, &def).await?;
    let action = state.store.create_action(caller.company_id, &def).await?;
    Ok((StatusCode::CREATED, Json(action.into())))
}

#[utoipa::path(get, path = "/v1/actions", tag = "actions", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = ActionList), (status = 401), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<ActionList>> {
    let actions = state
        .store
        .list_actions(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(ActionList {
        success: true,
        actions: actions.items.into_iter().map(Into::into).collect(),
        pagination: page.info(actions.total),
    }))
}

#[utoipa::path(get, path = "/v1/actions/{id}", tag = "actions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ActionView), (status = 401), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ActionView>> {
    let action = state
        .store
        .get_action(caller.company_id, path_id(&id, "Action")?)
        .await?
        .ok_or_else(|| ApiError::not_found("Action"))?;
    Ok(Json(action.into()))
}

#[utoipa::path(patch, path = "/v1/actions/{id}", tag = "actions", request_body = Object, security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ActionView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn patch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<JsonPatch>,
) -> ApiResult<Json<ActionView>> {
    require_admin(&caller, "actions")?;
    let id = path_id(&id, "Action")?;
    let current = state
        .store
        .get_action(caller.company_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Action"))?;
    let def = patch.apply(&current.def, &[])?;
    super::connections::check_connection(&state, caller.company_id, &def).await?;
    let action = state
        .store
        .update_action(caller.company_id, id, &def)
        .await
        .map_err(missing("Action"))?;
    Ok(Json(action.into()))
}

#[utoipa::path(delete, path = "/v1/actions/{id}", tag = "actions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "Deleted"), (status = 401), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "actions")?;
    let id = path_id(&id, "Action")?;
    state
        .store
        .delete_action(caller.company_id, id)
        .await
        .map_err(missing("Action"))?;
    Ok(Json(json!({"success": true, "id": id, "deleted": true})))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The arguments the model would pass (validated against the action's schema).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub arguments: Value,
}

impl Validate for TestRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.check(
            self.arguments.is_null() || self.arguments.is_object(),
            "arguments",
            "arguments is an object",
            "dict_type",
        );
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    #[schema(value_type = String)]
    pub action_id: Uuid,
    /// What was sent: method, URL, headers (credentials redacted), body.
    #[schema(value_type = Object)]
    pub request: Value,
    pub ok: bool,
    pub latency_ms: u64,
    /// What the model would see: the response body, or `Error: …`.
    pub result: String,
}

/// Run the action's webhook once with the given arguments, as a tool call would.
#[utoipa::path(post, path = "/v1/actions/{id}/test", tag = "actions", request_body = TestRequest, security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = TestResult), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn test(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TestRequest>,
) -> ApiResult<Json<TestResult>> {
    require_admin(&caller, "actions")?;
    let action = state
        .store
        .get_action(caller.company_id, path_id(&id, "Action")?)
        .await?
        .ok_or_else(|| ApiError::not_found("Action"))?;
    let arguments = if body.arguments.is_null() {
        json!({})
    } else {
        body.arguments
    };
    let request = state
        .actions
        .runner()
        .preview(&action, &arguments)
        .unwrap_or_else(|e| json!({"error": e}));
    let outcome = state.actions.run(&action, &arguments).await;
    Ok(Json(TestResult {
        action_id: action.id,
        request,
        ok: outcome.ok,
        latency_ms: outcome.latency_ms,
        result: outcome.content,
    }))
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The OpenAPI 3 document: a JSON object, or its JSON or YAML text.
    #[schema(value_type = Object)]
    pub document: Value,
    /// Where the API lives; default: the document's absolute `servers[0].url`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Credentials for every imported action (an auth_type other than none needs it).
    #[serde(default)]
    pub auth_type: Option<crate::actions::AuthType>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub connection_id: Option<Uuid>,
}

impl Validate for ImportRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.check(
            self.document.is_object() || self.document.is_string(),
            "document",
            "document is an OpenAPI object or its text",
            "value_error",
        );
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    pub success: bool,
    pub count: usize,
    pub actions: Vec<ActionView>,
}

/// One `action` per operation of an OpenAPI 3 document, created together (all or none).
#[utoipa::path(post, path = "/v1/actions/import", tag = "actions", request_body = ImportRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Imported), (status = 400, description = "Not an OpenAPI 3 document, or no base URL"), (status = 401), (status = 403), (status = 409), (status = 422)))]
pub async fn import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<ImportRequest>,
) -> ApiResult<(StatusCode, Json<Imported>)> {
    require_admin(&caller, "actions")?;
    let base = body.base_url.as_deref().unwrap_or("");
    let specs = match &body.document {
        Value::String(text) => cortex_net::import_openapi_str(text, base),
        doc => cortex_net::import_openapi(doc, base),
    }
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if specs.is_empty() {
        return Err(ApiError::BadRequest(
            "the document has no operations".into(),
        ));
    }
    let auth_type = body.auth_type.unwrap_or_default();
    let defs: Vec<ActionDef> = specs
        .into_iter()
        .map(|spec| ActionDef {
            name: spec.name,
            description: spec.description.unwrap_or_default(),
            source_type: crate::actions::SourceType::Action,
            webhook_url: spec.webhook_url,
            method: spec.method.as_str().to_owned(),
            headers: spec.headers,
            auth_type,
            connection_id: body.connection_id,
            parameters_schema: spec.parameters_schema,
            path_template: spec.path_template,
            query_schema: spec.query_schema,
            body_schema: spec.body_schema,
            rate_limit: None,
            trigger: crate::actions::Trigger::Tool,
        })
        .collect();
    let mut errors = Vec::new();
    for (i, def) in defs.iter().enumerate() {
        if let Err(errs) = def.validate() {
            errors.extend(errs.into_iter().map(|mut e| {
                e.loc = vec![
                    json!("body"),
                    json!("document"),
                    json!(i),
                    json!(def.name.clone()),
                ]
                .into_iter()
                .chain(e.loc.into_iter().skip(1))
                .collect();
                e
            }));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    if let Some(def) = defs.first() {
        super::connections::check_connection(&state, caller.company_id, def).await?;
    }
    let created = state.store.create_actions(caller.company_id, &defs).await?;
    Ok((
        StatusCode::CREATED,
        Json(Imported {
            success: true,
            count: created.len(),
            actions: created.into_iter().map(Into::into).collect(),
        }),
    ))
}
