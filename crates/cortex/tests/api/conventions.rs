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
