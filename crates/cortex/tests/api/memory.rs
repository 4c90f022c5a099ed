//! Customer memory (`/v1/memory…`), fact extraction after a turn, and the answer cache
//! management API (`/v1/cache/…`).

use cortex_fakellm::{FakeLlm, Step};
use serde_json::{Value, json};

use crate::helpers::{Auth, Backend, TestApp, eventually, fake_llm, spawn_app, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    facts_are_saved_ranked_recalled_and_deleted,
    memory_is_invisible_to_other_companies_and_validated,
    the_model_extracts_new_facts_after_a_turn,
    the_cache_is_warmed_used_counted_and_flushed,
    a_knowledge_change_drops_the_agents_cached_answers,
    facts_are_ranked_by_meaning_with_the_local_embedder,
);

async fn save(app: &TestApp, s: &Auth, company: &str, customer: &str, body: Value) -> Value {
    let mut body = body;
    body["company_id"] = json!(company);
    let r = app
        .post(&format!("/v1/memory/{customer}/save"), s, body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["saved"], true);
    assert_eq!(r.body["customer_id"], customer);
    r.body
}

async fn facts_are_saved_ranked_recalled_and_deleted(b: Backend) {
    let fake = FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = spawn_app_with(b, |c| c.llm = fake_llm(&url, 0, 5.0)).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    save(
        &app,
        &s,
        &company,
        "cust_9",
        json!({"fact": "Prefers Arabic language", "category": "preference", "confidence": 0.95}),
    )
    .await;
    save(
        &app,
        &s,
        &company,
        "cust_9",
        json!({"fact": "Owns a red bicycle"}),
    )
    .await;
    let last = save(
        &app,
        &s,
        &company,
        "cust_9",
        json!({"fact": "Lives in Cairo", "category": "context"}),
    )
    .await;

    // Newest first without a query; with one, the most relevant first.
    let r = app
        .post("/v1/memory/cust_9", &s, json!({"company_id": company}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["fact_count"], 3);
    assert_eq!(r.body["facts"][0]["fact"], "Lives in Cairo");
    assert_eq!(r.body["facts"][0]["id"], last["fact_id"]);
    assert_eq!(r.body["facts"][1]["category"], "general");
    assert_eq!(r.body["facts"][1]["confidence"], 1.0);
    assert_eq!(r.body["kb_entries"], json!([]));
    let r = app
        .post(
            "/v1/memory/cust_9",
            &s,
            json!({"company_id": company, "query": "which language does the customer prefer"}),
        )
        .await;
    assert_eq!(
        r.body["facts"][0]["fact"], "Prefers Arabic language",
        "{}",
        r.body
    );

    // Stage 02 recalls them: the model sees the facts in its system prompt.
    let agent = app.create_agent(&s, json!({"name": "mem"})).await;
    fake.push(Step::text("Ahlan!"));
    let mut chat = TestApp::chat_body(
        &company,
        &agent,
        &uuid::Uuid::now_v7().to_string(),
        "Hi, what language do I like?",
    );
    chat["customer_id"] = json!("cust_9");
    let r = app.post("/v1/chat", &s, chat).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = serde_json::to_string(&fake.last_request().unwrap().body).unwrap();
    assert!(sent.contains("Prefers Arabic language"), "{sent}");
    // What the customer said shows up among the snippets.
    let r = app
        .post("/v1/memory/cust_9", &s, json!({"company_id": company}))
        .await;
    assert_eq!(
        r.body["knowledge_snippets"][0],
        "Hi, what language do I like?"
    );
    assert_eq!(r.body["knowledge_doc_count"], 1);

    // Delete: once, then 404.
    let id = last["fact_id"].as_str().unwrap();
    let r = app.delete(&format!("/v1/memory/fact/{id}"), &s).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"fact_id": id, "deleted": true}));
    app.delete(&format!("/v1/memory/fact/{id}"), &s)
        .await
        .assert_error(404, "NOT_FOUND");
    let r = app
        .post("/v1/memory/cust_9", &s, json!({"company_id": company}))
        .await;
    assert_eq!(r.body["fact_count"], 2);
}

async fn memory_is_invisible_to_other_companies_and_validated(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let saved = save(
        &app,
        &s,
        &company,
        "cust_1",
        json!({"fact": "Has a premium plan"}),
    )
    .await;
    let (other_company, other) = app.other_company().await;

    // Naming the first company is a 404; its own company sees no facts; deleting is a 404.
    let r = app
        .post("/v1/memory/cust_1", &other, json!({"company_id": company}))
        .await;
    r.assert_error(404, "NOT_FOUND");
    let r = app
        .post(
            "/v1/memory/cust_1",
            &other,
            json!({"company_id": other_company.to_string()}),
        )
        .await;
    assert_eq!(r.body["fact_count"], 0);
    let id = saved["fact_id"].as_str().unwrap();
    app.delete(&format!("/v1/memory/fact/{id}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    let r = app
        .post(
            "/v1/memory/cust_1/save",
            &other,
            json!({"company_id": company, "fact": "intruder"}),
        )
        .await;
    r.assert_error(404, "NOT_FOUND");

    // Validation: category, confidence, empty fact, unknown agent.
    let r = app
        .post(
            "/v1/memory/cust_1/save",
            &s,
            json!({"company_id": company, "fact": "", "category": "gossip", "confidence": 2}),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let locs: Vec<Value> = r.body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["loc"][1].clone())
        .collect();
    assert_eq!(
        locs,
        vec![json!("fact"), json!("category"), json!("confidence")]
    );
    let r = app
        .post(
            "/v1/memory/cust_1/save",
            &s,
            json!({"company_id": company, "fact": "x", "agent_id": uuid::Uuid::now_v7()}),
        )
        .await;
    r.assert_error(404, "NOT_FOUND");
    // A key without the memory scope.
    let key = app.key_with_scopes(&s, &["chat"]).await;
    let r = app
        .post("/v1/memory/cust_1", &key, json!({"company_id": company}))
        .await;
    r.assert_error(403, "FORBIDDEN");
    // Nothing was written by the refused requests.
    let r = app
        .post("/v1/memory/cust_1", &s, json!({"company_id": company}))
        .await;
    assert_eq!(r.body["fact_count"], 1);
}

async fn the_model_extracts_new_facts_after_a_turn(b: Backend) {
    let fake = FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = spawn_app_with(b, |c| {
        c.llm = fake_llm(&url, 0, 5.0);
        c.memory.extract_facts = true;
    })
    .await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app
        .create_agent(
            &s,
            json!({"name": "x", "settings": {"cache_enabled": false}}),
        )
        .await;
    let facts = |list: Value| Step::tool_call("record_customer_facts", json!({"facts": list}));
    fake.push(Step::text("Noted, we will answer in Arabic."));
    fake.push(facts(json!([
        {"fact": "Prefers Arabic", "category": "preference", "confidence": 0.9},
        {"fact": "Maybe likes tea", "category": "preference", "confidence": 0.3}
    ])));
    let conv = uuid::Uuid::now_v7().to_string();
    let r = app
        .post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv, "Please always answer me in Arabic"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let query = json!({"company_id": company});
    let got = eventually(|| async {
        let r = app.post("/v1/memory/cust_1", &s, query.clone()).await;
        (r.body["fact_count"] == 1).then_some(r.body)
    })
    .await;
    assert_eq!(got["facts"][0]["fact"], "Prefers Arabic");
    assert_eq!(got["facts"][0]["category"], "preference");
    // The extraction request forced the structured tool and showed the exchange.
    let req = fake.last_request().unwrap().body;
    assert_eq!(req["tool_choice"], "required", "{req}");
    assert_eq!(req["tools"][0]["function"]["name"], "record_customer_facts");
    assert!(
        req.to_string()
            .contains("Please always answer me in Arabic")
    );

    // Next turn: the model repeats a known fact and adds a new one; only the new one is saved.
    fake.push(Step::text("Of course."));
    fake.push(facts(json!([
        {"fact": "prefers arabic", "category": "preference", "confidence": 0.9},
        {"fact": "Lives in Giza", "category": "context", "confidence": 0.9}
    ])));
    let r = app
        .post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv, "I live in Giza by the way"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = eventually(|| async {
        let r = app.post("/v1/memory/cust_1", &s, query.clone()).await;
        (r.body["fact_count"] == 2).then_some(r.body)
    })
    .await;
    assert_eq!(got["facts"][0]["fact"], "Lives in Giza");
    // The known facts were shown to the model.
    assert!(
        fake.last_request()
            .unwrap()
            .body
            .to_string()
            .contains("Known facts")
    );

    // An agent with memory disabled triggers no extraction.
    let quiet = app
        .create_agent(
            &s,
            json!({"name": "q", "settings": {"memory_enabled": false, "cache_enabled": false}}),
        )
        .await;
    let before = fake.chat_requests().len();
    fake.push(Step::text("ok"));
    app.post(
        "/v1/chat",
        &s,
        TestApp::chat_body(&company, &quiet, &conv, "I also have a dog"),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(fake.chat_requests().len(), before + 1);
}

async fn the_cache_is_warmed_used_counted_and_flushed(b: Backend) {
    let fake = FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let app = spawn_app_with(b, |c| c.llm = fake_llm(&url, 0, 5.0)).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let agent = app.create_agent(&s, json!({"name": "c"})).await;
    let other_agent = app.create_agent(&s, json!({"name": "c2"})).await;
    let r = app
        .post(
            "/v1/cache/warm",
            &s,
            json!({"company_id": company, "agent_id": agent, "pairs": [
                {"question": "What are your business hours?", "answer": "Sunday to Thursday, 9 AM to 6 PM."},
                {"question": "Where are you located?", "answer": "123 Business St, Cairo."},
                {"question": "Broken pair", "answer": "  "}
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"status": "completed", "pairs_stored": 2, "pairs_errored": 1, "pairs_total": 3})
    );
    app.post(
        "/v1/cache/warm",
        &s,
        json!({"company_id": company, "agent_id": other_agent, "pairs": [{"question": "Hi?", "answer": "Hello."}]}),
    )
    .await;

    // A warmed question is answered from the cache without calling the model.
    let conv = uuid::Uuid::now_v7().to_string();
    let r = app
        .post(
            "/v1/chat",
            &s,
            TestApp::chat_body(&company, &agent, &conv, "what are your business hours"),
        )
        .await;
    assert_eq!(r.body["cached"], true, "{}", r.body);
    assert_eq!(r.body["model_used"], "cache");
    assert_eq!(r.body["reply"], "Sunday to Thursday, 9 AM to 6 PM.");
    assert_eq!(fake.chat_requests().len(), 0);

    let stats = app.get("/v1/cache/stats", &s).await.body;
    assert_eq!(stats["num_docs"], 3, "{stats}");
    assert_eq!(stats["index_name"], "cortex_cache");
    assert_eq!(stats["status"], "active");

    // Another company sees none of it and cannot flush it.
    let (_, other) = app.other_company().await;
    assert_eq!(app.get("/v1/cache/stats", &other).await.body["num_docs"], 0);
    app.request(
        reqwest::Method::DELETE,
        &format!("/v1/cache/flush?company_id={company}"),
        &other,
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let r = app
        .post(
            "/v1/cache/warm",
            &other,
            json!({"company_id": company, "agent_id": agent, "pairs": [{"question": "q", "answer": "a"}]}),
        )
        .await;
    r.assert_error(404, "NOT_FOUND");

    // Flush one agent, then the rest.
    let r = app
        .delete(
            &format!("/v1/cache/flush?company_id={company}&agent_id={agent}"),
            &s,
        )
        .await;
    assert_eq!(r.body, json!({"status": "flushed", "entries_deleted": 2}));
    assert_eq!(app.get("/v1/cache/stats", &s).await.body["num_docs"], 1);
    let r = app.delete("/v1/cache/flush", &s).await;
    assert_eq!(r.body["entries_deleted"], 1);

    // Validation and permissions.
    let r = app
        .post(
            "/v1/cache/warm",
            &s,
            json!({"company_id": company, "agent_id": agent, "pairs": []}),
        )
        .await;
    r.assert_error(422, "VALIDATION_ERROR");
    let key = app.key_with_scopes(&s, &["chat"]).await;
    app.delete("/v1/cache/flush", &key)
        .await
        .assert_error(403, "FORBIDDEN");
}

async fn a_knowledge_change_drops_the_agents_cached_answers(b: Backend) {
    let app = spawn_app(b).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let r = app
        .post(
            "/v1/knowledge/sources",
            &s,
            json!({"name": "faq", "kind": "file"}),
        )
        .await;
    let source = r.body["id"].as_str().unwrap().to_string();
    let linked = app
        .create_agent(
            &s,
            json!({"name": "linked", "knowledge_source_ids": [source]}),
        )
        .await;
    let unlinked = app.create_agent(&s, json!({"name": "unlinked"})).await;
    for agent in [&linked, &unlinked] {
        let r = app
            .post(
                "/v1/cache/warm",
                &s,
                json!({"company_id": company, "agent_id": agent, "pairs": [{"question": "Opening hours?", "answer": "9 to 5."}]}),
            )
            .await;
        assert_eq!(r.body["pairs_stored"], 1, "{}", r.body);
    }
    let r = crate::knowledge::upload_as(
        &app,
        &s,
        &source,
        "hours.md",
        b"# Hours\n\nWe now open from 8 AM to 8 PM every day.\n",
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Only the agent that searches the source lost its cached answer.
    assert_eq!(app.get("/v1/cache/stats", &s).await.body["num_docs"], 1);
    let r = app
        .delete(&format!("/v1/cache/flush?agent_id={unlinked}"), &s)
        .await;
    assert_eq!(r.body["entries_deleted"], 1);
}

/// The customer's facts for `query`, best first.
async fn ranked(
    app: &TestApp,
    s: &Auth,
    company: &str,
    customer: &str,
    query: &str,
) -> Vec<String> {
    let r = app
        .post(
            &format!("/v1/memory/{customer}"),
            s,
            json!({"company_id": company, "query": query}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fact"].as_str().unwrap().to_owned())
        .collect()
}

fn local_app_config(dir: &str) -> impl FnOnce(&mut cortex::config::Config) + '_ {
    move |c| {
        crate::knowledge::local_config(c, dir);
        c.embeddings.default = Some("local".into());
        c.limits.company_requests = 0;
    }
}

async fn facts_are_ranked_by_meaning_with_the_local_embedder(b: Backend) {
    let Some(dir) = crate::knowledge::minilm_dir() else {
        return;
    };
    let app = spawn_app_with(b, local_app_config(&dir)).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    for fact in [
        "Is allergic to peanuts",
        "Lives in Jeddah",
        "Prefers to be contacted by WhatsApp",
        "Drives a Toyota Camry",
    ] {
        save(&app, &s, &company, "cust_m", json!({"fact": fact})).await;
    }
    // No word in common with the fact that answers each question.
    let top = ranked(
        &app,
        &s,
        &company,
        "cust_m",
        "Can you suggest a snack for my flight?",
    )
    .await;
    assert_eq!(top[0], "Is allergic to peanuts", "{top:?}");
    let top = ranked(
        &app,
        &s,
        &company,
        "cust_m",
        "What's the best way to reach me with updates?",
    )
    .await;
    assert_eq!(top[0], "Prefers to be contacted by WhatsApp", "{top:?}");
    let top = ranked(
        &app,
        &s,
        &company,
        "cust_m",
        "How long does delivery to my city take?",
    )
    .await;
    assert_eq!(top[0], "Lives in Jeddah", "{top:?}");
    // Facts are stored with their embedding.
    let pool = app.raw_db().await;
    let models: Vec<Option<String>> =
        sqlx::query_scalar("SELECT model_id FROM memory_facts WHERE customer_id = 'cust_m'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        models
            .iter()
            .all(|m| m.as_deref() == Some("local:all-MiniLM-L6-v2")),
        "{models:?}"
    );
}

/// recall@5 on the labelled set (`tests/fixtures/memory_recall.json`: customers' facts in
/// English and Arabic, and messages with the facts a good agent would recall).
async fn recall_at_5(app: &TestApp) -> (f64, f64, f64) {
    let set: Value = serde_json::from_str(include_str!("../fixtures/memory_recall.json")).unwrap();
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    let (mut all, mut en, mut ar) = ((0u32, 0u32), (0u32, 0u32), (0u32, 0u32));
    for customer in set["customers"].as_array().unwrap() {
        let id = format!("eval-{}", customer["id"].as_str().unwrap());
        let facts: Vec<&str> = customer["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["fact"].as_str().unwrap())
            .collect();
        for (f, fact) in customer["facts"].as_array().unwrap().iter().zip(&facts) {
            save(
                app,
                &s,
                &company,
                &id,
                json!({"fact": fact, "category": f["category"]}),
            )
            .await;
        }
        for q in customer["questions"].as_array().unwrap() {
            let top = ranked(app, &s, &company, &id, q["text"].as_str().unwrap()).await;
            let top5: Vec<&String> = top.iter().take(5).collect();
            for r in q["relevant"].as_array().unwrap() {
                let wanted = facts[r.as_u64().unwrap() as usize];
                let found = u32::from(top5.iter().any(|t| t.as_str() == wanted));
                let lang = if customer["lang"] == "ar" {
                    &mut ar
                } else {
                    &mut en
                };
                for acc in [&mut all, lang] {
                    acc.0 += found;
                    acc.1 += 1;
                }
            }
        }
    }
    let rate = |(n, d): (u32, u32)| f64::from(n) / f64::from(d.max(1));
    (rate(all), rate(en), rate(ar))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_recall_at_5_on_the_labelled_set() {
    let unlimited = |c: &mut cortex::config::Config| c.limits.company_requests = 0;
    let hash = recall_at_5(&spawn_app_with(Backend::Sqlite, unlimited).await).await;
    println!(
        "memory recall@5, hash: all {:.3}, en {:.3}, ar {:.3}",
        hash.0, hash.1, hash.2
    );
    let Some(dir) = crate::knowledge::minilm_dir() else {
        return;
    };
    let local = recall_at_5(&spawn_app_with(Backend::Sqlite, local_app_config(&dir)).await).await;
    println!(
        "memory recall@5, local: all {:.3}, en {:.3}, ar {:.3}",
        local.0, local.1, local.2
    );
    // By meaning, English recall is better than by words.
    assert!(local.1 > hash.1, "local {local:?} vs hash {hash:?}");
    let Some(dir) = crate::knowledge::e5_dir() else {
        return;
    };
    let multilingual = recall_at_5(
        &spawn_app_with(Backend::Sqlite, |c| {
            crate::knowledge::e5_config(c, &dir);
            c.limits.company_requests = 0;
        })
        .await,
    )
    .await;
    println!(
        "memory recall@5, multilingual-e5-small: all {:.3}, en {:.3}, ar {:.3}",
        multilingual.0, multilingual.1, multilingual.2
    );
    // With a multilingual model, Arabic is recalled by meaning as English is.
    assert!(
        multilingual.2 > hash.2 && multilingual.1 > hash.1,
        "multilingual {multilingual:?} vs hash {hash:?}"
    );
}

/// Two reads of every chat — the customer's newest facts and the cache's exact question — come
/// from their index in the order they ask for: no sort of every fact (vectors included) before
/// the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_reads_of_facts_and_cached_questions_need_no_sort() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let db = app.raw_db().await;
    for sql in [
        "EXPLAIN QUERY PLAN SELECT id, fact, category, confidence, agent_id, model_id, vector FROM memory_facts \
         WHERE company_id = 'c' AND customer_id = 'u' AND (agent_id IS NULL OR agent_id = 'a') \
         ORDER BY created_at DESC, id DESC LIMIT 200",
        "EXPLAIN QUERY PLAN SELECT id, answer FROM cache_entries WHERE company_id = 'c' AND agent_id = 'a' \
         AND normalized = 'q' AND expires_at > '2026' ORDER BY created_at DESC LIMIT 1",
    ] {
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sql).fetch_all(&db).await.unwrap();
        let plan: Vec<String> = rows.into_iter().map(|r| r.3).collect();
        let plan = plan.join("\n");
        assert!(plan.contains("USING INDEX"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
    }
}
