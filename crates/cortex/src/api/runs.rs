//! Agent runs, threads, projects and billing (contract §10): `POST /v1/agent/start` (multipart),
//! run status, stop and the resumable SSE stream, thread and project reads, `GET /v1/billing`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use chrono::{Datelike, TimeZone, Utc};
use futures::Stream;
use futures::stream::{BoxStream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Caller, Checks, PageInfo, Pagination, Validate, path_id};
use crate::auth::{Identity, Principal};
use crate::pipeline::{AgentChoice, Event, Frame};
use crate::runs::{EventLog, Job, StopReason};
use crate::state::AppState;
use crate::store::{
    AgentStore, CompanyStore, Project, Run, RunStore, StartPlan, Thread, ThreadTarget,
};

/// A file of `files[]`, as received (its name already cleaned).
struct Upload {
    name: String,
    content: Vec<u8>,
}

/// Runs need the `runs` scope on an API key (portal users have it).
fn require_runs(caller: &Identity) -> ApiResult<()> {
    match caller.principal {
        Principal::ApiKey { .. } if !caller.has_scope("runs") => Err(ApiError::Forbidden(
            "This API key does not have the runs scope".into(),
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StartResponse {
    #[schema(value_type = String)]
    pub thread_id: Uuid,
    #[schema(value_type = String)]
    pub agent_run_id: Uuid,
    #[schema(value_type = String)]
    pub project_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sandbox_id: Option<Uuid>,
    /// Always `running`.
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    #[schema(value_type = String)]
    pub id: Uuid,
    #[schema(value_type = String)]
    pub thread_id: Uuid,
    #[schema(value_type = String)]
    pub project_id: Uuid,
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Uuid>,
    /// `running`, `completed`, `failed` or `stopped`.
    pub status: String,
    pub model_name: Option<String>,
    pub mode: Option<String>,
    pub started_at: chrono::DateTime<Utc>,
    pub completed_at: Option<chrono::DateTime<Utc>>,
    /// Why a run failed or stopped, in words a user can read.
    pub error: Option<String>,
    /// A contract error code when one applies (`INSUFFICIENT_CREDITS`).
    pub error_code: Option<String>,
    pub usage: RunUsage,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            id: r.id,
            thread_id: r.thread_id,
            project_id: r.project_id,
            agent_id: r.agent_id,
            status: r.status,
            model_name: r.model_name,
            mode: r.mode,
            started_at: r.started_at,
            completed_at: r.completed_at,
            error: r.error,
            error_code: r.error_code,
            usage: RunUsage {
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cost_usd: r.cost_microusd as f64 / 1e6,
            },
        }
    }
}

/// The fields of `POST /v1/agent/start`, as sent.
#[derive(Default)]
struct StartForm {
    prompt: Option<String>,
    thread_id: Option<String>,
    project_id: Option<String>,
    agent_id: Option<String>,
    model_name: Option<String>,
    optimistic: Option<String>,
    memory_enabled: Option<String>,
    mode: Option<String>,
    files: Vec<Upload>,
}

fn flag(field: &str, value: Option<&str>) -> ApiResult<Option<bool>> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "{field} must be \"true\" or \"false\""
        ))),
    }
}

/// A file name without directories, control characters or leading dots.
fn clean_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() {
        "upload".into()
    } else {
        cleaned.chars().take(255).collect()
    }
}

async fn read_form(state: &AppState, mut form: Multipart) -> ApiResult<StartForm> {
    let per_file = state.config.runs.max_file_bytes;
    let total_limit = state.config.runs.max_upload_bytes;
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the upload exceeds {total_limit} bytes"))
        } else {
            ApiError::BadRequest(format!("invalid multipart body: {e}"))
        }
    };
    let mut out = StartForm::default();
    let mut total = 0usize;
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "files" || name == "files[]" || name == "file" {
            let file_name = clean_name(field.file_name().unwrap_or("upload"));
            let mut bytes = Vec::new();
            while let Some(piece) = field.chunk().await.map_err(bad)? {
                if bytes.len() + piece.len() > per_file {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "{file_name} exceeds the file limit of {per_file} bytes"
                    )));
                }
                if total + bytes.len() + piece.len() > total_limit {
                    return Err(ApiError::PayloadTooLarge(format!(
                        "the files exceed {total_limit} bytes in all"
                    )));
                }
                bytes.extend_from_slice(&piece);
            }
            total += bytes.len();
            out.files.push(Upload {
                name: file_name,
                content: bytes,
            });
            continue;
        }
        let text = field.text().await.map_err(bad)?;
        if text.contains('\0') {
            return Err(ApiError::validation(vec![super::extract::nul_error(vec![
                serde_json::json!("body"),
                serde_json::json!(name),
            ])]));
        }
        let slot = match name.as_str() {
            "prompt" => &mut out.prompt,
            "thread_id" => &mut out.thread_id,
            "project_id" => &mut out.project_id,
            "agent_id" => &mut out.agent_id,
            "model_name" => &mut out.model_name,
            "optimistic" => &mut out.optimistic,
            "memory_enabled" => &mut out.memory_enabled,
            "mode" => &mut out.mode,
            _ => continue,
        };
        *slot = Some(text).filter(|t| !t.trim().is_empty());
    }
    Ok(out)
}

/// The project a start's files go to: the thread's, the one named, or the one it will create.
/// Only the caller's company's (a thread or project of another is a 404, as in the start).
async fn upload_project(
    state: &AppState,
    company_id: Uuid,
    target: &ThreadTarget,
    new_project_id: Uuid,
) -> ApiResult<Uuid> {
    let thread = |id: Uuid| async move { state.store.get_thread(company_id, id).await };
    Ok(match *target {
        ThreadTarget::Existing(id) => {
            thread(id)
                .await?
                .ok_or_else(|| ApiError::not_found("Thread"))?
                .project_id
        }
        ThreadTarget::Optimistic {
            thread_id,
            project_id,
        } => match thread(thread_id).await? {
            Some(t) => t.project_id,
            // New here; the workspace path is per company, so another company's project id
            // cannot reach its files (the start then answers 404).
            None => project_id,
        },
        ThreadTarget::New {
            project_id: Some(id),
        } => {
            state
                .store
                .get_project(company_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("Project"))?
                .id
        }
        ThreadTarget::New { project_id: None } => new_project_id,
    })
}

/// Store uploads in the workspace (a clashing name gets a suffix) within its size limit; all or
/// none. Returns the names used.
async fn place_uploads(
    state: &AppState,
    ws: &crate::sandbox::Workspace,
    files: Vec<Upload>,
) -> ApiResult<Vec<String>> {
    let limit = state.sandbox.config().max_workspace_bytes;
    let placed = ws.blocking(move |ws| {
        let incoming: u64 = files.iter().map(|f| f.content.len() as u64).sum();
        let used = ws.usage()?;
        if used + incoming > limit {
            return Err(crate::sandbox::FsError::TooLarge(format!(
                "the project's workspace would exceed its limit of {limit} bytes ({used} bytes used)"
            )));
        }
        let mut placed = Vec::new();
        for f in &files {
            match ws.place(&f.name, &f.content) {
                Ok(name) => placed.push(name),
                Err(e) => {
                    ws.remove(&placed);
                    return Err(e);
                }
            }
        }
        Ok(placed)
    })
    .await?;
    Ok(placed)
}

/// A new thread's (and project's) name: the prompt's first words.
fn name_from(prompt: Option<&str>) -> String {
    let words: Vec<&str> = prompt
        .unwrap_or_default()
        .split_whitespace()
        .take(8)
        .collect();
    let mut name = words.join(" ");
    if name.chars().count() > 60 {
        name = name
            .chars()
            .take(60)
            .collect::<String>()
            .trim_end()
            .to_owned()
            + "…";
    }
    if name.is_empty() {
        "New thread".into()
    } else {
        name
    }
}

/// The company's default agent: the most recently updated with `is_default`, else the oldest;
/// `Builtin` for a company without agents.
async fn default_agent(state: &AppState, company_id: Uuid) -> ApiResult<AgentChoice> {
    let mut offset = 0;
    let mut oldest = None;
    let mut chosen: Option<(chrono::DateTime<Utc>, Uuid)> = None;
    loop {
        let page = state.store.list_agents(company_id, 200, offset).await?;
        for a in &page.items {
            if a.spec.is_default && chosen.is_none_or(|(at, _)| a.updated_at > at) {
                chosen = Some((a.updated_at, a.id));
            }
            // Listed newest first: the last one seen is the oldest.
            oldest = Some(a.id);
        }
        offset += page.items.len() as i64;
        if page.items.is_empty() || offset >= page.total {
            break;
        }
    }
    Ok(match chosen.map(|(_, id)| id).or(oldest) {
        Some(id) => AgentChoice::Id(id),
        None => AgentChoice::Builtin,
    })
}

/// The memory subject of a run: the user or key that started it.
fn customer_of(caller: &Identity) -> String {
    match &caller.principal {
        Principal::User { user_id, .. } => format!("user:{user_id}"),
        Principal::ApiKey { key_id } => format!("key:{key_id}"),
        Principal::Sdk { public_key_id, .. } => format!("widget:{public_key_id}"),
    }
}

/// `model_name` → the tier it runs on, and the client to call (pinned for `provider/model`).
type ModelChoice = (
    Option<cortex_llm::Tier>,
    Option<Arc<cortex_llm::TieredClient>>,
);

fn resolve_model(state: &AppState, model_name: Option<&str>) -> ApiResult<ModelChoice> {
    let Some(name) = model_name else {
        return Ok((None, state.llm.clone()));
    };
    if let Ok(tier) = name.parse::<cortex_llm::Tier>() {
        return Ok((Some(tier), state.llm.clone()));
    }
    let pinned = name.split_once('/').and_then(|(provider, model)| {
        state
            .llm
            .as_ref()
            .and_then(|llm| llm.pinned(provider, model))
    });
    match pinned {
        Some((tier, client)) => Ok((Some(tier), Some(Arc::new(client)))),
        None => Err(ApiError::BadRequest(format!(
            "Unknown model: {name}. Use a tier (speed, nano, sonnet, complex, search) or a configured provider/model"
        ))),
    }
}

/// Start an agent run; answers before any model work, the run continues in the background.
#[utoipa::path(post, path = "/v1/agent/start", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    request_body(content_type = "multipart/form-data", description = "prompt, thread_id, project_id, agent_id, model_name, optimistic, memory_enabled, mode, files[]"),
    responses((status = 200, body = StartResponse), (status = 400), (status = 401), (status = 402), (status = 404), (status = 409), (status = 413), (status = 503)))]
pub async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    super::extract::Form(form): super::extract::Form,
) -> ApiResult<Json<StartResponse>> {
    require_runs(&caller)?;
    if state.is_shutting_down() {
        return Err(super::health::shutting_down(&state));
    }
    let form = read_form(&state, form).await?;
    let optimistic = flag("optimistic", form.optimistic.as_deref())?.unwrap_or(false);
    let memory_enabled = flag("memory_enabled", form.memory_enabled.as_deref())?;
    if form
        .prompt
        .as_ref()
        .is_some_and(|p| p.chars().count() > 100_000)
    {
        return Err(ApiError::BadRequest(
            "prompt must be at most 100,000 characters".into(),
        ));
    }
    if form.mode.as_ref().is_some_and(|m| m.chars().count() > 64) {
        return Err(ApiError::BadRequest(
            "mode must be at most 64 characters".into(),
        ));
    }
    let target = if optimistic {
        let ids = form
            .thread_id
            .as_deref()
            .zip(form.project_id.as_deref())
            .and_then(|(t, p)| {
                Some((
                    Uuid::parse_str(t.trim()).ok()?,
                    Uuid::parse_str(p.trim()).ok()?,
                ))
            });
        let Some((thread_id, project_id)) = ids else {
            return Err(ApiError::BadRequest(
                "thread_id and project_id required for optimistic mode".into(),
            ));
        };
        ThreadTarget::Optimistic {
            thread_id,
            project_id,
        }
    } else if let Some(t) = &form.thread_id {
        ThreadTarget::Existing(path_id(t.trim(), "Thread")?)
    } else {
        let project_id = form
            .project_id
            .as_deref()
            .map(|p| path_id(p.trim(), "Project"))
            .transpose()?;
        ThreadTarget::New { project_id }
    };
    if !matches!(target, ThreadTarget::Existing(_)) && form.prompt.is_none() {
        return Err(ApiError::BadRequest(
            "prompt required when creating new thread".into(),
        ));
    }
    let company = state
        .store
        .get_company(caller.company_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let plan = state.config.plan(&company.plan);
    let agent = match &form.agent_id {
        Some(id) => {
            let id = path_id(id.trim(), "Agent")?;
            state
                .store
                .get_agent(caller.company_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("Agent"))?;
            AgentChoice::Id(id)
        }
        None => default_agent(&state, caller.company_id).await?,
    };
    let model_name = form.model_name.as_deref().map(str::trim);
    let (tier, llm) = resolve_model(&state, model_name)?;
    if let (Some(t), Some(name)) = (tier, model_name)
        && !plan.allows(t.as_str())
    {
        return Err(ApiError::payment(
            "MODEL_ACCESS_DENIED",
            &format!(
                "Your current subscription plan does not include access to {name}. Please upgrade your subscription."
            ),
            json!({"tier_name": company.plan}),
        ));
    }
    let allowed: Vec<cortex_llm::Tier> = cortex_llm::Tier::ALL
        .iter()
        .copied()
        .filter(|t| plan.allows(t.as_str()))
        .collect();
    // Files land in the workspace before the start's transaction (which needs their final
    // names in the prompt); they are removed again if the start is refused.
    let new_project_id = crate::store::new_id();
    let (placed, workspace) = if form.files.is_empty() {
        (Vec::new(), None)
    } else {
        let project_id = upload_project(&state, caller.company_id, &target, new_project_id).await?;
        let ws = state.sandbox.workspace(caller.company_id, project_id);
        let placed = place_uploads(&state, &ws, form.files).await?;
        (placed, Some(ws))
    };
    let prompt = match (&form.prompt, placed.is_empty()) {
        (p, true) => p.clone(),
        (p, false) => {
            let mut text = p.clone().unwrap_or_default();
            for name in &placed {
                text.push_str(&format!("\n\n[Uploaded File: /workspace/{name}]"));
            }
            Some(text.trim_start().to_owned())
        }
    };
    let run_id = crate::store::new_id();
    let first = Frame::new(1, &Event::status("running", None, None));
    let lease = chrono::Duration::seconds(state.config.runs.lease_seconds as i64);
    let started = state
        .store
        .start_run(
            run_id,
            StartPlan {
                company_id: caller.company_id,
                target,
                name: name_from(form.prompt.as_deref()),
                prompt: prompt.clone(),
                agent_id: match agent {
                    AgentChoice::Id(id) => Some(id),
                    AgentChoice::Builtin => None,
                },
                model_name: model_name.map(str::to_owned),
                mode: form.mode.clone(),
                memory_enabled,
                node_id: state.instance_id.clone(),
                lease_until: crate::store::now() + lease,
                concurrent_runs: plan.concurrent_runs,
                thread_limit: plan.threads,
                new_project_id,
                sandbox_id: crate::store::new_id(),
                first_event: first.clone(),
            },
        )
        .await;
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            if let Some(ws) = workspace {
                let _ = ws
                    .blocking(move |ws| {
                        ws.remove(&placed);
                        Ok(())
                    })
                    .await;
            }
            return Err(ApiError::from(e));
        }
    };
    let run = started.run;
    crate::runs::spawn(
        &state,
        Job {
            company_id: caller.company_id,
            thread_id: run.thread_id,
            project_id: run.project_id,
            run_id,
            agent,
            tier,
            llm,
            allowed,
            memory_enabled,
            mode: form.mode,
            customer_id: customer_of(&caller),
            prompt,
        },
        first,
    );
    Ok(Json(StartResponse {
        thread_id: run.thread_id,
        agent_run_id: run.id,
        project_id: run.project_id,
        sandbox_id: started.project.sandbox_id,
        status: "running".into(),
    }))
}

async fn find_run(state: &AppState, caller: &Identity, id: &str) -> ApiResult<Run> {
    require_runs(caller)?;
    let id = path_id(id, "Agent run")?;
    state
        .store
        .get_run(caller.company_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Agent run"))
}

#[utoipa::path(get, path = "/v1/agent-run/{id}", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 401), (status = 404)))]
pub async fn get_run(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    Ok(Json(find_run(&state, &caller, &id).await?.into()))
}

/// Stop a run and wait (up to a few seconds) for its final status; a stop before the run's node
/// has answered still answers the run as it then is.
async fn stop_and_wait(state: &AppState, run: Run) -> ApiResult<Run> {
    if run.status != "running" {
        return Ok(run);
    }
    if let Some(lr) = state.runs.local(run.id) {
        lr.stop(StopReason::User);
    } else {
        state.store.request_stop(run.company_id, run.id).await?;
        state.coord.publish_stop(run.id).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = state
            .store
            .get_run(run.company_id, run.id)
            .await?
            .ok_or_else(|| ApiError::not_found("Agent run"))?;
        if now.status != "running" || Instant::now() >= deadline {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stop a run (on any node). Idempotent: a finished run answers its final status.
#[utoipa::path(post, path = "/v1/agent-run/{id}/stop", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RunView), (status = 401), (status = 404)))]
pub async fn stop(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<RunView>> {
    let run = find_run(&state, &caller, &id).await?;
    Ok(Json(stop_and_wait(&state, run).await?.into()))
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    last_id: Option<String>,
    /// Read by the authentication layer (EventSource cannot send headers).
    #[allow(dead_code)]
    token: Option<String>,
}

/// Follow a log from `after` until its final status (or, for a mirror, until shutdown).
fn follow(
    log: Arc<EventLog>,
    after: u64,
    stop: Option<tokio_util::sync::CancellationToken>,
) -> BoxStream<'static, Arc<Frame>> {
    struct Follow {
        log: Arc<EventLog>,
        rx: tokio::sync::watch::Receiver<u64>,
        pos: u64,
        buf: std::collections::VecDeque<Arc<Frame>>,
        ended: bool,
        stop: Option<tokio_util::sync::CancellationToken>,
    }
    let rx = log.subscribe();
    let init = Follow {
        log,
        rx,
        pos: after,
        buf: Default::default(),
        ended: false,
        stop,
    };
    futures::stream::unfold(init, |mut f| async move {
        loop {
            if let Some(frame) = f.buf.pop_front() {
                f.pos = frame.seq;
                if frame.is_final() {
                    f.ended = true;
                }
                return Some((frame, f));
            }
            if f.ended {
                return None;
            }
            f.rx.borrow_and_update();
            // Small batches: the buffer's capacity stays with the viewer for its whole life.
            let batch = f.log.after(f.pos, 16);
            if !batch.is_empty() {
                f.buf.extend(batch);
                continue;
            }
            let stopped = async {
                match &f.stop {
                    Some(s) => s.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = f.rx.changed() => if changed.is_err() { return None },
                () = stopped => return None,
            }
        }
    })
    .boxed()
}

/// A finished run's events from storage, page by page.
fn replay(
    state: AppState,
    company_id: Uuid,
    run_id: Uuid,
    after: u64,
) -> BoxStream<'static, Arc<Frame>> {
    let init = (
        state,
        after,
        std::collections::VecDeque::<Frame>::new(),
        false,
    );
    futures::stream::unfold(init, move |(state, mut pos, mut buf, mut end)| async move {
        loop {
            if let Some(f) = buf.pop_front() {
                pos = f.seq;
                return Some((Arc::new(f), (state, pos, buf, end)));
            }
            if end {
                return None;
            }
            match state
                .store
                .run_events_after(company_id, run_id, pos, 500)
                .await
            {
                Ok(page) => {
                    end = page.len() < 500;
                    buf.extend(page);
                }
                Err(e) => {
                    tracing::warn!(error = %e, %run_id, "could not read run events");
                    return None;
                }
            }
        }
    })
    .boxed()
}

/// Everything a run produces, as Server-Sent Events, from the first event (or after
/// `Last-Event-ID` / `?last_id=`), then live until the final status. Also takes `?token=`.
#[utoipa::path(get, path = "/v1/agent-run/{id}/stream", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path), ("last_id" = Option<String>, Query), ("token" = Option<String>, Query)),
    responses((status = 200, content_type = "text/event-stream", description = "status, text_delta, assistant, tool_call, tool_result, usage; ends with status completed | failed | stopped"),
        (status = 400), (status = 401), (status = 404)))]
pub async fn stream(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let run = find_run(&state, &caller, &id).await?;
    let after = super::sse::last_event_id(&headers, q.last_id.as_deref())?;
    let frames = if let Some(lr) = state.runs.local(run.id) {
        follow(lr.log.clone(), after, None)
    } else if run.status == "running" {
        let log = state.runs.mirror(run.company_id, run.id);
        follow(log, after, Some(state.shutdown.clone()))
    } else {
        replay(state.clone(), run.company_id, run.id, after)
    };
    Ok(super::sse::respond(
        &state,
        frames,
        Some("cortex_run_stream_viewers"),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub success: bool,
    pub agent_runs: Vec<RunView>,
    pub pagination: PageInfo,
}

#[utoipa::path(get, path = "/v1/agent-runs/active", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)), responses((status = 200, body = RunList), (status = 401)))]
pub async fn active(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<RunList>> {
    require_runs(&caller)?;
    let runs = state
        .store
        .active_runs(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(RunList {
        success: true,
        agent_runs: runs.items.into_iter().map(Into::into).collect(),
        pagination: page.info(runs.total),
    }))
}

async fn find_thread(state: &AppState, caller: &Identity, id: &str) -> ApiResult<Thread> {
    require_runs(caller)?;
    let id = path_id(id, "Thread")?;
    state
        .store
        .get_thread(caller.company_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Thread"))
}

#[utoipa::path(get, path = "/v1/thread/{thread_id}/agent-runs", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("thread_id" = String, Path), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = RunList), (status = 401), (status = 404)))]
pub async fn thread_runs(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(thread_id): Path<String>,
    page: Pagination,
) -> ApiResult<Json<RunList>> {
    let thread = find_thread(&state, &caller, &thread_id).await?;
    let runs = state
        .store
        .thread_runs(caller.company_id, thread.id, page.limit, page.offset)
        .await?;
    Ok(Json(RunList {
        success: true,
        agent_runs: runs.items.into_iter().map(Into::into).collect(),
        pagination: page.info(runs.total),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadView {
    #[schema(value_type = String)]
    pub thread_id: Uuid,
    #[schema(value_type = String)]
    pub project_id: Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

impl From<Thread> for ThreadView {
    fn from(t: Thread) -> Self {
        ThreadView {
            thread_id: t.id,
            project_id: t.project_id,
            name: t.name,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadList {
    pub success: bool,
    pub threads: Vec<ThreadView>,
    pub pagination: PageInfo,
}

#[utoipa::path(get, path = "/v1/threads", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)), responses((status = 200, body = ThreadList), (status = 401)))]
pub async fn list_threads(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<ThreadList>> {
    require_runs(&caller)?;
    let threads = state
        .store
        .list_threads(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(ThreadList {
        success: true,
        threads: threads.items.into_iter().map(Into::into).collect(),
        pagination: page.info(threads.total),
    }))
}

#[utoipa::path(get, path = "/v1/threads/{id}", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ThreadView), (status = 401), (status = 404)))]
pub async fn get_thread(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ThreadView>> {
    Ok(Json(find_thread(&state, &caller, &id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThreadPatch {
    /// 1–200 characters.
    pub name: String,
}

impl Validate for ThreadPatch {
    fn validate(&self) -> Result<(), Vec<super::FieldError>> {
        let mut c = Checks::default();
        c.len("name", self.name.trim(), 1, 200);
        c.finish()
    }
}

#[utoipa::path(patch, path = "/v1/threads/{id}", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), request_body = ThreadPatch, responses((status = 200, body = ThreadView), (status = 401), (status = 404), (status = 422)))]
pub async fn patch_thread(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ThreadPatch>,
) -> ApiResult<Json<ThreadView>> {
    let thread = find_thread(&state, &caller, &id).await?;
    state
        .store
        .rename_thread(caller.company_id, thread.id, body.name.trim())
        .await?;
    Ok(Json(find_thread(&state, &caller, &id).await?.into()))
}

/// Stop the running runs of a thread or project before it is deleted.
async fn stop_runs_of(
    state: &AppState,
    company_id: Uuid,
    project_id: Option<Uuid>,
    thread_id: Option<Uuid>,
) -> ApiResult<()> {
    for run in state
        .store
        .running_runs_of_threads(company_id, project_id, thread_id)
        .await?
    {
        stop_and_wait(state, run).await?;
    }
    Ok(())
}

#[utoipa::path(delete, path = "/v1/threads/{id}", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200), (status = 401), (status = 404)))]
pub async fn delete_thread(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let thread = find_thread(&state, &caller, &id).await?;
    stop_runs_of(&state, caller.company_id, None, Some(thread.id)).await?;
    state
        .store
        .delete_thread(caller.company_id, thread.id)
        .await?;
    Ok(Json(json!({"success": true, "thread_id": thread.id})))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    #[schema(value_type = String)]
    pub message_id: Uuid,
    /// `user`, `assistant` or `tool`.
    #[serde(rename = "type")]
    pub kind: String,
    pub content: String,
    pub created_at: chrono::DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub success: bool,
    pub messages: Vec<MessageView>,
    pub pagination: PageInfo,
}

#[utoipa::path(get, path = "/v1/threads/{id}/messages", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path), ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = MessageList), (status = 401), (status = 404)))]
pub async fn thread_messages(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    page: Pagination,
) -> ApiResult<Json<MessageList>> {
    let thread = find_thread(&state, &caller, &id).await?;
    let messages = state
        .store
        .thread_messages(caller.company_id, thread.id, page.limit, page.offset)
        .await?;
    Ok(Json(MessageList {
        success: true,
        messages: messages
            .items
            .into_iter()
            .map(|m| MessageView {
                message_id: m.id,
                kind: m.kind,
                content: m.content,
                created_at: m.created_at,
            })
            .collect(),
        pagination: page.info(messages.total),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    #[schema(value_type = String)]
    pub project_id: Uuid,
    pub name: String,
    #[schema(value_type = Option<String>)]
    pub sandbox_id: Option<Uuid>,
    pub created_at: chrono::DateTime<Utc>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        ProjectView {
            project_id: p.id,
            name: p.name,
            sandbox_id: p.sandbox_id,
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    pub success: bool,
    pub projects: Vec<ProjectView>,
    pub pagination: PageInfo,
}

#[utoipa::path(get, path = "/v1/projects", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)), responses((status = 200, body = ProjectList), (status = 401)))]
pub async fn list_projects(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<ProjectList>> {
    require_runs(&caller)?;
    let projects = state
        .store
        .list_projects(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(ProjectList {
        success: true,
        projects: projects.items.into_iter().map(Into::into).collect(),
        pagination: page.info(projects.total),
    }))
}

async fn find_project(state: &AppState, caller: &Identity, id: &str) -> ApiResult<Project> {
    require_runs(caller)?;
    let id = path_id(id, "Project")?;
    state
        .store
        .get_project(caller.company_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Project"))
}

#[utoipa::path(get, path = "/v1/projects/{id}", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ProjectView), (status = 401), (status = 404)))]
pub async fn get_project(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ProjectView>> {
    Ok(Json(find_project(&state, &caller, &id).await?.into()))
}

#[utoipa::path(delete, path = "/v1/projects/{id}", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200), (status = 401), (status = 404)))]
pub async fn delete_project(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let project = find_project(&state, &caller, &id).await?;
    stop_runs_of(&state, caller.company_id, Some(project.id), None).await?;
    state
        .store
        .delete_project(caller.company_id, project.id)
        .await?;
    let ws = state.sandbox.workspace(caller.company_id, project.id);
    let removed = ws
        .blocking(|ws| match std::fs::remove_dir_all(&ws.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => Ok(r?),
        })
        .await;
    if let Err(e) = removed {
        tracing::warn!(project_id = %project.id, error = %e, "a deleted project's workspace was not removed");
    }
    Ok(Json(json!({"success": true, "project_id": project.id})))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    pub success: bool,
    pub files: Vec<crate::sandbox::FileEntry>,
    pub pagination: PageInfo,
}

#[derive(Debug, Deserialize)]
pub struct FilePath {
    path: Option<String>,
}

/// `?path=` as sent, or a 400 in the contract's shape (e.g. a malformed percent-encoding).
fn file_query(q: Result<Query<FilePath>, QueryRejection>) -> ApiResult<FilePath> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
}

/// The files of a project's workspace (recursive; paths relative to `/workspace`).
#[utoipa::path(get, path = "/v1/projects/{id}/files", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path), ("path" = Option<String>, Query, description = "A directory under the workspace"),
        ("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = FileList), (status = 400), (status = 401), (status = 404)))]
pub async fn list_files(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    q: Result<Query<FilePath>, QueryRejection>,
    page: Pagination,
) -> ApiResult<Json<FileList>> {
    let q = file_query(q)?;
    let project = find_project(&state, &caller, &id).await?;
    let ws = state.sandbox.workspace(caller.company_id, project.id);
    let path = q.path.unwrap_or_default();
    let files = ws.blocking(move |ws| ws.list(&path)).await?;
    let total = files.len() as i64;
    Ok(Json(FileList {
        success: true,
        files: files
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
            .collect(),
        pagination: page.info(total),
    }))
}

/// One file's bytes, with a content type from its name. Served so that a browser never runs
/// it (`Content-Security-Policy: sandbox`, `nosniff`).
#[utoipa::path(get, path = "/v1/projects/{id}/files/content", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path), ("path" = String, Query, description = "Relative to /workspace, or absolute under it")),
    responses((status = 200, description = "The file's bytes"), (status = 400), (status = 401), (status = 404)))]
pub async fn file_content(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    q: Result<Query<FilePath>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::http::header;
    let q = file_query(q)?;
    let project = find_project(&state, &caller, &id).await?;
    let Some(path) = q.path.filter(|p| !p.trim().is_empty()) else {
        return Err(ApiError::BadRequest("path is required".into()));
    };
    let ws = state.sandbox.workspace(caller.company_id, project.id);
    let p = path.clone();
    let (file, size) = ws.blocking(move |ws| ws.open_file(&p)).await?;
    let mime = mime_guess::from_path(&path).first_or_octet_stream();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(file),
    ));
    axum::response::Response::builder()
        .header(header::CONTENT_TYPE, mime.as_ref())
        .header(header::CONTENT_LENGTH, size)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, "sandbox")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .map_err(ApiError::internal)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingLimits {
    pub concurrent_runs: u32,
    /// `null`: unlimited.
    pub threads: Option<u64>,
    pub tiers: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BillingUsage {
    pub period_start: chrono::DateTime<Utc>,
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Billing {
    pub plan: String,
    /// `null`: unmetered.
    pub credits_usd: Option<f64>,
    pub limits: BillingLimits,
    pub running_runs: i64,
    pub thread_count: i64,
    pub usage: BillingUsage,
}

/// The company's plan, balance, limits and this month's usage.
#[utoipa::path(get, path = "/v1/billing", tag = "runs", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Billing), (status = 401)))]
pub async fn billing(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> ApiResult<Json<Billing>> {
    let company = state
        .store
        .get_company(caller.company_id)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let plan = state.config.plan(&company.plan);
    let credits = state.store.credits(caller.company_id).await?;
    let (running, threads) = state.store.run_counts(caller.company_id).await?;
    let now = Utc::now();
    let period_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let usage = state
        .store
        .usage_since(caller.company_id, period_start)
        .await?;
    Ok(Json(Billing {
        plan: company.plan,
        credits_usd: credits.map(|c| c as f64 / 1e6),
        limits: BillingLimits {
            concurrent_runs: plan.concurrent_runs,
            threads: plan.threads,
            tiers: plan.tiers,
        },
        running_runs: running,
        thread_count: threads,
        usage: BillingUsage {
            period_start,
            cost_usd: usage.cost_microusd as f64 / 1e6,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
        },
    }))
}
