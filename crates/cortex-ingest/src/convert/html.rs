//! HTML to Markdown: readability extraction of the main content (dom_smoothie), then
//! HTML → Markdown (htmd). Pages where readability finds nothing are converted whole.

use dom_smoothie::{Config, Readability};
use htmd::HtmlToMarkdown;
use htmd::options::{BulletListMarker, Options};

use crate::markdown::{collapse_ws, decode_lossy, normalize};
use crate::{Document, Format, IngestError, Part};

/// Tags whose content is never text a reader would want.
const SKIPPED: [&str; 18] = [
    "script", "style", "noscript", "template", "svg", "canvas", "iframe", "object", "embed", "img",
    "picture", "video", "audio", "head", "nav", "form", "button", "select",
];

pub(super) fn convert(bytes: &[u8]) -> Result<Document, IngestError> {
    let html = decode_lossy(bytes);
    let (title, content) = match extract_main(&html) {
        Some((title, content)) => (title, content),
        None => (page_title(&html), html.clone()),
    };
    let converter = HtmlToMarkdown::builder()
        .options(Options {
            bullet_list_marker: BulletListMarker::Dash,
            ul_bullet_spacing: 1,
            ol_number_spacing: 1,
            ..Options::default()
        })
        .skip_tags(SKIPPED.to_vec())
        .build();
    let markdown = converter
        .convert(&content)
        .map_err(|e| IngestError::parse(format!("HTML: {e}")))?;
    let mut markdown = normalize(&markdown);
    let title = title
        .map(|t| strip_site_name(&collapse_ws(&t)))
        .filter(|t| !t.is_empty());
    if let Some(t) = &title
        && !starts_with_heading(&markdown, t)
    {
        markdown = if markdown.is_empty() {
            format!("# {t}")
        } else {
            format!("# {t}\n\n{markdown}")
        };
    }
    Ok(Document {
        format: Format::Html,
        title,
        parts: vec![Part {
            locator: None,
            markdown,
        }],
    })
}

/// The readable article (title, content HTML), or `None` when readability finds no text.
fn extract_main(html: &str) -> Option<(Option<String>, String)> {
    let mut readability = Readability::new(html, None, Some(Config::default())).ok()?;
    let article = readability.parse().ok()?;
    if article.text_content.trim().is_empty() {
        return None;
    }
    let title = Some(article.title.to_string()).filter(|t| !t.trim().is_empty());
    Some((title, article.content.to_string()))
}

fn page_title(html: &str) -> Option<String> {
    let readability = Readability::new(html, None, None).ok()?;
    Some(readability.get_article_title().to_string()).filter(|t| !t.trim().is_empty())
}

/// Drops a site name appended to a page title ("Article | Site", "Article – Site") when what
/// remains still reads as a title (two words or more).
fn strip_site_name(title: &str) -> String {
    for separator in [" | ", " » ", " – ", " — ", " - ", " :: "] {
        if let Some((head, _)) = title.rsplit_once(separator)
            && head.split_whitespace().count() >= 2
        {
            return head.trim().to_string();
        }
    }
    title.to_string()
}

fn starts_with_heading(markdown: &str, title: &str) -> bool {
    markdown
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim_start().strip_prefix('#'))
        .is_some_and(|h| collapse_ws(h.trim_start_matches('#')) == title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_without_an_article_is_converted_whole() {
        let doc =
            convert(b"<html><body><h2>Short</h2><ul><li>one</li><li>two</li></ul></body></html>")
                .unwrap();
        let md = doc.markdown();
        assert!(md.contains("## Short"), "{md}");
        assert!(md.contains("- one\n- two"), "{md}");
    }

    #[test]
    fn site_names_are_stripped_from_titles() {
        assert_eq!(
            strip_site_name("Understanding Vector Search | Blog"),
            "Understanding Vector Search"
        );
        assert_eq!(strip_site_name("Home | Blog"), "Home | Blog");
        assert_eq!(strip_site_name("Plain title"), "Plain title");
    }

    #[test]
    fn scripts_and_styles_are_dropped() {
        let doc =
            convert(b"<p>visible</p><script>var hidden = 1;</script><style>p{}</style>").unwrap();
        let md = doc.markdown();
        assert!(md.contains("visible"));
        assert!(!md.contains("hidden"), "{md}");
    }
}
