//! What the knowledge base stores: sources, their documents, and the documents' chunks.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where a source's content comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Url,
    Documents,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Url => "url",
            SourceKind::Documents => "documents",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "file" => SourceKind::File,
            "url" => SourceKind::Url,
            "documents" => SourceKind::Documents,
            _ => return None,
        })
    }
}

/// Where a source stands. A failed source keeps the chunks of its last successful ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Pending => "pending",
            SourceStatus::Processing => "processing",
            SourceStatus::Completed => "completed",
            SourceStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => SourceStatus::Pending,
            "processing" => SourceStatus::Processing,
            "completed" => SourceStatus::Completed,
            "failed" => SourceStatus::Failed,
            _ => return None,
        })
    }
}

/// A knowledge source of a company.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub id: Uuid,
    pub company_id: Uuid,
    pub name: String,
    pub kind: SourceKind,
    pub status: SourceStatus,
    /// The configured embedding model name that made the chunks' vectors.
    pub embedding_model: Option<String>,
    /// That embedder's model id (`hash-384`, `local:all-MiniLM-L6-v2`, …).
    pub model_id: Option<String>,
    pub dimension: Option<usize>,
    /// The chunks of all its documents.
    pub chunk_count: i64,
    pub document_count: i64,
    /// The error of its most recently failed document, if one is failed.
    pub error: Option<String>,
    /// The file name, URL or agent of the last ingestion.
    pub origin: Option<String>,
    /// For `documents` sources: the agent whose documents and FAQs they are.
    pub agent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One document of a source: a file, a page, or an agent's inline documents and FAQs. Its name
/// is the key an ingestion replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: Uuid,
    pub source_id: Uuid,
    pub name: String,
    pub kind: SourceKind,
    /// `processing` while an ingestion of it runs, `completed`, or `failed` (its previous
    /// chunks, if any, stay searchable).
    pub status: SourceStatus,
    pub chunk_count: i64,
    /// The size received; `None` for documents ingested before sources held several.
    pub bytes: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A chunk to store, with its vector.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub vec_id: u64,
    pub seq: i64,
    pub content: String,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub locator: Option<String>,
    pub token_count: i64,
    pub vector: Vec<f32>,
}

/// A stored chunk.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub id: Uuid,
    pub source_id: Uuid,
    pub document_id: Option<Uuid>,
    pub vec_id: u64,
    pub seq: i64,
    pub content: String,
    pub heading_path: Vec<String>,
    pub page: Option<u32>,
    pub locator: Option<String>,
    pub token_count: i64,
    pub model_id: String,
    pub dimension: usize,
    pub vector: Vec<f32>,
}
