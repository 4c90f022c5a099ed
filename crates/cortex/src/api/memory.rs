//! Customer memory: `POST /v1/memory/{customer_id}`, `POST /v1/memory/{customer_id}/save`,
//! `DELETE /v1/memory/fact/{fact_id}`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{ApiJson, Caller, Checks, Validate, missing, own_company, path_id};
use crate::auth::Identity;
use crate::pipeline::memory::{CATEGORIES, rank_facts};
use crate::state::AppState;
use crate::store::{AgentStore, KnowledgeStore, MemoryStore, NewFact};

/// Facts returned by a query, and how many knowledge items accompany them.
const FACTS: i64 = 200;
const SNIPPETS: i64 = 5;
const KB_ENTRIES: usize = 3;

fn memory_scope(caller: &Identity) -> ApiResult<()> {
    if caller.has_scope("memory") {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "This API key does not have the memory scope".into(),
        ))
    }
}

/// Memory belongs to the caller's company: another company's id is a missing customer.
fn company(caller: &Identity, company_id: &str, what: &str) -> ApiResult<Uuid> {
    memory_scope(caller)?;
    own_company(caller, company_id, what)
}

fn customer(id: &str) -> ApiResult<&str> {
    let id = id.trim();
    if id.is_empty() || id.chars().count() > 256 {
        return Err(ApiError::Validation(vec![FieldError {
            loc: vec!["path".into(), "customer_id".into()],
            msg: "customer_id is 1-256 characters".into(),
            kind: "string_length".into(),
        }]));
    }
    Ok(id)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryQuery {
    /// Must be the caller's company.
    pub company_id: String,
    /// Rank the facts by relevance to this text (and find knowledge-base entries for it).
    #[serde(default)]
    pub query: Option<String>,
}

impl Validate for MemoryQuery {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        if let Some(q) = &self.query {
            c.len("query", q, 0, 4000);
        }
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FactOut {
    pub id: Uuid,
    pub fact: String,
    pub category: String,
    pub confidence: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryResponse {
    pub customer_id: String,
    pub company_id: Uuid,
    pub fact_count: usize,
    pub knowledge_doc_count: usize,
    pub kb_entry_count: usize,
    /// Newest first, or by relevance to `query`.
    pub facts: Vec<FactOut>,
    /// What the customer said most recently (any conversation), newest first.
    pub knowledge_snippets: Vec<String>,
    /// With `query`: the company's knowledge-base passages that best match it.
    pub kb_entries: Vec<String>,
}

/// Everything stored about a customer: facts, recent messages, and (with `query`) matching
/// knowledge-base passages.
#[utoipa::path(post, path = "/v1/memory/{customer_id}", tag = "memory", request_body = MemoryQuery,
    params(("customer_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = MemoryResponse), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn query(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(customer_id): Path<String>,
    ApiJson(body): ApiJson<MemoryQuery>,
) -> ApiResult<Json<MemoryResponse>> {
    let company_id = company(&caller, &body.company_id, "Customer")?;
    let customer_id = customer(&customer_id)?;
    let facts = state
        .store
        .all_facts(company_id, customer_id, FACTS)
        .await?;
    let query = body
        .query
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty());
    let facts = match query {
        Some(q) => {
            let embedder = state.knowledge.registry.default_embedder();
            let vector = crate::pipeline::memory::query_embedding(embedder.as_ref(), q).await;
            rank_facts(facts, q, vector.as_ref())
                .into_iter()
                .map(|(f, _)| f)
                .collect()
        }
        None => facts,
    };
    let snippets = state
        .store
        .customer_messages(company_id, customer_id, SNIPPETS)
        .await?;
    let kb_entries = match query {
        Some(q) => {
            let sources = state.store.list_sources(company_id, 200, 0).await?.items;
            state
                .knowledge
                .search(&state.store, company_id, &sources, q, KB_ENTRIES)
                .await?
                .into_iter()
                .map(|h| h.content)
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Json(MemoryResponse {
        customer_id: customer_id.to_owned(),
        company_id,
        fact_count: facts.len(),
        knowledge_doc_count: snippets.len(),
        kb_entry_count: kb_entries.len(),
        facts: facts
            .into_iter()
            .map(|f| FactOut {
                id: f.id,
                fact: f.fact,
                category: f.category,
                confidence: f.confidence,
            })
            .collect(),
        knowledge_snippets: snippets,
        kb_entries,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveFact {
    /// Must be the caller's company.
    pub company_id: String,
    /// 1–2,000 characters.
    pub fact: String,
    /// `preference`, `history`, `sentiment`, `context` or `general` (default).
    #[serde(default)]
    pub category: Option<String>,
    /// 0–1, default 1.
    #[serde(default)]
    pub confidence: Option<f64>,
    /// Where the fact comes from; default `manual`.
    #[serde(default)]
    pub source: Option<String>,
    /// Only this agent recalls the fact (default: every agent of the company).
    #[serde(default)]
    pub agent_id: Option<String>,
}

impl Validate for SaveFact {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.len("fact", &self.fact, 1, 2000);
        if let Some(cat) = &self.category {
            c.check(
                CATEGORIES.contains(&cat.as_str()),
                "category",
                "category is one of preference, history, sentiment, context, general",
                "enum",
            );
        }
        if let Some(conf) = self.confidence {
            c.check(
                (0.0..=1.0).contains(&conf),
                "confidence",
                "confidence lies between 0 and 1",
                "value_error",
            );
        }
        if let Some(source) = &self.source {
            c.len("source", source, 1, 64);
        }
        if let Some(agent) = &self.agent_id {
            c.check(
                Uuid::parse_str(agent.trim()).is_ok(),
                "agent_id",
                "agent_id must be a UUID",
                "uuid_parsing",
            );
        }
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Saved {
    pub customer_id: String,
    pub fact_id: Uuid,
    pub saved: bool,
}

/// Save a fact about a customer; stage 02 recalls it in later chats.
#[utoipa::path(post, path = "/v1/memory/{customer_id}/save", tag = "memory", request_body = SaveFact,
    params(("customer_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Saved), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn save(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(customer_id): Path<String>,
    ApiJson(body): ApiJson<SaveFact>,
) -> ApiResult<Json<Saved>> {
    let company_id = company(&caller, &body.company_id, "Customer")?;
    let customer_id = customer(&customer_id)?.to_owned();
    let agent_id = match body.agent_id.as_deref() {
        Some(a) => {
            let id = path_id(a.trim(), "Agent")?;
            state
                .store
                .get_agent(company_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("Agent"))?;
            Some(id)
        }
        None => None,
    };
    let fact = body.fact.trim().to_owned();
    let embedder = state.knowledge.registry.default_embedder();
    let embedding = crate::pipeline::memory::embed(embedder.as_ref(), &fact).await;
    let fact_id = state
        .store
        .save_fact(
            company_id,
            &NewFact {
                customer_id: customer_id.clone(),
                agent_id,
                embedding,
                fact,
                category: body.category.unwrap_or_else(|| "general".into()),
                confidence: body.confidence.unwrap_or(1.0),
                source: body.source.unwrap_or_else(|| "manual".into()),
            },
        )
        .await?;
    Ok(Json(Saved {
        customer_id,
        fact_id,
        saved: true,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub fact_id: Uuid,
    pub deleted: bool,
}

/// Delete one fact.
#[utoipa::path(delete, path = "/v1/memory/fact/{fact_id}", tag = "memory",
    params(("fact_id" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Deleted), (status = 401), (status = 403), (status = 404)))]
pub async fn delete_fact(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(fact_id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    memory_scope(&caller)?;
    let fact_id = path_id(&fact_id, "Fact")?;
    state
        .store
        .delete_fact(caller.company_id, fact_id)
        .await
        .map_err(missing("Fact"))?;
    Ok(Json(Deleted {
        fact_id,
        deleted: true,
    }))
}
