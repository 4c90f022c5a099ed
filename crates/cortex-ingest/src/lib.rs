//! Document conversion for Cortex knowledge ingestion.
//!
//! * [`detect`] tells the [`Format`] of an upload from its name and bytes.
//! * [`convert`] turns PDF, DOCX, PPTX, XLSX/XLS/ODS, CSV, HTML, Markdown and plain text into a
//!   Markdown [`Document`] whose [`Part`]s know their page, slide or sheet ([`Locator`]).
//! * [`convert_isolated`] runs the same conversion in a child process (the host binary calls
//!   [`worker_main`]) under a wall-clock timeout and memory/CPU rlimits, so a hostile file that
//!   makes a parser panic, loop or allocate without bound costs one killed child, never the
//!   server; [`convert_in_process`] is the fallback for hosts without a worker.
//! * [`chunk`] splits a document along its structure into token-bounded [`Chunk`]s that carry
//!   their heading path and locator; [`count_tokens`] counts `cl100k_base` tokens offline.
//!
//! Every entry point reports failures as [`IngestError`] and never panics.
//!
//! # Hosting the worker
//!
//! The application binary serves as its own worker through a hidden subcommand, so no second
//! executable has to be installed:
//!
//! ```no_run
//! use cortex_ingest::{ChunkOptions, Limits, WorkerCommand, chunk, convert_isolated, detect};
//!
//! // In main(), before anything else (argument name chosen by the application):
//! if std::env::args().nth(1).as_deref() == Some("__ingest-worker") {
//!     std::process::exit(cortex_ingest::worker_main());
//! }
//!
//! // Where a file is ingested:
//! async fn ingest(name: &str, bytes: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//!     let worker = WorkerCommand::current_exe(["__ingest-worker"])?;
//!     let format = detect(name, bytes).ok_or("unsupported file type")?;
//!     let document = convert_isolated(&worker, bytes, format, &Limits::default()).await?;
//!     for piece in chunk(&document, &ChunkOptions::default()) {
//!         println!("{:?} {:?}: {}", piece.heading_path, piece.page, piece.text);
//!     }
//!     Ok(())
//! }
//! ```

mod chunk;
mod convert;
mod document;
mod error;
mod format;
mod isolate;
mod limits;
mod markdown;
mod tokens;
mod zipguard;

pub use chunk::{Chunk, ChunkOptions, chunk};
pub use convert::convert;
pub use document::{Document, Locator, Part};
pub use error::IngestError;
pub use format::{Format, detect};
pub use isolate::{
    FAULT_ENV, WORKER_PROTOCOL, WorkerCommand, convert_in_process, convert_isolated, worker_main,
};
pub use limits::Limits;
pub use tokens::count_tokens;
