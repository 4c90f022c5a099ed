//! The converted document: Markdown split into located parts.

use serde::{Deserialize, Serialize};

use crate::Format;

/// Where a part of a document sits in its source: a PDF page, a slide or a sheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Locator {
    /// A PDF page, numbered from 1.
    Page {
        /// Page number, from 1.
        number: u32,
    },
    /// A presentation slide, numbered from 1 in presentation order.
    Slide {
        /// Slide number, from 1.
        number: u32,
        /// The slide's title, when it has one.
        title: Option<String>,
    },
    /// A spreadsheet sheet, numbered from 1 in workbook order.
    Sheet {
        /// Sheet number, from 1.
        number: u32,
        /// The sheet's name.
        name: String,
    },
}

impl Locator {
    /// The 1-based page, slide or sheet number.
    pub fn number(&self) -> u32 {
        match self {
            Self::Page { number } | Self::Slide { number, .. } | Self::Sheet { number, .. } => {
                *number
            }
        }
    }

    /// A short human-readable label: `page 3`, `slide 2: Title`, `sheet Budget`.
    pub fn label(&self) -> String {
        match self {
            Self::Page { number } => format!("page {number}"),
            Self::Slide {
                number,
                title: Some(title),
            } => format!("slide {number}: {title}"),
            Self::Slide {
                number,
                title: None,
            } => format!("slide {number}"),
            Self::Sheet { name, .. } => format!("sheet {name}"),
        }
    }
}

/// One located piece of a converted document (a page, a slide, a sheet, or the whole text of a
/// format without such divisions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Page, slide or sheet of this part; `None` for formats without such divisions.
    pub locator: Option<Locator>,
    /// The part's content as Markdown.
    pub markdown: String,
}

/// A document converted to Markdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// The source format.
    pub format: Format,
    /// The document title where the source declares one (HTML `<title>`, DOCX Title style,
    /// first slide title, Markdown front matter).
    pub title: Option<String>,
    /// The content in source order.
    pub parts: Vec<Part>,
}

impl Document {
    /// The whole document as one Markdown string (parts separated by a blank line).
    pub fn markdown(&self) -> String {
        let mut out = String::with_capacity(self.markdown_len() + 2 * self.parts.len());
        for part in self.parts.iter().filter(|p| !p.markdown.trim().is_empty()) {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(part.markdown.trim_end());
        }
        out
    }

    /// Total bytes of Markdown over all parts.
    pub fn markdown_len(&self) -> usize {
        self.parts.iter().map(|p| p.markdown.len()).sum()
    }

    /// True when no part holds any non-whitespace text.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.markdown.trim().is_empty())
    }
}
