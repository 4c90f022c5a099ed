//! Fallback across models: a [`ModelChain`] tries its models in order; a [`TieredClient`] holds
//! one chain per [`Tier`].

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;

use crate::config::Tier;
use crate::error::LlmError;
use crate::pricing::PriceTable;
use crate::provider::{ChatStream, Provider};
use crate::types::{ChatRequest, ChatResponse, Usage};

/// One model of a chain.
#[derive(Debug, Clone)]
pub struct ChainEntry {
    /// Client of the provider serving the model.
    pub provider: Arc<dyn Provider>,
    /// Model name sent to the provider.
    pub model: String,
}

/// Which model produced an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredBy {
    /// The tier whose chain answered (set by [`TieredClient`]; `None` for a bare chain).
    pub tier: Option<Tier>,
    /// Provider name ([`Provider::name`]).
    pub provider: String,
    /// Model name as configured (the provider may report a more precise one in
    /// [`ChatResponse::model`]).
    pub model: String,
    /// Position of the model in its chain (0 = the first choice; > 0 means a fallback answered).
    pub position: usize,
}

/// A model that failed before another answered.
#[derive(Debug)]
pub struct AttemptFailure {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// The error after that model's retries.
    pub error: LlmError,
}

/// An answer of a chain.
#[derive(Debug)]
pub struct ChainResponse {
    /// The answer.
    pub response: ChatResponse,
    /// Which model answered.
    pub answered_by: AnsweredBy,
    /// The models that failed first, in order.
    pub failures: Vec<AttemptFailure>,
}

/// A streamed answer of a chain; its first event has already been received from `answered_by`.
pub struct ChainStream {
    /// The events (the first one included). Dropping it cancels the upstream call.
    pub stream: ChatStream,
    /// Which model is answering.
    pub answered_by: AnsweredBy,
    /// The models that failed first, in order.
    pub failures: Vec<AttemptFailure>,
}

impl std::fmt::Debug for ChainStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainStream")
            .field("answered_by", &self.answered_by)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// An ordered list of `(provider, model)`: each call goes to the first; when that fails after its
/// provider's retries, the next is tried, and so on. A cancelled call is never passed on.
#[derive(Debug, Clone, Default)]
pub struct ModelChain {
    entries: Vec<ChainEntry>,
}

impl ModelChain {
    /// A chain of `entries`, first choice first.
    pub fn new(entries: Vec<(Arc<dyn Provider>, String)>) -> Self {
        ModelChain {
            entries: entries
                .into_iter()
                .map(|(provider, model)| ChainEntry { provider, model })
                .collect(),
        }
    }

    /// Appends a fallback model.
    pub fn push(&mut self, provider: Arc<dyn Provider>, model: impl Into<String>) {
        self.entries.push(ChainEntry {
            provider,
            model: model.into(),
        });
    }

    /// The models, first choice first.
    pub fn entries(&self) -> &[ChainEntry] {
        &self.entries
    }

    /// Whether the chain has no model.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn answered(&self, position: usize) -> AnsweredBy {
        let e = &self.entries[position];
        AnsweredBy {
            tier: None,
            provider: e.provider.name().to_owned(),
            model: e.model.clone(),
            position,
        }
    }

    fn request_for(entry: &ChainEntry, req: &ChatRequest) -> ChatRequest {
        ChatRequest {
            model: entry.model.clone(),
            ..req.clone()
        }
    }

    /// Sends `req` (its `model` is replaced by each entry's) and returns the first answer.
    /// Fails with the last model's error when every model failed, and with
    /// [`LlmError::Config`] when the chain is empty.
    pub async fn chat(&self, req: &ChatRequest) -> Result<ChainResponse, LlmError> {
        let mut failures = Vec::new();
        for (position, entry) in self.entries.iter().enumerate() {
            match entry.provider.chat(&Self::request_for(entry, req)).await {
                Ok(response) => {
                    return Ok(ChainResponse {
                        response,
                        answered_by: self.answered(position),
                        failures,
                    });
                }
                Err(error) => {
                    if let Some(error) = record_failure(entry, error, &mut failures) {
                        return Err(error);
                    }
                }
            }
        }
        Err(last_error(failures))
    }

    /// Streams `req`. A model that fails before yielding its first event is replaced by the
    /// next; once an event was received the stream belongs to that model (a later error is an
    /// item of the stream, with no fallback, since text may already have reached the user).
    pub async fn chat_stream(&self, req: &ChatRequest) -> Result<ChainStream, LlmError> {
        let mut failures = Vec::new();
        for (position, entry) in self.entries.iter().enumerate() {
            let attempt = async {
                let mut stream = entry
                    .provider
                    .chat_stream(&Self::request_for(entry, req))
                    .await?;
                match stream.next().await {
                    Some(Ok(first)) => Ok(futures::stream::once(async { Ok(first) })
                        .chain(stream)
                        .boxed()),
                    Some(Err(e)) => Err(e),
                    None => Err(LlmError::Interrupted(
                        "stream ended without an event".into(),
                    )),
                }
            };
            match attempt.await {
                Ok(stream) => {
                    return Ok(ChainStream {
                        stream,
                        answered_by: self.answered(position),
                        failures,
                    });
                }
                Err(error) => {
                    if let Some(error) = record_failure(entry, error, &mut failures) {
                        return Err(error);
                    }
                }
            }
        }
        Err(last_error(failures))
    }
}

/// Records a failed attempt; returns the error back when it must end the chain (cancellation).
fn record_failure(
    entry: &ChainEntry,
    error: LlmError,
    failures: &mut Vec<AttemptFailure>,
) -> Option<LlmError> {
    if matches!(error, LlmError::Cancelled) {
        return Some(error);
    }
    tracing::warn!(provider = entry.provider.name(), model = %entry.model, %error,
        "LLM call failed; trying the next model of the chain");
    failures.push(AttemptFailure {
        provider: entry.provider.name().to_owned(),
        model: entry.model.clone(),
        error,
    });
    None
}

fn last_error(failures: Vec<AttemptFailure>) -> LlmError {
    failures
        .into_iter()
        .last()
        .map(|f| f.error)
        .unwrap_or_else(|| LlmError::Config("no model configured".into()))
}

/// One [`ModelChain`] per [`Tier`], plus the price table.
#[derive(Debug, Clone, Default)]
pub struct TieredClient {
    chains: BTreeMap<Tier, ModelChain>,
    prices: PriceTable,
}

impl TieredClient {
    /// A client with `chains` (empty chains are ignored) and `prices`.
    pub fn new(chains: BTreeMap<Tier, ModelChain>, prices: PriceTable) -> Self {
        TieredClient {
            chains: chains.into_iter().filter(|(_, c)| !c.is_empty()).collect(),
            prices,
        }
    }

    /// Whether no tier has a model.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// The chain serving `tier`: its own, or else the first configured of
    /// [`Tier::substitutes`]; with the tier whose chain it is.
    pub fn chain(&self, tier: Tier) -> Option<(Tier, &ModelChain)> {
        std::iter::once(tier)
            .chain(tier.substitutes().iter().copied())
            .find_map(|t| self.chains.get(&t).map(|c| (t, c)))
    }

    fn chain_or_err(&self, tier: Tier) -> Result<(Tier, &ModelChain), LlmError> {
        self.chain(tier)
            .ok_or_else(|| LlmError::Config("no LLM model is configured".into()))
    }

    /// Sends `req` to the chain of `tier` (see [`ModelChain::chat`]).
    pub async fn chat(&self, tier: Tier, req: &ChatRequest) -> Result<ChainResponse, LlmError> {
        let (used, chain) = self.chain_or_err(tier)?;
        let mut out = chain.chat(req).await?;
        out.answered_by.tier = Some(used);
        Ok(out)
    }

    /// Streams `req` from the chain of `tier` (see [`ModelChain::chat_stream`]).
    pub async fn chat_stream(
        &self,
        tier: Tier,
        req: &ChatRequest,
    ) -> Result<ChainStream, LlmError> {
        let (used, chain) = self.chain_or_err(tier)?;
        let mut out = chain.chat_stream(req).await?;
        out.answered_by.tier = Some(used);
        Ok(out)
    }

    /// The tier whose chain holds `model` of `provider`, and a client that calls only that
    /// model under that tier (same prices): how a caller pins one configured `provider/model`.
    pub fn pinned(&self, provider: &str, model: &str) -> Option<(Tier, TieredClient)> {
        self.chains.iter().find_map(|(tier, chain)| {
            let entry = chain
                .entries()
                .iter()
                .find(|e| e.provider.name() == provider && e.model == model)?;
            let only = ModelChain::new(vec![(entry.provider.clone(), entry.model.clone())]);
            Some((
                *tier,
                TieredClient {
                    chains: [(*tier, only)].into_iter().collect(),
                    prices: self.prices.clone(),
                },
            ))
        })
    }

    /// The price table.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Cost in USD of `usage` on `model` (0 for unpriced models).
    pub fn cost_usd(&self, model: &str, usage: &Usage) -> f64 {
        self.prices.cost_usd(model, usage)
    }
}
