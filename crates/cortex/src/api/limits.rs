//! The edge layer: the per-instance cap on concurrently connected client IPs, and the HTTP
//! request metrics. (The per-company rate
//! is counted in the authentication layer, the per-conversation rate in the chat handlers.)

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::limits::IpGuard;
use crate::state::AppState;

/// Health checks come from load balancers and monitors; they never count as clients.
fn exempt(path: &str) -> bool {
    path == "/health" || path == "/v1/health" || path == "/health/detailed"
}

/// The edge of every request: refuse one client IP too many (holding the IP's slot until a
/// streamed body ends), and count the request by method, route template and status. One layer
/// instead of two: each `from_fn` layer costs a service clone and a boxed future per request.
pub async fn edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let guard = match peer.filter(|_| !exempt(req.uri().path())) {
        None => None,
        Some(ip) => match state.client_ips.enter(ip) {
            Some(g) => Some(g),
            None => {
                tracing::warn!(%ip, max = state.config.limits.max_client_ips, "client IP cap reached");
                metrics::counter!("cortex_rate_limited_total", "limit" => "client_ips")
                    .increment(1);
                let resp = ApiError::RateLimited {
                    message: "Too many concurrent clients on this instance".into(),
                    retry_after_ms: 1000,
                    quota: None,
                }
                .into_response();
                state.http_metrics.record(
                    route.as_ref().map(|r| r.as_str()),
                    &method,
                    resp.status(),
                    started,
                );
                return resp;
            }
        },
    };
    let resp = next.run(req).await;
    state.http_metrics.record(
        route.as_ref().map(|r| r.as_str()),
        &method,
        resp.status(),
        started,
    );
    match guard {
        // A body of known size is complete already: the slot can go now.
        Some(guard) if resp.body().size_hint().exact().is_none() => resp.map(|body| {
            Body::new(Guarded {
                inner: body,
                _guard: guard,
            })
        }),
        _ => resp,
    }
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
