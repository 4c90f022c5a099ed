//! The semantic answer cache: `POST /v1/cache/warm`, `DELETE /v1/cache/flush`,
//! `GET /v1/cache/stats`.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{ApiJson, Caller, Checks, Validate, own_company, path_id, require_admin};
use crate::pipeline::cache;
use crate::state::AppState;
use crate::store::{AgentStore, CacheStore};

/// Pairs accepted by one warm request.
const MAX_PAIRS: usize = 1000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct Pair {
    pub question: String,
    pub answer: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Warm {
    /// Must be the caller's company.
    pub company_id: String,
    pub agent_id: String,
    /// 1–1,000 question/answer pairs; a pair with an empty question or answer is counted in
    /// `pairs_errored` and not stored.
    pub pairs: Vec<Pair>,
}

impl Validate for Warm {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.check(
            !self.pairs.is_empty() && self.pairs.len() <= MAX_PAIRS,
            "pairs",
            "pairs holds between 1 and 1000 items",
            "too_long",
        );
        for (i, p) in self.pairs.iter().enumerate() {
            for (field, value, max) in [
                ("question", &p.question, 4000),
                ("answer", &p.answer, 16_000),
            ] {
                if value.chars().count() > max {
                    c.push(FieldError {
                        loc: vec!["body".into(), "pairs".into(), i.into(), field.into()],
                        msg: format!("{field} has at most {max} characters"),
                        kind: "string_too_long".into(),
                    });
                }
            }
        }
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Warmed {
    pub status: String,
    pub pairs_stored: u64,
    pub pairs_errored: u64,
    pub pairs_total: u64,
}

/// Store question/answer pairs so that matching questions are answered from the cache.
#[utoipa::path(post, path = "/v1/cache/warm", tag = "cache", request_body = Warm, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Warmed), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn warm(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<Warm>,
) -> ApiResult<Json<Warmed>> {
    require_admin(&caller, "the answer cache")?;
    let company_id = own_company(&caller, &body.company_id, "Agent")?;
    let agent_id = path_id(body.agent_id.trim(), "Agent")?;
    state
        .store
        .get_agent(company_id, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Agent"))?;
    let pairs: Vec<(String, String)> = body
        .pairs
        .into_iter()
        .map(|p| (p.question, p.answer))
        .collect();
    let (stored, errored) = cache::warm(
        &state.cache,
        &state.store,
        company_id,
        agent_id,
        &pairs,
        state.config.cache.ttl(),
    )
    .await?;
    Ok(Json(Warmed {
        status: "completed".into(),
        pairs_stored: stored,
        pairs_errored: errored,
        pairs_total: pairs.len() as u64,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlushQuery {
    /// Optional; when given it must be the caller's company.
    pub company_id: Option<String>,
    /// Only this agent's entries.
    pub agent_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Flushed {
    pub status: String,
    pub entries_deleted: u64,
}

/// Delete the caller's company's cached answers (of one agent, or all).
#[utoipa::path(delete, path = "/v1/cache/flush", tag = "cache", params(FlushQuery), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Flushed), (status = 401), (status = 403), (status = 404)))]
pub async fn flush(
    State(state): State<AppState>,
    Caller(caller): Caller,
    q: Result<Query<FlushQuery>, QueryRejection>,
) -> ApiResult<Json<Flushed>> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    require_admin(&caller, "the answer cache")?;
    if let Some(company) = &q.company_id {
        own_company(&caller, company, "Company")?;
    }
    let agent_id = q
        .agent_id
        .as_deref()
        .map(|a| path_id(a.trim(), "Agent"))
        .transpose()?;
    let deleted = state
        .cache
        .flush(&state.store, caller.company_id, agent_id)
        .await?;
    Ok(Json(Flushed {
        status: "flushed".into(),
        entries_deleted: deleted,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CacheStats {
    pub status: String,
    pub index_name: String,
    /// Live (unexpired) entries of the caller's company.
    pub num_docs: u64,
    /// Stored entries, expired ones not yet purged included.
    pub num_records: u64,
    pub indexing: String,
}

/// The size of the caller's company's answer cache.
#[utoipa::path(get, path = "/v1/cache/stats", tag = "cache", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CacheStats), (status = 401)))]
pub async fn stats(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<CacheStats>> {
    let (live, total) = state.store.cache_counts(caller.company_id).await?;
    Ok(Json(CacheStats {
        status: "active".into(),
        index_name: "cortex_cache".into(),
        num_docs: live,
        num_records: total,
        // Entries are searchable as soon as they are written.
        indexing: "complete".into(),
    }))
}
