//! The knowledge base: ingestion (convert → chunk → embed → store), the vector indexes and the
//! hybrid retrieval that stage 03 of the pipeline and `/v1/knowledge/search` share.
//!
//! * Conversion runs in an isolated worker process (`cortex __ingest-worker`, see `main.rs`).
//! * A source holds documents (files, pages, an agent's inline documents); an ingestion adds one
//!   or, under the same name, replaces that one's chunks in the one transaction that inserts the
//!   new ones, so a failed ingestion leaves the previous chunks searchable.
//! * Vectors: on SQLite an embedded index per source under `<data_dir>/vectors` (rebuilt from the
//!   chunk rows whenever it is missing or stale); on PostgreSQL the `embedding` pgvector column.
//! * Search never compares vectors of different models: each source is searched with a query
//!   embedded by the model that embedded it.

pub mod model;
mod resident;
mod search;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_embed::{Collections, Embedder, EmbedderRegistry, IndexOptions, UnknownEmbedder};
use cortex_ingest::{ChunkOptions, Document, Format, Limits, Part, WorkerCommand};
use uuid::Uuid;

use crate::agents::AgentSpec;
use crate::config::Config;
use crate::store::{Backend, EmbeddingInfo, KnowledgeStore, SqlStore, StoreError};
use model::{NewChunk, Source, SourceKind};
pub use search::{SearchHit, keyword_terms};

/// The hidden subcommand under which the `cortex` binary runs the conversion worker.
pub const WORKER_SUBCOMMAND: &str = "__ingest-worker";

/// The name of the document that holds an agent's inline documents and FAQs.
pub const AGENT_DOCUMENTS: &str = "inline documents and FAQs";

/// Texts embedded per call to the embedder.
const EMBED_BATCH: usize = 64;

/// Why a knowledge operation failed, free of HTTP concerns.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error("{0}")]
    UnknownModel(#[from] UnknownEmbedder),
    #[error("knowledge source not found")]
    SourceNotFound,
    #[error("document not found")]
    DocumentNotFound,
    #[error("agent not found")]
    AgentNotFound,
    /// The request cannot be served as asked (path outside the upload directory, unsupported
    /// file type, URL refused by the network guard…); nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The document could not be converted or embedded; the source is marked failed.
    #[error("ingestion failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the knowledge base needs besides the store.
pub struct Knowledge {
    pub registry: EmbedderRegistry,
    /// The embedded indexes (SQLite); `None` on PostgreSQL, where pgvector searches.
    collections: Option<Collections>,
    worker: Option<WorkerCommand>,
    limits: Limits,
    chunking: ChunkOptions,
    fetcher: cortex_net::GuardedClient,
    upload_root: PathBuf,
    /// One lock per source being written, so concurrent ingestions of a source do not interleave
    /// their index rebuilds.
    writing: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// A document being ingested is marked alive every quarter of this (see [`Self::alive_while`]).
    lease: std::time::Duration,
    /// Small sources held in memory for search (see [`resident`]).
    resident: resident::Resident,
}

/// The outcome of one ingestion.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub source_id: Uuid,
    pub document_id: Uuid,
    pub chunks_created: usize,
    pub chunks_embedded: usize,
    pub file_path: Option<String>,
}

impl Knowledge {
    /// Builds the embedders (loading local models), the index directory and the URL fetcher.
    pub fn new(config: &Config, backend: Backend) -> anyhow::Result<Self> {
        let registry = EmbedderRegistry::from_config(&config.embeddings)
            .map_err(|e| anyhow::anyhow!("embeddings: {e}"))?;
        let collections = match backend {
            Backend::Sqlite => Some(
                Collections::open(config.data_dir.join("vectors"), IndexOptions::default())
                    .map_err(|e| anyhow::anyhow!("opening the vector indexes: {e}"))?,
            ),
            Backend::Postgres => None,
        };
        let k = &config.knowledge;
        let worker = if k.worker_command.is_empty() {
            match WorkerCommand::current_exe([WORKER_SUBCOMMAND]) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot locate the executable: documents are converted in-process");
                    None
                }
            }
        } else {
            let mut w = WorkerCommand::new(&k.worker_command[0]);
            for arg in &k.worker_command[1..] {
                w = w.arg(arg);
            }
            Some(w)
        };
        let limits = Limits {
            max_input_bytes: config.limits.upload_bytes as u64,
            timeout: Duration::from_secs(k.conversion_timeout_seconds),
            max_cpu_seconds: k.conversion_timeout_seconds,
            max_memory_bytes: k.worker_memory_mb.saturating_mul(1024 * 1024),
            ..Limits::default()
        };
        let chunking = ChunkOptions {
            max_tokens: k.chunk_max_tokens,
            overlap_tokens: k.chunk_overlap_tokens,
            heading_prefix: true,
        };
        let mut policy =
            cortex_net::NetPolicy::url_fetch().with_allow_private(config.network.allow_private);
        for host in &config.network.allowed_hosts {
            policy = policy.with_allowed_host(host.clone());
        }
        let fetcher = cortex_net::GuardedClient::new(policy)
            .map_err(|e| anyhow::anyhow!("network.allowed_hosts: {e}"))?;
        let upload_root = config.data_dir.join("uploads");
        std::fs::create_dir_all(&upload_root)?;
        Ok(Self {
            registry,
            collections,
            worker,
            limits,
            chunking,
            fetcher,
            upload_root,
            writing: Mutex::new(HashMap::new()),
            lease: config.knowledge.ingestion_lease(),
            resident: resident::Resident::new(config.knowledge.resident_chunks),
        })
    }

    /// The upload directory of a company (created on demand).
    pub fn upload_dir(&self, company_id: Uuid) -> std::io::Result<PathBuf> {
        let dir = self.upload_root.join(company_id.to_string());
        std::fs::create_dir_all(&dir)?;
        dir.canonicalize()
    }

    /// Resolves a client-supplied path inside the company's upload directory: relative paths are
    /// taken from there, and anything that resolves elsewhere (`..`, absolute paths, symbolic
    /// links leading out) is refused.
    pub fn confine_upload_path(
        &self,
        company_id: Uuid,
        path: &str,
    ) -> Result<PathBuf, KnowledgeError> {
        let dir = self
            .upload_dir(company_id)
            .map_err(|e| KnowledgeError::Failed(format!("upload directory: {e}")))?;
        let candidate = Path::new(path);
        let joined = if candidate.is_absolute() {
            candidate.to_path_buf()
        } else {
            dir.join(candidate)
        };
        let outside = || {
            KnowledgeError::Invalid(
                "file_path must name a file inside the upload directory".to_owned(),
            )
        };
        let resolved = joined.canonicalize().map_err(|_| {
            if joined.starts_with(&dir) && !path.contains("..") {
                KnowledgeError::Invalid(format!("file not found in the upload directory: {path}"))
            } else {
                outside()
            }
        })?;
        if !resolved.starts_with(&dir) || !resolved.is_file() {
            return Err(outside());
        }
        Ok(resolved)
    }

    /// Stores an upload in the company's upload directory; returns its path.
    pub fn store_upload(
        &self,
        company_id: Uuid,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<PathBuf, KnowledgeError> {
        let dir = self
            .upload_dir(company_id)
            .map_err(|e| KnowledgeError::Failed(format!("upload directory: {e}")))?;
        let safe: String = file_name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .take(120)
            .collect();
        let safe = safe.trim_start_matches('.');
        let name = format!(
            "{}-{}",
            crate::store::new_id().simple(),
            if safe.is_empty() { "upload" } else { safe }
        );
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| KnowledgeError::Failed(format!("storing the upload: {e}")))?;
        Ok(path)
    }

    fn source_lock(&self, source_id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(source_id).or_default().clone()
    }

    /// The embedder for a request's `embedding_model` (the default when absent).
    pub fn embedder(
        &self,
        name: Option<&str>,
    ) -> Result<(String, Arc<dyn Embedder>), KnowledgeError> {
        let embedder = self.registry.resolve_or_default(name)?;
        let canonical = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => self.registry.canonical(n)?.to_owned(),
            None => self.registry.default_name().to_owned(),
        };
        Ok((canonical, embedder))
    }

    async fn convert(
        &self,
        file_name: &str,
        bytes: &[u8],
        format: Format,
    ) -> Result<Document, String> {
        let outcome = match &self.worker {
            Some(worker) => {
                cortex_ingest::convert_isolated(worker, bytes, format, &self.limits).await
            }
            None => cortex_ingest::convert_in_process(bytes, format, &self.limits).await,
        };
        match outcome {
            Ok(doc) if doc.is_empty() => Err(format!("{file_name}: the document holds no text")),
            Ok(doc) => Ok(doc),
            Err(e) => Err(format!("{file_name}: {e}")),
        }
    }

    /// Converts, chunks, embeds and stores a file as the document `file_name` of the source (a
    /// new document, or the new content of the one of that name). A conversion or embedding
    /// failure marks the document failed and keeps its old chunks.
    #[allow(clippy::too_many_arguments)]
    pub async fn ingest_bytes(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source_id: Uuid,
        file_name: &str,
        bytes: &[u8],
        format_hint: Option<Format>,
        embedding_model: Option<&str>,
    ) -> Result<Ingested, KnowledgeError> {
        let incoming = Incoming {
            name: file_name,
            kind: SourceKind::File,
            bytes,
            format_hint,
        };
        self.ingest_document(store, company_id, source_id, incoming, embedding_model)
            .await
    }

    async fn ingest_document(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source_id: Uuid,
        incoming: Incoming<'_>,
        embedding_model: Option<&str>,
    ) -> Result<Ingested, KnowledgeError> {
        let source = store
            .get_source(company_id, source_id)
            .await?
            .ok_or(KnowledgeError::SourceNotFound)?;
        let name = incoming.name;
        let format = incoming
            .format_hint
            .or_else(|| cortex_ingest::detect(name, incoming.bytes))
            .ok_or_else(|| {
                KnowledgeError::Invalid(format!(
                    "unsupported file type: {name} (PDF, DOCX, PPTX, XLSX, XLS, ODS, CSV, HTML, Markdown and text are supported)"
                ))
            })?;
        let lock = self.source_lock(source_id);
        let _writing = lock.lock().await;
        let (model_name, embedder) = self
            .document_embedder(store, &source, name, embedding_model)
            .await?;
        let document = store
            .begin_document(company_id, source_id, name, incoming.kind)
            .await
            .map_err(not_found(KnowledgeError::SourceNotFound))?;
        let work = async {
            let converted = match self.convert(name, incoming.bytes, format).await {
                Ok(d) => d,
                Err(reason) => {
                    return Err(self
                        .fail(store, company_id, source_id, document.id, reason)
                        .await);
                }
            };
            let pieces = cortex_ingest::chunk(&converted, &self.chunking);
            let target = Target {
                source_id,
                document_id: document.id,
                origin: Some(name),
                bytes: incoming.bytes.len() as i64,
            };
            self.store_pieces(store, company_id, &target, &model_name, embedder, pieces)
                .await
        };
        self.alive_while(store, company_id, document.id, work).await
    }

    /// Runs `work` (an ingestion of the document) while marking the document alive every
    /// quarter lease: a node's sweep fails only documents left `processing` and unmarked for a
    /// whole lease, those of a process that died (`server::fail_interrupted_ingestions`).
    async fn alive_while<T>(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        document_id: Uuid,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let every = self.lease / 4;
        let heartbeat = async {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = store.touch_document(company_id, document_id).await {
                    tracing::debug!(error = %e, %document_id, "ingestion heartbeat not written");
                }
            }
        };
        tokio::select! {
            out = work => out,
            () = heartbeat => unreachable!("the heartbeat loops until the work ends"),
        }
    }

    /// The embedder of a document added to `source`: the one asked for, else the source's own,
    /// else the server's default. A source has one model at a time: a document of another
    /// model is refused while other documents hold chunks (re-embed the source first).
    async fn document_embedder(
        &self,
        store: &SqlStore,
        source: &Source,
        name: &str,
        requested: Option<&str>,
    ) -> Result<(String, Arc<dyn Embedder>), KnowledgeError> {
        let replaced = store
            .document_by_name(source.company_id, source.id, name)
            .await?
            .map_or(0, |d| d.chunk_count);
        let others = source.chunk_count - replaced > 0;
        let requested = requested.map(str::trim).filter(|n| !n.is_empty());
        let chosen = match (requested, &source.embedding_model) {
            (Some(_), _) | (None, None) => self.embedder(requested)?,
            (None, Some(own)) => match self.embedder(Some(own)) {
                Ok(e) => e,
                Err(_) if others => {
                    return Err(KnowledgeError::Invalid(format!(
                        "this source is embedded with {own}, which is not configured any more: re-embed it with another model first"
                    )));
                }
                Err(_) => self.embedder(None)?,
            },
        };
        if others
            && source
                .model_id
                .as_deref()
                .is_some_and(|m| m != chosen.1.model_id())
        {
            return Err(KnowledgeError::Invalid(format!(
                "this source is embedded with {}; add documents with that model, or re-embed the source with {} first",
                source.embedding_model.as_deref().unwrap_or_default(),
                chosen.0
            )));
        }
        Ok(chosen)
    }

    /// Fetches one page through the network guard and ingests it.
    pub async fn ingest_url(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source_id: Uuid,
        url: &str,
        embedding_model: Option<&str>,
    ) -> Result<Ingested, KnowledgeError> {
        self.embedder(embedding_model)?;
        let source = store
            .get_source(company_id, source_id)
            .await?
            .ok_or(KnowledgeError::SourceNotFound)?;
        let response = match self.fetcher.get(url).await {
            Ok(r) => r,
            // The address itself is unusable (refused, malformed, or a host that does not
            // resolve): the request is wrong, and no document is made of it.
            Err(
                e @ (cortex_net::NetError::Blocked { .. }
                | cortex_net::NetError::InvalidUrl(_)
                | cortex_net::NetError::Dns { .. }),
            ) => {
                return Err(KnowledgeError::Invalid(e.to_string()));
            }
            Err(e) => {
                // Recorded on the page's document, so the failure shows where it happened.
                let document = store
                    .begin_document(company_id, source.id, url, SourceKind::Url)
                    .await?;
                let reason = format!("fetching {url}: {e}");
                return Err(self
                    .fail(store, company_id, source.id, document.id, reason)
                    .await);
            }
        };
        let content_type = response
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let hint = if content_type.contains("html") {
            Some(Format::Html)
        } else if content_type.contains("markdown") {
            Some(Format::Markdown)
        } else if content_type.starts_with("text/plain") {
            Some(Format::Text)
        } else {
            None
        };
        let name = response
            .final_url
            .path_segments()
            .and_then(|mut s| s.next_back().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "index.html".to_owned());
        // The page is a document named by its URL: fetching it again replaces it.
        let url = response.final_url.to_string();
        let incoming = Incoming {
            name: &url,
            kind: SourceKind::Url,
            bytes: &response.body,
            format_hint: hint.or_else(|| cortex_ingest::detect(&name, &response.body)),
        };
        self.ingest_document(store, company_id, source_id, incoming, embedding_model)
            .await
    }

    /// Embeds an agent's inline knowledge documents and FAQs into its `documents` source
    /// (created on first use). Returns the source and the number of documents processed.
    pub async fn ingest_agent_documents(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        agent_id: Uuid,
        spec: &AgentSpec,
        embedding_model: Option<&str>,
    ) -> Result<(Ingested, usize), KnowledgeError> {
        let source = match store.documents_source(company_id, agent_id).await? {
            Some(s) => s,
            None => {
                store
                    .create_source(
                        company_id,
                        &format!("{} documents", spec.name),
                        model::SourceKind::Documents,
                        Some(agent_id),
                    )
                    .await?
            }
        };
        let mut parts = Vec::new();
        for doc in &spec.knowledge_documents {
            parts.push(format!("# {}\n\n{}", doc.title.trim(), doc.content.trim()));
        }
        for faq in &spec.workflow_faqs {
            parts.push(format!(
                "# FAQ: {}\n\n{}",
                faq.question.trim(),
                faq.answer.trim()
            ));
        }
        let processed = parts.len();
        let bytes: usize = parts.iter().map(String::len).sum();
        let mut pieces = Vec::new();
        for markdown in parts {
            let document = Document {
                format: Format::Markdown,
                title: None,
                parts: vec![Part {
                    locator: None,
                    markdown,
                }],
            };
            pieces.extend(cortex_ingest::chunk(&document, &self.chunking));
        }
        let lock = self.source_lock(source.id);
        let _writing = lock.lock().await;
        let (model_name, embedder) = self
            .document_embedder(store, &source, AGENT_DOCUMENTS, embedding_model)
            .await?;
        let document = store
            .begin_document(
                company_id,
                source.id,
                AGENT_DOCUMENTS,
                SourceKind::Documents,
            )
            .await?;
        let agent = agent_id.to_string();
        let target = Target {
            source_id: source.id,
            document_id: document.id,
            origin: Some(&agent),
            bytes: bytes as i64,
        };
        let work = self.store_pieces(store, company_id, &target, &model_name, embedder, pieces);
        let done = self
            .alive_while(store, company_id, document.id, work)
            .await?;
        Ok((done, processed))
    }

    /// Recomputes every vector of a source (all its documents) with another model; the chunks'
    /// texts and ids are kept. Returns how many chunks were embedded.
    pub async fn reembed(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source_id: Uuid,
        embedding_model: Option<&str>,
    ) -> Result<usize, KnowledgeError> {
        let (model_name, embedder) = self.embedder(embedding_model)?;
        store
            .get_source(company_id, source_id)
            .await?
            .ok_or(KnowledgeError::SourceNotFound)?;
        let lock = self.source_lock(source_id);
        let _writing = lock.lock().await;
        let chunks = store.source_chunks(company_id, source_id).await?;
        let texts: Vec<String> = chunks.iter().map(|c| c.content.clone()).collect();
        let vectors = embed_all(embedder.as_ref(), &texts)
            .await
            .map_err(KnowledgeError::Failed)?;
        let info = EmbeddingInfo {
            model_name: &model_name,
            model_id: embedder.model_id(),
            dimension: embedder.dimension(),
        };
        let updated: Vec<(Uuid, Vec<f32>)> = chunks.iter().map(|c| c.id).zip(vectors).collect();
        store
            .reembed_chunks(company_id, source_id, &info, &updated)
            .await
            .map_err(not_found(KnowledgeError::SourceNotFound))?;
        if let Some(collections) = &self.collections {
            let rows = chunks
                .iter()
                .map(|c| c.vec_id)
                .zip(updated.iter().map(|(_, v)| v));
            if let Err(e) = collections.rebuild(
                &collection_name(company_id, source_id),
                info.model_id,
                info.dimension,
                rows,
            ) {
                tracing::warn!(error = %e, %source_id, "vector index not rebuilt; it will be at the next search");
                let _ = collections.remove(&collection_name(company_id, source_id));
            }
        }
        Ok(chunks.len())
    }

    /// Deletes a source: its rows (documents, chunks and pgvector embeddings) and its index.
    pub async fn delete_source(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source_id: Uuid,
    ) -> Result<(), KnowledgeError> {
        let lock = self.source_lock(source_id);
        let _writing = lock.lock().await;
        store
            .delete_source(company_id, source_id)
            .await
            .map_err(not_found(KnowledgeError::SourceNotFound))?;
        if let Some(collections) = &self.collections {
            collections
                .remove(&collection_name(company_id, source_id))
                .map_err(|e| KnowledgeError::Failed(format!("removing the vector index: {e}")))?;
        }
        Ok(())
    }

    /// Deletes one document of a source: its chunks leave the rows and the index, the source's
    /// other documents stay searchable.
    pub async fn delete_document(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
    ) -> Result<(), KnowledgeError> {
        let lock = self.source_lock(source_id);
        let _writing = lock.lock().await;
        let removed = store
            .delete_document(company_id, source_id, document_id)
            .await
            .map_err(not_found(KnowledgeError::DocumentNotFound))?;
        self.update_index(company_id, source_id, None, &removed, &[]);
        Ok(())
    }

    /// The chunks of a source held in memory for search, if it is (tests and diagnostics).
    pub fn resident_len(&self, source_id: Uuid) -> Option<usize> {
        self.resident.len(source_id)
    }

    /// Whether the embedded index of a source exists (tests and diagnostics).
    pub fn index_len(&self, company_id: Uuid, source_id: Uuid) -> Option<usize> {
        let collections = self.collections.as_ref()?;
        collections
            .get(&collection_name(company_id, source_id))
            .ok()
            .flatten()
            .map(|c| c.len())
    }

    async fn store_pieces(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        target: &Target<'_>,
        model_name: &str,
        embedder: Arc<dyn Embedder>,
        pieces: Vec<cortex_ingest::Chunk>,
    ) -> Result<Ingested, KnowledgeError> {
        let texts: Vec<String> = pieces.iter().map(|p| p.text.clone()).collect();
        let vectors = match embed_all(embedder.as_ref(), &texts).await {
            Ok(v) => v,
            Err(reason) => {
                return Err(self
                    .fail(
                        store,
                        company_id,
                        target.source_id,
                        target.document_id,
                        reason,
                    )
                    .await);
            }
        };
        let chunks: Vec<NewChunk> = pieces
            .into_iter()
            .zip(vectors)
            .map(|(p, vector)| NewChunk {
                vec_id: rand::random::<u64>() >> 1,
                seq: p.index as i64,
                content: p.text,
                heading_path: p.heading_path,
                page: p.page,
                locator: p.locator.as_ref().map(cortex_ingest::Locator::label),
                token_count: p.token_count as i64,
                vector,
            })
            .collect();
        let info = EmbeddingInfo {
            model_name,
            model_id: embedder.model_id(),
            dimension: embedder.dimension(),
        };
        let removed = store
            .replace_document_chunks(
                company_id,
                target.source_id,
                target.document_id,
                target.origin,
                target.bytes,
                &info,
                &chunks,
            )
            .await
            .map_err(not_found(KnowledgeError::SourceNotFound))?;
        // Only an embedded index (SQLite) needs the source's new count.
        let total = match &self.collections {
            Some(_) => store
                .get_source(company_id, target.source_id)
                .await?
                .map_or(0, |s| s.chunk_count),
            None => 0,
        };
        self.update_index(
            company_id,
            target.source_id,
            Some((&info, total)),
            &removed,
            &chunks,
        );
        Ok(Ingested {
            source_id: target.source_id,
            document_id: target.document_id,
            chunks_created: chunks.len(),
            chunks_embedded: chunks.len(),
            file_path: None,
        })
    }

    /// Brings a source's embedded index in step with committed rows: `removed` vector ids out,
    /// `added` chunks in (of the model in `written`, with the source's chunk count after the
    /// write). Without an index of that model, one is built from `added` when they are all the
    /// source holds; otherwise (or when it cannot be written) the index is dropped and the next
    /// search rebuilds it from the rows.
    fn update_index(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        written: Option<(&EmbeddingInfo<'_>, i64)>,
        removed: &[u64],
        added: &[NewChunk],
    ) {
        let Some(collections) = &self.collections else {
            return;
        };
        let name = collection_name(company_id, source_id);
        let rows = || added.iter().map(|n| (n.vec_id, n.vector.as_slice()));
        let outcome = match collections.get(&name) {
            Ok(Some(c)) if written.is_none_or(|(i, _)| c.info().model_id == i.model_id) => (|| {
                for id in removed {
                    c.remove(*id)?;
                }
                c.add_batch(rows())?;
                c.save()
            })(
            ),
            Ok(_) => match written {
                Some((info, total)) if total == added.len() as i64 => collections
                    .rebuild(&name, info.model_id, info.dimension, rows())
                    .map(|_| ()),
                _ => collections.remove(&name).map(|_| ()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, %source_id, "vector index not updated; it will be rebuilt at the next search");
            let _ = collections.remove(&name);
        }
    }

    async fn fail(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
        reason: String,
    ) -> KnowledgeError {
        tracing::warn!(%source_id, %document_id, reason = %reason, "knowledge ingestion failed");
        if let Err(e) = store
            .fail_document(company_id, source_id, document_id, &reason)
            .await
        {
            return e.into();
        }
        KnowledgeError::Failed(reason)
    }
}

/// One document on its way into a source.
struct Incoming<'a> {
    /// The document's name in the source (a file name, a URL): the key a later ingestion of
    /// the same name replaces.
    name: &'a str,
    kind: SourceKind,
    bytes: &'a [u8],
    format_hint: Option<Format>,
}

/// Where converted chunks are stored.
struct Target<'a> {
    source_id: Uuid,
    document_id: Uuid,
    origin: Option<&'a str>,
    bytes: i64,
}

/// Maps the store's `NotFound` to the knowledge error that names what was missing.
fn not_found(missing: KnowledgeError) -> impl FnOnce(StoreError) -> KnowledgeError {
    move |e| match e {
        StoreError::NotFound => missing,
        other => other.into(),
    }
}

/// The name a file stored by [`Knowledge::store_upload`] had when it was uploaded (the stored
/// name carries a unique prefix), so ingesting it names the document as the upload did.
pub fn upload_name(stored: &str) -> &str {
    match stored.split_once('-') {
        Some((prefix, rest))
            if prefix.len() == 32
                && prefix.bytes().all(|b| b.is_ascii_hexdigit())
                && !rest.is_empty() =>
        {
            rest
        }
        _ => stored,
    }
}

/// The embedded index of one source.
fn collection_name(company_id: Uuid, source_id: Uuid) -> String {
    format!("{company_id}/{source_id}")
}

async fn embed_all(embedder: &dyn Embedder, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(EMBED_BATCH) {
        let vectors = embedder
            .embed(batch)
            .await
            .map_err(|e| format!("embedding with {}: {e}", embedder.model_id()))?;
        if vectors.len() != batch.len() || vectors.iter().any(|v| v.len() != embedder.dimension()) {
            return Err(format!(
                "embedding with {}: unexpected number or size of vectors",
                embedder.model_id()
            ));
        }
        out.extend(vectors);
    }
    Ok(out)
}
