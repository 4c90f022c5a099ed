//! `/v1/agents`: create, list, read, patch, delete, and the loaded configuration.

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
use crate::agents::template::PromptTemplate;
use crate::agents::{Agent, AgentSpec, config_view};
use crate::state::AppState;
use crate::store::AgentStore;

/// An agent as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    #[schema(value_type = String)]
    pub id: Uuid,
    #[schema(value_type = String)]
    pub company_id: Uuid,
    #[serde(flatten)]
    pub spec: AgentSpec,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        Self {
            id: a.id,
            company_id: a.company_id,
            spec: a.spec,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub success: bool,
    pub agents: Vec<AgentView>,
    pub pagination: PageInfo,
}

/// Everything checked before an agent is saved, the template included.
pub fn check_spec(spec: &AgentSpec) -> Vec<FieldError> {
    let mut c = Checks::default();
    c.len("name", &spec.name, 1, 200);
    c.check(
        spec.system_prompt.chars().count() <= 100_000,
        "system_prompt",
        "system_prompt is limited to 100000 characters",
        "string_length",
    );
    c.check(
        spec.workflow_faqs.len() <= 1000,
        "workflow_faqs",
        "at most 1000 FAQs",
        "list_length",
    );
    c.check(
        spec.workflow_faqs
            .iter()
            .all(|f| !f.question.trim().is_empty() && !f.answer.trim().is_empty()),
        "workflow_faqs",
        "every FAQ needs a question and an answer",
        "value_error",
    );
    c.check(
        spec.scenarios.len() <= 200,
        "scenarios",
        "at most 200 scenarios",
        "list_length",
    );
    c.check(
        spec.knowledge_documents.len() <= 500,
        "knowledge_documents",
        "at most 500 documents",
        "list_length",
    );
    c.check(
        spec.action_ids.len() <= 128,
        "action_ids",
        "at most 128 actions",
        "list_length",
    );
    let st = &spec.settings;
    let setting = |c: &mut Checks, ok: bool, name: &str, msg: &str| {
        if !ok {
            c.push(FieldError {
                loc: vec![json!("body"), json!("settings"), json!(name)],
                msg: msg.into(),
                kind: "value_error".into(),
            });
        }
    };
    setting(
        &mut c,
        st.tier
            .as_deref()
            .is_none_or(|t| t.parse::<cortex_llm::Tier>().is_ok()),
        "tier",
        "tier must be one of speed, nano, sonnet, complex, search",
    );
    setting(
        &mut c,
        st.temperature.is_none_or(|t| (0.0..=2.0).contains(&t)),
        "temperature",
        "temperature must be between 0 and 2",
    );
    setting(
        &mut c,
        st.max_tokens.is_none_or(|m| (1..=32_768).contains(&m)),
        "max_tokens",
        "max_tokens must be between 1 and 32768",
    );
    setting(
        &mut c,
        (256..=1_000_000).contains(&st.token_budget),
        "token_budget",
        "token_budget must be between 256 and 1000000",
    );
    setting(
        &mut c,
        st.rag_top_k <= 50,
        "rag_top_k",
        "rag_top_k must be at most 50",
    );
    setting(
        &mut c,
        (0.0..=1.0).contains(&st.cache_threshold),
        "cache_threshold",
        "cache_threshold must be between 0 and 1",
    );
    setting(
        &mut c,
        st.max_tool_rounds <= 5,
        "max_tool_rounds",
        "max_tool_rounds must be at most 5",
    );
    if let Err(e) = PromptTemplate::compile(&spec.system_prompt).and_then(|t| t.test_render(spec)) {
        c.check(
            false,
            "system_prompt",
            &format!("template error: {e}"),
            "template_error",
        );
    }
    c.finish().err().unwrap_or_default()
}

/// Linked knowledge sources and actions must be the company's own: another company's id (or
/// one that does not exist) is a `422` at its index, never stored.
async fn check_links(state: &AppState, company_id: Uuid, spec: &AgentSpec) -> ApiResult<()> {
    use crate::store::{ActionStore, KnowledgeStore};
    let mut errors = Vec::new();
    for (i, id) in spec.knowledge_source_ids.iter().enumerate() {
        if state.store.get_source(company_id, *id).await?.is_none() {
            errors.push(FieldError {
                loc: vec![json!("body"), json!("knowledge_source_ids"), json!(i)],
                msg: format!("No knowledge source {id} in this company"),
                kind: "unknown_id".into(),
            });
        }
    }
    for (i, id) in spec.action_ids.iter().enumerate() {
        if state.store.get_action(company_id, *id).await?.is_none() {
            errors.push(FieldError {
                loc: vec![json!("body"), json!("action_ids"), json!(i)],
                msg: format!("No action {id} in this company"),
                kind: "unknown_id".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

impl Validate for AgentSpec {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let errors = check_spec(self);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Create an agent; its template must compile.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentSpec, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = AgentView), (status = 401), (status = 403), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(spec): ApiJson<AgentSpec>,
) -> ApiResult<(StatusCode, Json<AgentView>)> {
    require_admin(&caller, "agents")?;
    check_links(&state, caller.company_id, &spec).await?;
    let agent = state.store.create_agent(caller.company_id, &spec).await?;
    Ok((StatusCode::CREATED, Json(agent.into())))
}

/// The company's agents, newest first.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = AgentList), (status = 401), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<AgentList>> {
    let agents = state
        .store
        .list_agents(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(AgentList {
        success: true,
        agents: agents.items.into_iter().map(Into::into).collect(),
        pagination: page.info(agents.total),
    }))
}

#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = AgentView), (status = 401), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentView>> {
    let id = path_id(&id, "Agent")?;
    let agent = state
        .store
        .get_agent(caller.company_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Agent"))?;
    Ok(Json(agent.into()))
}

/// Change some fields; the result is validated as a whole (template included) before saving,
/// and the config cache is invalidated on every node.
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", request_body = JsonPatch, security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = AgentView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn patch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<JsonPatch>,
) -> ApiResult<Json<AgentView>> {
    require_admin(&caller, "agents")?;
    let id = path_id(&id, "Agent")?;
    let current = state
        .store
        .get_agent(caller.company_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Agent"))?;
    let spec = patch.apply(&current.spec, &["settings"])?;
    check_links(&state, caller.company_id, &spec).await?;
    let agent = state
        .store
        .update_agent(caller.company_id, id, &spec)
        .await
        .map_err(missing("Agent"))?;
    state.invalidate_agent(id).await;
    Ok(Json(agent.into()))
}

#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "Deleted"), (status = 401), (status = 403), (status = 404)))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "agents")?;
    let id = path_id(&id, "Agent")?;
    state
        .store
        .delete_agent(caller.company_id, id)
        .await
        .map_err(missing("Agent"))?;
    state.invalidate_agent(id).await;
    Ok(Json(json!({"success": true, "id": id, "deleted": true})))
}

/// The configuration exactly as stage 01 of the pipeline loads it, through the same cache.
#[utoipa::path(get, path = "/v1/agents/{id}/config", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "Full agent configuration"), (status = 401), (status = 404)))]
pub async fn config(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = path_id(&id, "Agent")?;
    let loaded = crate::pipeline::load_agent(&state, caller.company_id, id)
        .await
        .map_err(ApiError::from)?;
    let actions = state
        .tools
        .linked(caller.company_id, &loaded.agent)
        .await?
        .tool_defs();
    let actions = actions.into_iter().map(|t| json!({"name": t.name, "description": t.description, "parameters_schema": t.parameters})).collect();
    Ok(Json(config_view(&loaded.agent, actions)))
}
