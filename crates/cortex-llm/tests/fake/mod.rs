//! A scripted fake LLM server on 127.0.0.1 for the HTTP tests.

// Test support code: a failed setup step should panic the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

/// What the fake answers to one request.
#[derive(Clone)]
pub enum Reply {
    /// A JSON body with a status and extra headers.
    Json(u16, Value, Vec<(&'static str, String)>),
    /// An SSE body made of these frames (each a complete `event:`/`data:` block).
    Sse(Vec<String>),
    /// SSE frames, then the connection stays open without sending anything more.
    SseThenStall(Vec<String>),
    /// SSE frames, then the body ends abruptly (no terminator).
    SseThenClose(Vec<String>),
    /// Sleep before answering with the inner reply.
    Delay(Duration, Box<Reply>),
    /// An endless SSE stream (one text delta every 20 ms); the server notes when the client
    /// goes away.
    Endless,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
pub struct FakeState {
    script: Mutex<VecDeque<Reply>>,
    pub seen: Mutex<Vec<Seen>>,
    pub hits: AtomicUsize,
    pub disconnected: Arc<AtomicBool>,
}

pub struct Fake {
    pub addr: SocketAddr,
    pub state: Arc<FakeState>,
}

impl Fake {
    /// Starts a fake answering with `script` in order (the last reply repeats).
    pub async fn start(script: Vec<Reply>) -> Fake {
        let state = Arc::new(FakeState {
            script: Mutex::new(script.into()),
            ..FakeState::default()
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Fake { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn disconnected(&self) -> bool {
        self.state.disconnected.load(Ordering::SeqCst)
    }
}

/// Sets a flag when dropped (hyper drops the body stream when the client disconnects).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let reply = {
        let mut script = state.script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().unwrap()
        }
    };
    respond(reply, state.disconnected.clone()).await
}

async fn respond(reply: Reply, flag: Arc<AtomicBool>) -> Response {
    let mut reply = reply;
    while let Reply::Delay(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    match reply {
        Reply::Json(status, body, headers) => {
            let mut b = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json");
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Body::from(body.to_string())).unwrap()
        }
        Reply::Sse(frames) => sse_response(Body::from(frames.concat())),
        Reply::SseThenStall(frames) => {
            let guard = DropFlag(flag);
            let first = futures::stream::iter(
                frames
                    .into_iter()
                    .map(|f| Ok::<_, std::io::Error>(Bytes::from(f))),
            );
            let stall = futures::stream::unfold(guard, |g| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Some((Ok(Bytes::new()), g))
            });
            use futures::StreamExt;
            sse_response(Body::from_stream(first.chain(stall)))
        }
        Reply::SseThenClose(frames) => {
            use futures::StreamExt;
            let first = futures::stream::iter(
                frames
                    .into_iter()
                    .map(|f| Ok::<_, std::io::Error>(Bytes::from(f))),
            );
            // Let the frames reach the client before the connection breaks.
            let boom = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Err::<Bytes, _>(std::io::Error::other("boom"))
            });
            sse_response(Body::from_stream(first.chain(boom)))
        }
        Reply::Endless => {
            let guard = DropFlag(flag);
            let s = futures::stream::unfold((guard, 0u64), |(g, n)| async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let frame = openai_chunk(&serde_json::json!({"content": format!("t{n} ")}), None);
                Some((Ok::<_, std::io::Error>(Bytes::from(frame)), (g, n + 1)))
            });
            sse_response(Body::from_stream(s))
        }
        Reply::Delay(..) => unreachable!(),
    }
}

/// An OpenAI `chat.completion.chunk` SSE frame with `delta` and an optional finish reason.
pub fn openai_chunk(delta: &Value, finish: Option<&str>) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-fake-0001",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    format!("data: {chunk}\n\n")
}

/// An Anthropic SSE frame.
pub fn anthropic_event(data: &Value) -> String {
    let name = data["type"].as_str().unwrap_or("unknown");
    format!("event: {name}\ndata: {data}\n\n")
}
