//! Load generator to check the fake's own throughput.
//!
//! `cargo run --release -p cortex-fakellm --example fake_loadgen -- URL [SECONDS] [CONCURRENCY] [stream]`
//! where URL is a base URL such as `http://127.0.0.1:PORT/v1`; prints requests per second.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a developer tool, not library code

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .expect("usage: fake_loadgen URL [SECONDS] [CONCURRENCY] [stream]")
        .clone();
    let secs: u64 = args.get(2).map_or(5, |s| s.parse().unwrap());
    let conc: usize = args.get(3).map_or(32, |s| s.parse().unwrap());
    let stream = args.get(4).is_some_and(|s| s == "stream");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = json!({
        "model": "bench", "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for a shop."},
            {"role": "user", "content": "What are your opening hours on Sunday?"}
        ]
    });
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let url = format!("{base}/chat/completions");
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (client, body, url, done, errors) = (
            client.clone(),
            body.clone(),
            url.clone(),
            done.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let ok = match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                let counter = if ok { &done } else { &errors };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "{n} requests in {secs}s = {:.0} req/s ({} errors, stream={stream})",
        n as f64 / secs as f64,
        errors.load(Ordering::Relaxed)
    );
}
