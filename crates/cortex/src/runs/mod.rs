//! Asynchronous agent runs: execution on the accepting node, durable events, live fan-out to
//! any number of viewers on any node, stop, leases and the reaper, drain on shutdown. No HTTP.
//!
//! Events: the run's sink numbers every event (a gap-free seq from 1; seq 1, `running`, is
//! written with the run), appends it to the run's in-memory [`EventLog`] (this node's viewers
//! read it at once) and queues it; a flusher writes the queue to the database every
//! [`FLUSH_EVERY`] (and at once after a finished message), first publishing it to the run's
//! Redis stream when Redis is configured. Viewers on other nodes follow a mirror log filled from
//! Redis (or, without Redis, from the database). A finished run is replayed from the database.

pub mod log;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cortex_llm::{Message, Tier};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use log::EventLog;

use crate::pipeline::engine::{self, Sink};
use crate::pipeline::{self, AgentChoice, Event, Frame, PipelineError, PrepareInput};
use crate::state::AppState;
use crate::store::{NewMessage, RunStore, UsageRow};

/// How often queued events are written (and published to Redis).
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Messages of a thread a run reads as its history (the token optimizer keeps what fits).
const HISTORY_LIMIT: i64 = 10_000;

/// Why a run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    User,
    Shutdown,
}

/// A run executing on this node.
pub struct LocalRun {
    pub id: Uuid,
    pub company_id: Uuid,
    pub thread_id: Uuid,
    pub log: Arc<EventLog>,
    cancel: CancellationToken,
    reason: Mutex<Option<StopReason>>,
    queue: tokio::sync::Mutex<Queue>,
    /// Serialises writes of this run's events, so they reach storage in seq order.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Queue {
    next_seq: u64,
    frames: Vec<Frame>,
    messages: Vec<NewMessage>,
}

impl Queue {
    /// Everything queued, leaving the queue empty.
    fn take(&mut self) -> (Vec<Frame>, Vec<NewMessage>) {
        (
            std::mem::take(&mut self.frames),
            std::mem::take(&mut self.messages),
        )
    }
}

impl LocalRun {
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.cancel.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason.lock().ok().and_then(|r| *r)
    }

    /// Number, log and queue one event; returns its frame.
    async fn push(&self, event: &Event, message: Option<NewMessage>) -> Frame {
        let mut q = self.queue.lock().await;
        let frame = Frame::new(q.next_seq, event);
        q.next_seq += 1;
        self.log.extend([frame.clone()]);
        q.frames.push(frame.clone());
        q.messages.extend(message);
        frame
    }

    /// Write what is queued: to Redis first (other nodes' viewers), then to the database.
    async fn flush(&self, state: &AppState) -> Result<(), crate::store::StoreError> {
        let _order = self.flushing.lock().await;
        let (frames, messages) = self.queue.lock().await.take();
        if frames.is_empty() && messages.is_empty() {
            return Ok(());
        }
        state.coord.publish_run_frames(self.id, &frames).await;
        let written = state
            .store
            .append_run_events(self.company_id, self.thread_id, self.id, &frames, &messages)
            .await;
        if written.is_err() {
            // Put them back in front, to be written with the next batch.
            let mut q = self.queue.lock().await;
            q.frames.splice(0..0, frames);
            q.messages.splice(0..0, messages);
        }
        written
    }
}

/// What a run needs to execute, decided at start.
pub struct Job {
    pub company_id: Uuid,
    pub thread_id: Uuid,
    /// Its workspace is the built-in tools' `/workspace`.
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub agent: AgentChoice,
    /// The tier asked for (`model_name`), or `None` to route.
    pub tier: Option<Tier>,
    /// The client to call: every tier, or only the pinned `provider/model`.
    pub llm: Option<Arc<cortex_llm::TieredClient>>,
    /// Tiers the company's plan allows (a routed tier outside them falls back to the first).
    pub allowed: Vec<Tier>,
    pub memory_enabled: Option<bool>,
    pub mode: Option<String>,
    pub customer_id: String,
    pub prompt: Option<String>,
}

/// This node's runs, and the mirrors of other nodes' runs its viewers follow.
#[derive(Default)]
pub struct Runs {
    local: Mutex<HashMap<Uuid, Arc<LocalRun>>>,
    mirrors: Mutex<HashMap<Uuid, Mirror>>,
}

#[derive(Clone)]
struct Mirror {
    company_id: Uuid,
    log: Arc<EventLog>,
    last_db_poll: Arc<Mutex<Instant>>,
}

impl Runs {
    pub fn local(&self, run_id: Uuid) -> Option<Arc<LocalRun>> {
        self.local.lock().ok()?.get(&run_id).cloned()
    }

    pub fn local_count(&self) -> usize {
        self.local.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn local_all(&self) -> Vec<Arc<LocalRun>> {
        self.local
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The log a viewer of a run executing on another node follows (created on first use).
    pub fn mirror(&self, company_id: Uuid, run_id: Uuid) -> Arc<EventLog> {
        let Ok(mut m) = self.mirrors.lock() else {
            return Arc::new(EventLog::default());
        };
        m.entry(run_id)
            .or_insert_with(|| Mirror {
                company_id,
                log: Arc::new(EventLog::default()),
                last_db_poll: Arc::new(Mutex::new(Instant::now() - Duration::from_secs(60))),
            })
            .log
            .clone()
    }

    /// Stream keys this node follows for its viewers (`/v1/metrics/system`).
    pub fn mirror_count(&self) -> usize {
        self.mirrors.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Register and spawn a started run. Its first event (seq 1, `running`) is already stored.
pub fn spawn(state: &AppState, job: Job, first: Frame) -> Arc<LocalRun> {
    let lr = Arc::new(LocalRun {
        id: job.run_id,
        company_id: job.company_id,
        thread_id: job.thread_id,
        log: Arc::new(EventLog::default()),
        cancel: CancellationToken::new(),
        reason: Mutex::new(None),
        queue: tokio::sync::Mutex::new(Queue {
            next_seq: first.seq + 1,
            ..Default::default()
        }),
        flushing: tokio::sync::Mutex::new(()),
    });
    lr.log.extend([first]);
    if let Ok(mut m) = state.runs.local.lock() {
        m.insert(lr.id, lr.clone());
    }
    metrics::gauge!("cortex_active_runs").increment(1.0);
    let (st, run) = (state.clone(), lr.clone());
    state
        .tasks
        .spawn(async move { execute(st, run, job).await });
    lr
}

/// The final state of a run, as stored and streamed.
struct Final {
    status: &'static str,
    error: Option<String>,
    code: Option<&'static str>,
}

async fn execute(state: AppState, lr: Arc<LocalRun>, job: Job) {
    let started = Instant::now();
    let max = Duration::from_secs(state.config.runs.max_seconds);
    let result = tokio::time::timeout(max, work(&state, &lr, &job)).await;
    let fin = match result {
        Ok(Ok(())) => Final {
            status: "completed",
            error: None,
            code: None,
        },
        Ok(Err(PipelineError::Cancelled)) if lr.reason() == Some(StopReason::Shutdown) => Final {
            status: "stopped",
            error: Some("server shutting down".into()),
            code: None,
        },
        Ok(Err(PipelineError::Cancelled)) => Final {
            status: "stopped",
            error: None,
            code: None,
        },
        Ok(Err(PipelineError::InsufficientCredits)) => Final {
            status: "failed",
            error: Some("Insufficient credits".into()),
            code: Some("INSUFFICIENT_CREDITS"),
        },
        Ok(Err(e)) => {
            tracing::warn!(run_id = %lr.id, error = %e, "agent run failed");
            Final {
                status: "failed",
                error: Some(user_message(&e).into()),
                code: None,
            }
        }
        Err(_) => Final {
            status: "failed",
            error: Some("timeout".into()),
            code: None,
        },
    };
    lr.cancel.cancel();
    finish_local(&state, &lr, fin).await;
    metrics::histogram!("cortex_run_duration_seconds").record(started.elapsed().as_secs_f64());
}

/// What a user reads when a run failed; internals stay in the log.
fn user_message(e: &PipelineError) -> &'static str {
    match e {
        PipelineError::AgentNotFound => "The agent no longer exists",
        PipelineError::Llm(err) if err.http_status() == 504 => "The model took too long to answer",
        PipelineError::Llm(_) => "The model could not be reached",
        PipelineError::Template(_) => "The agent's system prompt could not be rendered",
        PipelineError::Store(_) | PipelineError::Cancelled | PipelineError::InsufficientCredits => {
            "The run failed because of an internal error"
        }
    }
}

/// Write the final status with the last queued events (retrying while storage fails), then
/// release the run on this node.
async fn finish_local(state: &AppState, lr: &Arc<LocalRun>, fin: Final) {
    lr.push(
        &Event::status(fin.status, fin.error.clone(), fin.code.map(str::to_owned)),
        None,
    )
    .await;
    let _order = lr.flushing.lock().await;
    let (frames, messages) = lr.queue.lock().await.take();
    state.coord.publish_run_frames(lr.id, &frames).await;
    let mut delay = Duration::from_millis(100);
    for attempt in 0.. {
        match state
            .store
            .finish_run(
                lr.company_id,
                lr.thread_id,
                lr.id,
                fin.status,
                fin.error.as_deref(),
                fin.code,
                &frames,
                &messages,
            )
            .await
        {
            Ok(true) => {
                metrics::counter!("cortex_runs_total", "status" => fin.status).increment(1);
                break;
            }
            Ok(false) => {
                tracing::warn!(run_id = %lr.id, "run was finalised by another node");
                break;
            }
            Err(e) if attempt < 20 => {
                tracing::error!(run_id = %lr.id, error = %e, "could not store a run's final status; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(run_id = %lr.id, error = %e, "giving up storing a run's final status; the reaper will finalise it");
                break;
            }
        }
    }
    if let Ok(mut m) = state.runs.local.lock() {
        m.remove(&lr.id);
    }
    metrics::gauge!("cortex_active_runs").decrement(1.0);
}

/// The run's sink: every event is numbered, logged and queued; finished messages are written
/// at once; each model call is priced and debited.
struct RunSink<'a> {
    state: &'a AppState,
    lr: &'a LocalRun,
    job: &'a Job,
    model_used: Mutex<String>,
    out_of_credits: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Sink for RunSink<'_> {
    async fn emit(&self, event: Event) -> Result<(), PipelineError> {
        use std::sync::atomic::Ordering;
        if matches!(event, Event::ToolCall { .. }) && self.out_of_credits.load(Ordering::SeqCst) {
            return Err(PipelineError::InsufficientCredits);
        }
        let message = match &event {
            Event::Assistant {
                message_id,
                content,
                ..
            } => Some(NewMessage {
                id: *message_id,
                kind: "assistant",
                content: content.clone(),
            }),
            Event::ToolResult { output, .. } => Some(NewMessage {
                id: crate::store::new_id(),
                kind: "tool",
                content: output.clone(),
            }),
            _ => None,
        };
        let finished_message = message.is_some();
        self.lr.push(&event, message).await;
        if finished_message {
            self.lr.flush(self.state).await?;
        }
        if let Event::Usage {
            input_tokens,
            output_tokens,
            cost_usd,
        } = &event
        {
            let model_used = self
                .model_used
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            let balance = self
                .state
                .store
                .record_usage(
                    self.job.company_id,
                    Some(self.job.run_id),
                    &UsageRow {
                        agent_id: match self.job.agent {
                            AgentChoice::Id(id) => Some(id),
                            AgentChoice::Builtin => None,
                        },
                        conversation_id: self.job.thread_id,
                        source: "run",
                        model: model_used.clone(),
                        model_used,
                        input_tokens: *input_tokens as i64,
                        output_tokens: *output_tokens as i64,
                        cost_microusd: engine::micro_usd(*cost_usd),
                    },
                )
                .await?;
            if balance.is_some_and(|b| b <= 0) {
                self.out_of_credits.store(true, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

/// The run itself: stages 01–04 over the whole thread, then the loop with streaming.
async fn work(state: &AppState, lr: &LocalRun, job: &Job) -> Result<(), PipelineError> {
    let history = state
        .store
        .thread_history(job.company_id, job.thread_id, HISTORY_LIMIT)
        .await?;
    // The newest user message is the one to answer; everything before it is history.
    let split = history.iter().rposition(|m| m.kind == "user");
    let (message, earlier) = match split {
        Some(i) => (history[i].content.clone(), &history[..i]),
        None => (
            job.prompt
                .clone()
                .unwrap_or_else(|| "Continue the task.".into()),
            &history[..],
        ),
    };
    let history_msgs: Vec<Message> = earlier
        .iter()
        .filter_map(|m| match m.kind.as_str() {
            "user" => Some(Message::user(m.content.clone())),
            "assistant" if !m.content.trim().is_empty() => {
                Some(Message::assistant(m.content.clone()))
            }
            _ => None,
        })
        .collect();
    let metadata = serde_json::Map::new();
    let prepared = pipeline::prepare(
        state,
        PrepareInput {
            company_id: job.company_id,
            agent: job.agent,
            customer_id: &job.customer_id,
            message: &message,
            history: history_msgs,
            channel: "agent",
            metadata: &metadata,
            memory_enabled: job.memory_enabled,
            mode: job.mode.as_deref(),
        },
        crate::sandbox::tools::defs(&state.sandbox),
    )
    .await?;
    let sink = RunSink {
        state,
        lr,
        job,
        model_used: Mutex::new(String::new()),
        out_of_credits: Default::default(),
    };
    let settings = &prepared.loaded.agent.spec.settings;
    let system = prepared.system_prompt()?;
    match &job.llm {
        Some(llm) => {
            let tier = match job.tier {
                Some(t) => t,
                None => {
                    let pinned = settings
                        .tier
                        .as_deref()
                        .and_then(|t| t.parse::<Tier>().ok());
                    let routed = cortex_llm::router::route(
                        &message,
                        !prepared.optimized.tools.is_empty(),
                        pinned,
                    )
                    .tier;
                    if job.allowed.contains(&routed) {
                        routed
                    } else {
                        job.allowed.first().copied().unwrap_or(Tier::Speed)
                    }
                }
            };
            if let Ok(mut m) = sink.model_used.lock() {
                *m = tier.as_str().to_owned();
            }
            let cfg = engine::LoopConfig {
                tier,
                tools: &prepared.optimized.tools,
                max_rounds: state.config.runs.max_steps.saturating_sub(1),
                temperature: settings.temperature,
                max_tokens: settings.max_tokens,
                stream: true,
            };
            let tools = RunTools {
                builtins: crate::sandbox::tools::SandboxTools {
                    sandbox: &state.sandbox,
                    workspace: state.sandbox.workspace(job.company_id, job.project_id),
                },
                actions: pipeline::ActionSet {
                    state,
                    linked: &prepared.linked,
                },
            };
            let outcome = engine::run_loop(
                llm,
                cfg,
                &tools,
                prepared.messages(system),
                &sink,
                &lr.cancel,
            )
            .await?;
            // Stage 08 as for a chat: facts about the user, post-response actions.
            let input = pipeline::ChatInput {
                company_id: job.company_id,
                agent_id: prepared.loaded.agent.id,
                conversation_id: job.thread_id,
                customer_id: job.customer_id.clone(),
                message: message.clone(),
                channel: "agent".into(),
                metadata: serde_json::Map::new(),
            };
            let reply = pipeline::ChatReply {
                reply: outcome.reply,
                model_used: outcome.model_used,
                cached: false,
                actions_executed: outcome.actions_executed,
                latency_ms: 0,
                tokens: pipeline::TokenUsage {
                    input: outcome.usage.input_tokens,
                    output: outcome.usage.output_tokens,
                    cost_usd: outcome.cost_microusd as f64 / 1e6,
                },
                context_tokens: prepared.context_tokens.clone(),
                step_timings: prepared.timings.clone(),
            };
            pipeline::after_turn(state, &input, &reply, &prepared);
        }
        None => {
            let reply = pipeline::extractive::answer(
                &message,
                &prepared.faqs,
                &prepared.optimized.knowledge,
            );
            sink.emit(Event::TextDelta {
                delta: reply.clone(),
            })
            .await?;
            sink.emit(Event::Assistant {
                message_id: crate::store::new_id(),
                content: reply,
                tool_calls: None,
            })
            .await?;
        }
    }
    Ok(())
}

/// Files uploaded before workspaces existed (kept in the database then) are moved into their
/// projects' workspaces, once, at start-up; a file goes from the database only once written.
pub async fn move_legacy_files(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let mut moved = 0;
    loop {
        let files = state.store.legacy_project_files(50).await?;
        if files.is_empty() {
            return Ok(moved);
        }
        for f in files {
            let ws = state.sandbox.workspace(f.company_id, f.project_id);
            let (name, content) = (f.name.clone(), f.content);
            if let Err(e) = ws.blocking(move |ws| ws.place(&name, &content)).await {
                tracing::error!(file = %f.name, project_id = %f.project_id, error = %e,
                    "an uploaded file could not be moved into its workspace; it stays in the database");
                return Ok(moved);
            }
            state.store.delete_legacy_project_file(&f.id).await?;
            moved += 1;
        }
    }
}

/// A run's tools: the sandbox's built-ins, then the agent's actions (an action named like a
/// built-in is shadowed; `pipeline::prepare` leaves it out of the offered definitions).
struct RunTools<'a> {
    builtins: crate::sandbox::tools::SandboxTools<'a>,
    actions: pipeline::ActionSet<'a>,
}

#[async_trait::async_trait]
impl engine::ToolSet for RunTools<'_> {
    async fn execute(&self, call: &cortex_llm::ToolCall) -> crate::actions::tools::ToolOutcome {
        if crate::sandbox::tools::NAMES.contains(&call.name.as_str()) {
            self.builtins.execute(call).await
        } else {
            self.actions.execute(call).await
        }
    }
}

/// Finalise a run whose node is gone (lease expired, or this node's leftovers at start-up):
/// events other nodes saw through Redis but the dead node never stored are copied first, so
/// the stored sequence has no gap; then the final `failed` status.
pub async fn finalize_orphan(state: &AppState, company_id: Uuid, thread_id: Uuid, run_id: Uuid) {
    let result: Result<bool, crate::store::StoreError> = async {
        let mut last = state.store.run_last_seq(company_id, run_id).await?;
        let mut frames = Vec::new();
        for f in state.coord.read_run_frames(run_id, last, 100_000).await {
            if f.seq == last + 1 && !f.is_final() {
                last = f.seq;
                frames.push(f);
            }
        }
        let error = "node lost";
        let fin = Frame::new(last + 1, &Event::status("failed", Some(error.into()), None));
        frames.push(fin.clone());
        let won = state
            .store
            .finish_run(
                company_id,
                thread_id,
                run_id,
                "failed",
                Some(error),
                None,
                &frames,
                &[],
            )
            .await?;
        if won {
            state.coord.publish_run_frames(run_id, &[fin]).await;
            metrics::counter!("cortex_runs_total", "status" => "failed").increment(1);
        }
        Ok(won)
    }
    .await;
    match result {
        Ok(true) => tracing::warn!(%run_id, "finalised a run whose node was lost"),
        Ok(false) => {}
        Err(e) => tracing::error!(%run_id, error = %e, "could not finalise an orphaned run"),
    }
}

/// Start this node's background work: leftovers from a previous life, the flusher, lease
/// renewal and stop requests, the reaper, mirrors for viewers, event retention.
pub async fn start_background(state: &AppState) -> anyhow::Result<()> {
    // On SQLite there is one node: every running run is a leftover. On PostgreSQL, the runs
    // this node (by its instance id) left; other nodes' are reaped when their leases run out.
    let leftovers = match state.store.backend() {
        crate::store::Backend::Sqlite => state.store.running_runs_everywhere().await?,
        crate::store::Backend::Postgres => {
            state.store.orphaned_runs(Some(&state.instance_id)).await?
        }
    };
    for (company, thread, run) in leftovers {
        finalize_orphan(state, company, thread, run).await;
    }
    let stop = state.shutdown.clone();
    let st = state.clone();
    state.tasks.spawn(async move {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease = tokio::time::interval(Duration::from_secs(1));
        let reap_every = Duration::from_secs((st.config.runs.lease_seconds / 3).max(1));
        let mut reap = tokio::time::interval(reap_every);
        let mut mirror = tokio::time::interval(Duration::from_millis(50));
        mirror.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retention = tokio::time::interval(Duration::from_secs(3600));
        let mut stopping = false;
        loop {
            tokio::select! {
                // Shutting down: keep flushing and renewing while `drain` ends the runs.
                () = stop.cancelled(), if !stopping => stopping = true,
                _ = flush.tick() => {
                    if stopping && st.runs.local_count() == 0 {
                        return;
                    }
                    for lr in st.runs.local_all() {
                        if let Err(e) = lr.flush(&st).await {
                            tracing::warn!(run_id = %lr.id, error = %e, "could not write run events; will retry");
                        }
                    }
                }
                _ = lease.tick() => {
                    let until = crate::store::now() + chrono::Duration::seconds(st.config.runs.lease_seconds as i64);
                    match st.store.renew_leases(&st.instance_id, until).await {
                        Ok(stops) => for id in stops {
                            if let Some(lr) = st.runs.local(id) { lr.stop(StopReason::User); }
                        },
                        Err(e) => tracing::warn!(error = %e, "could not renew run leases"),
                    }
                }
                _ = reap.tick() => {
                    match st.store.orphaned_runs(None).await {
                        Ok(list) => for (company, thread, run) in list {
                            if st.runs.local(run).is_none() {
                                finalize_orphan(&st, company, thread, run).await;
                            }
                        },
                        Err(e) => tracing::warn!(error = %e, "could not look for orphaned runs"),
                    }
                }
                _ = mirror.tick() => follow_mirrors(&st).await,
                _ = retention.tick() => {
                    let before = crate::store::now() - chrono::Duration::days(st.config.runs.event_retention_days as i64);
                    if let Err(e) = st.store.prune_run_events(before).await {
                        tracing::warn!(error = %e, "could not prune old run events");
                    }
                }
            }
        }
    });
    Ok(())
}

/// Fill the mirror logs from Redis (or the database), and drop the finished ones.
async fn follow_mirrors(state: &AppState) {
    let mirrors: Vec<(Uuid, Mirror)> = match state.runs.mirrors.lock() {
        Ok(m) => m.iter().map(|(k, v)| (*k, v.clone())).collect(),
        Err(_) => return,
    };
    for (run_id, m) in mirrors {
        let mut last = m.log.last_seq();
        // Redis carries what the run's node published; the database what it stored (and what
        // the reaper wrote). The database is polled at least every second.
        let mut got = Vec::new();
        if last > 0 {
            got = state.coord.read_run_frames(run_id, last, 1000).await;
        }
        let consecutive = got.first().is_some_and(|f| f.seq == last + 1);
        let poll_db = !consecutive
            && m.last_db_poll
                .lock()
                .map(|t| last == 0 || t.elapsed() >= Duration::from_secs(1) || !got.is_empty())
                .unwrap_or(true);
        if poll_db {
            if let Ok(mut t) = m.last_db_poll.lock() {
                *t = Instant::now();
            }
            loop {
                match state
                    .store
                    .run_events_after(m.company_id, run_id, last, 1000)
                    .await
                {
                    Ok(frames) if !frames.is_empty() => {
                        last = frames.last().map(|f| f.seq).unwrap_or(last);
                        m.log.extend(frames);
                    }
                    _ => break,
                }
            }
        }
        m.log.extend(got);
        // Done, or no viewer holds the log any more (the map's is the only reference).
        if (m.log.is_done() || Arc::strong_count(&m.log) <= 2)
            && let Ok(mut map) = state.runs.mirrors.lock()
        {
            map.remove(&run_id);
        }
    }
}

/// On shutdown: give running runs the drain time, then stop them ("server shutting down") and
/// wait until their final status is stored.
pub async fn drain(state: &AppState, within: Duration) {
    let deadline = Instant::now() + within.mul_f64(0.6);
    while state.runs.local_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = state.runs.local_all();
    if !left.is_empty() {
        tracing::info!(runs = left.len(), "stopping runs still going at shutdown");
    }
    for lr in &left {
        lr.stop(StopReason::Shutdown);
    }
    let deadline = Instant::now() + within.mul_f64(0.35);
    while state.runs.local_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
