//! Rate limits (per company, per conversation; shared through Redis when scaled out), the
//! per-instance client IP cap, and the X-RateLimit headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::json;

use crate::helpers::{Auth, Backend, TestApp, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    company_requests_are_counted_and_refused_beyond_the_limit,
    conversation_messages_are_limited_per_conversation,
    the_client_ip_cap_refuses_one_client_too_many,
);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn header_u64(r: &crate::helpers::Resp, name: &str) -> u64 {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing: {:?}", r.headers))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn company_requests_are_counted_and_refused_beyond_the_limit(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.limits.company_requests = 4;
        c.limits.company_window_seconds = 3600;
    })
    .await;
    // Logging in is public: it is not counted and carries no headers.
    let s = app.admin().await;
    let public = app.get("/health", &Auth::None).await;
    assert!(public.headers.get("x-ratelimit-remaining").is_none());

    let mut remaining = Vec::new();
    for _ in 0..4 {
        let r = app.get("/v1/me", &s).await;
        assert_eq!(r.status, 200, "{}", r.body);
        remaining.push(header_u64(&r, "x-ratelimit-remaining"));
        let reset = header_u64(&r, "x-ratelimit-reset");
        assert!(reset > unix_now() && reset <= unix_now() + 3601, "{reset}");
    }
    assert_eq!(remaining, vec![3, 2, 1, 0]);

    let r = app.get("/v1/me", &s).await;
    r.assert_error(429, "RATE_LIMIT_EXCEEDED");
    let retry_after = header_u64(&r, "retry-after");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let ms = r.body["retryAfterMs"].as_u64().unwrap();
    assert!(
        ms > 0 && ms <= 3_600_000 && ms.div_ceil(1000) == retry_after,
        "{ms}"
    );
    assert_eq!(header_u64(&r, "x-ratelimit-remaining"), 0);
    // Refused requests do not reach the handler: nothing is created.
    let r = app.post("/v1/agents", &s, json!({"name": "blocked"})).await;
    r.assert_error(429, "RATE_LIMIT_EXCEEDED");

    // Another company has its own window; unauthenticated requests are 401, not 429.
    let (_, other) = app.other_company().await;
    let r = app.get("/v1/me", &other).await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining"), 3);
    app.get("/v1/me", &Auth::None)
        .await
        .assert_error(401, "UNAUTHORIZED");
}

async fn chat_once(
    app: &TestApp,
    s: &Auth,
    company: &str,
    agent: &str,
    conv: &str,
) -> crate::helpers::Resp {
    app.post(
        "/v1/chat",
        s,
        TestApp::chat_body(company, agent, conv, "hello"),
    )
    .await
}

async fn conversation_messages_are_limited_per_conversation(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.limits.conversation_messages = 2;
        c.limits.conversation_window_seconds = 3600;
    })
    .await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app.create_agent(&s, json!({"name": "limited"})).await;
    let conv = uuid::Uuid::now_v7().to_string();
    for _ in 0..2 {
        let r = chat_once(&app, &s, &company, &agent, &conv).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = chat_once(&app, &s, &company, &agent, &conv).await;
    let msg = r.assert_error(429, "RATE_LIMIT_EXCEEDED");
    assert!(msg.contains("Conversation"), "{msg}");
    assert!(r.body["retryAfterMs"].as_u64().unwrap() > 0);
    assert_eq!(header_u64(&r, "x-ratelimit-limit"), 2);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining"), 0);

    // The streaming endpoint shares the count and refuses before any event.
    let r = app
        .post(
            "/v1/chat/stream",
            &s,
            TestApp::chat_body(&company, &agent, &conv, "hello"),
        )
        .await;
    r.assert_error(429, "RATE_LIMIT_EXCEEDED");

    // Another conversation is unaffected, and the refused messages were not recorded.
    let other = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        chat_once(&app, &s, &company, &agent, &other).await.status,
        200
    );
    let pool = app.raw_db().await;
    let turns: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM conversation_messages WHERE conversation_id = '{conv}' AND role = 'user'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(turns, 2);
}

/// A client bound to another loopback address (127.0.0.0/8 all reach the server).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(Some(ip.parse().unwrap()))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn the_client_ip_cap_refuses_one_client_too_many(b: Backend) {
    let fake = cortex_fakellm::FakeLlm::start().await;
    fake.set_default_latency(Duration::from_millis(1500));
    let url = fake.base_url().to_string();
    let app = spawn_app_with(b, |c| {
        c.limits.max_client_ips = 1;
        c.llm = crate::helpers::fake_llm(&url, 0, 10.0);
    })
    .await;
    let s = app.admin().await;
    let Auth::Bearer(token) = &s else {
        unreachable!()
    };

    // Client A holds a request open: its body arrives slowly.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    tx.unbounded_send(Ok(br#"{"name": "#.to_vec())).unwrap();
    let held = tokio::spawn(
        client_from("127.0.0.1")
            .post(format!("{}/v1/agents", app.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(rx))
            .send(),
    );
    crate::helpers::eventually(|| async { (app.state.client_ips.connected() == 1).then_some(()) })
        .await;

    // Client B is one client too many; health checks are never refused.
    let b_client = client_from("127.0.0.2");
    let r = b_client
        .get(format!("{}/v1/me", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(body["retryAfterMs"], 1000);
    let r = b_client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Client A itself may open more requests.
    assert_eq!(app.get("/v1/me", &s).await.status, 200);

    // A finishes; B gets in.
    tx.unbounded_send(Ok(br#""held"}"#.to_vec())).unwrap();
    drop(tx);
    let created = held.await.unwrap().unwrap();
    assert_eq!(created.status(), 201);
    crate::helpers::eventually(|| async { (app.state.client_ips.connected() == 0).then_some(()) })
        .await;
    let r = b_client
        .get(format!("{}/v1/me", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An open event stream holds its client's slot until it ends.
    let company = app.company_id(&s).await;
    let agent = app.create_agent(&s, json!({"name": "streamer"})).await;
    fake.push(cortex_fakellm::Step::text("A slow answer."));
    let stream = client_from("127.0.0.1")
        .post(format!("{}/v1/chat/stream", app.base))
        .bearer_auth(token)
        .json(&TestApp::chat_body(
            &company,
            &agent,
            &uuid::Uuid::now_v7().to_string(),
            "hi",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(
        app.state.client_ips.connected(),
        1,
        "the model is still answering"
    );
    let r = b_client
        .get(format!("{}/v1/me", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let mut body = stream.bytes_stream();
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&text).contains("event: complete"));
    crate::helpers::eventually(|| async { (app.state.client_ips.connected() == 0).then_some(()) })
        .await;
}
