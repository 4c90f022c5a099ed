//! Stage 05's answer cache as the number of an agent's entries grows (1,000 → 10,000 → 100,000
//! by default): lookup latency of exact hits, hits by similarity and misses, and store latency,
//! through `AnswerCache` with the default `hash` embedder, on SQLite (default; the in-memory
//! index) or PostgreSQL (`DATABASE_URL=postgres://…`; pgvector).
//!
//! `cargo run --release -p cortex --example cache_bench -- [--sizes 1000,10000,100000] [--probes 500]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a developer tool, not library code

use std::time::{Duration, Instant};

use cortex::config::Config;
use cortex::pipeline::cache::AnswerCache;
use cortex::store::{CompanyStore, SqlStore};
use uuid::Uuid;

fn pct(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    format!("{:.3} / {:.3}", at(0.5), at(0.99))
}

const PRODUCTS: &[&str] = &[
    "kettle", "toaster", "blender", "router", "laptop", "monitor", "printer", "headset", "camera",
    "speaker", "charger", "keyboard",
];
const ASKS: &[&str] = &[
    "How long is the warranty on the",
    "Can I return the",
    "Is there a discount on the",
    "Where can I repair the",
    "What colours does the",
    "How heavy is the",
];

/// The i-th distinct question: an ask, a product, and a model number.
fn question(i: usize) -> String {
    format!(
        "{} {} model {}?",
        ASKS[i % ASKS.len()],
        PRODUCTS[(i / ASKS.len()) % PRODUCTS.len()],
        1000 + i
    )
}

#[tokio::main]
async fn main() {
    let mut sizes = vec![1_000usize, 10_000, 100_000];
    let mut probes = 500usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--sizes" => {
                sizes = args
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|s| s.parse().unwrap())
                    .collect()
            }
            "--probes" => probes = args.next().unwrap().parse().unwrap(),
            _ => panic!("unknown argument {a}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.database_url = std::env::var("DATABASE_URL").ok();
    let store = SqlStore::connect(&config.effective_database_url())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let registry = cortex_embed::EmbedderRegistry::from_config(&config.embeddings).unwrap();
    let company = store
        .create_company(&format!("bench-{}", Uuid::new_v4()), "free")
        .await
        .unwrap()
        .id;
    let ttl = chrono::Duration::days(1);
    println!("backend: {:?}", store.backend());
    println!(
        "| entries | exact hit p50 / p99 ms | similar hit | miss | store | first lookup (index build) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        // A fresh cache per size, as a node that starts with n stored entries.
        let agent = Uuid::new_v4();
        let cache = AnswerCache::new(&registry, store.backend());
        for batch in (0..n).collect::<Vec<_>>().chunks(1000) {
            let pairs: Vec<(String, String)> = batch
                .iter()
                .map(|i| (question(*i), format!("Answer {i}.")))
                .collect();
            cache
                .store(&store, company, agent, &pairs, ttl)
                .await
                .unwrap();
        }
        // A node that starts with the n entries: its first lookup builds the index (an exact
        // copy at once, the graph in the background).
        let fresh = AnswerCache::new(&registry, store.backend());
        let t = Instant::now();
        fresh
            .lookup(&store, company, agent, "warm-up question", 0.75)
            .await
            .unwrap();
        let first = t.elapsed();
        drop(fresh);
        // The probes go to the node that stored them (its index grew with every store, as a
        // serving node's does): the steady state.
        let step = (n / probes).max(1);
        let mut exact = Vec::new();
        let mut similar = Vec::new();
        let mut missed = Vec::new();
        let mut similar_hits = 0;
        for k in 0..probes.min(n) {
            let i = k * step;
            let q = question(i);
            let t = Instant::now();
            let hit = cache
                .lookup(&store, company, agent, &q, 0.75)
                .await
                .unwrap();
            exact.push(t.elapsed());
            assert!(hit.is_some(), "{q}");
            // The same question reworded a little: found by similarity (and the guard).
            let reworded = format!("please, {}", q.to_lowercase().replace('?', ""));
            let t = Instant::now();
            let hit = cache
                .lookup(&store, company, agent, &reworded, 0.75)
                .await
                .unwrap();
            similar.push(t.elapsed());
            similar_hits += usize::from(hit.is_some_and(|(h, _)| h.question == q));
            let t = Instant::now();
            let hit = cache
                .lookup(
                    &store,
                    company,
                    agent,
                    &format!("Do you sell gift cards number {i}x?"),
                    0.75,
                )
                .await
                .unwrap();
            missed.push(t.elapsed());
            assert!(hit.is_none());
        }
        let mut stored = Vec::new();
        for k in 0..probes {
            let pair = [(question(n + k), format!("Answer {}.", n + k))];
            let t = Instant::now();
            cache
                .store(&store, company, agent, &pair, ttl)
                .await
                .unwrap();
            stored.push(t.elapsed());
        }
        println!(
            "| {n} | {} | {} ({similar_hits}/{} found) | {} | {} | {:.1} ms |",
            pct(exact),
            pct(similar),
            probes.min(n),
            pct(missed),
            pct(stored),
            first.as_secs_f64() * 1e3
        );
    }
}
