//! The provider abstraction every model backend implements.

use futures::stream::BoxStream;

use crate::error::LlmError;
use crate::types::{ChatRequest, ChatResponse, StreamEvent};

/// A stream of [`StreamEvent`]s. It owns the upstream HTTP response: dropping it closes the
/// connection and so cancels the model call.
pub type ChatStream = BoxStream<'static, Result<StreamEvent, LlmError>>;

/// A chat-completion backend. Object safe: use it as `Arc<dyn Provider>`.
///
/// Implementations retry transient failures themselves (per their [`crate::RetryPolicy`]) and
/// fill [`crate::Usage`] from local token counts when the backend reports none.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// A short name for logs and reports (the provider's key in [`crate::LlmConfig`]).
    fn name(&self) -> &str;

    /// Sends `req` and waits for the whole answer.
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Sends `req` with streaming. Returns once the provider accepted the request (HTTP headers
    /// received); connection errors and error statuses are returned here, after retries. Errors
    /// after that arrive as items of the stream, which then ends.
    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, LlmError>;
}
