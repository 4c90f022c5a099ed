//! Benchmark of agent runs against a running server (see `scripts/bench-runs.sh`):
//! `/v1/agent/start` latency at concurrency 1 and 32, start → first event / first text at a
//! viewer, N concurrent viewers over M runs (server memory per viewer, CPU, events lost), and
//! resume latency (`Last-Event-ID`).
//!
//! `cargo run --release -p cortex --example runs_bench -- --api URL --key KEY --fake URL
//!  --server-pid PID [--starts N] [--runs M] [--viewers-per-run V]`
#![allow(clippy::disallowed_methods)] // a benchmark client, not the server
#![allow(clippy::unwrap_used, clippy::expect_used)] // a developer tool, not library code

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

struct Args {
    api: String,
    key: String,
    fake: String,
    pid: u32,
    starts: usize,
    runs: usize,
    viewers: usize,
    /// Only the start-latency phase (e.g. with a slow model, to measure starts alone).
    starts_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        api: String::new(),
        key: String::new(),
        fake: String::new(),
        pid: 0,
        starts: 400,
        runs: 100,
        viewers: 100,
        starts_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap();
        match flag.as_str() {
            "--api" => a.api = v,
            "--key" => a.key = v,
            "--fake" => a.fake = v,
            "--server-pid" => a.pid = v.parse().unwrap(),
            "--starts" => a.starts = v.parse().unwrap(),
            "--runs" => a.runs = v.parse().unwrap(),
            "--viewers-per-run" => a.viewers = v.parse().unwrap(),
            "--starts-only" => a.starts_only = v == "true",
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn multipart(prompt: &str) -> (String, Vec<u8>) {
    let b = "benchboundary7f3a";
    let body = format!(
        "--{b}\r\ncontent-disposition: form-data; name=\"prompt\"\r\n\r\n{prompt}\r\n--{b}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    )
}

async fn start(c: &reqwest::Client, a: &Args, prompt: &str) -> Result<(String, Duration), String> {
    let (ct, body) = multipart(prompt);
    let t = Instant::now();
    let r = c
        .post(format!("{}/v1/agent/start", a.api))
        .header("x-api-key", &a.key)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if status != 200 {
        return Err(format!("{status}: {v}"));
    }
    Ok((v["agent_run_id"].as_str().unwrap().to_string(), took))
}

/// What a viewer saw: ids in order, whether it ended with a final status, and when the first
/// event and the first `text_delta` arrived.
#[derive(Default)]
struct Seen {
    ids: Vec<u64>,
    ended: bool,
    first_event: Option<Duration>,
    first_text: Option<Duration>,
}

async fn view(c: &reqwest::Client, a: &Args, run: &str, last: Option<u64>, since: Instant) -> Seen {
    let mut rb = c
        .get(format!("{}/v1/agent-run/{run}/stream", a.api))
        .header("x-api-key", &a.key);
    if let Some(l) = last {
        rb = rb.header("last-event-id", l.to_string());
    }
    let mut seen = Seen::default();
    let Ok(resp) = rb.send().await else {
        return seen;
    };
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut name = "";
            let mut data = "";
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    name = v;
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v;
                }
            }
            let Some(id) = id else { continue };
            seen.first_event.get_or_insert(since.elapsed());
            if name == "text_delta" {
                seen.first_text.get_or_insert(since.elapsed());
            }
            seen.ids.push(id);
            if name == "status" && !data.contains("\"running\"") {
                seen.ended = true;
                return seen;
            }
        }
    }
    seen
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main]
async fn main() {
    let a = Arc::new(args());
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    // 1. Start latency at concurrency 1 and 32 (instant model: runs end in milliseconds).
    for conc in [1usize, 32] {
        let n = if conc == 1 {
            a.starts / 2
        } else {
            a.starts * 2
        };
        let t = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = (0..conc).map(|_| {
            let (c, a, next) = (c.clone(), a.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                    match start(&c, &a, "Summarise the quarterly report in three points").await {
                        Ok((_, d)) => lat.push(d.as_secs_f64() * 1000.0),
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("start failed: {e}");
                            }
                        }
                    }
                }
                (lat, errors)
            })
        });
        let mut lat = Vec::new();
        let mut errors = 0;
        for r in futures::future::join_all(tasks).await {
            let (l, e) = r.unwrap();
            lat.extend(l);
            errors += e;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "start conc={conc} n={} starts_per_s={:.0} p50_ms={:.2} p99_ms={:.2} errors={errors}",
            lat.len(),
            lat.len() as f64 / secs,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    if a.starts_only {
        return;
    }

    // 2. Start → first event and first text at a viewer (sequential).
    let mut first_event = Vec::new();
    let mut first_text = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        let (run, _) = start(&c, &a, "Say hello").await.unwrap();
        let seen = view(&c, &a, &run, None, t).await;
        first_event.push(seen.first_event.unwrap().as_secs_f64() * 1000.0);
        if let Some(d) = seen.first_text {
            first_text.push(d.as_secs_f64() * 1000.0);
        }
    }
    println!(
        "first_event p50_ms={:.2} p99_ms={:.2} first_text p50_ms={:.2} p99_ms={:.2}",
        pct(&mut first_event, 0.5),
        pct(&mut first_event, 0.99),
        pct(&mut first_text, 0.5),
        pct(&mut first_text, 0.99)
    );

    // 3. Many viewers over slow runs: each run streams 200 words, one every 50 ms (~10 s).
    let words: String = (0..200).map(|i| format!("w{i} ")).collect();
    let step = json!({"type": "text", "text": words, "chunk_delay_ms": 50, "times": a.runs});
    c.post(format!("{}/_admin/script", a.fake.trim_end_matches("/v1")))
        .json(&json!([step]))
        .send()
        .await
        .unwrap();
    let rss_before = rss_kb(a.pid);
    let mut runs = Vec::new();
    for i in 0..a.runs {
        runs.push(start(&c, &a, &format!("long run {i}")).await.unwrap().0);
    }
    let cpu0 = cpu_secs(a.pid);
    let wall0 = Instant::now();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let (peak, pid) = (peak.clone(), a.pid);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kb(pid), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut viewers = Vec::with_capacity(runs.len() * a.viewers);
    for run in &runs {
        for _ in 0..a.viewers {
            let (c, a, run) = (c.clone(), a.clone(), run.clone());
            viewers.push(tokio::spawn(async move {
                let seen = view(&c, &a, &run, None, Instant::now()).await;
                (run, seen)
            }));
        }
    }
    let results = futures::future::join_all(viewers).await;
    let cpu = cpu_secs(a.pid) - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    sampler.abort();
    let rss_peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    // Events lost: compare every viewer with the stored sequence (a replay after the end).
    let mut stored = std::collections::HashMap::new();
    for run in &runs {
        let seen = view(&c, &a, run, None, Instant::now()).await;
        stored.insert(run.clone(), seen.ids.len());
    }
    let (mut lost, mut incomplete, mut gaps) = (0usize, 0usize, 0usize);
    for r in &results {
        let (run, seen) = r.as_ref().unwrap();
        let want = stored[run];
        lost += want.saturating_sub(seen.ids.len());
        incomplete += usize::from(!seen.ended);
        gaps += usize::from(
            seen.ids
                .iter()
                .enumerate()
                .any(|(i, id)| *id != i as u64 + 1),
        );
    }
    let n = results.len();
    println!(
        "viewers n={n} runs={} rss_before_kb={rss_before} rss_peak_kb={rss_peak} per_viewer_kb={:.1} server_cpu_s={cpu:.2} wall_s={wall:.2} cpu_pct={:.0} events_lost={lost} incomplete={incomplete} gapped={gaps} events_per_viewer={}",
        runs.len(),
        (rss_peak.saturating_sub(rss_before)) as f64 / n as f64,
        cpu / wall * 100.0,
        stored.values().next().copied().unwrap_or(0),
    );

    // 4. Resume latency: reconnect halfway through a finished run's events.
    let mut resume = Vec::new();
    for run in runs.iter().take(100) {
        let half = stored[run] as u64 / 2;
        let t = Instant::now();
        let seen = view(&c, &a, run, Some(half), t).await;
        assert_eq!(seen.ids.first().copied(), Some(half + 1));
        resume.push(seen.first_event.unwrap().as_secs_f64() * 1000.0);
    }
    println!(
        "resume p50_ms={:.2} p99_ms={:.2}",
        pct(&mut resume, 0.5),
        pct(&mut resume, 0.99)
    );
}
