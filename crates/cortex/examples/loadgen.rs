//! Closed-loop load generator for the benchmarks: N concurrent clients POST a JSON body for a
//! fixed time and report throughput and latency percentiles; with `--stream`, also the time to
//! the first `text_delta` event.
//!
//! `cargo run --release -p cortex --example loadgen -- --url URL --body JSON [--header 'K: V']
//!  [--concurrency N] [--seconds S] [--stream] [--every S] [--rate R]`
//!
//! `{n}` in the body is replaced by a number unique to each request (unique questions), `{n12}`
//! by the same zero-padded to 12 digits (the last group of a UUID: one conversation each);
//! `--every S` also prints the throughput and latency of each S-second interval; `--rate R`
//! paces the clients to R requests per second in all (open loop: a slow answer does not slow
//! the next request's start, up to N in flight).
#![allow(clippy::disallowed_methods)] // a benchmark client, not the server
#![allow(clippy::unwrap_used, clippy::expect_used)] // a developer tool, not library code

use std::time::{Duration, Instant};

use futures::StreamExt;

struct Args {
    url: String,
    body: String,
    headers: Vec<(String, String)>,
    concurrency: usize,
    seconds: f64,
    stream: bool,
    every: Option<f64>,
    rate: Option<f64>,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        body: "{}".into(),
        headers: vec![],
        concurrency: 1,
        seconds: 10.0,
        stream: false,
        every: None,
        rate: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--url" => a.url = it.next().unwrap(),
            "--body" => a.body = it.next().unwrap(),
            "--header" => {
                let h = it.next().unwrap();
                let (k, v) = h.split_once(':').unwrap();
                a.headers.push((k.trim().into(), v.trim().into()));
            }
            "--concurrency" => a.concurrency = it.next().unwrap().parse().unwrap(),
            "--seconds" => a.seconds = it.next().unwrap().parse().unwrap(),
            "--stream" => a.stream = true,
            "--every" => a.every = Some(it.next().unwrap().parse().unwrap()),
            "--rate" => a.rate = Some(it.next().unwrap().parse().unwrap()),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.url.is_empty(), "--url is required");
    a
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(a.concurrency)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let started = Instant::now();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // (seconds since start, latency µs) of every request, for the per-interval report.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, u64)>::new()));
    let mut tasks = Vec::new();
    // Each client starts one request per `concurrency / rate` seconds, staggered.
    let period = a
        .rate
        .map(|r| Duration::from_secs_f64(a.concurrency as f64 / r));
    for i in 0..a.concurrency {
        let client = client.clone();
        let mut pace = period.map(|p| {
            let first = tokio::time::Instant::now() + p.mul_f64(i as f64 / a.concurrency as f64);
            let mut t = tokio::time::interval_at(first, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let (url, body, headers, stream) =
            (a.url.clone(), a.body.clone(), a.headers.clone(), a.stream);
        let (counter, log) = (counter.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut ttfd, mut errors) = (Vec::new(), Vec::new(), 0u64);
            while Instant::now() < deadline {
                if let Some(pace) = pace.as_mut() {
                    pace.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let t0 = Instant::now();
                let body = if body.contains("{n}") {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    body.replace("{n12}", &format!("{n:012}"))
                        .replace("{n}", &n.to_string())
                } else {
                    body.clone()
                };
                let mut rb = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body);
                for (k, v) in &headers {
                    rb = rb.header(k, v);
                }
                let Ok(resp) = rb.send().await else {
                    errors += 1;
                    continue;
                };
                if !resp.status().is_success() {
                    errors += 1;
                    let _ = resp.bytes().await;
                    continue;
                }
                if stream {
                    let mut s = resp.bytes_stream();
                    let mut first = None;
                    let mut ok = false;
                    while let Some(chunk) = s.next().await {
                        let Ok(chunk) = chunk else { break };
                        let text = String::from_utf8_lossy(&chunk);
                        if first.is_none() && text.contains("text_delta") {
                            first = Some(t0.elapsed());
                        }
                        if text.contains("event: complete") {
                            ok = true;
                        }
                    }
                    match (ok, first) {
                        (true, Some(f)) => ttfd.push(f.as_micros() as u64),
                        _ => {
                            errors += 1;
                            continue;
                        }
                    }
                } else if resp.bytes().await.is_err() {
                    errors += 1;
                    continue;
                }
                lat.push(t0.elapsed().as_micros() as u64);
                let at = started.elapsed().as_secs_f64();
                log.lock()
                    .unwrap()
                    .push((at, t0.elapsed().as_micros() as u64));
            }
            (lat, ttfd, errors)
        }));
    }
    let (mut lat, mut ttfd, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        let (l, f, e) = t.await.unwrap();
        lat.extend(l);
        ttfd.extend(f);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    ttfd.sort_unstable();
    let mut line = format!(
        "requests={} errors={} rps={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        lat.len(),
        errors,
        lat.len() as f64 / elapsed,
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 1.0)
    );
    if a.stream {
        line.push_str(&format!(
            " ttfd_p50_ms={:.2} ttfd_p99_ms={:.2}",
            pct(&ttfd, 0.5),
            pct(&ttfd, 0.99)
        ));
    }
    println!("{line}");
    if let Some(every) = a.every {
        let log = log.lock().unwrap();
        let mut start = 0.0;
        while start < elapsed {
            let mut window: Vec<u64> = log
                .iter()
                .filter(|(t, _)| *t >= start && *t < start + every)
                .map(|(_, l)| *l)
                .collect();
            window.sort_unstable();
            println!(
                "  [{:>5.0}s–{:>5.0}s] rps={:.0} p50_ms={:.2} p99_ms={:.2}",
                start,
                start + every,
                window.len() as f64 / every.min(elapsed - start),
                pct(&window, 0.5),
                pct(&window, 0.99)
            );
            start += every;
        }
    }
}
