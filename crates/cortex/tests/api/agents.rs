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
    links_to_another_companys_sources_or_actions_are_refused,
    a_template_that_cannot_render_is_refused_at_save_and_named_at_chat,
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
    let chat_only = app
        .create_key(&s, json!({"name": "chat only", "scopes": ["chat"]}))
        .await;
    let chat_only = Auth::ApiKeyHeader(chat_only["key"].as_str().unwrap().into());
    app.get(&format!("/v1/agents/{id}"), &chat_only)
        .await
        .assert_error(403, "FORBIDDEN");
    let key = app
        .create_key(&s, json!({"name": "reader", "scopes": ["chat", "agents"]}))
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

/// An agent can link only its own company's knowledge sources and actions.
async fn links_to_another_companys_sources_or_actions_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let (_, other) = app.other_company().await;
    let theirs = app
        .post(
            "/v1/knowledge/sources",
            &other,
            json!({"name": "Theirs", "kind": "file"}),
        )
        .await;
    let theirs = theirs.body["id"].as_str().unwrap().to_string();
    let their_action = app
        .post(
            "/v1/actions",
            &other,
            json!({"name": "their_tool", "description": "x", "method": "GET", "webhook_url": "https://example.com/x"}),
        )
        .await;
    assert_eq!(their_action.status, 201, "{}", their_action.body);
    let their_action = their_action.body["id"].as_str().unwrap().to_string();
    let ours = app
        .post(
            "/v1/knowledge/sources",
            &s,
            json!({"name": "Ours", "kind": "file"}),
        )
        .await;
    let ours = ours.body["id"].as_str().unwrap().to_string();

    let r = app
        .post(
            "/v1/agents",
            &s,
            json!({"name": "x", "knowledge_source_ids": [ours, theirs], "action_ids": [their_action]}),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let locs: Vec<_> = r.body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["loc"].clone())
        .collect();
    assert_eq!(
        locs,
        vec![
            json!(["body", "knowledge_source_ids", 1]),
            json!(["body", "action_ids", 0])
        ]
    );
    assert_eq!(
        app.get("/v1/agents", &s).await.body["pagination"]["total"],
        0
    );

    let id = app
        .create_agent(&s, json!({"name": "ok", "knowledge_source_ids": [ours]}))
        .await;
    let r = app
        .request(
            Method::PATCH,
            &format!("/v1/agents/{id}"),
            &s,
            Some(json!({"action_ids": [their_action]})),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let agent = app.get(&format!("/v1/agents/{id}"), &s).await;
    assert_eq!(agent.body["action_ids"], json!([]), "{}", agent.body);
}

/// A template that compiles but fails when rendered is refused at save (at its line); one that
/// fails only on some turn's values answers that chat with the failure named, not an opaque 500.
async fn a_template_that_cannot_render_is_refused_at_save_and_named_at_chat(b: Backend) {
    let fake = cortex_fakellm::FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = crate::helpers::spawn_app_with(b, |c| {
        c.llm = crate::helpers::fake_llm(&url, 0, 5.0);
    })
    .await;
    let s = app.admin().await;
    let r = app
        .post(
            "/v1/agents",
            &s,
            json!({"name": "x", "system_prompt": "Hello\n{{ customer.id | shout }}"}),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let d = &r.body["detail"][0];
    assert_eq!(d["loc"], json!(["body", "system_prompt"]));
    assert_eq!(d["type"], "template_error");
    let msg = d["msg"].as_str().unwrap();
    assert!(msg.contains("shout") && msg.contains("line 2"), "{msg}");

    let id = app
        .create_agent(
            &s,
            json!({"name": "x", "system_prompt": "Hi.{% if channel == 'whatsapp' %}{{ 1 // 0 }}{% endif %}"}),
        )
        .await;
    let company = app.company_id(&s).await;
    let mut body = crate::helpers::TestApp::chat_body(
        &company,
        &id,
        &uuid::Uuid::new_v4().to_string(),
        "hello",
    );
    body["channel"] = json!("whatsapp");
    let r = app.post("/v1/chat", &s, body).await;
    r.assert_error(422, "VALIDATION_ERROR");
    let d = &r.body["detail"][0];
    assert_eq!(d["loc"], json!(["agent", "system_prompt"]));
    let msg = d["msg"].as_str().unwrap();
    assert!(msg.contains("failed to render"), "{msg}");
}
