//! Vector search benchmark: the embedded index ([`cortex_embed::VectorIndex`]) and pgvector
//! HNSW, on seeded random 384-d unit vectors.
//!
//! ```text
//! scripts/pgvector.sh   # PostgreSQL 16 + pgvector on 127.0.0.1:5433
//! cargo run --release -p cortex-embed --example vector_bench -- \
//!     [--sizes 10000,100000,1000000] [--queries 200] [--large-queries 200] \
//!     [--pg-url postgres://postgres@127.0.0.1:5433/test | --no-pg] [--pg-max 1000000] \
//!     [--pg-index-timeout 900] [--m 16] [--ef-construction 128] [--ef-search 64,128,256] \
//!     [--precision f32|bf16|i8] \
//!     [--data lowrank|uniform|clustered] [--out crates/cortex-embed/BENCH_RESULTS.md | --no-out] \
//!     [--append]
//! ```
//!
//! Reported per backend and size: build time (bulk load + index build), p50/p99 latency of
//! one top-10 query (sequential, after a warm-up), and recall@10 against exact search.

use std::collections::HashSet;
use std::error::Error;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cortex_embed::{GraphPrecision, IndexOptions, VectorIndex, l2_normalize};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Executor, Row as _};

type Res<T> = Result<T, Box<dyn Error>>;

const DIM: usize = 384;
const K: usize = 10;
const CLUSTERS: usize = 2_000;
const DATA_SEED: u64 = 0x00C0_47E7;
const QUERY_SEED: u64 = 0x0051_EA7C;
const WARMUP: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    /// Uniform on the sphere: the worst case for approximate search.
    Uniform,
    /// Gaussian clusters around random centres.
    Clustered,
    /// A random 32-dimensional subspace plus noise: low intrinsic dimension, like sentence
    /// embeddings.
    LowRank,
}

/// Intrinsic dimension of `Data::LowRank`.
const INTRINSIC: usize = 32;
/// Per-component noise of `Data::LowRank`, relative to the unit-variance signal.
const LOWRANK_NOISE: f32 = 0.3;

impl Data {
    fn describe(self) -> String {
        match self {
            Data::Uniform => format!(
                "uniform: seeded random unit vectors of dimension {DIM}, uniform on the sphere \
                 (normalised Gaussian noise); queries drawn the same way (not in the data set). \
                 The worst case for any approximate index: in 384 dimensions every vector is \
                 almost orthogonal to every other, so the true nearest neighbours are barely \
                 nearer than random ones."
            ),
            Data::Clustered => format!(
                "clustered: seeded random unit vectors of dimension {DIM} drawn around \
                 {CLUSTERS} random centres (cosine to the centre ≈ 0.7); queries drawn the same \
                 way (not in the data set)."
            ),
            Data::LowRank => format!(
                "lowrank (embedding-like): seeded random unit vectors of dimension {DIM} that \
                 lie near a random {INTRINSIC}-dimensional subspace (x = A·z + noise, z ~ \
                 N(0, I{INTRINSIC}), A a fixed random {DIM}×{INTRINSIC} matrix, per-component \
                 noise {LOWRANK_NOISE} of the signal's), then normalised; queries drawn the same \
                 way (not in the data set). Sentence embeddings likewise have a low intrinsic \
                 dimension."
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Data::Uniform => "uniform",
            Data::Clustered => "clustered",
            Data::LowRank => "lowrank",
        }
    }
}

struct Args {
    sizes: Vec<usize>,
    queries: usize,
    large_queries: usize,
    pg_url: Option<String>,
    pg_max: usize,
    pg_index_timeout: u64,
    m: usize,
    ef_construction: usize,
    ef_search: Vec<usize>,
    /// The embedded graph's precision.
    precision: GraphPrecision,
    data: Data,
    append: bool,
    out: Option<String>,
    /// Skip the embedded index rows: only the exact ground truth is computed (over an exact
    /// index) and pgvector is measured against it.
    pg_only: bool,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        sizes: vec![10_000, 100_000, 1_000_000],
        queries: 200,
        large_queries: 200,
        pg_url: Some(
            std::env::var("CORTEX_PGVECTOR_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/test".to_owned()),
        ),
        pg_max: usize::MAX,
        pg_index_timeout: 900,
        m: 16,
        ef_construction: 128,
        ef_search: vec![64, 128, 256],
        precision: GraphPrecision::F32,
        data: Data::LowRank,
        append: false,
        pg_only: false,
        out: Some("crates/cortex-embed/BENCH_RESULTS.md".to_owned()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            "--queries" => args.queries = value()?.parse()?,
            "--large-queries" => args.large_queries = value()?.parse()?,
            "--pg-url" => args.pg_url = Some(value()?),
            "--no-pg" => args.pg_url = None,
            "--pg-max" => args.pg_max = value()?.parse()?,
            "--pg-index-timeout" => args.pg_index_timeout = value()?.parse()?,
            "--m" => args.m = value()?.parse()?,
            "--ef-construction" => args.ef_construction = value()?.parse()?,
            "--ef-search" => {
                args.ef_search = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            "--precision" => {
                args.precision = match value()?.as_str() {
                    "f32" => GraphPrecision::F32,
                    "bf16" => GraphPrecision::BF16,
                    "i8" => GraphPrecision::I8,
                    other => return Err(format!("--precision f32|bf16|i8, not {other}").into()),
                }
            }
            "--data" => {
                args.data = match value()?.as_str() {
                    "uniform" => Data::Uniform,
                    "clustered" => Data::Clustered,
                    "lowrank" => Data::LowRank,
                    other => {
                        return Err(format!("--data lowrank|uniform|clustered, not {other}").into());
                    }
                }
            }
            "--append" => args.append = true,
            "--pg-only" => args.pg_only = true,
            "--out" => args.out = Some(value()?),
            "--no-out" => args.out = None,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(args)
}

/// Standard normal numbers (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` unit vectors drawn around `CLUSTERS` random centres (cosine to the centre ≈ 0.7),
/// which resembles sentence embeddings better than uniform noise. Flat, row-major.
fn clustered(centres: &[f32], n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let sigma = 1.0 / (DIM as f32).sqrt();
    let mut out = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let c = rng.random_range(0..CLUSTERS);
        let start = out.len();
        for j in 0..DIM {
            out.push(centres[c * DIM + j] + sigma * gaussian(&mut rng));
        }
        l2_normalize(&mut out[start..]);
    }
    out
}

/// `n` unit vectors uniformly distributed on the sphere (normalised Gaussian noise): the
/// hardest case for approximate search, as every vector is nearly orthogonal to the others.
fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let start = out.len();
        for _ in 0..DIM {
            out.push(gaussian(&mut rng));
        }
        l2_normalize(&mut out[start..]);
    }
    out
}

/// The fixed random basis of `Data::LowRank`, row-major `DIM × INTRINSIC`, scaled so that
/// every component of `A·z` has unit variance.
fn basis() -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(DATA_SEED ^ 0xBA5E);
    let scale = 1.0 / (INTRINSIC as f32).sqrt();
    (0..DIM * INTRINSIC)
        .map(|_| scale * gaussian(&mut rng))
        .collect()
}

fn lowrank(basis: &[f32], n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * DIM);
    let mut z = [0.0f32; INTRINSIC];
    for _ in 0..n {
        for x in z.iter_mut() {
            *x = gaussian(&mut rng);
        }
        let start = out.len();
        for row in basis.chunks_exact(INTRINSIC) {
            let signal: f32 = row.iter().zip(&z).map(|(a, b)| a * b).sum();
            out.push(signal + LOWRANK_NOISE * gaussian(&mut rng));
        }
        l2_normalize(&mut out[start..]);
    }
    out
}

fn centres() -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(DATA_SEED ^ 0xC3);
    let mut out = Vec::with_capacity(CLUSTERS * DIM);
    for _ in 0..CLUSTERS {
        let start = out.len();
        for _ in 0..DIM {
            out.push(gaussian(&mut rng));
        }
        l2_normalize(&mut out[start..]);
    }
    out
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn recall(truth: &[Vec<u64>], got: &[Vec<u64>]) -> f64 {
    let mut hits = 0usize;
    let mut total = 0usize;
    for (t, g) in truth.iter().zip(got) {
        let t: HashSet<u64> = t.iter().copied().collect();
        hits += g.iter().filter(|id| t.contains(id)).count();
        total += t.len();
    }
    hits as f64 / total.max(1) as f64
}

struct Row {
    backend: String,
    size: usize,
    build_s: f64,
    /// `None` for exact search.
    ef_search: Option<usize>,
    p50_ms: f64,
    p99_ms: f64,
    recall: f64,
    queries: usize,
    note: String,
}

/// Sorted latencies and result ids of every query, run one at a time after a warm-up.
fn measure<F>(qs: &[&[f32]], mut search: F) -> Res<(Vec<Duration>, Vec<Vec<u64>>)>
where
    F: FnMut(&[f32]) -> Res<Vec<u64>>,
{
    for q in qs.iter().cycle().take(WARMUP) {
        search(q)?;
    }
    let mut times = Vec::with_capacity(qs.len());
    let mut got = Vec::with_capacity(qs.len());
    for q in qs {
        let t = Instant::now();
        let ids = search(q)?;
        times.push(t.elapsed());
        got.push(ids);
    }
    times.sort();
    Ok((times, got))
}

/// Exact top-k for every query, on all cores.
fn ground_truth(index: &VectorIndex, queries: &[f32]) -> Res<Vec<Vec<u64>>> {
    let qs: Vec<&[f32]> = queries.chunks_exact(DIM).collect();
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1);
    let chunk = qs.len().div_ceil(threads).max(1);
    let parts: Vec<Vec<Vec<u64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = qs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|q| {
                            index
                                .exact_search(q, K)
                                .map(|r| r.into_iter().map(|x| x.0).collect::<Vec<u64>>())
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Result<Vec<_>, String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "ground truth thread panicked".to_owned())?
            })
            .collect::<Result<Vec<_>, String>>()
    })?;
    Ok(parts.into_iter().flatten().collect())
}

struct Embedded {
    rows: Vec<Row>,
    truth: Vec<Vec<u64>>,
    persistence: String,
}

fn bench_embedded(args: &Args, data: &[f32], n: usize, queries: &[f32]) -> Res<Embedded> {
    let options = IndexOptions {
        connectivity: args.m,
        expansion_add: args.ef_construction,
        precision: args.precision,
        ..IndexOptions::default()
    };
    let started = Instant::now();
    let mut index = VectorIndex::rebuild(
        DIM,
        options,
        data[..n * DIM]
            .chunks_exact(DIM)
            .enumerate()
            .map(|(i, v)| (i as u64, v)),
    )?;
    let build = started.elapsed().as_secs_f64();
    eprintln!(
        "embedded {n}: built in {build:.1}s (approximate: {})",
        index.is_approximate()
    );
    let started = Instant::now();
    let truth = ground_truth(&index, queries)?;
    eprintln!(
        "embedded {n}: exact ground truth in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let qs: Vec<&[f32]> = queries.chunks_exact(DIM).collect();
    let efs: Vec<Option<usize>> = if index.is_approximate() {
        args.ef_search.iter().copied().map(Some).collect()
    } else {
        vec![None]
    };
    let mut rows = Vec::new();
    for ef in efs {
        if let Some(ef) = ef {
            index.set_expansion_search(ef);
        }
        let (times, got) = measure(&qs, |q| {
            Ok(index.search(q, K)?.into_iter().map(|x| x.0).collect())
        })?;
        let row = Row {
            backend: if ef.is_some() {
                "embedded (HNSW)".to_owned()
            } else {
                "embedded (exact)".to_owned()
            },
            size: n,
            build_s: build,
            ef_search: ef,
            p50_ms: percentile(&times, 50.0),
            p99_ms: percentile(&times, 99.0),
            recall: recall(&truth, &got),
            queries: qs.len(),
            note: String::new(),
        };
        eprintln!(
            "embedded {n} ef {ef:?}: p50 {:.3} ms, p99 {:.3} ms, recall@10 {:.4}",
            row.p50_ms, row.p99_ms, row.recall
        );
        rows.push(row);
    }

    // Persistence: save, then load (the graph is read back, not rebuilt).
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.vidx");
    let t = Instant::now();
    index.save(&path)?;
    let save = t.elapsed();
    drop(index);
    let t = Instant::now();
    let loaded = VectorIndex::load(&path)?;
    let load = t.elapsed();
    let persistence = format!(
        "save {:.2} s, load {:.2} s ({} vectors, {})",
        save.as_secs_f64(),
        load.as_secs_f64(),
        loaded.len(),
        if loaded.is_approximate() {
            "exact vectors + HNSW graph"
        } else {
            "exact vectors"
        }
    );
    Ok(Embedded {
        rows,
        truth,
        persistence,
    })
}

fn vector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 11 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// One binary COPY row: (id bigint, embedding vector).
fn copy_row(buf: &mut Vec<u8>, id: i64, v: &[f32]) {
    buf.extend_from_slice(&2i16.to_be_bytes());
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&id.to_be_bytes());
    let len = 4 + 4 * v.len();
    buf.extend_from_slice(&(len as i32).to_be_bytes());
    buf.extend_from_slice(&(v.len() as i16).to_be_bytes());
    buf.extend_from_slice(&0i16.to_be_bytes());
    for x in v {
        buf.extend_from_slice(&x.to_be_bytes());
    }
}

async fn bench_pg(
    args: &Args,
    url: &str,
    data: &[f32],
    n: usize,
    queries: &[f32],
    truth: &[Vec<u64>],
) -> Res<Vec<Row>> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?;
    let mut conn = pool.acquire().await?;
    conn.execute("SET client_min_messages = warning").await?;
    conn.execute("DROP TABLE IF EXISTS cortex_bench").await?;
    conn.execute(
        "CREATE TABLE cortex_bench (id bigint PRIMARY KEY, embedding vector(384) NOT NULL)",
    )
    .await?;

    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY cortex_bench (id, embedding) FROM STDIN (FORMAT binary)")
        .await?;
    let mut buf = Vec::with_capacity(8 << 20);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for (i, v) in data[..n * DIM].chunks_exact(DIM).enumerate() {
        copy_row(&mut buf, i as i64, v);
        if buf.len() >= 8 << 20 {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(8 << 20);
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buf).await?;
    let copied = copy.finish().await?;
    let loaded = started.elapsed().as_secs_f64();
    eprintln!("pgvector {n}: copied {copied} rows in {loaded:.1}s");

    conn.execute("SET maintenance_work_mem = '4GB'").await?;
    conn.execute("SET max_parallel_maintenance_workers = 1")
        .await?;
    let t = Instant::now();
    conn.execute(AssertSqlSafe(format!(
        "CREATE INDEX cortex_bench_hnsw ON cortex_bench USING hnsw (embedding vector_cosine_ops) \
         WITH (m = {}, ef_construction = {})",
        args.m, args.ef_construction
    )))
    .await?;
    let indexed = t.elapsed().as_secs_f64();
    conn.execute("SET statement_timeout = 0").await?;
    eprintln!("pgvector {n}: HNSW built in {indexed:.1}s");
    conn.execute("ANALYZE cortex_bench").await?;
    let size: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('cortex_bench')")
        .fetch_one(&mut *conn)
        .await?;

    let sql = "SELECT id FROM cortex_bench ORDER BY embedding <=> $1::vector LIMIT 10";
    let texts: Vec<String> = queries.chunks_exact(DIM).map(vector_text).collect();
    let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!("EXPLAIN {sql}")))
        .bind(&texts[0])
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    let uses_index = plan.iter().any(|l| l.contains("cortex_bench_hnsw"));
    if !uses_index {
        eprintln!("pgvector {n}: WARNING the plan does not use the HNSW index: {plan:?}");
    }

    let mut rows = Vec::new();
    for &ef in &args.ef_search {
        conn.execute(AssertSqlSafe(format!("SET hnsw.ef_search = {ef}")))
            .await?;
        // The queries are async; time them one by one on this connection.
        let mut times = Vec::with_capacity(texts.len());
        let mut got = Vec::with_capacity(texts.len());
        for (i, q) in texts.iter().cycle().take(WARMUP + texts.len()).enumerate() {
            let t = Instant::now();
            let result = sqlx::query(sql).bind(q).fetch_all(&mut *conn).await?;
            let elapsed = t.elapsed();
            if i >= WARMUP {
                times.push(elapsed);
                got.push(
                    result
                        .iter()
                        .map(|r| r.try_get::<i64, _>(0).map(|id| id as u64))
                        .collect::<Result<Vec<u64>, _>>()?,
                );
            }
        }
        times.sort();
        // `cycle` starts over at query 0 after the warm-up, so `got` lines up with `truth`
        // only when rotated back.
        let offset = WARMUP % texts.len();
        got.rotate_right(offset);
        let row = Row {
            backend: "pgvector (HNSW)".to_owned(),
            size: n,
            build_s: loaded + indexed,
            ef_search: Some(ef),
            p50_ms: percentile(&times, 50.0),
            p99_ms: percentile(&times, 99.0),
            recall: recall(truth, &got),
            queries: texts.len(),
            note: format!(
                "COPY {loaded:.1} s + CREATE INDEX {indexed:.1} s; table+index {:.0} MB{}",
                size as f64 / 1e6,
                if uses_index {
                    ""
                } else {
                    "; plan did NOT use the index"
                }
            ),
        };
        eprintln!(
            "pgvector {n} ef {ef}: p50 {:.3} ms, p99 {:.3} ms, recall@10 {:.4}",
            row.p50_ms, row.p99_ms, row.recall
        );
        rows.push(row);
    }
    conn.execute("DROP TABLE cortex_bench").await?;
    Ok(rows)
}

/// The 1/5/15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let total = Instant::now();
    let load_before = loadavg();
    let max = args.sizes.iter().copied().max().unwrap_or(0);
    let t = Instant::now();
    let query_count = args.queries.max(args.large_queries);
    let (data, all_queries) = match args.data {
        Data::Clustered => {
            let centres = centres();
            (
                clustered(&centres, max, DATA_SEED),
                clustered(&centres, query_count, QUERY_SEED),
            )
        }
        Data::Uniform => (uniform(max, DATA_SEED), uniform(query_count, QUERY_SEED)),
        Data::LowRank => {
            let basis = basis();
            (
                lowrank(&basis, max, DATA_SEED),
                lowrank(&basis, query_count, QUERY_SEED),
            )
        }
    };
    eprintln!(
        "generated {max} vectors + {query_count} queries in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut rows = Vec::new();
    let mut persistence = Vec::new();
    let mut pg_notes = Vec::new();
    for &n in &args.sizes {
        let nq = if n >= 1_000_000 {
            args.large_queries
        } else {
            args.queries
        };
        let queries = &all_queries[..nq * DIM];
        if args.pg_only {
            let started = Instant::now();
            let exact = VectorIndex::rebuild(
                DIM,
                IndexOptions {
                    exact_threshold: usize::MAX,
                    ..IndexOptions::default()
                },
                data[..n * DIM]
                    .chunks_exact(DIM)
                    .enumerate()
                    .map(|(i, v)| (i as u64, v)),
            )?;
            let truth = ground_truth(&exact, queries)?;
            drop(exact);
            eprintln!(
                "exact ground truth for {n} in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            let url = args.pg_url.as_deref().ok_or("--pg-only needs PostgreSQL")?;
            rows.extend(runtime.block_on(bench_pg(&args, url, &data, n, queries, &truth))?);
            continue;
        }
        let embedded = bench_embedded(&args, &data, n, queries)?;
        rows.extend(embedded.rows);
        persistence.push(format!(
            "- {} vectors: {}",
            thousands(n),
            embedded.persistence
        ));
        let truth = embedded.truth;
        if let Some(url) = &args.pg_url {
            if n > args.pg_max {
                pg_notes.push(format!(
                    "- pgvector at {} vectors: not run (--pg-max {}).",
                    thousands(n),
                    thousands(args.pg_max)
                ));
                continue;
            }
            match runtime.block_on(bench_pg(&args, url, &data, n, queries, &truth)) {
                Ok(pg_rows) => rows.extend(pg_rows),
                Err(e) => {
                    eprintln!("pgvector {n}: failed: {e}");
                    pg_notes.push(format!(
                        "- pgvector at {} vectors failed: {e}",
                        thousands(n)
                    ));
                }
            }
        }
    }

    let mut table = String::new();
    table.push_str(
        "| backend | vectors | build (s) | ef_search | p50 (ms) | p99 (ms) | recall@10 | queries | notes |\n",
    );
    table.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in &rows {
        let _ = writeln!(
            table,
            "| {} | {} | {:.1} | {} | {:.3} | {:.3} | {:.4} | {} | {} |",
            r.backend,
            thousands(r.size),
            r.build_s,
            r.ef_search
                .map_or_else(|| "exact".to_owned(), |e| e.to_string()),
            r.p50_ms,
            r.p99_ms,
            r.recall,
            r.queries,
            r.note
        );
    }
    println!("{table}");
    let elapsed = total.elapsed().as_secs_f64();
    eprintln!("total {elapsed:.0}s");

    if let Some(out) = &args.out {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let cores = std::thread::available_parallelism()
            .map(std::num::NonZeroUsize::get)
            .unwrap_or(1);
        let mut doc = if args.append {
            std::fs::read_to_string(out).unwrap_or_default()
        } else {
            format!(
                "# Vector search benchmark\n\n\
                 Generated by `cargo run --release -p cortex-embed --example vector_bench`.\n\n\
                 - Machine: {cores} cores ({cpu}).\n\
                 - Latency: one top-{K} query at a time after {WARMUP} warm-up queries; \
                 pgvector times include the loopback round trip and parsing the query vector.\n\
                 - Recall@{K}: share of the exact top {K} (brute force over the same vectors) \
                 found.\n\
                 - The embedded index is exact below {} vectors (its default threshold) and uses \
                 HNSW (usearch 2.26, f32, inner product, built with {cores} threads) above.\n\
                 - pgvector: PostgreSQL 16 + pgvector 0.6.2 from `scripts/pgvector.sh`, \
                 `vector(384)` column, `USING hnsw (embedding vector_cosine_ops)`, loaded with \
                 binary COPY into a logged table, `maintenance_work_mem = 4GB`, \
                 `max_parallel_maintenance_workers = 1`; build = COPY + CREATE INDEX.\n",
                IndexOptions::default().exact_threshold,
            )
        };
        let _ = write!(
            doc,
            "\n## Data: {}\n\n\
             `vector_bench {}` — run time {elapsed:.0} s (data generation, builds, exact \
             ground truth, queries); load average {load_before} before the run, {} after \
             (the machine is shared, other builds may have run concurrently). HNSW on both \
             backends: M = {}, ef_construction = {}.\n\n\
             - {}\n\n\
             {table}\n\
             Embedded index persistence (`VectorIndex::save` / `VectorIndex::load`, the graph is \
             read back rather than rebuilt):\n\n{}\n",
            args.data.name(),
            std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            loadavg(),
            args.m,
            args.ef_construction,
            args.data.describe(),
            persistence.join("\n"),
        );
        if !pg_notes.is_empty() {
            let _ = write!(doc, "\n{}\n", pg_notes.join("\n"));
        }
        std::fs::write(out, doc)?;
        eprintln!("wrote {out}");
    }
    Ok(())
}
