//! Reading office archives without trusting their headers (zip-bomb guard).

use std::io::{Cursor, Read};

use crate::{IngestError, Limits};

/// Output an entry may produce before its compression ratio is judged.
const RATIO_GRACE_BYTES: u64 = 1024 * 1024;

/// A zip archive whose entries are decompressed under the bounds of [`Limits`]: entry count,
/// total decompressed bytes over all reads, and per-entry ratio, all counted on the bytes
/// actually produced.
pub(crate) struct GuardedZip<'a> {
    archive: zip::ZipArchive<Cursor<&'a [u8]>>,
    input_len: u64,
    limits: &'a Limits,
    total_out: u64,
}

impl<'a> GuardedZip<'a> {
    pub(crate) fn open(bytes: &'a [u8], limits: &'a Limits) -> Result<Self, IngestError> {
        let archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| IngestError::parse(format!("not a valid zip archive: {e}")))?;
        if archive.len() > limits.max_zip_entries {
            return Err(IngestError::zip_bomb(format!(
                "{} entries, more than the limit of {}",
                archive.len(),
                limits.max_zip_entries
            )));
        }
        Ok(Self {
            archive,
            input_len: bytes.len() as u64,
            limits,
            total_out: 0,
        })
    }

    /// Names of all entries.
    pub(crate) fn names(&self) -> Vec<String> {
        self.archive
            .file_names()
            .flatten()
            .map(|n| n.into_owned())
            .collect()
    }

    /// Reads one entry fully, or `None` when the archive has no such entry.
    pub(crate) fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, IngestError> {
        let index = match self.archive.index_for_name(name) {
            Some(i) => i,
            None => return Ok(None),
        };
        let mut out = Vec::new();
        self.read_index(index, Some(&mut out))?;
        Ok(Some(out))
    }

    /// Reads one entry as (lossy) UTF-8 text.
    pub(crate) fn read_string(&mut self, name: &str) -> Result<Option<String>, IngestError> {
        Ok(self
            .read(name)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Decompresses every entry (discarding the output) to prove the archive stays within the
    /// bounds before handing it to a parser that reads it on its own (calamine).
    pub(crate) fn check_all(&mut self) -> Result<(), IngestError> {
        for index in 0..self.archive.len() {
            self.read_index(index, None)?;
        }
        Ok(())
    }

    fn read_index(
        &mut self,
        index: usize,
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<(), IngestError> {
        let limits = self.limits;
        let mut entry = self
            .archive
            .by_index(index)
            .map_err(|e| IngestError::parse(format!("corrupt zip entry #{index}: {e}")))?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("#{index}"));
        // The declared compressed size is only a denominator; it cannot exceed the input.
        let compressed = entry.compressed_size().clamp(1, self.input_len.max(1));
        let mut produced: u64 = 0;
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| IngestError::parse(format!("corrupt zip entry '{name}': {e}")))?;
            if n == 0 {
                break;
            }
            produced += n as u64;
            self.total_out += n as u64;
            if self.total_out > limits.max_zip_uncompressed_bytes {
                return Err(IngestError::zip_bomb(format!(
                    "entries decompress to more than {} bytes (while reading '{name}')",
                    limits.max_zip_uncompressed_bytes
                )));
            }
            if produced > RATIO_GRACE_BYTES && produced / compressed > limits.max_zip_ratio {
                return Err(IngestError::zip_bomb(format!(
                    "entry '{name}' expands more than {}:1 ({produced} bytes from {compressed})",
                    limits.max_zip_ratio
                )));
            }
            if let Some(out) = sink.as_deref_mut() {
                out.extend_from_slice(&buf[..n]);
            }
        }
        Ok(())
    }
}
