//! `spawn_app()`: a real server on 127.0.0.1:0 with a fresh database, and a typed client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cortex::auth::password;
use cortex::config::Config;
use cortex::state::AppState;
use cortex::store::{CompanyStore, Role, UserStore};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@test.local";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one `async fn(Backend)` test on every backend, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::helpers::Backend::Postgres).await } )*
        }
    };
}

pub fn postgres_base_url() -> String {
    std::env::var("CORTEX_TEST_DATABASE_URL")
        // PostgreSQL with pgvector (scripts/pgvector.sh); Debian's PostgreSQL lacks the extension.
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/test".into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh PostgreSQL schema for one test; schemas left by runs over an hour old are dropped.
pub async fn fresh_postgres_schema() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let base = postgres_base_url();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL must be reachable at {base} for the test suite: {e}")
        });
    let now = unix_now();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'cortex\\_t\\_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for name in stale {
        let ts = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        if ts + 3600 < now {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            )))
            .execute(&pool)
            .await;
        }
    }
    let schema = format!(
        "cortex_t_{now}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    // `public` stays on the path: the pgvector extension (type and operators) lives there.
    format!("{base}{sep}options=-c%20search_path%3D{schema},public")
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub database_url: String,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// A database of its own that a second app can be started on: a SQLite file, or a fresh
/// PostgreSQL schema.
pub async fn database_that_outlives_the_app(b: Backend) -> String {
    match b {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap().keep();
            format!("sqlite://{}?mode=rwc", dir.join("cortex.db").display())
        }
        Backend::Postgres => fresh_postgres_schema().await,
    }
}

pub const TEST_JWT_SECRET: &str = "test-signing-secret-0123456789abcdefghij";

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.database_url = Some(match backend {
        Backend::Sqlite => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("cortex.db").display()
        ),
        Backend::Postgres => fresh_postgres_schema().await,
    });
    // On PostgreSQL the session secret is configured (or sealed with a configured key): the
    // nodes of a test that share a database share it.
    if backend == Backend::Postgres {
        config.auth.jwt_secret = Some(SecretString::from(TEST_JWT_SECRET));
    }
    config.auth.bootstrap_email = ADMIN_EMAIL.into();
    config.auth.bootstrap_password = Some(SecretString::from(ADMIN_PASSWORD));
    config.shutdown.drain_seconds = 5.0;
    // The server runs in-process here: documents are converted by the real `cortex` binary's
    // hidden worker subcommand, as in production.
    config.knowledge.worker_command = vec![
        env!("CARGO_BIN_EXE_cortex").into(),
        cortex::knowledge::WORKER_SUBCOMMAND.into(),
    ];
    // The chat tests script the fake model step by step; a background extraction call would
    // consume their steps. The memory tests turn it on.
    config.memory.extract_facts = false;
    tweak(&mut config);
    config.validate().unwrap();
    let database_url = config.effective_database_url();
    let state = cortex::server::init(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    let server = tokio::spawn(cortex::server::serve(state.clone(), listener, async move {
        signal.cancelled().await
    }));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        state,
        database_url,
        shutdown,
        server: Some(server),
        _dir: dir,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Assert the contract's error envelope and return its message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["success"], json!(false), "body: {}", self.body);
        assert_eq!(
            self.body["error"]["code"],
            json!(code),
            "body: {}",
            self.body
        );
        self.body["error"]["message"].as_str().unwrap().to_string()
    }
}

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(String),
    ApiKeyHeader(String),
}

impl TestApp {
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.client.request(method, format!("{}{path}", self.base));
        rb = match auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::ApiKeyHeader(k) => rb.header("x-api-key", k),
        };
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.request(Method::GET, path, auth, None).await
    }

    pub async fn post(&self, path: &str, auth: &Auth, body: Value) -> Resp {
        self.request(Method::POST, path, auth, Some(body)).await
    }

    pub async fn delete(&self, path: &str, auth: &Auth) -> Resp {
        self.request(Method::DELETE, path, auth, None).await
    }

    pub async fn login_as(&self, email: &str, password: &str) -> Auth {
        let r = self
            .post(
                "/portal/api/login",
                &Auth::None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, 200, "login failed: {}", r.body);
        Auth::Bearer(r.body["token"].as_str().unwrap().to_string())
    }

    /// A session of the bootstrap admin.
    pub async fn admin(&self) -> Auth {
        self.login_as(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Create a key with the given session; returns the whole creation response.
    pub async fn create_key(&self, session: &Auth, body: Value) -> Value {
        let r = self.post("/portal/api/keys", session, body).await;
        assert_eq!(r.status, 201, "create key: {}", r.body);
        r.body
    }

    /// A bearer credential: a new key of the bootstrap admin's company with only `scopes`.
    pub async fn key_with_scopes(&self, session: &Auth, scopes: &[&str]) -> Auth {
        let created = self
            .create_key(session, json!({"name": scopes.join("+"), "scopes": scopes}))
            .await;
        Auth::Bearer(created["key"].as_str().unwrap().to_string())
    }

    /// A second, unrelated company with its own admin; returns (company id, session).
    pub async fn other_company(&self) -> (Uuid, Auth) {
        let company = self
            .state
            .store
            .create_company("Other Co", "free")
            .await
            .unwrap();
        let email = format!("admin-{}@other.test", Uuid::new_v4().simple());
        let hash = password::hash("other-password-123").unwrap();
        self.state
            .store
            .create_user(company.id, &email, &hash, Role::Admin)
            .await
            .unwrap();
        (
            company.id,
            self.login_as(&email, "other-password-123").await,
        )
    }

    /// A direct database connection for arranging states the API cannot (expired keys).
    pub async fn raw_db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.database_url)
            .await
            .unwrap()
    }

    /// Ask the server to stop, as SIGTERM would.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Wait until the server task ends; returns its result.
    pub async fn stopped(mut self) -> anyhow::Result<()> {
        let handle = self.server.take().unwrap();
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("server did not stop")
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Model configuration pointing every tier at a fake server: tier `t` uses model `m-t`.
pub fn fake_llm(base_url: &str, retries: u32, timeout_secs: f64) -> cortex_llm::LlmConfig {
    let tiers: serde_json::Map<String, Value> = ["speed", "nano", "sonnet", "complex", "search"]
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!([{"provider": "fake", "model": format!("m-{t}")}]),
            )
        })
        .collect();
    serde_json::from_value(json!({
        "providers": {"fake": {"kind": "openai", "base_url": base_url, "api_key": "sk-test",
            "timeout_secs": timeout_secs, "retries": retries, "max_retry_after_secs": 2.0}},
        "tiers": tiers,
        "prices": {"m-nano": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
    }))
    .unwrap()
}

impl TestApp {
    /// The bootstrap company's id.
    pub async fn company_id(&self, session: &Auth) -> String {
        self.get("/v1/me", session).await.body["company_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Create an agent and return its id.
    pub async fn create_agent(&self, session: &Auth, body: Value) -> String {
        let r = self.post("/v1/agents", session, body).await;
        assert_eq!(r.status, 201, "create agent: {}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// A `/v1/chat` body.
    pub fn chat_body(company: &str, agent: &str, conversation: &str, message: &str) -> Value {
        json!({"company_id": company, "agent_id": agent, "conversation_id": conversation,
               "customer_id": "cust_1", "message": message})
    }
}

/// Poll `f` until it returns `Some`, for effects that happen in the background.
pub async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 5 s");
}

type Calls = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>;
type Headers = std::sync::Arc<std::sync::Mutex<Vec<std::collections::BTreeMap<String, String>>>>;

/// A webhook receiver that records every call (and its headers) and answers
/// `{"status": "shipped", …}`; `POST /oauth/token` answers an OAuth 2 token.
pub struct Receiver {
    pub base: String,
    calls: Calls,
    headers: Headers,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::extract::{Request, State};
        let calls: Calls = Default::default();
        let headers: Headers = Default::default();
        let app = axum::Router::new()
            .fallback(
                |State((calls, headers)): State<(Calls, Headers)>, req: Request| async move {
                    let method = req.method().to_string();
                    let uri = req.uri().to_string();
                    let seen = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                        .await
                        .unwrap_or_default();
                    let form = String::from_utf8_lossy(&body).into_owned();
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::String(form));
                    calls.lock().unwrap().push((method, uri.clone(), body));
                    headers.lock().unwrap().push(seen);
                    if uri == "/oauth/token" {
                        let n = calls.lock().unwrap().iter().filter(|c| c.1 == "/oauth/token").count();
                        return axum::Json(json!({"access_token": format!("at-{n}"), "token_type": "Bearer", "expires_in": 3600}));
                    }
                    axum::Json(json!({"status": "shipped", "eta": "2026-05-14", "path": uri}))
                },
            )
            .with_state((calls.clone(), headers.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base,
            calls,
            headers,
            _task: task,
        }
    }

    /// `(method, path and query, JSON body)` of every call so far (a form body as a string).
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        self.calls.lock().unwrap().clone()
    }

    /// The headers of every call so far, names in lower case.
    pub fn headers(&self) -> Vec<std::collections::BTreeMap<String, String>> {
        self.headers.lock().unwrap().clone()
    }
}

/// The HTTP side of a real `cortex` process (the binary, not an in-process app), signed in as the
/// bootstrap admin with a portal session.
pub struct NodeClient {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl NodeClient {
    pub async fn sign_in(client: reqwest::Client, base: String) -> Self {
        let login: Value = client
            .post(format!("{base}/portal/api/login"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().unwrap().to_string();
        NodeClient {
            client,
            base,
            token,
        }
    }

    /// `GET path` with the session; the JSON answer.
    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// `POST path` with a JSON body and the session; the JSON answer.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }
}
