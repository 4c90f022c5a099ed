//! The answer cache of stage 05: question/answer pairs of an agent, each with the embedding of
//! its question (bytes on both backends, and a pgvector `embedding` on PostgreSQL).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::direct::{Arg, args, direct_row};
use super::knowledge::{decode_vector, encode_vector, pgvector_text, vec_id_params};
use super::{Backend, SqlStore, StoreResult, fmt_ts, new_id, now, parse_id};

/// A cached question/answer pair of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub id: Uuid,
    /// The entry's id in the agent's vector index (`None`: stored without an embedding).
    pub vec_id: Option<u64>,
    pub question: String,
    pub answer: String,
    pub last_used_at: DateTime<Utc>,
}

/// A pair to store, with the embedding of its question when there is one.
#[derive(Debug, Clone)]
pub struct NewCacheEntry {
    pub question: String,
    pub normalized: String,
    pub answer: String,
    pub vec_id: u64,
    /// The embedder's model id and the question's vector.
    pub embedding: Option<(String, Vec<f32>)>,
}

/// An entry removed by the sweeper, for the in-memory indexes to forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub company_id: Uuid,
    pub agent_id: Uuid,
    pub vec_id: Option<u64>,
}

macro_rules! entry_columns {
    () => {
        "id, vec_id, question, answer, last_used_at"
    };
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: String,
    vec_id: Option<i64>,
    question: String,
    answer: String,
    last_used_at: Option<String>,
}
direct_row!(EntryRow {
    id,
    vec_id,
    question,
    answer,
    last_used_at
});

impl TryFrom<EntryRow> for CacheEntry {
    type Error = super::StoreError;
    fn try_from(r: EntryRow) -> StoreResult<Self> {
        Ok(CacheEntry {
            id: parse_id(&r.id)?,
            vec_id: r.vec_id.map(|v| v.max(0) as u64),
            question: r.question,
            answer: r.answer,
            last_used_at: r
                .last_used_at
                .as_deref()
                .map(super::parse_ts)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ScoredEntryRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    score: f64,
}

#[derive(sqlx::FromRow)]
struct RemovedRow {
    company_id: String,
    agent_id: String,
    vec_id: Option<i64>,
}

impl TryFrom<RemovedRow> for Removed {
    type Error = super::StoreError;
    fn try_from(r: RemovedRow) -> StoreResult<Self> {
        Ok(Removed {
            company_id: parse_id(&r.company_id)?,
            agent_id: parse_id(&r.agent_id)?,
            vec_id: r.vec_id.map(|v| v.max(0) as u64),
        })
    }
}

/// Vector ids looked up per query in `cache_by_vec_ids` (unused slots are bound to -1).
const VEC_ID_SLOTS: usize = 8;

/// An agent with at most this many entries is searched exactly on PostgreSQL (its rows through
/// the agent index, then sorted by distance); a larger one through the HNSW index.
const EXACT_MAX_ENTRIES: i64 = 2000;

macro_rules! pg_nearest {
    // The query vector is cast once (`q`): `CAST($4 AS vector)` in the sort key was parsed again
    // for every row (60 ms for an agent of 1,000 entries; 2.8 ms cast once).
    (exact) => {
        concat!(
            "SELECT ",
            entry_columns!(),
            ", CAST(1 - (embedding <=> q.v) AS DOUBLE PRECISION) AS score",
            " FROM cache_entries, (SELECT CAST($4 AS vector) AS v) q",
            " WHERE company_id = $1 AND agent_id = $2 AND model_id = $3",
            " AND expires_at > $5 ORDER BY embedding <=> q.v LIMIT $6"
        )
    };
    ($dim:literal) => {
        concat!(
            "SELECT ",
            entry_columns!(),
            ", CAST(1 - ((embedding::vector(",
            $dim,
            ")) <=> CAST($4 AS vector(",
            $dim,
            "))) AS DOUBLE PRECISION) AS score FROM cache_entries WHERE dimension = ",
            $dim,
            " AND company_id = $1 AND agent_id = $2 AND model_id = $3 AND expires_at > $5",
            " ORDER BY (embedding::vector(",
            $dim,
            ")) <=> CAST($4 AS vector(",
            $dim,
            ")) LIMIT $6"
        )
    };
}

/// The answer cache of an agent's stage 05.
#[async_trait]
pub trait CacheStore {
    /// The newest live entry of an agent whose normalised question equals `normalized`.
    async fn cache_lookup(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        normalized: &str,
    ) -> StoreResult<Option<CacheEntry>>;
    /// The live entries of an agent with these vector ids.
    async fn cache_by_vec_ids(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        vec_ids: &[u64],
    ) -> StoreResult<Vec<CacheEntry>>;
    /// PostgreSQL: the `k` live entries of an agent whose question embeddings (of `model_id`)
    /// are nearest to `query`, with their cosine similarity.
    async fn cache_nearest(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        model_id: &str,
        query: &[f32],
        k: i64,
    ) -> StoreResult<Vec<(CacheEntry, f32)>>;
    /// The `(vec_id, vector)` of every live entry of an agent embedded by `model_id` (to
    /// build the agent's in-memory index).
    async fn cache_vectors(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        model_id: &str,
    ) -> StoreResult<Vec<(u64, Vec<f32>)>>;
    /// Store entries in one transaction (all or none); returns how many.
    async fn cache_put_many(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        entries: &[NewCacheEntry],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Records that an entry answered (for the least-recently-used bound).
    async fn cache_touch(&self, company_id: Uuid, entry_id: Uuid) -> StoreResult<()>;
    /// Delete the company's entries (of one agent, or all); returns how many.
    async fn cache_flush(&self, company_id: Uuid, agent_id: Option<Uuid>) -> StoreResult<u64>;
    /// `(live entries, stored rows including expired ones)` of the company.
    async fn cache_counts(&self, company_id: Uuid) -> StoreResult<(u64, u64)>;
    /// Node-level sweep: deletes up to `limit` expired entries of any company, and entries
    /// embedded by another model than `model_id` (never comparable again); returns them.
    async fn cache_sweep(&self, model_id: &str, limit: i64) -> StoreResult<Vec<Removed>>;
    /// Node-level sweep: the agents (of any company) holding more than `max` entries, with
    /// their count.
    async fn cache_over_bound(&self, max: i64) -> StoreResult<Vec<(Uuid, Uuid, i64)>>;
    /// How many entries the agent holds (expired ones included: they hold memory until swept).
    async fn cache_agent_count(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<i64>;
    /// Deletes an agent's `n` least recently used entries; returns them.
    async fn cache_evict(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        n: i64,
    ) -> StoreResult<Vec<Removed>>;
}

const SQLITE_INSERT: &str = concat!(
    "INSERT INTO cache_entries (id, company_id, agent_id, question, normalized, answer,",
    " created_at, expires_at, last_used_at, vec_id, model_id, dimension, vector)",
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $9, $10, $11, $12)"
);
const PG_INSERT: &str = concat!(
    "INSERT INTO cache_entries (id, company_id, agent_id, question, normalized, answer,",
    " created_at, expires_at, last_used_at, vec_id, model_id, dimension, vector, embedding)",
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $9, $10, $11, $12, CAST($13 AS vector))"
);

#[async_trait]
impl CacheStore for SqlStore {
    async fn cache_lookup(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        normalized: &str,
    ) -> StoreResult<Option<CacheEntry>> {
        self.fetch_rows::<EntryRow>(
            concat!(
                "SELECT ",
                entry_columns!(),
                " FROM cache_entries WHERE company_id = $1 AND agent_id = $2 AND normalized = $3",
                " AND expires_at > $4 ORDER BY created_at DESC LIMIT 1"
            ),
            args![
                company_id.to_string(),
                agent_id.to_string(),
                normalized,
                fmt_ts(now())
            ],
        )
        .await?
        .pop()
        .map(CacheEntry::try_from)
        .transpose()
    }

    async fn cache_by_vec_ids(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        vec_ids: &[u64],
    ) -> StoreResult<Vec<CacheEntry>> {
        let at = fmt_ts(now());
        let mut out = Vec::with_capacity(vec_ids.len());
        for batch in vec_ids.chunks(VEC_ID_SLOTS) {
            let mut args = args![company_id.to_string(), agent_id.to_string(), &at];
            args.extend(vec_id_params(batch, VEC_ID_SLOTS));
            let rows: Vec<EntryRow> = self
                .fetch_rows(
                    concat!(
                        "SELECT ",
                        entry_columns!(),
                        " FROM cache_entries WHERE company_id = $1 AND agent_id = $2 AND expires_at > $3",
                        " AND vec_id IN ($4, $5, $6, $7, $8, $9, $10, $11)"
                    ),
                    args,
                )
                .await?;
            for row in rows {
                out.push(CacheEntry::try_from(row)?);
            }
        }
        Ok(out)
    }

    async fn cache_nearest(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        model_id: &str,
        query: &[f32],
        k: i64,
    ) -> StoreResult<Vec<(CacheEntry, f32)>> {
        let (company, agent) = (company_id.to_string(), agent_id.to_string());
        // Counting stops at the bound: a small agent is searched exactly (HNSW filters after
        // its scan in pgvector 0.6, and would miss the entries of an agent among many).
        let entries: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM cache_entries WHERE company_id = $1",
            " AND agent_id = $2 LIMIT $3) t"
        ))
        .bind(&company)
        .bind(&agent)
        .bind(EXACT_MAX_ENTRIES + 1)
        .fetch_one(self.pool())
        .await?;
        let sql: &'static str = if entries <= EXACT_MAX_ENTRIES {
            pg_nearest!(exact)
        } else {
            match query.len() {
                384 => pg_nearest!("384"),
                768 => pg_nearest!("768"),
                1024 => pg_nearest!("1024"),
                1536 => pg_nearest!("1536"),
                _ => pg_nearest!(exact),
            }
        };
        sqlx::query_as::<_, ScoredEntryRow>(sql)
            .bind(&company)
            .bind(&agent)
            .bind(model_id)
            .bind(pgvector_text(query))
            .bind(fmt_ts(now()))
            .bind(k)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|r| Ok((CacheEntry::try_from(r.entry)?, r.score as f32)))
            .collect()
    }

    async fn cache_vectors(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        model_id: &str,
    ) -> StoreResult<Vec<(u64, Vec<f32>)>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(concat!(
            "SELECT vec_id, vector FROM cache_entries WHERE company_id = $1 AND agent_id = $2",
            " AND model_id = $3 AND expires_at > $4 AND vec_id IS NOT NULL AND vector IS NOT NULL"
        ))
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .bind(model_id)
        .bind(fmt_ts(now()))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, bytes)| Ok((id.max(0) as u64, decode_vector(&bytes)?)))
            .collect()
    }

    async fn cache_put_many(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        entries: &[NewCacheEntry],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let (company, agent) = (company_id.to_string(), agent_id.to_string());
        let (created, expires) = (fmt_ts(now()), fmt_ts(expires_at));
        let statements = entries
            .iter()
            .map(|e| {
                let mut args = args![
                    new_id().to_string(),
                    &company,
                    &agent,
                    &e.question,
                    &e.normalized,
                    &e.answer,
                    &created,
                    &expires,
                    i64::try_from(e.vec_id).unwrap_or(i64::MAX),
                    e.embedding.as_ref().map(|(m, _)| m.clone()),
                    e.embedding.as_ref().map(|(_, v)| v.len() as i64),
                ];
                // The bytes feed SQLite's in-memory index; PostgreSQL searches `embedding`, and
                // a second copy would push the row past the inline limit (TOAST: every distance
                // of an exact search would decompress it).
                match self.backend() {
                    Backend::Sqlite => {
                        args.push(Arg::from(
                            e.embedding.as_ref().map(|(_, v)| encode_vector(v)),
                        ));
                        (SQLITE_INSERT, args)
                    }
                    Backend::Postgres => {
                        args.push(Arg::OptBlob(None));
                        args.push(Arg::from(
                            e.embedding.as_ref().map(|(_, v)| pgvector_text(v)),
                        ));
                        (PG_INSERT, args)
                    }
                }
            })
            .collect();
        self.write_all(statements).await?;
        Ok(entries.len() as u64)
    }

    async fn cache_touch(&self, company_id: Uuid, entry_id: Uuid) -> StoreResult<()> {
        let at = now();
        // At most once a second per entry: a hot entry costs one write a second, not one a hit.
        self.write_all(vec![(
            concat!(
                "UPDATE cache_entries SET last_used_at = $1 WHERE company_id = $2 AND id = $3",
                " AND (last_used_at IS NULL OR last_used_at < $4)"
            ),
            args![
                fmt_ts(at),
                company_id.to_string(),
                entry_id.to_string(),
                fmt_ts(at - chrono::Duration::seconds(1)),
            ],
        )])
        .await
    }

    async fn cache_flush(&self, company_id: Uuid, agent_id: Option<Uuid>) -> StoreResult<u64> {
        let done = match agent_id {
            Some(agent) => {
                sqlx::query("DELETE FROM cache_entries WHERE company_id = $1 AND agent_id = $2")
                    .bind(company_id.to_string())
                    .bind(agent.to_string())
                    .execute(self.pool())
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM cache_entries WHERE company_id = $1")
                    .bind(company_id.to_string())
                    .execute(self.pool())
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    async fn cache_counts(&self, company_id: Uuid) -> StoreResult<(u64, u64)> {
        let (live, total): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN expires_at > $2 THEN 1 ELSE 0 END), 0), COUNT(*) \
             FROM cache_entries WHERE company_id = $1",
        )
        .bind(company_id.to_string())
        .bind(fmt_ts(now()))
        .fetch_one(self.pool())
        .await?;
        Ok((live.max(0) as u64, total.max(0) as u64))
    }

    async fn cache_sweep(&self, model_id: &str, limit: i64) -> StoreResult<Vec<Removed>> {
        let _writer = self.writer().await;
        let rows = sqlx::query_as::<_, RemovedRow>(concat!(
            "DELETE FROM cache_entries WHERE id IN (SELECT id FROM cache_entries",
            " WHERE expires_at <= $1 LIMIT $2) RETURNING company_id, agent_id, vec_id"
        ))
        .bind(fmt_ts(now()))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let other_models = sqlx::query_as::<_, RemovedRow>(concat!(
            "DELETE FROM cache_entries WHERE id IN (SELECT id FROM cache_entries",
            " WHERE model_id IS NOT NULL AND model_id <> $1 LIMIT $2)",
            " RETURNING company_id, agent_id, vec_id"
        ))
        .bind(model_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .chain(other_models)
            .map(Removed::try_from)
            .collect()
    }

    async fn cache_over_bound(&self, max: i64) -> StoreResult<Vec<(Uuid, Uuid, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(concat!(
            "SELECT company_id, agent_id, COUNT(*) FROM cache_entries",
            " GROUP BY company_id, agent_id HAVING COUNT(*) > $1"
        ))
        .bind(max)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(c, a, n)| Ok((parse_id(&c)?, parse_id(&a)?, n)))
            .collect()
    }

    async fn cache_agent_count(&self, company_id: Uuid, agent_id: Uuid) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM cache_entries WHERE company_id = $1 AND agent_id = $2",
        )
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(n)
    }

    async fn cache_evict(
        &self,
        company_id: Uuid,
        agent_id: Uuid,
        n: i64,
    ) -> StoreResult<Vec<Removed>> {
        let _writer = self.writer().await;
        sqlx::query_as::<_, RemovedRow>(concat!(
            "DELETE FROM cache_entries WHERE id IN (SELECT id FROM cache_entries",
            " WHERE company_id = $1 AND agent_id = $2 ORDER BY last_used_at, created_at LIMIT $3)",
            " RETURNING company_id, agent_id, vec_id"
        ))
        .bind(company_id.to_string())
        .bind(agent_id.to_string())
        .bind(n)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(Removed::try_from)
        .collect()
    }
}
