//! `/v1/metrics` (Prometheus text) and `/v1/metrics/dashboard`.

use serde_json::json;

use crate::helpers::{Auth, Backend, TestApp, fake_llm, spawn_app, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    prometheus_text_counts_requests_and_pipeline_stages,
    metrics_need_an_admin_or_the_metrics_scope,
    the_dashboard_counts_this_nodes_chats,
);

async fn prometheus_text_counts_requests_and_pipeline_stages(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app.create_agent(&s, json!({"name": "m"})).await;
    let conv = uuid::Uuid::now_v7().to_string();
    let r = app
        .post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv, "hello"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let resp = app
        .client
        .get(format!("{}/v1/metrics", app.base))
        .header(
            "authorization",
            match &s {
                Auth::Bearer(t) => format!("Bearer {t}"),
                _ => unreachable!(),
            },
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    for needle in [
        "# TYPE cortex_http_requests_total counter",
        r#"route="/v1/agents""#,
        r#"status="201""#,
        "# TYPE cortex_pipeline_duration_ms histogram",
        r#"cortex_pipeline_duration_ms_bucket{model="extractive",le="1"}"#,
        r#"cortex_stage_duration_ms_count{stage="context_engine"}"#,
        r#"cortex_tokens_total{direction="output",model="extractive"}"#,
        "cortex_config_cache_",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Route templates, never raw ids.
    assert!(!text.contains(&agent), "an id leaked into a label");
    assert!(text.contains(r#"route="/v1/agents/{id}""#) || !text.contains("/v1/agents/0"));
}

async fn metrics_need_an_admin_or_the_metrics_scope(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let chat_only = app.key_with_scopes(&s, &["chat"]).await;
    let scraper = app.key_with_scopes(&s, &["metrics"]).await;
    for path in ["/v1/metrics", "/v1/metrics/dashboard"] {
        app.get(path, &chat_only)
            .await
            .assert_error(403, "FORBIDDEN");
        app.get(path, &Auth::None)
            .await
            .assert_error(401, "UNAUTHORIZED");
        assert_eq!(app.get(path, &scraper).await.status, 200);
        assert_eq!(app.get(path, &s).await.status, 200);
    }
}

async fn the_dashboard_counts_this_nodes_chats(b: Backend) {
    let fake = cortex_fakellm::FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = spawn_app_with(b, |c| c.llm = fake_llm(&url, 0, 5.0)).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "d", "settings": {"cache_enabled": false}}),
        )
        .await;
    for i in 0..3 {
        fake.push(cortex_fakellm::Step::text("An answer.").with_usage(10, 3));
        let conv = uuid::Uuid::now_v7().to_string();
        let r = app
            .post(
                "/v1/chat",
                &s,
                TestApp::chat_body(&company, &agent, &conv, &format!("question {i}")),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let d = app.get("/v1/metrics/dashboard", &s).await.body;
    assert_eq!(d["config_loading"]["total_loads"], 3, "{d}");
    assert!(
        d["config_loading"]["cache_hits"].as_u64().unwrap() >= 2,
        "{d}"
    );
    assert_eq!(d["model_routing"]["total_routed"], 3, "{d}");
    let by_tier = d["model_routing"]["by_tier"].as_object().unwrap();
    assert_eq!(
        by_tier.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        3
    );
    assert_eq!(d["agent_compilation"]["tool_call_rate"], 0.0, "{d}");
    assert_eq!(d["agent_compilation"]["avg_tool_rounds"], 0.0, "{d}");
    assert!(
        d["agent_compilation"]["avg_llm_latency_ms"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
}
