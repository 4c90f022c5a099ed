//! The widget: public keys, `/v1/sdk/init`, SDK session tokens on the chat endpoints only,
//! `/v1/sdk/config/{agent_id}`, origins, revocation, `/widget.js`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Auth, Backend, TestApp, spawn_app};
use crate::on_every_backend;

on_every_backend!(
    a_widget_session_chats_with_its_agent_from_its_origin,
    public_keys_are_checked_for_origin_agent_and_revocation,
);

const SHOP: &str = "https://shop.example.com";

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut rb = app.client.request(method, format!("{}{path}", app.base));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

async fn setup(app: &TestApp) -> (Auth, String, String, Value) {
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "Shop helper", "workflow_faqs": [{"question": "When are you open?", "answer": "9 to 5, Sunday to Thursday."}]}),
        )
        .await;
    let r = app
        .post(
            "/v1/public-keys",
            &s,
            json!({"agent_id": agent, "allowed_origins": [SHOP, "https://*.preview.example.com"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["key"].as_str().unwrap().starts_with("pk_"));
    (s, company, agent, r.body)
}

async fn a_widget_session_chats_with_its_agent_from_its_origin(b: Backend) {
    let app = spawn_app(b).await;
    let (s, company, agent, key) = setup(&app).await;
    let pk = key["key"].as_str().unwrap();

    let (status, session, headers) = raw(
        &app,
        Method::POST,
        "/v1/sdk/init",
        &[("x-public-key", pk), ("origin", SHOP)],
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(headers["access-control-allow-origin"], SHOP);
    let token = session["token"].as_str().unwrap();
    assert!(token.starts_with("sdk_"));
    assert_eq!(session["agent_id"], agent.as_str());
    assert_eq!(session["company_id"], company.as_str());
    assert!(session["expires_at"].as_str().is_some());

    // The session chats with its agent, from its origin.
    let conv = uuid::Uuid::now_v7().to_string();
    let chat = TestApp::chat_body(&company, &agent, &conv, "When are you open?");
    let (status, reply, _) = raw(
        &app,
        Method::POST,
        "/v1/chat",
        &[("x-sdk-token", token), ("origin", SHOP)],
        Some(chat.clone()),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["reply"].as_str().unwrap().contains("9 to 5"));
    let (status, stream, _) = raw(
        &app,
        Method::POST,
        "/v1/chat/stream",
        &[("x-sdk-token", token), ("origin", SHOP)],
        Some(chat.clone()),
    )
    .await;
    assert_eq!(status, 200);
    assert!(stream.as_str().unwrap().contains("event: complete"));

    // Not from another origin, not for another agent, not on any other route.
    let (status, _, _) = raw(
        &app,
        Method::POST,
        "/v1/chat",
        &[
            ("x-sdk-token", token),
            ("origin", "https://evil.example.net"),
        ],
        Some(chat.clone()),
    )
    .await;
    assert_eq!(status, 403);
    let other_agent = app.create_agent(&s, json!({"name": "internal"})).await;
    let (status, _, _) = raw(
        &app,
        Method::POST,
        "/v1/chat",
        &[("x-sdk-token", token), ("origin", SHOP)],
        Some(TestApp::chat_body(&company, &other_agent, &conv, "hi")),
    )
    .await;
    assert_eq!(status, 404);
    for path in ["/v1/me", "/v1/agents", "/portal/api/keys"] {
        let (status, body, _) = raw(
            &app,
            Method::GET,
            path,
            &[("x-sdk-token", token), ("origin", SHOP)],
            None,
        )
        .await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    // A forged token is refused.
    let forged = format!("{}x", &token[..token.len() - 1]);
    let (status, _, _) = raw(
        &app,
        Method::POST,
        "/v1/chat",
        &[("x-sdk-token", &forged), ("origin", SHOP)],
        Some(chat.clone()),
    )
    .await;
    assert_eq!(status, 401);

    // The widget's configuration, and the script itself.
    let (status, cfg, _) = raw(
        &app,
        Method::GET,
        &format!("/v1/sdk/config/{agent}"),
        &[("x-api-key", pk), ("origin", SHOP)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{cfg}");
    assert_eq!(cfg["name"], "Shop helper");
    assert_eq!(cfg["endpoints"]["stream"], "/v1/chat/stream");
    let (status, js, headers) = raw(&app, Method::GET, "/widget.js", &[], None).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/javascript")
    );
    assert!(js.as_str().unwrap().contains("/v1/sdk/init"));

    // Revoking the key ends the session at once.
    let id = key["id"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/v1/public-keys/{id}"), &s)
            .await
            .status,
        200
    );
    let (status, _, _) = raw(
        &app,
        Method::POST,
        "/v1/chat",
        &[("x-sdk-token", token), ("origin", SHOP)],
        Some(chat),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = raw(
        &app,
        Method::POST,
        "/v1/sdk/init",
        &[("x-public-key", pk), ("origin", SHOP)],
        None,
    )
    .await;
    assert_eq!(status, 401);
}

async fn public_keys_are_checked_for_origin_agent_and_revocation(b: Backend) {
    let app = spawn_app(b).await;
    let (s, _company, agent, key) = setup(&app).await;
    let pk = key["key"].as_str().unwrap();
    let init = |origin: &'static str| {
        let app = &app;
        async move {
            let mut headers = vec![("x-public-key", pk)];
            if !origin.is_empty() {
                headers.push(("origin", origin));
            }
            raw(app, Method::POST, "/v1/sdk/init", &headers, None)
                .await
                .0
        }
    };
    assert_eq!(
        init("https://pr-42.preview.example.com").await,
        200,
        "wildcard subdomain"
    );
    assert_eq!(init("https://evil.example.net").await, 403);
    assert_eq!(init("https://shop.example.com.evil.net").await, 403);
    assert_eq!(init("").await, 403, "no Origin header");
    let (status, _, _) = raw(
        &app,
        Method::POST,
        "/v1/sdk/init",
        &[("x-public-key", "pk_unknown"), ("origin", SHOP)],
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = raw(
        &app,
        Method::GET,
        &format!("/v1/sdk/config/{}", uuid::Uuid::now_v7()),
        &[("x-api-key", pk), ("origin", SHOP)],
        None,
    )
    .await;
    assert_eq!(
        status, 404,
        "a key opens only its own agent's configuration"
    );

    // Management: validation, listing, tenancy, members.
    let r = app
        .post(
            "/v1/public-keys",
            &s,
            json!({"agent_id": agent, "allowed_origins": ["shop.example.com"]}),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let listed = app.get("/v1/public-keys", &s).await;
    assert_eq!(listed.body["pagination"]["total"], 1);
    let (_, other) = app.other_company().await;
    assert_eq!(
        app.get("/v1/public-keys", &other).await.body["pagination"]["total"],
        0
    );
    let id = key["id"].as_str().unwrap();
    app.delete(&format!("/v1/public-keys/{id}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    app.post(
        "/v1/public-keys",
        &other,
        json!({"agent_id": agent, "allowed_origins": [SHOP]}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let member = app.key_with_scopes(&s, &["chat"]).await;
    app.post(
        "/v1/public-keys",
        &member,
        json!({"agent_id": agent, "allowed_origins": [SHOP]}),
    )
    .await
    .assert_error(403, "FORBIDDEN");
}
