//! Conversion of every supported format to Markdown.

mod docx;
mod html;
mod pdf;
mod pptx;
mod sheet;
mod text;
mod xml;

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::{Document, Format, IngestError, Limits};

/// Converts a document to Markdown in the calling thread.
///
/// Enforces the size and archive bounds of `limits` (input size, zip-bomb guard, sheet cells,
/// output size) and contains parser panics, which come back as [`IngestError::Panicked`]; it
/// never panics itself. It cannot bound time or memory: for untrusted input prefer
/// [`crate::convert_isolated`], which runs this function in a child process under
/// `limits.timeout`, `limits.max_memory_bytes` and `limits.max_cpu_seconds`.
pub fn convert(bytes: &[u8], format: Format, limits: &Limits) -> Result<Document, IngestError> {
    if bytes.len() as u64 > limits.max_input_bytes {
        return Err(IngestError::too_large(
            "input bytes",
            limits.max_input_bytes,
        ));
    }
    let doc = contain_panics(|| convert_unguarded(bytes, format, limits))?;
    let len = doc.markdown_len() as u64;
    if len > limits.max_output_bytes {
        return Err(IngestError::too_large(
            "converted Markdown bytes",
            limits.max_output_bytes,
        ));
    }
    Ok(doc)
}

/// Runs `f`, turning a panic into [`IngestError::Panicked`].
pub(crate) fn contain_panics<T>(
    f: impl FnOnce() -> Result<T, IngestError>,
) -> Result<T, IngestError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        Err(IngestError::Panicked { message })
    })
}

fn convert_unguarded(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Document, IngestError> {
    match format {
        Format::Pdf => pdf::convert(bytes, limits),
        Format::Docx => docx::convert(bytes, limits),
        Format::Pptx => pptx::convert(bytes, limits),
        Format::Xlsx | Format::Xls | Format::Ods => sheet::convert_workbook(bytes, format, limits),
        Format::Csv => sheet::convert_csv(bytes, limits),
        Format::Html => html::convert(bytes),
        Format::Markdown => Ok(text::convert_markdown(bytes)),
        Format::Text => Ok(text::convert_text(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_contained_with_their_message() {
        let r: Result<(), _> = contain_panics(|| panic!("boom {}", 42));
        assert_eq!(
            r,
            Err(IngestError::Panicked {
                message: "boom 42".into()
            })
        );
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let limits = Limits {
            max_input_bytes: 10,
            ..Limits::default()
        };
        let err = convert(b"01234567890", Format::Text, &limits).unwrap_err();
        assert_eq!(err.code(), "too_large");
    }

    #[test]
    fn oversized_output_is_refused() {
        let limits = Limits {
            max_output_bytes: 4,
            ..Limits::default()
        };
        let err = convert(b"hello world", Format::Text, &limits).unwrap_err();
        assert_eq!(err.code(), "too_large");
    }
}
