//! Storage: one SQL store over SQLite (embedded) or PostgreSQL (scaled out), split into traits per
//! area. Every method that reads or writes tenant data takes the company id first; the only
//! unscoped look-ups are the authentication ones (`find_user_by_email`, `find_key_by_hash`), which
//! establish the company in the first place.
//!
//! Queries are written once in portable SQL (`$n` parameters, text ids and timestamps) and run
//! through sqlx's `Any` driver; each backend keeps its own migrations directory.

mod actions;
mod agents;
mod api_keys;
mod cache;
mod companies;
mod connections;
mod conversations;
pub(crate) mod direct;
pub(crate) use direct::read_session;
mod knowledge;
mod memory;
mod public_keys;
mod runs;
mod users;
pub(crate) mod word_counts;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use uuid::Uuid;

pub use actions::ActionStore;
pub use agents::AgentStore;
pub use api_keys::{ApiKey, ApiKeyStore, NewApiKey};
pub use cache::{CacheEntry, CacheStore, NewCacheEntry, Removed};
pub use companies::{Company, CompanyStore};
pub use connections::{Connection, ConnectionStore};
pub use conversations::{CallCost, ConversationStore, StoredMessage, Turn};
pub use knowledge::{
    COMMON_WORD_ROWS, EmbeddingInfo, KnowledgeStore, decode_vector, encode_vector,
};
pub use memory::{Fact, MemoryStore, NewFact};
pub use public_keys::{PublicKey, PublicKeyStore};
pub use runs::{
    LegacyFile, NewMessage, Project, Run, RunRef, RunStore, StartPlan, StartRefusal, Started,
    Thread, ThreadMessage, ThreadTarget, UsageRow, UsageTotals,
};
pub use users::{Role, User, UserStore};

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Storage failures, free of HTTP concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Map a unique-constraint violation to `Conflict`, everything else to `Db`.
    pub(crate) fn from_insert(e: sqlx::Error, what: &str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("{what} already exists"))
            }
            _ => StoreError::Db(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The SQL store shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time; queueing hot-path writes here is cheaper than letting
    /// connections collide and sleep in SQLite's busy handler.
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// SQLite files: the hot path's statements without sqlx's thread hand-off.
    direct: Option<std::sync::Arc<direct::Direct>>,
    /// How many chunks hold a search term, remembered (see [`word_counts`]).
    word_counts: std::sync::Arc<word_counts::WordCounts>,
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl SqlStore {
    /// Connect to `url` (`sqlite:…` or `postgres://…`). SQLite files are created on demand and
    /// opened in WAL mode with a busy timeout.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .min_connections(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                                 PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?
            }
        };
        let write_lock: std::sync::Arc<tokio::sync::Mutex<()>> = Default::default();
        let direct = match backend {
            Backend::Sqlite => direct::Direct::open(url, write_lock.clone())?,
            Backend::Postgres => None,
        };
        Ok(Self {
            pool,
            backend,
            write_lock,
            direct,
            word_counts: Default::default(),
        })
    }

    /// Apply this backend's migrations (idempotent; PostgreSQL serialises concurrent nodes with an
    /// advisory lock).
    pub async fn migrate(&self) -> StoreResult<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Run `statements` in one transaction: on SQLite through the group-committing writer
    /// (see [`direct`]), otherwise through sqlx (holding the write lock on SQLite). Returns once
    /// committed; on failure nothing of them is written.
    pub(crate) async fn write_all(
        &self,
        statements: Vec<(&'static str, Vec<direct::Arg>)>,
    ) -> StoreResult<()> {
        if let Some(d) = self.direct() {
            return d
                .write(move |c| {
                    for (sql, args) in &statements {
                        direct::execute(c, sql, args)?;
                    }
                    Ok(())
                })
                .await;
        }
        let _writer = self.writer().await;
        if let [(sql, args)] = &statements[..] {
            let mut query = sqlx::query(*sql);
            for a in args {
                query = a.bind_query(query);
            }
            query.execute(&self.pool).await?;
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (sql, args) in &statements {
            let mut query = sqlx::query(*sql);
            for a in args {
                query = a.bind_query(query);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The direct SQLite path, when this store has one (see [`direct`]).
    pub(crate) fn direct(&self) -> Option<&direct::Direct> {
        self.direct.as_deref()
    }

    /// Every row of `sql` with `args`: on the calling thread on SQLite (see [`direct`]),
    /// through sqlx on PostgreSQL.
    pub(crate) async fn fetch_rows<R>(
        &self,
        sql: &'static str,
        args: Vec<direct::Arg>,
    ) -> StoreResult<Vec<R>>
    where
        R: direct::DirectRow + for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        if let Some(d) = self.direct() {
            return d.read(|c| direct::rows(c, sql, &args));
        }
        let mut query = sqlx::query_as::<_, R>(sql);
        for a in &args {
            query = a.bind_to(query);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Held across a write transaction on SQLite (a no-op guard on PostgreSQL).
    pub(crate) async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.write_lock.lock().await),
            Backend::Postgres => None,
        }
    }

    /// One real round trip to the database.
    pub async fn ping(&self) -> StoreResult<()> {
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        if one == 1 {
            Ok(())
        } else {
            Err(StoreError::Corrupt("SELECT 1 answered otherwise".into()))
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Read a node-shared setting, storing `default` first if it is absent (first writer wins).
    pub async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_setting(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn get_or_init_setting(&self, key: &str, default: &str) -> StoreResult<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(default)
        .execute(&self.pool)
        .await?;
        let value: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    /// On an empty database, create the first company and its admin in one transaction.
    /// Returns `None` when the database already has a company (or another node won the race).
    pub async fn bootstrap(
        &self,
        company_name: &str,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<Option<(Company, User)>> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('bootstrapped_at', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(fmt_ts(now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let companies: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM companies")
            .fetch_one(&mut *tx)
            .await?;
        if claimed == 0 || companies > 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let company = companies::insert(&mut tx, company_name, "enterprise").await?;
        let user = users::insert(&mut tx, company.id, email, password_hash, Role::Admin).await?;
        tx.commit().await?;
        Ok(Some((company, user)))
    }
}

/// Timestamps are stored as fixed-width RFC 3339 UTC text (microseconds), which sorts as text.
pub(crate) fn fmt_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

pub(crate) fn parse_opt_ts(s: Option<&str>) -> StoreResult<Option<DateTime<Utc>>> {
    s.map(parse_ts).transpose()
}

pub(crate) fn parse_id(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("id {s:?}: {e}")))
}

/// The current time at the stored precision (microseconds), so what a handler returns equals
/// what a later read returns.
pub fn now() -> DateTime<Utc> {
    to_stored(Utc::now())
}

/// Truncate a timestamp to the stored precision.
pub fn to_stored(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

/// A new time-ordered id.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// One page of a list.
impl SqlStore {
    /// One page of a company's rows: `count` (one `$1` = company id) gives the total, `list`
    /// (`$1` company id, `$2` limit, `$3` offset) the rows, each converted with `TryFrom`.
    pub(crate) async fn company_page<R, T>(
        &self,
        count: &'static str,
        list: &'static str,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<T>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        self.page(count, list, &[company_id], limit, offset).await
    }

    /// One page of the rows of one thing of a company (a thread's runs, its messages): `count`
    /// binds `$1` company id and `$2` scope id, `list` also `$3` limit and `$4` offset.
    pub(crate) async fn scoped_page<R, T>(
        &self,
        count: &'static str,
        list: &'static str,
        company_id: Uuid,
        scope_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<T>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        self.page(count, list, &[company_id, scope_id], limit, offset)
            .await
    }

    /// `count` with `ids` bound first, then `list` with `ids`, `limit` and `offset`.
    async fn page<R, T>(
        &self,
        count: &'static str,
        list: &'static str,
        ids: &[Uuid],
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<T>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        let mut count = sqlx::query_scalar(count);
        let mut list = sqlx::query_as::<_, R>(list);
        for id in ids {
            count = count.bind(id.to_string());
            list = list.bind(id.to_string());
        }
        let total: i64 = count.fetch_one(self.pool()).await?;
        let items = list
            .bind(limit)
            .bind(offset)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(T::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page { items, total })
    }
}

/// One row changed, or there is no such row (in this company).
pub(crate) fn one_row(done: sqlx::any::AnyQueryResult) -> StoreResult<()> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::NotFound)
    }
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}
