//! Stage 05: the answer cache, by meaning and never wrong on purpose.
//!
//! A message is looked up first by its normalised text (an index look-up), then by the
//! embedding of its question — the server's default embedding model — among the agent's
//! entries: an in-memory index per agent on SQLite (built from the rows on first use, kept in
//! step by this node, the only one), pgvector on PostgreSQL (shared by every node). A
//! candidate at or above the agent's `cache_threshold` is then checked by the guard
//! ([`super::terms`]): the two questions' numbers, codes, dates, times, weekdays, names and
//! negation must agree, so "Are you open on Friday?" never gets the answer cached for "Are you
//! open on Saturday?".
//!
//! Only answers that used neither the customer's memory nor a tool result are ever stored.
//! Expired entries, entries of a replaced model and agents over `max_entries_per_agent` (least
//! recently used first) are swept in the background every `sweep_seconds`, never on the chat
//! path; neither a lookup nor a store reads more than a few entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use cortex_embed::{Embedder, EmbedderRegistry, GraphPrecision, IndexOptions, VectorIndex};
use uuid::Uuid;

use super::{terms, text};
use crate::store::{Backend, CacheEntry, CacheStore, NewCacheEntry, Removed, SqlStore, StoreError};

/// Nearest entries considered per lookup (the best that passes threshold and guard wins).
const CANDIDATES: usize = 8;
/// How much closer the chosen entry must be than any other whose answer differs: when two
/// entries with different answers are about as close, the question is ambiguous and the
/// model answers it (an embedding that sees every question of a language as alike — an
/// English model reading Arabic — makes this the common case; see BENCHMARKS.md).
const MARGIN: f32 = 0.05;
/// Removals applied to an agent's index under one hold of its lock.
const REMOVE_CHUNK: usize = 1000;
/// Expired entries deleted per sweep statement.
const SWEEP_BATCH: i64 = 5000;

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("embedding the question: {0}")]
    Embed(String),
    #[error("cache index: {0}")]
    Index(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The hit among `candidates` (most similar first): the most similar entry at or above
/// `threshold` whose specific terms agree with the message's, unless another entry that also
/// agrees but answers differently is within [`MARGIN`] of it.
fn choose(
    message: &str,
    candidates: Vec<(CacheEntry, f32)>,
    threshold: f32,
) -> Option<(Hit, Uuid)> {
    if candidates.is_empty() {
        return None;
    }
    let asked = terms::terms(message);
    let mut agreeing = candidates
        .into_iter()
        .filter(|(entry, _)| terms::terms(&entry.question).agree(&asked));
    let (entry, similarity) = agreeing.next()?;
    if similarity < threshold {
        return None;
    }
    let answer = text::normalize(&entry.answer);
    let rival = agreeing.find(|(other, _)| text::normalize(&other.answer) != answer);
    if let Some((_, close)) = rival
        && similarity - close < MARGIN
    {
        return None;
    }
    let id = entry.id;
    let hit = Hit {
        answer: entry.answer,
        question: entry.question,
        similarity,
    };
    Some((hit, id))
}

/// The answer cache of every agent served by this node.
pub struct AnswerCache {
    embedder: Arc<dyn Embedder>,
    /// SQLite: the agents' in-memory indexes. `None` on PostgreSQL (pgvector).
    indexes: Option<Mutex<AgentIndexes>>,
    /// Entries kept per agent ([`AnswerCache::with_max_entries`]; unbounded by default).
    max_entries: usize,
    /// Entries this node stored per agent since it last checked the agent against the bound.
    unchecked: Mutex<HashMap<(Uuid, Uuid), usize>>,
}

/// The in-memory indexes by (company, agent).
type AgentIndexes = HashMap<(Uuid, Uuid), Arc<AgentIndex>>;

/// One agent's in-memory index, built from its rows on first use.
#[derive(Default)]
struct AgentIndex {
    built: tokio::sync::OnceCell<RwLock<VectorIndex>>,
    /// While the HNSW graph of a large agent is built in the background (an exact index serves
    /// meanwhile): the changes made since its rows were read, replayed onto it before it
    /// replaces the exact one.
    pending: Mutex<Option<Vec<Op>>>,
}

/// A change to an agent's index.
#[derive(Clone)]
enum Op {
    Add(u64, Vec<f32>),
    Remove(u64),
}

/// A hit: the answer, and the entry it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub answer: String,
    pub question: String,
    /// Cosine similarity of the questions (1 for an exact match).
    pub similarity: f32,
}

impl AnswerCache {
    pub fn new(registry: &EmbedderRegistry, backend: Backend) -> Self {
        Self {
            embedder: registry.default_embedder(),
            indexes: (backend == Backend::Sqlite).then(|| Mutex::new(HashMap::new())),
            max_entries: usize::MAX,
            unchecked: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps at most about `max` entries per agent: besides the periodic sweep, every
    /// `max / 10` entries this node stores for an agent, the agent is counted and its least
    /// recently used entries over the bound are evicted. An agent filled at a thousand answers
    /// a second would otherwise outgrow the bound sixfold between two sweeps of a minute, and
    /// its graph (and every store into it) with it.
    #[must_use]
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.max(1);
        self
    }

    /// The model id every entry's vector is compared under.
    pub fn model_id(&self) -> &str {
        self.embedder.model_id()
    }

    /// Embeds a question with the cache's model.
    pub async fn embed(&self, question: &str) -> Result<Vec<f32>, CacheError> {
        self.embedder
            .embed_query(question)
            .await
            .map_err(|e| CacheError::Embed(e.to_string()))
    }

    /// The cached answer for `message`, if an entry asks the same thing.
    pub async fn lookup(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        agent_id: Uuid,
        message: &str,
        threshold: f32,
    ) -> Result<Option<(Hit, Uuid)>, CacheError> {
        let normalized = text::normalize(message);
        if let Some(entry) = store
            .cache_lookup(company_id, agent_id, &normalized)
            .await?
        {
            let hit = Hit {
                answer: entry.answer,
                question: entry.question,
                similarity: 1.0,
            };
            return Ok(Some((hit, entry.id)));
        }
        let query = self.embed(message).await?;
        // Candidates a little below the threshold are read too: they can make a hit ambiguous.
        let candidates = self
            .nearest(store, company_id, agent_id, &query, threshold - MARGIN)
            .await?;
        Ok(choose(message, candidates, threshold))
    }

    /// Live entries at or above `threshold`, most similar first.
    async fn nearest(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        agent_id: Uuid,
        query: &[f32],
        threshold: f32,
    ) -> Result<Vec<(CacheEntry, f32)>, CacheError> {
        let mut found = match &self.indexes {
            None => {
                store
                    .cache_nearest(
                        company_id,
                        agent_id,
                        self.model_id(),
                        query,
                        CANDIDATES as i64,
                    )
                    .await?
            }
            Some(_) => {
                let agent = self.agent_index(store, company_id, agent_id).await?;
                let scored = agent
                    .read(|index| index.search(query, CANDIDATES))
                    .unwrap_or(Ok(Vec::new()))
                    .map_err(|e| CacheError::Index(e.to_string()))?;
                let close: Vec<(u64, f32)> = scored
                    .into_iter()
                    .filter(|(_, s)| *s >= threshold)
                    .collect();
                if close.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<u64> = close.iter().map(|(id, _)| *id).collect();
                let rows = store.cache_by_vec_ids(company_id, agent_id, &ids).await?;
                close
                    .iter()
                    .filter_map(|(id, s)| {
                        rows.iter()
                            .find(|r| r.vec_id == Some(*id))
                            .map(|r| (r.clone(), *s))
                    })
                    .collect()
            }
        };
        found.retain(|(_, s)| *s >= threshold);
        found.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(found)
    }

    /// The agent's in-memory index (SQLite), built from its rows the first time.
    async fn agent_index(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        agent_id: Uuid,
    ) -> Result<Arc<AgentIndex>, CacheError> {
        let Some(indexes) = &self.indexes else {
            return Err(CacheError::Index(
                "no in-memory index on this backend".into(),
            ));
        };
        let agent = {
            let mut map = indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(map.entry((company_id, agent_id)).or_default())
        };
        let dimension = self.embedder.dimension();
        let model_id = self.model_id().to_owned();
        let building = Arc::clone(&agent);
        agent
            .built
            .get_or_try_init(|| async move {
                let rows = store.cache_vectors(company_id, agent_id, &model_id).await?;
                tracing::debug!(%agent_id, entries = rows.len(), "building the agent's cache index");
                let large = rows.len() > index_options().exact_threshold;
                // A large agent is served by an exact index at once (a copy of the vectors)
                // while its graph is built in the background: a first lookup after a restart
                // never waits for a graph of 100,000 entries (a minute and more).
                let options = if large {
                    IndexOptions {
                        exact_threshold: usize::MAX,
                        ..index_options()
                    }
                } else {
                    index_options()
                };
                let rows = Arc::new(rows);
                let for_exact = Arc::clone(&rows);
                let built = tokio::task::spawn_blocking(move || {
                    VectorIndex::rebuild(
                        dimension,
                        options,
                        for_exact.iter().map(|(id, v)| (*id, v.as_slice())),
                    )
                })
                .await
                .map_err(|e| CacheError::Index(e.to_string()))?
                .map_err(|e| CacheError::Index(e.to_string()))?;
                if large {
                    *building.pending_ops() = Some(Vec::new());
                    building.build_graph_in_background(dimension, index_options(), rows);
                }
                Ok::<_, CacheError>(RwLock::new(built))
            })
            .await?;
        Ok(agent)
    }

    /// Stores answered questions for `ttl`; returns how many. Each question is embedded; on
    /// SQLite the agent's index takes the new vectors after the rows are committed.
    pub async fn store(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        agent_id: Uuid,
        pairs: &[(String, String)],
        ttl: chrono::Duration,
    ) -> Result<u64, CacheError> {
        let questions: Vec<String> = pairs.iter().map(|(q, _)| q.clone()).collect();
        let vectors = if questions.is_empty() {
            Vec::new()
        } else {
            // Questions are compared with questions: both sides are queries (and a question
            // just looked up is not embedded again).
            self.embedder
                .embed_queries(&questions)
                .await
                .map_err(|e| CacheError::Embed(e.to_string()))?
        };
        let entries: Vec<NewCacheEntry> = pairs
            .iter()
            .zip(vectors)
            .map(|((q, a), v)| NewCacheEntry {
                question: q.clone(),
                normalized: text::normalize(q),
                answer: a.clone(),
                vec_id: rand::random::<u64>() >> 1,
                embedding: Some((self.model_id().to_owned(), v)),
            })
            .collect();
        let stored = store
            .cache_put_many(company_id, agent_id, &entries, crate::store::now() + ttl)
            .await?;
        if self.indexes.is_some() {
            let agent = self.agent_index(store, company_id, agent_id).await?;
            agent
                .apply(
                    entries
                        .iter()
                        .filter_map(|e| {
                            e.embedding
                                .as_ref()
                                .map(|(_, v)| Op::Add(e.vec_id, v.clone()))
                        })
                        .collect(),
                )
                .map_err(|e| CacheError::Index(e.to_string()))?;
        }
        // The entries are stored: a failed bound check is the sweep's to make up, not an error
        // of the store.
        if let Err(e) = self.bound(store, company_id, agent_id, entries.len()).await {
            tracing::warn!(error = %e, %agent_id, "cache bound not checked: left to the sweep");
        }
        Ok(stored)
    }

    /// After `added` entries were stored for the agent: every `max_entries / 10` of them, its
    /// least recently used entries over the bound are evicted (see
    /// [`AnswerCache::with_max_entries`]).
    async fn bound(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        agent_id: Uuid,
        added: usize,
    ) -> Result<(), CacheError> {
        if self.max_entries == usize::MAX {
            return Ok(());
        }
        let every = (self.max_entries / 10).max(1);
        let due = {
            let mut unchecked = self
                .unchecked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = unchecked.entry((company_id, agent_id)).or_default();
            *n += added;
            // Reset by the one store that crosses the step: one check at a time per agent.
            let due = *n >= every;
            if due {
                *n = 0;
            }
            due
        };
        if !due {
            return Ok(());
        }
        let count = store.cache_agent_count(company_id, agent_id).await?;
        let max = self.max_entries as i64;
        if count > max {
            let removed = store.cache_evict(company_id, agent_id, count - max).await?;
            self.forget(&removed).await;
        }
        Ok(())
    }

    /// Deletes the company's entries (of one agent, or all) and forgets their indexes.
    pub async fn flush(
        &self,
        store: &SqlStore,
        company_id: Uuid,
        agent_id: Option<Uuid>,
    ) -> Result<u64, CacheError> {
        let deleted = store.cache_flush(company_id, agent_id).await?;
        if let Some(indexes) = &self.indexes {
            let mut map = indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.retain(|(c, a), _| *c != company_id || agent_id.is_some_and(|id| id != *a));
        }
        Ok(deleted)
    }

    /// One background sweep: expired entries, entries of another model, agents over the bound
    /// (their least recently used). Returns how many entries were deleted.
    pub async fn sweep(&self, store: &SqlStore, max_entries: usize) -> Result<u64, CacheError> {
        let mut removed = Vec::new();
        loop {
            let batch = store.cache_sweep(self.model_id(), SWEEP_BATCH).await?;
            let done = (batch.len() as i64) < SWEEP_BATCH;
            removed.extend(batch);
            if done {
                break;
            }
        }
        let max = max_entries as i64;
        for (company_id, agent_id, count) in store.cache_over_bound(max).await? {
            removed.extend(store.cache_evict(company_id, agent_id, count - max).await?);
        }
        self.forget(&removed).await;
        Ok(removed.len() as u64)
    }

    /// Removes deleted entries from the in-memory indexes that hold them: per agent, off the
    /// async runtime, a thousand at a time (lookups of the agent wait for one chunk, never for
    /// a whole sweep), then a rebuild of the graph in the background when deletions fill a
    /// quarter of it. Rebuilt inline, under the lock, a sweep that evicted 20,000 entries held
    /// every chat of the node for 40 s.
    async fn forget(&self, removed: &[Removed]) {
        let Some(indexes) = &self.indexes else {
            return;
        };
        let mut by_agent: HashMap<(Uuid, Uuid), Vec<Op>> = HashMap::new();
        for r in removed {
            if let Some(vec_id) = r.vec_id {
                by_agent
                    .entry((r.company_id, r.agent_id))
                    .or_default()
                    .push(Op::Remove(vec_id));
            }
        }
        let agents: Vec<(Arc<AgentIndex>, Vec<Op>)> = {
            let map = indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            by_agent
                .into_iter()
                .filter_map(|(key, ops)| map.get(&key).map(|a| (Arc::clone(a), ops)))
                .collect()
        };
        for (agent, ops) in agents {
            let removal = tokio::task::spawn_blocking(move || {
                for chunk in ops.chunks(REMOVE_CHUNK) {
                    if let Err(e) = agent.apply(chunk.to_vec()) {
                        tracing::warn!(error = %e, "cache index: removal failed");
                    }
                }
                agent.compact_in_background();
            });
            if let Err(e) = removal.await {
                tracing::warn!(error = %e, "cache index: removal task failed");
            }
        }
    }
}

impl AgentIndex {
    /// Applies `f` if the index is built.
    fn read<R>(&self, f: impl FnOnce(&VectorIndex) -> R) -> Option<R> {
        self.built.get().map(|lock| {
            f(&lock
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner))
        })
    }

    fn pending_ops(&self) -> std::sync::MutexGuard<'_, Option<Vec<Op>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies changes if the index is built (an unbuilt one is built from the rows later),
    /// and records them while a graph is being built.
    fn apply(&self, ops: Vec<Op>) -> Result<(), cortex_embed::IndexError> {
        let Some(lock) = self.built.get() else {
            return Ok(());
        };
        let mut pending = self.pending_ops();
        let mut index = lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for op in &ops {
            apply(&mut index, op)?;
        }
        if let Some(p) = pending.as_mut() {
            p.extend(ops);
        }
        Ok(())
    }

    /// Rebuilds the graph in the background when deletions fill a quarter of it (the rows are
    /// copied under the read lock; changes made meanwhile are replayed onto the new graph).
    fn compact_in_background(self: &Arc<Self>) {
        let Some(lock) = self.built.get() else {
            return;
        };
        let (rows, options, dimension) = {
            let mut pending = self.pending_ops();
            if pending.is_some() {
                return; // a build is already under way
            }
            let index = lock
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !index.needs_compaction() {
                return;
            }
            let rows: Vec<(u64, Vec<f32>)> = index
                .ids()
                .iter()
                .filter_map(|id| index.get(*id).map(|v| (*id, v.to_vec())))
                .collect();
            *pending = Some(Vec::new());
            (rows, index.options().clone(), index.dimension())
        };
        Arc::clone(self).build_graph_in_background(dimension, options, Arc::new(rows));
    }

    /// Builds a graph of `rows` on the blocking pool and puts it in place of the current index
    /// ([`AgentIndex::replace_with`]); the caller has started recording changes in `pending`.
    /// On failure the current index stays and the recording stops.
    fn build_graph_in_background(
        self: Arc<Self>,
        dimension: usize,
        options: IndexOptions,
        rows: Arc<Vec<(u64, Vec<f32>)>>,
    ) {
        tokio::task::spawn_blocking(move || {
            let graph = VectorIndex::rebuild(
                dimension,
                options,
                rows.iter().map(|(id, v)| (*id, v.as_slice())),
            );
            match graph {
                Ok(graph) => self.replace_with(graph),
                Err(e) => {
                    tracing::warn!(error = %e, "cache index graph not built: the current index stays");
                    *self.pending_ops() = None;
                }
            }
        });
    }

    /// Puts the graph built in the background in place of the exact index, after replaying
    /// the changes made meanwhile.
    fn replace_with(&self, mut graph: VectorIndex) {
        // The exact index is put in place just after this build starts; wait for it (briefly).
        for _ in 0..600 {
            if self.built.get().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let Some(lock) = self.built.get() else {
            *self.pending_ops() = None;
            return;
        };
        // Catch up outside the index's lock while changes keep coming (a store inserts into the
        // graph in about a millisecond: thousands replayed under the lock would hold lookups).
        loop {
            let batch = match self.pending_ops().as_mut() {
                Some(ops) if ops.len() > 64 => std::mem::take(ops),
                _ => break,
            };
            for op in &batch {
                if let Err(e) = apply(&mut graph, op) {
                    tracing::warn!(error = %e, "cache index graph not used: exact search stays");
                    *self.pending_ops() = None;
                    return;
                }
            }
        }
        let mut pending = self.pending_ops();
        let mut index = lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for op in pending.take().unwrap_or_default() {
            if let Err(e) = apply(&mut graph, &op) {
                tracing::warn!(error = %e, "cache index graph not used: exact search stays");
                return;
            }
        }
        *index = graph;
    }
}

fn apply(index: &mut VectorIndex, op: &Op) -> Result<(), cortex_embed::IndexError> {
    match op {
        Op::Add(id, v) => index.add(*id, v),
        Op::Remove(id) => index.remove(*id).map(drop),
    }
}

/// Runs [`AnswerCache::sweep`] every `cache.sweep_seconds` until shutdown.
pub fn spawn_sweeper(state: &crate::state::AppState) {
    let st = state.clone();
    state.tasks.spawn(async move {
        let every = std::time::Duration::from_secs(st.config.cache.sweep_seconds);
        loop {
            tokio::select! {
                () = st.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match st
                .cache
                .sweep(&st.store, st.config.cache.max_entries_per_agent)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(entries = n, "answer cache swept"),
                Err(e) => tracing::warn!(error = %e, "answer cache sweep failed"),
            }
        }
    });
}

/// Pre-warm an agent's cache: every pair with a non-empty question and answer is stored (in
/// one transaction); returns `(stored, errored)`.
pub async fn warm(
    cache: &AnswerCache,
    store: &SqlStore,
    company_id: Uuid,
    agent_id: Uuid,
    pairs: &[(String, String)],
    ttl: chrono::Duration,
) -> Result<(u64, u64), CacheError> {
    let valid: Vec<(String, String)> = pairs
        .iter()
        .filter_map(|(q, a)| {
            let (q, a) = (q.trim(), a.trim());
            (!text::normalize(q).is_empty() && !a.is_empty()).then(|| (q.to_owned(), a.to_owned()))
        })
        .collect();
    let errored = (pairs.len() - valid.len()) as u64;
    let stored = cache
        .store(store, company_id, agent_id, &valid, ttl)
        .await?;
    Ok((stored, errored))
}

/// A knowledge source changed: drop the cached answers of every agent that searches it, so no
/// answer outlives the knowledge it was drawn from. Returns how many entries were dropped.
pub async fn invalidate_for_source(
    cache: &AnswerCache,
    store: &SqlStore,
    company_id: Uuid,
    source_id: Uuid,
) -> Result<u64, CacheError> {
    use crate::store::AgentStore;
    const PAGE: i64 = 200;
    let mut dropped = 0;
    let mut offset = 0;
    loop {
        let page = store.list_agents(company_id, PAGE, offset).await?;
        for agent in &page.items {
            if agent.spec.knowledge_source_ids.contains(&source_id) {
                dropped += cache.flush(store, company_id, Some(agent.id)).await?;
            }
        }
        offset += PAGE;
        if page.items.len() < PAGE as usize {
            return Ok(dropped);
        }
    }
}

/// The in-memory index of one agent: exact up to 2,000 entries (a fraction of a millisecond),
/// HNSW above, so a lookup among 100,000 entries stays well under a millisecond.
fn index_options() -> IndexOptions {
    IndexOptions {
        exact_threshold: 2000,
        build_threads: 1,
        // Rebuilt in the background by the sweep, never under the agent's lock.
        auto_compact: false,
        // The graph walks 8-bit copies (a quarter of the bytes per distance, integer dot
        // products) and the candidates are scored again in f32: a store's insertion and a
        // lookup's search cost about half of the f32 graph's (BENCHMARKS.md, "Answer cache").
        precision: GraphPrecision::I8,
        ..IndexOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(question: &str, answer: &str) -> CacheEntry {
        CacheEntry {
            id: Uuid::now_v7(),
            vec_id: Some(1),
            question: question.into(),
            answer: answer.into(),
            last_used_at: chrono::Utc::now(),
        }
    }

    fn chosen(message: &str, candidates: &[(CacheEntry, f32)], threshold: f32) -> Option<String> {
        choose(message, candidates.to_vec(), threshold).map(|(hit, _)| hit.answer)
    }

    #[test]
    fn an_ambiguous_hit_is_a_miss() {
        let hours = entry("What are your opening hours?", "9 to 5.");
        let holiday = entry("How late are you open?", "Until late.");
        let asked = "When are you open?";
        // Clearly closer to one entry: its answer.
        let clear = [(hours.clone(), 0.90), (holiday.clone(), 0.80)];
        assert_eq!(chosen(asked, &clear, 0.75).as_deref(), Some("9 to 5."));
        // About as close to two entries that answer differently: the model answers.
        let ambiguous = [(hours.clone(), 0.90), (holiday.clone(), 0.87)];
        assert_eq!(chosen(asked, &ambiguous, 0.75), None);
        // A rival just below the threshold counts too.
        let below = [(hours.clone(), 0.76), (holiday.clone(), 0.73)];
        assert_eq!(chosen(asked, &below, 0.75), None);
        // Two entries with the same answer are no rivals.
        let same = [
            (hours.clone(), 0.90),
            (entry("When do you open?", " 9 TO 5. "), 0.89),
        ];
        assert_eq!(chosen(asked, &same, 0.75).as_deref(), Some("9 to 5."));
        // Nor is an entry the guard refuses (it asks about another day).
        let friday = entry("Are you open on Friday?", "Only in the morning.");
        let saturday = entry("Are you open on Saturday?", "No.");
        let day = [(friday, 0.93), (saturday, 0.92)];
        assert_eq!(
            chosen("Are you open on Friday?", &day, 0.75).as_deref(),
            Some("Only in the morning.")
        );
        // Nothing at the threshold: a miss.
        assert_eq!(chosen(asked, &[(hours, 0.74)], 0.75), None);
    }
}
