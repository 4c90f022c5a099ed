//! Request limits, no HTTP: per-company request rate and per-conversation message rate (fixed
//! windows, counted in-process on one node or in Redis so every node shares the count), and the
//! per-instance cap on concurrently connected client IPs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// A Redis round trip slower than this lets the request through (and is logged): a limit
/// store in trouble must not take the API down with it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// In-process windows kept before stale ones are swept.
const LOCAL_SWEEP_AT: usize = 100_000;

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Every authenticated request of a company.
    Company(Uuid),
    /// Chat messages of one conversation (scoped by company: ids come from clients).
    Conversation {
        company_id: Uuid,
        conversation_id: Uuid,
    },
}

impl Subject {
    fn redis_key(&self, prefix: &str, window: u64) -> String {
        match self {
            Subject::Company(c) => format!("{prefix}:rl:company:{c}:{window}"),
            Subject::Conversation {
                company_id,
                conversation_id,
            } => format!("{prefix}:rl:conv:{company_id}:{conversation_id}:{window}"),
        }
    }
}

/// A limit: at most `max` hits per `window_seconds`; `max == 0` means unlimited.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub max: u64,
    pub window_seconds: u64,
}

/// The outcome of one counted hit, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Unix seconds at which the current window ends.
    pub reset_unix: u64,
    /// Milliseconds until the current window ends.
    pub retry_after_ms: u64,
}

impl Quota {
    fn from_count(count: u64, rate: Rate, now_ms: u64) -> Self {
        let window_ms = rate.window_seconds.max(1) * 1000;
        let end_ms = (now_ms / window_ms + 1) * window_ms;
        Quota {
            allowed: count <= rate.max,
            limit: rate.max,
            remaining: rate.max.saturating_sub(count),
            reset_unix: end_ms.div_ceil(1000),
            retry_after_ms: end_ms - now_ms,
        }
    }

    /// Whole seconds for `Retry-After` (never 0 while limited).
    pub fn retry_after_seconds(&self) -> u64 {
        self.retry_after_ms.div_ceil(1000).max(1)
    }
}

/// Where window counts live.
pub enum RateLimiter {
    /// One node: a map of the current windows.
    Local(Mutex<HashMap<Subject, (u64, u64)>>),
    /// Many nodes: `INCR` + `PEXPIRE` of one key per subject and window.
    Redis {
        conn: redis::aio::ConnectionManager,
        prefix: String,
    },
}

impl RateLimiter {
    /// Counts in Redis when the node is scaled out, in-process otherwise.
    pub fn for_coordinator(coord: &crate::coord::Coordinator) -> Self {
        match coord {
            crate::coord::Coordinator::Local => RateLimiter::Local(Mutex::new(HashMap::new())),
            crate::coord::Coordinator::Redis { conn, prefix, .. } => RateLimiter::Redis {
                conn: conn.clone(),
                prefix: prefix.clone(),
            },
        }
    }

    /// Count one hit against `rate` and say whether it is within it. `None` when the rate is
    /// unlimited.
    pub async fn hit(&self, subject: Subject, rate: Rate) -> Option<Quota> {
        if rate.max == 0 {
            return None;
        }
        let now_ms = now_ms();
        let window = now_ms / (rate.window_seconds.max(1) * 1000);
        let count = match self {
            RateLimiter::Local(map) => {
                let Ok(mut map) = map.lock() else {
                    return None;
                };
                if map.len() >= LOCAL_SWEEP_AT {
                    map.retain(|_, (w, _)| *w >= window.saturating_sub(1));
                }
                let entry = map.entry(subject).or_insert((window, 0));
                if entry.0 != window {
                    *entry = (window, 0);
                }
                entry.1 += 1;
                entry.1
            }
            RateLimiter::Redis { conn, prefix } => {
                let key = subject.redis_key(prefix, window);
                let ttl_ms = rate.window_seconds.max(1) * 1000 * 2;
                let mut conn = conn.clone();
                let counted = tokio::time::timeout(REDIS_TIMEOUT, async {
                    redis::pipe()
                        .atomic()
                        .incr(&key, 1u64)
                        .pexpire(&key, i64::try_from(ttl_ms).unwrap_or(i64::MAX))
                        .ignore()
                        .query_async::<(u64,)>(&mut conn)
                        .await
                })
                .await;
                match counted {
                    Ok(Ok((count,))) => count,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "rate limit not counted: Redis failed; letting the request through");
                        return None;
                    }
                    Err(_) => {
                        tracing::warn!(
                            "rate limit not counted: Redis too slow; letting the request through"
                        );
                        return None;
                    }
                }
            }
        };
        Some(Quota::from_count(count, rate, now_ms))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The per-instance cap on distinct client IPs with a request in flight (an open event stream
/// counts until it closes).
pub struct ClientIps {
    max: usize,
    inflight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// Held while a request of `ip` is in flight.
pub struct IpGuard {
    ip: IpAddr,
    inflight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientIps {
    /// `max == 0` means no cap.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            inflight: Arc::default(),
        }
    }

    /// A guard for one more request of `ip`, or `None` when `ip` would be one client too many.
    pub fn enter(&self, ip: IpAddr) -> Option<IpGuard> {
        let mut map = self.inflight.lock().ok()?;
        if self.max > 0 && !map.contains_key(&ip) && map.len() >= self.max {
            return None;
        }
        *map.entry(ip).or_insert(0) += 1;
        Some(IpGuard {
            ip,
            inflight: self.inflight.clone(),
        })
    }

    /// Distinct IPs with a request in flight now.
    pub fn connected(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inflight.lock()
            && let Some(n) = map.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> RateLimiter {
        RateLimiter::Local(Mutex::new(HashMap::new()))
    }

    #[tokio::test]
    async fn a_window_admits_max_hits_then_refuses() {
        let rl = local();
        let rate = Rate {
            max: 3,
            window_seconds: 3600,
        };
        let s = Subject::Company(Uuid::now_v7());
        let mut remaining = Vec::new();
        for _ in 0..4 {
            let q = rl.hit(s, rate).await.expect("limited");
            remaining.push((q.allowed, q.remaining));
        }
        assert_eq!(remaining, vec![(true, 2), (true, 1), (true, 0), (false, 0)]);
        // Another subject has its own window.
        let other = rl
            .hit(Subject::Company(Uuid::now_v7()), rate)
            .await
            .expect("limited");
        assert!(other.allowed);
        assert_eq!(other.remaining, 2);
    }

    #[tokio::test]
    async fn conversations_of_different_companies_do_not_share_a_count() {
        let rl = local();
        let rate = Rate {
            max: 1,
            window_seconds: 3600,
        };
        let conversation_id = Uuid::now_v7();
        let a = Subject::Conversation {
            company_id: Uuid::now_v7(),
            conversation_id,
        };
        let b = Subject::Conversation {
            company_id: Uuid::now_v7(),
            conversation_id,
        };
        assert!(rl.hit(a, rate).await.is_some_and(|q| q.allowed));
        assert!(rl.hit(b, rate).await.is_some_and(|q| q.allowed));
        assert!(rl.hit(a, rate).await.is_some_and(|q| !q.allowed));
    }

    #[tokio::test]
    async fn zero_means_unlimited() {
        let rate = Rate {
            max: 0,
            window_seconds: 1,
        };
        assert!(
            local()
                .hit(Subject::Company(Uuid::now_v7()), rate)
                .await
                .is_none()
        );
    }

    #[test]
    fn reset_is_the_end_of_the_window() {
        let rate = Rate {
            max: 10,
            window_seconds: 60,
        };
        let q = Quota::from_count(11, rate, 1_000_030_500);
        assert!(!q.allowed);
        assert_eq!(q.reset_unix, 1_000_080);
        assert_eq!(q.retry_after_ms, 49_500);
        assert_eq!(q.retry_after_seconds(), 50);
    }

    #[test]
    fn the_ip_cap_counts_distinct_addresses_in_flight() {
        let ips = ClientIps::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        let a1 = ips.enter(a).expect("a");
        let _a2 = ips.enter(a).expect("a again: same client");
        let b1 = ips.enter(b).expect("b");
        assert!(ips.enter(c).is_none(), "a third client is refused");
        drop(b1);
        let _c1 = ips.enter(c).expect("c once b is gone");
        drop(a1);
        assert_eq!(ips.connected(), 2, "a still has one request in flight");
        assert!(ips.enter(b).is_none());
    }
}
