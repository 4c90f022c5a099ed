//! SQLite on the chat path without a thread hand-off.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its connection and hands
//! each command and each row over a channel: at ~15 statements per chat, futex wake-ups and
//! context switches were ~40 % of the server's CPU. For the statements of the hot path (key,
//! history, memory, knowledge, cache candidates, the turn), this module talks to the same
//! database file through rusqlite instead:
//!
//! - **Reads run on the calling thread**, on a connection taken from a small pool (one per
//!   thread that reads at once, so at most the runtime's threads). Each is a prepared, cached
//!   statement over indexes taking microseconds; in WAL mode a reader never waits for the
//!   writer.
//! - **Writes go to one writer thread, which commits in groups**: it takes every write queued
//!   since its last commit, runs each in a savepoint of one transaction (a failing one is
//!   rolled back alone), commits once, and only then answers each caller. An acknowledged
//!   write is committed (WAL, `synchronous = NORMAL`: it survives the process being killed).
//!   The writer holds the store's write lock for the transaction, as sqlx's writers do.
//!
//! Statements are the same portable SQL the sqlx path runs (`$n` parameters, which SQLite
//! reads as named parameters); [`Arg`] binds to either. PostgreSQL and in-memory SQLite
//! databases use sqlx only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::ToSqlOutput;
use rusqlite::{Connection, OpenFlags, ToSql};

use super::{StoreError, StoreResult};

/// A statement parameter, bound the same way through rusqlite and through sqlx.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Real(f64),
    Blob(Vec<u8>),
    OptBlob(Option<Vec<u8>>),
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Self {
        Arg::OptBlob(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Blob(v)
    }
}

/// `args![a, b, …]`: a statement's parameters `$1, $2, …`.
macro_rules! args {
    ($($a:expr),* $(,)?) => {{
        let args: Vec<$crate::store::direct::Arg> = vec![$($crate::store::direct::Arg::from($a)),*];
        args
    }};
}
pub(crate) use args;

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Text(s) => ToSqlOutput::from(s.as_str()),
            Arg::OptText(Some(s)) => ToSqlOutput::from(s.as_str()),
            Arg::OptText(None) => ToSqlOutput::from(rusqlite::types::Null),
            Arg::Int(i) | Arg::OptInt(Some(i)) => ToSqlOutput::from(*i),
            Arg::Real(f) => ToSqlOutput::from(*f),
            Arg::Blob(b) | Arg::OptBlob(Some(b)) => ToSqlOutput::from(b.as_slice()),
            Arg::OptInt(None) | Arg::OptBlob(None) => ToSqlOutput::from(rusqlite::types::Null),
        })
    }
}

/// One parameter bound to a sqlx query (`Query` and `QueryAs` have the same `bind`, no common
/// trait).
macro_rules! bind_arg {
    ($arg:expr, $q:expr) => {
        match $arg {
            Arg::Text(s) => $q.bind(s.as_str()),
            Arg::OptText(s) => $q.bind(s.as_deref()),
            Arg::Int(i) => $q.bind(*i),
            Arg::OptInt(i) => $q.bind(*i),
            Arg::Real(f) => $q.bind(*f),
            Arg::Blob(b) => $q.bind(b.as_slice()),
            Arg::OptBlob(b) => $q.bind(b.as_deref()),
        }
    };
}

impl Arg {
    /// Bind to a sqlx query (the same parameter, the other driver).
    pub(crate) fn bind_to<'q, O>(
        &'q self,
        q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments> {
        bind_arg!(self, q)
    }

    /// [`Arg::bind_to`] for a statement without rows.
    pub(crate) fn bind_query<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        bind_arg!(self, q)
    }
}

/// A row type read by both drivers: `direct_row!(Row { field, … })` reads each field from the
/// column of the same name. The names are resolved to column positions once per statement
/// ([`rows`]), not per row: rusqlite's look-up by name compares every column's name each time.
pub(crate) trait DirectRow: Sized {
    /// The columns read, in the order [`DirectRow::from_row`] takes their positions.
    fn columns() -> Vec<&'static str>;
    /// The row whose column `columns()[i]` is at position `at[i]`.
    fn from_row(row: &rusqlite::Row<'_>, at: &[usize]) -> rusqlite::Result<Self>;
}

macro_rules! direct_row {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl $crate::store::direct::DirectRow for $t {
            fn columns() -> Vec<&'static str> {
                vec![$(stringify!($f)),*]
            }
            fn from_row(row: &rusqlite::Row<'_>, at: &[usize]) -> rusqlite::Result<Self> {
                // Fields are evaluated in the order written, the order of `columns()`; a
                // missing position is out of range (an error, not a panic).
                let mut at = at.iter().copied();
                Ok(Self { $($f: row.get(at.next().unwrap_or(usize::MAX))?),* })
            }
        }
    };
}
pub(crate) use direct_row;

/// Bind `args` to a statement's `$n` parameters by number.
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, args: &[Arg]) -> rusqlite::Result<()> {
    for i in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(i);
        let arg = args
            .get(n - 1)
            .ok_or(rusqlite::Error::InvalidParameterCount(
                stmt.parameter_count(),
                args.len(),
            ))?;
        stmt.raw_bind_parameter(i, arg)?;
    }
    Ok(())
}

/// Every row of a query.
pub(crate) fn rows<R: DirectRow>(
    conn: &Connection,
    sql: &str,
    args: &[Arg],
) -> rusqlite::Result<Vec<R>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    let at = R::columns()
        .into_iter()
        .map(|name| stmt.column_index(name))
        .collect::<rusqlite::Result<Vec<usize>>>()?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(R::from_row(row, &at)?);
    }
    Ok(out)
}

/// Run a statement; returns the rows it changed.
pub(crate) fn execute(conn: &Connection, sql: &str, args: &[Arg]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    stmt.raw_execute()
}

type WriteFn = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

struct Job {
    write: WriteFn,
    done: tokio::sync::oneshot::Sender<rusqlite::Result<()>>,
}

/// Writes queued at most per transaction (a bigger backlog takes several).
const MAX_GROUP: usize = 256;

/// The pool of readers and the writer thread of one SQLite file.
pub(crate) struct Direct {
    path: String,
    readers: Readers,
    writer: std::sync::mpsc::Sender<Job>,
}

/// Idle read connections, shared with the read sessions that hold one.
type Readers = Arc<Mutex<Vec<Connection>>>;

fn give_back(readers: &Readers, conn: Connection) {
    readers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(conn);
}

tokio::task_local! {
    static SESSION: ReadSession;
}

/// One read transaction for every direct read of a task, from its first read to the end of
/// [`read_session`].
///
/// In WAL mode each statement outside a transaction takes and releases its own read lock
/// (shared-memory locks, a look at the WAL index), and a connection that finds the database
/// changed since its last transaction drops its whole page cache: with a commit per chat,
/// every statement of the next chat started cold. Inside one transaction, a chat's reads
/// share one snapshot, one lock and a warm cache.
#[derive(Default)]
struct ReadSession {
    held: std::cell::RefCell<Option<(Readers, Connection)>>,
}

impl Drop for ReadSession {
    fn drop(&mut self) {
        if let Some((readers, conn)) = self.held.get_mut().take() {
            // Ends the read transaction (a read-only one has nothing to roll back).
            if execute(&conn, "COMMIT", &[]).is_ok() {
                give_back(&readers, conn);
            }
        }
    }
}

/// Run `fut` with its direct SQLite reads in one read transaction (see [`ReadSession`]).
/// Writes are not part of it, and it must not span a read that has to see the task's own
/// earlier write, nor a long wait (the snapshot holds the WAL back from being reset).
pub(crate) async fn read_session<F: std::future::Future>(fut: F) -> F::Output {
    SESSION.scope(ReadSession::default(), fut).await
}

fn open(path: &str, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    // The query planner's stability guarantee: without it, SQLite 3.51 marks a statement whose
    // plan looked at a bound value (any `LIMIT $n`, a `LIKE $n`) for re-preparation every time
    // that parameter is bound again — every cached read was parsed and planned anew on each
    // call (`sqlite3Reprepare` was 20 % of the server's CPU under chat load).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(conn)
}

impl Direct {
    /// For a `sqlite:` URL naming a file (after sqlx has created it in WAL mode); `None` for
    /// an in-memory database.
    pub(crate) fn open(
        url: &str,
        write_lock: Arc<tokio::sync::Mutex<()>>,
    ) -> StoreResult<Option<Arc<Self>>> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
            return Ok(None);
        }
        let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("cortex-sqlite-writer".into())
            .spawn(move || writer(conn, rx, write_lock))
            .map_err(|e| StoreError::Corrupt(format!("starting the SQLite writer: {e}")))?;
        Ok(Some(Arc::new(Self {
            path: path.to_owned(),
            readers: Arc::new(Mutex::new(Vec::new())),
            writer: tx,
        })))
    }

    /// Run `f` with a read connection, on this thread: the task's read session's when it is
    /// in one (see [`read_session`]), else one from the pool for this read alone.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let mut f = Some(f);
        let in_session = SESSION.try_with(|session| -> StoreResult<Option<T>> {
            let mut held = session.held.borrow_mut();
            if held.is_none() {
                let conn = self.checkout()?;
                execute(&conn, "BEGIN", &[])?;
                *held = Some((self.readers.clone(), conn));
            }
            match held.as_ref() {
                // A session holds the connection of the first database it read.
                Some((readers, conn)) if Arc::ptr_eq(readers, &self.readers) => match f.take() {
                    Some(f) => Ok(Some(f(conn)?)),
                    None => Ok(None),
                },
                _ => Ok(None),
            }
        });
        if let Ok(ran) = in_session
            && let Some(out) = ran?
        {
            return Ok(out);
        }
        let f = f
            .take()
            .ok_or_else(|| StoreError::Corrupt("a read ran twice".into()))?;
        self.read_fresh(f)
    }

    /// Run `f` with a read connection of its own, outside the task's read session: it sees
    /// every write committed before it starts.
    pub(crate) fn read_fresh<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let conn = self.checkout()?;
        let out = f(&conn);
        give_back(&self.readers, conn);
        Ok(out?)
    }

    /// An idle read connection, or a new one.
    fn checkout(&self) -> StoreResult<Connection> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match pooled {
            Some(c) => Ok(c),
            None => Ok(open(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?),
        }
    }

    /// Queue a write for the next group commit; returns once it is committed (or failed:
    /// then nothing of it was written).
    pub(crate) async fn write(
        &self,
        write: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
    ) -> StoreResult<()> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(Job {
                write: Box::new(write),
                done,
            })
            .map_err(|_| StoreError::Corrupt("the SQLite writer has stopped".into()))?;
        match answer.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(StoreError::Corrupt("the SQLite writer has stopped".into())),
        }
    }
}

/// The writer thread: one transaction per group of queued writes, each in a savepoint.
fn writer(
    conn: Connection,
    jobs: std::sync::mpsc::Receiver<Job>,
    write_lock: Arc<tokio::sync::Mutex<()>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let _lock = write_lock.blocking_lock();
        let mut results: Vec<rusqlite::Result<()>> = Vec::with_capacity(group.len());
        let mut dones = Vec::with_capacity(group.len());
        let begun = execute(&conn, "BEGIN IMMEDIATE", &[]);
        for job in group {
            dones.push(job.done);
            if let Err(e) = &begun {
                results.push(Err(clone_error(e)));
                continue;
            }
            results.push(in_savepoint(&conn, job.write));
        }
        if begun.is_ok()
            && let Err(e) = execute(&conn, "COMMIT", &[])
        {
            let _ = execute(&conn, "ROLLBACK", &[]);
            for r in &mut results {
                *r = Err(clone_error(&e));
            }
        }
        drop(_lock);
        for (done, result) in dones.into_iter().zip(results) {
            let _ = done.send(result);
        }
    }
}

fn in_savepoint(conn: &Connection, write: WriteFn) -> rusqlite::Result<()> {
    execute(conn, "SAVEPOINT turn", &[])?;
    match write(conn) {
        Ok(()) => execute(conn, "RELEASE turn", &[]).map(|_| ()),
        Err(e) => {
            let _ = execute(conn, "ROLLBACK TO turn", &[]);
            let _ = execute(conn, "RELEASE turn", &[]);
            Err(e)
        }
    }
}

/// rusqlite's error is not `Clone`; a group's shared failure is told to each caller.
fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        k: String,
        v: i64,
    }
    direct_row!(Pair { k, v });

    #[tokio::test]
    async fn reads_writes_in_groups_and_rolls_back_one_failure_alone() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path)?;
        setup.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);",
        )?;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let direct = Direct::open(&url, Default::default())?
            .ok_or_else(|| anyhow::anyhow!("a file database opens directly"))?;
        // Fifty writes queued at once (one or a few groups); ten repeat a key.
        let writes = (0..50i64).map(|i| {
            direct.write(move |c| {
                execute(
                    c,
                    "INSERT INTO t (k, v) VALUES ($1, $2)",
                    &args![format!("k{}", i % 40), i],
                )
                .map(|_| ())
            })
        });
        let results = futures::future::join_all(writes).await;
        // The ten duplicates failed alone; the forty others are committed and readable.
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 10);
        let stored: Vec<Pair> = direct.read(|c| {
            rows(
                c,
                "SELECT k, v FROM t WHERE v >= $1 ORDER BY v",
                &args![0i64],
            )
        })?;
        assert_eq!(stored.len(), 40);
        assert!(stored.iter().all(|p| p.k.starts_with('k') && p.v < 40));
        let matched: Vec<Pair> = direct.read(|c| {
            rows(
                c,
                "SELECT k, v FROM t WHERE k = $2 OR v = $1",
                &args![-1i64, "k1"],
            )
        })?;
        assert_eq!(
            matched.len(),
            1,
            "parameters bind by their number, not their position"
        );
        // Fields are read from their columns by name, whatever the columns' order.
        let reversed: Vec<Pair> =
            direct.read(|c| rows(c, "SELECT v, k FROM t WHERE k = $1", &args!["k3"]))?;
        assert_eq!(
            reversed
                .iter()
                .map(|p| (p.k.as_str(), p.v))
                .collect::<Vec<_>>(),
            vec![("k3", 3)]
        );
        let missing: StoreResult<Vec<Pair>> =
            direct.read_fresh(|c| rows(c, "SELECT k FROM t", &[]));
        assert!(
            missing.is_err(),
            "a column the row needs is an error, not a panic"
        );
        // A cached statement is prepared once, not again each time its `LIMIT` is bound.
        let reprepared = direct.read(|c| {
            for limit in 1..5i64 {
                let _: Vec<Pair> =
                    rows(c, "SELECT k, v FROM t ORDER BY v LIMIT $1", &args![limit])?;
            }
            let stmt = c.prepare_cached("SELECT k, v FROM t ORDER BY v LIMIT $1")?;
            Ok(stmt.get_status(rusqlite::StatementStatus::RePrepare))
        })?;
        assert_eq!(reprepared, 0);
        assert!(Direct::open("sqlite::memory:", Default::default())?.is_none());
        Ok(())
    }
}
