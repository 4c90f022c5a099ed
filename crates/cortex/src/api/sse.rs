//! Server-Sent Events framing, in one place for `/v1/chat/stream` and run streams: `event:`,
//! `id:` (the frame's seq), `data:` (its JSON), `: heartbeat` comments, and the SSE client gauge.
//! Resumption: `Last-Event-ID` (or `?last_id=`) is read by [`last_event_id`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};

use crate::pipeline::Frame;
use crate::state::AppState;

/// Frames as an SSE response with heartbeats; the stream counts in `cortex_sse_clients` (and
/// `gauge`, when given) while it is open.
pub fn respond<S>(
    state: &AppState,
    frames: S,
    gauge: Option<&'static str>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<S>>
where
    S: Stream<Item = Arc<Frame>> + Send + 'static,
{
    let guards = (
        crate::telemetry::GaugeGuard::new("cortex_sse_clients"),
        gauge.map(crate::telemetry::GaugeGuard::new),
    );
    let events = frames.map(move |f| {
        let _held = &guards;
        Ok(Event::default()
            .event(f.name.as_str())
            .id(f.seq.to_string())
            .data(f.data.as_str()))
    });
    let heartbeat = Duration::from_secs_f64(state.config.limits.sse_heartbeat_seconds);
    Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
}

/// The seq a reconnecting client saw last: `Last-Event-ID`, else `?last_id=`; 0 for none.
pub fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Result<u64, super::ApiError> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.map(str::to_owned));
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v.parse::<u64>().map_err(|_| {
            super::ApiError::BadRequest("Last-Event-ID must be a non-negative integer".into())
        }),
    }
}
