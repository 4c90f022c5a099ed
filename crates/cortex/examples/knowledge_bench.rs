//! Knowledge ingestion throughput through the server's real path: isolated conversion worker
//! (`cortex __ingest-worker`) → structural chunking → embedding → one transaction of chunk rows
//! (SQLite) → embedded vector index saved to disk.
//!
//! ```sh
//! cargo build --release -p cortex --bin cortex --example knowledge_bench
//! target/release/examples/knowledge_bench [SECONDS_PER_INPUT] [LOCAL_MODEL_DIR]
//! ```
//!
//! Prints one Markdown table for the `hash` embedder (every fixture format plus two larger
//! inputs) and, with a model directory (e.g. `$(scripts/minilm-dir.sh)`), one for `local`.
//! "text MB/s" is Markdown produced by the conversion per second of the whole ingestion.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cortex::config::Config;
use cortex::knowledge::Knowledge;
use cortex::knowledge::model::SourceKind;
use cortex::store::{CompanyStore, KnowledgeStore, SqlStore};
use cortex_ingest::{Limits, convert, detect};

fn inputs() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cortex-ingest/tests/fixtures");
    let mut out: Vec<(String, Vec<u8>)> = [
        "guide.pdf",
        "guide.docx",
        "slides.pptx",
        "budget.xlsx",
        "budget.ods",
        "budget.xls",
        "budget.csv",
        "article.html",
        "guide.md",
        "guide.txt",
    ]
    .iter()
    .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
    .collect();
    let md = String::from_utf8(std::fs::read(dir.join("guide.md")).unwrap()).unwrap();
    let body = md.replace("---\ntitle: Cortex Field Guide\n---\n", "");
    out.push(("guide.md x200".into(), body.repeat(200).into_bytes()));
    let mut csv = String::from("Id,Customer,City,Balance,Note\n");
    for i in 0..20_000 {
        csv.push_str(&format!(
            "{i},Customer {i},City {},{}.50,\"note, with comma\"\n",
            i % 97,
            i * 3
        ));
    }
    out.push(("20k-row.csv".into(), csv.into_bytes()));
    out
}

async fn run(
    knowledge: &Knowledge,
    store: &SqlStore,
    company: uuid::Uuid,
    model: &str,
    inputs: &[(String, Vec<u8>)],
    budget: Duration,
) {
    println!("\n`{model}` embedder\n");
    println!(
        "| input | format | input KiB | text KiB | chunks | ingestions | ms/ingestion | text MB/s | chunks/s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, bytes) in inputs {
        let format = detect(name, bytes).unwrap();
        let text = convert(bytes, format, &Limits::default())
            .unwrap()
            .markdown_len();
        let source = store
            .create_source(company, name, SourceKind::File, None)
            .await
            .unwrap();
        let started = Instant::now();
        let mut runs = 0u32;
        let mut chunks = 0usize;
        while runs == 0 || started.elapsed() < budget {
            let done = knowledge
                .ingest_bytes(store, company, source.id, name, bytes, None, Some(model))
                .await
                .unwrap();
            chunks = done.chunks_created;
            runs += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {name} | {} | {:.1} | {:.1} | {chunks} | {runs} | {:.1} | {:.2} | {:.0} |",
            format.as_str(),
            bytes.len() as f64 / 1024.0,
            text as f64 / 1024.0,
            secs * 1000.0 / f64::from(runs),
            text as f64 * f64::from(runs) / secs / 1e6,
            chunks as f64 * f64::from(runs) / secs,
        );
    }
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let local_dir = std::env::args().nth(2);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.data_dir = dir.path().to_path_buf();
    // The worker is the release `cortex` binary next to this example's directory.
    let exe = std::env::current_exe().unwrap();
    let cortex = exe.parent().unwrap().parent().unwrap().join("cortex");
    assert!(
        cortex.is_file(),
        "build the worker first: cargo build --release -p cortex --bin cortex"
    );
    config.knowledge.worker_command = vec![
        cortex.display().to_string(),
        cortex::knowledge::WORKER_SUBCOMMAND.into(),
    ];
    if let Some(path) = &local_dir {
        config.embeddings = serde_json::from_value(serde_json::json!({
            "models": {"local": {"kind": "local", "path": path, "model_name": "all-MiniLM-L6-v2"}}
        }))
        .unwrap();
    }
    let store = SqlStore::connect(&config.effective_database_url())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let company = store.create_company("bench", "free").await.unwrap().id;
    let knowledge = Knowledge::new(&config, store.backend()).unwrap();
    let inputs = inputs();
    let budget = Duration::from_secs_f64(seconds);
    run(&knowledge, &store, company, "hash", &inputs, budget).await;
    if local_dir.is_some() {
        let small: Vec<_> = inputs
            .into_iter()
            .filter(|(n, _)| ["guide.pdf", "article.html", "guide.md x200"].contains(&n.as_str()))
            .collect();
        run(&knowledge, &store, company, "local", &small, budget).await;
    }
}
