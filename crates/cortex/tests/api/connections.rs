//! Connections (sealed credentials), actions that use them, `/v1/actions/{id}/test`,
//! post-response actions and OpenAPI import.

use serde_json::{Value, json};

use crate::helpers::{Auth, Backend, Receiver, TestApp, eventually, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    credentials_are_sealed_and_never_shown,
    actions_send_their_connections_credentials,
    oauth2_client_credentials_are_fetched_once_and_rotated,
    post_response_actions_run_after_the_turn,
    openapi_documents_become_actions_all_or_none,
);

/// A fixed test key (PostgreSQL needs one configured; SQLite would use a key file).
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn app(b: Backend) -> (TestApp, Auth) {
    let app = spawn_app_with(b, |c| {
        c.network.allow_private = true;
        if b == Backend::Postgres {
            c.secrets.encryption_key = Some(KEY.to_string().into());
        }
    })
    .await;
    let s = app.admin().await;
    (app, s)
}

async fn connection(app: &TestApp, s: &Auth, body: Value) -> String {
    let r = app.post("/v1/connections", s, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

async fn action(app: &TestApp, s: &Auth, body: Value) -> String {
    let r = app.post("/v1/actions", s, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

async fn credentials_are_sealed_and_never_shown(b: Backend) {
    let (app, s) = app(b).await;
    let r = app
        .post(
            "/v1/connections",
            &s,
            json!({"name": "shop", "auth_type": "api_key",
                   "credentials": {"api_key": "sk-very-secret-value", "header_name": "X-Shop-Key"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!r.body.to_string().contains("sk-very-secret-value"));
    assert_eq!(r.body["public"], json!({"header_name": "X-Shop-Key"}));
    assert_eq!(r.body["has_credentials"], true);
    let id = r.body["id"].as_str().unwrap().to_string();
    let listed = app.get("/v1/connections", &s).await;
    assert_eq!(listed.body["pagination"]["total"], 1);
    assert!(!listed.body.to_string().contains("sk-very-secret-value"));
    let got = app.get(&format!("/v1/connections/{id}"), &s).await;
    assert_eq!(got.body["name"], "shop");
    // At rest the value is sealed.
    let pool = app.raw_db().await;
    let sealed: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT sealed FROM connections WHERE id = '{id}'"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        sealed.starts_with("v1:") && !sealed.contains("secret"),
        "{sealed}"
    );

    // Validation, duplicates, tenancy.
    let r = app
        .post(
            "/v1/connections",
            &s,
            json!({"name": "x", "auth_type": "bearer", "credentials": {}}),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    assert_eq!(
        r.body["detail"][0]["loc"],
        json!(["body", "credentials", "token"])
    );
    app.post(
        "/v1/connections",
        &s,
        json!({"name": "shop", "auth_type": "bearer", "credentials": {"token": "t"}}),
    )
    .await
    .assert_error(409, "CONFLICT");
    let (_, other) = app.other_company().await;
    app.get(&format!("/v1/connections/{id}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    app.delete(&format!("/v1/connections/{id}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(
        app.delete(&format!("/v1/connections/{id}"), &s)
            .await
            .status,
        200
    );
}

async fn actions_send_their_connections_credentials(b: Backend) {
    let (app, s) = app(b).await;
    let rx = Receiver::start().await;
    let bearer = connection(
        &app,
        &s,
        json!({"name": "orders", "auth_type": "bearer", "credentials": {"token": "tok-123"}}),
    )
    .await;
    let basic = connection(
        &app,
        &s,
        json!({"name": "legacy", "auth_type": "basic", "credentials": {"username": "u", "password": "p w"}}),
    )
    .await;
    let key = connection(
        &app,
        &s,
        json!({"name": "shop", "auth_type": "api_key", "credentials": {"api_key": "k-9", "header_name": "X-Shop-Key"}}),
    )
    .await;

    // An authenticating action needs a connection of its auth type.
    let base = json!({"name": "get_order", "webhook_url": format!("{}/orders", rx.base), "method": "GET",
        "parameters_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        "auth_type": "bearer"});
    let r = app.post("/v1/actions", &s, base.clone()).await;
    r.assert_error(422, "VALIDATION_ERROR");
    let mut wrong = base.clone();
    wrong["connection_id"] = json!(basic);
    app.post("/v1/actions", &s, wrong)
        .await
        .assert_error(422, "VALIDATION_ERROR");
    let mut good = base.clone();
    good["connection_id"] = json!(bearer);
    let id = action(&app, &s, good).await;

    let r = app
        .post(
            &format!("/v1/actions/{id}/test"),
            &s,
            json!({"arguments": {"order_id": "ORD-1"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["ok"], true, "{}", r.body);
    assert_eq!(r.body["request"]["method"], "GET");
    assert!(
        r.body["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/orders?order_id=ORD-1")
    );
    assert_eq!(r.body["request"]["headers"]["authorization"], "[redacted]");
    assert!(r.body["result"].as_str().unwrap().contains("shipped"));
    assert_eq!(rx.headers()[0]["authorization"], "Bearer tok-123");
    // Invalid arguments never reach the webhook.
    let r = app
        .post(
            &format!("/v1/actions/{id}/test"),
            &s,
            json!({"arguments": {}}),
        )
        .await;
    assert_eq!(r.body["ok"], false);
    assert_eq!(rx.calls().len(), 1);

    for (conn, auth_type, name) in [
        (&basic, "basic", "legacy_call"),
        (&key, "api_key", "shop_call"),
    ] {
        let id = action(
            &app,
            &s,
            json!({"name": name, "webhook_url": format!("{}/{name}", rx.base), "auth_type": auth_type, "connection_id": conn}),
        )
        .await;
        let r = app
            .post(&format!("/v1/actions/{id}/test"), &s, json!({}))
            .await;
        assert_eq!(r.body["ok"], true, "{}", r.body);
    }
    let h = rx.headers();
    assert_eq!(h[1]["authorization"], "Basic dTpwIHc="); // base64("u:p w")
    assert_eq!(h[2]["x-shop-key"], "k-9");

    // A connection in use cannot be deleted; rotation takes effect at the next call.
    app.delete(&format!("/v1/connections/{bearer}"), &s)
        .await
        .assert_error(409, "CONFLICT");
    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("/v1/connections/{bearer}"),
            &s,
            Some(json!({"credentials": {"token": "tok-456"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.post(
        &format!("/v1/actions/{id}/test"),
        &s,
        json!({"arguments": {"order_id": "ORD-2"}}),
    )
    .await;
    assert_eq!(rx.headers()[3]["authorization"], "Bearer tok-456");
    // Members cannot run tests.
    let member_key = app.key_with_scopes(&s, &["chat"]).await;
    app.post(&format!("/v1/actions/{id}/test"), &member_key, json!({}))
        .await
        .assert_error(403, "FORBIDDEN");
}

async fn oauth2_client_credentials_are_fetched_once_and_rotated(b: Backend) {
    let (app, s) = app(b).await;
    let rx = Receiver::start().await;
    let conn = connection(
        &app,
        &s,
        json!({"name": "crm", "auth_type": "oauth2", "credentials": {
            "token_url": format!("{}/oauth/token", rx.base), "client_id": "cid", "client_secret": "cs-1", "scope": "orders"}}),
    )
    .await;
    let id = action(
        &app,
        &s,
        json!({"name": "crm_lookup", "webhook_url": format!("{}/crm", rx.base), "auth_type": "oauth2", "connection_id": conn}),
    )
    .await;
    for _ in 0..2 {
        let r = app
            .post(&format!("/v1/actions/{id}/test"), &s, json!({}))
            .await;
        assert_eq!(r.body["ok"], true, "{}", r.body);
    }
    let calls = rx.calls();
    let paths: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        paths,
        vec!["/oauth/token", "/crm", "/crm"],
        "the token is reused"
    );
    let form = calls[0].2.as_str().unwrap();
    assert!(
        form.contains("grant_type=client_credentials")
            && form.contains("client_secret=cs-1")
            && form.contains("scope=orders"),
        "{form}"
    );
    assert_eq!(rx.headers()[1]["authorization"], "Bearer at-1");
    // New credentials: a new token.
    app.request(
        reqwest::Method::PATCH,
        &format!("/v1/connections/{conn}"),
        &s,
        Some(json!({"credentials": {"token_url": format!("{}/oauth/token", rx.base), "client_id": "cid", "client_secret": "cs-2"}})),
    )
    .await;
    app.post(&format!("/v1/actions/{id}/test"), &s, json!({}))
        .await;
    let h = rx.headers();
    assert_eq!(h.len(), 5);
    assert_eq!(h[4]["authorization"], "Bearer at-2");
}

async fn post_response_actions_run_after_the_turn(b: Backend) {
    let (app, s) = app(b).await;
    let rx = Receiver::start().await;
    let company = app.company_id(&s).await;
    let id = action(
        &app,
        &s,
        json!({"name": "log_turn", "webhook_url": format!("{}/crm/log", rx.base), "trigger": "post_response"}),
    )
    .await;
    let agent = app
        .create_agent(&s, json!({"name": "a", "action_ids": [id], "workflow_faqs": [{"question": "When are you open?", "answer": "9 to 5."}]}))
        .await;
    let conv = uuid::Uuid::now_v7().to_string();
    let r = app
        .post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv, "When are you open?"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["actions_executed"],
        json!([]),
        "not offered to the model as a tool"
    );
    let call = eventually(|| async { rx.calls().into_iter().next() }).await;
    assert_eq!(call.0, "POST");
    assert_eq!(call.2["conversation_id"], conv.as_str());
    assert_eq!(call.2["message"], "When are you open?");
    assert_eq!(call.2["reply"], r.body["reply"]);
    assert_eq!(call.2["customer_id"], "cust_1");
}

const OPENAPI: &str = r#"
openapi: 3.0.3
info: {title: Shop, version: "1"}
servers: [{url: "BASE"}]
paths:
  /orders/{order_id}:
    get:
      operationId: getOrder
      summary: Look up an order
      parameters:
        - {name: order_id, in: path, required: true, schema: {type: string}}
  /orders:
    post:
      operationId: createOrder
      requestBody:
        content:
          application/json:
            schema: {type: object, properties: {sku: {type: string}}, required: [sku]}
"#;

async fn openapi_documents_become_actions_all_or_none(b: Backend) {
    let (app, s) = app(b).await;
    let rx = Receiver::start().await;
    let doc = OPENAPI.replace("BASE", &rx.base);
    let r = app
        .post("/v1/actions/import", &s, json!({"document": doc}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["count"], 2);
    let names: Vec<&str> = r.body["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["get_order", "create_order"]);
    let get = &r.body["actions"][0];
    assert_eq!(get["source_type"], "action");
    assert_eq!(get["path_template"], "/orders/{order_id}");
    // The imported action runs.
    let id = get["id"].as_str().unwrap();
    let t = app
        .post(
            &format!("/v1/actions/{id}/test"),
            &s,
            json!({"arguments": {"order_id": "A-7"}}),
        )
        .await;
    assert_eq!(t.body["ok"], true, "{}", t.body);
    assert_eq!(rx.calls()[0].1, "/orders/A-7");

    // Importing again conflicts and creates nothing; garbage is a 400.
    let again = app
        .post("/v1/actions/import", &s, json!({"document": doc}))
        .await;
    again.assert_error(409, "CONFLICT");
    assert_eq!(
        app.get("/v1/actions", &s).await.body["pagination"]["total"],
        2
    );
    app.post(
        "/v1/actions/import",
        &s,
        json!({"document": "swagger: '2.0'"}),
    )
    .await
    .assert_error(400, "BAD_REQUEST");
}

/// On PostgreSQL the key must be configured (every node needs the same one): without it,
/// connections are refused rather than sealed with a key kept beside the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_need_a_configured_key_on_postgres() {
    let app = spawn_app_with(Backend::Postgres, |_| {}).await;
    let s = app.admin().await;
    let r = app
        .post(
            "/v1/connections",
            &s,
            json!({"name": "x", "auth_type": "bearer", "credentials": {"token": "t"}}),
        )
        .await;
    let msg = r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(msg.contains("secrets.encryption_key"), "{msg}");
}
