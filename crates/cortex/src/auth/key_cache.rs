//! Verified API keys, remembered so that a request is authenticated without a database read.
//!
//! An entry is the key's row as read when it was last verified, by the SHA-256 of the raw key.
//! It is trusted for at most `auth.api_key_cache_seconds` (a safety net); a revocation removes it
//! at once on this node and, through the coordinator, on every other node before the revoking
//! request answers (see `Coordinator::revoke_key`). While a node's link to the others is down
//! the cache is not used at all (it may have missed a revocation), so every request reads the
//! database as before. Expiry is checked on every use, from the cached `expires_at`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hashlink::LruCache;
use uuid::Uuid;

use crate::store::ApiKey;

pub struct KeyCache {
    entries: Mutex<LruCache<String, (ApiKey, Instant)>>,
    ttl: Duration,
    /// False while revocations from other nodes may be missed (the subscription is down).
    usable: AtomicBool,
    /// Bumped by every forget: a read that began before one is not remembered.
    generation: AtomicU64,
}

/// Where a database read of a key began: see [`KeyCache::put`].
#[derive(Debug, Clone, Copy)]
pub struct ReadStart {
    at: Instant,
    generation: u64,
}

impl KeyCache {
    /// At most `capacity` keys, each trusted for `ttl` (zero: never cached).
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
            ttl,
            usable: AtomicBool::new(true),
            generation: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, (ApiKey, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key whose hash is `key_hash`, if verified within the TTL and not revoked since.
    pub fn get(&self, key_hash: &str) -> Option<ApiKey> {
        if self.ttl.is_zero() || !self.usable.load(Ordering::Acquire) {
            return None;
        }
        let mut entries = self.lock();
        match entries.get(key_hash) {
            Some((key, at)) if at.elapsed() < self.ttl => Some(key.clone()),
            Some(_) => {
                entries.remove(key_hash);
                None
            }
            None => None,
        }
    }

    /// Taken before a key is read from the database.
    pub fn read_start(&self) -> ReadStart {
        ReadStart {
            at: Instant::now(),
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// Remember a key read from the database since `start` — unless a key was forgotten
    /// meanwhile: the read may have seen the row before a revocation committed.
    pub fn put(&self, key: ApiKey, start: ReadStart) {
        if self.ttl.is_zero() || !self.usable.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.lock();
        if self.generation.load(Ordering::Acquire) == start.generation {
            entries.insert(key.key_hash.clone(), (key, start.at));
        }
    }

    /// Forget a key (revoked here or on another node).
    pub fn forget(&self, key_id: Uuid) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        let hashes: Vec<String> = entries
            .iter()
            .filter(|(_, (k, _))| k.id == key_id)
            .map(|(h, _)| h.clone())
            .collect();
        for h in hashes {
            entries.remove(&h);
        }
    }

    /// The link to the other nodes went down (`false`: forget everything and stop caching) or
    /// came back (`true`).
    pub fn set_usable(&self, usable: bool) {
        if !usable {
            self.usable.store(false, Ordering::Release);
            let mut entries = self.lock();
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        } else {
            self.usable.store(true, Ordering::Release);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: Uuid, hash: &str) -> ApiKey {
        ApiKey {
            id,
            company_id: Uuid::nil(),
            user_id: None,
            name: "k".into(),
            key_prefix: "ctx_".into(),
            key_hash: hash.into(),
            scopes: vec!["*".into()],
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn remembers_forgets_and_expires() {
        let cache = KeyCache::new(2, Duration::from_secs(60));
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.put(key(a, "ha"), cache.read_start());
        cache.put(key(b, "hb"), cache.read_start());
        assert_eq!(cache.get("ha").map(|k| k.id), Some(a));
        cache.forget(a);
        assert!(cache.get("ha").is_none());
        assert_eq!(cache.get("hb").map(|k| k.id), Some(b));
        // The bound evicts the least recently used.
        cache.put(key(a, "ha"), cache.read_start());
        cache.put(key(c, "hc"), cache.read_start());
        assert!(cache.get("hb").is_none());
        assert_eq!(cache.len(), 2);
        // Past its TTL an entry is not trusted.
        let short = KeyCache::new(2, Duration::from_millis(20));
        short.put(key(b, "hb"), short.read_start());
        assert!(short.get("hb").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(short.get("hb").is_none());
        // A read that began before a revocation is not remembered.
        let before = cache.read_start();
        cache.forget(b);
        cache.put(key(b, "hb"), before);
        assert!(cache.get("hb").is_none());
    }

    #[test]
    fn an_unusable_cache_answers_nothing_until_reconnected() {
        let cache = KeyCache::new(8, Duration::from_secs(60));
        let a = Uuid::new_v4();
        cache.put(key(a, "ha"), cache.read_start());
        cache.set_usable(false);
        assert!(cache.get("ha").is_none());
        cache.put(key(a, "ha"), cache.read_start());
        assert!(cache.is_empty(), "nothing is cached while unusable");
        cache.set_usable(true);
        cache.put(key(a, "ha"), cache.read_start());
        assert_eq!(cache.get("ha").map(|k| k.id), Some(a));
        let zero = KeyCache::new(8, Duration::ZERO);
        zero.put(key(a, "ha"), zero.read_start());
        assert!(zero.get("ha").is_none());
    }
}
