//! PDF to Markdown, one part per page: `pdf-extract` first (its panics are contained), then
//! poppler's `pdftotext` when installed and `pdf-extract` failed or found no text.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::contain_panics;
use crate::markdown::{escape_line_starts, normalize};
use crate::{Document, Format, IngestError, Limits, Locator, Part};

pub(super) fn convert(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    if !bytes[..bytes.len().min(1024)]
        .windows(5)
        .any(|w| w == b"%PDF-")
    {
        return Err(IngestError::parse("not a PDF file (no %PDF- header)"));
    }
    let primary = contain_panics(|| {
        pdf_extract::extract_text_from_mem_by_pages(bytes)
            .map_err(|e| IngestError::parse(format!("PDF: {e}")))
    });
    let no_text = || IngestError::NoText {
        reason: "the PDF has no text layer (a scanned document needs OCR)".into(),
    };
    let pages = match primary {
        Ok(pages) if has_text(&pages) => pages,
        primary => match (primary, pdftotext(bytes, limits.timeout)) {
            (_, Some(Ok(pages))) if has_text(&pages) => pages,
            (Ok(_), Some(Ok(_)) | None) | (Err(_), Some(Ok(_))) => return Err(no_text()),
            (Ok(_), Some(Err(fallback))) => {
                return Err(IngestError::parse(format!("pdftotext: {fallback}")));
            }
            (Err(e), Some(Err(fallback))) => {
                return Err(IngestError::parse(format!("{e}; pdftotext: {fallback}")));
            }
            (Err(e), None) => return Err(e),
        },
    };
    let parts = pages
        .iter()
        .enumerate()
        .map(|(i, text)| Part {
            locator: Some(Locator::Page {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
            }),
            markdown: page_markdown(text),
        })
        .collect();
    Ok(Document {
        format: Format::Pdf,
        title: None,
        parts,
    })
}

fn has_text(pages: &[String]) -> bool {
    pages.iter().any(|p| p.chars().any(char::is_alphanumeric))
}

/// Tidies extracted page text: spacing runs collapsed, bullet glyphs as list markers, and line
/// starts that Markdown would misread escaped.
fn page_markdown(text: &str) -> String {
    let mut lines = Vec::new();
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let line = match line.strip_prefix(['•', '◦', '▪', '‣', '●', '○', '■', '–'])
        {
            Some(rest) if !rest.trim().is_empty() => format!("- {}", rest.trim_start()),
            Some(_) => continue,
            None => line,
        };
        lines.push(line);
    }
    escape_line_starts(&normalize(&lines.join("\n")))
}

/// Runs `pdftotext` on a temporary copy; `None` when the tool is not installed.
fn pdftotext(bytes: &[u8], timeout: Duration) -> Option<Result<Vec<String>, String>> {
    let run = || -> Result<Vec<String>, String> {
        let mut file = tempfile::Builder::new()
            .prefix("cortex-ingest-")
            .suffix(".pdf")
            .tempfile()
            .map_err(|e| format!("temporary file: {e}"))?;
        std::io::Write::write_all(&mut file, bytes).map_err(|e| format!("temporary file: {e}"))?;
        let mut child = Command::new("pdftotext")
            .args(["-enc", "UTF-8", "-q"])
            .arg(file.path())
            .arg("-")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait().map_err(|e| e.to_string())? {
                Some(status) => break status,
                None if started.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("timed out".into());
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let out = reader.join().map_err(|_| "reader thread panicked")?;
        if !status.success() {
            return Err(format!("exited with {status}"));
        }
        let text = String::from_utf8_lossy(&out);
        let mut pages: Vec<String> = text.split('\u{c}').map(str::to_string).collect();
        if pages.last().is_some_and(|p| p.trim().is_empty()) {
            pages.pop();
        }
        Ok(pages)
    };
    if !pdftotext_installed() {
        return None;
    }
    Some(run())
}

fn pdftotext_installed() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("pdftotext").is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_text_is_tidied() {
        assert_eq!(
            page_markdown("Title\n•\n•   first   item\n# 1 rank\n\n\n\nnext"),
            "Title\n- first item\n\\# 1 rank\n\nnext"
        );
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let err = convert(b"this is not a pdf", &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "parse");
    }
}
