//! The state every handler shares: configuration, store, signing keys, lifecycle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::actions::tools::ToolExecutor;
use crate::agents::ConfigCache;
use crate::auth::jwt::JwtKeys;
use crate::config::Config;
use crate::store::SqlStore;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Arc<Config>,
    pub store: SqlStore,
    pub jwt: JwtKeys,
    /// ES256 tokens of an external identity provider, when `auth.jwks_url` is set.
    pub jwks: Option<crate::auth::jwks::Jwks>,
    pub instance_id: String,
    /// The configured models; `None` means the built-in extractive responder answers.
    pub llm: Option<Arc<cortex_llm::TieredClient>>,
    /// Runs the tool calls of stage 07.
    pub tools: Arc<dyn ToolExecutor>,
    /// The same executor, concretely: post-response actions and `/v1/actions/{id}/test`.
    pub actions: Arc<crate::actions::ActionTools>,
    /// The knowledge base: embedders, vector indexes, conversion worker, URL fetcher.
    pub knowledge: Arc<crate::knowledge::Knowledge>,
    /// Stage 05's answer cache (its embedder, and on SQLite the agents' in-memory indexes).
    pub cache: Arc<crate::pipeline::cache::AnswerCache>,
    /// Seals connection credentials; `None` on PostgreSQL without `secrets.encryption_key`.
    pub secrets: Option<Arc<crate::secrets::SecretBox>>,
    /// Project workspaces and isolated commands.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
    /// Stage 01's cache of loaded agents.
    pub agent_cache: ConfigCache,
    /// In-process, or Redis when scaled out.
    pub coord: crate::coord::Coordinator,
    /// Request-rate windows (in Redis when scaled out).
    pub rate: crate::limits::RateLimiter,
    /// The per-instance cap on concurrently connected client IPs.
    pub client_ips: crate::limits::ClientIps,
    /// This node's running totals for `/v1/metrics/dashboard`.
    pub dashboard: crate::telemetry::Dashboard,
    /// Cached handles of the per-route request counters.
    pub http_metrics: crate::telemetry::HttpMetrics,
    /// Agent runs executing on this node, and mirrors of other nodes' runs for viewers here.
    pub runs: crate::runs::Runs,
    /// Background work (key touches, later: memory extraction, runs) that shutdown waits for.
    pub tasks: TaskTracker,
    /// Cancelled when the node begins shutting down.
    pub shutdown: CancellationToken,
    shutting_down: AtomicBool,
    /// Companies last seen unmetered (no credit balance), and when: a chat skips the balance
    /// read for a second after (see [`AppState::is_out_of_credits`]).
    unmetered: std::sync::Mutex<HashMap<Uuid, Instant>>,
    /// API keys verified recently (no database read per request; revocation clears them).
    pub keys: crate::auth::key_cache::KeyCache,
    /// When this node last wrote `last_used_at` per key, so bursts cause one write, not many.
    key_touches: std::sync::Mutex<HashMap<Uuid, Instant>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        store: SqlStore,
        jwt: JwtKeys,
        instance_id: String,
        llm: Option<Arc<cortex_llm::TieredClient>>,
        actions: Arc<crate::actions::ActionTools>,
        coord: crate::coord::Coordinator,
        knowledge: Arc<crate::knowledge::Knowledge>,
        secrets: Option<Arc<crate::secrets::SecretBox>>,
        sandbox: Arc<crate::sandbox::Sandbox>,
    ) -> Self {
        let client_ips = crate::limits::ClientIps::new(config.limits.max_client_ips);
        let keys = crate::auth::key_cache::KeyCache::new(
            10_000,
            std::time::Duration::from_secs(config.auth.api_key_cache_seconds),
        );
        let jwks = config.auth.jwks().map(crate::auth::jwks::Jwks::new);
        let cache = Arc::new(
            crate::pipeline::cache::AnswerCache::new(&knowledge.registry, store.backend())
                .with_max_entries(config.cache.max_entries_per_agent),
        );
        Self(Arc::new(Inner {
            cache,
            config,
            store,
            jwt,
            jwks,
            instance_id,
            llm,
            tools: actions.clone(),
            actions,
            knowledge,
            secrets,
            sandbox,
            agent_cache: ConfigCache::default(),
            rate: crate::limits::RateLimiter::for_coordinator(&coord),
            client_ips,
            dashboard: crate::telemetry::Dashboard::default(),
            http_metrics: crate::telemetry::HttpMetrics::default(),
            coord,
            runs: crate::runs::Runs::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            shutting_down: AtomicBool::new(false),
            unmetered: std::sync::Mutex::new(HashMap::new()),
            keys,
            key_touches: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Health turns 503 from here on; background work is asked to stop.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
    }

    /// Drop an agent's cached configuration (after an update or delete).
    pub async fn invalidate_agent(&self, agent_id: Uuid) {
        self.coord
            .invalidate_agent(&self.agent_cache, agent_id)
            .await;
    }

    /// Whether a company is metered and at or below zero credits. An unmetered company (the
    /// common case) is remembered for a second, so a burst of chats costs one balance read per
    /// second, not one each; a metered company's balance is read every time, so its `402` is
    /// exact. An operator's `cortex admin credits` reaches a node within a second.
    pub async fn is_out_of_credits(
        &self,
        company_id: Uuid,
    ) -> Result<bool, crate::store::StoreError> {
        use crate::store::RunStore;
        const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
        let now = Instant::now();
        if let Ok(map) = self.unmetered.lock()
            && map
                .get(&company_id)
                .is_some_and(|at| now.duration_since(*at) < FRESH)
        {
            return Ok(false);
        }
        let credits = self.store.credits(company_id).await?;
        if credits.is_none()
            && let Ok(mut map) = self.unmetered.lock()
        {
            if map.len() > 100_000 {
                map.retain(|_, at| now.duration_since(*at) < FRESH);
            }
            map.insert(company_id, now);
        }
        Ok(credits.is_some_and(|c| c <= 0))
    }

    /// Whether this node should write `last_used_at` for a key now (at most once per interval).
    pub fn claim_key_touch(&self, key_id: Uuid, interval: std::time::Duration) -> bool {
        let now = Instant::now();
        let Ok(mut map) = self.key_touches.lock() else {
            return false;
        };
        match map.get(&key_id) {
            Some(last) if now.duration_since(*last) < interval => false,
            _ => {
                if map.len() > 100_000 {
                    map.retain(|_, t| now.duration_since(*t) < interval);
                }
                map.insert(key_id, now);
                true
            }
        }
    }
}
