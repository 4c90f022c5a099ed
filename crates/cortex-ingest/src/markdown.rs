//! Small Markdown building blocks shared by the converters.

/// Decodes bytes as UTF-8, replacing invalid sequences, and drops a leading byte-order mark.
pub(crate) fn decode_lossy(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix('\u{feff}').unwrap_or(&text).to_string()
}

/// Normalises text: `\r\n` and `\r` become `\n`, NUL and other control characters (except tab
/// and newline) are removed, trailing spaces are trimmed, runs of blank lines collapse to one,
/// and leading/trailing blank lines are dropped.
pub(crate) fn normalize(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    for line in text.split('\n') {
        let cleaned: String = line
            .chars()
            .filter(|c| *c == '\t' || !c.is_control())
            .collect();
        let cleaned = cleaned.trim_end();
        if cleaned.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(cleaned);
    }
    out
}

/// Collapses all whitespace runs (including newlines) to single spaces and trims.
pub(crate) fn collapse_ws(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Escapes a line start that Markdown would read as a heading, so plain text stays plain.
pub(crate) fn escape_line_starts(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        let rest = &trimmed[hashes..];
        if (1..=6).contains(&hashes) && (rest.is_empty() || rest.starts_with([' ', '\t'])) {
            out.push_str(&line[..line.len() - trimmed.len()]);
            out.push('\\');
            out.push_str(trimmed);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A table cell as it can stand between pipes: whitespace collapsed, pipes escaped.
pub(crate) fn cell(text: &str) -> String {
    collapse_ws(text).replace('|', "\\|")
}

/// Renders rows as a GitHub-flavoured Markdown pipe table; the first row is the header.
/// Rows are padded to the widest row. Returns an empty string for no rows.
pub(crate) fn pipe_table(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for c in 0..width {
            out.push(' ');
            out.push_str(&cell(row.get(c).map(String::as_str).unwrap_or("")));
            out.push_str(" |");
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for _ in 0..width {
                out.push_str(" --- |");
            }
            out.push('\n');
        }
    }
    out.pop();
    out
}

/// Removes rows and columns that are empty in every row, so sparse sheets stay compact.
pub(crate) fn trim_grid(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.retain(|r| r.iter().any(|c| !c.trim().is_empty()));
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let keep: Vec<bool> = (0..width)
        .map(|c| {
            rows.iter()
                .any(|r| r.get(c).is_some_and(|v| !v.trim().is_empty()))
        })
        .collect();
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .enumerate()
                .filter(|(i, _)| keep.get(*i).copied().unwrap_or(false))
                .map(|(_, v)| v)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_cleans_newlines_nuls_and_blank_runs() {
        assert_eq!(normalize("a\r\nb\0c  \r\r\r\n\nd\n\n"), "a\nbc\n\nd");
    }

    #[test]
    fn plain_text_hashes_are_escaped() {
        assert_eq!(
            escape_line_starts("# not a heading\n#hashtag"),
            "\\# not a heading\n#hashtag"
        );
    }

    #[test]
    fn pipe_table_pads_and_escapes() {
        let t = pipe_table(&[vec!["a".into(), "b".into()], vec!["x|y".into()]]);
        assert_eq!(t, "| a | b |\n| --- | --- |\n| x\\|y |  |");
    }

    #[test]
    fn trim_grid_drops_empty_rows_and_columns() {
        let g = trim_grid(vec![
            vec!["".into(), "a".into(), "".into()],
            vec!["".into(), "".into(), "".into()],
            vec!["".into(), "b".into()],
        ]);
        assert_eq!(g, vec![vec!["a".to_string()], vec!["b".to_string()]]);
    }
}
