//! Health and graceful shutdown.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, Auth, Backend, spawn_app, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    health_answers,
    detailed_health_checks_the_database,
    shutdown_turns_health_503_and_drains_in_flight
);

async fn health_answers(b: Backend) {
    let app = spawn_app(b).await;
    for path in ["/health", "/v1/health"] {
        let r = app.get(path, &Auth::None).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
        );
    }
}

async fn detailed_health_checks_the_database(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.get("/health/detailed", &Auth::None).await;
    assert_eq!(r.status, 200);
    let name = if b == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["checks"][name], "ok", "{}", r.body);
    // With the database gone, the check says so and the answer is still 200.
    app.state.store.close().await;
    let r = app.get("/health/detailed", &Auth::None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "degraded");
    assert!(
        r.body["checks"][name]
            .as_str()
            .unwrap()
            .starts_with("error"),
        "{}",
        r.body
    );
}

/// With the default announce period (2 s), as a new user runs it.
async fn shutdown_turns_health_503_and_drains_in_flight(b: Backend) {
    let app = spawn_app_with(b, |c| {
        assert_eq!(c.shutdown.announce_seconds, 2.0, "the default");
        c.shutdown.drain_seconds = 10.0;
        c.instance_id = Some("node-under-test".into());
    })
    .await;
    // An in-flight request: its body arrives slowly, across the shutdown.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let in_flight = app
        .client
        .post(format!("{}/portal/api/login", app.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let in_flight = tokio::spawn(in_flight);
    tx.send(Ok(bytes::Bytes::from(format!(
        "{{\"email\": \"{ADMIN_EMAIL}\", "
    ))))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = app.get("/health", &Auth::None).await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(r.body["detail"]["status"], "shutting_down");
    assert_eq!(r.body["detail"]["instance_id"], "node-under-test");
    assert!(
        r.body["detail"]["timestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(app.get("/v1/health", &Auth::None).await.status, 503);
    assert_eq!(
        app.get("/health/detailed", &Auth::None).await.body["status"],
        "degraded"
    );

    // After the announce period the request still in flight completes normally.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    tx.send(Ok(bytes::Bytes::from(format!(
        "\"password\": \"{ADMIN_PASSWORD}\"}}"
    ))))
    .await
    .unwrap();
    drop(tx);
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["token"].is_string());
    app.stopped().await.unwrap();
}
