//! Conversion + chunking throughput per format on the committed fixtures.
//!
//! `cargo run --release -p cortex-ingest --example ingest_bench [-- SECONDS_PER_FORMAT]`
//!
//! Each fixture is converted and chunked (512-token budget, 64 overlap) repeatedly for the
//! given time (default 2 s); the table reports input MB/s, Markdown MB/s and chunks per call.

use std::time::{Duration, Instant};

use cortex_ingest::{ChunkOptions, Limits, chunk, convert, detect};

fn main() -> std::process::ExitCode {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let names = [
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
    ];
    let limits = Limits::default();
    let options = ChunkOptions::default();
    println!(
        "| fixture | format | input KiB | markdown KiB | calls | ms/call | input MB/s | text MB/s | chunks |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for name in names {
        match std::fs::read(format!("{dir}/{name}")) {
            Ok(b) => inputs.push((name.to_string(), b)),
            Err(e) => {
                eprintln!("{name}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    // Larger inputs show steady-state throughput rather than per-call overhead.
    if let Some((_, md)) = inputs.iter().find(|(n, _)| n == "guide.md") {
        let body = String::from_utf8_lossy(md).replace("---\ntitle: Cortex Field Guide\n---\n", "");
        inputs.push(("guide.md x500".into(), body.repeat(500).into_bytes()));
    }
    let mut csv = String::from("Id,Customer,City,Balance,Note\n");
    for i in 0..20_000 {
        csv.push_str(&format!(
            "{i},Customer {i},City {},{}.50,\"note, with comma\"\n",
            i % 97,
            i * 3
        ));
    }
    inputs.push(("20k-row.csv".into(), csv.into_bytes()));
    for (name, bytes) in inputs {
        let name = name.as_str();
        let Some(format) = detect(name.split(' ').next().unwrap_or(name), &bytes) else {
            eprintln!("{name}: not detected");
            return std::process::ExitCode::FAILURE;
        };
        let budget = Duration::from_secs_f64(seconds);
        let started = Instant::now();
        let (mut calls, mut text_bytes, mut chunks) = (0u64, 0usize, 0usize);
        while started.elapsed() < budget || calls == 0 {
            match convert(&bytes, format, &limits) {
                Ok(doc) => {
                    text_bytes = doc.markdown_len();
                    chunks = chunk(&doc, &options).len();
                }
                Err(e) => {
                    eprintln!("{name}: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
            calls += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let mb = |n: usize| n as f64 * calls as f64 / elapsed / 1e6;
        println!(
            "| {name} | {format} | {:.1} | {:.1} | {calls} | {:.2} | {:.2} | {:.2} | {chunks} |",
            bytes.len() as f64 / 1024.0,
            text_bytes as f64 / 1024.0,
            elapsed * 1000.0 / calls as f64,
            mb(bytes.len()),
            mb(text_bytes),
        );
    }
    std::process::ExitCode::SUCCESS
}
