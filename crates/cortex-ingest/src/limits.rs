//! Bounds applied to hostile input.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Resource bounds for one conversion.
///
/// The size and archive bounds are enforced by every entry point; `timeout`, `max_memory_bytes`
/// and `max_cpu_seconds` need process isolation ([`crate::convert_isolated`]) to be enforced
/// fully (the in-process path can only stop waiting when `timeout` expires).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_input_bytes: u64,
    /// Most entries an office archive (DOCX, PPTX, XLSX, ODS) may have.
    pub max_zip_entries: usize,
    /// Most bytes all archive entries together may decompress to (counted while reading, the
    /// sizes declared in the archive are not trusted).
    pub max_zip_uncompressed_bytes: u64,
    /// Highest decompressed/compressed ratio of one archive entry, checked once the entry has
    /// produced more than 1 MiB.
    pub max_zip_ratio: u64,
    /// Largest converted Markdown, in bytes.
    pub max_output_bytes: u64,
    /// Most cells read from the sheets of one workbook, or rows × columns of one CSV.
    pub max_sheet_cells: u64,
    /// Wall-clock bound of one conversion.
    pub timeout: Duration,
    /// Address-space bound (`RLIMIT_AS`) of the isolated worker process, in bytes.
    pub max_memory_bytes: u64,
    /// CPU-time bound (`RLIMIT_CPU`) of the isolated worker process, in seconds.
    pub max_cpu_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 64 * 1024 * 1024,
            max_zip_entries: 10_000,
            max_zip_uncompressed_bytes: 512 * 1024 * 1024,
            max_zip_ratio: 200,
            max_output_bytes: 32 * 1024 * 1024,
            max_sheet_cells: 2_000_000,
            timeout: Duration::from_secs(120),
            max_memory_bytes: 2 * 1024 * 1024 * 1024,
            max_cpu_seconds: 120,
        }
    }
}
