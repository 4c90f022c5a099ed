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

/// Deepest nesting of container elements a page may have. Real pages stay under ~60; Chromium's
/// parser stops nesting at 512. Readability and the Markdown writer walk the tree recursively
/// with costs that grow with depth, so a page of deeply nested `<div>`s is refused before they run.
pub const MAX_DEPTH: usize = 256;

/// Elements that the HTML parser never closes implicitly: each opening tag of one nests until
/// its end tag, so their count is a lower bound on the tree's depth.
const CONTAINERS: [&str; 16] = [
    "div",
    "span",
    "section",
    "article",
    "main",
    "aside",
    "blockquote",
    "table",
    "ul",
    "ol",
    "b",
    "i",
    "em",
    "strong",
    "a",
    "font",
];

/// The deepest nesting of [`CONTAINERS`] in `html`, stopping as soon as it passes `limit`:
/// one linear scan over the tags, without building a tree.
fn container_depth(html: &str, limit: usize) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(off) = bytes[i..].iter().position(|&b| b == b'<') {
        i += off + 1;
        if bytes[i..].starts_with(b"!--") {
            i = html[i..].find("-->").map_or(bytes.len(), |end| i + end + 3);
            continue;
        }
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let name_len = bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let name = &html[start..start + name_len];
        if !CONTAINERS.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else {
            let end = bytes[start..].iter().position(|&b| b == b'>');
            let self_closing = end.is_some_and(|e| e > 0 && bytes[start + e - 1] == b'/');
            if !self_closing {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > limit {
                    return deepest;
                }
            }
        }
    }
    deepest
}

pub(super) fn convert(bytes: &[u8]) -> Result<Document, IngestError> {
    let html = decode_lossy(bytes);
    if container_depth(&html, MAX_DEPTH) > MAX_DEPTH {
        return Err(IngestError::parse(format!(
            "HTML: elements are nested more than {MAX_DEPTH} deep"
        )));
    }
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
    fn deeply_nested_pages_are_refused_before_parsing() {
        let deep = format!(
            "<html><body>{}x{}</body></html>",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        let err = convert(deep.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nested more than 256"), "{err}");
        // Deep but within the bound, many siblings, comments and unclosed paragraphs: converted.
        let fine = format!(
            "<html><body>{}<p>inner text{}<!-- <div><div> -->{}</body></html>",
            "<div>".repeat(200),
            "</div>".repeat(200),
            "<div><p>para<br/></div>".repeat(5_000)
        );
        assert_eq!(container_depth(&fine, MAX_DEPTH), 200);
        assert!(convert(fine.as_bytes()).is_ok());
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
