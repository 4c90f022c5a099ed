//! Benchmark of the sandbox (see `scripts/bench-sandbox.sh`): the latency of one isolated
//! command against the same command spawned without isolation, sequentially and 4 at a time;
//! and how listing and uploading into a workspace grow with its file count (100, 1,000,
//! 10,000 files).
//!
//! `cargo run --release -p cortex --example sandbox_bench -- [--commands N]`
#![allow(clippy::disallowed_methods)] // a benchmark client, not the server
#![allow(clippy::unwrap_used, clippy::expect_used)] // a developer tool, not library code

use std::sync::Arc;
use std::time::{Duration, Instant};

use cortex::sandbox::{Isolation, Sandbox};
use uuid::Uuid;

fn pct(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    format!(
        "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms (n={})",
        at(0.5),
        at(0.95),
        at(0.99),
        v.len()
    )
}

async fn plain(n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let s = tokio::process::Command::new("/bin/bash")
            .args(["-c", "true"])
            .status()
            .await
            .unwrap();
        assert!(s.success());
        out.push(t.elapsed());
    }
    out
}

async fn isolated(sb: &Arc<Sandbox>, n: usize, parallel: usize) -> (Vec<Duration>, Duration) {
    let company = Uuid::new_v4();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let sb = sb.clone();
        let ws = sb.workspace(company, Uuid::new_v4());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..n / parallel {
                let t = Instant::now();
                let r = sb.run(&ws, "true", Duration::from_secs(30)).await.unwrap();
                assert_eq!(r.exit_code, Some(0), "{r:?}");
                out.push(t.elapsed());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, started.elapsed())
}

#[tokio::main]
async fn main() {
    let mut n = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--commands" {
            n = args.next().unwrap().parse().unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = cortex::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let sb = Arc::new(Sandbox::start(&config, "bench").await);
    assert_eq!(
        sb.isolation(),
        &Isolation::Bubblewrap,
        "the sandbox does not work here: {}",
        sb.health()
    );
    println!("## one command (`true`), sequential");
    println!("plain bash:      {}", pct(plain(n).await));
    let (seq, _) = isolated(&sb, n, 1).await;
    println!("bubblewrap:      {}", pct(seq));
    let (par, wall) = isolated(&sb, n, 4).await;
    println!(
        "bubblewrap c=4:  {}; {:.0} commands/s",
        pct(par),
        n as f64 / wall.as_secs_f64()
    );

    println!(
        "\n## a workspace with N files: list (whole tree), upload one file (usage walk + write)"
    );
    for files in [100usize, 1_000, 10_000] {
        let ws = sb.workspace(Uuid::new_v4(), Uuid::new_v4());
        let w = ws.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..files {
                w.write(
                    &format!("d{}/f{i}.txt", i % 20),
                    b"0123456789",
                    100,
                    1 << 40,
                )
                .unwrap();
            }
        })
        .await
        .unwrap();
        let mut lists = Vec::new();
        let mut uploads = Vec::new();
        for i in 0..20 {
            let w = ws.clone();
            let t = Instant::now();
            let listed = tokio::task::spawn_blocking(move || w.list("").unwrap())
                .await
                .unwrap();
            lists.push(t.elapsed());
            assert_eq!(listed.len(), files + i);
            let w = ws.clone();
            let t = Instant::now();
            tokio::task::spawn_blocking(move || {
                let used = w.usage().unwrap();
                assert!(used > 0);
                w.place("upload.csv", b"a,b\n").unwrap()
            })
            .await
            .unwrap();
            uploads.push(t.elapsed());
        }
        println!("{files:>6} files: list {}", pct(lists));
        println!("{files:>6} files: upload {}", pct(uploads));
    }
}
