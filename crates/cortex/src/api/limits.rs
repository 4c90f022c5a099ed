//! The per-instance cap on concurrently connected client IPs, as a layer. (The per-company rate
//! is counted in the authentication layer, the per-conversation rate in the chat handlers.)

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::limits::IpGuard;
use crate::state::AppState;

/// Health checks come from load balancers and monitors; they never count as clients.
fn exempt(path: &str) -> bool {
    path == "/health" || path == "/v1/health" || path == "/health/detailed"
}

/// Refuse a request from one client IP too many; otherwise hold the IP's slot until the
/// response body (an event stream included) is finished or dropped.
pub async fn limit_client_ips(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(ip) = peer.filter(|_| !exempt(req.uri().path())) else {
        return Ok(next.run(req).await);
    };
    let Some(guard) = state.client_ips.enter(ip) else {
        tracing::warn!(%ip, max = state.config.limits.max_client_ips, "client IP cap reached");
        metrics::counter!("cortex_rate_limited_total", "limit" => "client_ips").increment(1);
        return Err(ApiError::RateLimited {
            message: "Too many concurrent clients on this instance".into(),
            retry_after_ms: 1000,
            quota: None,
        });
    };
    let resp = next.run(req).await;
    Ok(resp.map(|body| {
        Body::new(Guarded {
            inner: body,
            _guard: guard,
        })
    }))
}

/// A response body that keeps its client's slot until it is done.
struct Guarded {
    inner: Body,
    _guard: IpGuard,
}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
