//! Configuration: defaults → optional TOML file → `CORTEX_…` environment (`__` nests), validated once.
//!
//! `DATABASE_URL` and `REDIS_URL` are also read unprefixed, as every hosting platform sets them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The whole configuration of one Cortex node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// Directory for the SQLite file, uploads and local indexes (created if missing).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; empty means `sqlite://<data_dir>/cortex.db`.
    pub database_url: Option<String>,
    /// `redis://…`: coordination between nodes (config-cache invalidation). Empty: single node.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so several installations can share one Redis.
    pub redis_prefix: String,
    /// Stable name of this node in health answers and logs; random when empty.
    pub instance_id: Option<String>,
    pub auth: AuthConfig,
    pub cors: CorsConfig,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    pub network: NetworkConfig,
    /// Model providers and tiers. Empty: the `OPENAI_…`/`ANTHROPIC_…` environment conventions,
    /// or else the built-in extractive responder.
    #[serde(skip_serializing)]
    pub llm: cortex_llm::LlmConfig,
    /// Named embedding models (`[embeddings]`). Empty: `hash` (with `bge-m3` as its alias).
    #[serde(skip_serializing)]
    pub embeddings: cortex_embed::EmbeddingsConfig,
    pub knowledge: KnowledgeConfig,
    pub cache: CacheConfig,
    pub memory: MemoryConfig,
    pub secrets: SecretsConfig,
    pub sdk: SdkConfig,
    pub runs: RunsConfig,
    pub sandbox: SandboxConfig,
    /// Plans by name (`free`, `pro`, `enterprise`, or any other): limits and model access.
    pub plans: std::collections::BTreeMap<String, PlanConfig>,
    /// The configuration file this was read from (hidden from sandboxed commands).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Per-project workspaces and the isolation of `run_command`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Where project workspaces live; empty: `<data_dir>/workspaces`. Scaled out, a volume every
    /// node mounts at the same path.
    pub workspace_root: Option<PathBuf>,
    /// The bubblewrap executable (a name is looked up on `PATH`).
    pub bwrap: PathBuf,
    /// Run commands without isolation when bubblewrap does not work here. Never the default.
    pub allow_unsandboxed: bool,
    /// Bytes one workspace may hold (uploads and `write_file` beyond it are refused).
    pub max_workspace_bytes: u64,
    /// `run_command`'s wall clock when the model gives none, in seconds.
    pub command_timeout_seconds: u64,
    /// The largest `timeout_seconds` a model may ask for.
    pub max_command_timeout_seconds: u64,
    /// CPU seconds of one command (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Address space of each process of a command, in bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes of the sandbox user at once (`RLIMIT_NPROC`): a fork bomb ends there.
    pub max_processes: u64,
    /// Output a command may produce; beyond it the command is stopped.
    pub max_output_bytes: u64,
    /// Size of each command's private `/tmp` (memory-backed), in bytes.
    pub tmp_bytes: u64,
    /// Characters of a built-in tool's result the model sees; the rest is cut with a note.
    pub tool_result_chars: usize,
    /// The host user commands run as when the server runs as root.
    pub uid: u32,
    pub gid: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            workspace_root: None,
            bwrap: PathBuf::from("bwrap"),
            allow_unsandboxed: false,
            max_workspace_bytes: 1024 * 1024 * 1024,
            command_timeout_seconds: 60,
            max_command_timeout_seconds: 600,
            cpu_seconds: 300,
            memory_bytes: 2 * 1024 * 1024 * 1024,
            max_processes: 256,
            max_output_bytes: 4 * 1024 * 1024,
            tmp_bytes: 256 * 1024 * 1024,
            tool_result_chars: 20_000,
            uid: 65534,
            gid: 65534,
        }
    }
}

/// Asynchronous agent runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunsConfig {
    /// Model calls per run; at the limit the model is asked for a final answer without tools.
    pub max_steps: u32,
    /// Wall-clock bound of one run; beyond it the run ends `failed` with error `timeout`.
    pub max_seconds: u64,
    /// A run whose node has not renewed its lease for this long is finalised by another node.
    pub lease_seconds: u64,
    /// Run events are kept this many days after the run ended.
    pub event_retention_days: u64,
    /// Largest file of `files[]` on `/v1/agent/start`, in bytes.
    pub max_file_bytes: usize,
    /// Largest total of `files[]` on one start, in bytes.
    pub max_upload_bytes: usize,
}

impl Default for RunsConfig {
    fn default() -> Self {
        Self {
            max_steps: 25,
            max_seconds: 3600,
            lease_seconds: 30,
            event_retention_days: 30,
            max_file_bytes: 50 * 1024 * 1024,
            max_upload_bytes: 60 * 1024 * 1024,
        }
    }
}

/// What a plan allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Runs of one company running at once.
    pub concurrent_runs: u32,
    /// Threads one company may have; absent: unlimited.
    #[serde(default)]
    pub threads: Option<u64>,
    /// Model tiers the plan may use (`speed`, `nano`, `sonnet`, `complex`, `search`, or `all`).
    pub tiers: Vec<String>,
}

impl PlanConfig {
    /// Whether the plan includes `tier`.
    pub fn allows(&self, tier: &str) -> bool {
        self.tiers.iter().any(|t| t == "all" || t == tier)
    }
}

/// The default plans.
pub fn default_plans() -> std::collections::BTreeMap<String, PlanConfig> {
    let plan = |runs: u32, threads: Option<u64>, tiers: &[&str]| PlanConfig {
        concurrent_runs: runs,
        threads,
        tiers: tiers.iter().map(|t| (*t).to_owned()).collect(),
    };
    [
        ("free".to_owned(), plan(1, Some(10), &["speed"])),
        (
            "pro".to_owned(),
            plan(3, Some(100), &["speed", "nano", "sonnet"]),
        ),
        ("enterprise".to_owned(), plan(10, None, &["all"])),
    ]
    .into_iter()
    .collect()
}

impl Config {
    /// The limits of plan `name` (an unknown name gets the `free` plan's limits).
    pub fn plan(&self, name: &str) -> PlanConfig {
        self.plans
            .get(name)
            .or_else(|| self.plans.get("free"))
            .cloned()
            .unwrap_or_else(|| PlanConfig {
                concurrent_runs: 1,
                threads: Some(10),
                tiers: vec!["speed".into()],
            })
    }
}

/// The embeddable widget.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdkConfig {
    /// Lifetime of an `sdk_…` session token from `/v1/sdk/init`.
    pub token_ttl_seconds: u64,
}

impl Default for SdkConfig {
    fn default() -> Self {
        Self {
            token_ttl_seconds: 3600,
        }
    }
}

/// Encryption of secrets at rest (connection credentials).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32 bytes in base64 (`openssl rand -base64 32`). Required on PostgreSQL for connections;
    /// on SQLite a key file in the data directory is used when it is not set.
    #[serde(serialize_with = "ser_secret_opt")]
    pub encryption_key: Option<SecretString>,
}

/// Customer memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// After a turn of an agent with memory enabled (and a model configured), ask the model in
    /// the background for new durable facts about the customer.
    pub extract_facts: bool,
    /// The tier whose model extracts them (the cheapest is usually enough).
    pub extraction_tier: cortex_llm::Tier,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            extract_facts: true,
            extraction_tier: cortex_llm::Tier::Speed,
        }
    }
}

/// Stage 05's answer cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a cached answer (stored by a chat or by `/v1/cache/warm`) is served.
    pub ttl_seconds: u64,
    /// Drop an agent's cached answers when one of its knowledge sources changes (ingested,
    /// re-embedded or deleted), so answers never outlive the knowledge they came from.
    pub invalidate_on_knowledge_change: bool,
    /// Entries kept per agent; above it the least recently used are evicted: by the node
    /// that stores them, each time it has stored a tenth of the bound for the agent, and by the
    /// sweep.
    pub max_entries_per_agent: usize,
    /// How often each node sweeps expired entries, entries of a replaced embedding model, and
    /// agents over the bound (in the background, never on the chat path).
    pub sweep_seconds: u64,
    /// The least similarity a hit by meaning needs whatever an agent's `cache_threshold`:
    /// the scale of cosine similarity is the embedding model's (multilingual-e5-small puts
    /// unrelated questions of one language at 0.8), so a deployment sets the floor its default
    /// model needs. 0 leaves it to the agents.
    pub min_similarity: f32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl_seconds: 7 * 24 * 3600,
            invalidate_on_knowledge_change: true,
            max_entries_per_agent: 10_000,
            sweep_seconds: 60,
            min_similarity: 0.0,
        }
    }
}

impl CacheConfig {
    pub fn ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.ttl_seconds).unwrap_or(i64::MAX / 1000))
    }
}

/// Knowledge ingestion: the conversion worker, its bounds, and chunk sizes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeConfig {
    /// Program and arguments of the isolated conversion worker. Empty: this executable with the
    /// hidden `__ingest-worker` subcommand.
    pub worker_command: Vec<String>,
    /// Wall-clock and CPU bound of one conversion, in seconds.
    pub conversion_timeout_seconds: u64,
    /// Address-space bound of the conversion worker, in MiB.
    pub worker_memory_mb: u64,
    /// Chunk budget in tokens (cl100k_base), heading prefix included.
    pub chunk_max_tokens: usize,
    /// Tokens repeated from the end of one chunk at the start of the next.
    pub chunk_overlap_tokens: usize,
    /// Stage 03 leaves out chunks scoring below this (0–1): unrelated text stays out of the
    /// prompt. The search endpoint shows every score.
    pub min_score: f32,
    /// A document being ingested is marked alive every quarter of this many seconds; one left
    /// `processing` without a mark for this long (its process died) is failed by any node.
    pub ingestion_lease_seconds: u64,
    /// A source of at most this many chunks is searched from memory (read once per change of
    /// it; at most 16,384 chunks are held in all); 0 searches every source in the database.
    pub resident_chunks: usize,
}

impl KnowledgeConfig {
    /// `ingestion_lease_seconds` as a duration (at least one second).
    pub fn ingestion_lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.ingestion_lease_seconds.max(1))
    }
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self {
            worker_command: Vec::new(),
            conversion_timeout_seconds: 120,
            worker_memory_mb: 2048,
            chunk_max_tokens: 512,
            chunk_overlap_tokens: 64,
            min_score: 0.1,
            ingestion_lease_seconds: 120,
            resident_chunks: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 secret for portal session tokens. When empty, one is generated on the first start
    /// and kept in the database, so every node sharing the database agrees on it.
    #[serde(serialize_with = "ser_secret_opt")]
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of a portal session token, in seconds.
    pub jwt_ttl_seconds: u64,
    /// `last_used_at` of an API key is written at most once per this many seconds.
    pub api_key_touch_interval_seconds: u64,
    /// A verified API key is trusted from memory for at most this many seconds (0: every
    /// request reads the database). Revocation removes it at once on every node.
    pub api_key_cache_seconds: u64,
    /// Email of the first admin created on an empty database.
    pub bootstrap_email: String,
    /// Password of the first admin; generated and printed once when empty.
    #[serde(serialize_with = "ser_secret_opt")]
    pub bootstrap_password: Option<SecretString>,
    /// Also accept ES256 tokens of an external identity provider whose keys are published here.
    pub jwks_url: Option<String>,
    /// Required `iss` of those tokens.
    pub jwks_issuer: Option<String>,
    /// Required `aud` of those tokens.
    pub jwks_audience: Option<String>,
    /// The claim that holds the company id.
    pub jwks_company_claim: String,
    /// The claim that holds the role (`admin`, or anything else for a member).
    pub jwks_role_claim: String,
}

impl AuthConfig {
    pub fn jwks(&self) -> Option<crate::auth::jwks::JwksSettings> {
        self.jwks_url
            .as_ref()
            .map(|url| crate::auth::jwks::JwksSettings {
                url: url.clone(),
                issuer: self.jwks_issuer.clone(),
                audience: self.jwks_audience.clone(),
                company_claim: self.jwks_company_claim.clone(),
                role_claim: self.jwks_role_claim.clone(),
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins (`https://app.example.com`) or wildcard patterns (`https://*.example.com`).
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted JSON body, in bytes.
    pub json_body_bytes: usize,
    /// Largest accepted multipart upload, in bytes.
    pub upload_bytes: usize,
    /// Interval of `: heartbeat` comments on event streams, in seconds.
    pub sse_heartbeat_seconds: f64,
    /// Authenticated requests a company may make per `company_window_seconds` (0: unlimited).
    /// Counted in Redis when it is configured, so the limit holds across nodes.
    pub company_requests: u64,
    pub company_window_seconds: u64,
    /// Chat messages one conversation may send per `conversation_window_seconds` (0: unlimited).
    pub conversation_messages: u64,
    pub conversation_window_seconds: u64,
    /// Distinct client IPs this node serves at once (requests in flight, open streams);
    /// one more is answered 429. 0: no cap.
    pub max_client_ips: usize,
}

impl LimitsConfig {
    pub fn company_rate(&self) -> crate::limits::Rate {
        crate::limits::Rate {
            max: self.company_requests,
            window_seconds: self.company_window_seconds,
        }
    }

    pub fn conversation_rate(&self) -> crate::limits::Rate {
        crate::limits::Rate {
            max: self.conversation_messages,
            window_seconds: self.conversation_window_seconds,
        }
    }
}

/// Outbound requests (tool-call webhooks, URL ingestion).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Allow loopback, private, link-local and metadata addresses (development only).
    pub allow_private: bool,
    /// Host names or IP addresses allowed even though they are private (e.g. an internal API).
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After a stop signal, keep accepting connections this long while health answers 503,
    /// so load balancers take the node out of rotation.
    pub announce_seconds: f64,
    /// Then wait at most this long for in-flight requests before exiting.
    pub drain_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (structured, the default) or `pretty`.
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `cortex=debug,tower_http=info`.
    pub level: String,
    /// An OpenTelemetry collector's OTLP/HTTP address (`http://collector:4318`): spans of every
    /// request, pipeline stage, model call and tool call are exported there (protobuf, batched).
    /// None: no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

fn ser_secret_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            redis_url: None,
            redis_prefix: "cortex".into(),
            instance_id: None,
            auth: AuthConfig::default(),
            cors: CorsConfig::default(),
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            network: NetworkConfig::default(),
            llm: cortex_llm::LlmConfig::default(),
            embeddings: cortex_embed::EmbeddingsConfig::default(),
            knowledge: KnowledgeConfig::default(),
            cache: CacheConfig::default(),
            memory: MemoryConfig::default(),
            secrets: SecretsConfig::default(),
            sdk: SdkConfig::default(),
            runs: RunsConfig::default(),
            sandbox: SandboxConfig::default(),
            plans: default_plans(),
            source: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_ttl_seconds: 24 * 3600,
            api_key_touch_interval_seconds: 15 * 60,
            api_key_cache_seconds: 60,
            bootstrap_email: "admin@cortex.local".into(),
            bootstrap_password: None,
            jwks_url: None,
            jwks_issuer: None,
            jwks_audience: None,
            jwks_company_claim: "company_id".into(),
            jwks_role_claim: "role".into(),
        }
    }
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["http://localhost:3000".into()],
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            json_body_bytes: 1024 * 1024,
            upload_bytes: 60 * 1024 * 1024,
            sse_heartbeat_seconds: 15.0,
            company_requests: 100,
            company_window_seconds: 1,
            conversation_messages: 20,
            conversation_window_seconds: 60,
            max_client_ips: 25,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            // Long enough for a load balancer polling every second to see the 503.
            announce_seconds: 2.0,
            drain_seconds: 30.0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
            otlp_endpoint: None,
            service_name: "cortex".into(),
        }
    }
}

/// Invalid configuration: the message names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Load defaults, then the TOML file (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig
            .merge(Env::raw().only(&["DATABASE_URL", "REDIS_URL"]))
            .merge(
                Env::prefixed("CORTEX_")
                    .filter(|k| {
                        let k = k.as_str().to_ascii_lowercase();
                        // Not configuration: the config file's path and a CLI input, the two
                        // bootstrap variables (mapped below) and variables of the test tooling.
                        !(k == "config"
                            || k == "new_user_password"
                            || k.starts_with("bootstrap_")
                            || k.starts_with("test_")
                            || k.starts_with("skip_")
                            || k.starts_with("bench_")
                            // Read by the LLM crate's environment defaults.
                            || k.starts_with("openai_")
                            || k.starts_with("anthropic_")
                            || (k.starts_with("llm_") && !k.starts_with("llm__")))
                    })
                    .split("__"),
            )
            .merge(
                Env::prefixed("CORTEX_")
                    .only(&["BOOTSTRAP_EMAIL", "BOOTSTRAP_PASSWORD"])
                    .map(|k| format!("auth.{}", k.as_str().to_ascii_lowercase()).into()),
            );
        let mut cfg: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.source = file.map(Path::to_path_buf);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the values that deserialisation alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "database_url must start with sqlite:, postgres:// or postgresql://".into(),
            ));
        }
        if let Some(url) = &self.log.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(
                "log.otlp_endpoint must start with http:// or https:// (OTLP over HTTP)".into(),
            ));
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError(
                "redis_url must start with redis:// or rediss://".into(),
            ));
        }
        if self.auth.jwt_ttl_seconds == 0 {
            return Err(ConfigError("auth.jwt_ttl_seconds must be positive".into()));
        }
        if let Some(secret) = &self.auth.jwt_secret {
            use secrecy::ExposeSecret;
            if secret.expose_secret().len() < 32 {
                return Err(ConfigError(
                    "auth.jwt_secret must be at least 32 characters".into(),
                ));
            }
        }
        if let Some(url) = &self.auth.jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError(
                "auth.jwks_url must be an http:// or https:// URL".into(),
            ));
        }
        if !self.auth.bootstrap_email.contains('@') {
            return Err(ConfigError(
                "auth.bootstrap_email is not an email address".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.cache.min_similarity) {
            return Err(ConfigError(
                "cache.min_similarity must be between 0 and 1".into(),
            ));
        }
        for origin in &self.cors.allowed_origins {
            crate::api::cors::OriginPattern::parse(origin).map_err(ConfigError)?;
        }
        if self.limits.json_body_bytes == 0
            || self.limits.upload_bytes == 0
            || self.limits.sse_heartbeat_seconds.partial_cmp(&0.0)
                != Some(std::cmp::Ordering::Greater)
        {
            return Err(ConfigError("limits must be positive".into()));
        }
        if self.limits.company_window_seconds == 0 || self.limits.conversation_window_seconds == 0 {
            return Err(ConfigError(
                "limits.company_window_seconds and limits.conversation_window_seconds must be positive".into(),
            ));
        }
        if let Some(key) = &self.secrets.encryption_key {
            use secrecy::ExposeSecret;
            crate::secrets::decode_key(key.expose_secret()).map_err(ConfigError)?;
        }
        if self.sdk.token_ttl_seconds == 0 || self.sdk.token_ttl_seconds > 86_400 {
            return Err(ConfigError(
                "sdk.token_ttl_seconds must lie between 1 and 86400".into(),
            ));
        }
        if self.runs.max_steps == 0
            || self.runs.max_seconds == 0
            || self.runs.lease_seconds < 3
            || self.runs.max_file_bytes == 0
            || self.runs.max_upload_bytes == 0
        {
            return Err(ConfigError(
                "runs: max_steps, max_seconds, max_file_bytes and max_upload_bytes must be positive and lease_seconds at least 3".into(),
            ));
        }
        let sb = &self.sandbox;
        if sb.max_workspace_bytes == 0
            || sb.command_timeout_seconds == 0
            || sb.max_command_timeout_seconds < sb.command_timeout_seconds
            || sb.cpu_seconds == 0
            || sb.memory_bytes < 64 * 1024 * 1024
            || sb.max_processes < 8
            || sb.max_output_bytes == 0
            || sb.tmp_bytes == 0
            || sb.tool_result_chars < 200
        {
            return Err(ConfigError(
                "sandbox: limits must be positive, max_command_timeout_seconds >= command_timeout_seconds, memory_bytes >= 64 MiB, max_processes >= 8, tool_result_chars >= 200".into(),
            ));
        }
        for (name, plan) in &self.plans {
            for tier in &plan.tiers {
                if tier != "all" && tier.parse::<cortex_llm::Tier>().is_err() {
                    return Err(ConfigError(format!(
                        "plans.{name}.tiers: unknown tier {tier:?}"
                    )));
                }
            }
        }
        if self.cache.max_entries_per_agent == 0 || self.cache.sweep_seconds == 0 {
            return Err(ConfigError(
                "cache.max_entries_per_agent and cache.sweep_seconds must be positive".into(),
            ));
        }
        if self.cache.ttl_seconds == 0 {
            return Err(ConfigError("cache.ttl_seconds must be positive".into()));
        }
        if !(self.shutdown.drain_seconds >= 0.0 && self.shutdown.announce_seconds >= 0.0) {
            return Err(ConfigError("shutdown times must be non-negative".into()));
        }
        if !self.llm.is_empty() {
            self.llm
                .validate()
                .map_err(|e| ConfigError(format!("llm: {e}")))?;
        }
        if self.knowledge.conversion_timeout_seconds == 0
            || self.knowledge.worker_memory_mb < 64
            || self.knowledge.chunk_max_tokens < 32
            || self.knowledge.chunk_overlap_tokens * 2 > self.knowledge.chunk_max_tokens
            || !(0.0..=1.0).contains(&self.knowledge.min_score)
        {
            return Err(ConfigError(
                "knowledge: conversion_timeout_seconds > 0, worker_memory_mb >= 64, chunk_max_tokens >= 32, chunk_overlap_tokens <= chunk_max_tokens / 2 and min_score within 0–1".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError(format!("log.level: {e}")))?;
        Ok(())
    }

    /// Where project workspaces live.
    pub fn workspace_root(&self) -> PathBuf {
        self.sandbox
            .workspace_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("workspaces"))
    }

    /// The database URL actually used: the configured one or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.is_empty() => url.clone(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("cortex.db").display()
            ),
        }
    }
}
