//! `/v1/knowledge/…` end to end: real fixture documents (made by pandoc and LibreOffice, in
//! `crates/cortex-ingest/tests/fixtures`) converted by the real worker subcommand, embedded,
//! stored and searched on SQLite (embedded index) and PostgreSQL (pgvector).

use std::path::PathBuf;

use cortex::store::KnowledgeStore;
use cortex_fakellm::{FakeLlm, Step};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Auth, Backend, Resp, TestApp, fake_llm, spawn_app_with};
use crate::on_every_backend;

on_every_backend!(
    sources_crud_and_other_companies_get_404,
    every_fixture_format_is_ingested_by_upload_and_by_path,
    paths_outside_the_upload_directory_are_refused,
    unknown_embedding_model_is_400_naming_the_configured_ones,
    failed_conversion_keeps_the_previous_chunks,
    deleting_a_source_removes_chunks_and_vectors,
    url_ingestion_goes_through_the_network_guard,
    reembed_switches_the_model,
    exact_codes_are_found_by_keyword_scoring,
    a_term_in_no_chunk_is_searched_once_a_document_brings_it,
    keyword_search_uses_the_full_text_index_among_50000_chunks,
    agent_documents_are_embedded_and_linked,
    chat_stage_03_retrieves_ingested_chunks,
    local_embedder_end_to_end,
    recall_at_5_per_embedder,
    uploads_over_the_limit_are_413,
    sources_hold_many_documents,
    a_failed_document_fails_the_source_until_replaced_or_deleted,
    old_sources_migrate_to_one_document_each,
    an_ingestion_cut_off_by_a_stop_is_failed_at_start_up,
    a_small_source_is_searched_from_memory_and_sees_every_change,
);

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../cortex-ingest/tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// The all-MiniLM-L6-v2 directory, or `None` when local-embedder tests are explicitly skipped.
pub(crate) fn minilm_dir() -> Option<String> {
    model_dir("CORTEX_TEST_MINILM_DIR", "scripts/minilm-dir.sh")
}

/// The multilingual-e5-small weights (`scripts/e5-dir.sh`), or `None` when the local embedder
/// tests are skipped.
pub(crate) fn e5_dir() -> Option<String> {
    model_dir("CORTEX_TEST_E5_DIR", "scripts/e5-dir.sh")
}

/// The model directory named by the environment variable `var` (which `script` prints), or
/// `None` when `CORTEX_SKIP_LOCAL_EMBED=1`; unset otherwise is a failure, not a silent skip.
fn model_dir(var: &str, script: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(dir) if !dir.is_empty() => Some(dir),
        _ if std::env::var("CORTEX_SKIP_LOCAL_EMBED").as_deref() == Ok("1") => None,
        _ => panic!(
            "{var} is not set: export {var}=\"$({script})\" \
             (or CORTEX_SKIP_LOCAL_EMBED=1 to skip the local embedder tests)"
        ),
    }
}

/// A configuration whose default embedder is multilingual-e5-small (`local`, every text
/// prefixed with `query: ` as the E5 models are trained).
pub(crate) fn e5_config(c: &mut cortex::config::Config, dir: &str) {
    c.embeddings = serde_json::from_value(json!({
        "models": {"multilingual": {"kind": "local", "path": dir, "prefix": "query: "}},
        "default": "multilingual"
    }))
    .unwrap();
}

struct Kb {
    app: TestApp,
    s: Auth,
    company: String,
}

async fn kb(b: Backend) -> Kb {
    kb_with(b, |_| {}).await
}

async fn kb_with(b: Backend, tweak: impl FnOnce(&mut cortex::config::Config)) -> Kb {
    let app = spawn_app_with(b, tweak).await;
    let s = app.admin().await;
    let company = app.company_id(&s).await;
    Kb { app, s, company }
}

impl Kb {
    async fn source(&self, name: &str) -> String {
        let r = self
            .app
            .post(
                "/v1/knowledge/sources",
                &self.s,
                json!({"name": name, "kind": "file"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["status"], "pending");
        r.body["id"].as_str().unwrap().to_string()
    }

    async fn upload(
        &self,
        source: &str,
        file_name: &str,
        bytes: &[u8],
        model: Option<&str>,
    ) -> Resp {
        upload_as(&self.app, &self.s, source, file_name, bytes, model).await
    }

    /// Copies a file into the company's upload directory and ingests it by path.
    async fn ingest_path(&self, source: &str, file_name: &str, bytes: &[u8]) -> Resp {
        let dir = self
            .app
            .state
            .config
            .data_dir
            .join("uploads")
            .join(&self.company);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file_name), bytes).unwrap();
        self.app
            .post(
                "/v1/knowledge/ingest/file",
                &self.s,
                json!({"source_id": source, "file_path": file_name, "user_id": "u1"}),
            )
            .await
    }

    async fn search(&self, sources: &[&str], query: &str, top_k: usize) -> Vec<Value> {
        let r = self
            .app
            .post(
                "/v1/knowledge/search",
                &self.s,
                json!({"source_ids": sources, "query": query, "top_k": top_k}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["results"].as_array().unwrap().clone()
    }

    async fn delete_document(&self, source: &str, document: &str) -> Resp {
        self.app
            .delete(
                &format!("/v1/knowledge/sources/{source}/documents/{document}"),
                &self.s,
            )
            .await
    }

    async fn get_source(&self, id: &str) -> Value {
        let r = self
            .app
            .get(&format!("/v1/knowledge/sources/{id}"), &self.s)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    async fn chunk_rows(&self, source: &str) -> i64 {
        let pool = self.app.raw_db().await;
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM knowledge_chunks WHERE source_id = $1")
                .bind(source)
                .fetch_one(&pool)
                .await
                .unwrap();
        pool.close().await;
        n
    }
}

pub(crate) async fn upload_as(
    app: &TestApp,
    auth: &Auth,
    source: &str,
    file_name: &str,
    bytes: &[u8],
    model: Option<&str>,
) -> Resp {
    let boundary = format!("cortex-test-{}", Uuid::new_v4().simple());
    let mut body = Vec::new();
    let mut text_field = |name: &str, value: &str| {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    };
    text_field("source_id", source);
    if let Some(m) = model {
        text_field("embedding_model", m);
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    // The `local` embedder runs unoptimised in test builds: give uploads time.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .unwrap();
    let mut rb = client
        .post(format!("{}/v1/knowledge/upload", app.base))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body);
    rb = match auth {
        Auth::Bearer(t) => rb.bearer_auth(t),
        Auth::ApiKeyHeader(k) => rb.header("x-api-key", k),
        Auth::None => rb,
    };
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Resp {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn assert_completed(r: &Resp, source: &str) -> u64 {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["source_id"], source);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["error"], Value::Null);
    let created = r.body["chunks_created"].as_u64().unwrap();
    assert!(created > 0, "{}", r.body);
    assert_eq!(r.body["chunks_embedded"].as_u64().unwrap(), created);
    created
}

fn contents(hits: &[Value]) -> String {
    hits.iter()
        .map(|h| h["content"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

async fn sources_crud_and_other_companies_get_404(b: Backend) {
    let k = kb(b).await;
    let id = k.source("Handbook").await;
    let got = k.get_source(&id).await;
    assert_eq!(got["name"], "Handbook");
    assert_eq!(got["kind"], "file");
    assert_eq!(got["chunk_count"], 0);
    assert_eq!(got["embedding_model"], Value::Null);
    assert_eq!(got["error"], Value::Null);
    let r = k.upload(&id, "guide.md", &fixture("guide.md"), None).await;
    let created = assert_completed(&r, &id);
    let got = k.get_source(&id).await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["chunk_count"].as_u64(), Some(created));
    assert_eq!(got["embedding_model"], "hash");
    assert_eq!(got["model_id"], "hash-384");
    assert_eq!(got["dimension"], 384);
    let list = k.app.get("/v1/knowledge/sources?limit=10", &k.s).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["pagination"]["total"], 1);
    assert_eq!(list.body["sources"][0]["id"], id.as_str());
    let bad = k
        .app
        .post(
            "/v1/knowledge/sources",
            &k.s,
            json!({"name": "x", "kind": "ftp"}),
        )
        .await;
    bad.assert_error(422, "VALIDATION_ERROR");
    // A key without the knowledge scope does not see it; with it (and without `admin`) it reads
    // and searches, but does not change knowledge.
    let chat_only = k.app.key_with_scopes(&k.s, &["chat"]).await;
    k.app
        .get(&format!("/v1/knowledge/sources/{id}"), &chat_only)
        .await
        .assert_error(403, "FORBIDDEN");
    let key = k
        .app
        .create_key(&k.s, json!({"name": "reader", "scopes": ["knowledge"]}))
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let reader = Auth::ApiKeyHeader(key);
    k.app
        .post("/v1/knowledge/sources", &reader, json!({"name": "x"}))
        .await
        .assert_error(403, "FORBIDDEN");
    k.app
        .delete(&format!("/v1/knowledge/sources/{id}"), &reader)
        .await
        .assert_error(403, "FORBIDDEN");
    let read = k
        .app
        .get(&format!("/v1/knowledge/sources/{id}"), &reader)
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let found = k
        .app
        .post(
            "/v1/knowledge/search",
            &reader,
            json!({"source_ids": [id], "query": "aurora", "top_k": 1}),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.body);

    // Another company sees nothing of it, exactly as if it did not exist.
    let (_, other) = k.app.other_company().await;
    let missing = k
        .app
        .get(&format!("/v1/knowledge/sources/{}", Uuid::new_v4()), &other)
        .await;
    let theirs = k
        .app
        .get(&format!("/v1/knowledge/sources/{id}"), &other)
        .await;
    theirs.assert_error(404, "NOT_FOUND");
    assert_eq!(theirs.body, missing.body);
    k.app
        .delete(&format!("/v1/knowledge/sources/{id}"), &other)
        .await
        .assert_error(404, "NOT_FOUND");
    upload_as(&k.app, &other, &id, "guide.md", &fixture("guide.md"), None)
        .await
        .assert_error(404, "NOT_FOUND");
    k.app
        .post(
            "/v1/knowledge/search",
            &other,
            json!({"source_ids": [id], "query": "aurora", "top_k": 3}),
        )
        .await
        .assert_error(404, "NOT_FOUND");
    for (path, body) in [
        ("/v1/knowledge/reembed", json!({"source_id": id})),
        (
            "/v1/knowledge/ingest/url",
            json!({"source_id": id, "url": "https://example.com", "user_id": "u"}),
        ),
        (
            "/v1/knowledge/ingest/file",
            json!({"source_id": id, "file_path": "guide.md", "user_id": "u"}),
        ),
    ] {
        k.app
            .post(path, &other, body)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let list = k.app.get("/v1/knowledge/sources", &other).await;
    assert_eq!(list.body["pagination"]["total"], 0);
    // Still intact for its owner.
    assert_eq!(
        k.get_source(&id).await["chunk_count"].as_u64(),
        Some(created)
    );
}

/// Each fixture with words that must be found after conversion, chunking and embedding.
const FIXTURES: &[(&str, &str, &[&str])] = &[
    (
        "guide.pdf",
        "aurora keyword installation",
        &["aurora", "borealis"],
    ),
    (
        "guide.docx",
        "aurora keyword installation",
        &["aurora", "Chunk budget"],
    ),
    ("guide-lo.docx", "aurora keyword installation", &["aurora"]),
    ("slides.pptx", "nebula project spring", &["nebula", "North"]),
    ("slides-lo.pptx", "nebula project spring", &["nebula"]),
    ("budget.xlsx", "Licenses Finance", &["Licenses", "Finance"]),
    ("budget.xls", "Licenses Finance", &["Licenses"]),
    ("budget.ods", "Licenses Finance", &["Licenses"]),
    (
        "budget.csv",
        "Travel conferences Sales",
        &["Travel, conferences", "850"],
    ),
    ("guide.html", "aurora keyword installation", &["aurora"]),
    ("article.html", "How embeddings work cosine", &["cosine"]),
    (
        "guide.md",
        "Limits overlap shared tokens",
        &["| overlap | 64 |"],
    ),
    ("guide.txt", "aurora keyword", &["aurora"]),
];

async fn every_fixture_format_is_ingested_by_upload_and_by_path(b: Backend) {
    let k = kb(b).await;
    for (name, query, needles) in FIXTURES {
        let bytes = fixture(name);
        let by_upload = k.source(&format!("upload {name}")).await;
        let r = k.upload(&by_upload, name, &bytes, None).await;
        let created = assert_completed(&r, &by_upload);
        let stored = r.body["file_path"].as_str().unwrap();
        assert!(std::path::Path::new(stored).is_file(), "{stored}");
        assert_eq!(k.chunk_rows(&by_upload).await, created as i64, "{name}");

        let by_path = k.source(&format!("path {name}")).await;
        let r = k.ingest_path(&by_path, name, &bytes).await;
        assert_eq!(assert_completed(&r, &by_path), created, "{name}");

        for source in [&by_upload, &by_path] {
            let hits = k.search(&[source], query, 5).await;
            let text = contents(&hits);
            for needle in *needles {
                assert!(
                    text.contains(needle),
                    "{name}: {needle:?} not found in:\n{text}"
                );
            }
            assert!(hits[0]["score"].as_f64().unwrap() > 0.0);
            assert_eq!(hits[0]["model_id"], "hash-384");
        }
    }
    // Tables keep their structure: the spreadsheet row is a Markdown table row with its header.
    let source = k.source("table").await;
    k.upload(&source, "budget.xlsx", &fixture("budget.xlsx"), None)
        .await;
    let hits = k.search(&[&source], "Servers", 1).await;
    let top = hits[0]["content"].as_str().unwrap();
    assert!(
        top.contains("| Item |") && top.contains("| Servers |"),
        "{top}"
    );
    // PDF pages are kept per chunk.
    let pdf = k.source("pdf").await;
    k.upload(&pdf, "guide.pdf", &fixture("guide.pdf"), None)
        .await;
    let hits = k.search(&[&pdf], "borealis", 1).await;
    assert_eq!(hits[0]["page"], 2, "{}", hits[0]);
}

async fn paths_outside_the_upload_directory_are_refused(b: Backend) {
    let k = kb(b).await;
    let source = k.source("s").await;
    let data_dir = k.app.state.config.data_dir.clone();
    std::fs::write(
        data_dir.join("secret.md"),
        "# Secret\n\nThe vault code is 4242.",
    )
    .unwrap();
    let upload_dir = data_dir.join("uploads").join(&k.company);
    std::fs::create_dir_all(&upload_dir).unwrap();
    std::os::unix::fs::symlink(data_dir.join("secret.md"), upload_dir.join("link.md")).unwrap();
    let absolute = data_dir.join("secret.md").display().to_string();
    for path in [
        "../../secret.md",
        "../../cortex.db",
        absolute.as_str(),
        "/etc/passwd",
        "link.md",
        "nested/../../../secret.md",
    ] {
        let r = k
            .app
            .post(
                "/v1/knowledge/ingest/file",
                &k.s,
                json!({"source_id": source, "file_path": path, "user_id": "u"}),
            )
            .await;
        let msg = r.assert_error(400, "BAD_REQUEST");
        assert!(msg.contains("upload directory"), "{path}: {msg}");
    }
    // Another company's upload directory is outside this company's.
    let (other_company, _) = k.app.other_company().await;
    let theirs = data_dir.join("uploads").join(other_company.to_string());
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("t.md"), "# Theirs\n\nprivate").unwrap();
    let r = k
        .app
        .post(
            "/v1/knowledge/ingest/file",
            &k.s,
            json!({"source_id": source, "file_path": format!("../{other_company}/t.md"), "user_id": "u"}),
        )
        .await;
    r.assert_error(400, "BAD_REQUEST");
    // Nothing was touched.
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "pending");
    assert_eq!(got["chunk_count"], 0);
    // And a file that is inside is fine, also by absolute path.
    std::fs::write(
        upload_dir.join("ok.md"),
        "# Fine\n\nInside the upload directory.",
    )
    .unwrap();
    let r = k
        .app
        .post(
            "/v1/knowledge/ingest/file",
            &k.s,
            json!({"source_id": source, "file_path": upload_dir.join("ok.md"), "user_id": "u"}),
        )
        .await;
    assert_completed(&r, &source);
}

async fn unknown_embedding_model_is_400_naming_the_configured_ones(b: Backend) {
    let k = kb(b).await;
    let source = k.source("s").await;
    let r = k
        .upload(&source, "guide.md", &fixture("guide.md"), Some("cohere"))
        .await;
    let msg = r.assert_error(400, "BAD_REQUEST");
    assert!(
        msg.contains("cohere") && msg.contains("bge-m3") && msg.contains("hash"),
        "{msg}"
    );
    let r = k
        .app
        .post(
            "/v1/knowledge/ingest/file",
            &k.s,
            json!({"source_id": source, "file_path": "x.md", "user_id": "u", "embedding_model": "openai"}),
        )
        .await;
    let msg = r.assert_error(400, "BAD_REQUEST");
    assert!(msg.contains("configured: bge-m3, hash"), "{msg}");
    let r = k
        .app
        .post(
            "/v1/knowledge/reembed",
            &k.s,
            json!({"source_id": source, "embedding_model": "nope"}),
        )
        .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(k.get_source(&source).await["status"], "pending");
    // The documents' default name is an alias of the default model.
    let r = k
        .upload(&source, "guide.md", &fixture("guide.md"), Some("bge-m3"))
        .await;
    assert_completed(&r, &source);
    let got = k.get_source(&source).await;
    assert_eq!(got["embedding_model"], "hash");
    assert_eq!(got["model_id"], "hash-384");
}

async fn failed_conversion_keeps_the_previous_chunks(b: Backend) {
    let k = kb(b).await;
    let source = k.source("s").await;
    let created = assert_completed(
        &k.upload(&source, "guide.md", &fixture("guide.md"), None)
            .await,
        &source,
    );
    // A PDF whose body is garbage: the worker reports a parse error (or dies), never the server.
    let mut corrupt = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\n".to_vec();
    corrupt.extend(std::iter::repeat_n(0xA5u8, 4096));
    let r = k.upload(&source, "broken.pdf", &corrupt, None).await;
    r.assert_error(500, "INTERNAL_ERROR");
    assert_eq!(r.body["detail"], "Internal server error");
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "failed");
    let error = got["error"].as_str().unwrap();
    assert!(error.contains("broken.pdf"), "{error}");
    // The previous chunks are untouched and still searchable.
    assert_eq!(got["chunk_count"].as_u64(), Some(created));
    assert_eq!(k.chunk_rows(&source).await, created as i64);
    let hits = k.search(&[&source], "aurora keyword", 3).await;
    assert!(contents(&hits).contains("aurora"));
    // The server is fine: the next good ingestion works; the failed document keeps the
    // source failed until it is deleted (or replaced).
    let r = k
        .upload(&source, "guide.txt", &fixture("guide.txt"), None)
        .await;
    assert_completed(&r, &source);
    assert_eq!(k.get_source(&source).await["status"], "failed");
    let broken = &k.document_map(&source).await["broken.pdf"];
    let r = k
        .app
        .delete(
            &format!(
                "/v1/knowledge/sources/{source}/documents/{}",
                broken["id"].as_str().unwrap()
            ),
            &k.s,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["error"], Value::Null);
    // A file type that is not supported is the client's mistake.
    let r = k
        .upload(&source, "image.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", None)
        .await;
    r.assert_error(400, "BAD_REQUEST");
}

async fn deleting_a_source_removes_chunks_and_vectors(b: Backend) {
    let k = kb(b).await;
    let keep = k.source("keep").await;
    let gone = k.source("gone").await;
    assert_completed(
        &k.upload(&keep, "guide.txt", &fixture("guide.txt"), None)
            .await,
        &keep,
    );
    assert_completed(
        &k.upload(&gone, "slides.pptx", &fixture("slides.pptx"), None)
            .await,
        &gone,
    );
    let agent = k
        .app
        .create_agent(
            &k.s,
            json!({"name": "A", "system_prompt": "Hi", "knowledge_source_ids": [keep, gone]}),
        )
        .await;
    let company = Uuid::parse_str(&k.company).unwrap();
    let gone_id = Uuid::parse_str(&gone).unwrap();
    let search_agent = |q: &'static str| {
        let app = &k.app;
        let s = &k.s;
        let agent = agent.clone();
        async move {
            let r = app
                .post(
                    "/v1/knowledge/search",
                    s,
                    json!({"agent_id": agent, "query": q, "top_k": 10}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body["results"].as_array().unwrap().clone()
        }
    };
    let before = search_agent("nebula project").await;
    assert!(before.iter().any(|h| h["source_id"] == gone.as_str()));
    if b == Backend::Sqlite {
        assert!(k.app.state.knowledge.index_len(company, gone_id).unwrap() > 0);
    }
    let r = k
        .app
        .delete(&format!("/v1/knowledge/sources/{gone}"), &k.s)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["deleted"], true);
    // Rows (and pgvector embeddings with them), the index entries, the source: all gone.
    assert_eq!(k.chunk_rows(&gone).await, 0);
    assert_eq!(k.app.state.knowledge.index_len(company, gone_id), None);
    let vectors_dir = k.app.state.config.data_dir.join("vectors");
    if let Ok(entries) = std::fs::read_dir(&vectors_dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(
                !n.contains(&gone.replace('-', "")) && !n.contains(&gone),
                "{n}"
            );
        }
    }
    k.app
        .get(&format!("/v1/knowledge/sources/{gone}"), &k.s)
        .await
        .assert_error(404, "NOT_FOUND");
    let after = search_agent("nebula project").await;
    assert!(
        after.iter().all(|h| h["source_id"] == keep.as_str()),
        "{after:?}"
    );
    k.app
        .post(
            "/v1/knowledge/search",
            &k.s,
            json!({"source_ids": [gone], "query": "nebula", "top_k": 3}),
        )
        .await
        .assert_error(404, "NOT_FOUND");
    k.app
        .delete(&format!("/v1/knowledge/sources/{gone}"), &k.s)
        .await
        .assert_error(404, "NOT_FOUND");
    // The other source is untouched.
    assert!(!k.search(&[&keep], "aurora", 3).await.is_empty());
}

/// An in-test web site: `/page` is an HTML article, `/big` is larger than the fetch cap.
async fn web_site() -> (String, tokio::task::JoinHandle<()>) {
    let page = fixture("article.html");
    let app = axum::Router::new()
        .route(
            "/page",
            axum::routing::get(move || {
                let page = page.clone();
                async move { ([("content-type", "text/html; charset=utf-8")], page) }
            }),
        )
        .route(
            "/big",
            axum::routing::get(|| async {
                (
                    [("content-type", "text/html")],
                    "<p>x</p>".repeat(1_000_000),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

async fn url_ingestion_goes_through_the_network_guard(b: Backend) {
    let (site, _task) = web_site().await;
    // Guard on (the default): loopback and metadata addresses are refused before any request.
    let k = kb(b).await;
    let source = k.source("web").await;
    for url in [
        format!("{site}/page"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
        "file:///etc/passwd".to_string(),
        // A host that does not resolve is the request's fault too.
        "http://no-such-host.invalid/page".to_string(),
    ] {
        let r = k
            .app
            .post(
                "/v1/knowledge/ingest/url",
                &k.s,
                json!({"source_id": source, "url": url, "user_id": "u"}),
            )
            .await;
        let msg = r.assert_error(400, "BAD_REQUEST");
        assert!(
            msg.contains("blocked")
                || msg.contains("invalid URL")
                || msg.contains("could not resolve"),
            "{url}: {msg}"
        );
    }
    assert_eq!(k.get_source(&source).await["status"], "pending");
    drop(k);

    // Allowed for development: the page is fetched, its article extracted and ingested.
    let k = kb_with(b, |c| c.network.allow_private = true).await;
    let source = k.source("web").await;
    let r = k
        .app
        .post(
            "/v1/knowledge/ingest/url",
            &k.s,
            json!({"source_id": source, "url": format!("{site}/page"), "user_id": "u"}),
        )
        .await;
    assert_completed(&r, &source);
    let got = k.get_source(&source).await;
    assert_eq!(got["origin"], format!("{site}/page"));
    let hits = k.search(&[&source], "how embeddings work", 5).await;
    let text = contents(&hits);
    assert!(text.contains("cosine"), "{text}");
    // Readability dropped the navigation and the sidebar.
    assert!(!text.contains("Gardening in winter"), "{text}");
    // Size limit: more than the 5 MB cap fails the source.
    let r = k
        .app
        .post(
            "/v1/knowledge/ingest/url",
            &k.s,
            json!({"source_id": source, "url": format!("{site}/big"), "user_id": "u"}),
        )
        .await;
    r.assert_error(500, "INTERNAL_ERROR");
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "failed");
    assert!(got["error"].as_str().unwrap().contains("exceeds"), "{got}");
    assert!(!k.search(&[&source], "cosine", 3).await.is_empty());
}

async fn reembed_switches_the_model(b: Backend) {
    let k = kb_with(b, |c| {
        c.embeddings = serde_json::from_value(json!({
            "models": {"small": {"kind": "hash", "dimension": 64}}
        }))
        .unwrap();
    })
    .await;
    let source = k.source("s").await;
    let created = assert_completed(
        &k.upload(&source, "guide.md", &fixture("guide.md"), None)
            .await,
        &source,
    );
    assert_eq!(
        k.search(&[&source], "aurora", 1).await[0]["model_id"],
        "hash-384"
    );
    let r = k
        .app
        .post(
            "/v1/knowledge/reembed",
            &k.s,
            json!({"source_id": source, "embedding_model": "small"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["chunks_embedded"].as_u64(), Some(created));
    assert_eq!(r.body["error"], Value::Null);
    assert_eq!(r.body["model_id"], "hash-64");
    let got = k.get_source(&source).await;
    assert_eq!(got["embedding_model"], "small");
    assert_eq!(got["dimension"], 64);
    assert_eq!(got["chunk_count"].as_u64(), Some(created));
    let hits = k.search(&[&source], "aurora keyword", 3).await;
    assert!(hits.iter().all(|h| h["model_id"] == "hash-64"));
    assert!(contents(&hits).contains("aurora"));
    // Every stored vector now has the new dimension.
    let pool = k.app.raw_db().await;
    let dims: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT dimension FROM knowledge_chunks WHERE source_id = $1")
            .bind(&source)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(dims, vec![64]);
    // Two sources on two models searched together: each with its own model.
    let other = k.source("o").await;
    k.upload(&other, "guide.txt", &fixture("guide.txt"), None)
        .await;
    let both = k.search(&[&source, &other], "aurora keyword", 10).await;
    let models: std::collections::BTreeSet<&str> = both
        .iter()
        .map(|h| h["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        models.into_iter().collect::<Vec<_>>(),
        vec!["hash-384", "hash-64"]
    );
}

/// Sixty near-identical sections, one chunk each.
fn shipments() -> String {
    let mut doc = String::from("# Orders\n\n");
    for i in 0..60 {
        doc.push_str(&format!(
            "## Shipment {i}\n\nThe parcel for customer number {} left the warehouse and is on its way with the usual carrier.\n\n",
            1000 + i
        ));
    }
    doc
}

async fn exact_codes_are_found_by_keyword_scoring(b: Backend) {
    let k = kb(b).await;
    let source = k.source("orders").await;
    let mut doc = shipments();
    doc.push_str("## Delayed\n\nOrder ORD-7731 is held at customs until the invoice arrives.\n");
    assert_completed(
        &k.upload(&source, "orders.md", doc.as_bytes(), None).await,
        &source,
    );
    let hits = k.search(&[&source], "where is ORD-7731", 3).await;
    let top = hits[0]["content"].as_str().unwrap();
    assert!(top.contains("ORD-7731"), "{top}");
    assert_eq!(hits[0]["keyword_score"], 1.0);
    // Case does not matter for codes.
    let hits = k.search(&[&source], "status of ord-7731?", 3).await;
    assert!(hits[0]["content"].as_str().unwrap().contains("ORD-7731"));
    // The embedded index is a cache of the rows: lost files are rebuilt at the next search.
    if b == Backend::Sqlite {
        let company = Uuid::parse_str(&k.company).unwrap();
        let id = Uuid::parse_str(&source).unwrap();
        let count = k.app.state.knowledge.index_len(company, id).unwrap();
        assert!(count > 60);
        // A fresh node on the same data directory finds no index files at all.
        let dir = k.app.state.config.data_dir.join("vectors");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        // (With small sources held in memory off: this source is searched through its index.)
        let mut config = (*k.app.state.config).clone();
        config.knowledge.resident_chunks = 0;
        let fresh =
            cortex::knowledge::Knowledge::new(&config, cortex::store::Backend::Sqlite).unwrap();
        assert_eq!(fresh.index_len(company, id), None);
        let sources = vec![
            k.app
                .state
                .store
                .get_source(company, id)
                .await
                .unwrap()
                .unwrap(),
        ];
        let hits = fresh
            .search(
                &k.app.state.store,
                company,
                &sources,
                "where is ORD-7731",
                3,
            )
            .await
            .unwrap();
        assert!(hits[0].content.contains("ORD-7731"));
        assert_eq!(fresh.index_len(company, id), Some(count));
    }
}

/// Term counts are remembered (a code in no chunk is not searched): a document that brings
/// the code makes it searchable at once, and deleting it takes it away.
async fn a_term_in_no_chunk_is_searched_once_a_document_brings_it(b: Backend) {
    let k = kb(b).await;
    let source = k.source("orders").await;
    // More chunks than the vector side returns.
    assert_completed(
        &k.upload(&source, "orders.md", shipments().as_bytes(), None)
            .await,
        &source,
    );
    let before = k
        .search(&[&source], "where is ORD-9911 zanzibarite", 3)
        .await;
    assert!(
        before.iter().all(|h| h["keyword_score"] != 1.0),
        "no chunk holds the code yet: {before:?}"
    );
    // The search remembered that no chunk holds either term.
    let store = &k.app.state.store;
    let terms = ["ORD-9911".to_owned(), "zanzibarite".to_owned()];
    assert_eq!(store.term_counts(&terms).await.unwrap(), vec![0, 0]);
    let r = k
        .upload(
            &source,
            "customs.md",
            b"# Customs\n\nOrder ORD-9911 is held at customs with a zanzibarite sample.\n",
            None,
        )
        .await;
    assert_completed(&r, &source);
    let document = r.body["document_id"].as_str().unwrap().to_owned();
    // Counted again at once, not after the remembered counts expire.
    assert_eq!(store.term_counts(&terms).await.unwrap(), vec![1, 1]);
    let hits = k
        .search(&[&source], "where is ORD-9911 zanzibarite", 3)
        .await;
    let top = hits[0]["content"].as_str().unwrap();
    assert!(top.contains("ORD-9911"), "{hits:?}");
    assert_eq!(hits[0]["keyword_score"], 1.0);
    // A word no chunk held before is ranked by the full-text index now.
    let hits = k.search(&[&source], "zanzibarite", 3).await;
    assert!(
        hits[0]["content"].as_str().unwrap().contains("zanzibarite"),
        "{hits:?}"
    );
    assert!(hits[0]["keyword_score"].as_f64().unwrap() > 0.9, "{hits:?}");
    let r = k.delete_document(&source, &document).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["deleted"], true);
    assert_eq!(store.term_counts(&terms).await.unwrap(), vec![0, 0]);
    let after = k
        .search(&[&source], "where is ORD-9911 zanzibarite", 3)
        .await;
    assert!(
        after
            .iter()
            .all(|h| !h["content"].as_str().unwrap().contains("ORD-9911"))
    );
}

async fn keyword_search_uses_the_full_text_index_among_50000_chunks(b: Backend) {
    let k = kb(b).await;
    let source = k.source("catalogue").await;
    assert_completed(
        &k.upload(
            &source,
            "intro.md",
            b"# Intro\n\nWelcome to the catalogue of shelves.\n",
            None,
        )
        .await,
        &source,
    );
    // 50,000 more rows of the source, written straight to the table (the triggers or the
    // generated column index them); one holds the code.
    let db = k.app.raw_db().await;
    let fill = match b {
        Backend::Sqlite => concat!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) ",
            "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content, heading_path, page, ",
            "locator, token_count, model_id, dimension, vector, created_at) ",
            "SELECT printf('00000000-0000-4000-8000-%012d', i), c.company_id, c.source_id, 1000000 + i, 1000 + i, ",
            "CASE WHEN i = 31337 THEN 'Order SKU-48213 ships from the north warehouse.' ",
            "ELSE 'Catalogue filler line ' || i || ' about shelves, boxes and orders.' END, ",
            "c.heading_path, c.page, c.locator, c.token_count, c.model_id, c.dimension, c.vector, c.created_at ",
            "FROM n, (SELECT * FROM knowledge_chunks WHERE source_id = $1 LIMIT 1) c"
        ),
        Backend::Postgres => concat!(
            "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content, heading_path, page, ",
            "locator, token_count, model_id, dimension, vector, embedding, created_at) ",
            "SELECT '00000000-0000-4000-8000-' || lpad(i::text, 12, '0'), c.company_id, c.source_id, 1000000 + i, 1000 + i, ",
            "CASE WHEN i = 31337 THEN 'Order SKU-48213 ships from the north warehouse.' ",
            "ELSE 'Catalogue filler line ' || i || ' about shelves, boxes and orders.' END, ",
            "c.heading_path, c.page, c.locator, c.token_count, c.model_id, c.dimension, c.vector, c.embedding, c.created_at ",
            "FROM generate_series(1, 50000) AS n(i), (SELECT * FROM knowledge_chunks WHERE source_id = $1 LIMIT 1) c"
        ),
    };
    sqlx::query(fill).bind(&source).execute(&db).await.unwrap();
    let hits = k
        .search(&[&source], "which warehouse ships SKU-48213?", 3)
        .await;
    let top = hits[0]["content"].as_str().unwrap();
    assert!(top.contains("SKU-48213"), "{hits:?}");
    assert_eq!(hits[0]["keyword_score"], 1.0);
    // The keyword look-up goes through the full-text index, not a scan of the rows.
    let plan: Vec<String> = match b {
        Backend::Sqlite => {
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(concat!(
                "EXPLAIN QUERY PLAN SELECT c.id FROM knowledge_chunks c JOIN (SELECT rowid AS r, ",
                "bm25(knowledge_chunks_fts) AS rank FROM knowledge_chunks_fts WHERE knowledge_chunks_fts ",
                "MATCH '\"SKU-48213\"') m ON c.rowid = m.r WHERE c.source_id = $1 ORDER BY m.rank LIMIT 20"
            ))
            .bind(&source)
            .fetch_all(&db)
            .await
            .unwrap();
            rows.into_iter().map(|r| r.3).collect()
        }
        Backend::Postgres => {
            sqlx::query("ANALYZE knowledge_chunks")
                .execute(&db)
                .await
                .unwrap();
            sqlx::query_scalar(concat!(
                "EXPLAIN SELECT id FROM knowledge_chunks, websearch_to_tsquery('simple', '\"SKU-48213\"') q ",
                "WHERE content_tsv @@ q AND company_id = $1 AND source_id = $2 ORDER BY ts_rank_cd(content_tsv, q) DESC LIMIT 20"
            ))
            .bind(&k.company)
            .bind(&source)
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    let plan = plan.join("\n");
    match b {
        Backend::Sqlite => {
            assert!(plan.contains("VIRTUAL TABLE INDEX"), "{plan}");
            assert!(!plan.contains("SCAN c"), "{plan}");
        }
        Backend::Postgres => {
            assert!(plan.contains("knowledge_chunks_tsv"), "{plan}");
            assert!(!plan.contains("Seq Scan on knowledge_chunks"), "{plan}");
        }
    }
    // Deleting the source takes its rows out of the index too.
    let r = k
        .app
        .delete(&format!("/v1/knowledge/sources/{source}"), &k.s)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let left: i64 = match b {
        Backend::Sqlite => sqlx::query_scalar(
            "SELECT COUNT(*) FROM knowledge_chunks_fts WHERE knowledge_chunks_fts MATCH '\"SKU-48213\"'",
        ),
        Backend::Postgres => sqlx::query_scalar(
            "SELECT COUNT(*) FROM knowledge_chunks WHERE content_tsv @@ websearch_to_tsquery('simple', '\"SKU-48213\"')",
        ),
    }
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(left, 0);
    if b == Backend::Postgres {
        // A word the column's statistics show in far more rows than the bound is common
        // without a scan of its posting list: the statistics (taken above, before the rows
        // went) still count `filler` in 50,000 rows, though no row holds it now; a word they
        // do not list is counted.
        let store = &k.app.state.store;
        let terms = [
            "filler".to_owned(),
            "shelves".to_owned(),
            "SKU-48213".to_owned(),
        ];
        let common = cortex::store::COMMON_WORD_ROWS + 1;
        assert_eq!(
            store.term_counts(&terms).await.unwrap(),
            vec![common, common, 0]
        );
    }
}

async fn agent_documents_are_embedded_and_linked(b: Backend) {
    let k = kb(b).await;
    let agent = k
        .app
        .create_agent(
            &k.s,
            json!({"name": "Support", "system_prompt": "You help.",
                "workflow_faqs": [{"question": "What are your business hours?", "answer": "Sunday to Thursday, 9 AM to 6 PM."}],
                "knowledge_documents": [
                    {"title": "Returns", "content": "Returns are free within 30 days of delivery."},
                    {"title": "Shipping", "content": "We ship to Cairo and Giza within two days."}
                ]}),
        )
        .await;
    let r = k
        .app
        .post(
            "/v1/knowledge/ingest/documents",
            &k.s,
            json!({"agent_id": agent, "company_id": k.company, "user_id": "u", "embedding_model": "bge-m3"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["agent_id"], agent.as_str());
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["documents_processed"], 3);
    assert_eq!(r.body["chunks_created"], 3);
    assert_eq!(r.body["chunks_embedded"], 3);
    let source = r.body["source_id"].as_str().unwrap().to_string();
    let config = k.app.get(&format!("/v1/agents/{agent}/config"), &k.s).await;
    assert_eq!(config.body["knowledge_source_ids"], json!([source]));
    // Again: the same source is refreshed, not duplicated.
    let again = k
        .app
        .post(
            "/v1/knowledge/ingest/documents",
            &k.s,
            json!({"agent_id": agent, "company_id": k.company, "user_id": "u"}),
        )
        .await;
    assert_eq!(again.body["source_id"], source.as_str());
    assert_eq!(k.chunk_rows(&source).await, 3);
    let hits = k
        .app
        .post(
            "/v1/knowledge/search",
            &k.s,
            json!({"agent_id": agent, "query": "Do you ship to Giza?", "top_k": 1}),
        )
        .await;
    assert!(
        hits.body["results"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Giza")
    );
    // The zero-configuration responder answers from the embedded documents.
    let chat = k
        .app
        .post(
            "/v1/chat",
            &k.s,
            TestApp::chat_body(
                &k.company,
                &agent,
                &Uuid::new_v4().to_string(),
                "Are returns free?",
            ),
        )
        .await;
    assert_eq!(chat.status, 200, "{}", chat.body);
    assert!(
        chat.body["reply"].as_str().unwrap().contains("30 days"),
        "{}",
        chat.body
    );
    // Another company's agent, or a company id that is not the caller's: 404.
    let (other_company, other) = k.app.other_company().await;
    k.app
        .post(
            "/v1/knowledge/ingest/documents",
            &other,
            json!({"agent_id": agent, "company_id": other_company, "user_id": "u"}),
        )
        .await
        .assert_error(404, "NOT_FOUND");
    k.app
        .post(
            "/v1/knowledge/ingest/documents",
            &k.s,
            json!({"agent_id": agent, "company_id": other_company, "user_id": "u"}),
        )
        .await
        .assert_error(404, "NOT_FOUND");
}

async fn chat_stage_03_retrieves_ingested_chunks(b: Backend) {
    let fake = FakeLlm::start().await;
    let url = fake.base_url().to_string();
    let k = kb_with(b, |c| c.llm = fake_llm(&url, 0, 5.0)).await;
    let source = k.source("guide").await;
    assert_completed(
        &k.upload(&source, "guide.pdf", &fixture("guide.pdf"), None)
            .await,
        &source,
    );
    let agent = k
        .app
        .create_agent(
            &k.s,
            json!({"name": "Ops", "system_prompt": "You are {{ agent.name }}.",
                "knowledge_source_ids": [source], "settings": {"cache_enabled": false, "rag_top_k": 2}}),
        )
        .await;
    fake.push(Step::text("Backups copy the SQLite file."));
    let r = k
        .app
        .post(
            "/v1/chat",
            &k.s,
            TestApp::chat_body(
                &k.company,
                &agent,
                &Uuid::new_v4().to_string(),
                "How do backups work with the borealis setup?",
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let system = fake.chat_requests()[0].messages()[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(system.starts_with("You are Ops."), "{system}");
    assert!(system.contains("Relevant knowledge"), "{system}");
    assert!(system.contains("borealis"), "{system}");
    assert!(system.contains("WAL mode"), "{system}");
    // A question the knowledge has nothing on gets none of it: the chunks score below the floor
    // (the search endpoint still shows them, with their scores).
    fake.push(Step::text("No idea."));
    let unrelated = "Qual é a capital da Mongólia?";
    let r = k
        .app
        .post(
            "/v1/chat",
            &k.s,
            TestApp::chat_body(&k.company, &agent, &Uuid::new_v4().to_string(), unrelated),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let system = fake.chat_requests()[1].messages()[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!system.contains("Relevant knowledge"), "{system}");
    let shown = k.search(&[&source], unrelated, 2).await;
    assert!(!shown.is_empty());
    assert!(
        shown
            .iter()
            .all(|h| h["score"].as_f64().unwrap()
                < f64::from(k.app.state.config.knowledge.min_score)),
        "{shown:?}"
    );
    // Deleting the source takes the knowledge out of the next answer.
    k.app
        .delete(&format!("/v1/knowledge/sources/{source}"), &k.s)
        .await;
    fake.push(Step::text("I don't know."));
    let r = k
        .app
        .post(
            "/v1/chat",
            &k.s,
            TestApp::chat_body(
                &k.company,
                &agent,
                &Uuid::new_v4().to_string(),
                "How do backups work with the borealis setup?",
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let system = fake.chat_requests()[2].messages()[0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!system.contains("borealis"), "{system}");
}

pub(crate) fn local_config(c: &mut cortex::config::Config, dir: &str) {
    c.embeddings = serde_json::from_value(json!({
        "models": {"local": {"kind": "local", "path": dir, "model_name": "all-MiniLM-L6-v2"}}
    }))
    .unwrap();
}

async fn local_embedder_end_to_end(b: Backend) {
    let Some(dir) = minilm_dir() else { return };
    let k = kb_with(b, |c| local_config(c, &dir)).await;
    let source = k.source("article").await;
    let r = k
        .upload(
            &source,
            "article.html",
            &fixture("article.html"),
            Some("local"),
        )
        .await;
    assert_completed(&r, &source);
    let got = k.get_source(&source).await;
    assert_eq!(got["model_id"], "local:all-MiniLM-L6-v2");
    assert_eq!(got["dimension"], 384);
    // A paraphrase with no shared keyword still finds the passage about embeddings.
    let hits = k
        .search(
            &[&source],
            "mapping text to points whose distance reflects meaning",
            1,
        )
        .await;
    assert_eq!(hits[0]["model_id"], "local:all-MiniLM-L6-v2");
    assert!(
        hits[0]["content"].as_str().unwrap().contains("embedding"),
        "{}",
        hits[0]
    );
    // From hash to local with reembed.
    let other = k.source("guide").await;
    assert_completed(
        &k.upload(&other, "guide.txt", &fixture("guide.txt"), None)
            .await,
        &other,
    );
    let r = k
        .app
        .post(
            "/v1/knowledge/reembed",
            &k.s,
            json!({"source_id": other, "embedding_model": "local"}),
        )
        .await;
    assert_eq!(r.body["model_id"], "local:all-MiniLM-L6-v2", "{}", r.body);
    let hits = k
        .search(&[&other], "how are backups made while running", 1)
        .await;
    assert_eq!(hits[0]["model_id"], "local:all-MiniLM-L6-v2");
}

/// A labelled retrieval set: passages, and questions with the passage that answers them.
const PASSAGES: &[(&str, &str)] = &[
    (
        "Refunds",
        "Refunds are paid back to the original card within five business days after we receive the returned item.",
    ),
    (
        "Shipping times",
        "Standard delivery takes two to four days; express delivery arrives the next working day if ordered before noon.",
    ),
    (
        "Password reset",
        "To reset a forgotten password, open the login page, choose reset and follow the link sent by email.",
    ),
    (
        "Opening hours",
        "The support desk is staffed from Sunday to Thursday between nine in the morning and six in the evening.",
    ),
    (
        "Warranty",
        "Every appliance carries a two-year warranty covering manufacturing defects but not accidental damage.",
    ),
    (
        "Loyalty points",
        "Members earn one point per pound spent and can redeem one hundred points for a five pound voucher.",
    ),
    (
        "Data export",
        "Administrators can export all account data as a CSV archive from the settings page at any time.",
    ),
    (
        "Invoices",
        "Invoices are issued on the first day of each month and can be downloaded as PDF from the billing section.",
    ),
    (
        "Two-factor authentication",
        "Enable two-factor authentication under security settings to require a code from your phone at sign-in.",
    ),
    (
        "Cancellation",
        "You may cancel a subscription at any time; access continues until the end of the paid period.",
    ),
    (
        "International orders",
        "We deliver to forty countries; customs duties for international orders are paid by the recipient.",
    ),
    (
        "Gift cards",
        "Gift cards never expire and can be combined with other payment methods at checkout.",
    ),
];

const QUESTIONS: &[(&str, &str)] = &[
    (
        "How long until my money comes back after a return?",
        "Refunds",
    ),
    ("When will my parcel arrive?", "Shipping times"),
    ("I forgot my password, what do I do?", "Password reset"),
    ("What time is customer support open?", "Opening hours"),
    ("Is my broken fridge covered by the guarantee?", "Warranty"),
    ("How do I use my reward points?", "Loyalty points"),
    ("Can I download all my account data?", "Data export"),
    ("Where can I find my monthly bill?", "Invoices"),
    (
        "How do I turn on sign-in codes from my phone?",
        "Two-factor authentication",
    ),
    ("How can I stop my subscription?", "Cancellation"),
    (
        "Who pays import taxes when shipping abroad?",
        "International orders",
    ),
    ("Do gift cards expire?", "Gift cards"),
];

async fn recall_at_5(k: &Kb, model: &str) -> f64 {
    let source = k.source(&format!("faq {model}")).await;
    let doc: String = PASSAGES
        .iter()
        .map(|(title, text)| format!("# {title}\n\n{text}\n\n"))
        .collect();
    let r = k
        .upload(&source, "faq.md", doc.as_bytes(), Some(model))
        .await;
    assert_eq!(assert_completed(&r, &source), PASSAGES.len() as u64);
    let mut found = 0;
    for (question, expected) in QUESTIONS {
        let hits = k.search(&[&source], question, 5).await;
        if hits.iter().any(|h| h["heading_path"] == json!([expected])) {
            found += 1;
        }
    }
    found as f64 / QUESTIONS.len() as f64
}

async fn recall_at_5_per_embedder(b: Backend) {
    let dir = minilm_dir();
    let k = kb_with(b, |c| {
        if let Some(dir) = &dir {
            local_config(c, dir);
        }
    })
    .await;
    let hash = recall_at_5(&k, "hash").await;
    println!(
        "recall@5 ({b:?}, {} questions): hash = {hash:.2}",
        QUESTIONS.len()
    );
    assert!(hash >= 0.5, "hash recall@5 {hash}");
    if dir.is_some() {
        let local = recall_at_5(&k, "local").await;
        println!(
            "recall@5 ({b:?}, {} questions): local all-MiniLM-L6-v2 = {local:.2}",
            QUESTIONS.len()
        );
        assert!(local >= 0.9, "local recall@5 {local}");
        assert!(local >= hash);
    }
}

async fn uploads_over_the_limit_are_413(b: Backend) {
    let k = kb_with(b, |c| c.limits.upload_bytes = 4096).await;
    let source = k.source("s").await;
    let big = "word ".repeat(2000);
    let r = k.upload(&source, "big.txt", big.as_bytes(), None).await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    // The limit is the upload limit, not the 1 MB JSON limit: below it is fine.
    let r = k
        .upload(&source, "small.txt", &big.as_bytes()[..3000], None)
        .await;
    assert_completed(&r, &source);
}

/// The pgvector HNSW path (taken for sources over 5,000 chunks) finds what exact search finds,
/// and the planner can serve it from the per-dimension HNSW index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_hnsw_path_agrees_with_exact_search() {
    let k = kb(Backend::Postgres).await;
    let source = k.source("shipments").await;
    let mut doc = String::from("# Shipments\n\n");
    for i in 0..40 {
        doc.push_str(&format!(
            "## Route {i}\n\nParcels to district {i} travel with carrier number {} and arrive after {} days.\n\n",
            500 + i,
            i % 7 + 1
        ));
    }
    doc.push_str("## Refrigerated\n\nFrozen goods travel in cooled vans with dry ice and temperature loggers.\n");
    assert_completed(
        &k.upload(&source, "routes.md", doc.as_bytes(), None).await,
        &source,
    );

    let company = Uuid::parse_str(&k.company).unwrap();
    let stored = k
        .app
        .state
        .store
        .get_source(company, Uuid::parse_str(&source).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.dimension, Some(384));
    let query = cortex_embed::HashEmbedder::default()
        .embed_text("frozen goods in cooled vans with dry ice");
    let exact = k
        .app
        .state
        .store
        .pgvector_search(company, &stored, &query, 3)
        .await
        .unwrap();
    // The same source seen as a large one takes the HNSW query form.
    let mut large = stored.clone();
    large.chunk_count = 10_000;
    let hnsw = k
        .app
        .state
        .store
        .pgvector_search(company, &large, &query, 3)
        .await
        .unwrap();
    assert!(
        !exact.is_empty() && exact[0].0.content.contains("dry ice"),
        "{:?}",
        exact[0].0.content
    );
    assert_eq!(
        hnsw[0].0.id, exact[0].0.id,
        "HNSW and exact search disagree on the nearest chunk"
    );
    assert!((hnsw[0].1 - exact[0].1).abs() < 1e-4);

    // With sequential scans priced out, the planner answers the HNSW form from the index.
    let db = k.app.raw_db().await;
    let mut conn = db.acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let literal = format!(
        "[{}]",
        query
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM knowledge_chunks WHERE dimension = 384 \
         ORDER BY (embedding::vector(384)) <=> CAST($1 AS vector(384)) LIMIT 3",
    )
    .bind(literal)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|l| l.contains("knowledge_chunks_hnsw_384")),
        "{plan:#?}"
    );
}

impl Kb {
    async fn documents(&self, source: &str, query: &str) -> Resp {
        self.app
            .get(
                &format!("/v1/knowledge/sources/{source}/documents{query}"),
                &self.s,
            )
            .await
    }

    /// The source's documents by name.
    async fn document_map(&self, source: &str) -> std::collections::BTreeMap<String, Value> {
        let r = self.documents(source, "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["name"].as_str().unwrap().to_owned(), d.clone()))
            .collect()
    }

    /// Whether a search of the source finds `word` in some chunk.
    async fn finds(&self, source: &str, word: &str) -> bool {
        self.search(&[source], word, 10)
            .await
            .iter()
            .any(|h| h["content"].as_str().unwrap().contains(word))
    }
}

const POLICY_V1: &str =
    "# Returns policy\n\nItems can be returned within 30 days. Ask for the zephyrine form.\n";
const POLICY_V2: &str =
    "# Returns policy\n\nItems can be returned within 60 days. Ask for the marmalite form.\n";
const PAGE: &str = "<html><head><title>Shipping</title></head><body><main><h1>Shipping</h1>\
    <p>Parcels travel by quokkaflight to every city within two days of the order.</p></main></body></html>";

async fn sources_hold_many_documents(b: Backend) {
    let k = kb(b).await;
    let source = k.source("Handbook").await;
    let company = Uuid::parse_str(&k.company).unwrap();
    let source_id = Uuid::parse_str(&source).unwrap();
    let pdf = fixture("guide.pdf");
    let mut ids = std::collections::BTreeMap::new();
    for (name, bytes) in [
        ("policy.md", POLICY_V1.as_bytes()),
        ("page.html", PAGE.as_bytes()),
        ("manual.pdf", pdf.as_slice()),
    ] {
        let r = k.upload(&source, name, bytes, None).await;
        assert_completed(&r, &source);
        ids.insert(name, r.body["document_id"].as_str().unwrap().to_owned());
    }
    // Three documents, none replacing another: each is searchable.
    let docs = k.document_map(&source).await;
    assert_eq!(
        docs.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["manual.pdf", "page.html", "policy.md"]
    );
    let mut total = 0;
    for (name, d) in &docs {
        assert_eq!(d["id"].as_str(), Some(ids[name.as_str()].as_str()));
        assert_eq!(d["kind"], "file");
        assert_eq!(d["status"], "completed");
        assert_eq!(d["error"], Value::Null);
        assert!(d["chunk_count"].as_i64().unwrap() > 0, "{d}");
        total += d["chunk_count"].as_i64().unwrap();
    }
    assert_eq!(
        docs["policy.md"]["bytes"].as_u64(),
        Some(POLICY_V1.len() as u64)
    );
    assert_eq!(docs["manual.pdf"]["bytes"].as_u64(), Some(pdf.len() as u64));
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["document_count"], 3);
    assert_eq!(got["chunk_count"].as_i64(), Some(total));
    assert_eq!(k.chunk_rows(&source).await, total);
    if b == Backend::Sqlite {
        assert_eq!(
            k.app.state.knowledge.index_len(company, source_id),
            Some(total as usize)
        );
    }
    for word in ["zephyrine", "quokkaflight", "aurora"] {
        assert!(k.finds(&source, word).await, "{word} not found");
    }
    let hit = &k.search(&[&source], "quokkaflight", 1).await[0];
    assert_eq!(hit["document_id"].as_str(), Some(ids["page.html"].as_str()));
    // Pages of documents.
    let r = k.documents(&source, "?limit=2&offset=0").await;
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["pagination"]["total"], 3);
    let r = k.documents(&source, "?limit=2&offset=2").await;
    assert_eq!(r.body["documents"].as_array().unwrap().len(), 1);

    // The same name replaces that document only: same id, new content, the others untouched.
    let r = k
        .upload(&source, "policy.md", POLICY_V2.as_bytes(), None)
        .await;
    assert_completed(&r, &source);
    assert_eq!(
        r.body["document_id"].as_str(),
        Some(ids["policy.md"].as_str())
    );
    let docs = k.document_map(&source).await;
    assert_eq!(docs.len(), 3);
    assert_eq!(
        docs["policy.md"]["bytes"].as_u64(),
        Some(POLICY_V2.len() as u64)
    );
    assert!(k.finds(&source, "marmalite").await);
    assert!(!k.finds(&source, "zephyrine").await);
    assert!(k.finds(&source, "quokkaflight").await);
    assert!(k.finds(&source, "aurora").await);

    // A document added with another model is refused while others hold chunks.
    let r = k
        .upload(
            &source,
            "extra.md",
            b"# Extra\n\nMore text.\n",
            Some("nonexistent"),
        )
        .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(k.document_map(&source).await.len(), 3);

    // Deleting one document: its chunks and vectors go, the rest stay searchable.
    let manual_chunks = docs["manual.pdf"]["chunk_count"].as_i64().unwrap();
    let before = k.get_source(&source).await["chunk_count"].as_i64().unwrap();
    let r = k
        .app
        .delete(
            &format!(
                "/v1/knowledge/sources/{source}/documents/{}",
                ids["manual.pdf"]
            ),
            &k.s,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["deleted"], true);
    let got = k.get_source(&source).await;
    assert_eq!(got["document_count"], 2);
    assert_eq!(got["chunk_count"].as_i64(), Some(before - manual_chunks));
    assert_eq!(k.chunk_rows(&source).await, before - manual_chunks);
    if b == Backend::Sqlite {
        assert_eq!(
            k.app.state.knowledge.index_len(company, source_id),
            Some((before - manual_chunks) as usize)
        );
    }
    assert!(!k.finds(&source, "aurora").await);
    assert!(k.finds(&source, "marmalite").await);
    assert!(k.finds(&source, "quokkaflight").await);
    // Gone is gone; another source's or another company's documents are not found.
    k.app
        .delete(
            &format!(
                "/v1/knowledge/sources/{source}/documents/{}",
                ids["manual.pdf"]
            ),
            &k.s,
        )
        .await
        .assert_error(404, "NOT_FOUND");
    let other_source = k.source("Other").await;
    k.app
        .delete(
            &format!(
                "/v1/knowledge/sources/{other_source}/documents/{}",
                ids["page.html"]
            ),
            &k.s,
        )
        .await
        .assert_error(404, "NOT_FOUND");
    let (_, stranger) = k.app.other_company().await;
    let missing = k
        .app
        .get(
            &format!("/v1/knowledge/sources/{}/documents", Uuid::new_v4()),
            &stranger,
        )
        .await;
    let theirs = k
        .app
        .get(
            &format!("/v1/knowledge/sources/{source}/documents"),
            &stranger,
        )
        .await;
    assert_eq!(theirs.status, 404);
    assert_eq!(theirs.body, missing.body);
    k.app
        .delete(
            &format!(
                "/v1/knowledge/sources/{source}/documents/{}",
                ids["page.html"]
            ),
            &stranger,
        )
        .await
        .assert_error(404, "NOT_FOUND");
    assert!(k.finds(&source, "quokkaflight").await);

    // Deleting every document leaves an empty source that takes any model again.
    for name in ["policy.md", "page.html"] {
        let r = k
            .app
            .delete(
                &format!("/v1/knowledge/sources/{source}/documents/{}", ids[name]),
                &k.s,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "pending");
    assert_eq!(got["chunk_count"], 0);
    assert_eq!(got["model_id"], Value::Null);
    assert_eq!(k.chunk_rows(&source).await, 0);
}

async fn a_failed_document_fails_the_source_until_replaced_or_deleted(b: Backend) {
    let k = kb(b).await;
    let source = k.source("s").await;
    let pdf = fixture("guide.pdf");
    assert_completed(&k.upload(&source, "manual.pdf", &pdf, None).await, &source);
    let page = k.upload(&source, "page.html", PAGE.as_bytes(), None).await;
    assert_completed(&page, &source);
    let chunks = k.get_source(&source).await["chunk_count"].as_i64().unwrap();
    // A broken replacement of manual.pdf: that document fails and keeps its chunks.
    let mut corrupt = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\n".to_vec();
    corrupt.extend(std::iter::repeat_n(0xA5u8, 4096));
    k.upload(&source, "manual.pdf", &corrupt, None)
        .await
        .assert_error(500, "INTERNAL_ERROR");
    let docs = k.document_map(&source).await;
    assert_eq!(docs["manual.pdf"]["status"], "failed");
    assert!(
        docs["manual.pdf"]["error"]
            .as_str()
            .unwrap()
            .contains("manual.pdf")
    );
    assert_eq!(docs["page.html"]["status"], "completed");
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "failed");
    assert!(got["error"].as_str().unwrap().contains("manual.pdf"));
    assert_eq!(got["chunk_count"].as_i64(), Some(chunks));
    assert!(k.finds(&source, "aurora").await);
    // A good version of it clears the failure.
    assert_completed(&k.upload(&source, "manual.pdf", &pdf, None).await, &source);
    let got = k.get_source(&source).await;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["error"], Value::Null);
    // A new document that fails is listed as failed until it is deleted.
    k.upload(&source, "broken.pdf", &corrupt, None)
        .await
        .assert_error(500, "INTERNAL_ERROR");
    let docs = k.document_map(&source).await;
    assert_eq!(docs["broken.pdf"]["status"], "failed");
    assert_eq!(docs["broken.pdf"]["chunk_count"], 0);
    assert_eq!(k.get_source(&source).await["status"], "failed");
    let r = k
        .app
        .delete(
            &format!(
                "/v1/knowledge/sources/{source}/documents/{}",
                docs["broken.pdf"]["id"].as_str().unwrap()
            ),
            &k.s,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(k.get_source(&source).await["status"], "completed");
    // Re-embedding covers every document.
    let r = k
        .app
        .post("/v1/knowledge/reembed", &k.s, json!({"source_id": source}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["chunks_embedded"].as_i64(), Some(chunks));
    assert!(k.finds(&source, "aurora").await);
    assert!(k.finds(&source, "quokkaflight").await);
    assert_eq!(k.document_map(&source).await.len(), 2);
}

/// A document left `processing` by a server that stopped mid-ingestion is failed when a server
/// starts (on PostgreSQL, once it has not changed for an hour: another node may be working on
/// it), and its source says so; one still being ingested elsewhere is left alone.
async fn an_ingestion_cut_off_by_a_stop_is_failed_at_start_up(b: Backend) {
    use cortex::knowledge::model::SourceKind;
    use cortex::store::KnowledgeStore;
    let url = crate::helpers::database_that_outlives_the_app(b).await;
    let first = spawn_app_with(b, |c| c.database_url = Some(url.clone())).await;
    let s = first.admin().await;
    let company: Uuid = first.company_id(&s).await.parse().unwrap();
    let store = &first.state.store;
    let source = store
        .create_source(company, "Handbook", SourceKind::File, None)
        .await
        .unwrap();
    let cut = store
        .begin_document(company, source.id, "cut.md", SourceKind::File)
        .await
        .unwrap();
    let current = store
        .begin_document(company, source.id, "current.md", SourceKind::File)
        .await
        .unwrap();
    // The cut-off one was last touched two hours ago.
    sqlx::query("UPDATE knowledge_documents SET updated_at = $1 WHERE id = $2")
        .bind("2020-01-01T00:00:00.000000Z")
        .bind(cut.id.to_string())
        .execute(&first.raw_db().await)
        .await
        .unwrap();
    drop(first);

    let second = spawn_app_with(b, |c| c.database_url = Some(url.clone())).await;
    let docs = second
        .state
        .store
        .list_documents(company, source.id, 10, 0)
        .await
        .unwrap();
    let status = |id: Uuid| {
        let d = docs.items.iter().find(|d| d.id == id).unwrap();
        (d.status, d.error.clone().unwrap_or_default())
    };
    let (cut_status, cut_error) = status(cut.id);
    assert_eq!(cut_status.as_str(), "failed");
    assert!(cut_error.contains("interrupted"), "{cut_error}");
    let (current_status, _) = status(current.id);
    // SQLite has one process: whatever it left processing is dead. PostgreSQL nodes share it.
    let expected = if b == Backend::Sqlite {
        "failed"
    } else {
        "processing"
    };
    assert_eq!(current_status.as_str(), expected);
    let source = second
        .state
        .store
        .get_source(company, source.id)
        .await
        .unwrap()
        .unwrap();
    let expected = if b == Backend::Sqlite {
        "failed"
    } else {
        "processing"
    };
    assert_eq!(source.status.as_str(), expected);
}

/// A database made before sources held several documents: migrated, each source becomes a
/// source with one document that a new ingestion of the same name replaces.
async fn old_sources_migrate_to_one_document_each(b: Backend) {
    let url = crate::helpers::database_that_outlives_the_app(b).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(match b {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    });
    let mut old = sqlx::migrate::Migrator::new(dir).await.unwrap();
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version < 9)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    old.run(&pool).await.unwrap();
    let company = Uuid::new_v4().to_string();
    let source = Uuid::new_v4().to_string();
    let pending = Uuid::new_v4().to_string();
    let at = "2026-01-01T00:00:00.000000Z";
    sqlx::query(
        "INSERT INTO companies (id, name, plan, created_at) VALUES ($1, 'Old', 'free', $2)",
    )
    .bind(&company)
    .bind(at)
    .execute(&pool)
    .await
    .unwrap();
    for (id, status, chunks, origin) in [
        (&source, "completed", 2i64, Some("policy.md")),
        (&pending, "pending", 0, None),
    ] {
        sqlx::query(concat!(
            "INSERT INTO knowledge_sources (id, company_id, name, kind, status, embedding_model,",
            " model_id, dimension, chunk_count, origin, created_at, updated_at)",
            " VALUES ($1, $2, 'Old', 'file', $3, 'hash', 'hash-384', 384, $4, $5, $6, $6)"
        ))
        .bind(id)
        .bind(&company)
        .bind(status)
        .bind(chunks)
        .bind(origin)
        .bind(at)
        .execute(&pool)
        .await
        .unwrap();
    }
    let embedder = cortex_embed::HashEmbedder::new(384).unwrap();
    for (seq, text) in [
        "Items can be returned within 30 days.",
        "Ask for the zephyrine form.",
    ]
    .into_iter()
    .enumerate()
    {
        let vector = cortex_embed::Embedder::embed(&embedder, &[text.to_owned()])
            .await
            .unwrap()
            .remove(0);
        let sql = match b {
            Backend::Sqlite => concat!(
                "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content,",
                " heading_path, token_count, model_id, dimension, vector, created_at)",
                " VALUES ($1, $2, $3, $4, $5, $6, '[]', 8, 'hash-384', 384, $7, $8)"
            ),
            Backend::Postgres => concat!(
                "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content,",
                " heading_path, token_count, model_id, dimension, vector, created_at, embedding)",
                " VALUES ($1, $2, $3, $4, $5, $6, '[]', 8, 'hash-384', 384, $7, $8, CAST($9 AS vector))"
            ),
        };
        let mut q = sqlx::query(sql)
            .bind(Uuid::new_v4().to_string())
            .bind(&company)
            .bind(&source)
            .bind(seq as i64 + 1)
            .bind(seq as i64)
            .bind(text)
            .bind(cortex::store::encode_vector(&vector))
            .bind(at);
        if b == Backend::Postgres {
            let text: Vec<String> = vector.iter().map(|x| x.to_string()).collect();
            q = q.bind(format!("[{}]", text.join(",")));
        }
        q.execute(&pool).await.unwrap();
    }
    pool.close().await;

    // The server migrates the database at start-up.
    let app = spawn_app_with(b, |c| c.database_url = Some(url.clone())).await;
    let store = &app.state.store;
    let company = Uuid::parse_str(&company).unwrap();
    let source = Uuid::parse_str(&source).unwrap();
    let docs = store.list_documents(company, source, 10, 0).await.unwrap();
    assert_eq!(docs.total, 1);
    let doc = &docs.items[0];
    assert_eq!(doc.name, "policy.md");
    assert_eq!(doc.chunk_count, 2);
    assert_eq!(doc.bytes, None);
    let migrated = store.get_source(company, source).await.unwrap().unwrap();
    assert_eq!(migrated.document_count, 1);
    assert_eq!(migrated.chunk_count, 2);
    let chunks = store.source_chunks(company, source).await.unwrap();
    assert!(chunks.iter().all(|c| c.document_id == Some(doc.id)));
    let pending = Uuid::parse_str(&pending).unwrap();
    assert_eq!(
        store
            .list_documents(company, pending, 10, 0)
            .await
            .unwrap()
            .total,
        0
    );
    // Still searchable, and a new ingestion of the same name replaces the migrated document.
    let hits = app
        .state
        .knowledge
        .search(store, company, &[migrated], "zephyrine", 3)
        .await
        .unwrap();
    assert!(hits.iter().any(|h| h.content.contains("zephyrine")));
    let done = app
        .state
        .knowledge
        .ingest_bytes(
            store,
            company,
            source,
            "policy.md",
            POLICY_V2.as_bytes(),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(done.document_id, doc.id);
    let after = store.list_documents(company, source, 10, 0).await.unwrap();
    assert_eq!(after.total, 1);
    assert_eq!(after.items[0].bytes, Some(POLICY_V2.len() as i64));
    let source_row = store.get_source(company, source).await.unwrap().unwrap();
    let hits = app
        .state
        .knowledge
        .search(store, company, &[source_row], "zephyrine marmalite", 5)
        .await
        .unwrap();
    assert!(hits.iter().all(|h| !h.content.contains("zephyrine")));
    assert!(hits.iter().any(|h| h.content.contains("marmalite")));
}

/// A source of at most `knowledge.resident_chunks` chunks is searched from memory: it ranks as
/// the database's indexes rank it, and every change (a document added, replaced, deleted) is
/// searched at once.
async fn a_small_source_is_searched_from_memory_and_sees_every_change(b: Backend) {
    let k = kb(b).await;
    let source = k.source("Handbook").await;
    let company = Uuid::parse_str(&k.company).unwrap();
    let source_id = Uuid::parse_str(&source).unwrap();
    let mut doc = String::from("# Orders\n\n");
    for i in 0..8 {
        doc.push_str(&format!(
            "## Shipment {i}\n\nThe parcel for customer number {} left the warehouse with the usual carrier.\n\n",
            1000 + i
        ));
    }
    doc.push_str("## Delayed\n\nOrder ORD-7731 is held at customs until the invoice arrives.\n\n");
    doc.push_str("## Refunds\n\nRefunds take five business days once the returned item arrives.\n");
    assert_completed(
        &k.upload(&source, "orders.md", doc.as_bytes(), None).await,
        &source,
    );
    let chunks = k.get_source(&source).await["chunk_count"].as_i64().unwrap();
    assert!((2..=64).contains(&chunks), "{chunks}");
    let hits = k.search(&[&source], "where is ORD-7731", 3).await;
    assert!(
        hits[0]["content"].as_str().unwrap().contains("ORD-7731"),
        "{hits:?}"
    );
    assert_eq!(hits[0]["keyword_score"], 1.0);
    assert_eq!(
        k.app.state.knowledge.resident_len(source_id),
        Some(chunks as usize),
        "searched from memory"
    );

    // The same questions through the database's indexes (a node holding nothing in memory)
    // find the same best chunk.
    let mut config = (*k.app.state.config).clone();
    config.knowledge.resident_chunks = 0;
    let backend = match b {
        Backend::Sqlite => cortex::store::Backend::Sqlite,
        Backend::Postgres => cortex::store::Backend::Postgres,
    };
    let indexed = cortex::knowledge::Knowledge::new(&config, backend).unwrap();
    let store = &k.app.state.store;
    let row = vec![store.get_source(company, source_id).await.unwrap().unwrap()];
    for question in [
        "where is ORD-7731",
        "status of ord-7731?",
        "how long do refunds take",
        "which parcel belongs to customer number 1003",
        "customs invoice",
    ] {
        let from_memory = k.search(&[&source], question, 3).await;
        let from_indexes = indexed
            .search(store, company, &row, question, 3)
            .await
            .unwrap();
        assert_eq!(
            from_memory[0]["chunk_id"].as_str(),
            Some(from_indexes[0].chunk_id.to_string().as_str()),
            "{question}: {from_memory:?}"
        );
        assert_eq!(indexed.resident_len(source_id), None);
    }

    // A second document is searched at once.
    let r = k
        .upload(
            &source,
            "customs.md",
            b"# Customs\n\nOrder ORD-9911 waits for a zanzibarite permit.\n",
            None,
        )
        .await;
    assert_completed(&r, &source);
    let document = r.body["document_id"].as_str().unwrap().to_owned();
    let hits = k.search(&[&source], "ORD-9911", 3).await;
    assert!(
        hits[0]["content"].as_str().unwrap().contains("ORD-9911"),
        "{hits:?}"
    );
    assert_eq!(
        k.app.state.knowledge.resident_len(source_id),
        Some(chunks as usize + 1)
    );
    // Replaced under the same name: the old content is gone, the new one found.
    let r = k
        .upload(
            &source,
            "customs.md",
            b"# Customs\n\nOrder ORD-5150 cleared customs today.\n",
            None,
        )
        .await;
    assert_completed(&r, &source);
    let hits = k.search(&[&source], "ORD-9911 zanzibarite", 20).await;
    assert!(
        hits.iter()
            .all(|h| !h["content"].as_str().unwrap().contains("ORD-9911")),
        "{hits:?}"
    );
    let hits = k.search(&[&source], "ORD-5150", 3).await;
    assert!(
        hits[0]["content"].as_str().unwrap().contains("ORD-5150"),
        "{hits:?}"
    );
    // Deleted: its chunks are not searched, the rest are.
    let r = k.delete_document(&source, &document).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let hits = k.search(&[&source], "ORD-5150 cleared", 20).await;
    assert!(
        hits.iter()
            .all(|h| !h["content"].as_str().unwrap().contains("ORD-5150")),
        "{hits:?}"
    );
    let hits = k.search(&[&source], "where is ORD-7731", 3).await;
    assert!(hits[0]["content"].as_str().unwrap().contains("ORD-7731"));
    assert_eq!(
        k.app.state.knowledge.resident_len(source_id),
        Some(chunks as usize)
    );
}
