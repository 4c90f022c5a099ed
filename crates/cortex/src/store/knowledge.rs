//! Knowledge sources, their documents and the documents' chunks. A chunk row carries its vector
//! (little-endian f32 bytes, both backends) and, on PostgreSQL, the same vector as a pgvector
//! `embedding`. A source row holds its documents' aggregates (status, counts, last error),
//! rewritten by `refresh_source!` in every transaction that changes a document.

use async_trait::async_trait;
use uuid::Uuid;

use super::direct::{self, args, direct_row};
use super::{
    Backend, Page, SqlStore, StoreError, StoreResult, fmt_ts, new_id, now, one_row, parse_id,
    parse_ts,
};
use crate::knowledge::model::{Chunk, Document, NewChunk, Source, SourceKind, SourceStatus};

macro_rules! source_columns {
    () => {
        "id, company_id, name, kind, status, embedding_model, model_id, dimension, chunk_count, \
         document_count, error, origin, agent_id, created_at, updated_at"
    };
}

macro_rules! chunk_columns {
    () => {
        "id, source_id, document_id, vec_id, seq, content, heading_path, page, locator, \
         token_count, model_id, dimension, vector"
    };
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    id: String,
    company_id: String,
    name: String,
    kind: String,
    status: String,
    embedding_model: Option<String>,
    model_id: Option<String>,
    dimension: Option<i64>,
    chunk_count: i64,
    document_count: i64,
    error: Option<String>,
    origin: Option<String>,
    agent_id: Option<String>,
    created_at: String,
    updated_at: String,
}
direct_row!(SourceRow {
    id,
    company_id,
    name,
    kind,
    status,
    embedding_model,
    model_id,
    dimension,
    chunk_count,
    document_count,
    error,
    origin,
    agent_id,
    created_at,
    updated_at
});

impl TryFrom<SourceRow> for Source {
    type Error = StoreError;
    fn try_from(r: SourceRow) -> StoreResult<Self> {
        Ok(Source {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            name: r.name,
            kind: SourceKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("source kind {:?}", r.kind)))?,
            status: SourceStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Corrupt(format!("source status {:?}", r.status)))?,
            embedding_model: r.embedding_model,
            model_id: r.model_id,
            dimension: r.dimension.map(|d| d.max(0) as usize),
            chunk_count: r.chunk_count,
            document_count: r.document_count,
            error: r.error,
            origin: r.origin,
            agent_id: r.agent_id.as_deref().map(parse_id).transpose()?,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ChunkRow {
    id: String,
    source_id: String,
    document_id: Option<String>,
    vec_id: i64,
    seq: i64,
    content: String,
    heading_path: String,
    page: Option<i64>,
    locator: Option<String>,
    token_count: i64,
    model_id: String,
    dimension: i64,
    vector: Vec<u8>,
}
direct_row!(ChunkRow {
    id,
    source_id,
    document_id,
    vec_id,
    seq,
    content,
    heading_path,
    page,
    locator,
    token_count,
    model_id,
    dimension,
    vector
});

impl TryFrom<ChunkRow> for Chunk {
    type Error = StoreError;
    fn try_from(r: ChunkRow) -> StoreResult<Self> {
        Ok(Chunk {
            id: parse_id(&r.id)?,
            source_id: parse_id(&r.source_id)?,
            document_id: r.document_id.as_deref().map(parse_id).transpose()?,
            vec_id: r.vec_id.max(0) as u64,
            seq: r.seq,
            content: r.content,
            heading_path: serde_json::from_str(&r.heading_path)
                .map_err(|e| StoreError::Corrupt(format!("heading path: {e}")))?,
            page: r.page.and_then(|p| u32::try_from(p).ok()),
            locator: r.locator,
            token_count: r.token_count,
            model_id: r.model_id,
            dimension: r.dimension.max(0) as usize,
            vector: decode_vector(&r.vector)?,
        })
    }
}

macro_rules! document_columns {
    () => {
        "id, source_id, name, kind, status, chunk_count, bytes, error, created_at, updated_at"
    };
}

/// Rewrites a source's aggregates from its documents: `$1` company, `$2` source, `$3` now.
/// A document being ingested makes the source `processing`; else a failed one `failed` (with
/// the newest failure's error); else any document `completed`; none `pending`.
macro_rules! refresh_source {
    () => {
        concat!(
            "UPDATE knowledge_sources SET",
            " chunk_count = (SELECT COALESCE(SUM(d.chunk_count), 0) FROM knowledge_documents d",
            " WHERE d.company_id = $1 AND d.source_id = $2),",
            " document_count = (SELECT COUNT(*) FROM knowledge_documents d",
            " WHERE d.company_id = $1 AND d.source_id = $2),",
            " status = CASE",
            " WHEN EXISTS (SELECT 1 FROM knowledge_documents d WHERE d.company_id = $1",
            " AND d.source_id = $2 AND d.status = 'processing') THEN 'processing'",
            " WHEN EXISTS (SELECT 1 FROM knowledge_documents d WHERE d.company_id = $1",
            " AND d.source_id = $2 AND d.status = 'failed') THEN 'failed'",
            " WHEN EXISTS (SELECT 1 FROM knowledge_documents d WHERE d.company_id = $1",
            " AND d.source_id = $2) THEN 'completed' ELSE 'pending' END,",
            " error = (SELECT d.error FROM knowledge_documents d WHERE d.company_id = $1",
            " AND d.source_id = $2 AND d.status = 'failed' ORDER BY d.updated_at DESC LIMIT 1),",
            " updated_at = $3 WHERE company_id = $1 AND id = $2"
        )
    };
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: String,
    source_id: String,
    name: String,
    kind: String,
    status: String,
    chunk_count: i64,
    bytes: Option<i64>,
    error: Option<String>,
    created_at: String,
    updated_at: String,
}

impl TryFrom<DocumentRow> for Document {
    type Error = StoreError;
    fn try_from(r: DocumentRow) -> StoreResult<Self> {
        Ok(Document {
            id: parse_id(&r.id)?,
            source_id: parse_id(&r.source_id)?,
            name: r.name,
            kind: SourceKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Corrupt(format!("document kind {:?}", r.kind)))?,
            status: SourceStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Corrupt(format!("document status {:?}", r.status)))?,
            chunk_count: r.chunk_count,
            bytes: r.bytes,
            error: r.error,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }
}

/// f32 little-endian bytes, the portable form of a vector.
pub fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn decode_vector(bytes: &[u8]) -> StoreResult<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return Err(StoreError::Corrupt(format!(
            "vector of {} bytes is not a whole number of f32",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// pgvector's text form, `[0.1,0.2,…]`.
pub(crate) fn pgvector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Non-finite components cannot come from a normalising embedder; store them as 0.
        let x = if x.is_finite() { *x } else { 0.0 };
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

/// The embedding written with a replacement of a source's chunks.
pub struct EmbeddingInfo<'a> {
    pub model_name: &'a str,
    pub model_id: &'a str,
    pub dimension: usize,
}

/// Knowledge sources and chunks of a company.
#[async_trait]
pub trait KnowledgeStore {
    async fn create_source(
        &self,
        company_id: Uuid,
        name: &str,
        kind: SourceKind,
        agent_id: Option<Uuid>,
    ) -> StoreResult<Source>;
    async fn get_source(&self, company_id: Uuid, source_id: Uuid) -> StoreResult<Option<Source>>;
    async fn list_sources(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Source>>;
    /// The `documents` source that holds an agent's inline documents and FAQs, if any.
    async fn documents_source(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
    ) -> StoreResult<Option<Source>>;
    /// Deletes the source and its chunks; `NotFound` if the company has no such source.
    async fn delete_source(&self, company_id: Uuid, source_id: Uuid) -> StoreResult<()>;
    /// The source's documents, oldest first.
    async fn list_documents(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Document>>;
    /// The source's document called `name`, if any.
    async fn document_by_name(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        name: &str,
    ) -> StoreResult<Option<Document>>;
    /// Marks the document `name` of the source `processing`, creating it if it is new; its
    /// chunks are untouched. `NotFound` if the company has no such source.
    async fn begin_document(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        name: &str,
        kind: SourceKind,
    ) -> StoreResult<Document>;
    /// Marks the document failed with `error`, keeping its previous chunks.
    async fn fail_document(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
        error: &str,
    ) -> StoreResult<()>;
    /// Fails every document still `processing` whose last change is older than `before`: its
    /// ingestion died with its process (a crash, a kill). Their sources' aggregates are
    /// rewritten. Returns how many documents.
    async fn fail_interrupted_documents(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> StoreResult<u64>;
    /// Marks a document still `processing` alive (its ingestion's heartbeat).
    async fn touch_document(&self, company_id: Uuid, document_id: Uuid) -> StoreResult<()>;
    /// Replaces the chunks of one document in one transaction and marks it completed (the
    /// source takes `embedding` as its model). Returns the vector ids of the chunks removed.
    #[allow(clippy::too_many_arguments)]
    async fn replace_document_chunks(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
        origin: Option<&str>,
        bytes: i64,
        embedding: &EmbeddingInfo<'_>,
        chunks: &[NewChunk],
    ) -> StoreResult<Vec<u64>>;
    /// Deletes one document and its chunks; returns the vector ids of the chunks removed.
    /// `NotFound` if the source has no such document.
    async fn delete_document(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
    ) -> StoreResult<Vec<u64>>;
    /// Gives chunks of the source new vectors of another model, in one transaction (texts,
    /// ids and documents are kept); `vectors` pairs chunk ids with their new vector.
    async fn reembed_chunks(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        embedding: &EmbeddingInfo<'_>,
        vectors: &[(Uuid, Vec<f32>)],
    ) -> StoreResult<()>;
    /// Every chunk of the source, document by document, in document order.
    async fn source_chunks(&self, company_id: Uuid, source_id: Uuid) -> StoreResult<Vec<Chunk>>;
    /// The chunks with these vector ids.
    async fn chunks_by_vec_ids(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        vec_ids: &[u64],
    ) -> StoreResult<Vec<Chunk>>;
    /// How many chunks of any source hold each of `terms` (words or phrases, in the full-text
    /// index's terms), counted up to [`COMMON_WORD_ROWS`] + 1: a word found in more than
    /// `COMMON_WORD_ROWS` is this corpus's stop word, whose ranking would cost time in
    /// proportion to the corpus and tell little; a term found in none cannot match. Counts
    /// are remembered (`word_counts`).
    async fn term_counts(&self, terms: &[String]) -> StoreResult<Vec<i64>>;
    /// The chunks of a source matching any of `words` (see [`KnowledgeStore::term_counts`]) or
    /// `phrases` in the full-text index (FTS5 on SQLite, `tsvector` + GIN on PostgreSQL), best
    /// first, with the index's relevance (BM25 on SQLite, `ts_rank_cd` on PostgreSQL; higher is
    /// better), at most `limit`.
    async fn chunks_matching(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        words: &[String],
        phrases: &[String],
        limit: i64,
    ) -> StoreResult<Vec<(Chunk, f32)>>;
    /// PostgreSQL only: the `k` chunks nearest to `query` by cosine, with their similarity.
    async fn pgvector_search(
        &self,
        company_id: Uuid,
        source: &Source,
        query: &[f32],
        k: i64,
    ) -> StoreResult<Vec<(Chunk, f32)>>;
}

/// Vector ids looked up per query in `chunks_by_vec_ids` (unused slots are bound to -1).
const VEC_ID_SLOTS: usize = 16;

/// `slots` parameters for up to `slots` vector ids (unused ones -1, which no row has).
pub(crate) fn vec_id_params(ids: &[u64], slots: usize) -> impl Iterator<Item = direct::Arg> + '_ {
    (0..slots).map(move |slot| {
        direct::Arg::Int(
            ids.get(slot)
                .map_or(-1, |id| i64::try_from(*id).unwrap_or(-1)),
        )
    })
}

/// Sources above this many chunks are searched through the HNSW index, smaller ones exactly.
const EXACT_SEARCH_MAX_CHUNKS: i64 = 5000;

macro_rules! pg_search {
    // The query vector is cast once (`q`), not in the sort key of every row.
    (exact) => {
        concat!(
            "SELECT ",
            chunk_columns!(),
            ", CAST(1 - (embedding <=> q.v) AS DOUBLE PRECISION) AS score",
            " FROM knowledge_chunks, (SELECT CAST($3 AS vector) AS v) q",
            " WHERE company_id = $1 AND source_id = $2 AND model_id = $4",
            " ORDER BY embedding <=> q.v LIMIT $5"
        )
    };
    ($dim:literal) => {
        concat!(
            "SELECT ",
            chunk_columns!(),
            ", CAST(1 - ((embedding::vector(",
            $dim,
            ")) <=> CAST($3 AS vector(",
            $dim,
            "))) AS DOUBLE PRECISION) AS score",
            " FROM knowledge_chunks WHERE dimension = ",
            $dim,
            " AND company_id = $1 AND source_id = $2 AND model_id = $4",
            " ORDER BY (embedding::vector(",
            $dim,
            ")) <=> CAST($3 AS vector(",
            $dim,
            ")) LIMIT $5"
        )
    };
}

/// pgvector's default and largest `hnsw.ef_search`.
const DEFAULT_EF_SEARCH: i64 = 40;
const MAX_EF_SEARCH: i64 = 1000;

/// The `hnsw.ef_search` with which an HNSW scan of a table of `table_rows` rows, filtered to a
/// source of `source_rows`, still finds `k` of the source's; `None` when that needs more than
/// pgvector's largest setting (the source is then searched exactly).
///
/// pgvector 0.6 filters after the graph search: of the `ef_search` rows nearest in the whole
/// table only the source's pass: with the default, ten queries of a source holding 9 % of the
/// table got 188 of the 400 rows they asked for. The scan is widened to the rows that hold `k`
/// of the source's at its share of the table (there: 220, which found all 400; twice that cost
/// 1.6× the time for nothing more); a share too small for pgvector's largest setting is
/// searched exactly, through the source's index (a cost that grows with the source, not the
/// table). pgvector 0.8's iterative index scans would make this unnecessary.
fn hnsw_ef_search(k: i64, source_rows: i64, table_rows: f64) -> Option<i64> {
    let source_rows = source_rows.max(1) as f64;
    let ef = (k as f64 * table_rows.max(source_rows) / source_rows).ceil() as i64;
    (ef <= MAX_EF_SEARCH).then_some(ef.max(DEFAULT_EF_SEARCH))
}

/// Above this many matching chunks a query word is not given to the full-text ranking.
pub const COMMON_WORD_ROWS: i64 = 1000;

/// A term as the full-text query languages get it: letters, digits, `-`, `_` and spaces only
/// (it is then quoted, so nothing in it is an operator).
fn fts_term(t: &str) -> String {
    t.chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .collect::<String>()
        .trim()
        .to_owned()
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Touches the source row (the first write of a transaction on a source's documents, so
/// writers of one source queue on its row); returns the rows updated (0: no such source).
async fn touch_source(tx: &mut Tx<'_>, company: &str, source: &str, at: &str) -> StoreResult<u64> {
    Ok(sqlx::query(
        "UPDATE knowledge_sources SET updated_at = $1 WHERE company_id = $2 AND id = $3",
    )
    .bind(at)
    .bind(company)
    .bind(source)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Rewrites the source's aggregates from its documents (see `refresh_source!`).
async fn refresh_source(tx: &mut Tx<'_>, company: &str, source: &str, at: &str) -> StoreResult<()> {
    sqlx::query(refresh_source!())
        .bind(company)
        .bind(source)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes one document's chunks; returns their vector ids (for the embedded index).
async fn remove_document_chunks(
    tx: &mut Tx<'_>,
    company: &str,
    source: &str,
    document: &str,
) -> StoreResult<Vec<u64>> {
    let ids: Vec<i64> = sqlx::query_scalar(concat!(
        "SELECT vec_id FROM knowledge_chunks WHERE company_id = $1 AND source_id = $2",
        " AND document_id = $3"
    ))
    .bind(company)
    .bind(source)
    .bind(document)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query(concat!(
        "DELETE FROM knowledge_chunks WHERE company_id = $1 AND source_id = $2",
        " AND document_id = $3"
    ))
    .bind(company)
    .bind(source)
    .bind(document)
    .execute(&mut **tx)
    .await?;
    Ok(ids.into_iter().map(|i| i.max(0) as u64).collect())
}

#[derive(sqlx::FromRow)]
struct ScoredChunkRow {
    #[sqlx(flatten)]
    chunk: ChunkRow,
    score: f64,
}

impl direct::DirectRow for ScoredChunkRow {
    fn columns() -> Vec<&'static str> {
        let mut columns = ChunkRow::columns();
        columns.push("score");
        columns
    }
    fn from_row(row: &rusqlite::Row<'_>, at: &[usize]) -> rusqlite::Result<Self> {
        let (chunk, score) = at.split_at(at.len().saturating_sub(1));
        Ok(Self {
            chunk: ChunkRow::from_row(row, chunk)?,
            score: row.get(score.first().copied().unwrap_or(usize::MAX))?,
        })
    }
}

/// One term of [`KnowledgeStore::term_counts`] and its count.
#[derive(sqlx::FromRow)]
struct TermRow {
    w: String,
    n: i64,
}
direct_row!(TermRow { w, n });

#[async_trait]
impl KnowledgeStore for SqlStore {
    async fn create_source(
        &self,
        company_id: Uuid,
        name: &str,
        kind: SourceKind,
        agent_id: Option<Uuid>,
    ) -> StoreResult<Source> {
        let at = now();
        let source = Source {
            id: new_id(),
            company_id,
            name: name.to_owned(),
            kind,
            status: SourceStatus::Pending,
            embedding_model: None,
            model_id: None,
            dimension: None,
            chunk_count: 0,
            document_count: 0,
            error: None,
            origin: None,
            agent_id,
            created_at: at,
            updated_at: at,
        };
        sqlx::query(concat!(
            "INSERT INTO knowledge_sources (id, company_id, name, kind, status, chunk_count,",
            " agent_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7)"
        ))
        .bind(source.id.to_string())
        .bind(company_id.to_string())
        .bind(name)
        .bind(kind.as_str())
        .bind(source.status.as_str())
        .bind(agent_id.map(|a| a.to_string()))
        .bind(fmt_ts(at))
        .execute(self.pool())
        .await?;
        Ok(source)
    }

    async fn get_source(&self, company_id: Uuid, source_id: Uuid) -> StoreResult<Option<Source>> {
        self.fetch_rows::<SourceRow>(
            concat!(
                "SELECT ",
                source_columns!(),
                " FROM knowledge_sources WHERE company_id = $1 AND id = $2"
            ),
            args![company_id.to_string(), source_id.to_string()],
        )
        .await?
        .pop()
        .map(Source::try_from)
        .transpose()
    }

    async fn list_sources(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Source>> {
        self.company_page::<SourceRow, Source>(
            "SELECT COUNT(*) FROM knowledge_sources WHERE company_id = $1",
            concat!(
                "SELECT ",
                source_columns!(),
                " FROM knowledge_sources WHERE company_id = $1",
                " ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            company_id,
            limit,
            offset,
        )
        .await
    }

    async fn documents_source(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
    ) -> StoreResult<Option<Source>> {
        sqlx::query_as::<_, SourceRow>(concat!(
            "SELECT ",
            source_columns!(),
            " FROM knowledge_sources WHERE company_id = $1 AND agent_id = $2 AND kind = 'documents'",
            " ORDER BY created_at LIMIT 1"
        ))
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Source::try_from)
        .transpose()
    }

    async fn delete_source(&self, company_id: Uuid, source_id: Uuid) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM knowledge_chunks WHERE company_id = $1 AND source_id = $2")
            .bind(company_id.to_string())
            .bind(source_id.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM knowledge_documents WHERE company_id = $1 AND source_id = $2")
            .bind(company_id.to_string())
            .bind(source_id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM knowledge_sources WHERE company_id = $1 AND id = $2")
            .bind(company_id.to_string())
            .bind(source_id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done != 1 {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        // Its chunks are gone: a term only they held is in none now.
        self.word_counts.forget();
        Ok(())
    }

    async fn list_documents(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Document>> {
        self.scoped_page::<DocumentRow, Document>(
            "SELECT COUNT(*) FROM knowledge_documents WHERE company_id = $1 AND source_id = $2",
            concat!(
                "SELECT ",
                document_columns!(),
                " FROM knowledge_documents WHERE company_id = $1 AND source_id = $2",
                " ORDER BY created_at, id LIMIT $3 OFFSET $4"
            ),
            company_id,
            source_id,
            limit,
            offset,
        )
        .await
    }

    async fn document_by_name(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        name: &str,
    ) -> StoreResult<Option<Document>> {
        sqlx::query_as::<_, DocumentRow>(concat!(
            "SELECT ",
            document_columns!(),
            " FROM knowledge_documents WHERE company_id = $1 AND source_id = $2 AND name = $3"
        ))
        .bind(company_id.to_string())
        .bind(source_id.to_string())
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .map(Document::try_from)
        .transpose()
    }

    async fn begin_document(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        name: &str,
        kind: SourceKind,
    ) -> StoreResult<Document> {
        let at = fmt_ts(now());
        let company = company_id.to_string();
        let source = source_id.to_string();
        let mut tx = self.pool().begin().await?;
        // The source row first: it must exist, and it serialises writers of the source.
        if touch_source(&mut tx, &company, &source, &at).await? != 1 {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        let row = sqlx::query_as::<_, DocumentRow>(concat!(
            "INSERT INTO knowledge_documents (id, company_id, source_id, name, kind, status,",
            " chunk_count, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'processing', 0, $6, $6)",
            " ON CONFLICT (company_id, source_id, name) DO UPDATE SET status = 'processing',",
            " kind = excluded.kind, updated_at = excluded.updated_at RETURNING ",
            document_columns!()
        ))
        .bind(new_id().to_string())
        .bind(&company)
        .bind(&source)
        .bind(name)
        .bind(kind.as_str())
        .bind(&at)
        .fetch_one(&mut *tx)
        .await?;
        refresh_source(&mut tx, &company, &source, &at).await?;
        tx.commit().await?;
        Document::try_from(row)
    }

    async fn fail_document(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
        error: &str,
    ) -> StoreResult<()> {
        let at = fmt_ts(now());
        let company = company_id.to_string();
        let source = source_id.to_string();
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(concat!(
            "UPDATE knowledge_documents SET status = 'failed', error = $1, updated_at = $2",
            " WHERE company_id = $3 AND source_id = $4 AND id = $5"
        ))
        .bind(error)
        .bind(&at)
        .bind(&company)
        .bind(&source)
        .bind(document_id.to_string())
        .execute(&mut *tx)
        .await?;
        one_row(done)?;
        refresh_source(&mut tx, &company, &source, &at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_document(&self, company_id: Uuid, document_id: Uuid) -> StoreResult<()> {
        sqlx::query(concat!(
            "UPDATE knowledge_documents SET updated_at = $1",
            " WHERE company_id = $2 AND id = $3 AND status = 'processing'"
        ))
        .bind(fmt_ts(now()))
        .bind(company_id.to_string())
        .bind(document_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn fail_interrupted_documents(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        error: &str,
    ) -> StoreResult<u64> {
        let at = fmt_ts(now());
        let mut tx = self.pool().begin().await?;
        let failed: Vec<(String, String)> = sqlx::query_as(concat!(
            "UPDATE knowledge_documents SET status = 'failed', error = $1, updated_at = $2",
            " WHERE status = 'processing' AND updated_at < $3 RETURNING company_id, source_id"
        ))
        .bind(error)
        .bind(&at)
        .bind(fmt_ts(before))
        .fetch_all(&mut *tx)
        .await?;
        let sources: std::collections::BTreeSet<&(String, String)> = failed.iter().collect();
        for (company, source) in sources {
            refresh_source(&mut tx, company, source, &at).await?;
        }
        tx.commit().await?;
        Ok(failed.len() as u64)
    }

    async fn replace_document_chunks(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
        origin: Option<&str>,
        bytes: i64,
        embedding: &EmbeddingInfo<'_>,
        chunks: &[NewChunk],
    ) -> StoreResult<Vec<u64>> {
        let at = fmt_ts(now());
        let company = company_id.to_string();
        let source = source_id.to_string();
        let document = document_id.to_string();
        let mut tx = self.pool().begin().await?;
        // The source row first: it serialises concurrent writers of the same source.
        let done = sqlx::query(concat!(
            "UPDATE knowledge_sources SET embedding_model = $1, model_id = $2, dimension = $3,",
            " origin = COALESCE($4, origin), updated_at = $5 WHERE company_id = $6 AND id = $7"
        ))
        .bind(embedding.model_name)
        .bind(embedding.model_id)
        .bind(embedding.dimension as i64)
        .bind(origin)
        .bind(&at)
        .bind(&company)
        .bind(&source)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let updated = sqlx::query(concat!(
            "UPDATE knowledge_documents SET status = 'completed', error = NULL, chunk_count = $1,",
            " bytes = $2, updated_at = $3 WHERE company_id = $4 AND source_id = $5 AND id = $6"
        ))
        .bind(chunks.len() as i64)
        .bind(bytes)
        .bind(&at)
        .bind(&company)
        .bind(&source)
        .bind(&document)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 || updated != 1 {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        let removed = remove_document_chunks(&mut tx, &company, &source, &document).await?;
        for c in chunks {
            if c.vector.len() != embedding.dimension {
                return Err(StoreError::Corrupt(format!(
                    "chunk vector of dimension {} for a {}-dimensional model",
                    c.vector.len(),
                    embedding.dimension
                )));
            }
            let heading = serde_json::to_string(&c.heading_path)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let query = match self.backend() {
                Backend::Sqlite => sqlx::query(concat!(
                    "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content,",
                    " heading_path, page, locator, token_count, model_id, dimension, vector, created_at,",
                    " document_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                )),
                Backend::Postgres => sqlx::query(concat!(
                    "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content,",
                    " heading_path, page, locator, token_count, model_id, dimension, vector, created_at,",
                    " document_id, embedding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,",
                    " $13, $14, $15, CAST($16 AS vector))"
                )),
            };
            let mut query = query
                .bind(new_id().to_string())
                .bind(&company)
                .bind(&source)
                .bind(i64::try_from(c.vec_id).unwrap_or(i64::MAX))
                .bind(c.seq)
                .bind(&c.content)
                .bind(heading)
                .bind(c.page.map(i64::from))
                .bind(c.locator.as_deref())
                .bind(c.token_count)
                .bind(embedding.model_id)
                .bind(embedding.dimension as i64)
                .bind(encode_vector(&c.vector))
                .bind(&at)
                .bind(&document);
            if self.backend() == Backend::Postgres {
                query = query.bind(pgvector_text(&c.vector));
            }
            query.execute(&mut *tx).await?;
        }
        refresh_source(&mut tx, &company, &source, &at).await?;
        tx.commit().await?;
        self.word_counts.forget();
        Ok(removed)
    }

    async fn delete_document(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        document_id: Uuid,
    ) -> StoreResult<Vec<u64>> {
        let at = fmt_ts(now());
        let company = company_id.to_string();
        let source = source_id.to_string();
        let document = document_id.to_string();
        let mut tx = self.pool().begin().await?;
        let found = touch_source(&mut tx, &company, &source, &at).await?;
        let deleted = sqlx::query(
            "DELETE FROM knowledge_documents WHERE company_id = $1 AND source_id = $2 AND id = $3",
        )
        .bind(&company)
        .bind(&source)
        .bind(&document)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if found != 1 || deleted != 1 {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        let removed = remove_document_chunks(&mut tx, &company, &source, &document).await?;
        refresh_source(&mut tx, &company, &source, &at).await?;
        // A source left without chunks has no model: its next document may choose any.
        sqlx::query(concat!(
            "UPDATE knowledge_sources SET embedding_model = NULL, model_id = NULL, dimension = NULL",
            " WHERE company_id = $1 AND id = $2 AND chunk_count = 0"
        ))
        .bind(&company)
        .bind(&source)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.word_counts.forget();
        Ok(removed)
    }

    async fn reembed_chunks(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        embedding: &EmbeddingInfo<'_>,
        vectors: &[(Uuid, Vec<f32>)],
    ) -> StoreResult<()> {
        let at = fmt_ts(now());
        let company = company_id.to_string();
        let source = source_id.to_string();
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(concat!(
            "UPDATE knowledge_sources SET embedding_model = $1, model_id = $2, dimension = $3,",
            " updated_at = $4 WHERE company_id = $5 AND id = $6"
        ))
        .bind(embedding.model_name)
        .bind(embedding.model_id)
        .bind(embedding.dimension as i64)
        .bind(&at)
        .bind(&company)
        .bind(&source)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            tx.rollback().await?;
            return Err(StoreError::NotFound);
        }
        for (chunk_id, vector) in vectors {
            if vector.len() != embedding.dimension {
                return Err(StoreError::Corrupt(format!(
                    "chunk vector of dimension {} for a {}-dimensional model",
                    vector.len(),
                    embedding.dimension
                )));
            }
            let query = match self.backend() {
                Backend::Sqlite => sqlx::query(concat!(
                    "UPDATE knowledge_chunks SET model_id = $1, dimension = $2, vector = $3",
                    " WHERE company_id = $4 AND source_id = $5 AND id = $6"
                )),
                Backend::Postgres => sqlx::query(concat!(
                    "UPDATE knowledge_chunks SET model_id = $1, dimension = $2, vector = $3,",
                    " embedding = CAST($7 AS vector) WHERE company_id = $4 AND source_id = $5 AND id = $6"
                )),
            };
            let mut query = query
                .bind(embedding.model_id)
                .bind(embedding.dimension as i64)
                .bind(encode_vector(vector))
                .bind(&company)
                .bind(&source)
                .bind(chunk_id.to_string());
            if self.backend() == Backend::Postgres {
                query = query.bind(pgvector_text(vector));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn source_chunks(&self, company_id: Uuid, source_id: Uuid) -> StoreResult<Vec<Chunk>> {
        sqlx::query_as::<_, ChunkRow>(concat!(
            "SELECT ",
            chunk_columns!(),
            " FROM knowledge_chunks WHERE company_id = $1 AND source_id = $2",
            " ORDER BY document_id, seq"
        ))
        .bind(company_id.to_string())
        .bind(source_id.to_string())
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(Chunk::try_from)
        .collect()
    }

    async fn chunks_by_vec_ids(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        vec_ids: &[u64],
    ) -> StoreResult<Vec<Chunk>> {
        let mut out = Vec::with_capacity(vec_ids.len());
        for batch in vec_ids.chunks(VEC_ID_SLOTS) {
            let mut args = args![company_id.to_string(), source_id.to_string()];
            args.extend(vec_id_params(batch, VEC_ID_SLOTS));
            let rows: Vec<ChunkRow> = self
                .fetch_rows(
                    concat!(
                        "SELECT ",
                        chunk_columns!(),
                        " FROM knowledge_chunks WHERE company_id = $1 AND source_id = $2 AND vec_id IN",
                        " ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
                    ),
                    args,
                )
                .await?;
            for row in rows {
                out.push(Chunk::try_from(row)?);
            }
        }
        Ok(out)
    }

    async fn term_counts(&self, terms: &[String]) -> StoreResult<Vec<i64>> {
        let keys: Vec<String> = terms.iter().map(|t| fts_term(t)).collect();
        let (mut counts, generation) = self.word_counts.get(&keys);
        let unknown: Vec<String> = keys
            .iter()
            .zip(&counts)
            .filter(|(k, n)| n.is_none() && !k.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        if !unknown.is_empty() {
            // One statement for every unknown term, each counted up to the bound.
            let bound = COMMON_WORD_ROWS + 1;
            let (sql, args): (&'static str, Vec<direct::Arg>) = match self.backend() {
                Backend::Sqlite => (
                    concat!(
                        "SELECT w.value AS w, (SELECT COUNT(*) FROM (SELECT 1 FROM knowledge_chunks_fts",
                        " WHERE knowledge_chunks_fts MATCH '\"' || w.value || '\"' LIMIT $2)) AS n",
                        " FROM json_each($1) AS w"
                    ),
                    args![
                        serde_json::to_string(&unknown)
                            .map_err(|e| StoreError::Corrupt(format!("query words: {e}")))?,
                        bound
                    ],
                ),
                // A term holds no control character (see fts_term): the unit separator splits.
                //
                // A GIN scan reads a word's whole posting list before `LIMIT` applies (40 ms for
                // a word in 1M chunks), so a word that the column's statistics already show in
                // well over the bound's rows (`most_common_elems`, sampled by ANALYZE) is taken
                // as common without a scan; any other word (none in a table never analysed) is
                // counted.
                Backend::Postgres => (
                    concat!(
                        "SELECT t.w, CASE WHEN COALESCE(s.f[array_position(s.e, lower(t.w))] * s.n, 0) > $3",
                        " THEN $2 ELSE (SELECT COUNT(*) FROM (SELECT 1 FROM knowledge_chunks WHERE content_tsv @@",
                        " websearch_to_tsquery('simple', '\"' || t.w || '\"') LIMIT $2) c) END AS n",
                        " FROM unnest(string_to_array($1, chr(31))) AS t(w)",
                        " LEFT JOIN (SELECT most_common_elems::text::text[] AS e, most_common_elem_freqs AS f,",
                        " (SELECT reltuples FROM pg_class WHERE oid = 'knowledge_chunks'::regclass) AS n",
                        " FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'knowledge_chunks'",
                        " AND attname = 'content_tsv') s ON true"
                    ),
                    // $3, the estimated rows above which a word is common without counting:
                    // four times the bound, so a sampling error does not turn a rarer word common.
                    args![unknown.join("\u{1f}"), bound, COMMON_WORD_ROWS * 4],
                ),
            };
            // Outside the chat's read session: a count must not come from a snapshot older
            // than the generation it is remembered under.
            let read: Vec<TermRow> = match self.direct() {
                Some(d) => d.read_fresh(|c| direct::rows(c, sql, &args))?,
                None => self.fetch_rows(sql, args).await?,
            };
            for (key, n) in keys.iter().zip(counts.iter_mut()) {
                if n.is_none() {
                    *n = Some(read.iter().find(|r| &r.w == key).map_or(0, |r| r.n));
                }
            }
            self.word_counts
                .remember(generation, read.into_iter().map(|r| (r.w, r.n)));
        }
        Ok(counts.into_iter().map(|n| n.unwrap_or(0)).collect())
    }

    async fn chunks_matching(
        &self,
        company_id: Uuid,
        source_id: Uuid,
        words: &[String],
        phrases: &[String],
        limit: i64,
    ) -> StoreResult<Vec<(Chunk, f32)>> {
        let terms: Vec<String> = phrases
            .iter()
            .chain(words)
            .map(|t| fts_term(t))
            .filter(|t| !t.is_empty())
            .map(|t| format!("\"{t}\""))
            .collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, query): (&str, String) = match self.backend() {
            // FTS5: quoted strings are phrases of the tokenizer's tokens; bm25() is lower-better.
            Backend::Sqlite => (
                // Materialised, so the index is read once: flattened into the join, SQLite
                // may drive it from the source's rows, one FTS cursor (and one BM25 set-up,
                // which counts every match of every phrase) per row.
                concat!(
                    "WITH m AS MATERIALIZED (SELECT rowid AS r, bm25(knowledge_chunks_fts) AS rank",
                    " FROM knowledge_chunks_fts WHERE knowledge_chunks_fts MATCH $1)",
                    " SELECT ",
                    chunk_columns!(),
                    ", CAST(-m.rank AS DOUBLE PRECISION) AS score FROM m CROSS JOIN knowledge_chunks c",
                    " ON c.rowid = m.r WHERE c.company_id = $2 AND c.source_id = $3 ORDER BY m.rank LIMIT $4"
                ),
                terms.join(" OR "),
            ),
            // websearch_to_tsquery never fails on user text; `or` joins, quotes make phrases.
            Backend::Postgres => (
                concat!(
                    "SELECT ",
                    chunk_columns!(),
                    ", CAST(ts_rank_cd(content_tsv, q) AS DOUBLE PRECISION) AS score",
                    " FROM knowledge_chunks, websearch_to_tsquery('simple', $1) q",
                    " WHERE content_tsv @@ q AND company_id = $2 AND source_id = $3",
                    " ORDER BY score DESC LIMIT $4"
                ),
                terms.join(" or "),
            ),
        };
        self.fetch_rows::<ScoredChunkRow>(
            sql,
            args![query, company_id.to_string(), source_id.to_string(), limit],
        )
        .await?
        .into_iter()
        .map(|r| Ok((Chunk::try_from(r.chunk)?, r.score as f32)))
        .collect()
    }

    async fn pgvector_search(
        &self,
        company_id: Uuid,
        source: &Source,
        query: &[f32],
        k: i64,
    ) -> StoreResult<Vec<(Chunk, f32)>> {
        let Some(model_id) = source.model_id.as_deref() else {
            return Ok(Vec::new());
        };
        let graph: Option<&'static str> = match query.len() {
            _ if source.chunk_count <= EXACT_SEARCH_MAX_CHUNKS => None,
            384 => Some(pg_search!("384")),
            768 => Some(pg_search!("768")),
            1024 => Some(pg_search!("1024")),
            1536 => Some(pg_search!("1536")),
            _ => None,
        };
        let (sql, ef) = match graph {
            Some(sql) => {
                // The planner's estimate of the table's rows (-1 before its first ANALYZE).
                let rows: f32 = sqlx::query_scalar(
                    "SELECT reltuples FROM pg_class WHERE oid = 'knowledge_chunks'::regclass",
                )
                .fetch_one(self.pool())
                .await?;
                match hnsw_ef_search(k, source.chunk_count, f64::from(rows)) {
                    Some(ef) => (sql, ef),
                    None => (pg_search!(exact), DEFAULT_EF_SEARCH),
                }
            }
            None => (pg_search!(exact), DEFAULT_EF_SEARCH),
        };
        let search = sqlx::query_as::<_, ScoredChunkRow>(sql)
            .bind(company_id.to_string())
            .bind(source.id.to_string())
            .bind(pgvector_text(query))
            .bind(model_id)
            .bind(k);
        let rows = if ef == DEFAULT_EF_SEARCH {
            search.fetch_all(self.pool()).await?
        } else {
            // Widened for this transaction only.
            let mut tx = self.pool().begin().await?;
            sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
                .bind(ef.to_string())
                .execute(&mut *tx)
                .await?;
            let rows = search.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            rows
        };
        rows.into_iter()
            .map(|r| Ok((Chunk::try_from(r.chunk)?, r.score as f32)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_share_of_the_table_widens_the_graph_scan_or_is_searched_exactly() {
        // A source that is the whole table: pgvector's default.
        assert_eq!(hnsw_ef_search(20, 1_000_000, 1_000_000.0), Some(40));
        // The table never analysed (reltuples -1): taken as the source alone.
        assert_eq!(hnsw_ef_search(20, 6_000, -1.0), Some(40));
        // 30,000 of 330,000 rows: 20 × 11.
        assert_eq!(hnsw_ef_search(20, 30_000, 330_000.0), Some(220));
        assert_eq!(hnsw_ef_search(20, 30_000, 1_000_000.0), Some(667));
        // 10,000 of 1,000,000: more than pgvector's largest ef_search.
        assert_eq!(hnsw_ef_search(20, 10_000, 1_000_000.0), None);
    }

    #[test]
    fn vectors_round_trip_through_bytes_and_text() {
        let v = vec![0.25f32, -1.0, 3.5e-7];
        assert_eq!(decode_vector(&encode_vector(&v)).ok(), Some(v.clone()));
        assert!(decode_vector(&[1, 2, 3]).is_err());
        assert_eq!(pgvector_text(&[1.0, -0.5]), "[1,-0.5]");
        assert_eq!(pgvector_text(&[f32::NAN]), "[0]");
    }
}
