//! Prints the Markdown and chunks of the files given on the command line.
//!
//! `cargo run -p cortex-ingest --example ingest_dump -- FILE... [--max-tokens N]`

use cortex_ingest::{ChunkOptions, Limits, chunk, convert, detect};

fn main() -> std::process::ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = ChunkOptions::default();
    if let Some(i) = args.iter().position(|a| a == "--max-tokens") {
        if let Some(n) = args.get(i + 1).and_then(|n| n.parse().ok()) {
            options.max_tokens = n;
        }
        args.drain(i..(i + 2).min(args.len()));
    }
    let mut failed = false;
    for path in args {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
                continue;
            }
        };
        let Some(format) = detect(&path, &bytes) else {
            eprintln!("{path}: unrecognised format");
            failed = true;
            continue;
        };
        match convert(&bytes, format, &Limits::default()) {
            Ok(doc) => {
                println!("===== {path} ({format}, title {:?})", doc.title);
                for part in &doc.parts {
                    println!("----- {:?}", part.locator);
                    println!("{}", part.markdown);
                }
                for c in chunk(&doc, &options) {
                    println!(
                        "~~~~~ chunk {} [{}] {:?} {} tokens\n{}",
                        c.index,
                        c.heading_path.join(" > "),
                        c.locator.as_ref().map(|l| l.label()),
                        c.token_count,
                        c.text
                    );
                }
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
