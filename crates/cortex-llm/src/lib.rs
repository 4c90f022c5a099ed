//! LLM provider clients and the pure model-side logic of the Cortex chat pipeline.
//!
//! - [`types`]: provider-neutral requests, responses and stream events.
//! - [`provider`]: the object-safe [`Provider`] trait.
//! - [`openai`], [`anthropic`]: HTTP clients for OpenAI-compatible servers and Anthropic.
//! - [`http`]: timeouts, retries with backoff and `Retry-After`.
//! - [`error`]: [`LlmError`] and its mapping to public HTTP statuses.
//! - [`chain`]: fallback across models ([`ModelChain`]) and tiers ([`TieredClient`]).
//! - [`config`]: [`Tier`], [`LlmConfig`] (serde) and the environment defaults.
//! - [`pricing`]: USD per million tokens and [`cost_usd`].
//! - [`tokens`]: tiktoken counting.
//! - [`router`]: message classification into a tier.
//! - [`optimizer`]: fitting prompt context into a token budget.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cortex_llm::LlmError> {
//! use cortex_llm::{ChatRequest, LlmConfig, Message, router};
//! // From the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, …) or a deserialized LlmConfig.
//! let Some(config) = LlmConfig::from_env_defaults() else { return Ok(()) };
//! let client = config.build()?;
//! let decision = router::route("Where is my order #ORD-1234?", true, None);
//! let req = ChatRequest::new("", vec![Message::user("Where is my order #ORD-1234?")]);
//! let out = client.chat(decision.tier, &req).await?;
//! let cost = client.cost_usd(&out.answered_by.model, &out.response.usage);
//! println!("{} ({} via {}, ${cost})", out.response.content, out.answered_by.model, out.answered_by.provider);
//! # Ok(()) }
//! ```

pub mod anthropic;
pub mod chain;
pub mod config;
pub mod error;
pub mod http;
pub mod openai;
pub mod optimizer;
pub mod pricing;
pub mod provider;
pub mod router;
pub mod tokens;
pub mod types;

pub use anthropic::AnthropicProvider;
pub use chain::{
    AnsweredBy, AttemptFailure, ChainEntry, ChainResponse, ChainStream, ModelChain, TieredClient,
};
pub use config::{DefaultModels, LlmConfig, ModelRef, ProviderConfig, ProviderKind, Tier};
pub use error::{LlmError, with_cancel};
pub use http::{HttpSettings, RetryPolicy};
pub use openai::OpenAiProvider;
pub use pricing::{ModelPrice, PriceTable, cost_usd};
pub use provider::{ChatStream, Provider};
pub use types::{
    ChatRequest, ChatResponse, FinishReason, Message, Role, StreamEvent, ToolCall, ToolChoice,
    ToolDef, Usage,
};
