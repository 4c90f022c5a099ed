//! Named vector collections persisted under one directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::{IndexError, IndexOptions, VectorIndex};

const META_SUFFIX: &str = ".meta.json";
const INDEX_SUFFIX: &str = ".vidx";
const DIRTY_SUFFIX: &str = ".dirty";

/// What a collection holds: its name, the model that made its vectors and their dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// The collection's name, e.g. `{company}/{agent}/{model}` or `source/{id}/{model}`.
    pub name: String,
    /// The [`crate::Embedder::model_id`] of every vector in it.
    pub model_id: String,
    /// The dimension of every vector in it.
    pub dimension: usize,
}

/// One collection: a [`VectorIndex`] of a single model and dimension, behind a lock.
///
/// Mutations mark the collection dirty (and leave a `.dirty` marker file next to it until the
/// next [`Collection::save`]), so that after a crash [`Collection::needs_rebuild`] tells the
/// caller to rebuild it from the database.
#[derive(Debug)]
pub struct Collection {
    info: CollectionInfo,
    index: RwLock<VectorIndex>,
    dirty: AtomicBool,
    needs_rebuild: AtomicBool,
    base: PathBuf,
}

impl Collection {
    /// The collection's name, model and dimension.
    #[must_use]
    pub fn info(&self) -> &CollectionInfo {
        &self.info
    }

    /// Number of vectors.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether the collection holds no vector.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether the collection was not saved after its last change before the process ended
    /// (its `.dirty` marker was found on open): its contents may be stale, rebuild it from the
    /// database with [`Collections::rebuild`].
    #[must_use]
    pub fn needs_rebuild(&self) -> bool {
        self.needs_rebuild.load(Ordering::Acquire)
    }

    /// Whether there are changes not yet saved.
    #[must_use]
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    fn read(&self) -> RwLockReadGuard<'_, VectorIndex> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, VectorIndex> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mark_dirty(&self) -> Result<(), IndexError> {
        if !self.dirty.swap(true, Ordering::AcqRel) {
            let marker = with_suffix(&self.base, DIRTY_SUFFIX);
            std::fs::write(&marker, b"").map_err(|e| IndexError::io(&marker, e))?;
        }
        Ok(())
    }

    fn check_dimension(&self, vector: &[f32]) -> Result<(), IndexError> {
        if vector.len() != self.info.dimension {
            return Err(IndexError::DimensionMismatch {
                expected: self.info.dimension,
                actual: vector.len(),
            });
        }
        Ok(())
    }

    /// Inserts or replaces the vector of `id` (wrong dimension: an error).
    pub fn add(&self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        self.check_dimension(vector)?;
        self.mark_dirty()?;
        self.write().add(id, vector)
    }

    /// Inserts or replaces many vectors.
    pub fn add_batch<I, V>(&self, rows: I) -> Result<(), IndexError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]>,
    {
        self.mark_dirty()?;
        self.write().add_batch(rows)
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&self, id: u64) -> Result<bool, IndexError> {
        self.mark_dirty()?;
        self.write().remove(id)
    }

    /// The `k` most similar vectors, best first, as `(id, cosine similarity)`.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>, IndexError> {
        self.read().search(query, k)
    }

    /// Like [`Collection::search`], keeping only ids for which `filter` is true.
    pub fn search_filtered<F>(
        &self,
        query: &[f32],
        k: usize,
        filter: F,
    ) -> Result<Vec<(u64, f32)>, IndexError>
    where
        F: Fn(u64) -> bool,
    {
        self.read().search_filtered(query, k, filter)
    }

    /// Runs `f` with shared access to the index (e.g. to read ids or vectors).
    pub fn with_index<R>(&self, f: impl FnOnce(&VectorIndex) -> R) -> R {
        f(&self.read())
    }

    /// Writes the collection to disk if it changed since the last save.
    pub fn save(&self) -> Result<(), IndexError> {
        if !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        // Hold the write lock so that no change slips between the snapshot and the flag.
        let guard = self.write();
        guard.save(with_suffix(&self.base, INDEX_SUFFIX))?;
        self.dirty.store(false, Ordering::Release);
        self.needs_rebuild.store(false, Ordering::Release);
        drop(guard);
        let marker = with_suffix(&self.base, DIRTY_SUFFIX);
        match std::fs::remove_file(&marker) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IndexError::io(&marker, e)),
        }
    }
}

/// Vector collections by name, persisted under one directory.
///
/// Each collection records the model id and dimension of its vectors; opening it again with
/// another model is [`IndexError::ModelMismatch`] and with another dimension
/// [`IndexError::DimensionMismatch`], and adding a vector of the wrong dimension fails, so
/// vectors of different models never mix. Name collections after what they serve and the
/// model, e.g. `{company}/{agent}/{model_id}`.
///
/// On disk, a collection is `{stem}.meta.json` (its [`CollectionInfo`]), `{stem}.vidx` and
/// possibly `{stem}.vidx.hnsw.*` (see [`VectorIndex::save`]), where `stem` is the name with
/// every byte outside `[A-Za-z0-9.-]` escaped as `_XX`. Collections are loaded lazily on
/// first use; [`Collections::save_all`] writes those that changed (call it periodically and
/// at shutdown: the database stays the source of truth and [`Collections::rebuild`] restores
/// a collection from its rows).
#[derive(Debug)]
pub struct Collections {
    dir: PathBuf,
    options: IndexOptions,
    open: Mutex<HashMap<String, Arc<Collection>>>,
}

impl Collections {
    /// Opens (creating if needed) the directory `dir`.
    pub fn open(dir: impl Into<PathBuf>, options: IndexOptions) -> Result<Self, IndexError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| IndexError::io(&dir, e))?;
        Ok(Self {
            dir,
            options,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The directory holding the collections.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Collection>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn base(&self, name: &str) -> PathBuf {
        self.dir.join(file_stem(name))
    }

    /// Loads a collection from disk into the map, if its files exist.
    fn load_locked(
        &self,
        open: &mut HashMap<String, Arc<Collection>>,
        name: &str,
    ) -> Result<Option<Arc<Collection>>, IndexError> {
        if let Some(c) = open.get(name) {
            return Ok(Some(Arc::clone(c)));
        }
        let base = self.base(name);
        let meta_path = with_suffix(&base, META_SUFFIX);
        let info = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice::<CollectionInfo>(&bytes).map_err(|e| {
                IndexError::Corrupt {
                    path: meta_path.clone(),
                    message: e.to_string(),
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IndexError::io(&meta_path, e)),
        };
        if info.name != name {
            return Err(IndexError::Corrupt {
                path: meta_path,
                message: format!("holds collection '{}', expected '{name}'", info.name),
            });
        }
        let index_path = with_suffix(&base, INDEX_SUFFIX);
        let index = if index_path.is_file() {
            VectorIndex::load_with_options(&index_path, self.options.clone())?
        } else {
            VectorIndex::with_options(info.dimension, self.options.clone())?
        };
        if index.dimension() != info.dimension {
            return Err(IndexError::Corrupt {
                path: index_path,
                message: format!(
                    "index dimension {} differs from the collection's {}",
                    index.dimension(),
                    info.dimension
                ),
            });
        }
        let needs_rebuild = with_suffix(&base, DIRTY_SUFFIX).exists();
        let collection = Arc::new(Collection {
            info,
            index: RwLock::new(index),
            dirty: AtomicBool::new(needs_rebuild),
            needs_rebuild: AtomicBool::new(needs_rebuild),
            base,
        });
        open.insert(name.to_owned(), Arc::clone(&collection));
        Ok(Some(collection))
    }

    /// The collection called `name`, if it exists (in memory or on disk).
    pub fn get(&self, name: &str) -> Result<Option<Arc<Collection>>, IndexError> {
        let mut open = self.lock();
        self.load_locked(&mut open, name)
    }

    /// The collection called `name`, created empty if it does not exist. An existing
    /// collection must have the same model id and dimension.
    pub fn get_or_create(
        &self,
        name: &str,
        model_id: &str,
        dimension: usize,
    ) -> Result<Arc<Collection>, IndexError> {
        if name.is_empty() {
            return Err(IndexError::InvalidVector(
                "collection name must not be empty".to_owned(),
            ));
        }
        let mut open = self.lock();
        if let Some(existing) = self.load_locked(&mut open, name)? {
            check_same(existing.info(), model_id, dimension)?;
            return Ok(existing);
        }
        let info = CollectionInfo {
            name: name.to_owned(),
            model_id: model_id.to_owned(),
            dimension,
        };
        let index = VectorIndex::with_options(dimension, self.options.clone())?;
        let base = self.base(name);
        write_meta(&base, &info)?;
        let collection = Arc::new(Collection {
            info,
            index: RwLock::new(index),
            dirty: AtomicBool::new(false),
            needs_rebuild: AtomicBool::new(false),
            base,
        });
        open.insert(name.to_owned(), Arc::clone(&collection));
        Ok(collection)
    }

    /// Replaces the collection `name` with one built from `(id, vector)` rows (e.g. read
    /// from the database), recording `model_id` and `dimension` (which may differ from the
    /// old ones: this is the re-embedding path). The result is saved before it is returned.
    pub fn rebuild<I, V>(
        &self,
        name: &str,
        model_id: &str,
        dimension: usize,
        rows: I,
    ) -> Result<Arc<Collection>, IndexError>
    where
        I: IntoIterator<Item = (u64, V)>,
        V: AsRef<[f32]>,
    {
        let index = VectorIndex::rebuild(dimension, self.options.clone(), rows)?;
        let info = CollectionInfo {
            name: name.to_owned(),
            model_id: model_id.to_owned(),
            dimension,
        };
        let base = self.base(name);
        let collection = Arc::new(Collection {
            info,
            index: RwLock::new(index),
            dirty: AtomicBool::new(true),
            needs_rebuild: AtomicBool::new(false),
            base: base.clone(),
        });
        let mut open = self.lock();
        // Save the index first, then the metadata that describes it.
        collection.save()?;
        write_meta(&base, collection.info())?;
        open.insert(name.to_owned(), Arc::clone(&collection));
        Ok(collection)
    }

    /// Deletes the collection and its files; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, IndexError> {
        let mut open = self.lock();
        let was_open = open.remove(name).is_some();
        let base = self.base(name);
        let mut existed = was_open;
        for suffix in [META_SUFFIX, INDEX_SUFFIX, DIRTY_SUFFIX] {
            let path = with_suffix(&base, suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => existed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IndexError::io(&path, e)),
            }
        }
        remove_graph_files(&base);
        Ok(existed)
    }

    /// Every collection on disk or in memory, sorted by name.
    pub fn list(&self) -> Result<Vec<CollectionInfo>, IndexError> {
        let open = self.lock();
        let mut infos: HashMap<String, CollectionInfo> = open
            .values()
            .map(|c| (c.info.name.clone(), c.info.clone()))
            .collect();
        drop(open);
        let entries = std::fs::read_dir(&self.dir).map_err(|e| IndexError::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.to_string_lossy().ends_with(META_SUFFIX) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            if let Ok(info) = serde_json::from_slice::<CollectionInfo>(&bytes) {
                infos.entry(info.name.clone()).or_insert(info);
            }
        }
        let mut list: Vec<CollectionInfo> = infos.into_values().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Saves every open collection with unsaved changes.
    pub fn save_all(&self) -> Result<(), IndexError> {
        let open: Vec<Arc<Collection>> = self.lock().values().cloned().collect();
        for c in open {
            c.save()?;
        }
        Ok(())
    }
}

fn check_same(info: &CollectionInfo, model_id: &str, dimension: usize) -> Result<(), IndexError> {
    if info.model_id != model_id {
        return Err(IndexError::ModelMismatch {
            collection: info.name.clone(),
            existing: info.model_id.clone(),
            requested: model_id.to_owned(),
        });
    }
    if info.dimension != dimension {
        return Err(IndexError::DimensionMismatch {
            expected: info.dimension,
            actual: dimension,
        });
    }
    Ok(())
}

fn write_meta(base: &Path, info: &CollectionInfo) -> Result<(), IndexError> {
    let path = with_suffix(base, META_SUFFIX);
    let tmp = with_suffix(&path, ".tmp");
    let json = serde_json::to_vec_pretty(info).map_err(|e| IndexError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, json).map_err(|e| IndexError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| IndexError::io(&path, e))
}

fn remove_graph_files(base: &Path) {
    let index_path = with_suffix(base, INDEX_SUFFIX);
    let (Some(dir), Some(name)) = (index_path.parent(), index_path.file_name()) else {
        return;
    };
    let prefix = format!("{}.hnsw.", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A file-name-safe, reversible encoding of a collection name. Names whose encoding would be
/// too long for a file name are shortened and suffixed with a hash of the full name.
fn file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || (b == b'.' && !out.is_empty()) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    const MAX: usize = 150;
    if out.len() > MAX {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.truncate(MAX);
        out.push_str(&format!("~{h:016x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe_and_distinct() {
        assert_eq!(
            file_stem("acme/agent-1/hash-384"),
            "acme_2Fagent-1_2Fhash-384"
        );
        assert_eq!(file_stem("a_b"), "a_5Fb");
        assert_ne!(file_stem("a/b"), file_stem("a_2Fb"));
        assert_eq!(file_stem("..").chars().next(), Some('_'));
        let long = "x/".repeat(200);
        let stem = file_stem(&long);
        assert!(stem.len() < 200);
        assert_ne!(stem, file_stem(&"x/".repeat(201)));
    }

    #[test]
    fn collections_persist_and_never_mix_models() {
        let dir = tempfile::tempdir().unwrap();
        let name = "acme/support/local:all-MiniLM-L6-v2";
        {
            let cols = Collections::open(dir.path(), IndexOptions::default()).unwrap();
            let c = cols
                .get_or_create(name, "local:all-MiniLM-L6-v2", 3)
                .unwrap();
            c.add(1, &[1.0, 0.0, 0.0]).unwrap();
            c.add(2, &[0.0, 1.0, 0.0]).unwrap();
            assert!(matches!(
                c.add(3, &[1.0, 0.0]),
                Err(IndexError::DimensionMismatch {
                    expected: 3,
                    actual: 2
                })
            ));
            assert!(c.is_dirty());
            assert!(matches!(
                cols.get_or_create(name, "hash-384", 3),
                Err(IndexError::ModelMismatch { .. })
            ));
            assert!(matches!(
                cols.get_or_create(name, "local:all-MiniLM-L6-v2", 384),
                Err(IndexError::DimensionMismatch { .. })
            ));
            cols.save_all().unwrap();
            assert!(!c.is_dirty());
        }
        let cols = Collections::open(dir.path(), IndexOptions::default()).unwrap();
        let list = cols.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].model_id, "local:all-MiniLM-L6-v2");
        let c = cols.get(name).unwrap().unwrap();
        assert!(!c.needs_rebuild());
        assert_eq!(c.len(), 2);
        assert_eq!(c.search(&[0.1, 1.0, 0.0], 1).unwrap()[0].0, 2);
        assert!(cols.get("other").unwrap().is_none());
        assert!(cols.remove(name).unwrap());
        assert!(cols.list().unwrap().is_empty());
        assert!(!cols.remove(name).unwrap());
    }

    #[test]
    fn unsaved_changes_are_flagged_after_restart_and_rebuild_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cols = Collections::open(dir.path(), IndexOptions::default()).unwrap();
            let c = cols.get_or_create("c", "hash-384", 2).unwrap();
            c.add(1, &[1.0, 0.0]).unwrap();
            // Dropped without save: a crash.
        }
        let cols = Collections::open(dir.path(), IndexOptions::default()).unwrap();
        let c = cols.get("c").unwrap().unwrap();
        assert!(c.needs_rebuild());
        assert_eq!(c.len(), 0);
        let rows = vec![(1u64, vec![1.0f32, 0.0]), (2, vec![0.0, 1.0])];
        // Re-embedding with another model replaces the collection and its metadata.
        let c = cols.rebuild("c", "hash-2", 2, rows).unwrap();
        assert!(!c.needs_rebuild() && !c.is_dirty());
        assert_eq!(c.len(), 2);
        drop(cols);
        let cols = Collections::open(dir.path(), IndexOptions::default()).unwrap();
        let c = cols.get("c").unwrap().unwrap();
        assert!(!c.needs_rebuild());
        assert_eq!(c.info().model_id, "hash-2");
        assert_eq!(c.len(), 2);
    }
}
