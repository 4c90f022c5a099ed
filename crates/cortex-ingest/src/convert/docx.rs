//! DOCX (WordprocessingML) to Markdown: headings from paragraph styles, lists from numbering,
//! tables as pipe tables.

use std::collections::HashMap;

use super::xml::{Handler, Tag, walk};
use crate::markdown::{collapse_ws, escape_line_starts, pipe_table};
use crate::zipguard::GuardedZip;
use crate::{Document, Format, IngestError, Limits, Part};

pub(super) fn convert(bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    let mut zip = GuardedZip::open(bytes, limits)?;
    let body = zip
        .read_string("word/document.xml")?
        .ok_or_else(|| IngestError::parse("DOCX without word/document.xml"))?;
    let styles = match zip.read_string("word/styles.xml")? {
        Some(xml) => Styles::parse(&xml)?,
        None => Styles::default(),
    };
    let numbering = match zip.read_string("word/numbering.xml")? {
        Some(xml) => Numbering::parse(&xml)?,
        None => Numbering::default(),
    };
    let mut handler = BodyHandler::new(&styles, &numbering);
    walk(&body, "word/document.xml", &mut handler)?;
    let title = handler.blocks.iter().find_map(|b| match b {
        Block::Title(t) => Some(t.clone()),
        _ => None,
    });
    Ok(Document {
        format: Format::Docx,
        title,
        parts: vec![Part {
            locator: None,
            markdown: render(&handler.blocks),
        }],
    })
}

/// A block of the document body in reading order.
#[derive(Debug, PartialEq)]
pub(super) enum Block {
    Title(String),
    Heading(u8, String),
    Paragraph(String),
    /// A list item: depth, number for ordered lists, text.
    Item(u32, Option<u32>, String),
    Table(Vec<Vec<String>>),
}

/// Renders blocks as Markdown. When the document uses a Title paragraph, it becomes the level-1
/// heading and the Heading N styles move one level down.
pub(super) fn render(blocks: &[Block]) -> String {
    let shift = u8::from(blocks.iter().any(|b| matches!(b, Block::Title(_))));
    let mut out = String::new();
    let mut prev_item = false;
    for block in blocks {
        let is_item = matches!(block, Block::Item(..));
        if !out.is_empty() {
            out.push_str(if is_item && prev_item { "\n" } else { "\n\n" });
        }
        prev_item = is_item;
        match block {
            Block::Title(t) => {
                out.push_str("# ");
                out.push_str(t);
            }
            Block::Heading(level, t) => {
                let level = (level + shift).clamp(1, 6) as usize;
                out.push_str(&"#".repeat(level));
                out.push(' ');
                out.push_str(t);
            }
            Block::Paragraph(t) => out.push_str(&escape_line_starts(t)),
            Block::Item(depth, number, t) => {
                out.push_str(&"  ".repeat((*depth).min(8) as usize));
                match number {
                    Some(n) => out.push_str(&format!("{n}. ")),
                    None => out.push_str("- "),
                }
                out.push_str(t);
            }
            Block::Table(rows) => out.push_str(&pipe_table(rows)),
        }
    }
    out
}

#[derive(Default, Clone)]
struct StyleInfo {
    name: String,
    based_on: Option<String>,
    outline_level: Option<u8>,
}

/// Paragraph styles of `word/styles.xml`, by style id.
#[derive(Default)]
struct Styles {
    by_id: HashMap<String, StyleInfo>,
}

#[derive(Clone, Copy, PartialEq)]
enum StyleKind {
    Title,
    Heading(u8),
    Bullet,
    Numbered,
    Body,
}

impl Styles {
    fn parse(xml: &str) -> Result<Self, IngestError> {
        #[derive(Default)]
        struct H {
            styles: HashMap<String, StyleInfo>,
            current: Option<(String, StyleInfo)>,
        }
        impl Handler for H {
            fn open(&mut self, name: &str, tag: &Tag<'_>) {
                match name {
                    "style" => {
                        self.current = tag.attr("styleId").map(|id| (id, StyleInfo::default()));
                    }
                    "name" => {
                        if let (Some((_, s)), Some(v)) = (self.current.as_mut(), tag.attr("val")) {
                            s.name = v;
                        }
                    }
                    "basedOn" => {
                        if let Some((_, s)) = self.current.as_mut() {
                            s.based_on = tag.attr("val");
                        }
                    }
                    "outlineLvl" => {
                        if let Some((_, s)) = self.current.as_mut() {
                            s.outline_level = tag.attr("val").and_then(|v| v.parse().ok());
                        }
                    }
                    _ => {}
                }
            }
            fn close(&mut self, name: &str) {
                if name == "style"
                    && let Some((id, info)) = self.current.take()
                {
                    self.styles.insert(id, info);
                }
            }
            fn text(&mut self, _: &str) {}
        }
        let mut h = H::default();
        walk(xml, "word/styles.xml", &mut h)?;
        Ok(Self { by_id: h.styles })
    }

    /// What a paragraph style means, following `basedOn` a few steps.
    fn kind(&self, style_id: &str) -> StyleKind {
        let mut id = style_id.to_string();
        for _ in 0..8 {
            let info = self.by_id.get(&id);
            let name = info
                .map(|i| i.name.to_ascii_lowercase())
                .unwrap_or_default();
            let key = if name.is_empty() {
                id.to_ascii_lowercase()
            } else {
                name
            };
            if let Some(kind) = kind_from_name(&key) {
                return kind;
            }
            if let Some(level) = info.and_then(|i| i.outline_level).filter(|l| *l < 6) {
                return StyleKind::Heading(level + 1);
            }
            match info.and_then(|i| i.based_on.clone()) {
                Some(parent) => id = parent,
                None => break,
            }
        }
        StyleKind::Body
    }
}

fn kind_from_name(name: &str) -> Option<StyleKind> {
    let compact: String = name.chars().filter(|c| !c.is_whitespace()).collect();
    if compact == "title" {
        return Some(StyleKind::Title);
    }
    if let Some(n) = compact.strip_prefix("heading")
        && let Ok(level) = n.parse::<u8>()
        && (1..=9).contains(&level)
    {
        return Some(StyleKind::Heading(level.min(6)));
    }
    if compact.starts_with("listbullet") {
        return Some(StyleKind::Bullet);
    }
    if compact.starts_with("listnumber") {
        return Some(StyleKind::Numbered);
    }
    None
}

/// `word/numbering.xml`: whether a (numId, level) is a bullet or a numbered list.
#[derive(Default)]
struct Numbering {
    num_to_abstract: HashMap<String, String>,
    /// (abstractNumId, level) → numFmt
    formats: HashMap<(String, u32), String>,
    /// (abstractNumId, level) → first number
    starts: HashMap<(String, u32), u32>,
    /// (numId, level) → restart number of a `w:lvlOverride/w:startOverride`
    overrides: HashMap<(String, u32), u32>,
}

impl Numbering {
    fn parse(xml: &str) -> Result<Self, IngestError> {
        #[derive(Default)]
        struct H {
            n: Numbering,
            abstract_id: Option<String>,
            level: Option<u32>,
            num_id: Option<String>,
            override_level: Option<u32>,
        }
        impl Handler for H {
            fn open(&mut self, name: &str, tag: &Tag<'_>) {
                match name {
                    "abstractNum" => self.abstract_id = tag.attr("abstractNumId"),
                    "lvl" => self.level = tag.attr("ilvl").and_then(|v| v.parse().ok()),
                    "numFmt" => {
                        if let (Some(a), Some(l), Some(f)) =
                            (self.abstract_id.clone(), self.level, tag.attr("val"))
                        {
                            self.n.formats.insert((a, l), f);
                        }
                    }
                    "start" => {
                        if let (Some(a), Some(l), Some(v)) = (
                            self.abstract_id.clone(),
                            self.level,
                            tag.attr("val").and_then(|v| v.parse().ok()),
                        ) {
                            self.n.starts.insert((a, l), v);
                        }
                    }
                    "num" => self.num_id = tag.attr("numId"),
                    "lvlOverride" => {
                        self.override_level = tag.attr("ilvl").and_then(|v| v.parse().ok());
                    }
                    "startOverride" => {
                        if let (Some(num), Some(l), Some(v)) = (
                            self.num_id.clone(),
                            self.override_level,
                            tag.attr("val").and_then(|v| v.parse().ok()),
                        ) {
                            self.n.overrides.insert((num, l), v);
                        }
                    }
                    "abstractNumId" => {
                        if let (Some(num), Some(a)) = (self.num_id.clone(), tag.attr("val")) {
                            self.n.num_to_abstract.insert(num, a);
                        }
                    }
                    _ => {}
                }
            }
            fn close(&mut self, name: &str) {
                match name {
                    "abstractNum" => self.abstract_id = None,
                    "lvl" => self.level = None,
                    "num" => self.num_id = None,
                    "lvlOverride" => self.override_level = None,
                    _ => {}
                }
            }
            fn text(&mut self, _: &str) {}
        }
        let mut h = H::default();
        walk(xml, "word/numbering.xml", &mut h)?;
        Ok(h.n)
    }

    /// The list a numbering instance continues: Word numbers all instances of one abstract
    /// numbering as one sequence unless an instance restarts it.
    fn sequence(&self, num_id: &str) -> String {
        self.num_to_abstract
            .get(num_id)
            .cloned()
            .unwrap_or_else(|| format!("num:{num_id}"))
    }

    fn start(&self, num_id: &str, level: u32) -> u32 {
        self.overrides
            .get(&(num_id.to_string(), level))
            .or_else(|| {
                self.num_to_abstract
                    .get(num_id)
                    .and_then(|a| self.starts.get(&(a.clone(), level)))
            })
            .copied()
            .unwrap_or(1)
    }

    fn is_ordered(&self, num_id: &str, level: u32) -> bool {
        self.num_to_abstract
            .get(num_id)
            .and_then(|a| self.formats.get(&(a.clone(), level)))
            .is_some_and(|f| f != "bullet" && f != "none")
    }
}

#[derive(Default)]
struct Para {
    style: Option<String>,
    num_id: Option<String>,
    level: u32,
    text: String,
}

#[derive(Default)]
struct TableBuilder {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
    span: usize,
}

struct BodyHandler<'a> {
    styles: &'a Styles,
    numbering: &'a Numbering,
    paras: Vec<Para>,
    tables: Vec<TableBuilder>,
    blocks: Vec<Block>,
    in_text: bool,
    in_run: bool,
    skip: usize,
    counters: HashMap<(String, u32), u32>,
    restarted: std::collections::HashSet<(String, u32)>,
}

impl<'a> BodyHandler<'a> {
    fn new(styles: &'a Styles, numbering: &'a Numbering) -> Self {
        Self {
            styles,
            numbering,
            paras: Vec::new(),
            tables: Vec::new(),
            blocks: Vec::new(),
            in_text: false,
            in_run: false,
            skip: 0,
            counters: HashMap::new(),
            restarted: std::collections::HashSet::new(),
        }
    }

    fn finish_paragraph(&mut self) {
        let Some(para) = self.paras.pop() else {
            return;
        };
        let text = collapse_ws(&para.text);
        if self.paras.is_empty()
            && let Some(table) = self.tables.last_mut()
        {
            if !text.is_empty() {
                if !table.cell.is_empty() {
                    table.cell.push(' ');
                }
                table.cell.push_str(&text);
            }
            return;
        }
        if text.is_empty() {
            return;
        }
        let kind = para
            .style
            .as_deref()
            .map(|s| self.styles.kind(s))
            .unwrap_or(StyleKind::Body);
        let num_id = para.num_id.filter(|n| n != "0");
        let block = match (kind, num_id) {
            (StyleKind::Title, _) => Block::Title(text),
            (StyleKind::Heading(level), _) => Block::Heading(level, text),
            (_, Some(num_id)) => {
                let number = self
                    .numbering
                    .is_ordered(&num_id, para.level)
                    .then(|| self.next_number(&num_id, para.level));
                Block::Item(para.level, number, text)
            }
            (StyleKind::Bullet, None) => Block::Item(0, None, text),
            (StyleKind::Numbered, None) => {
                let n = self.next_number("style", 0);
                Block::Item(0, Some(n), text)
            }
            (StyleKind::Body, None) => Block::Paragraph(text),
        };
        self.blocks.push(block);
    }

    fn next_number(&mut self, num_id: &str, level: u32) -> u32 {
        let sequence = self.numbering.sequence(num_id);
        // A shallower item restarts the numbering of deeper levels.
        self.counters
            .retain(|(seq, l), _| *seq != sequence || *l <= level);
        let key = (sequence, level);
        let restart = self
            .numbering
            .overrides
            .contains_key(&(num_id.to_string(), level))
            && self.restarted.insert((num_id.to_string(), level));
        if restart {
            self.counters.remove(&key);
        }
        let start = self.numbering.start(num_id, level);
        let n = self.counters.entry(key).or_insert(start.saturating_sub(1));
        *n += 1;
        *n
    }

    fn push_text(&mut self, text: &str) {
        if let Some(p) = self.paras.last_mut() {
            p.text.push_str(text);
        } else if let Some(t) = self.tables.last_mut() {
            t.cell.push_str(text);
        }
    }
}

impl Handler for BodyHandler<'_> {
    fn open(&mut self, name: &str, tag: &Tag<'_>) {
        if self.skip > 0 || name == "Fallback" {
            self.skip += 1;
            return;
        }
        match name {
            "p" => self.paras.push(Para::default()),
            "pStyle" => {
                if let Some(p) = self.paras.last_mut() {
                    p.style = tag.attr("val");
                }
            }
            "numId" => {
                if let Some(p) = self.paras.last_mut() {
                    p.num_id = tag.attr("val");
                }
            }
            "ilvl" => {
                if let Some(p) = self.paras.last_mut() {
                    p.level = tag.attr("val").and_then(|v| v.parse().ok()).unwrap_or(0);
                }
            }
            "r" => self.in_run = true,
            "t" => self.in_text = self.in_run,
            "tab" | "br" | "cr" if self.in_run && tag.attr("type").as_deref() != Some("page") => {
                self.push_text(" ");
            }
            "noBreakHyphen" if self.in_run => self.push_text("-"),
            "tbl" => self.tables.push(TableBuilder::default()),
            "tr" => {
                if let Some(t) = self.tables.last_mut() {
                    t.row.clear();
                }
            }
            "tc" => {
                if let Some(t) = self.tables.last_mut() {
                    t.cell.clear();
                    t.span = 1;
                }
            }
            "gridSpan" => {
                if let Some(t) = self.tables.last_mut() {
                    t.span = tag
                        .attr("val")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1)
                        .clamp(1, 64);
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, name: &str) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        match name {
            "p" => self.finish_paragraph(),
            "r" => self.in_run = false,
            "t" => self.in_text = false,
            "tc" => {
                if let Some(t) = self.tables.last_mut() {
                    let cell = std::mem::take(&mut t.cell);
                    t.row.push(cell);
                    for _ in 1..t.span {
                        t.row.push(String::new());
                    }
                }
            }
            "tr" => {
                if let Some(t) = self.tables.last_mut() {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                }
            }
            "tbl" => {
                if let Some(table) = self.tables.pop() {
                    let rows: Vec<Vec<String>> = table
                        .rows
                        .into_iter()
                        .filter(|r| r.iter().any(|c| !c.trim().is_empty()))
                        .collect();
                    if let Some(outer) = self.tables.last_mut() {
                        // A nested table flattens into the enclosing cell.
                        for row in rows {
                            outer.cell.push(' ');
                            outer.cell.push_str(&row.join(" "));
                        }
                    } else if !rows.is_empty() {
                        self.blocks.push(Block::Table(rows));
                    }
                }
            }
            _ => {}
        }
    }

    fn text(&mut self, text: &str) {
        if self.in_text && self.skip == 0 {
            self.push_text(text);
        }
    }
}
