//! A recording HTTP receiver on 127.0.0.1 for the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// Query pairs, decoded, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Recorded>>,
    counters: Mutex<HashMap<String, usize>>,
}

/// The running receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.inner.requests.lock().unwrap().len()
    }
}

/// The pretty JSON every echo answers with starts with this exact text.
pub const ECHO_PREFIX: &str = "{\n  \"echo\": true,\n";

/// Starts the receiver. Routes (by path prefix):
/// * `/status/{code}` — answers that status with body `status {code}`;
/// * `/flaky/{n}` — 500 for the first `n` requests to that exact path, then 200;
/// * `/throttled/{n}` — 429 with `Retry-After: 0` for the first `n`, then 200;
/// * `/slow/{ms}` — waits, then 200;
/// * `/big/{n}` — `n` bytes of `a` with a Content-Length;
/// * `/stream/{n}` — `n` bytes of `b` streamed in 8 KiB chunks without a Content-Length;
/// * `/endless` — a body that never ends;
/// * `/redirect/{code}?to=URL` — that status with `Location: URL`;
/// * `/hops/{n}` — redirects to `/hops/{n-1}` until 0, which answers 200;
/// * anything else — 200 with a pretty-printed JSON echo of the request.
pub async fn start() -> Receiver {
    let inner = Arc::new(Inner::default());
    let app = Router::new().fallback(handle).with_state(inner.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver { addr, inner }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    inner.requests.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        path: path.clone(),
        query: query.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let hit = {
        let mut counters = inner.counters.lock().unwrap();
        let c = counters.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let num = |i: usize| {
        segments
            .get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match segments.first().copied().unwrap_or("") {
        "status" => {
            let code = StatusCode::from_u16(num(1) as u16).unwrap();
            (code, format!("status {}", code.as_u16())).into_response()
        }
        "flaky" => {
            if hit as u64 <= num(1) {
                (StatusCode::INTERNAL_SERVER_ERROR, "temporary failure").into_response()
            } else {
                (StatusCode::OK, "recovered").into_response()
            }
        }
        "throttled" => {
            if hit as u64 <= num(1) {
                let mut r = (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
                r
            } else {
                (StatusCode::OK, "thanks").into_response()
            }
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(num(1))).await;
            (StatusCode::OK, "finally").into_response()
        }
        "big" => (StatusCode::OK, vec![b'a'; num(1) as usize]).into_response(),
        "stream" => {
            let total = num(1) as usize;
            let chunks = (0..total.div_ceil(8192)).map(move |i| {
                let len = 8192.min(total - i * 8192);
                Ok::<_, std::io::Error>(Bytes::from(vec![b'b'; len]))
            });
            Response::new(Body::from_stream(futures_stream(chunks.collect())))
        }
        "endless" => {
            let stream = futures_util::stream::unfold((), |()| async {
                tokio::task::yield_now().await;
                Some((Ok::<_, std::io::Error>(Bytes::from(vec![b'e'; 8192])), ()))
            });
            Response::new(Body::from_stream(stream))
        }
        "redirect" => {
            let to = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
                .find(|(k, _)| k == "to")
                .map(|(_, v)| v.into_owned())
                .unwrap();
            let code = StatusCode::from_u16(num(1) as u16).unwrap();
            let mut r = code.into_response();
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_str(&to).unwrap());
            r
        }
        "hops" => {
            let n = num(1);
            if n == 0 {
                (StatusCode::OK, "arrived").into_response()
            } else {
                let mut r = StatusCode::FOUND.into_response();
                r.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&format!("/hops/{}", n - 1)).unwrap(),
                );
                r
            }
        }
        _ => {
            let echo = serde_json::json!({
                "echo": true,
                "method": parts.method.as_str(),
                "path": path,
                "query": query,
            });
            let mut r =
                (StatusCode::OK, serde_json::to_string_pretty(&echo).unwrap()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

fn futures_stream(
    items: Vec<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::iter(items)
}

/// A raw TCP server that closes the first `drops` connections without answering, then answers
/// every request with `200 ok`. Returns its address and the count of accepted connections.
pub async fn start_dropping(drops: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let Ok(read) = sock.read(&mut buf).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..read]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                if n <= drops {
                    drop(sock);
                    return;
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, accepted)
}
