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
