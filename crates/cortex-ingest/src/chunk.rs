//! Structural chunking of converted documents under a token budget.

use std::rc::Rc;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};
use text_splitter::{ChunkConfig, TextSplitter};
use unicode_segmentation::UnicodeSegmentation;

use crate::tokens::{bpe, count_tokens};
use crate::{Document, Locator};

/// Smallest accepted `max_tokens`; smaller budgets are raised to it.
const MIN_MAX_TOKENS: usize = 32;

/// How [`chunk`] sizes chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChunkOptions {
    /// Upper bound of [`Chunk::token_count`] (`cl100k_base` tokens, heading prefix included);
    /// at least 32.
    pub max_tokens: usize,
    /// Tokens of the end of a chunk repeated at the start of the next chunk of the same
    /// section (whole paragraphs, list items or table rows where they fit, else trailing
    /// sentences); at most half of `max_tokens`.
    pub overlap_tokens: usize,
    /// Start each chunk's text with its heading path as Markdown headings, so the chunk reads
    /// in context on its own.
    pub heading_prefix: bool,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            overlap_tokens: 64,
            heading_prefix: true,
        }
    }
}

/// One retrievable piece of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position in the document's chunk sequence, from 0.
    pub index: usize,
    /// The chunk's Markdown (with the heading prefix when [`ChunkOptions::heading_prefix`]).
    pub text: String,
    /// Titles of the enclosing headings, outermost first.
    pub heading_path: Vec<String>,
    /// The 1-based page, slide or sheet number, where the format has one.
    pub page: Option<u32>,
    /// The page, slide or sheet (with its title or name); [`Locator::label`] gives a label.
    pub locator: Option<Locator>,
    /// `cl100k_base` tokens of `text`.
    pub token_count: usize,
}

/// Splits a document into chunks along its structure.
///
/// Headings open sections (a chunk never spans two sections, nor two pages, slides or sheets);
/// inside a section the units are paragraphs, list items, code blocks and table rows, packed
/// greedily up to the budget with `overlap_tokens` carried from one chunk to the next. A table
/// row is never split, and each chunk holding rows of a table repeats the table's header row.
/// Only a single unit larger than the whole budget is cut further, by `text-splitter` at
/// sentence, then word boundaries (a table row that large loses its header there).
pub fn chunk(document: &Document, options: &ChunkOptions) -> Vec<Chunk> {
    let max_tokens = options.max_tokens.max(MIN_MAX_TOKENS);
    let overlap = options.overlap_tokens.min(max_tokens / 2);
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut chunks = Vec::new();
    for part in &document.parts {
        let mut units: Vec<Unit> = Vec::new();
        // A NUL character is not text (and PostgreSQL cannot store one): dropped, whatever
        // the format it came from.
        let markdown = if part.markdown.contains('\0') {
            std::borrow::Cow::Owned(part.markdown.replace('\0', ""))
        } else {
            std::borrow::Cow::Borrowed(part.markdown.as_str())
        };
        for block in parse_blocks(&markdown) {
            match block {
                Block::Heading(level, title) => {
                    emit_section(
                        &mut chunks,
                        &units,
                        &headings,
                        part.locator.as_ref(),
                        max_tokens,
                        overlap,
                        options.heading_prefix,
                    );
                    units.clear();
                    headings.retain(|(l, _)| *l < level);
                    headings.push((level, title));
                }
                Block::Units(mut more) => units.append(&mut more),
            }
        }
        emit_section(
            &mut chunks,
            &units,
            &headings,
            part.locator.as_ref(),
            max_tokens,
            overlap,
            options.heading_prefix,
        );
    }
    chunks
}

#[derive(Clone, Debug)]
enum Kind {
    Block,
    Item,
    Row {
        table: usize,
        header: Rc<str>,
        header_tokens: usize,
    },
}

#[derive(Clone, Debug)]
struct Unit {
    text: String,
    tokens: usize,
    kind: Kind,
}

impl Unit {
    fn new(text: &str, kind: Kind) -> Self {
        Self {
            tokens: count_tokens(text),
            text: text.to_string(),
            kind,
        }
    }
}

enum Block {
    Heading(usize, String),
    Units(Vec<Unit>),
}

fn level_number(level: HeadingLevel) -> usize {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Top-level blocks of a Markdown text: headings (with their plain text) and content units.
fn parse_blocks(markdown: &str) -> Vec<Block> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut blocks = Vec::new();
    let mut depth = 0usize;
    let mut heading: Option<(usize, String)> = None;
    let mut in_list = false;
    let mut tables = 0usize;
    for (event, range) in Parser::new_ext(markdown, options).into_offset_iter() {
        let source = markdown.get(range.clone()).unwrap_or("").trim_end();
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    match &tag {
                        Tag::Heading { level, .. } => {
                            heading = Some((level_number(*level), String::new()));
                        }
                        Tag::List(_) => in_list = true,
                        Tag::Table(_) => {
                            tables += 1;
                            blocks.push(Block::Units(table_units(source, tables)));
                        }
                        Tag::MetadataBlock(_) => {}
                        _ => {
                            if !source.trim().is_empty() {
                                blocks.push(Block::Units(vec![Unit::new(source, Kind::Block)]));
                            }
                        }
                    }
                } else if depth == 1
                    && in_list
                    && matches!(tag, Tag::Item)
                    && !source.trim().is_empty()
                {
                    blocks.push(Block::Units(vec![Unit::new(source, Kind::Item)]));
                }
                depth += 1;
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    match end {
                        TagEnd::Heading(_) => {
                            if let Some((level, text)) = heading.take() {
                                let text = crate::markdown::collapse_ws(&text);
                                blocks.push(Block::Heading(level, text));
                            }
                        }
                        TagEnd::List(_) => in_list = false,
                        _ => {}
                    }
                }
            }
            Event::Text(text) | Event::Code(text) => {
                if let Some((_, h)) = heading.as_mut() {
                    h.push_str(&text);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, h)) = heading.as_mut() {
                    h.push(' ');
                }
            }
            Event::Rule => {}
            _ if depth == 0 && !source.trim().is_empty() => {
                blocks.push(Block::Units(vec![Unit::new(source, Kind::Block)]));
            }
            _ => {}
        }
    }
    blocks
}

/// A pipe table as one unit per body row, each knowing the header (row and delimiter line).
fn table_units(source: &str, table: usize) -> Vec<Unit> {
    let lines: Vec<&str> = source
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() < 2 {
        return vec![Unit::new(source, Kind::Block)];
    }
    let header: Rc<str> = Rc::from(format!("{}\n{}", lines[0], lines[1]));
    let header_tokens = count_tokens(&header);
    if lines.len() == 2 {
        return vec![Unit::new(&header, Kind::Block)];
    }
    lines[2..]
        .iter()
        .map(|row| {
            Unit::new(
                row,
                Kind::Row {
                    table,
                    header: Rc::clone(&header),
                    header_tokens,
                },
            )
        })
        .collect()
}

/// Tokens `unit` adds after `previous` (separator and, for the first row of a table in the
/// chunk, the repeated header).
fn added_cost(previous: Option<&Unit>, unit: &Unit) -> usize {
    let separator = usize::from(previous.is_some());
    let header = match (&unit.kind, previous.map(|p| &p.kind)) {
        (Kind::Row { table, .. }, Some(Kind::Row { table: prev, .. })) if prev == table => 0,
        (Kind::Row { header_tokens, .. }, _) => header_tokens + 1,
        _ => 0,
    };
    unit.tokens + separator + header
}

fn total_cost(units: &[Unit]) -> usize {
    let mut total = 0;
    for (i, unit) in units.iter().enumerate() {
        total += added_cost(i.checked_sub(1).map(|p| &units[p]), unit);
    }
    total
}

fn render(units: &[Unit]) -> String {
    let mut out = String::new();
    let mut previous: Option<&Unit> = None;
    for unit in units {
        let same_table = matches!(
            (&unit.kind, previous.map(|p| &p.kind)),
            (Kind::Row { table, .. }, Some(Kind::Row { table: prev, .. })) if prev == table
        );
        if let Some(prev) = previous {
            let tight = same_table || matches!((&prev.kind, &unit.kind), (Kind::Item, Kind::Item));
            out.push_str(if tight { "\n" } else { "\n\n" });
        }
        if let (Kind::Row { header, .. }, false) = (&unit.kind, same_table) {
            out.push_str(header);
            out.push('\n');
        }
        out.push_str(&unit.text);
        previous = Some(unit);
    }
    out
}

/// Cuts units larger than `budget` into pieces that fit (sentences, then words). A table row
/// that fits only without its repeated header is kept whole without it.
fn fit_units(units: &[Unit], budget: usize) -> Vec<Unit> {
    let mut fitted = Vec::with_capacity(units.len());
    for unit in units {
        match &unit.kind {
            Kind::Row { header_tokens, .. } if header_tokens + 1 + unit.tokens <= budget => {
                fitted.push(unit.clone());
            }
            _ if unit.tokens <= budget => {
                let kind = match unit.kind {
                    Kind::Row { .. } => Kind::Block,
                    ref other => other.clone(),
                };
                fitted.push(Unit {
                    kind,
                    ..unit.clone()
                });
            }
            _ => {
                let splitter = TextSplitter::new(ChunkConfig::new(budget.max(1)).with_sizer(bpe()));
                for piece in splitter.chunks(&unit.text) {
                    fitted.push(Unit::new(piece, Kind::Block));
                }
            }
        }
    }
    fitted
}

/// The end of a chunk to repeat at the start of the next: whole trailing units within
/// `overlap` tokens, else the trailing sentences of the last unit.
fn overlap_tail(units: &[Unit], overlap: usize) -> Vec<Unit> {
    if overlap == 0 {
        return Vec::new();
    }
    let mut start = units.len();
    while start > 0 && total_cost(&units[start - 1..]) <= overlap {
        start -= 1;
    }
    if start < units.len() {
        return units[start..].to_vec();
    }
    let Some(last) = units.last() else {
        return Vec::new();
    };
    if matches!(last.kind, Kind::Row { .. }) {
        return Vec::new();
    }
    let sentences: Vec<&str> = last.text.split_sentence_bounds().collect();
    let mut tail = String::new();
    for sentence in sentences.iter().rev() {
        let candidate = format!("{sentence}{tail}");
        if count_tokens(candidate.trim()) > overlap {
            break;
        }
        tail = candidate;
    }
    let tail = tail.trim();
    if tail.is_empty() {
        Vec::new()
    } else {
        vec![Unit::new(tail, Kind::Block)]
    }
}

fn pack(units: &[Unit], budget: usize, overlap: usize) -> Vec<Vec<Unit>> {
    let mut groups = Vec::new();
    let mut current: Vec<Unit> = Vec::new();
    let mut used = 0usize;
    let mut fresh = false;
    for unit in units {
        let cost = added_cost(current.last(), unit);
        if !current.is_empty() && used + cost > budget {
            let carried = overlap_tail(&current, overlap);
            groups.push(std::mem::take(&mut current));
            current = carried;
            while !current.is_empty()
                && total_cost(&current) + added_cost(current.last(), unit) > budget
            {
                current.remove(0);
            }
            used = total_cost(&current);
        }
        used += added_cost(current.last(), unit);
        current.push(unit.clone());
        fresh = true;
    }
    if fresh && !current.is_empty() {
        groups.push(current);
    }
    groups
}

fn emit_section(
    chunks: &mut Vec<Chunk>,
    units: &[Unit],
    headings: &[(usize, String)],
    locator: Option<&Locator>,
    max_tokens: usize,
    overlap: usize,
    heading_prefix: bool,
) {
    if units.is_empty() {
        return;
    }
    let mut prefix = String::new();
    if heading_prefix && !headings.is_empty() {
        for (level, title) in headings {
            prefix.push_str(&"#".repeat(*level));
            prefix.push(' ');
            prefix.push_str(title);
            prefix.push('\n');
        }
        prefix.push('\n');
        if count_tokens(&prefix) > max_tokens / 2 {
            prefix.clear();
        }
    }
    let budget = max_tokens.saturating_sub(count_tokens(&prefix)).max(1);
    let heading_path: Vec<String> = headings.iter().map(|(_, t)| t.clone()).collect();
    for group in pack(&fit_units(units, budget), budget, overlap) {
        let text = format!("{prefix}{}", render(&group));
        chunks.push(Chunk {
            index: chunks.len(),
            token_count: count_tokens(&text),
            text,
            heading_path: heading_path.clone(),
            page: locator.map(Locator::number),
            locator: locator.cloned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, Part};

    fn doc(markdown: &str) -> Document {
        Document {
            format: Format::Markdown,
            title: None,
            parts: vec![Part {
                locator: None,
                markdown: markdown.to_string(),
            }],
        }
    }

    fn opts(max_tokens: usize, overlap_tokens: usize) -> ChunkOptions {
        ChunkOptions {
            max_tokens,
            overlap_tokens,
            heading_prefix: true,
        }
    }

    #[test]
    fn headings_open_sections_with_paths() {
        let chunks = chunk(
            &doc("# A\n\nalpha\n\n## B\n\nbeta\n\nSetext\n------\n\ngamma\n\n# C\n\ndelta"),
            &ChunkOptions::default(),
        );
        let paths: Vec<_> = chunks.iter().map(|c| c.heading_path.join("/")).collect();
        assert_eq!(paths, ["A", "A/B", "A/Setext", "C"]);
        assert_eq!(chunks[1].text, "# A\n## B\n\nbeta");
        assert!(chunks.iter().enumerate().all(|(i, c)| c.index == i));
    }

    #[test]
    fn budget_and_overlap_hold_for_long_sections() {
        let para = |i: usize| {
            format!("Sentence number {i} talks about topic {i}. It has a second part too.")
        };
        let body: Vec<String> = (0..60).map(para).collect();
        let text = format!("# Long\n\n{}", body.join("\n\n"));
        let chunks = chunk(&doc(&text), &opts(64, 20));
        assert!(chunks.len() > 5);
        for c in &chunks {
            assert!(c.token_count <= 64, "{} tokens: {}", c.token_count, c.text);
            assert!(c.text.starts_with("# Long\n\n"));
        }
        for pair in chunks.windows(2) {
            let last_para = pair[0].text.rsplit("\n\n").next().unwrap();
            assert!(
                pair[1].text.contains(last_para),
                "no overlap between {:?} and {:?}",
                pair[0].text,
                pair[1].text
            );
        }
        let all: String = chunks.iter().map(|c| c.text.as_str()).collect();
        for i in 0..60 {
            assert!(all.contains(&para(i)), "paragraph {i} lost");
        }
    }

    #[test]
    fn table_rows_stay_whole_and_repeat_the_header() {
        let mut table = String::from("| Name | Value |\n| --- | --- |\n");
        for i in 0..40 {
            table.push_str(&format!("| row{i} name | value {i} |\n"));
        }
        let chunks = chunk(&doc(&format!("## Data\n\n{table}")), &opts(60, 0));
        assert!(chunks.len() > 2);
        for c in &chunks {
            assert!(c.token_count <= 60);
            let body = c.text.strip_prefix("## Data\n\n").unwrap();
            assert!(
                body.starts_with("| Name | Value |\n| --- | --- |\n| row"),
                "{body}"
            );
            assert!(
                body.lines().all(|l| l.starts_with('|') && l.ends_with('|')),
                "{body}"
            );
        }
        let rows: usize = chunks.iter().map(|c| c.text.matches("| row").count()).sum();
        assert_eq!(rows, 40);
    }

    #[test]
    fn a_row_too_big_for_its_header_is_kept_whole_without_it() {
        let header = "| alpha beta gamma delta | epsilon zeta eta theta | iota kappa lambda mu |";
        let row = "| one two three four five six | seven eight nine ten | eleven twelve thirteen |";
        let table = format!("{header}\n| --- | --- | --- |\n{row}\n{row}\n");
        let max = (count_tokens(row) + 4).max(MIN_MAX_TOKENS);
        assert!(count_tokens(header) + count_tokens(row) > max);
        let chunks = chunk(&doc(&table), &opts(max, 0));
        let rows: Vec<&str> = chunks
            .iter()
            .flat_map(|c| c.text.lines())
            .filter(|l| *l == row)
            .collect();
        assert_eq!(rows.len(), 2, "{chunks:#?}");
    }

    #[test]
    fn list_items_are_units_and_stay_tight() {
        let chunks = chunk(
            &doc("- one\n- two\n  - nested\n- three"),
            &ChunkOptions::default(),
        );
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "- one\n- two\n  - nested\n- three");
        assert!(chunks[0].heading_path.is_empty());
    }

    #[test]
    fn an_oversized_paragraph_is_cut_at_sentences() {
        let sentence = "The quick brown fox jumps over the lazy dog near the river bank. ";
        let text = format!("# T\n\n{}", sentence.repeat(30));
        let chunks = chunk(&doc(&text), &opts(50, 0));
        assert!(chunks.len() >= 5);
        for c in &chunks {
            assert!(c.token_count <= 50, "{}", c.token_count);
            assert!(c.text.trim_end().ends_with("bank."), "{:?}", c.text);
        }
    }

    #[test]
    fn locators_follow_parts_and_headings_carry_across_pages() {
        let document = Document {
            format: Format::Pdf,
            title: None,
            parts: vec![
                Part {
                    locator: Some(Locator::Page { number: 1 }),
                    markdown: "# Intro\n\nfirst page".into(),
                },
                Part {
                    locator: Some(Locator::Page { number: 2 }),
                    markdown: "second page".into(),
                },
            ],
        };
        let chunks = chunk(&document, &ChunkOptions::default());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].page, Some(2));
        assert_eq!(chunks[1].heading_path, ["Intro"]);
        assert_eq!(
            chunks[1].locator.as_ref().map(Locator::label).as_deref(),
            Some("page 2")
        );
    }
}
