//! Format detection from the file name and the leading bytes.

use std::fmt;
use std::io::{Cursor, Read};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A supported source format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Portable Document Format.
    Pdf,
    /// Office Open XML word processing document.
    Docx,
    /// Office Open XML presentation.
    Pptx,
    /// Office Open XML workbook.
    Xlsx,
    /// Legacy Excel 97–2003 workbook (OLE2 container).
    Xls,
    /// OpenDocument spreadsheet.
    Ods,
    /// Comma (or semicolon, tab, pipe) separated values.
    Csv,
    /// HTML page.
    Html,
    /// Markdown.
    Markdown,
    /// Plain text.
    Text,
}

impl Format {
    /// All formats, in a stable order.
    pub const ALL: [Format; 10] = [
        Format::Pdf,
        Format::Docx,
        Format::Pptx,
        Format::Xlsx,
        Format::Xls,
        Format::Ods,
        Format::Csv,
        Format::Html,
        Format::Markdown,
        Format::Text,
    ];

    /// The lowercase name used in serialisation and by [`FromStr`] (`"pdf"`, `"docx"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Pptx => "pptx",
            Format::Xlsx => "xlsx",
            Format::Xls => "xls",
            Format::Ods => "ods",
            Format::Csv => "csv",
            Format::Html => "html",
            Format::Markdown => "markdown",
            Format::Text => "text",
        }
    }

    /// True for the formats stored in a zip archive (guarded against zip bombs).
    pub fn is_zip(self) -> bool {
        matches!(
            self,
            Format::Docx | Format::Pptx | Format::Xlsx | Format::Ods
        )
    }

    /// The format a file extension (without the dot, any case) stands for.
    pub fn from_extension(ext: &str) -> Option<Format> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "pdf" => Format::Pdf,
            "docx" | "docm" | "dotx" => Format::Docx,
            "pptx" | "pptm" | "potx" | "ppsx" => Format::Pptx,
            "xlsx" | "xlsm" | "xltx" => Format::Xlsx,
            "xls" | "xlt" => Format::Xls,
            "ods" | "ots" => Format::Ods,
            "csv" | "tsv" | "tab" => Format::Csv,
            "html" | "htm" | "xhtml" | "xht" => Format::Html,
            "md" | "markdown" | "mdown" | "mkd" | "mdx" => Format::Markdown,
            "txt" | "text" | "log" | "rst" | "adoc" => Format::Text,
            _ => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    /// Parses a format name (`"pdf"`, `"markdown"`, `"md"`, `"txt"`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == lower)
            .or_else(|| Format::from_extension(&lower))
            .ok_or_else(|| format!("unknown document format '{s}'"))
    }
}

const OLE2_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Detects the format of a file from its name and its bytes.
///
/// Binary formats are recognised by content: `%PDF-` near the start is a PDF; a zip archive is
/// told apart by its `[Content_Types].xml` (DOCX, PPTX, XLSX) or its ODF `mimetype` entry (ODS);
/// an OLE2 container named `.xls` is a legacy workbook. Content wins over a misleading
/// extension. Text formats (CSV, HTML, Markdown, plain text) are recognised by extension; a file
/// without a known extension is sniffed for HTML and otherwise taken as plain text when it looks
/// like text. A file whose extension names a binary format that the bytes do not confirm is
/// still reported as that format, so that [`crate::convert`] answers with a clear parse error.
/// Returns `None` for anything else (images, executables, legacy `.doc`, …).
pub fn detect(file_name: &str, bytes: &[u8]) -> Option<Format> {
    let ext = std::path::Path::new(file_name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let by_ext = Format::from_extension(&ext);

    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        return Some(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return sniff_zip(bytes).or(by_ext.filter(|f| f.is_zip()));
    }
    if bytes.starts_with(&OLE2_MAGIC) {
        return by_ext.filter(|f| *f == Format::Xls);
    }
    match by_ext {
        Some(f) => Some(f),
        None if ext.is_empty() || !looks_binary(bytes) => sniff_text(bytes),
        None => None,
    }
}

fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

fn sniff_text(bytes: &[u8]) -> Option<Format> {
    if looks_binary(bytes) {
        return None;
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]);
    let head = head.trim_start_matches('\u{feff}').trim_start();
    let lower = head
        .get(..head.len().min(64))
        .unwrap_or("")
        .to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return Some(Format::Html);
    }
    // Mostly printable text (allowing a cut multi-byte character at the end).
    let replacement = head.chars().filter(|c| *c == '\u{fffd}').count();
    if replacement * 20 <= head.chars().count() {
        Some(Format::Text)
    } else {
        None
    }
}

fn sniff_zip(bytes: &[u8]) -> Option<Format> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).ok()?;
    let read_small = |archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str| {
        let entry = archive.by_name(name).ok()?;
        let mut out = String::new();
        entry.take(256 * 1024).read_to_string(&mut out).ok()?;
        Some(out)
    };
    if let Some(mimetype) = read_small(&mut archive, "mimetype") {
        let mimetype = mimetype.trim();
        if mimetype.starts_with("application/vnd.oasis.opendocument.spreadsheet") {
            return Some(Format::Ods);
        }
    }
    if let Some(types) = read_small(&mut archive, "[Content_Types].xml") {
        if types.contains("wordprocessingml.document.main")
            || types.contains("wordprocessingml.template.main")
            || types.contains("ms-word.document.macroEnabled.main")
        {
            return Some(Format::Docx);
        }
        if types.contains("presentationml.presentation.main")
            || types.contains("presentationml.slideshow.main")
            || types.contains("presentationml.template.main")
            || types.contains("ms-powerpoint.presentation.macroEnabled.main")
        {
            return Some(Format::Pptx);
        }
        if types.contains("spreadsheetml.sheet.main")
            || types.contains("spreadsheetml.template.main")
            || types.contains("ms-excel.sheet.macroEnabled.main")
        {
            return Some(Format::Xlsx);
        }
    }
    let names: Vec<String> = archive
        .file_names()
        .flatten()
        .map(|n| n.into_owned())
        .collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    if has("word/document.xml") {
        Some(Format::Docx)
    } else if has("ppt/presentation.xml") {
        Some(Format::Pptx)
    } else if has("xl/workbook.xml") {
        Some(Format::Xlsx)
    } else {
        None
    }
}
