//! In-process per-key rate limits (sliding window log) for actions.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many checks pass between sweeps of idle keys.
const SWEEP_EVERY: u64 = 1024;

/// A rate limit as stored with an action: `{"max_calls": 10, "window_seconds": 60}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Calls allowed per window (0 allows none).
    pub max_calls: u32,
    /// Window length in seconds (0 disables the limit).
    pub window_seconds: u64,
}

impl RateLimit {
    /// The window as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_seconds)
    }
}

/// A refused call: how long until one more call would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct RetryAfter {
    /// Time until the oldest call in the window leaves it.
    pub wait: Duration,
}

impl RetryAfter {
    /// The wait in whole seconds, rounded up (for a `Retry-After` header), at least 1.
    pub fn seconds(&self) -> u64 {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        secs.max(1)
    }

    /// The wait in milliseconds, rounded up.
    pub fn millis(&self) -> u64 {
        let ms = self.wait.as_micros().div_ceil(1000);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit exceeded; retry after {} s", self.seconds())
    }
}

#[derive(Debug)]
struct Window {
    length: Duration,
    calls: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<String, Window>,
    checks: u64,
}

/// A sliding-window-log rate limiter keyed by string (e.g. `"{company}:{action_id}"`).
///
/// A call is allowed when fewer than `max_calls` calls were allowed for the key during the last
/// `window`; refused calls are not counted. Keys idle for longer than their window are dropped.
#[derive(Debug, Default)]
pub struct RateLimiter {
    state: Mutex<State>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a call for `key` if allowed now, else tells how long to wait.
    pub fn check(&self, key: &str, max_calls: u32, window: Duration) -> Result<(), RetryAfter> {
        self.check_at(key, max_calls, window, Instant::now())
    }

    /// [`RateLimiter::check`] with an action's stored [`RateLimit`].
    pub fn check_limit(&self, key: &str, limit: RateLimit) -> Result<(), RetryAfter> {
        self.check(key, limit.max_calls, limit.window())
    }

    /// [`RateLimiter::check`] at a given instant (`now` must not go backwards for a key).
    pub fn check_at(
        &self,
        key: &str,
        max_calls: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        if window.is_zero() {
            return Ok(());
        }
        if max_calls == 0 {
            return Err(RetryAfter { wait: window });
        }
        let mut state = self.lock();
        state.checks += 1;
        if state.checks.is_multiple_of(SWEEP_EVERY) {
            state.keys.retain(|_, w| {
                w.calls
                    .back()
                    .is_some_and(|last| now.saturating_duration_since(*last) < w.length)
            });
        }
        let entry = state.keys.entry(key.to_string()).or_insert_with(|| Window {
            length: window,
            calls: VecDeque::new(),
        });
        entry.length = window;
        while let Some(first) = entry.calls.front() {
            if now.saturating_duration_since(*first) >= window {
                entry.calls.pop_front();
            } else {
                break;
            }
        }
        let max = usize::try_from(max_calls).unwrap_or(usize::MAX);
        if entry.calls.len() >= max {
            // The call that must leave the window before another fits.
            let idx = entry.calls.len() - max;
            let wait = entry
                .calls
                .get(idx)
                .map_or(window, |t| (*t + window).saturating_duration_since(now));
            return Err(RetryAfter { wait });
        }
        entry.calls.push_back(now);
        Ok(())
    }

    /// Calls still allowed for `key` in the current window.
    pub fn remaining(&self, key: &str, max_calls: u32, window: Duration) -> u32 {
        let now = Instant::now();
        let state = self.lock();
        let used = state.keys.get(key).map_or(0, |w| {
            w.calls
                .iter()
                .filter(|t| now.saturating_duration_since(**t) < window)
                .count()
        });
        max_calls.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
    }

    /// Forgets the calls of `key`.
    pub fn reset(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    /// Number of keys tracked.
    pub fn tracked_keys(&self) -> usize {
        self.lock().keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_up_to_max_then_refuses_until_window_slides() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        for i in 0..3 {
            assert!(rl.check_at("k", 3, w, t0 + Duration::from_secs(i)).is_ok());
        }
        let err = rl
            .check_at("k", 3, w, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(err.wait, Duration::from_secs(50));
        assert_eq!(err.seconds(), 50);
        // Other keys are independent.
        assert!(
            rl.check_at("other", 3, w, t0 + Duration::from_secs(10))
                .is_ok()
        );
        // Refused calls are not counted: the first call leaves at t0+60.
        assert!(
            rl.check_at("k", 3, w, t0 + Duration::from_secs(59))
                .is_err()
        );
        assert!(rl.check_at("k", 3, w, t0 + Duration::from_secs(60)).is_ok());
        assert!(
            rl.check_at("k", 3, w, t0 + Duration::from_secs(60))
                .is_err()
        );
        assert!(rl.check_at("k", 3, w, t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn zero_limits() {
        let rl = RateLimiter::new();
        assert!(rl.check("k", 0, Duration::from_secs(5)).is_err());
        for _ in 0..100 {
            assert!(rl.check("k", 1, Duration::ZERO).is_ok());
        }
    }

    #[test]
    fn remaining_and_reset() {
        let rl = RateLimiter::new();
        let w = Duration::from_secs(60);
        let limit = RateLimit {
            max_calls: 2,
            window_seconds: 60,
        };
        assert_eq!(rl.remaining("a", 2, w), 2);
        rl.check_limit("a", limit).unwrap();
        assert_eq!(rl.remaining("a", 2, w), 1);
        rl.check_limit("a", limit).unwrap();
        let refused = rl.check_limit("a", limit).unwrap_err();
        assert!(refused.wait <= w && refused.wait > Duration::from_secs(59));
        assert!(
            refused.to_string().contains("retry after 60 s"),
            "{refused}"
        );
        rl.reset("a");
        assert!(rl.check_limit("a", limit).is_ok());
    }

    #[test]
    fn idle_keys_are_swept() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        let w = Duration::from_secs(1);
        for i in 0..SWEEP_EVERY - 1 {
            rl.check_at(&format!("k{i}"), 1, w, t0).unwrap();
        }
        assert_eq!(rl.tracked_keys(), (SWEEP_EVERY - 1) as usize);
        rl.check_at("late", 1, w, t0 + Duration::from_secs(5))
            .unwrap();
        assert_eq!(rl.tracked_keys(), 1);
    }

    #[test]
    fn retry_after_rounding() {
        let r = RetryAfter {
            wait: Duration::from_millis(1500),
        };
        assert_eq!(r.seconds(), 2);
        assert_eq!(r.millis(), 1500);
        let r = RetryAfter {
            wait: Duration::from_millis(10),
        };
        assert_eq!(r.seconds(), 1);
    }
}
