//! `/v1/agents`: CRUD, validation (templates included), the config endpoint and its cache.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Auth, Backend, spawn_app};
use crate::on_every_backend;

on_every_backend!(
    agent_crud,
    templates_and_settings_are_checked_at_save_time,
    config_endpoint_reflects_updates_at_once,
    agents_of_other_companies_are_invisible,
    members_use_agents_admins_change_them,
);

fn full_agent() -> serde_json::Value {
    json!({
        "name": "Support Agent",
        "system_prompt": "You are {{ agent.name }}, {{ personality.name }}. Speak {{ dialect.name }}.",
        "personality": {"id": "p1", "name": "Friendly Professional", "description": "Warm and precise"},
        "dialect": {"name": "Egyptian Arabic", "primary_language": "ar"},
        "workflow_faqs": [{"question": "What are your business hours?", "answer": "Sunday to Thursday, 9 AM to 6 PM."}],
        "scenarios": [{"name": "refund", "trigger": "refund", "instructions": "Ask for the order number."}],
        "knowledge_documents": [{"title": "Returns", "content": "Returns are free within 30 days."}],
        "settings": {"tier": "nano", "temperature": 0.3, "max_tokens": 300, "token_budget": 4000, "rag_top_k": 3,
                     "memory_enabled": true, "cache_enabled": false, "cache_threshold": 0.9, "max_tool_rounds": 2}
    })
}

async fn agent_crud(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let created = app.post("/v1/agents", &s, full_agent()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["personality"]["name"], "Friendly Professional");
    assert_eq!(created.body["settings"]["max_tool_rounds"], 2);

    let got = app.get(&format!("/v1/agents/{id}"), &s).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, created.body);

    // Defaults fill what a minimal agent leaves out.
    let minimal = app.post("/v1/agents", &s, json!({"name": "Minimal"})).await;
    assert_eq!(minimal.status, 201, "{}", minimal.body);
    assert_eq!(minimal.body["settings"]["max_tool_rounds"], 5);
    assert_eq!(minimal.body["workflow_faqs"], json!([]));

    let list = app.get("/v1/agents?limit=1", &s).await;
    assert_eq!(
        list.body["pagination"],
        json!({"total": 2, "limit": 1, "offset": 0})
    );
    assert_eq!(list.body["agents"][0]["name"], "Minimal");

    // PATCH replaces top-level fields and merges settings.
    let patched = app
        .request(
            Method::PATCH,
            &format!("/v1/agents/{id}"),
            &s,
            Some(json!({"name": "Renamed", "settings": {"rag_top_k": 7}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["name"], "Renamed");
    assert_eq!(patched.body["settings"]["rag_top_k"], 7);
    assert_eq!(
        patched.body["settings"]["token_budget"], 4000,
        "other settings kept"
    );
    assert_eq!(patched.body["personality"]["name"], "Friendly Professional");

    let del = app.delete(&format!("/v1/agents/{id}"), &s).await;
    assert_eq!(del.status, 200);
    app.get(&format!("/v1/agents/{id}"), &s)
        .await
        .assert_error(404, "NOT_FOUND");
    app.delete(&format!("/v1/agents/{id}"), &s)
        .await
        .assert_error(404, "NOT_FOUND");
    app.get("/v1/agents/not-a-uuid", &s)
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn templates_and_settings_are_checked_at_save_time(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let bad = app
        .post(
            "/v1/agents",
            &s,
            json!({"name": "x", "system_prompt": "Hello\n{% if customer %}unclosed"}),
        )
        .await;
    bad.assert_error(422, "VALIDATION_ERROR");
    let d = &bad.body["detail"][0];
    assert_eq!(d["loc"], json!(["body", "system_prompt"]));
    assert_eq!(d["type"], "template_error");
    assert!(d["msg"].as_str().unwrap().contains("template error"), "{d}");

    for (settings, field) in [
        (json!({"tier": "turbo"}), "tier"),
        (json!({"temperature": 3.0}), "temperature"),
        (json!({"max_tool_rounds": 6}), "max_tool_rounds"),
        (json!({"cache_threshold": 1.5}), "cache_threshold"),
        (json!({"token_budget": 10}), "token_budget"),
    ] {
        let r = app
            .post("/v1/agents", &s, json!({"name": "x", "settings": settings}))
            .await;
        r.assert_error(422, "VALIDATION_ERROR");
        assert_eq!(
            r.body["detail"][0]["loc"],
            json!(["body", "settings", field]),
            "{}",
            r.body
        );
    }
    let unknown = app
        .post(
            "/v1/agents",
            &s,
            json!({"name": "x", "settings": {"tmperature": 1}}),
        )
        .await;
    unknown.assert_error(422, "VALIDATION_ERROR");
    app.post("/v1/agents", &s, json!({"name": ""}))
        .await
        .assert_error(422, "VALIDATION_ERROR");
    app.post(
        "/v1/agents",
        &s,
        json!({"name": "x", "workflow_faqs": [{"question": "q"}]}),
    )
    .await
    .assert_error(422, "VALIDATION_ERROR");

    // A PATCH with a broken template changes nothing.
    let id = app
        .create_agent(
            &s,
            json!({"name": "ok", "system_prompt": "Hi {{ customer.id }}"}),
        )
        .await;
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/agents/{id}"),
            &s,
            Some(json!({"system_prompt": "{{ oops"})),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    assert_eq!(
        app.get(&format!("/v1/agents/{id}"), &s).await.body["system_prompt"],
        "Hi {{ customer.id }}"
    );
    assert_eq!(
        app.get("/v1/agents", &s).await.body["pagination"]["total"],
        1,
        "no failed create was written"
    );
}

async fn config_endpoint_reflects_updates_at_once(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let id = app.create_agent(&s, full_agent()).await;
    let cfg = app.get(&format!("/v1/agents/{id}/config"), &s).await;
    assert_eq!(cfg.status, 200, "{}", cfg.body);
    for field in [
        "id",
        "company_id",
        "name",
        "personality",
        "dialect",
        "action_definitions",
        "knowledge_source_ids",
        "workflow_faqs",
        "scenarios",
        "settings",
    ] {
        assert!(
            cfg.body.get(field).is_some(),
            "config lacks {field}: {}",
            cfg.body
        );
    }
    assert_eq!(cfg.body["dialect"]["primary_language"], "ar");
    // Cached now; an update must not be hidden by the cache.
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/agents/{id}"),
            &s,
            Some(json!({"dialect": {"name": "Gulf Arabic", "primary_language": "ar"}})),
        )
        .await;
    assert_eq!(r.status, 200);
    let cfg = app.get(&format!("/v1/agents/{id}/config"), &s).await;
    assert_eq!(cfg.body["dialect"]["name"], "Gulf Arabic");
    app.delete(&format!("/v1/agents/{id}"), &s).await;
    app.get(&format!("/v1/agents/{id}/config"), &s)
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn agents_of_other_companies_are_invisible(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let id = app.create_agent(&s, full_agent()).await;
    let (_, other) = app.other_company().await;
    let missing = uuid::Uuid::new_v4();
    for path in [
        format!("/v1/agents/{id}"),
        format!("/v1/agents/{id}/config"),
    ] {
        let cross = app.get(&path, &other).await;
        let none = app
            .get(&path.replace(&id, &missing.to_string()), &other)
            .await;
        assert_eq!(
            cross.assert_error(404, "NOT_FOUND"),
            none.assert_error(404, "NOT_FOUND")
        );
    }
    app.request(
        Method::PATCH,
        &format!("/v1/agents/{id}"),
        &other,
        Some(json!({"name": "pwned"})),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    app.delete(&format!("/v1/agents/{id}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    assert_eq!(
        app.get("/v1/agents", &other).await.body["pagination"]["total"],
        0
    );
    assert_eq!(
        app.get(&format!("/v1/agents/{id}"), &s).await.body["name"],
        "Support Agent"
    );
}

async fn members_use_agents_admins_change_them(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let id = app.create_agent(&s, json!({"name": "A"})).await;
    let key = app
        .create_key(&s, json!({"name": "chat only", "scopes": ["chat"]}))
        .await;
    let key = Auth::ApiKeyHeader(key["key"].as_str().unwrap().into());
    assert_eq!(app.get(&format!("/v1/agents/{id}"), &key).await.status, 200);
    app.post("/v1/agents", &key, json!({"name": "B"}))
        .await
        .assert_error(403, "FORBIDDEN");
    app.delete(&format!("/v1/agents/{id}"), &key)
        .await
        .assert_error(403, "FORBIDDEN");
}
