//! `cortex-fakellm`: runs the fake LLM server as a process (for benchmarks). Prints
//! `listening on http://ADDR/v1` as its first stdout line, then serves until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cortex_fakellm::{Config, FakeLlm};

/// Scripted OpenAI/Anthropic-compatible fake LLM server.
#[derive(Debug, Parser)]
#[command(name = "cortex-fakellm", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Fixed delay before every model response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay between streamed SSE events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Default embedding dimension.
    #[arg(long, default_value_t = 1536)]
    embedding_dim: usize,
    /// Requests kept for `GET /_admin/requests` (oldest evicted first); 0 disables recording.
    #[arg(long, default_value_t = 10_000)]
    max_recorded: usize,
    /// Worker threads (default: number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Print one line per model request to stderr.
    #[arg(long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.workers {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cortex-fakellm: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let config = Config {
        bind: args.bind,
        default_latency: Duration::from_millis(args.latency_ms),
        chunk_delay: Duration::from_millis(args.chunk_delay_ms),
        embedding_dimensions: args.embedding_dim,
        max_recorded: args.max_recorded,
        log_requests: args.verbose,
    };
    let llm = match FakeLlm::start_with(config).await {
        Ok(llm) => llm,
        Err(e) => {
            eprintln!("cortex-fakellm: cannot bind {}: {e}", args.bind);
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on {}", llm.base_url())
        .and_then(|()| out.flush())
        .is_err()
    {
        eprintln!("cortex-fakellm: cannot write to stdout");
    }
    drop(out);
    wait_for_signal().await;
    llm.shutdown();
    ExitCode::SUCCESS
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
