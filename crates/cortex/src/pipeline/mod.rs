//! The chat pipeline: eight stages from a customer's message to a reply, each timed.
//!
//! 01 config → 02 memory → 03 context → 04 token optimizer → 05 cache → 06 router →
//! 07 compiler (template, model, tool loop) → 08 post actions. A chat looks its answer up in
//! the cache (05) right after 01: a hit skips 02–04 and 06–07.

pub mod cache;
pub mod context;
pub mod engine;
pub mod events;
pub mod extract;
pub mod extractive;
pub mod memory;
pub mod terms;
pub mod text;

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use cortex_llm::optimizer::{self, ContextInput};
use cortex_llm::{LlmError, Message, Tier, ToolDef, Usage};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::actions::tools;
use crate::agents::LoadedAgent;
use crate::agents::template::{PromptContext, PromptTemplate, TemplateError};
use crate::state::AppState;
use crate::store::{AgentStore, CacheStore, ConversationStore, StoreError, Turn};
pub use events::{Event, Frame};

/// How many earlier messages of the conversation are considered.
const HISTORY: i64 = 20;

/// A validated chat request.
#[derive(Debug, Clone)]
pub struct ChatInput {
    pub company_id: Uuid,
    pub agent_id: Uuid,
    pub conversation_id: Uuid,
    pub customer_id: String,
    pub message: String,
    pub channel: String,
    pub metadata: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContextTokens {
    pub before_compression: u64,
    pub after_compression: u64,
    pub savings_pct: f64,
}

/// Measured milliseconds per stage; `tool_call_rounds` is a count.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StepTimings {
    pub config_load: u64,
    pub memory_recall: u64,
    pub context_engine: u64,
    pub token_optimizer: u64,
    pub cache_check: u64,
    pub model_router: u64,
    pub agent_compiler: u64,
    pub tool_call_rounds: u64,
    pub tool_execution: u64,
}

/// The answer of `/v1/chat`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChatReply {
    pub reply: String,
    pub model_used: String,
    pub cached: bool,
    pub actions_executed: Vec<String>,
    pub latency_ms: u64,
    pub tokens: TokenUsage,
    pub context_tokens: ContextTokens,
    pub step_timings: StepTimings,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("agent not found")]
    AgentNotFound,
    #[error("template error: {0}")]
    Template(#[from] TemplateError),
    #[error("model call failed: {0}")]
    Llm(LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cancelled")]
    Cancelled,
    /// A metered company's balance ran out (a run stops after its current call).
    #[error("insufficient credits")]
    InsufficientCredits,
}

/// A model call cancelled by our own token is a cancellation (a stop, a client gone), not a
/// model failure.
impl From<LlmError> for PipelineError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::Cancelled => PipelineError::Cancelled,
            other => PipelineError::Llm(other),
        }
    }
}

fn ms(since: Instant) -> u64 {
    (since.elapsed().as_secs_f64() * 1000.0).round() as u64
}

/// Stage 01: the agent through the config cache (5-minute TTL, invalidated by updates).
pub async fn load_agent(
    state: &AppState,
    company_id: Uuid,
    agent_id: Uuid,
) -> Result<Arc<LoadedAgent>, PipelineError> {
    Ok(load_agent_counted(state, company_id, agent_id).await?.0)
}

/// [`load_agent`], and whether the config cache had it.
async fn load_agent_counted(
    state: &AppState,
    company_id: Uuid,
    agent_id: Uuid,
) -> Result<(Arc<LoadedAgent>, bool), PipelineError> {
    if let Some(hit) = state.agent_cache.get(agent_id)
        && hit.agent.company_id == company_id
    {
        metrics::counter!("cortex_config_cache_hits_total").increment(1);
        return Ok((hit, true));
    }
    metrics::counter!("cortex_config_cache_misses_total").increment(1);
    let agent = state
        .store
        .get_agent(company_id, agent_id)
        .await?
        .ok_or(PipelineError::AgentNotFound)?;
    let template = PromptTemplate::compile(&agent.spec.system_prompt)?;
    let loaded = Arc::new(LoadedAgent { agent, template });
    state.agent_cache.put(loaded.clone());
    Ok((loaded, false))
}

/// Which agent a turn uses.
#[derive(Debug, Clone, Copy)]
pub enum AgentChoice {
    Id(Uuid),
    /// The built-in general assistant (a company with no agent).
    Builtin,
}

/// What stages 01–04 need: who, which agent, the message and the history before it.
pub struct PrepareInput<'a> {
    pub company_id: Uuid,
    pub agent: AgentChoice,
    pub customer_id: &'a str,
    pub message: &'a str,
    pub history: Vec<Message>,
    pub channel: &'a str,
    pub metadata: &'a serde_json::Map<String, Value>,
    /// Overrides the agent's `memory_enabled` (a run's `memory_enabled`).
    pub memory_enabled: Option<bool>,
    /// A run's `mode`, given to the template.
    pub mode: Option<&'a str>,
}

/// The outcome of stages 01–04, shared by `/v1/chat` and agent runs.
pub struct Prepared {
    pub loaded: Arc<LoadedAgent>,
    pub linked: tools::Linked,
    pub config_hit: bool,
    pub memory_enabled: bool,
    pub faqs: Vec<(optimizer::Faq, f32)>,
    pub optimized: optimizer::OptimizedContext,
    pub context_tokens: ContextTokens,
    pub timings: StepTimings,
    now: String,
    customer: Value,
    channel: String,
    metadata: serde_json::Map<String, Value>,
    mode: Option<String>,
}

impl Prepared {
    /// The system prompt: the template with what the optimizer kept, and sections for what the
    /// template does not place itself.
    pub fn system_prompt(&self) -> Result<String, TemplateError> {
        let spec = &self.loaded.agent.spec;
        let memory: Vec<String> = self
            .optimized
            .memory
            .iter()
            .map(|m| m.text.clone())
            .collect();
        let knowledge: Vec<String> = self
            .optimized
            .knowledge
            .iter()
            .map(|k| k.text.clone())
            .collect();
        let faqs: Vec<Value> = self
            .optimized
            .faqs
            .iter()
            .map(|f| serde_json::json!({"question": f.question, "answer": f.answer}))
            .collect();
        let mut system = self.loaded.template.render(&PromptContext {
            agent: serde_json::json!({"id": self.loaded.agent.id, "name": spec.name}),
            personality: &spec.personality,
            dialect: &spec.dialect,
            customer: self.customer.clone(),
            memory: memory.clone(),
            knowledge: knowledge.clone(),
            faqs,
            scenarios: &spec.scenarios,
            channel: &self.channel,
            metadata: &self.metadata,
            now: self.now.clone(),
            mode: self.mode.as_deref(),
        })?;
        append_sections(
            &mut system,
            &self.loaded.template,
            &memory,
            &knowledge,
            &self.optimized.faqs,
        );
        Ok(system)
    }

    /// The tools offered to the model (those the optimizer kept), none when the agent allows no
    /// tool rounds.
    pub fn messages(&self, system: String) -> Vec<Message> {
        let mut messages = Vec::with_capacity(self.optimized.history.len() + 2);
        messages.push(Message::system(system));
        messages.extend(self.optimized.history.iter().cloned());
        messages.push(Message::user(self.optimized.message.clone()));
        messages
    }
}

/// The built-in general assistant, for a company without agents.
fn builtin_agent(company_id: Uuid) -> Result<Arc<LoadedAgent>, PipelineError> {
    let spec = crate::agents::AgentSpec {
        name: "General assistant".into(),
        system_prompt: "You are {{ agent.name }}, a careful, capable assistant. Work step by step, use the tools you are given when they help, and finish with a clear answer.".into(),
        ..Default::default()
    };
    let template = PromptTemplate::compile(&spec.system_prompt)?;
    let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    Ok(Arc::new(LoadedAgent {
        agent: crate::agents::Agent {
            id: Uuid::nil(),
            company_id,
            spec,
            created_at: at,
            updated_at: at,
        },
        template,
    }))
}

/// Stage 01's outcome: the agent and its linked actions.
pub struct Configured {
    pub loaded: Arc<LoadedAgent>,
    pub linked: tools::Linked,
    pub config_hit: bool,
    /// How long stage 01 took.
    pub ms: u64,
}

/// Stage 01: the agent (through the config cache) and its linked actions, read once: tools for
/// stage 07, post-response actions for stage 08.
#[tracing::instrument(name = "stage.01_config_load", skip_all)]
pub async fn configure(
    state: &AppState,
    company_id: Uuid,
    agent: AgentChoice,
) -> Result<Configured, PipelineError> {
    let s = Instant::now();
    let (loaded, config_hit) = match agent {
        AgentChoice::Id(id) => load_agent_counted(state, company_id, id).await?,
        AgentChoice::Builtin => (builtin_agent(company_id)?, false),
    };
    let linked = if loaded.agent.spec.action_ids.is_empty() {
        tools::Linked::default()
    } else {
        state.tools.linked(company_id, &loaded.agent).await?
    };
    Ok(Configured {
        loaded,
        linked,
        config_hit,
        ms: ms(s),
    })
}

/// Stages 01–04: the agent and its linked actions, customer memory, knowledge, and the token
/// optimizer over the history. `extra_tools` are offered before the agent's actions.
pub async fn prepare(
    state: &AppState,
    input: PrepareInput<'_>,
    extra_tools: Vec<ToolDef>,
) -> Result<Prepared, PipelineError> {
    let configured = configure(state, input.company_id, input.agent).await?;
    prepare_configured(state, configured, input, extra_tools).await
}

/// Stages 02–04 for an agent stage 01 resolved (`input.agent` is not read again).
async fn prepare_configured(
    state: &AppState,
    configured: Configured,
    input: PrepareInput<'_>,
    extra_tools: Vec<ToolDef>,
) -> Result<Prepared, PipelineError> {
    let Configured {
        loaded,
        linked,
        config_hit,
        ms: config_ms,
    } = configured;
    let mut t = StepTimings {
        config_load: config_ms,
        ..StepTimings::default()
    };
    let agent = &loaded.agent;
    let spec = &agent.spec;
    let settings = &spec.settings;
    let mut tool_defs = extra_tools;
    if settings.max_tool_rounds > 0 {
        // An action named like an extra (built-in) tool is shadowed by it.
        let extra: Vec<String> = tool_defs.iter().map(|d| d.name.clone()).collect();
        tool_defs.extend(
            linked
                .tool_defs()
                .into_iter()
                .filter(|d| !extra.contains(&d.name)),
        );
    }

    // 02 memory (customer facts)
    let s = Instant::now();
    let memory_enabled = input.memory_enabled.unwrap_or(settings.memory_enabled);
    let facts = if memory_enabled {
        memory::recall(
            &state.store,
            state.knowledge.registry.default_embedder().as_ref(),
            input.company_id,
            input.customer_id,
            agent.id,
            input.message,
        )
        .instrument(tracing::info_span!("stage.02_memory_recall"))
        .await?
    } else {
        Vec::new()
    };
    t.memory_recall = ms(s);

    // 03 context
    let s = Instant::now();
    let stage = tracing::info_span!("stage.03_context_engine");
    let knowledge = context::retrieve(
        state,
        input.company_id,
        agent,
        input.message,
        settings.rag_top_k as usize,
    )
    .instrument(stage.clone())
    .await?;
    let faqs = stage.in_scope(|| context::ranked_faqs(spec, input.message));
    drop(stage);
    t.context_engine = ms(s);

    // 04 token optimizer (no await inside: the span is entered, then dropped)
    let s = Instant::now();
    let stage = tracing::info_span!("stage.04_token_optimizer").entered();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let customer = serde_json::json!({"id": input.customer_id});
    let identity = loaded.template.render(&PromptContext {
        agent: serde_json::json!({"id": agent.id, "name": spec.name}),
        personality: &spec.personality,
        dialect: &spec.dialect,
        customer: customer.clone(),
        memory: vec![],
        knowledge: vec![],
        faqs: vec![],
        scenarios: &spec.scenarios,
        channel: input.channel,
        metadata: input.metadata,
        now: now.clone(),
        mode: input.mode,
    })?;
    let optimized = optimizer::optimize(
        ContextInput {
            identity,
            message: input.message.to_owned(),
            tools: tool_defs,
            memory: facts,
            knowledge,
            history: input.history,
            faqs: faqs.iter().map(|(f, _)| f.clone()).collect(),
        },
        settings.token_budget as usize,
    );
    let report = &optimized.report;
    let context_tokens = ContextTokens {
        before_compression: report.before as u64,
        after_compression: report.after as u64,
        savings_pct: report.savings_pct,
    };
    drop(stage);
    t.token_optimizer = ms(s);
    Ok(Prepared {
        loaded,
        linked,
        config_hit,
        memory_enabled,
        faqs,
        optimized,
        context_tokens,
        timings: t,
        now,
        customer,
        channel: input.channel.to_owned(),
        metadata: input.metadata.clone(),
        mode: input.mode.map(str::to_owned),
    })
}

/// The history of a conversation as model messages.
fn history_messages(history: &[crate::store::StoredMessage]) -> Vec<Message> {
    history
        .iter()
        .map(|m| {
            if m.role == "assistant" {
                Message::assistant(m.content.clone())
            } else {
                Message::user(m.content.clone())
            }
        })
        .collect()
}

/// A chat's sink: the stream's events (the loop's per-call usage and finished messages stay
/// inside; the stream ends with the turn's own usage).
struct ChatSink(Option<mpsc::Sender<Event>>);

#[async_trait::async_trait]
impl engine::Sink for ChatSink {
    async fn emit(&self, event: Event) -> Result<(), PipelineError> {
        match (&self.0, &event) {
            (None, _) | (_, Event::Assistant { .. } | Event::Usage { .. }) => Ok(()),
            (Some(tx), _) => tx.send(event).await.map_err(|_| PipelineError::Cancelled),
        }
    }
}

/// Run the whole pipeline. With `events`, the model is streamed and deltas are sent as they
/// arrive; `cancel` (a client disconnect) aborts the model call.
pub async fn run(
    state: &AppState,
    input: ChatInput,
    events: Option<mpsc::Sender<Event>>,
    cancel: &CancellationToken,
) -> Result<ChatReply, PipelineError> {
    let started = Instant::now();
    let stream = events.is_some();
    let sink = ChatSink(events);
    use engine::Sink as _;

    // 01 config
    let configured = configure(state, input.company_id, AgentChoice::Id(input.agent_id)).await?;
    let config_hit = configured.config_hit;
    let (cache_enabled, cache_threshold) = {
        let settings = &configured.loaded.agent.spec.settings;
        let floor = state.config.cache.min_similarity;
        (settings.cache_enabled, settings.cache_threshold.max(floor))
    };

    // 05 cache, then on a miss 02–04: their reads in one read transaction.
    let looked = crate::store::read_session(async {
        // 05 cache, ahead of 02–04: an answer is only ever stored when it used neither the
        // customer's memory nor a tool, so a hit needs none of what 02–04 gather.
        let s = Instant::now();
        let cached = if cache_enabled {
            let found = cached_answer(state, &input, cache_threshold)
                .instrument(tracing::info_span!("stage.05_cache_check"))
                .await;
            let result = if found.is_some() { "hit" } else { "miss" };
            metrics::counter!("cortex_answer_cache_lookups_total", "result" => result).increment(1);
            found
        } else {
            None
        };
        let cache_ms = ms(s);
        if let Some(answer) = cached {
            return Ok(Looked::Hit(answer, configured, cache_ms));
        }
        // 02–04
        let history = state
            .store
            .history(input.company_id, input.conversation_id, HISTORY)
            .await?;
        let prepared = prepare_configured(
            state,
            configured,
            PrepareInput {
                company_id: input.company_id,
                agent: AgentChoice::Id(input.agent_id),
                customer_id: &input.customer_id,
                message: &input.message,
                history: history_messages(&history),
                channel: &input.channel,
                metadata: &input.metadata,
                memory_enabled: None,
                mode: None,
            },
            Vec::new(),
        )
        .await?;
        Ok::<_, PipelineError>(Looked::Miss(Box::new(prepared), cache_ms))
    })
    .await?;
    let (prepared, cache_ms) = match looked {
        Looked::Hit(answer, configured, cache_ms) => {
            sink.emit(Event::TextDelta {
                delta: answer.clone(),
            })
            .await?;
            sink.usage(0, 0, 0).await?;
            let reply = ChatReply {
                reply: answer,
                model_used: "cache".into(),
                cached: true,
                actions_executed: vec![],
                latency_ms: 0,
                tokens: TokenUsage {
                    input: 0,
                    output: 0,
                    cost_usd: 0.0,
                },
                context_tokens: ContextTokens {
                    before_compression: 0,
                    after_compression: 0,
                    savings_pct: 0.0,
                },
                step_timings: StepTimings {
                    config_load: configured.ms,
                    cache_check: cache_ms,
                    ..StepTimings::default()
                },
            };
            let reply = finish(
                state,
                &input,
                reply,
                ("", &[]),
                started,
                false,
                (config_hit, None),
            )
            .await?;
            spawn_post_actions(state, &input, &reply, &configured.linked);
            return Ok(reply);
        }
        Looked::Miss(prepared, cache_ms) => (*prepared, cache_ms),
    };
    let mut t = prepared.timings.clone();
    t.cache_check = cache_ms;
    let settings = &prepared.loaded.agent.spec.settings;
    let context_tokens = prepared.context_tokens.clone();
    let optimized = &prepared.optimized;

    // 06 router
    let s = Instant::now();
    let pinned = settings
        .tier
        .as_deref()
        .and_then(|t| t.parse::<Tier>().ok());
    let decision = tracing::info_span!("stage.06_model_router").in_scope(|| {
        cortex_llm::router::route(&input.message, !optimized.tools.is_empty(), pinned)
    });
    t.model_router = ms(s);

    // 07 compiler
    let s = Instant::now();
    let system = prepared.system_prompt()?;
    let outcome = async {
        Ok::<_, PipelineError>(match &state.llm {
            Some(llm) => {
                let cfg = engine::LoopConfig {
                    tier: decision.tier,
                    tools: &optimized.tools,
                    max_rounds: settings.max_tool_rounds.min(5),
                    temperature: settings.temperature,
                    max_tokens: settings.max_tokens,
                    stream,
                };
                let tools = ActionSet {
                    state,
                    linked: &prepared.linked,
                };
                engine::run_loop(llm, cfg, &tools, prepared.messages(system), &sink, cancel).await?
            }
            None => {
                let reply =
                    extractive::answer(&input.message, &prepared.faqs, &optimized.knowledge);
                sink.emit(Event::TextDelta {
                    delta: reply.clone(),
                })
                .await?;
                extractive_outcome(reply, optimized.report.after as u64)
            }
        })
    }
    .instrument(tracing::info_span!("stage.07_agent_compiler"))
    .await?;
    t.agent_compiler = ms(s);
    t.tool_call_rounds = u64::from(outcome.rounds);
    t.tool_execution = outcome.tool_ms;
    sink.usage(
        outcome.usage.input_tokens,
        outcome.usage.output_tokens,
        outcome.cost_microusd,
    )
    .await?;

    // 08 post actions
    let cacheable = state.llm.is_some()
        && settings.cache_enabled
        && optimized.memory.is_empty()
        && t.tool_call_rounds == 0
        && !outcome.reply.trim().is_empty();
    let reply = ChatReply {
        reply: outcome.reply,
        model_used: outcome.model_used,
        cached: false,
        actions_executed: outcome.actions_executed,
        latency_ms: 0,
        tokens: TokenUsage {
            input: outcome.usage.input_tokens,
            output: outcome.usage.output_tokens,
            cost_usd: outcome.cost_microusd as f64 / 1e6,
        },
        context_tokens,
        step_timings: t,
    };
    metrics::counter!("cortex_routed_total", "tier" => decision.tier.as_str()).increment(1);
    let counted = (config_hit, Some(decision.tier.as_str()));
    let reply = finish(
        state,
        &input,
        reply,
        (&outcome.model, &outcome.calls),
        started,
        cacheable,
        counted,
    )
    .await?;
    after_turn(state, &input, &reply, &prepared);
    Ok(reply)
}

/// Stages 05 and 02–04 of a chat: a cached answer (with the agent, and stage 05's time), or
/// what the model call needs.
enum Looked {
    Hit(String, Configured, u64),
    Miss(Box<Prepared>, u64),
}

/// Stage 05's lookup: the cached answer, if an entry asks the same thing. A failed lookup is
/// a miss: the cache never takes a chat down.
async fn cached_answer(state: &AppState, input: &ChatInput, threshold: f32) -> Option<String> {
    match state
        .cache
        .lookup(
            &state.store,
            input.company_id,
            input.agent_id,
            &input.message,
            threshold,
        )
        .await
    {
        Ok(Some((hit, entry_id))) => {
            // The order of use (for the size bound) is written off the chat path.
            let (st, company) = (state.clone(), input.company_id);
            state.tasks.spawn(async move {
                if let Err(e) = st.store.cache_touch(company, entry_id).await {
                    tracing::debug!(error = %e, "cache entry use not recorded");
                }
            });
            Some(hit.answer)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "answer cache lookup failed: treated as a miss");
            None
        }
    }
}

impl ChatSink {
    /// The turn's usage, the last event before `complete`.
    async fn usage(
        &self,
        input: u64,
        output: u64,
        cost_microusd: i64,
    ) -> Result<(), PipelineError> {
        let Some(tx) = &self.0 else { return Ok(()) };
        tx.send(Event::Usage {
            input_tokens: input,
            output_tokens: output,
            cost_usd: cost_microusd as f64 / 1e6,
        })
        .await
        .map_err(|_| PipelineError::Cancelled)
    }
}

/// The zero-configuration responder's answer as a loop outcome.
pub fn extractive_outcome(reply: String, input_tokens: u64) -> engine::Outcome {
    let output = cortex_llm::tokens::count_tokens(&reply) as u64;
    engine::Outcome {
        reply,
        model_used: "extractive".into(),
        model: String::new(),
        usage: Usage {
            input_tokens,
            output_tokens: output,
        },
        cost_microusd: 0,
        actions_executed: vec![],
        rounds: 0,
        tool_ms: 0,
        calls: Vec::new(),
    }
}

/// An agent's linked actions as a loop's tool set.
pub struct ActionSet<'a> {
    pub state: &'a AppState,
    pub linked: &'a tools::Linked,
}

#[async_trait::async_trait]
impl engine::ToolSet for ActionSet<'_> {
    async fn execute(&self, call: &cortex_llm::ToolCall) -> tools::ToolOutcome {
        self.state.tools.execute(self.linked, call).await
    }
}

/// Sections for what the template does not place itself.
fn append_sections(
    system: &mut String,
    template: &PromptTemplate,
    memory: &[String],
    knowledge: &[String],
    faqs: &[optimizer::Faq],
) {
    use std::fmt::Write;
    if !memory.is_empty() && !template.uses("memory") {
        system.push_str("\n\nWhat you know about this customer:");
        for m in memory {
            let _ = write!(system, "\n- {m}");
        }
    }
    if !knowledge.is_empty() && !template.uses("knowledge") {
        system.push_str("\n\nRelevant knowledge:");
        for k in knowledge {
            let _ = write!(system, "\n- {k}");
        }
    }
    if !faqs.is_empty() && !template.uses("faqs") {
        system.push_str("\n\nFrequently asked questions:");
        for f in faqs {
            let _ = write!(system, "\nQ: {}\nA: {}", f.question, f.answer);
        }
    }
}

/// The turn a reply makes, as the conversation records it.
fn turn_of(
    input: &ChatInput,
    reply: &ChatReply,
    model: &str,
    calls: &[crate::store::CallCost],
) -> Turn {
    Turn {
        agent_id: input.agent_id,
        conversation_id: input.conversation_id,
        customer_id: input.customer_id.clone(),
        user_message: input.message.clone(),
        reply: reply.reply.clone(),
        model_used: reply.model_used.clone(),
        model: model.to_owned(),
        input_tokens: reply.tokens.input as i64,
        output_tokens: reply.tokens.output as i64,
        // Exact: the reply's cost is the micro-USD sum divided by 10^6.
        cost_microusd: engine::micro_usd(reply.tokens.cost_usd),
        cached: reply.cached,
        tool_rounds: reply.step_timings.tool_call_rounds as i64,
        latency_ms: reply.latency_ms as i64,
        calls: calls.to_vec(),
    }
}

/// Stage 08: persist the turn and its usage (a cache hit's in the background), store a
/// cacheable answer in the background, record metrics. `(config_hit, routed_tier)` are what
/// stages 01 and 06 decided.
#[tracing::instrument(name = "stage.08_post_actions", skip_all)]
async fn finish(
    state: &AppState,
    input: &ChatInput,
    mut reply: ChatReply,
    (model, calls): (&str, &[crate::store::CallCost]),
    started: Instant,
    cacheable: bool,
    (config_hit, routed): (bool, Option<&str>),
) -> Result<ChatReply, PipelineError> {
    reply.latency_ms = ms(started);
    let turn = turn_of(input, &reply, model, calls);
    if reply.cached {
        // A hit costs nothing and calls nothing: its turn is written off the response path
        // (tracked, so a shutdown waits for it); a failure is logged, the answer stands.
        let (st, company) = (state.clone(), input.company_id);
        state.tasks.spawn(async move {
            if let Err(e) = st.store.record_turn(company, &turn).await {
                tracing::warn!(error = %e, "a cached turn was not recorded");
            }
        });
    } else {
        state.store.record_turn(input.company_id, &turn).await?;
    }
    if cacheable {
        let (st, company, agent, q, a) = (
            state.clone(),
            input.company_id,
            input.agent_id,
            input.message.clone(),
            reply.reply.clone(),
        );
        state.tasks.spawn(async move {
            let ttl = st.config.cache.ttl();
            if let Err(e) = st
                .cache
                .store(&st.store, company, agent, &[(q, a)], ttl)
                .await
            {
                tracing::warn!(error = %e, "could not store a cacheable answer");
            }
        });
    }
    record_metrics(state, &reply, config_hit, routed);
    Ok(reply)
}

/// Stage 08's background work after a model answered (a chat turn, or a run's final answer):
/// customer facts extracted when memory is on, the agent's post-response actions.
pub fn after_turn(state: &AppState, input: &ChatInput, reply: &ChatReply, prepared: &Prepared) {
    if prepared.memory_enabled && state.llm.is_some() && state.config.memory.extract_facts {
        spawn_extraction(state, input, &reply.reply);
    }
    spawn_post_actions(state, input, reply, &prepared.linked);
}

/// Stage 08's post-response actions (the agent's linked actions with trigger `post_response`),
/// in the background with the finished turn as their arguments.
fn spawn_post_actions(
    state: &AppState,
    input: &ChatInput,
    reply: &ChatReply,
    linked: &tools::Linked,
) {
    if !linked.has_post_response() {
        return;
    }
    let turn = serde_json::json!({
        "company_id": input.company_id,
        "agent_id": input.agent_id,
        "conversation_id": input.conversation_id,
        "customer_id": input.customer_id,
        "channel": input.channel,
        "metadata": input.metadata,
        "message": input.message,
        "reply": reply.reply,
        "model_used": reply.model_used,
        "cached": reply.cached,
        "actions_executed": reply.actions_executed,
    });
    let (st, linked) = (state.clone(), linked.clone());
    state.tasks.spawn(async move {
        st.actions.post_response(&linked, &turn).await;
    });
}

/// Stage 08's memory extraction, in the background (tracked, so shutdown waits for it).
fn spawn_extraction(state: &AppState, input: &ChatInput, reply: &str) {
    let (st, company, agent, customer, message, reply) = (
        state.clone(),
        input.company_id,
        input.agent_id,
        input.customer_id.clone(),
        input.message.clone(),
        reply.to_owned(),
    );
    state.tasks.spawn(async move {
        match extract::extract_facts(&st, company, agent, &customer, &message, &reply).await {
            Ok(saved) if !saved.is_empty() => {
                tracing::debug!(facts = saved.len(), "memory: new customer facts saved");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "memory extraction failed"),
        }
    });
}

fn record_metrics(state: &AppState, reply: &ChatReply, config_hit: bool, routed: Option<&str>) {
    let tier = reply.model_used.clone();
    metrics::histogram!("cortex_pipeline_duration_ms", "model" => tier.clone())
        .record(reply.latency_ms as f64);
    let t = &reply.step_timings;
    for (stage, ms) in [
        ("config_load", t.config_load),
        ("memory_recall", t.memory_recall),
        ("context_engine", t.context_engine),
        ("token_optimizer", t.token_optimizer),
        ("cache_check", t.cache_check),
        ("model_router", t.model_router),
        ("agent_compiler", t.agent_compiler),
        ("tool_execution", t.tool_execution),
    ] {
        metrics::histogram!("cortex_stage_duration_ms", "stage" => stage).record(ms as f64);
    }
    metrics::counter!("cortex_tokens_total", "direction" => "input", "model" => tier.clone())
        .increment(reply.tokens.input);
    metrics::counter!("cortex_tokens_total", "direction" => "output", "model" => tier.clone())
        .increment(reply.tokens.output);
    metrics::counter!("cortex_cost_microusd_total", "model" => tier)
        .increment((reply.tokens.cost_usd * 1e6).round() as u64);
    let model_answered = state.llm.is_some() && !reply.cached;
    state.dashboard.record(&crate::telemetry::ChatSample {
        config_hit,
        config_ms: t.config_load,
        tier: routed,
        model_ms: model_answered.then_some(t.agent_compiler),
        tool_rounds: t.tool_call_rounds,
    });
}
