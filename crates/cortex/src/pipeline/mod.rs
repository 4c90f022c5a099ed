//! The chat pipeline: eight stages from a customer's message to a reply, each timed.
//!
//! 01 config → 02 memory → 03 context → 04 token optimizer → 05 cache → 06 router →
//! 07 compiler (template, model, tool loop) → 08 post actions. A cache hit skips 06–07.

pub mod cache;
pub mod context;
pub mod extract;
pub mod extractive;
pub mod memory;
pub mod template;
pub mod text;
pub mod tools;

use std::sync::Arc;
use std::time::Instant;

use cortex_llm::optimizer::{self, ContextInput};
use cortex_llm::{ChatRequest, LlmError, Message, StreamEvent, Tier, ToolChoice, ToolDef, Usage};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::agents::LoadedAgent;
use crate::state::AppState;
use crate::store::{AgentStore, ConversationStore, StoreError, Turn};
use template::{PromptContext, PromptTemplate, TemplateError};

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

/// What a streaming client sees while the reply is produced.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    TextDelta(String),
    ToolCall {
        name: String,
        arguments: Value,
    },
    ToolResult {
        name: String,
        ok: bool,
        latency_ms: u64,
    },
    Usage {
        input: u64,
        output: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("agent not found")]
    AgentNotFound,
    #[error("template error: {0}")]
    Template(#[from] TemplateError),
    #[error("model call failed: {0}")]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cancelled")]
    Cancelled,
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

async fn emit(
    events: Option<&mpsc::Sender<ChatEvent>>,
    event: ChatEvent,
) -> Result<(), PipelineError> {
    match events {
        Some(tx) => tx.send(event).await.map_err(|_| PipelineError::Cancelled),
        None => Ok(()),
    }
}

/// Run the whole pipeline. With `events`, the model is streamed and deltas are sent as they
/// arrive; `cancel` (a client disconnect) aborts the model call.
pub async fn run(
    state: &AppState,
    input: ChatInput,
    events: Option<mpsc::Sender<ChatEvent>>,
    cancel: &CancellationToken,
) -> Result<ChatReply, PipelineError> {
    let started = Instant::now();
    let mut t = StepTimings::default();
    let events = events.as_ref();

    // 01 config
    let s = Instant::now();
    let (loaded, config_hit) = load_agent_counted(state, input.company_id, input.agent_id).await?;
    let agent = &loaded.agent;
    let spec = &agent.spec;
    let settings = &spec.settings;
    // The linked actions, read once: tools for stage 07, post-response actions for stage 08.
    let linked = if spec.action_ids.is_empty() {
        tools::Linked::default()
    } else {
        state.tools.linked(input.company_id, agent).await?
    };
    let tools: Vec<ToolDef> = if settings.max_tool_rounds == 0 {
        Vec::new()
    } else {
        linked.tool_defs()
    };
    t.config_load = ms(s);

    // 02 memory (customer facts) and conversation history
    let s = Instant::now();
    let facts = if settings.memory_enabled {
        memory::recall(
            &state.store,
            input.company_id,
            &input.customer_id,
            agent.id,
            &input.message,
        )
        .await?
    } else {
        Vec::new()
    };
    let history = state
        .store
        .history(input.company_id, input.conversation_id, HISTORY)
        .await?;
    t.memory_recall = ms(s);

    // 03 context
    let s = Instant::now();
    let knowledge = context::retrieve(
        state,
        input.company_id,
        agent,
        &input.message,
        settings.rag_top_k as usize,
    )
    .await?;
    let faqs = context::ranked_faqs(spec, &input.message);
    t.context_engine = ms(s);

    // 04 token optimizer
    let s = Instant::now();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let agent_json = serde_json::json!({"id": agent.id, "name": spec.name});
    let customer_json = serde_json::json!({"id": input.customer_id});
    let prompt_ctx =
        |memory: Vec<String>, knowledge: Vec<String>, faqs: Vec<Value>| PromptContext {
            agent: agent_json.clone(),
            personality: &spec.personality,
            dialect: &spec.dialect,
            customer: customer_json.clone(),
            memory,
            knowledge,
            faqs,
            scenarios: &spec.scenarios,
            channel: &input.channel,
            metadata: &input.metadata,
            now: now.clone(),
        };
    let identity = loaded
        .template
        .render(&prompt_ctx(vec![], vec![], vec![]))?;
    let history_msgs: Vec<Message> = history
        .iter()
        .map(|m| {
            if m.role == "assistant" {
                Message::assistant(m.content.clone())
            } else {
                Message::user(m.content.clone())
            }
        })
        .collect();
    let optimized = optimizer::optimize(
        ContextInput {
            identity,
            message: input.message.clone(),
            tools,
            memory: facts,
            knowledge,
            history: history_msgs,
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
    t.token_optimizer = ms(s);

    // 05 cache
    let s = Instant::now();
    let cached = if settings.cache_enabled {
        cache::lookup(
            &state.store,
            input.company_id,
            agent.id,
            &input.message,
            settings.cache_threshold,
        )
        .await?
    } else {
        None
    };
    t.cache_check = ms(s);
    if settings.cache_enabled {
        let result = if cached.is_some() { "hit" } else { "miss" };
        metrics::counter!("cortex_answer_cache_lookups_total", "result" => result).increment(1);
    }
    if let Some(answer) = cached {
        emit(events, ChatEvent::TextDelta(answer.clone())).await?;
        emit(
            events,
            ChatEvent::Usage {
                input: 0,
                output: 0,
            },
        )
        .await?;
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
            context_tokens,
            step_timings: t,
        };
        let reply = finish(state, &input, reply, "", started, false, (config_hit, None)).await?;
        spawn_post_actions(state, &input, &reply, &linked);
        return Ok(reply);
    }

    // 06 router
    let s = Instant::now();
    let pinned = settings
        .tier
        .as_deref()
        .and_then(|t| t.parse::<Tier>().ok());
    let decision = cortex_llm::router::route(&input.message, !optimized.tools.is_empty(), pinned);
    t.model_router = ms(s);

    // 07 compiler
    let s = Instant::now();
    let memory_texts: Vec<String> = optimized.memory.iter().map(|m| m.text.clone()).collect();
    let knowledge_texts: Vec<String> = optimized.knowledge.iter().map(|k| k.text.clone()).collect();
    let faq_values: Vec<Value> = optimized
        .faqs
        .iter()
        .map(|f| serde_json::json!({"question": f.question, "answer": f.answer}))
        .collect();
    let mut system = loaded.template.render(&prompt_ctx(
        memory_texts.clone(),
        knowledge_texts.clone(),
        faq_values,
    ))?;
    append_sections(
        &mut system,
        &loaded.template,
        &memory_texts,
        &knowledge_texts,
        &optimized.faqs,
    );

    let outcome = match &state.llm {
        Some(llm) => {
            let mut messages = Vec::with_capacity(optimized.history.len() + 2);
            messages.push(Message::system(system));
            messages.extend(optimized.history.iter().cloned());
            messages.push(Message::user(input.message.clone()));
            let loop_cfg = ToolLoop {
                tier: decision.tier,
                tools: &optimized.tools,
                max_rounds: settings.max_tool_rounds.min(5),
                temperature: settings.temperature,
                max_tokens: settings.max_tokens,
            };
            compile_with_model(
                state, llm, &linked, loop_cfg, messages, events, cancel, &mut t,
            )
            .await?
        }
        None => {
            let reply = extractive::answer(&input.message, &faqs, &optimized.knowledge);
            emit(events, ChatEvent::TextDelta(reply.clone())).await?;
            let output = cortex_llm::tokens::count_tokens(&reply) as u64;
            Compiled {
                reply,
                model_used: "extractive".into(),
                model: String::new(),
                usage: Usage {
                    input_tokens: report.after as u64,
                    output_tokens: output,
                },
                cost_usd: 0.0,
                actions_executed: vec![],
            }
        }
    };
    t.agent_compiler = ms(s);
    emit(
        events,
        ChatEvent::Usage {
            input: outcome.usage.input_tokens,
            output: outcome.usage.output_tokens,
        },
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
            cost_usd: outcome.cost_usd,
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
        &outcome.model,
        started,
        cacheable,
        counted,
    )
    .await?;
    if settings.memory_enabled && state.llm.is_some() && state.config.memory.extract_facts {
        spawn_extraction(state, &input, &reply.reply);
    }
    spawn_post_actions(state, &input, &reply, &linked);
    Ok(reply)
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

/// Stage 08: persist the turn and its usage, store a cacheable answer in the background,
/// record metrics. `(config_hit, routed_tier)` are what stage 01 and 06 decided.
async fn finish(
    state: &AppState,
    input: &ChatInput,
    mut reply: ChatReply,
    model: &str,
    started: Instant,
    cacheable: bool,
    (config_hit, routed): (bool, Option<&str>),
) -> Result<ChatReply, PipelineError> {
    reply.latency_ms = ms(started);
    state
        .store
        .record_turn(
            input.company_id,
            &Turn {
                agent_id: input.agent_id,
                conversation_id: input.conversation_id,
                customer_id: input.customer_id.clone(),
                user_message: input.message.clone(),
                reply: reply.reply.clone(),
                model_used: reply.model_used.clone(),
                model: model.to_owned(),
                input_tokens: reply.tokens.input as i64,
                output_tokens: reply.tokens.output as i64,
                cost_usd: reply.tokens.cost_usd,
                cached: reply.cached,
                tool_rounds: reply.step_timings.tool_call_rounds as i64,
                latency_ms: reply.latency_ms as i64,
            },
        )
        .await?;
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
            if let Err(e) = cache::store_answer(&st.store, company, agent, &q, &a, ttl).await {
                tracing::warn!(error = %e, "could not store a cacheable answer");
            }
        });
    }
    record_metrics(state, &reply, config_hit, routed);
    Ok(reply)
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

struct Compiled {
    reply: String,
    model_used: String,
    model: String,
    usage: Usage,
    cost_usd: f64,
    actions_executed: Vec<String>,
}

struct ToolLoop<'a> {
    tier: Tier,
    tools: &'a [ToolDef],
    max_rounds: u32,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

/// Text the customer gets when the model still asked for tools at the round limit.
const NO_ANSWER: &str = "I'm sorry, I couldn't complete that request right now.";

/// Call the model; run requested tools and call again, at most `max_rounds` times, then force a
/// text answer (tool choice `none`).
#[allow(clippy::too_many_arguments)]
async fn compile_with_model(
    state: &AppState,
    llm: &cortex_llm::TieredClient,
    linked: &tools::Linked,
    cfg: ToolLoop<'_>,
    mut messages: Vec<Message>,
    events: Option<&mpsc::Sender<ChatEvent>>,
    cancel: &CancellationToken,
    t: &mut StepTimings,
) -> Result<Compiled, PipelineError> {
    let mut usage = Usage::default();
    let mut cost = 0.0;
    let mut actions_executed = Vec::new();
    let mut rounds = 0u32;
    loop {
        let force_text = rounds >= cfg.max_rounds;
        let mut req = ChatRequest::new("", messages.clone());
        if !cfg.tools.is_empty() {
            req = req.with_tools(cfg.tools.to_vec());
            if force_text {
                req = req.with_tool_choice(ToolChoice::None);
            }
        }
        if let Some(temp) = cfg.temperature {
            req = req.with_temperature(temp);
        }
        if let Some(max) = cfg.max_tokens {
            req = req.with_max_tokens(max);
        }
        let (response, answered_by) = match events {
            None => {
                let out = cortex_llm::with_cancel(cancel, llm.chat(cfg.tier, &req)).await?;
                (out.response, out.answered_by)
            }
            Some(tx) => {
                let out = cortex_llm::with_cancel(cancel, llm.chat_stream(cfg.tier, &req)).await?;
                let mut stream = out.stream;
                let mut done = None;
                loop {
                    let next = tokio::select! {
                        () = cancel.cancelled() => return Err(PipelineError::Cancelled),
                        n = stream.next() => n,
                    };
                    match next {
                        Some(Ok(StreamEvent::TextDelta(d))) => {
                            tx.send(ChatEvent::TextDelta(d))
                                .await
                                .map_err(|_| PipelineError::Cancelled)?;
                        }
                        Some(Ok(StreamEvent::Done(resp))) => done = Some(resp),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e.into()),
                        None => break,
                    }
                }
                let resp = done.ok_or_else(|| {
                    LlmError::Decode("stream ended without a final response".into())
                })?;
                (resp, out.answered_by)
            }
        };
        usage += response.usage;
        cost += llm.cost_usd(&answered_by.model, &response.usage);
        let model_used = answered_by.tier.unwrap_or(cfg.tier).as_str().to_owned();
        if response.tool_calls.is_empty() || force_text {
            let reply = if response.content.trim().is_empty() && !response.tool_calls.is_empty() {
                emit(events, ChatEvent::TextDelta(NO_ANSWER.into())).await?;
                NO_ANSWER.to_owned()
            } else {
                response.content.clone()
            };
            t.tool_call_rounds = u64::from(rounds);
            return Ok(Compiled {
                reply,
                model_used,
                model: answered_by.model,
                usage,
                cost_usd: cost,
                actions_executed,
            });
        }
        rounds += 1;
        messages.push(Message::assistant_tool_calls(
            response.content.clone(),
            response.tool_calls.clone(),
        ));
        for call in &response.tool_calls {
            let arguments: Value = serde_json::from_str(&call.arguments)
                .unwrap_or(Value::String(call.arguments.clone()));
            emit(
                events,
                ChatEvent::ToolCall {
                    name: call.name.clone(),
                    arguments,
                },
            )
            .await?;
            let s = Instant::now();
            let outcome = state.tools.execute(linked, call).await;
            t.tool_execution += ms(s);
            metrics::counter!("cortex_tool_calls_total", "ok" => if outcome.ok { "true" } else { "false" }).increment(1);
            emit(
                events,
                ChatEvent::ToolResult {
                    name: call.name.clone(),
                    ok: outcome.ok,
                    latency_ms: outcome.latency_ms,
                },
            )
            .await?;
            if outcome.ok && !actions_executed.contains(&call.name) {
                actions_executed.push(call.name.clone());
            }
            messages.push(Message::tool_result(
                call.id.clone(),
                call.name.clone(),
                outcome.content,
            ));
        }
    }
}
