//! The model/tool loop shared by `/v1/chat` and agent runs: call the model with a tool set, run
//! the tools it asks for, call again, at most `max_rounds` times, then force a text answer. Every
//! step goes to an event sink; a sink that refuses an event (a client gone, a run out of
//! credits) ends the loop with its error. Cancellation aborts a model call at once and a tool
//! call at its boundary.

use std::time::Instant;
use tracing::Instrument;

use async_trait::async_trait;
use cortex_llm::{
    ChatRequest, LlmError, Message, StreamEvent, Tier, ToolCall, ToolChoice, ToolDef, Usage,
};
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::PipelineError;
use super::events::Event;
use crate::actions::tools::ToolOutcome;

/// The tools a loop may run: an agent's linked actions, and for runs the sandbox's built-ins.
/// What is offered to the model is [`LoopConfig::tools`] (stage 04 fits it to the budget).
#[async_trait]
pub trait ToolSet: Send + Sync {
    /// Run one call; a failure is an outcome for the model, never an error of the loop.
    async fn execute(&self, call: &ToolCall) -> ToolOutcome;
}

/// Where the loop's events go.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Take one event; an error ends the loop with it.
    async fn emit(&self, event: Event) -> Result<(), PipelineError>;
}

/// A sink that drops everything (the non-streaming `/v1/chat`).
pub struct NoSink;

#[async_trait]
impl Sink for NoSink {
    async fn emit(&self, _: Event) -> Result<(), PipelineError> {
        Ok(())
    }
}

/// How one loop runs.
pub struct LoopConfig<'a> {
    pub tier: Tier,
    /// The definitions offered (after the token optimizer kept what fits).
    pub tools: &'a [ToolDef],
    /// Tool rounds before the model is asked for a final answer without tools.
    pub max_rounds: u32,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Stream the model's answers (`text_delta` events) instead of one call per answer.
    pub stream: bool,
}

/// What a loop produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub reply: String,
    /// The tier that answered (`nano`, …).
    pub model_used: String,
    /// The provider model that answered last.
    pub model: String,
    pub usage: Usage,
    /// Integer micro-USD, summed per call.
    pub cost_microusd: i64,
    pub actions_executed: Vec<String>,
    pub rounds: u32,
    pub tool_ms: u64,
    /// Each model call, priced.
    pub calls: Vec<crate::store::CallCost>,
}

/// Text given when the model still asked for tools at the round limit.
pub const NO_ANSWER: &str = "I'm sorry, I couldn't complete that request right now.";

fn ms(since: Instant) -> u64 {
    (since.elapsed().as_secs_f64() * 1000.0).round() as u64
}

/// Micro-USD of a cost in USD.
pub fn micro_usd(usd: f64) -> i64 {
    (usd * 1e6).round() as i64
}

/// Run the loop over `messages` (system prompt, history, the new message).
pub async fn run_loop(
    llm: &cortex_llm::TieredClient,
    cfg: LoopConfig<'_>,
    tools: &dyn ToolSet,
    mut messages: Vec<Message>,
    sink: &dyn Sink,
    cancel: &CancellationToken,
) -> Result<Outcome, PipelineError> {
    let mut usage = Usage::default();
    let mut cost = 0i64;
    let mut actions_executed = Vec::new();
    let mut rounds = 0u32;
    let mut tool_ms = 0u64;
    let mut priced = Vec::new();
    loop {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled);
        }
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
        // One span per model call, open until its answer is complete (a stream to its end).
        let call_span = tracing::info_span!(
            "llm.call",
            tier = cfg.tier.as_str(),
            stream = cfg.stream,
            model = tracing::field::Empty,
            input_tokens = tracing::field::Empty,
            output_tokens = tracing::field::Empty,
        );
        let (response, answered_by) = if cfg.stream {
            let out = cortex_llm::with_cancel(cancel, llm.chat_stream(cfg.tier, &req))
                .instrument(call_span.clone())
                .await?;
            let mut stream = out.stream;
            let mut done = None;
            loop {
                let next = tokio::select! {
                    () = cancel.cancelled() => return Err(PipelineError::Cancelled),
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(StreamEvent::TextDelta(delta))) => {
                        sink.emit(Event::TextDelta { delta }).await?;
                    }
                    Some(Ok(StreamEvent::Done(resp))) => done = Some(resp),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                }
            }
            let resp = done
                .ok_or_else(|| LlmError::Decode("stream ended without a final response".into()))?;
            (resp, out.answered_by)
        } else {
            let out = cortex_llm::with_cancel(cancel, llm.chat(cfg.tier, &req))
                .instrument(call_span.clone())
                .await?;
            (out.response, out.answered_by)
        };
        call_span.record("model", answered_by.model.as_str());
        call_span.record("input_tokens", response.usage.input_tokens);
        call_span.record("output_tokens", response.usage.output_tokens);
        drop(call_span);
        usage += response.usage;
        let call_cost = micro_usd(llm.cost_usd(&answered_by.model, &response.usage));
        cost += call_cost;
        priced.push(crate::store::CallCost {
            model: answered_by.model.clone(),
            input_tokens: response.usage.input_tokens as i64,
            output_tokens: response.usage.output_tokens as i64,
            cost_microusd: call_cost,
        });
        let model_used = answered_by.tier.unwrap_or(cfg.tier).as_str().to_owned();
        let finished = response.tool_calls.is_empty() || force_text;
        let content =
            if finished && response.content.trim().is_empty() && !response.tool_calls.is_empty() {
                sink.emit(Event::TextDelta {
                    delta: NO_ANSWER.into(),
                })
                .await?;
                NO_ANSWER.to_owned()
            } else {
                response.content.clone()
            };
        let calls = (!finished).then(|| {
            response
                .tool_calls
                .iter()
                .map(|c| serde_json::json!({"call_id": c.id, "name": c.name, "arguments": arguments_of(c)}))
                .collect::<Vec<_>>()
        });
        sink.emit(Event::Assistant {
            message_id: crate::store::new_id(),
            content: content.clone(),
            tool_calls: calls,
        })
        .await?;
        sink.emit(Event::Usage {
            input_tokens: response.usage.input_tokens,
            output_tokens: response.usage.output_tokens,
            cost_usd: call_cost as f64 / 1e6,
        })
        .await?;
        if finished {
            return Ok(Outcome {
                reply: content,
                model_used,
                model: answered_by.model,
                usage,
                cost_microusd: cost,
                actions_executed,
                rounds,
                tool_ms,
                calls: priced,
            });
        }
        rounds += 1;
        messages.push(Message::assistant_tool_calls(
            response.content.clone(),
            response.tool_calls.clone(),
        ));
        for call in &response.tool_calls {
            if cancel.is_cancelled() {
                return Err(PipelineError::Cancelled);
            }
            sink.emit(Event::ToolCall {
                call_id: call.id.clone(),
                name: call.name.clone(),
                arguments: arguments_of(call),
            })
            .await?;
            let s = Instant::now();
            let tool_span = tracing::info_span!(
                "tool.call",
                tool = call.name.as_str(),
                ok = tracing::field::Empty,
            );
            let outcome = tokio::select! {
                () = cancel.cancelled() => return Err(PipelineError::Cancelled),
                o = tools.execute(call).instrument(tool_span.clone()) => o,
            };
            tool_span.record("ok", outcome.ok);
            drop(tool_span);
            tool_ms += ms(s);
            metrics::counter!("cortex_tool_calls_total", "ok" => if outcome.ok { "true" } else { "false" }).increment(1);
            sink.emit(Event::ToolResult {
                call_id: call.id.clone(),
                name: call.name.clone(),
                ok: outcome.ok,
                output: outcome.content.clone(),
                latency_ms: outcome.latency_ms,
            })
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

fn arguments_of(call: &ToolCall) -> Value {
    serde_json::from_str(&call.arguments).unwrap_or(Value::String(call.arguments.clone()))
}
