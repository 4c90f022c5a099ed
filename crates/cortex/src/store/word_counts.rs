//! How many chunks hold a search term, remembered: the keyword side of every knowledge search
//! asks it for each word of the query (a word in more than `COMMON_WORD_ROWS` chunks is this
//! corpus's stop word; a word in none cannot match), and each count is one full-text look-up.
//!
//! A count is trusted for [`TTL`] at most, and forgotten at once when this node writes chunks
//! (the generation): a word a new document brings is searched as soon as the document is.
//! Another node's write is seen within the TTL; until then a count is only a hint about which
//! words to rank (a word believed absent is not searched, a word believed common is left to the
//! vector side), never a result.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hashlink::LruCache;

/// How long a count is trusted (bounds how late another node's new chunks are seen).
pub const TTL: Duration = Duration::from_secs(10);
/// Terms remembered at most.
const CAPACITY: usize = 50_000;

pub struct WordCounts {
    entries: Mutex<LruCache<String, (i64, Instant)>>,
    /// Bumped by every chunk write of this node: a count read before one is not remembered.
    generation: AtomicU64,
}

impl Default for WordCounts {
    fn default() -> Self {
        Self {
            entries: Mutex::new(LruCache::new(CAPACITY)),
            generation: AtomicU64::new(0),
        }
    }
}

impl WordCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, (i64, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The remembered count of each term (`None`: to be read), and the generation to hand
    /// back to [`WordCounts::remember`] with what was read.
    pub fn get(&self, terms: &[String]) -> (Vec<Option<i64>>, u64) {
        let generation = self.generation.load(Ordering::Acquire);
        let mut entries = self.lock();
        let counts = terms
            .iter()
            .map(|t| match entries.get(t) {
                Some((n, at)) if at.elapsed() < TTL => Some(*n),
                _ => None,
            })
            .collect();
        (counts, generation)
    }

    /// Remember counts read by a look-up that began at `generation` (after [`WordCounts::get`]),
    /// unless chunks were written since.
    pub fn remember(&self, generation: u64, read: impl IntoIterator<Item = (String, i64)>) {
        let mut entries = self.lock();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let now = Instant::now();
        for (term, n) in read {
            entries.insert(term, (n, now));
        }
    }

    /// Chunks were written: forget every count. Called once the write is committed, so a
    /// look-up whose snapshot may predate it began before the bump and is not remembered.
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_read_across_a_write_is_not_remembered() {
        let counts = WordCounts::default();
        let terms = vec!["refund".to_owned(), "kettle".to_owned()];
        let (known, generation) = counts.get(&terms);
        assert_eq!(known, vec![None, None]);
        counts.remember(generation, [("refund".to_owned(), 3)]);
        assert_eq!(counts.get(&terms).0, vec![Some(3), None]);
        // A look-up that began before a write: its counts may predate the new chunks.
        let (_, before) = counts.get(&terms);
        counts.forget();
        counts.remember(before, [("kettle".to_owned(), 0)]);
        assert_eq!(counts.get(&terms).0, vec![None, None]);
    }
}
