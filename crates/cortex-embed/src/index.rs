//! An in-process nearest-neighbour index: exact below a threshold, HNSW (usearch) above.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use usearch::{Index as HnswIndex, MetricKind, ScalarKind};

use crate::IndexError;
use crate::vector::{dot, l2_normalize};

const MAGIC: &[u8; 8] = b"CXVIDX01";
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8;
/// Below `exact_threshold / HNSW_DROP_DIVISOR` vectors the HNSW graph is dropped again.
const HNSW_DROP_DIVISOR: usize = 2;

/// Tuning of a [`VectorIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// From this many vectors on, searches use the HNSW graph; below it they are exact
    /// (a brute-force dot product over contiguous memory). Default 20 000, where exact
    /// search of 384-d vectors costs about 2–4 ms. Once built, the graph is kept until the
    /// index shrinks below half the threshold.
    pub exact_threshold: usize,
    /// HNSW connectivity (`M`, edges per node). Default 16.
    pub connectivity: usize,
    /// HNSW `ef_construction`. Default 128.
    pub expansion_add: usize,
    /// HNSW `ef_search` (raised to `k` when `k` is larger). Default 64.
    pub expansion_search: usize,
    /// Threads used to build the graph in bulk (default: available parallelism).
    pub build_threads: usize,
    /// Whether a removal that leaves a quarter of the graph's slots deleted rebuilds the graph
    /// there and then (default). An owner that must not hold its lock for a rebuild turns it
    /// off and rebuilds elsewhere when [`VectorIndex::needs_compaction`] says so.
    pub auto_compact: bool,
    /// The precision of the graph's own copy of the vectors (default f32). Below f32 the
    /// graph is walked on the narrower copy and the candidates it returns are scored again
    /// exactly against the f32 vectors: similarities are always exact, only which vectors
    /// are found is approximate (as with any HNSW search).
    pub precision: GraphPrecision,
}

/// The precision of an HNSW graph's vectors ([`IndexOptions::precision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphPrecision {
    /// 32-bit floats: the graph's distances are the similarities.
    #[default]
    F32,
    /// bfloat16: half the memory and, where the CPU has bf16 dot products (AVX-512 BF16),
    /// a fraction of the time per distance; candidates are scored again in f32.
    BF16,
    /// 8-bit integers (each vector scaled to ±127, compared by cosine): a quarter of the
    /// memory; candidates are scored again in f32.
    I8,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            exact_threshold: 20_000,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
            build_threads: std::thread::available_parallelism()
                .map(std::num::NonZeroUsize::get)
                .unwrap_or(1),
            auto_compact: true,
            precision: GraphPrecision::F32,
        }
    }
}

struct Hnsw {
    index: HnswIndex,
    /// Deleted slots not yet taken by a new vector (usearch reuses them on insertion).
    removed: usize,
}

/// A nearest-neighbour index of `u64` ids to vectors of one dimension, by cosine similarity.
///
/// Vectors are L2-normalised on insertion (and queries at search time), so similarities are
/// dot products in `[-1, 1]`. All vectors live in one contiguous buffer; below
/// [`IndexOptions::exact_threshold`] a search scans them exactly, above it an HNSW graph
/// (usearch, f32, inner product) answers approximately. The graph is built in bulk with
/// several threads when the threshold is crossed, updated incrementally afterwards, and
/// rebuilt when a quarter of it is deleted.
///
/// [`VectorIndex::save`] writes the vectors (and the graph, when there is one) to disk;
/// [`VectorIndex::load`] reads them back and rebuilds the graph if its file is missing or
/// does not match. [`VectorIndex::rebuild`] creates an index from `(id, vector)` rows, e.g.
/// from the database.
///
/// Mutations take `&mut self`; wrap the index in a lock to share it (see
/// [`crate::Collections`]). Searches are CPU-bound: call them from `spawn_blocking` when the
/// index is large.
pub struct VectorIndex {
    dim: usize,
    options: IndexOptions,
    ids: Vec<u64>,
    data: Vec<f32>,
    positions: HashMap<u64, usize>,
    hnsw: Option<Hnsw>,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dimension", &self.dim)
            .field("len", &self.ids.len())
            .field("approximate", &self.hnsw.is_some())
            .field("options", &self.options)
            .finish()
    }
}

/// A score that orders by `f32::total_cmp` (ties broken by row, for determinism).
#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, usize);

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

fn backend(e: impl std::fmt::Display) -> IndexError {
    IndexError::Backend(e.to_string())
}

impl VectorIndex {
    /// An empty index of `dimension` with default options.
    pub fn new(dimension: usize) -> Result<Self, IndexError> {
        Self::with_options(dimension, IndexOptions::default())
    }

    /// An empty index of `dimension` with the given options.
    pub fn with_options(dimension: usize, options: IndexOptions) -> Result<Self, IndexError> {
        if dimension == 0 {
            return Err(IndexError::InvalidVector(
                "dimension must be positive".to_owned(),
            ));
        }
        Ok(Self {
            dim: dimension,
            options,
            ids: Vec::new(),
            data: Vec::new(),
            positions: HashMap::new(),
            hnsw: None,
        })
    }

    /// Builds an index from `(id, vector)` rows (later rows replace earlier ones with the same
    /// id). This is the rebuild path from the database.
    pub fn rebuild<I, V>(
        dimension: usize,
        options: IndexOptions,
        rows: I,
    ) -> Result<Self, IndexError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]>,
    {
        let mut index = Self::with_options(dimension, options)?;
        index.add_batch(rows)?;
        Ok(index)
    }

    /// The dimension of every vector.
    #[must_use]
    pub fn dimension(&self) -> usize {
        self.dim
    }

    /// The options in force.
    #[must_use]
    pub fn options(&self) -> &IndexOptions {
        &self.options
    }

    /// Number of vectors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the index holds no vector.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether `id` is in the index.
    #[must_use]
    pub fn contains(&self, id: u64) -> bool {
        self.positions.contains_key(&id)
    }

    /// Whether searches currently go through the HNSW graph (approximate).
    #[must_use]
    pub fn is_approximate(&self) -> bool {
        self.hnsw.is_some()
    }

    /// The ids in the index, in storage order.
    #[must_use]
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The stored (normalised) vector of `id`.
    #[must_use]
    pub fn get(&self, id: u64) -> Option<&[f32]> {
        self.positions.get(&id).map(|&row| self.row(row))
    }

    /// Changes HNSW `ef_search` for later searches.
    pub fn set_expansion_search(&mut self, ef: usize) {
        self.options.expansion_search = ef.max(1);
        if let Some(h) = &self.hnsw {
            h.index
                .change_expansion_search(self.options.expansion_search);
        }
    }

    fn row(&self, row: usize) -> &[f32] {
        &self.data[row * self.dim..(row + 1) * self.dim]
    }

    fn prepare(&self, vector: &[f32]) -> Result<Vec<f32>, IndexError> {
        if vector.len() != self.dim {
            return Err(IndexError::DimensionMismatch {
                expected: self.dim,
                actual: vector.len(),
            });
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(IndexError::InvalidVector(
                "vector contains NaN or infinity".to_owned(),
            ));
        }
        let mut v = vector.to_vec();
        l2_normalize(&mut v);
        Ok(v)
    }

    /// Stores `v` (already prepared) in the flat buffer; returns whether it replaced a row.
    fn store(&mut self, id: u64, v: &[f32]) -> bool {
        match self.positions.get(&id) {
            Some(&row) => {
                self.data[row * self.dim..(row + 1) * self.dim].copy_from_slice(v);
                true
            }
            None => {
                self.positions.insert(id, self.ids.len());
                self.ids.push(id);
                self.data.extend_from_slice(v);
                false
            }
        }
    }

    /// Inserts or replaces the vector of `id`.
    ///
    /// A vector of the wrong dimension is [`IndexError::DimensionMismatch`]; NaN or infinite
    /// components are [`IndexError::InvalidVector`].
    pub fn add(&mut self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        let v = self.prepare(vector)?;
        let replaced = self.store(id, &v);
        if let Some(h) = &mut self.hnsw {
            if replaced {
                h.index.remove(id).map_err(backend)?;
                h.removed += 1;
            }
            let size = h.index.size();
            if size + 1 > h.index.capacity() {
                h.index
                    .reserve((size + 1).max(h.index.capacity() * 2).max(1024))
                    .map_err(backend)?;
            }
            h.index.add(id, &v).map_err(backend)?;
            // usearch puts a new vector in a deleted slot when there is one.
            h.removed = h.removed.saturating_sub(1);
        } else if self.ids.len() >= self.options.exact_threshold {
            self.build_hnsw()?;
        }
        self.maybe_compact()
    }

    /// Inserts or replaces many vectors; the graph, if any is needed, is built or extended
    /// with [`IndexOptions::build_threads`] threads. Every row is validated before any is
    /// stored, so an error leaves the index unchanged.
    pub fn add_batch<I, V>(&mut self, rows: I) -> Result<(), IndexError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]>,
    {
        let mut prepared: Vec<(u64, Vec<f32>)> = Vec::new();
        for (id, v) in rows {
            prepared.push((id, self.prepare(v.as_ref())?));
        }
        let mut replaced = Vec::new();
        for (id, v) in &prepared {
            if self.store(*id, v) {
                replaced.push(*id);
            }
        }
        if self.hnsw.is_none() {
            if self.ids.len() >= self.options.exact_threshold {
                self.build_hnsw()?;
            }
            return Ok(());
        }
        // Extend the existing graph. Ids added twice in this batch keep their last vector,
        // which `store` already put in the flat buffer: add each id once, from there.
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<u64> = prepared
            .iter()
            .rev()
            .filter(|(id, _)| seen.insert(*id))
            .map(|(id, _)| *id)
            .collect();
        if let Some(h) = &mut self.hnsw {
            for id in replaced.iter().filter(|id| h.index.contains(**id)) {
                h.index.remove(*id).map_err(backend)?;
                h.removed += 1;
            }
            let needed = h.index.size() + fresh.len();
            let threads = self.options.build_threads.max(1);
            h.index
                .reserve_capacity_and_threads(needed.max(h.index.capacity()), threads)
                .map_err(backend)?;
            let rows: Vec<usize> = fresh
                .iter()
                .filter_map(|id| self.positions.get(id).copied())
                .collect();
            parallel_add(&h.index, &self.ids, &self.data, self.dim, &rows, threads)?;
            h.removed = h.removed.saturating_sub(rows.len());
        }
        self.maybe_compact()
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: u64) -> Result<bool, IndexError> {
        let Some(row) = self.positions.remove(&id) else {
            return Ok(false);
        };
        let last = self.ids.len() - 1;
        if row != last {
            let moved = self.ids[last];
            self.ids.swap(row, last);
            let (head, tail) = self.data.split_at_mut(last * self.dim);
            head[row * self.dim..(row + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.positions.insert(moved, row);
        }
        self.ids.pop();
        self.data.truncate(last * self.dim);
        if let Some(h) = &mut self.hnsw {
            h.index.remove(id).map_err(backend)?;
            h.removed += 1;
        }
        if self.hnsw.is_some() && self.ids.len() < self.options.exact_threshold / HNSW_DROP_DIVISOR
        {
            self.hnsw = None;
        }
        self.maybe_compact()?;
        Ok(true)
    }

    /// Whether a quarter of the graph's slots are deletions (it searches worse and holds
    /// memory for nothing): a rebuild ([`VectorIndex::rebuild`] from its rows) is due.
    #[must_use]
    pub fn needs_compaction(&self) -> bool {
        self.hnsw
            .as_ref()
            .is_some_and(|h| h.removed > 1000 && h.removed * 4 > self.ids.len())
    }

    /// Rebuilds the graph once a quarter of its slots are deletions (with `auto_compact`).
    fn maybe_compact(&mut self) -> Result<(), IndexError> {
        if self.options.auto_compact && self.needs_compaction() {
            self.build_hnsw()?;
        }
        Ok(())
    }

    fn new_hnsw(&self) -> Result<HnswIndex, IndexError> {
        let (metric, quantization) = match self.options.precision {
            GraphPrecision::F32 => (MetricKind::IP, ScalarKind::F32),
            GraphPrecision::BF16 => (MetricKind::IP, ScalarKind::BF16),
            // usearch scales each vector to ±127 by its own magnitude: compared by cosine.
            GraphPrecision::I8 => (MetricKind::Cos, ScalarKind::I8),
        };
        let opts = usearch::IndexOptions {
            dimensions: self.dim,
            metric,
            quantization,
            connectivity: self.options.connectivity,
            expansion_add: self.options.expansion_add,
            expansion_search: self.options.expansion_search,
            multi: false,
        };
        HnswIndex::new(&opts).map_err(backend)
    }

    /// (Re)builds the HNSW graph from every stored vector, in parallel.
    fn build_hnsw(&mut self) -> Result<(), IndexError> {
        let index = self.new_hnsw()?;
        let threads = self.options.build_threads.max(1);
        index
            .reserve_capacity_and_threads(self.ids.len().max(1024), threads)
            .map_err(backend)?;
        let rows: Vec<usize> = (0..self.ids.len()).collect();
        parallel_add(&index, &self.ids, &self.data, self.dim, &rows, threads)?;
        self.hnsw = Some(Hnsw { index, removed: 0 });
        Ok(())
    }

    /// The `k` most similar vectors to `query`, best first, as `(id, cosine similarity)`.
    ///
    /// Exact below the threshold, approximate (HNSW) above it.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, IndexError> {
        self.search_filtered(query, k, |_| true)
    }

    /// Like [`VectorIndex::search`], keeping only ids for which `filter` is true.
    pub fn search_filtered<F>(
        &self,
        query: &[f32],
        k: usize,
        filter: F,
    ) -> Result<Vec<(u64, f32)>, IndexError>
    where
        F: Fn(u64) -> bool,
    {
        let q = self.prepare(query)?;
        if k == 0 || self.ids.is_empty() {
            return Ok(Vec::new());
        }
        let Some(h) = &self.hnsw else {
            return Ok(self.exact_prepared(&q, k, &filter));
        };
        // A narrower graph is asked for twice the candidates (the order of close ones may
        // differ in the narrow copy), each scored again exactly; an f32 graph's distances are
        // the similarities. usearch raises ef_search to the count by itself when it is larger.
        let narrow = self.options.precision != GraphPrecision::F32;
        let wanted = if narrow { k.saturating_mul(2) } else { k };
        let matches = h
            .index
            .filtered_search(&q, wanted, filter)
            .map_err(backend)?;
        let mut out: Vec<(u64, f32)> = matches
            .keys
            .iter()
            .zip(&matches.distances)
            .filter_map(|(key, d)| {
                let row = *self.positions.get(key)?;
                Some((
                    *key,
                    if narrow {
                        dot(&q, self.row(row))
                    } else {
                        1.0 - d
                    },
                ))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(k);
        Ok(out)
    }

    /// The exact `k` most similar vectors (brute force), whatever the index size.
    pub fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, IndexError> {
        let q = self.prepare(query)?;
        Ok(self.exact_prepared(&q, k, &|_| true))
    }

    fn exact_prepared(&self, q: &[f32], k: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        if k == 0 {
            return Vec::new();
        }
        let mut heap: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(k + 1);
        for (row, v) in self.data.chunks_exact(self.dim).enumerate() {
            let s = dot(q, v);
            if heap.len() == k {
                if let Some(Reverse(min)) = heap.peek()
                    && s <= min.0
                {
                    continue;
                }
                if !filter(self.ids[row]) {
                    continue;
                }
                heap.pop();
            } else if !filter(self.ids[row]) {
                continue;
            }
            heap.push(Reverse(Scored(s, row)));
        }
        let mut out: Vec<Scored> = heap.into_iter().map(|Reverse(s)| s).collect();
        out.sort_by(|a, b| b.cmp(a));
        out.into_iter().map(|s| (self.ids[s.1], s.0)).collect()
    }

    /// Writes the index to `path` (vectors and ids) and, when the HNSW graph exists, to a
    /// sibling file `{path}.hnsw.{generation}`. Files are written under temporary names and
    /// renamed, so a crash leaves the previous version readable.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), IndexError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| IndexError::io(parent, e))?;
        }
        let generation = new_generation();
        let graph_path = graph_file(path, generation);
        let has_graph = if let Some(h) = &self.hnsw {
            let tmp = with_suffix(&graph_path, ".tmp");
            let tmp_str = tmp.to_str().ok_or_else(|| {
                IndexError::InvalidVector(format!("path {} is not UTF-8", tmp.display()))
            })?;
            h.index.save(tmp_str).map_err(backend)?;
            std::fs::rename(&tmp, &graph_path).map_err(|e| IndexError::io(&graph_path, e))?;
            true
        } else {
            false
        };

        let tmp = with_suffix(path, ".tmp");
        {
            let file = File::create(&tmp).map_err(|e| IndexError::io(&tmp, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            let io = |e| IndexError::io(&tmp, e);
            w.write_all(MAGIC).map_err(io)?;
            w.write_all(&u32::try_from(self.dim).map_err(backend)?.to_le_bytes())
                .map_err(io)?;
            w.write_all(&u32::from(has_graph).to_le_bytes())
                .map_err(io)?;
            w.write_all(&(self.ids.len() as u64).to_le_bytes())
                .map_err(io)?;
            w.write_all(&generation.to_le_bytes()).map_err(io)?;
            let mut buf = Vec::with_capacity(64 * 1024);
            for chunk in self.ids.chunks(8192) {
                buf.clear();
                for id in chunk {
                    buf.extend_from_slice(&id.to_le_bytes());
                }
                w.write_all(&buf).map_err(io)?;
            }
            for chunk in self.data.chunks(16384) {
                buf.clear();
                for x in chunk {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                w.write_all(&buf).map_err(io)?;
            }
            let file = w
                .into_inner()
                .map_err(|e| IndexError::io(&tmp, e.into_error()))?;
            file.sync_all().map_err(|e| IndexError::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| IndexError::io(path, e))?;
        remove_stale_graphs(path, has_graph.then_some(generation));
        Ok(())
    }

    /// Reads an index written by [`VectorIndex::save`] with default options.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, IndexError> {
        Self::load_with_options(path, IndexOptions::default())
    }

    /// Reads an index written by [`VectorIndex::save`]. The HNSW graph is loaded from its
    /// file when it matches the vectors, and rebuilt otherwise.
    pub fn load_with_options(
        path: impl AsRef<Path>,
        options: IndexOptions,
    ) -> Result<Self, IndexError> {
        let path = path.as_ref();
        let corrupt = |message: String| IndexError::Corrupt {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|e| IndexError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| IndexError::io(path, e))?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_LEN];
        r.read_exact(&mut header)
            .map_err(|_| corrupt("file too short for the header".to_owned()))?;
        if &header[..8] != MAGIC {
            return Err(corrupt("not a cortex vector index (bad magic)".to_owned()));
        }
        let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let le64 = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[..8]);
            u64::from_le_bytes(a)
        };
        let dim = le32(&header[8..12]) as usize;
        let has_graph = le32(&header[12..16]) != 0;
        let count = usize::try_from(le64(&header[16..24]))
            .map_err(|_| corrupt("count does not fit in memory".to_owned()))?;
        let generation = le64(&header[24..32]);
        if dim == 0 {
            return Err(corrupt("dimension is zero".to_owned()));
        }
        let expected =
            (HEADER_LEN as u64).saturating_add((count as u64).saturating_mul(8 + 4 * dim as u64));
        if expected != file_len {
            return Err(corrupt(format!(
                "expected {expected} bytes for {count} vectors of dimension {dim}, found {file_len}"
            )));
        }
        let mut index = Self::with_options(dim, options)?;
        let io = |e| IndexError::io(path, e);
        let mut bytes = vec![0u8; count * 8];
        r.read_exact(&mut bytes).map_err(io)?;
        index.ids = bytes.chunks_exact(8).map(le64).collect();
        drop(bytes);
        index.data = Vec::with_capacity(count * dim);
        let mut buf = vec![0u8; 1 << 20];
        let mut remaining = count * dim * 4;
        while remaining > 0 {
            let n = remaining.min(buf.len());
            r.read_exact(&mut buf[..n]).map_err(io)?;
            index.data.extend(
                buf[..n]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            remaining -= n;
        }
        index.positions = HashMap::with_capacity(count);
        for (row, id) in index.ids.iter().enumerate() {
            if index.positions.insert(*id, row).is_some() {
                return Err(corrupt(format!("id {id} appears twice")));
            }
        }
        if index.data.iter().any(|x| !x.is_finite()) {
            return Err(corrupt("a vector contains NaN or infinity".to_owned()));
        }

        if index.ids.len() >= index.options.exact_threshold {
            let graph_path = graph_file(path, generation);
            let loaded = if has_graph {
                match index.load_graph(&graph_path) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!(path = %graph_path.display(), error = %e, "hnsw graph unusable, rebuilding");
                        None
                    }
                }
            } else {
                None
            };
            match loaded {
                Some(h) => index.hnsw = Some(h),
                None => index.build_hnsw()?,
            }
        }
        Ok(index)
    }

    fn load_graph(&self, graph_path: &Path) -> Result<Hnsw, IndexError> {
        let s = graph_path.to_str().ok_or_else(|| {
            IndexError::InvalidVector(format!("path {} is not UTF-8", graph_path.display()))
        })?;
        if !graph_path.is_file() {
            return Err(IndexError::Corrupt {
                path: graph_path.to_path_buf(),
                message: "graph file missing".to_owned(),
            });
        }
        let index = self.new_hnsw()?;
        index.load(s).map_err(backend)?;
        index.change_expansion_search(self.options.expansion_search);
        let consistent = index.dimensions() == self.dim
            && index.size() == self.ids.len()
            && self
                .ids
                .iter()
                .step_by((self.ids.len() / 64).max(1))
                .all(|id| index.contains(*id));
        if !consistent {
            return Err(IndexError::Corrupt {
                path: graph_path.to_path_buf(),
                message: "graph does not match the stored vectors".to_owned(),
            });
        }
        Ok(Hnsw { index, removed: 0 })
    }
}

/// Adds `rows` of the flat buffer to `index` from `threads` threads.
fn parallel_add(
    index: &HnswIndex,
    ids: &[u64],
    data: &[f32],
    dim: usize,
    rows: &[usize],
    threads: usize,
) -> Result<(), IndexError> {
    if rows.is_empty() {
        return Ok(());
    }
    let threads = threads.clamp(1, rows.len());
    let chunk = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<(), IndexError> {
                    for &row in part {
                        index
                            .add(ids[row], &data[row * dim..(row + 1) * dim])
                            .map_err(backend)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| IndexError::Backend("index build thread panicked".to_owned()))??;
        }
        Ok(())
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn graph_file(path: &Path, generation: u64) -> PathBuf {
    with_suffix(path, &format!(".hnsw.{generation:016x}"))
}

/// Deletes `{path}.hnsw.*` files other than the current generation's.
fn remove_stale_graphs(path: &Path, keep: Option<u64>) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.hnsw.", name.to_string_lossy());
    let keep_name = keep.map(|g| format!("{prefix}{g:016x}"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&prefix) && Some(&file_name) != keep_name.as_ref() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn new_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos
        ^ COUNTER
            .fetch_add(1, AtomicOrdering::Relaxed)
            .rotate_left(48)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
                l2_normalize(&mut v);
                v
            })
            .collect()
    }

    fn small_options(threshold: usize) -> IndexOptions {
        IndexOptions {
            exact_threshold: threshold,
            build_threads: 2,
            ..IndexOptions::default()
        }
    }

    fn recall(index: &VectorIndex, queries: &[Vec<f32>], k: usize) -> f64 {
        let mut hits = 0usize;
        for q in queries {
            let exact: std::collections::HashSet<u64> = index
                .exact_search(q, k)
                .unwrap()
                .into_iter()
                .map(|x| x.0)
                .collect();
            hits += index
                .search(q, k)
                .unwrap()
                .iter()
                .filter(|x| exact.contains(&x.0))
                .count();
        }
        hits as f64 / (queries.len() * k) as f64
    }

    #[test]
    fn exact_search_finds_itself_and_orders_by_similarity() {
        let vs = random_vectors(500, 32, 1);
        let index = VectorIndex::rebuild(
            32,
            IndexOptions::default(),
            vs.iter().enumerate().map(|(i, v)| (i as u64 * 10, v)),
        )
        .unwrap();
        assert!(!index.is_approximate());
        assert_eq!(index.len(), 500);
        let res = index.search(&vs[42], 5).unwrap();
        assert_eq!(res[0].0, 420);
        assert!((res[0].1 - 1.0).abs() < 1e-5);
        assert!(res.windows(2).all(|w| w[0].1 >= w[1].1));
        // Scaling the query does not change cosine results.
        let scaled: Vec<f32> = vs[42].iter().map(|x| x * 7.0).collect();
        assert_eq!(index.search(&scaled, 5).unwrap()[0].0, 420);
        assert_eq!(index.search(&vs[0], 1000).unwrap().len(), 500);
        assert!(index.search(&vs[0], 0).unwrap().is_empty());
    }

    #[test]
    fn wrong_dimension_and_nan_are_errors() {
        let mut index = VectorIndex::new(4).unwrap();
        assert!(matches!(
            index.add(1, &[1.0, 2.0]),
            Err(IndexError::DimensionMismatch {
                expected: 4,
                actual: 2
            })
        ));
        assert!(matches!(
            index.add(1, &[1.0, f32::NAN, 0.0, 0.0]),
            Err(IndexError::InvalidVector(_))
        ));
        assert!(index.search(&[1.0; 3], 1).is_err());
        assert!(index.is_empty());
        assert!(VectorIndex::new(0).is_err());
        // A batch with one bad row stores nothing.
        assert!(
            index
                .add_batch(vec![(1, vec![1.0; 4]), (2, vec![1.0; 5])])
                .is_err()
        );
        assert!(index.is_empty());
    }

    #[test]
    fn upsert_and_remove_keep_positions_consistent() {
        let mut index = VectorIndex::new(3).unwrap();
        index.add(1, &[1.0, 0.0, 0.0]).unwrap();
        index.add(2, &[0.0, 1.0, 0.0]).unwrap();
        index.add(3, &[0.0, 0.0, 1.0]).unwrap();
        index.add(1, &[0.0, 0.9, 0.1]).unwrap();
        assert_eq!(index.len(), 3);
        assert!(index.remove(2).unwrap());
        assert!(!index.remove(2).unwrap());
        assert_eq!(index.len(), 2);
        let res = index.search(&[0.0, 1.0, 0.0], 2).unwrap();
        assert_eq!(res[0].0, 1);
        assert_eq!(index.search(&[0.0, 0.0, 1.0], 1).unwrap()[0].0, 3);
        assert!(index.get(2).is_none());
        let v = index.get(3).unwrap();
        assert!((v[2] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn compaction_is_automatic_unless_turned_off() {
        let vs = random_vectors(3000, 16, 9);
        let rows = || vs.iter().enumerate().map(|(i, v)| (i as u64, v));
        for auto_compact in [true, false] {
            let options = IndexOptions {
                auto_compact,
                ..small_options(100)
            };
            let mut index = VectorIndex::rebuild(16, options, rows()).unwrap();
            for id in 0..1500 {
                assert!(index.remove(id).unwrap());
            }
            // Half the slots deleted: rebuilt there and then, or left for the owner.
            assert_eq!(index.needs_compaction(), !auto_compact, "{auto_compact}");
            assert_eq!(index.len(), 1500);
            let found = index.search(&vs[2000], 1).unwrap();
            assert_eq!(found[0].0, 2000, "{auto_compact}");
        }
    }

    #[test]
    fn filtered_search_skips_rejected_ids() {
        let vs = random_vectors(300, 16, 2);
        for threshold in [1_000_000, 100] {
            let index = VectorIndex::rebuild(
                16,
                small_options(threshold),
                vs.iter().enumerate().map(|(i, v)| (i as u64, v)),
            )
            .unwrap();
            let res = index.search_filtered(&vs[7], 10, |id| id % 2 == 0).unwrap();
            assert_eq!(res.len(), 10, "threshold {threshold}");
            assert!(res.iter().all(|(id, _)| id % 2 == 0));
            assert!(res.iter().all(|(id, _)| *id != 7));
        }
    }

    #[test]
    fn a_narrow_graph_finds_neighbours_and_scores_them_exactly() {
        let dim = 48;
        let vs = random_vectors(3000, dim, 12);
        let queries = random_vectors(50, dim, 13);
        for precision in [GraphPrecision::BF16, GraphPrecision::I8] {
            let options = IndexOptions {
                precision,
                ..small_options(1000)
            };
            let index = VectorIndex::rebuild(
                dim,
                options,
                vs.iter().enumerate().map(|(i, v)| (i as u64, v)),
            )
            .unwrap();
            assert!(index.is_approximate());
            let r = recall(&index, &queries, 10);
            assert!(r > 0.9, "{precision:?}: recall {r}");
            for q in &queries {
                let found = index.search(q, 10).unwrap();
                assert_eq!(found.len(), 10, "{precision:?}");
                assert!(found.windows(2).all(|w| w[0].1 >= w[1].1), "{precision:?}");
                // The similarity is the f32 dot product, not the narrow copy's.
                for (id, s) in found {
                    let exact = dot(q, index.get(id).unwrap());
                    assert!((s - exact).abs() < 1e-6, "{precision:?}: {s} vs {exact}");
                }
            }
            // A stored vector finds itself at similarity 1.
            let top = index.search(&vs[42], 1).unwrap();
            assert_eq!(top[0].0, 42, "{precision:?}");
            assert!((top[0].1 - 1.0).abs() < 1e-5, "{precision:?}");
        }
    }

    #[test]
    fn new_vectors_take_deleted_slots() {
        let dim = 16;
        let vs = random_vectors(6000, dim, 14);
        let options = IndexOptions {
            auto_compact: false,
            ..small_options(100)
        };
        let rows = vs.iter().enumerate().map(|(i, v)| (i as u64, v));
        let mut index = VectorIndex::rebuild(dim, options, rows.clone().take(2000)).unwrap();
        // A bounded index: the oldest go, as many new ones come, round after round (as the
        // answer cache's eviction does). The graph never fills with deletions.
        for round in 0..8u64 {
            for id in round * 500..(round + 1) * 500 {
                assert!(index.remove(id).unwrap());
            }
            for (id, v) in rows.clone().skip(2000 + round as usize * 500).take(500) {
                index.add(id, v).unwrap();
            }
            assert!(!index.needs_compaction(), "round {round}");
        }
        assert_eq!(index.len(), 2000);
        assert_eq!(index.search(&vs[5999], 1).unwrap()[0].0, 5999);
        // Deletions that nothing replaces still make a rebuild due.
        for id in 4000..5500 {
            assert!(index.remove(id).unwrap());
        }
        assert!(index.needs_compaction());
    }

    #[test]
    fn hnsw_above_threshold_has_high_recall_and_supports_updates() {
        let dim = 48;
        let vs = random_vectors(3000, dim, 3);
        let mut index = VectorIndex::with_options(dim, small_options(1000)).unwrap();
        // Grow one by one through the threshold, then in a batch.
        for (i, v) in vs.iter().enumerate().take(1500) {
            index.add(i as u64, v).unwrap();
        }
        assert!(index.is_approximate());
        index
            .add_batch(vs.iter().enumerate().skip(1500).map(|(i, v)| (i as u64, v)))
            .unwrap();
        assert_eq!(index.len(), 3000);
        let queries = random_vectors(50, dim, 4);
        let r = recall(&index, &queries, 10);
        assert!(r > 0.9, "recall {r}");
        // Replace and remove go through the graph too.
        index.add(5, &vs[6]).unwrap();
        let top = index.search(&vs[6], 2).unwrap();
        let ids: Vec<u64> = top.iter().map(|x| x.0).collect();
        assert!(ids.contains(&5) && ids.contains(&6), "{ids:?}");
        assert!(index.remove(6).unwrap());
        assert!(index.search(&vs[6], 10).unwrap().iter().all(|x| x.0 != 6));
        // Shrinking far below the threshold drops the graph.
        for id in 0..2600u64 {
            index.remove(id).unwrap();
        }
        assert!(!index.is_approximate());
        assert_eq!(index.len(), 400);
        assert_eq!(index.search(&vs[2999], 1).unwrap()[0].0, 2999);
    }

    #[test]
    fn save_and_load_roundtrip_exact_and_hnsw() {
        let dir = tempfile::tempdir().unwrap();
        let dim = 24;
        let vs = random_vectors(2500, dim, 5);
        for threshold in [1_000_000usize, 1000] {
            let path = dir.path().join(format!("idx-{threshold}.vidx"));
            let index = VectorIndex::rebuild(
                dim,
                small_options(threshold),
                vs.iter().enumerate().map(|(i, v)| (i as u64 + 1, v)),
            )
            .unwrap();
            index.save(&path).unwrap();
            // Saving again replaces the graph file rather than accumulating them.
            index.save(&path).unwrap();
            let graphs = std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    let name = e
                        .as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .into_owned();
                    name.starts_with(&format!("idx-{threshold}.vidx.hnsw."))
                })
                .count();
            assert_eq!(graphs, usize::from(threshold == 1000));
            let loaded = VectorIndex::load_with_options(&path, small_options(threshold)).unwrap();
            assert_eq!(loaded.len(), 2500);
            assert_eq!(loaded.is_approximate(), threshold == 1000);
            for q in vs.iter().step_by(97) {
                assert_eq!(
                    loaded.exact_search(q, 5).unwrap(),
                    index.exact_search(q, 5).unwrap()
                );
                assert_eq!(
                    loaded.search(q, 1).unwrap()[0].0,
                    index.search(q, 1).unwrap()[0].0
                );
            }
        }
    }

    #[test]
    fn missing_or_bad_graph_is_rebuilt_and_bad_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vidx");
        let vs = random_vectors(1200, 8, 6);
        let index = VectorIndex::rebuild(
            8,
            small_options(1000),
            vs.iter().enumerate().map(|(i, v)| (i as u64, v)),
        )
        .unwrap();
        index.save(&path).unwrap();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.to_string_lossy().contains(".hnsw.") {
                std::fs::write(&p, b"garbage").unwrap();
            }
        }
        let loaded = VectorIndex::load_with_options(&path, small_options(1000)).unwrap();
        assert!(loaded.is_approximate());
        assert_eq!(loaded.search(&vs[3], 1).unwrap()[0].0, 3);

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(
            VectorIndex::load(&path),
            Err(IndexError::Corrupt { .. })
        ));
        std::fs::write(&path, b"NOTANIDXxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").unwrap();
        assert!(matches!(
            VectorIndex::load(&path),
            Err(IndexError::Corrupt { .. })
        ));
        assert!(matches!(
            VectorIndex::load(dir.path().join("missing")),
            Err(IndexError::Io { .. })
        ));
    }
}
