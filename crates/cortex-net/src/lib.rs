//! Guarded outbound HTTP for Cortex: action (tool-call) webhooks and knowledge URL fetches.
//!
//! * [`NetPolicy`] / [`NetGuard`] / [`GuardedResolver`]: the network guard. Loopback, private,
//!   link-local (cloud metadata), CGNAT, unspecified, multicast, broadcast, reserved and
//!   documentation addresses — in every IPv6 form that embeds them — and metadata host names are
//!   refused unless the policy allows them; host names are checked on the addresses actually
//!   connected to.
//! * [`GuardedClient`]: bounded fetch (streamed body cut at the cap), timeouts, retries with
//!   exponential backoff on connection errors, 5xx and 429, redirects re-checked hop by hop.
//! * [`ActionSpec`], [`build_request`], [`execute_action`]: tool calls validated against their
//!   JSON Schema before any request, executed into an [`ActionOutcome`] that never is an `Err`.
//! * [`RateLimiter`]: per-key sliding-window limits for actions.
//! * [`import_openapi`] / [`import_openapi_str`]: one action per OpenAPI 3 operation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cortex_net::NetError> {
//! use cortex_net::{ActionSpec, GuardedClient, HttpMethod, NetPolicy, execute_action};
//!
//! let client = GuardedClient::new(NetPolicy::webhook())?;
//! let mut spec = ActionSpec::new("get_order_status", HttpMethod::Get, "https://api.store.example");
//! spec.path_template = Some("/orders/{order_id}".into());
//! let outcome = execute_action(&client, &spec, &serde_json::json!({"order_id": "ORD-1234"})).await;
//! println!("{}", outcome.to_tool_result());
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod action;
mod client;
mod error;
mod guard;
mod openapi;
mod ratelimit;

pub use action::{
    ActionAuth, ActionError, ActionOutcome, ActionSpec, HttpMethod, build_request, execute_action,
    validate_arguments,
};
pub use client::{FetchReport, FetchedResponse, GuardedClient, OutboundRequest};
pub use error::NetError;
pub use guard::{
    GuardedResolver, MAX_REDIRECT_HOPS, METADATA_HOST_NAMES, NetGuard, NetPolicy, OversizePolicy,
    URL_FETCH_MAX_RESPONSE_BYTES, WEBHOOK_MAX_RESPONSE_BYTES, blocked_reason,
};
pub use openapi::{ImportError, import_openapi, import_openapi_str, snake_case};
pub use ratelimit::{RateLimit, RateLimiter, RetryAfter};
