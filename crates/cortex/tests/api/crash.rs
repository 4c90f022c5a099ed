//! `kill -9` under load: the real server process is killed five times while chats and document
//! uploads are in flight, and restarted on the same data each time. Nothing acknowledged is lost,
//! no turn is stored by halves, the database checks clean and no document stays `processing`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cortex_fakellm::FakeLlm;
use serde_json::{Value, json};

use crate::helpers::{Backend, NodeClient};
use crate::on_every_backend;
use crate::runs::{spawn_node, wait_healthy, write_node_config};

on_every_backend!(five_kills_under_chat_and_ingestion_load_lose_nothing_acknowledged);

const KILLS: usize = 5;

async fn five_kills_under_chat_and_ingestion_load_lose_nothing_acknowledged(b: Backend) {
    let fake = FakeLlm::start().await;
    fake.set_default_latency(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let db = match b {
        Backend::Sqlite => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("cortex.db").display()
        ),
        Backend::Postgres => crate::helpers::fresh_postgres_schema().await,
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A short lease, so what a killed process left `processing` is failed within seconds.
    let config = write_node_config(
        dir.path(),
        port,
        Some(&db),
        &fake,
        "[knowledge]\ningestion_lease_seconds = 2\n",
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut child = spawn_node(&config);
    wait_healthy(&client, &base).await;
    let node = NodeClient::sign_in(client.clone(), base.clone()).await;
    let token = node.token.clone();
    let company = node.get("/v1/me").await["company_id"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = node
        .post(
            "/v1/agents",
            json!({"name": "Crash", "settings": {"cache_enabled": false, "memory_enabled": false}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let source = node
        .post(
            "/v1/knowledge/sources",
            json!({"name": "Handbook", "kind": "file"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let acknowledged_chats: Arc<Mutex<Vec<String>>> = Arc::default();
    let acknowledged_docs: Arc<Mutex<Vec<String>>> = Arc::default();
    let page: String = (0..400)
        .map(|i| {
            format!("## Section {i}\n\nThe valve number {i} opens at dawn and closes at dusk.\n\n")
        })
        .collect();
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let mut load = Vec::new();
        for worker in 0..6 {
            let (client, base, token, company, agent, stop, acked) = (
                client.clone(),
                base.clone(),
                token.clone(),
                company.clone(),
                agent.clone(),
                stop.clone(),
                acknowledged_chats.clone(),
            );
            load.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let conversation = uuid::Uuid::new_v4().to_string();
                    let sent = client
                        .post(format!("{base}/v1/chat"))
                        .bearer_auth(&token)
                        .json(&json!({"company_id": company, "agent_id": agent, "conversation_id": conversation,
                                      "customer_id": format!("c-{worker}"), "message": format!("question {round}.{worker}.{n}")}))
                        .send()
                        .await;
                    if let Ok(r) = sent
                        && r.status() == 200
                        && r.bytes().await.is_ok()
                    {
                        acked.lock().unwrap().push(conversation);
                    }
                }
            }));
        }
        for worker in 0..2 {
            let (client, base, token, source, stop, acked, page) = (
                client.clone(),
                base.clone(),
                token.clone(),
                source.clone(),
                stop.clone(),
                acknowledged_docs.clone(),
                page.clone(),
            );
            load.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("r{round}-w{worker}-{n}.md");
                    let form = reqwest::multipart::Form::new()
                        .text("source_id", source.clone())
                        .part(
                            "file",
                            reqwest::multipart::Part::bytes(page.clone().into_bytes())
                                .file_name(name.clone()),
                        );
                    let sent = client
                        .post(format!("{base}/v1/knowledge/upload"))
                        .bearer_auth(&token)
                        .multipart(form)
                        .send()
                        .await;
                    if let Ok(r) = sent
                        && r.status() == 200
                    {
                        acked.lock().unwrap().push(name);
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.unwrap();
        }
        child = spawn_node(&config);
        wait_healthy(&client, &base).await;
    }

    let chats = acknowledged_chats.lock().unwrap().clone();
    let docs = acknowledged_docs.lock().unwrap().clone();
    assert!(
        chats.len() >= KILLS,
        "the load ran: {} chats acknowledged",
        chats.len()
    );

    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db)
        .await
        .unwrap();
    if b == Backend::Sqlite {
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(check, "ok");
    }
    // Every turn is whole: as many answers as questions in each conversation, one usage row each.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT conversation_id, SUM(CASE WHEN role = 'user' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN role = 'assistant' THEN 1 ELSE 0 END) FROM conversation_messages GROUP BY conversation_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let half: Vec<_> = rows.iter().filter(|(_, q, a)| q != a).collect();
    assert!(half.is_empty(), "half turns: {half:?}");
    let usage: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let answers: i64 = rows.iter().map(|(_, _, a)| a).sum();
    assert_eq!(usage, answers, "one usage row per stored turn");
    // Every acknowledged turn survived.
    let stored: std::collections::HashSet<&str> = rows.iter().map(|(c, _, _)| c.as_str()).collect();
    let lost: Vec<_> = chats
        .iter()
        .filter(|c| !stored.contains(c.as_str()))
        .collect();
    assert!(lost.is_empty(), "{} acknowledged turns lost", lost.len());
    pool.close().await;

    // No document stays `processing`; every acknowledged upload is there, completed.
    let documents = crate::helpers::eventually(|| {
        let (client, base, token, source) =
            (client.clone(), base.clone(), token.clone(), source.clone());
        async move {
            let r: Value = client
                .get(format!(
                    "{base}/v1/knowledge/sources/{source}/documents?limit=200"
                ))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let items = r["documents"].as_array()?.clone();
            items
                .iter()
                .all(|d| d["status"] != "processing")
                .then_some(items)
        }
    })
    .await;
    for name in &docs {
        let doc = documents
            .iter()
            .find(|d| d["name"] == name.as_str())
            .unwrap_or_else(|| panic!("acknowledged upload {name} is missing"));
        assert_eq!(doc["status"], "completed", "{doc}");
    }
    let source_view = node.get(&format!("/v1/knowledge/sources/{source}")).await;
    assert_ne!(source_view["status"], "processing", "{source_view}");
    let interrupted = documents
        .iter()
        .filter(|d| {
            d["error"]
                .as_str()
                .is_some_and(|e| e.contains("interrupted"))
        })
        .count();
    eprintln!(
        "crash test ({b:?}): {KILLS} kills; {} chats acknowledged, {} turns stored, 0 half; {} uploads acknowledged, {} documents, {interrupted} failed as interrupted, 0 processing",
        chats.len(),
        answers,
        docs.len(),
        documents.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
