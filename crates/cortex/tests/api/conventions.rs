//! Conventions every endpoint shares: error envelope, 413, 422, CORS, request ids, OpenAPI.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Auth, Backend, spawn_app, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    json_bodies_over_one_megabyte_are_413,
    validation_errors_have_the_contract_shape,
    cors_allows_configured_origins_only,
    request_ids_are_set_or_propagated,
    unknown_routes_and_methods_use_the_envelope,
    every_documented_route_exists_and_requires_auth_unless_public,
    nul_characters_and_trailing_garbage_are_the_same_422_on_both_backends,
);

async fn json_bodies_over_one_megabyte_are_413(b: Backend) {
    let app = spawn_app(b).await;
    let big = json!({"email": "a@b.c", "password": "x".repeat(1024 * 1024 + 10)});
    let r = app.post("/portal/api/login", &Auth::None, big).await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    // Just under the limit is read (and then refused on its merits).
    let ok = app
        .post(
            "/portal/api/login",
            &Auth::None,
            json!({"email": "a@b.c", "password": "x".repeat(1000)}),
        )
        .await;
    assert_eq!(ok.status, 401);
}

async fn validation_errors_have_the_contract_shape(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .post(
            "/portal/api/login",
            &Auth::None,
            json!({"email": 5, "password": "x"}),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let d = &r.body["detail"][0];
    assert_eq!(d["loc"], json!(["body", "email"]));
    assert!(d["msg"].as_str().unwrap().contains("invalid type"), "{d}");
    assert_eq!(d["type"], "value_error");

    // Not JSON at all, and JSON without the content type.
    let raw = app
        .client
        .post(format!("{}/portal/api/login", app.base))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 422);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    let no_ct = app
        .client
        .post(format!("{}/portal/api/login", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_ct.status(), 422);
}

async fn cors_allows_configured_origins_only(b: Backend) {
    let app = spawn_app_with(b, |c| {
        c.cors.allowed_origins = vec![
            "https://*.example.com".into(),
            "http://localhost:3000".into(),
        ];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/v1/me", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "x-api-key")
            .send()
    };
    for allowed in [
        "https://app.example.com",
        "https://a.b.example.com",
        "http://localhost:3000",
    ] {
        let r = preflight(allowed).await.unwrap();
        assert!(r.status().is_success(), "{allowed}: {}", r.status());
        assert_eq!(r.headers()["access-control-allow-origin"], allowed);
        assert!(
            r.headers()["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("x-api-key")
        );
    }
    for denied in [
        "https://example.com",
        "https://evil.com",
        "https://app.example.com.evil.org",
        "http://app.example.com",
    ] {
        let r = preflight(denied).await.unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{denied} was allowed"
        );
    }
    // Simple requests get the header too (here on an error response).
    let r = app
        .client
        .get(format!("{}/v1/me", app.base))
        .header("origin", "https://x.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://x.example.com"
    );
}

async fn request_ids_are_set_or_propagated(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.get("/health", &Auth::None).await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    let r = app
        .client
        .get(format!("{}/health", app.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
}

async fn unknown_routes_and_methods_use_the_envelope(b: Backend) {
    let app = spawn_app(b).await;
    let session = app.admin().await;
    app.get("/v1/does-not-exist", &session)
        .await
        .assert_error(404, "NOT_FOUND");
    let r = app
        .request(
            Method::PUT,
            "/portal/api/login",
            &Auth::None,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["success"], false);
}

async fn every_documented_route_exists_and_requires_auth_unless_public(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.get("/openapi.json", &Auth::None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for expected in [
        "/health",
        "/v1/health",
        "/health/detailed",
        "/v1/me",
        "/portal/api/login",
        "/portal/api/keys",
        "/portal/api/keys/{id}",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the OpenAPI document"
        );
    }
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (m == Method::POST).then(|| json!({}));
            let r = app.request(m, &concrete, &Auth::None, body).await;
            assert!(
                r.status != 404 && r.status != 405,
                "{method} {path} → {}",
                r.status
            );
            let public = cortex::api::auth::PUBLIC_ROUTES.contains(&path.as_str());
            // The widget's routes are public to the layer but want a public key themselves.
            let own_key = path.starts_with("/v1/sdk/");
            assert!(
                (r.status == 401) == (!public || own_key),
                "{method} {path} → {}",
                r.status
            );
        }
    }
}

/// PostgreSQL cannot store a NUL character in text; SQLite can. Both refuse it alike, with the
/// field's path, wherever text comes in (JSON at any depth, the path, the query, a form field);
/// NUL bytes inside an uploaded document are dropped, not a 500. A JSON body followed by
/// anything but whitespace is not JSON.
async fn nul_characters_and_trailing_garbage_are_the_same_422_on_both_backends(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let nul_at = |r: crate::helpers::Resp| {
        r.assert_error(422, "VALIDATION_ERROR");
        let detail = &r.body["detail"][0];
        assert_eq!(detail["type"], "string_nul", "{}", r.body);
        detail["loc"].clone()
    };
    let r = app
        .post(
            "/portal/api/login",
            &Auth::None,
            json!({"email": "admin\u{0}@cortex.local", "password": "x"}),
        )
        .await;
    assert_eq!(nul_at(r), json!(["body", "email"]));
    let r = app
        .post("/v1/agents", &s, json!({"name": "Bad\u{0}name"}))
        .await;
    assert_eq!(nul_at(r), json!(["body", "name"]));
    let r = app
        .post(
            "/v1/agents",
            &s,
            json!({"name": "ok", "faqs": [{"question": "q?", "answer": "a"}, {"question": "why\u{0}", "answer": "b"}]}),
        )
        .await;
    assert_eq!(nul_at(r), json!(["body", "faqs", 1, "question"]));
    let r = app
        .post(
            "/v1/memory/cust%00omer/save",
            &s,
            json!({"fact": "likes tea"}),
        )
        .await;
    assert_eq!(nul_at(r), json!(["path"]));
    let r = app.get("/v1/agents?limit=1%00", &s).await;
    assert_eq!(nul_at(r), json!(["query"]));
    // Nothing of the refused requests was stored.
    let agents = app.get("/v1/agents", &s).await;
    assert_eq!(agents.body["pagination"]["total"], 0, "{}", agents.body);

    // Trailing garbage after the JSON value.
    let r = app
        .client
        .post(format!("{}/v1/agents", app.base))
        .bearer_auth(match &s {
            Auth::Bearer(t) => t.clone(),
            _ => unreachable!(),
        })
        .header("content-type", "application/json")
        .body(r#"{"name": "trailing"} {"name": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["detail"][0]["type"], "json_invalid", "{body}");
    assert_eq!(
        app.get("/v1/agents", &s).await.body["pagination"]["total"],
        0
    );

    // NUL bytes inside a document are not text: dropped, and the rest is searchable.
    let source = app
        .post(
            "/v1/knowledge/sources",
            &s,
            json!({"name": "Binaryish", "kind": "file"}),
        )
        .await;
    let source = source.body["id"].as_str().unwrap().to_string();
    let r = crate::knowledge::upload_as(
        &app,
        &s,
        &source,
        "notes.txt",
        b"The zephyrine\0 valve opens at dawn.\0\0",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "completed", "{}", r.body);
    let found = app
        .post(
            "/v1/knowledge/search",
            &s,
            json!({"source_ids": [source], "query": "zephyrine valve", "top_k": 1}),
        )
        .await;
    let text = found.body["results"][0]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("zephyrine valve"), "{}", found.body);
}

/// ARCHITECTURE.md: `api` is the only module that knows axum, and failures become HTTP in one
/// place (`api/error.rs`): no other file of the server names axum, and no other file of `api`
/// implements `From<…> for ApiError`.
#[test]
fn only_api_knows_axum_and_only_api_error_maps_failures() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 40, "walked {} files", files.len());
    let mut offenders = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        if !rel.starts_with("api/") && text.contains("axum") {
            offenders.push(format!("{rel} names axum"));
        }
        if rel.starts_with("api/") && rel != "api/error.rs" && text.contains("for ApiError") {
            offenders.push(format!("{rel} maps an error to ApiError"));
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
