//! Markdown and plain text pass-through.

use crate::markdown::{decode_lossy, escape_line_starts, normalize};
use crate::{Document, Format, Part};

pub(super) fn convert_markdown(bytes: &[u8]) -> Document {
    let text = normalize(&decode_lossy(bytes));
    let (title, body) = split_front_matter(&text);
    Document {
        format: Format::Markdown,
        title,
        parts: vec![Part {
            locator: None,
            markdown: body.to_string(),
        }],
    }
}

pub(super) fn convert_text(bytes: &[u8]) -> Document {
    Document {
        format: Format::Text,
        title: None,
        parts: vec![Part {
            locator: None,
            markdown: escape_line_starts(&normalize(&decode_lossy(bytes))),
        }],
    }
}

/// Splits a leading YAML front-matter block off, returning its `title:` if any.
fn split_front_matter(text: &str) -> (Option<String>, &str) {
    let Some(rest) = text.strip_prefix("---\n") else {
        return (None, text);
    };
    let mut offset = 0;
    for (i, line) in rest.split('\n').enumerate() {
        if i > 200 {
            break;
        }
        if line == "---" || line == "..." {
            let meta = &rest[..offset];
            let body = rest
                .get(offset + line.len()..)
                .unwrap_or("")
                .trim_start_matches('\n');
            let title = meta.lines().find_map(|l| {
                l.strip_prefix("title:")
                    .map(|t| t.trim().trim_matches(['"', '\'']).to_string())
                    .filter(|t| !t.is_empty())
            });
            return (title, body);
        }
        offset += line.len() + 1;
    }
    (None, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_gives_the_title_and_is_removed() {
        let doc = convert_markdown(b"---\ntitle: \"Guide\"\nauthor: x\n---\n\n# One\n\ntext\r\n");
        assert_eq!(doc.title.as_deref(), Some("Guide"));
        assert_eq!(doc.parts[0].markdown, "# One\n\ntext");
    }

    #[test]
    fn a_thematic_break_is_not_front_matter() {
        let doc = convert_markdown(b"# A\n\n---\n\nb");
        assert_eq!(doc.title, None);
        assert_eq!(doc.parts[0].markdown, "# A\n\n---\n\nb");
    }

    #[test]
    fn invalid_utf8_and_nuls_do_not_fail() {
        let doc = convert_text(b"caf\xe9 \0bar\n# x");
        assert_eq!(doc.parts[0].markdown, "caf\u{fffd} bar\n\\# x");
    }
}
