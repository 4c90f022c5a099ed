//! `/v1/knowledge/…`: sources and their documents, ingestion (file, upload, URL, agent
//! documents), re-embedding and search. Responses follow the reference (`source_id, status, chunks_created, chunks_embedded,
//! error`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{
    ApiJson, Caller, Checks, PageInfo, Pagination, Validate, own_company, path_id, require_admin,
};
use crate::auth::Identity;
use crate::knowledge::model::{Document, Source, SourceKind};
use crate::knowledge::{Ingested, SearchHit};
use crate::state::AppState;
use crate::store::{AgentStore, KnowledgeStore};

/// A knowledge source as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    #[schema(value_type = String)]
    pub id: Uuid,
    pub name: String,
    /// `file`, `url` or `documents`.
    pub kind: String,
    /// Aggregated over its documents: `processing` while one is being ingested, else `failed`
    /// if one failed, else `completed` (`pending` without documents).
    pub status: String,
    /// The chunks of all its documents.
    pub chunk_count: i64,
    pub document_count: i64,
    pub embedding_model: Option<String>,
    pub model_id: Option<String>,
    pub dimension: Option<usize>,
    /// The error of its most recently failed document.
    pub error: Option<String>,
    /// The last document ingested (file name, URL, or agent id).
    pub origin: Option<String>,
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Uuid>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Source> for SourceView {
    fn from(s: Source) -> Self {
        Self {
            id: s.id,
            name: s.name,
            kind: s.kind.as_str().to_owned(),
            status: s.status.as_str().to_owned(),
            chunk_count: s.chunk_count,
            document_count: s.document_count,
            embedding_model: s.embedding_model,
            model_id: s.model_id,
            dimension: s.dimension,
            error: s.error,
            origin: s.origin,
            agent_id: s.agent_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// One document of a source.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    #[schema(value_type = String)]
    pub id: Uuid,
    /// The file name or URL; ingesting the same name again replaces this document.
    pub name: String,
    /// `file`, `url` or `documents` (an agent's inline documents and FAQs).
    pub kind: String,
    /// `processing`, `completed` or `failed` (a failed document keeps its previous chunks).
    pub status: String,
    pub chunk_count: i64,
    /// The size received; null for documents ingested before sources held several.
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Document> for DocumentView {
    fn from(d: Document) -> Self {
        Self {
            id: d.id,
            name: d.name,
            kind: d.kind.as_str().to_owned(),
            status: d.status.as_str().to_owned(),
            chunk_count: d.chunk_count,
            bytes: d.bytes,
            error: d.error,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    pub success: bool,
    pub documents: Vec<DocumentView>,
    pub pagination: PageInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    pub success: bool,
    pub sources: Vec<SourceView>,
    pub pagination: PageInfo,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    pub name: String,
    /// `file`, `url` or `documents` (default `file`).
    #[serde(default)]
    pub kind: Option<String>,
}

impl Validate for NewSource {
    fn validate(&self) -> Result<(), Vec<super::FieldError>> {
        let mut c = Checks::default();
        c.len("name", &self.name, 1, 200);
        c.check(
            self.kind
                .as_deref()
                .is_none_or(|k| SourceKind::parse(k).is_some()),
            "kind",
            "kind must be one of file, url, documents",
            "value_error",
        );
        c.finish()
    }
}

/// The reference's ingestion result.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResult {
    #[schema(value_type = String)]
    pub source_id: Uuid,
    /// The document added (or replaced: same name) in the source.
    #[schema(value_type = String)]
    pub document_id: Uuid,
    pub status: String,
    pub chunks_created: usize,
    pub chunks_embedded: usize,
    pub error: Option<String>,
    /// Where an upload was stored (usable with `ingest/file` later); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_path: Option<String>,
}

impl From<Ingested> for IngestResult {
    fn from(i: Ingested) -> Self {
        Self {
            source_id: i.source_id,
            document_id: i.document_id,
            status: "completed".into(),
            chunks_created: i.chunks_created,
            chunks_embedded: i.chunks_embedded,
            error: None,
            file_path: i.file_path,
        }
    }
}

fn check_model(c: &mut Checks, model: Option<&String>) {
    c.check(
        model.is_none_or(|m| m.chars().count() <= 100),
        "embedding_model",
        "embedding_model is at most 100 characters",
        "string_length",
    );
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct IngestFile {
    pub source_id: String,
    /// A path inside the server's upload directory (relative paths are taken from there).
    pub file_path: String,
    pub user_id: String,
    #[serde(default)]
    pub embedding_model: Option<String>,
}

impl Validate for IngestFile {
    fn validate(&self) -> Result<(), Vec<super::FieldError>> {
        let mut c = Checks::default();
        c.len("source_id", &self.source_id, 1, 64);
        c.len("file_path", &self.file_path, 1, 1024);
        c.len("user_id", &self.user_id, 1, 200);
        check_model(&mut c, self.embedding_model.as_ref());
        c.finish()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct IngestUrl {
    pub source_id: String,
    pub url: String,
    pub user_id: String,
    #[serde(default)]
    pub embedding_model: Option<String>,
}

impl Validate for IngestUrl {
    fn validate(&self) -> Result<(), Vec<super::FieldError>> {
        let mut c = Checks::default();
        c.len("source_id", &self.source_id, 1, 64);
        c.len("url", &self.url, 1, 2048);
        c.len("user_id", &self.user_id, 1, 200);
        check_model(&mut c, self.embedding_model.as_ref());
        c.finish()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct IngestDocuments {
    pub agent_id: String,
    pub company_id: String,
    pub user_id: String,
    #[serde(default)]
    pub embedding_model: Option<String>,
}

impl Validate for IngestDocuments {
    fn validate(&self) -> Result<(), Vec<super::FieldError>> {
        let mut c = Checks::default();
        c.len("agent_id", &self.agent_id, 1, 64);
        c.len("company_id", &self.company_id, 1, 64);
        c.len("user_id", &self.user_id, 1, 200);
        check_model(&mut c, self.embedding_model.as_ref());
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentsResult {
    #[schema(value_type = String)]
    pub agent_id: Uuid,
    #[schema(value_type = String)]
    pub source_id: Uuid,
    pub status: String,
    pub documents_processed: usize,
    pub chunks_created: usize,
    pub chunks_embedded: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Reembed {
    pub source_id: String,
    #[serde(default)]
    pub embedding_model: Option<String>,
}

impl Validate for Reembed {
    fn validate(&self) -> Result<(), Vec<super::FieldError>> {
        let mut c = Checks::default();
        c.len("source_id", &self.source_id, 1, 64);
        check_model(&mut c, self.embedding_model.as_ref());
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReembedResult {
    #[schema(value_type = String)]
    pub source_id: Uuid,
    pub status: String,
    pub embedding_model: String,
    pub model_id: String,
    pub chunks_embedded: usize,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SearchRequest {
    /// Search the knowledge sources of this agent…
    #[serde(default)]
    pub agent_id: Option<String>,
    /// …or these sources.
    #[serde(default)]
    pub source_ids: Option<Vec<String>>,
    pub query: String,
    /// 1–50 (default 5).
    #[serde(default)]
    pub top_k: Option<usize>,
}

impl Validate for SearchRequest {
    fn validate(&self) -> Result<(), Vec<super::FieldError>> {
        let mut c = Checks::default();
        c.len("query", &self.query, 1, 4000);
        c.check(
            self.agent_id.is_some() != self.source_ids.is_some(),
            "agent_id",
            "give either agent_id or source_ids",
            "value_error",
        );
        c.check(
            self.source_ids.as_ref().is_none_or(|s| s.len() <= 100),
            "source_ids",
            "at most 100 source ids",
            "too_long",
        );
        c.check(
            self.top_k.is_none_or(|k| (1..=50).contains(&k)),
            "top_k",
            "top_k must be between 1 and 50",
            "int_range",
        );
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResultItem {
    #[schema(value_type = String)]
    pub chunk_id: Uuid,
    #[schema(value_type = String)]
    pub source_id: Uuid,
    pub source_name: String,
    #[schema(value_type = Option<String>)]
    pub document_id: Option<Uuid>,
    pub content: String,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub locator: Option<String>,
    pub model_id: String,
    pub score: f32,
    pub vector_score: f32,
    pub keyword_score: f32,
}

impl From<SearchHit> for SearchResultItem {
    fn from(h: SearchHit) -> Self {
        Self {
            chunk_id: h.chunk_id,
            source_id: h.source_id,
            source_name: h.source_name,
            document_id: h.document_id,
            content: h.content,
            heading_path: h.heading_path,
            page: h.page,
            locator: h.locator,
            model_id: h.model_id,
            score: h.score,
            vector_score: h.vector_score,
            keyword_score: h.keyword_score,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    pub success: bool,
    pub query: String,
    pub results: Vec<SearchResultItem>,
}

/// The multipart form of `POST /v1/knowledge/upload`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    pub source_id: String,
    pub embedding_model: Option<String>,
}

/// A source id from a path or body; one that is not a UUID is a source that does not exist.
fn source_id(id: &str) -> ApiResult<Uuid> {
    path_id(id.trim(), "Knowledge source")
}

async fn owned_source(state: &AppState, caller: &Identity, id: &str) -> ApiResult<Source> {
    state
        .store
        .get_source(caller.company_id, source_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("Knowledge source"))
}

#[utoipa::path(post, path = "/v1/knowledge/sources", tag = "knowledge", request_body = NewSource, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = SourceView), (status = 401), (status = 403), (status = 422)))]
pub async fn create_source(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<NewSource>,
) -> ApiResult<(StatusCode, Json<SourceView>)> {
    require_admin(&caller, "knowledge sources")?;
    let kind = body
        .kind
        .as_deref()
        .and_then(SourceKind::parse)
        .unwrap_or(SourceKind::File);
    let source = state
        .store
        .create_source(caller.company_id, body.name.trim(), kind, None)
        .await?;
    Ok((StatusCode::CREATED, Json(source.into())))
}

#[utoipa::path(get, path = "/v1/knowledge/sources", tag = "knowledge", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = SourceList), (status = 401), (status = 422)))]
pub async fn list_sources(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<SourceList>> {
    let sources = state
        .store
        .list_sources(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(SourceList {
        success: true,
        sources: sources.items.into_iter().map(Into::into).collect(),
        pagination: page.info(sources.total),
    }))
}

#[utoipa::path(get, path = "/v1/knowledge/sources/{id}", tag = "knowledge", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = SourceView), (status = 401), (status = 404)))]
pub async fn get_source(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<SourceView>> {
    Ok(Json(owned_source(&state, &caller, &id).await?.into()))
}

#[utoipa::path(delete, path = "/v1/knowledge/sources/{id}", tag = "knowledge", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "Deleted with its chunks and vectors"), (status = 401), (status = 403), (status = 404)))]
pub async fn delete_source(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "knowledge sources")?;
    let id = source_id(&id)?;
    state
        .knowledge
        .delete_source(&state.store, caller.company_id, id)
        .await?;
    knowledge_changed(&state, caller.company_id, id).await;
    Ok(Json(json!({"success": true, "id": id, "deleted": true})))
}

#[utoipa::path(get, path = "/v1/knowledge/sources/{id}/documents", tag = "knowledge", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = DocumentList), (status = 401), (status = 404), (status = 422)))]
pub async fn list_documents(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    page: Pagination,
) -> ApiResult<Json<DocumentList>> {
    let source = owned_source(&state, &caller, &id).await?;
    let documents = state
        .store
        .list_documents(caller.company_id, source.id, page.limit, page.offset)
        .await?;
    Ok(Json(DocumentList {
        success: true,
        documents: documents.items.into_iter().map(Into::into).collect(),
        pagination: page.info(documents.total),
    }))
}

#[utoipa::path(delete, path = "/v1/knowledge/sources/{id}/documents/{document_id}", tag = "knowledge", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path), ("document_id" = String, Path)),
    responses((status = 200, description = "Deleted with its chunks and vectors; the source's other documents stay searchable"), (status = 401), (status = 403), (status = 404)))]
pub async fn delete_document(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((id, document_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "knowledge sources")?;
    let source = owned_source(&state, &caller, &id).await?;
    let document_id = path_id(document_id.trim(), "Document")?;
    state
        .knowledge
        .delete_document(&state.store, caller.company_id, source.id, document_id)
        .await?;
    knowledge_changed(&state, caller.company_id, source.id).await;
    Ok(Json(
        json!({"success": true, "id": document_id, "deleted": true}),
    ))
}

#[utoipa::path(post, path = "/v1/knowledge/ingest/file", tag = "knowledge", request_body = IngestFile, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = IngestResult), (status = 400, description = "Path outside the upload directory, unsupported type, unknown embedding model"),
        (status = 401), (status = 404), (status = 422), (status = 500, description = "Conversion or embedding failed; the source is marked failed")))]
pub async fn ingest_file(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<IngestFile>,
) -> ApiResult<Json<IngestResult>> {
    require_admin(&caller, "knowledge sources")?;
    let source = owned_source(&state, &caller, &body.source_id).await?;
    state.knowledge.embedder(body.embedding_model.as_deref())?;
    let path = state
        .knowledge
        .confine_upload_path(caller.company_id, &body.file_path)?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read {}: {e}", body.file_path)))?;
    if bytes.len() > state.config.limits.upload_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "the file exceeds the upload limit of {} bytes",
            state.config.limits.upload_bytes
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let done = state
        .knowledge
        .ingest_bytes(
            &state.store,
            caller.company_id,
            source.id,
            crate::knowledge::upload_name(&name),
            &bytes,
            None,
            body.embedding_model.as_deref(),
        )
        .await?;
    knowledge_changed(&state, caller.company_id, source.id).await;
    Ok(Json(done.into()))
}

#[utoipa::path(post, path = "/v1/knowledge/upload", tag = "knowledge", request_body(content = UploadForm, content_type = "multipart/form-data"),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = IngestResult), (status = 400), (status = 401), (status = 404), (status = 413), (status = 422),
        (status = 500, description = "Conversion or embedding failed; the source is marked failed")))]
pub async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    super::extract::Form(mut form): super::extract::Form,
) -> ApiResult<Json<IngestResult>> {
    require_admin(&caller, "knowledge sources")?;
    let limit = state.config.limits.upload_bytes;
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut source: Option<String> = None;
    let mut model: Option<String> = None;
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the upload exceeds {limit} bytes"))
        } else {
            ApiError::BadRequest(format!("invalid multipart body: {e}"))
        }
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or_default() {
            "file" => {
                let name = field.file_name().unwrap_or("upload").to_owned();
                let mut bytes = Vec::new();
                while let Some(piece) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + piece.len() > limit {
                        return Err(ApiError::PayloadTooLarge(format!(
                            "the upload exceeds {limit} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&piece);
                }
                file = Some((name, bytes));
            }
            "source_id" => source = Some(field.text().await.map_err(bad)?),
            "embedding_model" => {
                model = Some(field.text().await.map_err(bad)?).filter(|m| !m.trim().is_empty());
            }
            _ => {}
        }
    }
    let missing = |what: &str| {
        ApiError::validation(vec![super::FieldError::body(
            what,
            "Field required",
            "missing",
        )])
    };
    let source = source.ok_or_else(|| missing("source_id"))?;
    let (name, bytes) = file.ok_or_else(|| missing("file"))?;
    let source = owned_source(&state, &caller, &source).await?;
    state.knowledge.embedder(model.as_deref())?;
    let path = state
        .knowledge
        .store_upload(caller.company_id, &name, &bytes)?;
    // The document is named as the stored upload (its safe file name), so ingesting that path
    // later with ingest/file replaces this document rather than adding a second one.
    let stored = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut done = state
        .knowledge
        .ingest_bytes(
            &state.store,
            caller.company_id,
            source.id,
            crate::knowledge::upload_name(&stored),
            &bytes,
            None,
            model.as_deref(),
        )
        .await?;
    done.file_path = Some(path.to_string_lossy().into_owned());
    knowledge_changed(&state, caller.company_id, source.id).await;
    Ok(Json(done.into()))
}

#[utoipa::path(post, path = "/v1/knowledge/ingest/url", tag = "knowledge", request_body = IngestUrl, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = IngestResult), (status = 400, description = "URL refused by the network guard, unknown embedding model"),
        (status = 401), (status = 404), (status = 422), (status = 500)))]
pub async fn ingest_url(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<IngestUrl>,
) -> ApiResult<Json<IngestResult>> {
    require_admin(&caller, "knowledge sources")?;
    let source = owned_source(&state, &caller, &body.source_id).await?;
    let done = state
        .knowledge
        .ingest_url(
            &state.store,
            caller.company_id,
            source.id,
            body.url.trim(),
            body.embedding_model.as_deref(),
        )
        .await?;
    knowledge_changed(&state, caller.company_id, source.id).await;
    Ok(Json(done.into()))
}

#[utoipa::path(post, path = "/v1/knowledge/ingest/documents", tag = "knowledge", request_body = IngestDocuments, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DocumentsResult), (status = 400), (status = 401), (status = 404), (status = 422), (status = 500)))]
pub async fn ingest_documents(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<IngestDocuments>,
) -> ApiResult<Json<DocumentsResult>> {
    require_admin(&caller, "knowledge sources")?;
    let agent_id = path_id(body.agent_id.trim(), "Agent")?;
    let company_id = own_company(&caller, &body.company_id, "Agent")?;
    let agent = state
        .store
        .get_agent(company_id, agent_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Agent"))?;
    let (done, processed) = state
        .knowledge
        .ingest_agent_documents(
            &state.store,
            caller.company_id,
            agent.id,
            &agent.spec,
            body.embedding_model.as_deref(),
        )
        .await?;
    knowledge_changed(&state, caller.company_id, done.source_id).await;
    // Stage 03 searches the agent's sources: link the documents source once.
    if !agent.spec.knowledge_source_ids.contains(&done.source_id) {
        let mut spec = agent.spec.clone();
        spec.knowledge_source_ids.push(done.source_id);
        state
            .store
            .update_agent(caller.company_id, agent.id, &spec)
            .await?;
        state.invalidate_agent(agent.id).await;
    }
    Ok(Json(DocumentsResult {
        agent_id: agent.id,
        source_id: done.source_id,
        status: "completed".into(),
        documents_processed: processed,
        chunks_created: done.chunks_created,
        chunks_embedded: done.chunks_embedded,
    }))
}

#[utoipa::path(post, path = "/v1/knowledge/reembed", tag = "knowledge", request_body = Reembed, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = ReembedResult), (status = 400), (status = 401), (status = 404), (status = 422), (status = 500)))]
pub async fn reembed(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<Reembed>,
) -> ApiResult<Json<ReembedResult>> {
    require_admin(&caller, "knowledge sources")?;
    let source = owned_source(&state, &caller, &body.source_id).await?;
    let embedded = state
        .knowledge
        .reembed(
            &state.store,
            caller.company_id,
            source.id,
            body.embedding_model.as_deref(),
        )
        .await?;
    knowledge_changed(&state, caller.company_id, source.id).await;
    let updated = owned_source(&state, &caller, &body.source_id).await?;
    Ok(Json(ReembedResult {
        source_id: source.id,
        status: "completed".into(),
        embedding_model: updated.embedding_model.unwrap_or_default(),
        model_id: updated.model_id.unwrap_or_default(),
        chunks_embedded: embedded,
        error: None,
    }))
}

#[utoipa::path(post, path = "/v1/knowledge/search", tag = "knowledge", request_body = SearchRequest, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = SearchResponse), (status = 401), (status = 404), (status = 422)))]
pub async fn search(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<SearchRequest>,
) -> ApiResult<Json<SearchResponse>> {
    let company = caller.company_id;
    let ids: Vec<Uuid> = match (&body.agent_id, &body.source_ids) {
        (Some(agent), _) => {
            let agent_id = path_id(agent.trim(), "Agent")?;
            state
                .store
                .get_agent(company, agent_id)
                .await?
                .ok_or_else(|| ApiError::not_found("Agent"))?
                .spec
                .knowledge_source_ids
        }
        (None, Some(ids)) => ids
            .iter()
            .map(|id| source_id(id))
            .collect::<ApiResult<Vec<_>>>()?,
        (None, None) => Vec::new(),
    };
    let mut sources = Vec::with_capacity(ids.len());
    for id in ids {
        match state.store.get_source(company, id).await? {
            Some(s) => sources.push(s),
            // Named explicitly: a source the company does not have is a 404.
            None if body.source_ids.is_some() => {
                return Err(ApiError::not_found("Knowledge source"));
            }
            // Linked to the agent but deleted since: nothing to search.
            None => {}
        }
    }
    let hits = state
        .knowledge
        .search(
            &state.store,
            company,
            &sources,
            &body.query,
            body.top_k.unwrap_or(5),
        )
        .await?;
    Ok(Json(SearchResponse {
        success: true,
        query: body.query,
        results: hits.into_iter().map(Into::into).collect(),
    }))
}

/// A source's content changed: the agents that search it drop their cached answers (unless
/// configured otherwise). The change itself is committed already; a failure here is logged.
async fn knowledge_changed(state: &AppState, company_id: Uuid, source_id: Uuid) {
    if !state.config.cache.invalidate_on_knowledge_change {
        return;
    }
    let cache = &state.cache;
    match crate::pipeline::cache::invalidate_for_source(cache, &state.store, company_id, source_id)
        .await
    {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(%source_id, entries = n, "knowledge changed: cached answers dropped")
        }
        Err(e) => {
            tracing::warn!(error = %e, %source_id, "knowledge changed but cached answers could not be dropped")
        }
    }
}
