//! Stage 03's retrieval at scale: one source of N chunks (30,000 and 300,000 by default), code-like
//! and prose queries through `Knowledge::search` (vector + full-text, as a chat does), the
//! full-text look-up alone, and the `LIKE` scan it replaced, on SQLite (default) or PostgreSQL
//! (`DATABASE_URL=postgres://…`).
//!
//! `cargo run --release -p cortex --example search_bench -- [--sizes 30000,300000] [--queries 50] [--bulk] [--existing]`
//!
//! `--bulk` (PostgreSQL): the 384-d HNSW index is dropped before the rows are written and built
//! again from its own definition afterwards (as a bulk load would; writing 1M rows through the
//! graph one at a time takes hours on two cores). The index searched is the same either way.
//! `--existing`: measure the sources of these sizes that an earlier run left in the database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a developer tool, not library code

use std::time::{Duration, Instant};

use cortex::config::Config;
use cortex::knowledge::Knowledge;
use cortex::knowledge::model::{Source, SourceKind};
use cortex::store::{Backend, CompanyStore, KnowledgeStore, SqlStore};

fn pct(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    format!("{:.2} / {:.2}", at(0.5), at(0.99))
}

async fn timed<F, Fut, T>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        out.push(t.elapsed());
    }
    out
}

/// A new source of `n` chunks for `company` (see the module's comment), written straight to the
/// table.
async fn fill(
    store: &SqlStore,
    knowledge: &Knowledge,
    pool: &sqlx::AnyPool,
    company: uuid::Uuid,
    n: usize,
    bulk: bool,
) -> Source {
    let backend = store.backend();
    let source = store
        .create_source(company, &format!("catalogue {n}"), SourceKind::File, None)
        .await
        .unwrap();
    knowledge
        .ingest_bytes(
            store,
            company,
            source.id,
            "intro.md",
            b"# Intro\n\nWelcome to the catalogue of shelves and boxes.\n",
            None,
            Some("hash"),
        )
        .await
        .unwrap();
    let fill = match backend {
        Backend::Sqlite => concat!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) ",
            "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content, heading_path, page, ",
            "locator, token_count, model_id, dimension, vector, created_at) ",
            "SELECT printf('%08d-0000-4000-8000-%012d', abs(random()) % 100000000, i), c.company_id, c.source_id, 1000000 + i, 1000 + i, ",
            "'Item ' || i || ': SKU-' || (1000000 + i) || ' is a ' || (CASE i % 4 WHEN 0 THEN 'steel shelf' WHEN 1 THEN 'cardboard box' ",
            "WHEN 2 THEN 'wooden crate' ELSE 'plastic bin' END) || ' kept in aisle ' || (i % 97) || ' of the warehouse.', ",
            "c.heading_path, c.page, c.locator, c.token_count, c.model_id, c.dimension, c.vector, c.created_at ",
            "FROM n, (SELECT * FROM knowledge_chunks WHERE source_id = $1 LIMIT 1) c"
        ),
        Backend::Postgres => concat!(
            "INSERT INTO knowledge_chunks (id, company_id, source_id, vec_id, seq, content, heading_path, page, ",
            "locator, token_count, model_id, dimension, vector, embedding, created_at) ",
            "SELECT gen_random_uuid()::text, c.company_id, c.source_id, 1000000 + i, 1000 + i, ",
            "'Item ' || i || ': SKU-' || (1000000 + i) || ' is a ' || (CASE i % 4 WHEN 0 THEN 'steel shelf' WHEN 1 THEN 'cardboard box' ",
            "WHEN 2 THEN 'wooden crate' ELSE 'plastic bin' END) || ' kept in aisle ' || (i % 97) || ' of the warehouse.', ",
            // A vector of its own per row, so the HNSW index is a real graph.
            "c.heading_path, c.page, c.locator, c.token_count, c.model_id, c.dimension, c.vector, ",
            // (`d` keeps the aggregate in the subquery: with only the outer `i` it would be
            // the outer query's aggregate.)
            "(SELECT CAST(array_agg(random() - 0.5 + 0 * i + 0 * d) AS vector) FROM generate_series(1, 384) AS g(d)), ",
            "c.created_at ",
            "FROM generate_series(1, $2) AS n(i), (SELECT * FROM knowledge_chunks WHERE source_id = $1 LIMIT 1) c"
        ),
    };
    let bulk = bulk && backend == Backend::Postgres;
    let index_def = if bulk {
        let (def,): (String,) = sqlx::query_as(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'knowledge_chunks_hnsw_384'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        sqlx::query("DROP INDEX knowledge_chunks_hnsw_384")
            .execute(pool)
            .await
            .unwrap();
        Some(def)
    } else {
        None
    };
    let t = Instant::now();
    sqlx::query(fill)
        .bind(source.id.to_string())
        .bind(n as i64)
        .execute(pool)
        .await
        .unwrap();
    if let Some(def) = index_def {
        eprintln!("{n} rows written in {:.1} s", t.elapsed().as_secs_f64());
        let built = Instant::now();
        // The definition is the index's own, read from `pg_indexes` above.
        sqlx::query(sqlx::AssertSqlSafe(def.clone()))
            .execute(pool)
            .await
            .unwrap();
        eprintln!(
            "HNSW index built in {:.1} s ({def})",
            built.elapsed().as_secs_f64()
        );
    }
    if backend == Backend::Postgres {
        // The source's count as ingestion would keep it, so a search takes the HNSW path
        // (the embedded index on SQLite keeps its one vector: the count stays).
        sqlx::query("UPDATE knowledge_sources SET chunk_count = chunk_count + $1 WHERE id = $2")
            .bind(n as i64)
            .bind(source.id.to_string())
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("ANALYZE knowledge_chunks")
            .execute(pool)
            .await
            .unwrap();
    }
    eprintln!("{n} chunks written in {:.1} s", t.elapsed().as_secs_f64());
    source
}

#[tokio::main]
async fn main() {
    let mut sizes = vec![30_000usize, 300_000];
    let mut queries = 50usize;
    let mut bulk = false;
    let mut existing = false;
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
            "--queries" => queries = args.next().unwrap().parse().unwrap(),
            "--bulk" => bulk = true,
            "--existing" => existing = true,
            _ => panic!("unknown argument {a}"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.database_url = std::env::var("DATABASE_URL").ok();
    // The conversion worker is the release `cortex` binary next to this example's directory.
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
    let store = SqlStore::connect(&config.effective_database_url())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let backend = store.backend();
    // A pool of its own for the bulk insert and the LIKE baseline (the store's is internal).
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(&config.effective_database_url())
        .await
        .unwrap();
    let knowledge = Knowledge::new(&config, backend).unwrap();
    let company = store
        .create_company(&format!("bench-{}", uuid::Uuid::new_v4()), "free")
        .await
        .unwrap()
        .id;
    println!("backend: {backend:?}");
    println!(
        "| chunks | code query: search p50 / p99 ms | prose query: search | full-text alone (code) | LIKE scan (code, replaced) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for n in sizes {
        // `--existing`: the source a previous run wrote (rows and index as they are).
        let found: Option<(String, String)> = if existing {
            sqlx::query_as(
                "SELECT company_id, id FROM knowledge_sources WHERE name = $1 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(format!("catalogue {n}"))
            .fetch_optional(&pool)
            .await
            .unwrap()
        } else {
            None
        };
        let (company, source) = match found {
            Some((c, s)) => {
                let c: uuid::Uuid = c.parse().unwrap();
                let source = store
                    .get_source(c, s.parse().unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                (c, source)
            }
            None => (
                company,
                fill(&store, &knowledge, &pool, company, n, bulk).await,
            ),
        };
        let sources = vec![store.get_source(company, source.id).await.unwrap().unwrap()];
        let code = |i: usize| format!("where is SKU-{}?", 1_000_001 + (i * 7919) % n);
        // Warm up (and, on SQLite, let the embedded index load).
        knowledge
            .search(&store, company, &sources, &code(0), 5)
            .await
            .unwrap();
        let search_code = timed(queries, |i| {
            let q = code(i);
            let (k, s, src) = (&knowledge, &store, &sources);
            async move {
                let hits = k.search(s, company, src, &q, 5).await.unwrap();
                assert!(
                    hits[0].content.contains(&q[9..20]),
                    "{q}: {:?}",
                    hits[0].content
                );
            }
        })
        .await;
        let prose = [
            "which aisle keeps the wooden crates",
            "do you sell steel shelves",
            "plastic bins for the warehouse",
        ];
        // Hits each prose query got (its words are too common for the full-text side: every
        // hit is the vector side's; fewer than 5 means the index returned too few of the source).
        let prose_hits = std::cell::Cell::new(0usize);
        let search_prose = timed(queries, |i| {
            let (k, s, src, hits) = (&knowledge, &store, &sources, &prose_hits);
            async move {
                let found = k
                    .search(s, company, src, prose[i % prose.len()], 5)
                    .await
                    .unwrap();
                hits.set(hits.get() + found.len());
            }
        })
        .await;
        eprintln!(
            "prose queries: {:.2} hits of 5 on average",
            prose_hits.get() as f64 / queries as f64
        );
        if std::env::var("SEARCH_BENCH_SLOWEST").is_ok() {
            let mut slow: Vec<(usize, &Duration)> = search_prose.iter().enumerate().collect();
            slow.sort_by(|a, b| b.1.cmp(a.1));
            eprintln!("slowest prose queries (index, time): {:?}", &slow[..5]);
        }
        let fts = timed(queries, |i| {
            let q = format!("SKU-{}", 1_000_001 + (i * 7919) % n);
            let s = &store;
            let id = source.id;
            async move {
                let found = s.chunks_matching(company, id, &[], &[q], 20).await.unwrap();
                assert_eq!(found.len(), 1);
            }
        })
        .await;
        let like = timed(queries.min(10), |i| {
            let q = format!("%sku-{}%", 1_000_001 + (i * 7919) % n);
            let p = &pool;
            let id = source.id;
            async move {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT id FROM knowledge_chunks WHERE company_id = $1 AND source_id = $2 \
                     AND LOWER(content) LIKE $3 ORDER BY seq LIMIT 20",
                )
                .bind(company.to_string())
                .bind(id.to_string())
                .bind(q)
                .fetch_all(p)
                .await
                .unwrap();
                assert_eq!(rows.len(), 1);
            }
        })
        .await;
        println!(
            "| {n} | {} | {} | {} | {} |",
            pct(search_code),
            pct(search_prose),
            pct(fts),
            pct(like)
        );
    }
}
