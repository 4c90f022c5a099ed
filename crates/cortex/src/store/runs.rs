//! Agent runs: projects, threads and their messages, runs, run events, plans and
//! credits. Every tenant read takes the company id first; the node-level reads (`orphaned_runs`,
//! `running_runs_everywhere`, `renew_leases`, `running_total`, `existing_run_ids`,
//! `prune_run_events`) serve the reaper, leases and system metrics, and give no client another
//! company's data (ids go back through company-scoped calls; metrics are counts).

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use uuid::Uuid;

use super::{
    Page, SqlStore, StoreError, StoreResult, fmt_ts, new_id, now, one_row, parse_id, parse_opt_ts,
    parse_ts,
};
use crate::pipeline::Frame;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Project {
    pub id: Uuid,
    pub company_id: Uuid,
    pub name: String,
    pub sandbox_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Thread {
    pub id: Uuid,
    pub company_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One message of a thread: `user`, `assistant` or `tool`; `content` is the text (an assistant
/// message that asked for tools, and a tool result, keep their JSON in `content`).
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadMessage {
    pub id: Uuid,
    pub thread_id: Uuid,
    pub run_id: Option<Uuid>,
    pub kind: String,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: Uuid,
    pub company_id: Uuid,
    pub thread_id: Uuid,
    pub project_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub status: String,
    pub model_name: Option<String>,
    pub mode: Option<String>,
    pub memory_enabled: Option<bool>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub node_id: String,
    pub stop_requested: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_microusd: i64,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A file uploaded before workspaces existed, kept in the database until moved to its
/// project's workspace at start-up.
#[derive(Debug, Clone)]
pub struct LegacyFile {
    pub id: String,
    pub company_id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub content: Vec<u8>,
}

/// A message to append to a thread (with the events that announce it).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub kind: &'static str,
    pub content: String,
}

/// Which thread a start goes to.
#[derive(Debug, Clone)]
pub enum ThreadTarget {
    /// An existing thread of the company.
    Existing(Uuid),
    /// Optimistic mode: these ids, created unless the company already has them.
    Optimistic { thread_id: Uuid, project_id: Uuid },
    /// A new thread, in an existing project of the company or a new one.
    New { project_id: Option<Uuid> },
}

/// Everything one start writes, in one transaction, after its checks.
#[derive(Debug, Clone)]
pub struct StartPlan {
    pub company_id: Uuid,
    pub target: ThreadTarget,
    /// Names a new thread and project (its first words).
    pub name: String,
    pub prompt: Option<String>,
    pub agent_id: Option<Uuid>,
    pub model_name: Option<String>,
    pub mode: Option<String>,
    pub memory_enabled: Option<bool>,
    pub node_id: String,
    pub lease_until: DateTime<Utc>,
    pub concurrent_runs: u32,
    pub thread_limit: Option<u64>,
    /// The id of a project this start creates (`ThreadTarget::New` without a project).
    pub new_project_id: Uuid,
    /// The sandbox id given to a project that has none yet (a new one, or an older one).
    pub sandbox_id: Uuid,
    /// The first event (seq 1), stored with the run.
    pub first_event: Frame,
}

/// Why a start was refused (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum StartRefusal {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this thread already has a running agent run")]
    Busy,
    #[error("insufficient credits")]
    InsufficientCredits,
    #[error("run limit")]
    RunLimit {
        running_thread_ids: Vec<Uuid>,
        running_count: u64,
        limit: u32,
    },
    #[error("thread limit")]
    ThreadLimit { current_count: u64, limit: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for StartRefusal {
    fn from(e: sqlx::Error) -> Self {
        StartRefusal::Store(StoreError::Db(e))
    }
}

/// What a start created.
#[derive(Debug, Clone)]
pub struct Started {
    pub run: Run,
    pub project: Project,
}

/// A model call of a run (or of memory extraction), priced.
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub agent_id: Option<Uuid>,
    /// The thread (runs) or conversation the call served.
    pub conversation_id: Uuid,
    pub source: &'static str,
    pub model_used: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_microusd: i64,
}

/// The usage of a company since a time.
#[derive(Debug, Clone, Default)]
pub struct UsageTotals {
    pub cost_microusd: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: String,
    company_id: String,
    name: String,
    sandbox_id: Option<String>,
    created_at: String,
}

impl TryFrom<ProjectRow> for Project {
    type Error = StoreError;
    fn try_from(r: ProjectRow) -> StoreResult<Self> {
        Ok(Project {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            name: r.name,
            sandbox_id: r.sandbox_id.as_deref().map(parse_id).transpose()?,
            created_at: parse_ts(&r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ThreadRow {
    id: String,
    company_id: String,
    project_id: String,
    name: String,
    created_at: String,
    updated_at: String,
}

impl TryFrom<ThreadRow> for Thread {
    type Error = StoreError;
    fn try_from(r: ThreadRow) -> StoreResult<Self> {
        Ok(Thread {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            project_id: parse_id(&r.project_id)?,
            name: r.name,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: String,
    thread_id: String,
    run_id: Option<String>,
    kind: String,
    content: String,
    created_at: String,
}

impl TryFrom<MessageRow> for ThreadMessage {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> StoreResult<Self> {
        Ok(ThreadMessage {
            id: parse_id(&r.id)?,
            thread_id: parse_id(&r.thread_id)?,
            run_id: r.run_id.as_deref().map(parse_id).transpose()?,
            kind: r.kind,
            content: r.content,
            created_at: parse_ts(&r.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    company_id: String,
    thread_id: String,
    project_id: String,
    agent_id: Option<String>,
    status: String,
    model_name: Option<String>,
    mode: Option<String>,
    memory_enabled: Option<i64>,
    error: Option<String>,
    error_code: Option<String>,
    node_id: String,
    stop_requested: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_microusd: i64,
    started_at: String,
    completed_at: Option<String>,
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;
    fn try_from(r: RunRow) -> StoreResult<Self> {
        Ok(Run {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            thread_id: parse_id(&r.thread_id)?,
            project_id: parse_id(&r.project_id)?,
            agent_id: r.agent_id.as_deref().map(parse_id).transpose()?,
            status: r.status,
            model_name: r.model_name,
            mode: r.mode,
            memory_enabled: r.memory_enabled.map(|v| v != 0),
            error: r.error,
            error_code: r.error_code,
            node_id: r.node_id,
            stop_requested: r.stop_requested != 0,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_microusd: r.cost_microusd,
            started_at: parse_ts(&r.started_at)?,
            completed_at: parse_opt_ts(r.completed_at.as_deref())?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct FrameRow {
    seq: i64,
    event: String,
    data: String,
}

impl From<FrameRow> for Frame {
    fn from(r: FrameRow) -> Frame {
        Frame {
            seq: r.seq as u64,
            name: r.event,
            data: r.data,
        }
    }
}

/// `(company, thread, run)` ids of node-level run look-ups.
pub type RunRef = (Uuid, Uuid, Uuid);

fn run_refs(rows: &[(String, String, String)]) -> StoreResult<Vec<RunRef>> {
    rows.iter()
        .map(|(c, t, r)| Ok((parse_id(c)?, parse_id(t)?, parse_id(r)?)))
        .collect()
}

macro_rules! run_columns {
    () => {
        "id, company_id, thread_id, project_id, agent_id, status, model_name, mode, memory_enabled, \
         error, error_code, node_id, stop_requested, input_tokens, output_tokens, cost_microusd, \
         started_at, completed_at"
    };
}

/// Debit a metered company (a `NULL` balance is unmetered and stays so).
/// [`debit`] as a statement of [`SqlStore::write_all`] (`None`: nothing to debit).
pub(crate) fn debit_statement(
    company_id: &str,
    cost_microusd: i64,
) -> Option<(&'static str, Vec<super::direct::Arg>)> {
    (cost_microusd != 0).then(|| (DEBIT, super::direct::args![cost_microusd, company_id]))
}

const DEBIT: &str = "UPDATE companies SET credits_microusd = credits_microusd - $1 \
     WHERE id = $2 AND credits_microusd IS NOT NULL";

pub(crate) async fn debit(
    conn: &mut AnyConnection,
    company_id: &str,
    cost_microusd: i64,
) -> StoreResult<()> {
    if cost_microusd != 0 {
        sqlx::query(DEBIT)
            .bind(cost_microusd)
            .bind(company_id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

async fn insert_events(
    conn: &mut AnyConnection,
    company_id: &str,
    run_id: &str,
    frames: &[Frame],
) -> StoreResult<()> {
    let at = fmt_ts(now());
    for f in frames {
        sqlx::query(
            "INSERT INTO run_events (run_id, seq, company_id, event, data, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, seq) DO NOTHING",
        )
        .bind(run_id)
        .bind(f.seq as i64)
        .bind(company_id)
        .bind(&f.name)
        .bind(&f.data)
        .bind(&at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_messages(
    conn: &mut AnyConnection,
    company_id: &str,
    thread_id: &str,
    run_id: Option<&str>,
    messages: &[NewMessage],
) -> StoreResult<()> {
    insert_messages_at(conn, company_id, thread_id, run_id, messages, true).await
}

/// [`insert_messages`]; `touch` also moves the thread's `updated_at` (not needed for a thread
/// created in the same transaction).
async fn insert_messages_at(
    conn: &mut AnyConnection,
    company_id: &str,
    thread_id: &str,
    run_id: Option<&str>,
    messages: &[NewMessage],
    touch: bool,
) -> StoreResult<()> {
    let base = now();
    for (i, m) in messages.iter().enumerate() {
        // Messages written together keep their order within one microsecond.
        let at = base + chrono::Duration::microseconds(i as i64);
        sqlx::query(
            "INSERT INTO thread_messages (id, company_id, thread_id, run_id, kind, content, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(m.id.to_string())
        .bind(company_id)
        .bind(thread_id)
        .bind(run_id)
        .bind(m.kind)
        .bind(&m.content)
        .bind(fmt_ts(at))
        .execute(&mut *conn)
        .await?;
    }
    if touch && !messages.is_empty() {
        sqlx::query("UPDATE threads SET updated_at = $1 WHERE id = $2")
            .bind(fmt_ts(base))
            .bind(thread_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn project_any(conn: &mut AnyConnection, id: Uuid) -> StoreResult<Option<Project>> {
    sqlx::query_as::<_, ProjectRow>(
        "SELECT id, company_id, name, sandbox_id, created_at FROM projects WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?
    .map(Project::try_from)
    .transpose()
}

async fn thread_any(conn: &mut AnyConnection, id: Uuid) -> StoreResult<Option<Thread>> {
    sqlx::query_as::<_, ThreadRow>(
        "SELECT id, company_id, project_id, name, created_at, updated_at FROM threads WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?
    .map(Thread::try_from)
    .transpose()
}

async fn insert_project(
    conn: &mut AnyConnection,
    company_id: Uuid,
    id: Uuid,
    name: &str,
    sandbox_id: Uuid,
) -> StoreResult<Project> {
    let p = Project {
        id,
        company_id,
        name: name.to_owned(),
        sandbox_id: Some(sandbox_id),
        created_at: now(),
    };
    sqlx::query(
        "INSERT INTO projects (id, company_id, name, sandbox_id, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
        .bind(p.id.to_string())
        .bind(company_id.to_string())
        .bind(&p.name)
        .bind(sandbox_id.to_string())
        .bind(fmt_ts(p.created_at))
        .execute(conn)
        .await
        .map_err(|e| StoreError::from_insert(e, "project"))?;
    Ok(p)
}

/// Projects, threads, messages, runs and their events, usage and credits.
#[async_trait::async_trait]
pub trait RunStore {
    /// Take a run's slot and write everything of a start in one transaction: the company row
    /// is locked first (an `UPDATE` of it), so concurrent starts of one company — on any node —
    /// count running runs one after another and a limit of N admits exactly N.
    async fn start_run(&self, run_id: Uuid, plan: StartPlan) -> Result<Started, StartRefusal>;

    async fn get_run(&self, company_id: Uuid, run_id: Uuid) -> StoreResult<Option<Run>>;

    /// A company's running runs, oldest first.
    async fn active_runs(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Run>>;

    /// A thread's runs, newest first.
    async fn thread_runs(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Run>>;

    /// A company's running runs in a project or on a thread (to stop them before a delete).
    async fn running_runs_of_threads(
        &self,
        company_id: Uuid,
        project_id: Option<Uuid>,
        thread_id: Option<Uuid>,
    ) -> StoreResult<Vec<Run>>;

    /// Append a running run's events (and the thread messages they announce) in one
    /// transaction; an event already stored (same seq) is kept as it was.
    async fn append_run_events(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        run_id: Uuid,
        frames: &[Frame],
        messages: &[NewMessage],
    ) -> StoreResult<()>;

    /// End a running run: its last events and messages, its final status, in one transaction.
    /// Returns false (and writes nothing) when the run was no longer running: another node
    /// finalised it first.
    #[allow(clippy::too_many_arguments)]
    async fn finish_run(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        run_id: Uuid,
        status: &str,
        error: Option<&str>,
        error_code: Option<&str>,
        frames: &[Frame],
        messages: &[NewMessage],
    ) -> StoreResult<bool>;

    /// A run's events after `after` (by seq), at most `limit`.
    async fn run_events_after(
        &self,
        company_id: Uuid,
        run_id: Uuid,
        after: u64,
        limit: i64,
    ) -> StoreResult<Vec<Frame>>;

    /// The highest stored seq of a run (0 without events).
    async fn run_last_seq(&self, company_id: Uuid, run_id: Uuid) -> StoreResult<u64>;

    /// Record one priced model call, debit the company, add it to the run's totals; returns the
    /// company's balance after it (`None`: unmetered).
    async fn record_usage(
        &self,
        company_id: Uuid,
        run_id: Option<Uuid>,
        u: &UsageRow,
    ) -> StoreResult<Option<i64>>;

    /// A company's balance in micro-USD (`None`: unmetered).
    async fn credits(&self, company_id: Uuid) -> StoreResult<Option<i64>>;

    /// Set (`Some`) or remove (`None`: unmetered) a company's balance.
    async fn set_credits(&self, company_id: Uuid, microusd: Option<i64>) -> StoreResult<()>;

    /// Add to a company's balance (an unmetered company starts from 0).
    async fn add_credits(&self, company_id: Uuid, microusd: i64) -> StoreResult<i64>;

    async fn set_plan(&self, company_id: Uuid, plan: &str) -> StoreResult<()>;

    /// A company's usage since `since`.
    async fn usage_since(&self, company_id: Uuid, since: DateTime<Utc>)
    -> StoreResult<UsageTotals>;

    /// (running runs, threads) of a company.
    async fn run_counts(&self, company_id: Uuid) -> StoreResult<(i64, i64)>;

    /// Renew this node's leases; returns the runs a stop was requested for (from any node).
    async fn renew_leases(&self, node_id: &str, until: DateTime<Utc>) -> StoreResult<Vec<Uuid>>;

    /// Mark a stop request for whichever node runs it (it sees it at its next lease renewal).
    async fn request_stop(&self, company_id: Uuid, run_id: Uuid) -> StoreResult<()>;

    /// Running runs whose lease ran out (their node died), or, with `node`, every running run
    /// of that node (its leftovers at start-up). Node-level: `(company, thread, run)`.
    async fn orphaned_runs(&self, node: Option<&str>) -> StoreResult<Vec<RunRef>>;

    /// Every running run, `(company, thread, run)` (a single node's leftovers at start-up).
    async fn running_runs_everywhere(&self) -> StoreResult<Vec<RunRef>>;

    /// How many of `ids` are runs in the database (system metrics; no tenant data).
    async fn existing_run_ids(&self, ids: &[Uuid]) -> StoreResult<usize>;

    /// Running runs of every company (system metrics; no tenant data).
    async fn running_total(&self) -> StoreResult<i64>;

    /// Drop the events of runs that ended before `before`.
    async fn prune_run_events(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    async fn get_thread(&self, company_id: Uuid, id: Uuid) -> StoreResult<Option<Thread>>;

    async fn list_threads(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Thread>>;

    async fn rename_thread(&self, company_id: Uuid, id: Uuid, name: &str) -> StoreResult<()>;

    /// Delete a thread with its messages, runs and their events (cascades).
    async fn delete_thread(&self, company_id: Uuid, id: Uuid) -> StoreResult<()>;

    /// A thread's messages, oldest first.
    async fn thread_messages(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<ThreadMessage>>;

    /// The newest `limit` messages of a thread, oldest first (a run's history).
    async fn thread_history(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<ThreadMessage>>;

    async fn get_project(&self, company_id: Uuid, id: Uuid) -> StoreResult<Option<Project>>;

    async fn list_projects(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Project>>;

    /// Delete a project with its threads, runs, events and files (cascades).
    async fn delete_project(&self, company_id: Uuid, id: Uuid) -> StoreResult<()>;

    /// Up to `limit` files uploaded before workspaces existed (node-level: the start-up move
    /// into workspaces).
    async fn legacy_project_files(&self, limit: i64) -> StoreResult<Vec<LegacyFile>>;

    /// Forget a legacy file once it is in its workspace.
    async fn delete_legacy_project_file(&self, id: &str) -> StoreResult<()>;
}

#[async_trait::async_trait]
impl RunStore for SqlStore {
    /// Take a run's slot and write everything of a start in one transaction: the company row
    /// is locked first (an `UPDATE` of it), so concurrent starts of one company — on any node —
    /// count running runs one after another and a limit of N admits exactly N.
    async fn start_run(&self, run_id: Uuid, plan: StartPlan) -> Result<Started, StartRefusal> {
        let company = plan.company_id.to_string();
        let _writer = self.writer().await;
        let mut tx = self.pool().begin().await?;
        // Lock the company row and read its balance in one statement.
        let credits: Option<Option<i64>> = sqlx::query_scalar(
            "UPDATE companies SET plan = plan WHERE id = $1 RETURNING credits_microusd",
        )
        .bind(&company)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(credits) = credits else {
            return Err(StartRefusal::NotFound("Company"));
        };
        if credits.is_some_and(|c| c <= 0) {
            return Err(StartRefusal::InsufficientCredits);
        }
        // The thread (and project) the run goes to; creating one counts against the plan.
        let mut create_thread: Option<(Uuid, Uuid)> = None;
        let (thread, project) = match plan.target {
            ThreadTarget::Existing(id) => {
                let thread = thread_any(&mut tx, id)
                    .await?
                    .filter(|t| t.company_id == plan.company_id)
                    .ok_or(StartRefusal::NotFound("Thread"))?;
                let project = project_any(&mut tx, thread.project_id)
                    .await?
                    .ok_or(StartRefusal::NotFound("Thread"))?;
                (thread.id, project)
            }
            ThreadTarget::Optimistic {
                thread_id,
                project_id,
            } => match thread_any(&mut tx, thread_id).await? {
                Some(t) if t.company_id == plan.company_id => {
                    let project = project_any(&mut tx, t.project_id)
                        .await?
                        .ok_or(StartRefusal::NotFound("Thread"))?;
                    (t.id, project)
                }
                Some(_) => return Err(StartRefusal::NotFound("Thread")),
                None => {
                    let project = match project_any(&mut tx, project_id).await? {
                        Some(p) if p.company_id == plan.company_id => p,
                        Some(_) => return Err(StartRefusal::NotFound("Project")),
                        None => {
                            insert_project(
                                &mut tx,
                                plan.company_id,
                                project_id,
                                &plan.name,
                                plan.sandbox_id,
                            )
                            .await?
                        }
                    };
                    create_thread = Some((thread_id, project.id));
                    (thread_id, project)
                }
            },
            ThreadTarget::New { project_id } => {
                let project = match project_id {
                    Some(id) => project_any(&mut tx, id)
                        .await?
                        .filter(|p| p.company_id == plan.company_id)
                        .ok_or(StartRefusal::NotFound("Project"))?,
                    None => {
                        insert_project(
                            &mut tx,
                            plan.company_id,
                            plan.new_project_id,
                            &plan.name,
                            plan.sandbox_id,
                        )
                        .await?
                    }
                };
                let id = new_id();
                create_thread = Some((id, project.id));
                (id, project)
            }
        };
        // A project from before sandboxes gets its id now (once, whichever start comes first).
        let mut project = project;
        if project.sandbox_id.is_none() {
            let id: String = sqlx::query_scalar(
                "UPDATE projects SET sandbox_id = COALESCE(sandbox_id, $1) WHERE id = $2 RETURNING sandbox_id",
            )
            .bind(plan.sandbox_id.to_string())
            .bind(project.id.to_string())
            .fetch_one(&mut *tx)
            .await?;
            project.sandbox_id = Some(parse_id(&id)?);
        }
        if let Some((thread_id, project_id)) = create_thread {
            if let Some(limit) = plan.thread_limit {
                let count: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM threads WHERE company_id = $1")
                        .bind(&company)
                        .fetch_one(&mut *tx)
                        .await?;
                if count as u64 >= limit {
                    return Err(StartRefusal::ThreadLimit {
                        current_count: count as u64,
                        limit,
                    });
                }
            }
            let at = fmt_ts(now());
            sqlx::query(
                "INSERT INTO threads (id, company_id, project_id, name, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(thread_id.to_string())
            .bind(&company)
            .bind(project_id.to_string())
            .bind(&plan.name)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_insert(e, "thread"))?;
        }
        // A thread created just now cannot be busy; an existing one is checked by its index.
        if create_thread.is_none() {
            let busy: Option<String> = sqlx::query_scalar(
                "SELECT id FROM agent_runs WHERE thread_id = $1 AND status = 'running'",
            )
            .bind(thread.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if busy.is_some() {
                return Err(StartRefusal::Busy);
            }
        }
        // Counted, not listed: the ids are read only for a refusal.
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agent_runs WHERE company_id = $1 AND status = 'running'",
        )
        .bind(&company)
        .fetch_one(&mut *tx)
        .await?;
        if running as u64 >= u64::from(plan.concurrent_runs) {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT thread_id FROM agent_runs WHERE company_id = $1 AND status = 'running' ORDER BY started_at",
            )
            .bind(&company)
            .fetch_all(&mut *tx)
            .await?;
            return Err(StartRefusal::RunLimit {
                running_thread_ids: ids.iter().filter_map(|t| Uuid::parse_str(t).ok()).collect(),
                running_count: running as u64,
                limit: plan.concurrent_runs,
            });
        }
        let thread_s = thread.to_string();
        let run_s = run_id.to_string();
        if let Some(prompt) = &plan.prompt {
            let msg = NewMessage {
                id: new_id(),
                kind: "user",
                content: prompt.clone(),
            };
            let touch = create_thread.is_none();
            insert_messages_at(&mut tx, &company, &thread_s, Some(&run_s), &[msg], touch).await?;
        }
        let started_at = now();
        sqlx::query(concat!(
            "INSERT INTO agent_runs (",
            run_columns!(),
            ", lease_until) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, NULL, NULL, $9, 0, 0, 0, 0, $10, NULL, $11)"
        ))
        .bind(&run_s)
        .bind(&company)
        .bind(&thread_s)
        .bind(project.id.to_string())
        .bind(plan.agent_id.map(|a| a.to_string()))
        .bind(&plan.model_name)
        .bind(&plan.mode)
        .bind(plan.memory_enabled.map(i64::from))
        .bind(&plan.node_id)
        .bind(fmt_ts(started_at))
        .bind(fmt_ts(plan.lease_until))
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from_insert(e, "run") {
            StoreError::Conflict(_) => StartRefusal::Busy,
            other => StartRefusal::Store(other),
        })?;
        insert_events(
            &mut tx,
            &company,
            &run_s,
            std::slice::from_ref(&plan.first_event),
        )
        .await?;
        let run = Run {
            id: run_id,
            company_id: plan.company_id,
            thread_id: thread,
            project_id: project.id,
            agent_id: plan.agent_id,
            status: "running".into(),
            model_name: plan.model_name.clone(),
            mode: plan.mode.clone(),
            memory_enabled: plan.memory_enabled,
            error: None,
            error_code: None,
            node_id: plan.node_id.clone(),
            stop_requested: false,
            input_tokens: 0,
            output_tokens: 0,
            cost_microusd: 0,
            started_at,
            completed_at: None,
        };
        tx.commit().await?;
        Ok(Started { run, project })
    }

    async fn get_run(&self, company_id: Uuid, run_id: Uuid) -> StoreResult<Option<Run>> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM agent_runs WHERE company_id = $1 AND id = $2"
        ))
        .bind(company_id.to_string())
        .bind(run_id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Run::try_from)
        .transpose()
    }

    /// A company's running runs, oldest first.
    async fn active_runs(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Run>> {
        self.company_page::<RunRow, Run>(
            "SELECT COUNT(*) FROM agent_runs WHERE company_id = $1 AND status = 'running'",
            concat!(
                "SELECT ",
                run_columns!(),
                " FROM agent_runs WHERE company_id = $1 AND status = 'running' ORDER BY started_at LIMIT $2 OFFSET $3"
            ),
            company_id,
            limit,
            offset,
        )
        .await
    }

    /// A thread's runs, newest first.
    async fn thread_runs(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Run>> {
        self.scoped_page::<RunRow, Run>(
            "SELECT COUNT(*) FROM agent_runs WHERE company_id = $1 AND thread_id = $2",
            concat!(
                "SELECT ",
                run_columns!(),
                " FROM agent_runs WHERE company_id = $1 AND thread_id = $2 ORDER BY started_at DESC, id DESC LIMIT $3 OFFSET $4"
            ),
            company_id,
            thread_id,
            limit,
            offset,
        )
        .await
    }

    /// A company's running runs in a project or on a thread (to stop them before a delete).
    async fn running_runs_of_threads(
        &self,
        company_id: Uuid,
        project_id: Option<Uuid>,
        thread_id: Option<Uuid>,
    ) -> StoreResult<Vec<Run>> {
        sqlx::query_as::<_, RunRow>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM agent_runs WHERE company_id = $1 AND status = 'running' \
             AND ($2 IS NULL OR project_id = $2) AND ($3 IS NULL OR thread_id = $3)"
        ))
        .bind(company_id.to_string())
        .bind(project_id.map(|p| p.to_string()))
        .bind(thread_id.map(|t| t.to_string()))
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(Run::try_from)
        .collect()
    }

    /// Append a running run's events (and the thread messages they announce) in one
    /// transaction; an event already stored (same seq) is kept as it was.
    async fn append_run_events(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        run_id: Uuid,
        frames: &[Frame],
        messages: &[NewMessage],
    ) -> StoreResult<()> {
        if frames.is_empty() && messages.is_empty() {
            return Ok(());
        }
        let (company, run) = (company_id.to_string(), run_id.to_string());
        let _writer = self.writer().await;
        let mut tx = self.pool().begin().await?;
        insert_messages(
            &mut tx,
            &company,
            &thread_id.to_string(),
            Some(&run),
            messages,
        )
        .await?;
        insert_events(&mut tx, &company, &run, frames).await?;
        tx.commit().await?;
        Ok(())
    }

    /// End a running run: its last events and messages, its final status, in one transaction.
    /// Returns false (and writes nothing) when the run was no longer running: another node
    /// finalised it first.
    #[allow(clippy::too_many_arguments)]
    async fn finish_run(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        run_id: Uuid,
        status: &str,
        error: Option<&str>,
        error_code: Option<&str>,
        frames: &[Frame],
        messages: &[NewMessage],
    ) -> StoreResult<bool> {
        let (company, run) = (company_id.to_string(), run_id.to_string());
        let _writer = self.writer().await;
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE agent_runs SET status = $1, error = $2, error_code = $3, completed_at = $4 \
             WHERE company_id = $5 AND id = $6 AND status = 'running'",
        )
        .bind(status)
        .bind(error)
        .bind(error_code)
        .bind(fmt_ts(now()))
        .bind(&company)
        .bind(&run)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_messages(
            &mut tx,
            &company,
            &thread_id.to_string(),
            Some(&run),
            messages,
        )
        .await?;
        insert_events(&mut tx, &company, &run, frames).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A run's events after `after` (by seq), at most `limit`.
    async fn run_events_after(
        &self,
        company_id: Uuid,
        run_id: Uuid,
        after: u64,
        limit: i64,
    ) -> StoreResult<Vec<Frame>> {
        Ok(sqlx::query_as::<_, FrameRow>(
            "SELECT seq, event, data FROM run_events WHERE company_id = $1 AND run_id = $2 AND seq > $3 \
             ORDER BY seq LIMIT $4",
        )
        .bind(company_id.to_string())
        .bind(run_id.to_string())
        .bind(after as i64)
        .bind(limit)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(Frame::from)
        .collect())
    }

    /// The highest stored seq of a run (0 without events).
    async fn run_last_seq(&self, company_id: Uuid, run_id: Uuid) -> StoreResult<u64> {
        let max: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(seq) FROM run_events WHERE company_id = $1 AND run_id = $2",
        )
        .bind(company_id.to_string())
        .bind(run_id.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok(max.unwrap_or(0) as u64)
    }

    /// Record one priced model call, debit the company, add it to the run's totals; returns the
    /// company's balance after it (`None`: unmetered).
    async fn record_usage(
        &self,
        company_id: Uuid,
        run_id: Option<Uuid>,
        u: &UsageRow,
    ) -> StoreResult<Option<i64>> {
        let company = company_id.to_string();
        let _writer = self.writer().await;
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO usage_events (id, company_id, agent_id, conversation_id, model_used, model, input_tokens, \
             output_tokens, cost_usd, cost_microusd, cached, tool_rounds, latency_ms, created_at, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, 0, $11, $12)",
        )
        .bind(new_id().to_string())
        .bind(&company)
        .bind(u.agent_id.unwrap_or_default().to_string())
        .bind(u.conversation_id.to_string())
        .bind(&u.model_used)
        .bind(&u.model)
        .bind(u.input_tokens)
        .bind(u.output_tokens)
        .bind(u.cost_microusd as f64 / 1e6)
        .bind(u.cost_microusd)
        .bind(fmt_ts(now()))
        .bind(u.source)
        .execute(&mut *tx)
        .await?;
        debit(&mut tx, &company, u.cost_microusd).await?;
        if let Some(run) = run_id {
            sqlx::query(
                "UPDATE agent_runs SET input_tokens = input_tokens + $1, output_tokens = output_tokens + $2, \
                 cost_microusd = cost_microusd + $3 WHERE company_id = $4 AND id = $5",
            )
            .bind(u.input_tokens)
            .bind(u.output_tokens)
            .bind(u.cost_microusd)
            .bind(&company)
            .bind(run.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let balance: Option<i64> =
            sqlx::query_scalar("SELECT credits_microusd FROM companies WHERE id = $1")
                .bind(&company)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(balance)
    }

    /// A company's balance in micro-USD (`None`: unmetered).
    async fn credits(&self, company_id: Uuid) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT credits_microusd FROM companies WHERE id = $1")
            .bind(company_id.to_string())
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Set (`Some`) or remove (`None`: unmetered) a company's balance.
    async fn set_credits(&self, company_id: Uuid, microusd: Option<i64>) -> StoreResult<()> {
        one_row(
            sqlx::query("UPDATE companies SET credits_microusd = $1 WHERE id = $2")
                .bind(microusd)
                .bind(company_id.to_string())
                .execute(self.pool())
                .await?,
        )
    }

    /// Add to a company's balance (an unmetered company starts from 0).
    async fn add_credits(&self, company_id: Uuid, microusd: i64) -> StoreResult<i64> {
        one_row(
            sqlx::query(
                "UPDATE companies SET credits_microusd = COALESCE(credits_microusd, 0) + $1 WHERE id = $2",
            )
            .bind(microusd)
            .bind(company_id.to_string())
            .execute(self.pool())
            .await?,
        )?;
        Ok(self.credits(company_id).await?.unwrap_or(0))
    }

    async fn set_plan(&self, company_id: Uuid, plan: &str) -> StoreResult<()> {
        one_row(
            sqlx::query("UPDATE companies SET plan = $1 WHERE id = $2")
                .bind(plan)
                .bind(company_id.to_string())
                .execute(self.pool())
                .await?,
        )
    }

    /// A company's usage since `since`.
    async fn usage_since(
        &self,
        company_id: Uuid,
        since: DateTime<Utc>,
    ) -> StoreResult<UsageTotals> {
        let (cost, input, output): (Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT CAST(SUM(cost_microusd) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT) \
             FROM usage_events WHERE company_id = $1 AND created_at >= $2",
        )
        .bind(company_id.to_string())
        .bind(fmt_ts(since))
        .fetch_one(self.pool())
        .await?;
        Ok(UsageTotals {
            cost_microusd: cost.unwrap_or(0),
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
        })
    }

    /// (running runs, threads) of a company.
    async fn run_counts(&self, company_id: Uuid) -> StoreResult<(i64, i64)> {
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agent_runs WHERE company_id = $1 AND status = 'running'",
        )
        .bind(company_id.to_string())
        .fetch_one(self.pool())
        .await?;
        let threads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM threads WHERE company_id = $1")
            .bind(company_id.to_string())
            .fetch_one(self.pool())
            .await?;
        Ok((running, threads))
    }

    /// Renew this node's leases; returns the runs a stop was requested for (from any node).
    async fn renew_leases(&self, node_id: &str, until: DateTime<Utc>) -> StoreResult<Vec<Uuid>> {
        sqlx::query(
            "UPDATE agent_runs SET lease_until = $1 WHERE node_id = $2 AND status = 'running'",
        )
        .bind(fmt_ts(until))
        .bind(node_id)
        .execute(self.pool())
        .await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM agent_runs WHERE node_id = $1 AND status = 'running' AND stop_requested = 1",
        )
        .bind(node_id)
        .fetch_all(self.pool())
        .await?;
        ids.iter().map(|s| super::parse_id(s)).collect()
    }

    /// Mark a stop request for whichever node runs it (it sees it at its next lease renewal).
    async fn request_stop(&self, company_id: Uuid, run_id: Uuid) -> StoreResult<()> {
        sqlx::query(
            "UPDATE agent_runs SET stop_requested = 1 WHERE company_id = $1 AND id = $2 AND status = 'running'",
        )
        .bind(company_id.to_string())
        .bind(run_id.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Running runs whose lease ran out (their node died), or, with `node`, every running run
    /// of that node (its leftovers at start-up). Node-level: `(company, thread, run)`.
    async fn orphaned_runs(&self, node: Option<&str>) -> StoreResult<Vec<RunRef>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT company_id, thread_id, id FROM agent_runs WHERE status = 'running' \
             AND (($1 IS NULL AND lease_until < $2) OR node_id = $1)",
        )
        .bind(node)
        .bind(fmt_ts(now()))
        .fetch_all(self.pool())
        .await?;
        run_refs(&rows)
    }

    /// Every running run, `(company, thread, run)` (a single node's leftovers at start-up).
    async fn running_runs_everywhere(&self) -> StoreResult<Vec<RunRef>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT company_id, thread_id, id FROM agent_runs WHERE status = 'running'",
        )
        .fetch_all(self.pool())
        .await?;
        run_refs(&rows)
    }

    /// How many of `ids` are runs in the database (system metrics; no tenant data).
    async fn existing_run_ids(&self, ids: &[Uuid]) -> StoreResult<usize> {
        let mut n = 0;
        for id in ids {
            let found: Option<String> =
                sqlx::query_scalar("SELECT id FROM agent_runs WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(self.pool())
                    .await?;
            n += usize::from(found.is_some());
        }
        Ok(n)
    }

    /// Running runs of every company (system metrics; no tenant data).
    async fn running_total(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM agent_runs WHERE status = 'running'")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Drop the events of runs that ended before `before`.
    async fn prune_run_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let _writer = self.writer().await;
        Ok(sqlx::query(
            "DELETE FROM run_events WHERE created_at < $1 AND run_id IN \
             (SELECT id FROM agent_runs WHERE status <> 'running' AND completed_at < $1)",
        )
        .bind(fmt_ts(before))
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    async fn get_thread(&self, company_id: Uuid, id: Uuid) -> StoreResult<Option<Thread>> {
        sqlx::query_as::<_, ThreadRow>(
            "SELECT id, company_id, project_id, name, created_at, updated_at FROM threads WHERE company_id = $1 AND id = $2",
        )
        .bind(company_id.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Thread::try_from)
        .transpose()
    }

    async fn list_threads(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Thread>> {
        self.company_page::<ThreadRow, Thread>(
            "SELECT COUNT(*) FROM threads WHERE company_id = $1",
            "SELECT id, company_id, project_id, name, created_at, updated_at FROM threads WHERE company_id = $1 \
             ORDER BY updated_at DESC, id DESC LIMIT $2 OFFSET $3",
            company_id,
            limit,
            offset,
        )
        .await
    }

    async fn rename_thread(&self, company_id: Uuid, id: Uuid, name: &str) -> StoreResult<()> {
        one_row(
            sqlx::query(
                "UPDATE threads SET name = $1, updated_at = $2 WHERE company_id = $3 AND id = $4",
            )
            .bind(name)
            .bind(fmt_ts(now()))
            .bind(company_id.to_string())
            .bind(id.to_string())
            .execute(self.pool())
            .await?,
        )
    }

    /// Delete a thread with its messages, runs and their events (cascades).
    async fn delete_thread(&self, company_id: Uuid, id: Uuid) -> StoreResult<()> {
        self.delete_cascading(
            "DELETE FROM threads WHERE company_id = $1 AND id = $2",
            company_id,
            id,
        )
        .await
    }

    /// A thread's messages, oldest first.
    async fn thread_messages(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<ThreadMessage>> {
        self.scoped_page::<MessageRow, ThreadMessage>(
            "SELECT COUNT(*) FROM thread_messages WHERE company_id = $1 AND thread_id = $2",
            "SELECT id, thread_id, run_id, kind, content, created_at FROM thread_messages \
             WHERE company_id = $1 AND thread_id = $2 ORDER BY created_at, id LIMIT $3 OFFSET $4",
            company_id,
            thread_id,
            limit,
            offset,
        )
        .await
    }

    /// The newest `limit` messages of a thread, oldest first (a run's history).
    async fn thread_history(
        &self,
        company_id: Uuid,
        thread_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<ThreadMessage>> {
        let mut rows = sqlx::query_as::<_, MessageRow>(
            "SELECT id, thread_id, run_id, kind, content, created_at FROM thread_messages \
             WHERE company_id = $1 AND thread_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(company_id.to_string())
        .bind(thread_id.to_string())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.reverse();
        rows.into_iter().map(ThreadMessage::try_from).collect()
    }

    async fn get_project(&self, company_id: Uuid, id: Uuid) -> StoreResult<Option<Project>> {
        sqlx::query_as::<_, ProjectRow>(
            "SELECT id, company_id, name, sandbox_id, created_at FROM projects WHERE company_id = $1 AND id = $2",
        )
        .bind(company_id.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Project::try_from)
        .transpose()
    }

    async fn list_projects(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Project>> {
        self.company_page::<ProjectRow, Project>(
            "SELECT COUNT(*) FROM projects WHERE company_id = $1",
            "SELECT id, company_id, name, sandbox_id, created_at FROM projects WHERE company_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            company_id,
            limit,
            offset,
        )
        .await
    }

    /// Delete a project with its threads, runs, events and files (cascades).
    async fn delete_project(&self, company_id: Uuid, id: Uuid) -> StoreResult<()> {
        self.delete_cascading(
            "DELETE FROM projects WHERE company_id = $1 AND id = $2",
            company_id,
            id,
        )
        .await
    }

    async fn legacy_project_files(&self, limit: i64) -> StoreResult<Vec<LegacyFile>> {
        let rows: Vec<(String, String, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, company_id, project_id, name, content FROM project_files ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, company_id, project_id, name, content)| {
                Ok(LegacyFile {
                    id,
                    company_id: parse_id(&company_id)?,
                    project_id: parse_id(&project_id)?,
                    name,
                    content,
                })
            })
            .collect()
    }

    async fn delete_legacy_project_file(&self, id: &str) -> StoreResult<()> {
        let _writer = self.writer().await;
        sqlx::query("DELETE FROM project_files WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

impl SqlStore {
    // Threads and projects.

    /// Delete one row of a company whose dependents go by `ON DELETE CASCADE`.
    async fn delete_cascading(
        &self,
        sql: &'static str,
        company_id: Uuid,
        id: Uuid,
    ) -> StoreResult<()> {
        let _writer = self.writer().await;
        one_row(
            sqlx::query(sql)
                .bind(company_id.to_string())
                .bind(id.to_string())
                .execute(self.pool())
                .await?,
        )
    }
}
